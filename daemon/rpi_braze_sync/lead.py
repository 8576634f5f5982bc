"""What one lead opens on a journal: Braze's transport (fenced, in a pair), the sender, the
mapping process, delta's store, the file queue, the journal's listener and the watcher.

Each is closed by the lead's exit stack, and follows reloads only while the lead lasts (a
pair's daemon leads again with new ones after a lost lease). app.Daemon runs their tasks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .announce import secret_env_names
from .braze import HttpTransport, OutboxTransport, Transport
from .config import LoadedConfig
from .delivery import Sender
from .filequeue import FileQueue
from .journal import Journal
from .listener import JournalListener
from .metrics import Metrics
from .reloader import Apply, ConfigReloader
from .rpicalls import RpiCallStore
from .sending import FileJobContext
from .sources import MappingProcess, chunk_opener
from .statewriter import StateWriter
from .statewrites import StateWrites

if TYPE_CHECKING:
    from .deltarun import DeltaRun
from .watch import Watcher
from .watchrules import ExportPath

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lead:
    sender: Sender
    queue: FileQueue
    watcher: Watcher
    mapping_process: MappingProcess | None


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
    # Delta's store is open (at the start, or by a reload that turned delta on).
    on_delta: Callable[[DeltaRun], None] = lambda _: None


def open_transport(
    config: LoadedConfig, state_writes: StateWrites, writer: StateWriter
) -> Transport:
    braze = config.settings.braze
    if config.dry_run:
        outbox = config.state_directory / "outbox"
        return OutboxTransport(outbox, on_failure=state_writes.failed, writer=writer)
    assert config.api_key is not None  # load_config refuses a live run without one
    return HttpTransport(braze.api_url, config.api_key, braze.request_timeout_seconds,
                         braze.max_in_flight)  # fmt: skip


def open_lead(stack: contextlib.AsyncExitStack, journal: Journal, shared: Shared) -> Lead:
    """Watching, queueing and sending on `journal`, each closed by `stack`."""
    config, metrics, state_writes = shared.reloader.config, shared.metrics, shared.state_writes

    def follow(apply: Apply) -> None:
        stack.callback(shared.reloader.on_reload(apply))

    # Closed after everything that hands it writes (the exit stack runs backwards).
    writer = StateWriter()
    stack.push_async_callback(writer.close)
    transport = open_transport(config, state_writes, writer)
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

    def use(opened: DeltaRun) -> None:
        stack.push_async_callback(opened.close)
        stack.callback(opened.writes.on_change(hold))
        sender.on_places_kept = (
            opened.commit.sync_now
        )  # rows waiting for its sync keep their places
        follow(opened.apply)  # another Braze workspace: a fresh store
        shared.on_delta(opened)

    delta = _open_delta(config, metrics, state_writes.retry_s)
    if delta is not None:
        use(delta)
    sending = FileJobContext(
        config, journal, sender, metrics, chunk_opener(mapping_process), state_writes, delta,
        writer,
    )  # fmt: skip
    queue = FileQueue(sending, shared.export_of)
    follow(queue.apply)

    def open_on_reload(new: LoadedConfig) -> None:
        """A reload turned delta on (delta.enabled, or a channel's `delta: true`): the store
        opens now, for the files that start from now on (the file being sent finishes
        without it). Turned off, jobs stop using it (FileJob asks the config it starts with);
        it stays open, for a reload that turns it on again."""
        nonlocal delta
        _tell_if_unused(new)
        if delta is not None or not new.uses_delta:
            return
        from .deltastore import DeltaStoreError

        try:
            delta = _open_delta(new, metrics, state_writes.retry_s)
        except DeltaStoreError as exc:
            log.error("delta: turned on by the reload, but %s: files are sent whole", exc)
            return
        if delta is None:
            return
        use(delta)
        queue.sending = replace(queue.sending, delta=delta)
        log.info("delta: turned on by the reload: files that start from now on send what changed")

    follow(open_on_reload)
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
    return Lead(sender, queue, watcher, mapping_process)


def _endpoint_of(transport: HttpTransport) -> Callable[[LoadedConfig], None]:
    def apply(config: LoadedConfig) -> None:
        if config.api_key is not None:  # a rotated key, a corrected URL
            transport.set_endpoint(config.settings.braze.api_url, config.api_key)

    return apply


def _open_delta(config: LoadedConfig, metrics: Metrics, retry_s: float) -> DeltaRun | None:
    """Delta's store, if a channel uses delta. Its modules (the store's, the file's, the
    summaries' fast paths) are imported only then: with delta off, the daemon never loads
    them, nor the memory their code takes."""
    _tell_if_unused(config)
    if not config.uses_delta:
        return None
    from .deltarun import open_delta

    return open_delta(config, metrics, retry_s)


def _tell_if_unused(config: LoadedConfig) -> None:
    if config.delta_unused:  # else an operator trying delta in a dry run sees it do nothing
        log.warning(
            "delta: turned on, but not used in a dry run (nothing is acknowledged, so nothing"
            " is remembered): every row is written to the outbox whole"
        )
