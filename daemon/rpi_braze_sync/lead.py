"""What one lead opens on a journal: Braze's transport (fenced, in a pair), the sender, the
mapping process, delta's store, the file queue, the journal's listener and the watcher.

Each is closed by the lead's exit stack, and follows reloads only while the lead lasts (a
pair's daemon leads again with new ones after a lost lease). app.Daemon runs their tasks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from .announce import secret_env_names
from .braze import HttpTransport, OutboxTransport, Transport
from .config import LoadedConfig
from .delivery import Sender
from .deltarun import DeltaRun, open_delta
from .filequeue import FileQueue
from .journal import Journal
from .listener import JournalListener
from .metrics import Metrics
from .reloader import Apply, ConfigReloader
from .rpicalls import RpiCallStore
from .sending import Sending
from .sources import MappingProcess, chunk_opener
from .statewrites import StateWrites
from .watch import Watcher
from .watchrules import ExportPath


@dataclass(frozen=True)
class Lead:
    sender: Sender
    queue: FileQueue
    watcher: Watcher
    mapping_process: MappingProcess | None
    delta: DeltaRun | None


@dataclass(frozen=True)
class Shared:
    """The daemon's parts that outlive a lead, which a lead's components are wired to."""

    reloader: ConfigReloader
    metrics: Metrics
    state_writes: StateWrites
    rpi_calls: RpiCallStore
    export_of: Callable[[str], ExportPath | None]
    # pair.py's: a transport that sends only while this daemon holds the lease.
    fence: Callable[[Transport], Transport] | None


def open_transport(config: LoadedConfig, state_writes: StateWrites) -> Transport:
    braze = config.settings.braze
    if config.dry_run:
        outbox = config.state_directory / "outbox"
        return OutboxTransport(outbox, on_failure=state_writes.failed)
    assert config.api_key is not None  # load_config refuses a live run without one
    return HttpTransport(braze.api_url, config.api_key, braze.request_timeout_seconds,
                         braze.max_in_flight)  # fmt: skip


def open_lead(stack: contextlib.AsyncExitStack, journal: Journal, shared: Shared) -> Lead:
    """Watching, queueing and sending on `journal`, each closed by `stack`."""
    config, metrics, state_writes = shared.reloader.config, shared.metrics, shared.state_writes

    def follow(apply: Apply) -> None:
        stack.callback(shared.reloader.on_reload(apply))

    transport = open_transport(config, state_writes)
    if shared.fence is not None:
        transport = shared.fence(transport)
    stack.push_async_callback(transport.close)
    if isinstance(transport, HttpTransport):
        follow(_endpoint_of(transport))
    sender = Sender(transport, config.settings.braze, metrics)
    follow(lambda new: sender.apply(new.settings.braze))
    delta: DeltaRun | None = None

    def hold(_: bool) -> None:  # while the state directory or delta's store takes no write
        sender.hold(not state_writes.writable or (delta is not None and delta.held))

    stack.callback(state_writes.on_change(hold))
    mapping_process = None
    if config.settings.performance.mapping_process:
        mapping_process = MappingProcess(secret_env_names(config))
        stack.push_async_callback(mapping_process.stop)
    delta = open_delta(config, metrics, state_writes.retry_s)
    if delta is not None:
        stack.push_async_callback(delta.close)
        stack.callback(delta.writes.on_change(hold))
        follow(delta.apply)  # another Braze workspace: a fresh store
    sending = Sending(
        config, journal, sender, metrics, chunk_opener(mapping_process), state_writes, delta
    )
    queue = FileQueue(sending, shared.export_of)
    follow(queue.apply)
    for record in journal.queued():
        queue.put(record)  # interrupted sends resume first, in their order
    listener = JournalListener(config, journal, queue, shared.rpi_calls, shared.export_of)
    follow(listener.apply)
    watcher = Watcher(
        config.base_output_directory, config.settings.watch, set(config.channels), listener,
        metrics,
    )  # fmt: skip
    follow(lambda new: watcher.apply(new.settings.watch, set(new.channels)))
    stack.callback(shared.rpi_calls.on_accepted(watcher.reconsider))
    return Lead(sender, queue, watcher, mapping_process, delta)


def _endpoint_of(transport: HttpTransport) -> Callable[[LoadedConfig], None]:
    def apply(config: LoadedConfig) -> None:
        if config.api_key is not None:  # a rotated key, a corrected URL
            transport.set_endpoint(config.settings.braze.api_url, config.api_key)

    return apply
