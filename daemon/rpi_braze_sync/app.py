"""Composition root: builds the daemon's components, runs their tasks, shuts down in order.

It only wires and runs: the components own their concerns (reloader.py the configuration in
use, readiness.py /readyz, rpicalls.py RPI's calls, announce.py what the start says, lead.py
what one lead opens: transport, sender, queue, listener, watcher). Every
resource is opened on one AsyncExitStack, so it is closed on every path, in reverse order;
every task runs in one TaskGroup, so none is dropped, and a task that fails is logged and
stops the daemon (exit 1). SIGTERM/SIGINT stop taking files, let requests in flight finish
within the grace period, checkpoint and exit 0; a second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .announce import announce, warn_if_network_state
from .braze import Transport
from .config import LoadedConfig
from .delivery import Sender
from .errors import JournalError
from .filequeue import FileQueue
from .heaptrim import trim_forever
from .journal import Journal
from .lead import Shared, open_lead
from .mapchild import tune_garbage_collector
from .mapping import parse_path_pattern
from .metrics import Metrics
from .notify import Notifier
from .readiness import PairView, Readiness
from .reloader import ConfigReloader
from .rpicalls import RpiCallStore
from .server import HookRoute, build_app, start_server
from .sources import MappingProcess
from .sqlitejournal import SqliteJournal, journal_path
from .statedir import StateLock, probe_writable, tighten_modes
from .statewrites import StateWrites
from .statusweb import add_status_page
from .watch import Watcher
from .watchrules import ExportPath, classify_path

if TYPE_CHECKING:
    from .deltarun import DeltaRun  # (imported only when a channel uses delta: lead.py)

log = logging.getLogger(__name__)


class Daemon:
    def __init__(
        self,
        config: LoadedConfig,
        metrics: Metrics | None = None,
        load_again: Callable[[], LoadedConfig] | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.reloader = ConfigReloader(config, self.metrics, load_again)
        self.rpi_calls = RpiCallStore(
            lambda: self.config.settings.hook.call_ttl_seconds, metrics=self.metrics
        )
        self.notifier = Notifier()
        self.state_writes = StateWrites()
        self.readiness = Readiness(config.base_output_directory, self.state_writes)
        self._stop = asyncio.Event()
        self._hard_stop = asyncio.Event()
        self._pattern = parse_path_pattern(config.settings.watch.path_pattern)
        self._crashed: list[str] = []
        self.journal: Journal | None = None
        self.pair: PairView | None = None  # journal.url: the pair's lease (pair.py)
        # pair.py's: a transport that sends only while this daemon holds the lease.
        self.fence: Callable[[Transport], Transport] | None = None
        self._lead_over = asyncio.Event()  # a pair's leader: the lease lost, or its journal
        self.watcher: Watcher | None = None
        self.sender: Sender | None = None
        self.queue: FileQueue | None = None
        self.mapping_process: MappingProcess | None = None
        self.delta: DeltaRun | None = None
        self._delta_open = asyncio.Event()  # set once this lead's store is open

    @property
    def config(self) -> LoadedConfig:
        """The configuration in use (the reloader's)."""
        return self.reloader.config

    def export_of(self, rel_path: str) -> ExportPath | None:
        where = classify_path(rel_path, self._pattern, set(self.config.channels))
        return where if isinstance(where, ExportPath) else None

    def reload(self) -> bool:
        """SIGHUP, or the file changed: systemd hears RELOADING=1, then READY=1."""
        self.notifier.reloading()
        try:
            return self.reloader.reload()
        finally:
            self.notifier.ready(self._status_line())

    def request_stop(self) -> None:
        self.notifier.stopping()
        if self._stop.is_set():
            log.warning("second stop signal: stopping now; the journal resumes from its checkpoint")
            self._hard_stop.set()
        else:
            log.info("stopping: no new files; requests in flight may finish")
            self._stop.set()

    # --- opening ---------------------------------------------------------------------------

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """What runs as long as the daemon, each closed by `stack` on every path."""
        config = self.config
        # The lock first: a second daemon on the same state directory stops here (exit 75),
        # before it writes anything; then the address (exit 69), before the journal.
        lock = StateLock(config.state_directory)
        lock.acquire()
        stack.callback(lock.release)
        tighten_modes(config.state_directory)
        hook = HookRoute(self.rpi_calls.accept, lambda: self.config.hook_token)
        app = build_app(self.metrics, self.readiness.problems, hook, self.role)
        add_status_page(app, self, role=lambda: self.pair.role() if self.pair else None)
        server = await start_server(app, config.settings.http.listen)
        stack.push_async_callback(server.cleanup)
        stack.callback(self.notifier.close)
        config.state_directory.mkdir(parents=True, exist_ok=True)
        warn_if_network_state(config)
        self.metrics.add_channels(config.channels)
        self.reloader.on_reload(lambda new: self.metrics.add_channels(new.channels))

    def attach(self, journal: Journal) -> None:
        self.journal = journal
        self.readiness.journal_open = True
        self.rpi_calls.attach(journal)

    async def _open_sending(self, stack: contextlib.AsyncExitStack, journal: Journal) -> None:
        """This lead's components (lead.py), each closed by `stack`."""
        shared = Shared(
            self.reloader, self.metrics, self.state_writes, self.rpi_calls, self.export_of,
            self.fence, self._delta_opened,
        )  # fmt: skip
        self._delta_open = asyncio.Event()
        lead = open_lead(stack, journal, shared)
        self.sender = self.readiness.sender = lead.sender
        self.queue = self.readiness.queue = lead.queue
        self.watcher = self.readiness.watcher = lead.watcher
        self.mapping_process = lead.mapping_process

    def _delta_opened(self, delta: DeltaRun) -> None:
        """Delta's store opened (at the start of a lead, or by a reload turning delta on)."""
        self.delta = delta
        self.readiness.delta_writes = delta.writes
        self._delta_open.set()

    async def _delta_retention(self) -> None:
        await self._delta_open.wait()
        assert self.delta is not None
        await self.delta.sweep_forever()

    async def _delta_heap_trim(self) -> None:
        await self._delta_open.wait()
        await trim_forever()  # RocksDB's threads' freed buffers (heaptrim.py)

    # --- running ---------------------------------------------------------------------------

    async def run(self, install_signals: bool = True) -> int:
        tune_garbage_collector()
        if install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        async with contextlib.AsyncExitStack() as stack:
            await self._open(stack)
            config = self.config
            if config.journal_url is not None:
                from .pair import run_as_pair  # psycopg only where journal.url asks for it

                announce(config)
                await run_as_pair(self)
            else:
                # Announced once the journal opened: a damaged journal's start says one line
                # (issue 13), the error, not the start's summary before it.
                journal = SqliteJournal(journal_path(config.state_directory, config.dry_run))
                stack.callback(journal.close)
                announce(config)
                self.attach(journal)
                self.metrics.leader.set(1)  # alone: the one that sends
                await self.lead(journal)
        log.info("stopped")
        return 1 if self._crashed else 0

    async def stopping(self) -> None:
        await self._stop.wait()

    async def lead(self, journal: Journal, lost: asyncio.Event | None = None) -> bool:
        """Watch, queue and send on `journal` until stopped, or until `lost` is set (a pair's
        lease moved: stop at once) or the pair's journal fails under a task. True when it
        ended because of the journal (pair.py waits before leading again)."""
        self._lead_over.clear()
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._open_sending(stack, journal)
                async with asyncio.TaskGroup() as group:
                    await self._run(group, lost)
        finally:
            self.sender = self.queue = self.watcher = self.delta = None
            self.readiness.sender = self.readiness.queue = self.readiness.watcher = None
            self.readiness.delta_writes = None
        return self._lead_over.is_set()

    def role(self) -> str | None:
        """/readyz's role line: the pair's (leader or standby), none for a single daemon."""
        return self.pair.role_line() if self.pair is not None else None

    def _start(
        self, group: asyncio.TaskGroup, work: Coroutine[Any, Any, None], name: str
    ) -> asyncio.Task[None]:
        return group.create_task(self._logged(work, name), name=name)

    async def _logged(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run a task; if it fails, log it and stop the daemon (never a silent failure)."""
        try:
            await work
        except JournalError as exc:
            if self.pair is None:
                raise
            # A pair's shared journal failed (the database went away, the lease moved): not
            # a crash. Stop sending; pair.py leads again once it holds the lease.
            log.error("task %s stopped: %s", name, exc)
            self._lead_over.set()
        except Exception:
            log.critical("task %s failed", name, exc_info=True)
            self.crashed(name)
        else:
            if not self._stop.is_set():  # the main tasks run until cancelled
                log.critical("task %s ended", name)
                self.crashed(name)

    def crashed(self, name: str) -> None:
        """Task `name` failed (logged by the caller): the daemon stops, with exit 1."""
        self._crashed.append(name)
        self._stop.set()

    async def _run(self, group: asyncio.TaskGroup, lost: asyncio.Event | None) -> None:
        sender, queue, watcher = self.sender, self.queue, self.watcher
        journal = self.journal
        assert sender is not None
        assert queue is not None
        assert watcher is not None
        assert journal is not None
        main = [
            self._start(group, sender.run(), "sender"),
            self._start(group, queue.run(), "file-queue"),
            self._start(group, watcher.run(), "watcher"),
        ]
        helpers = [
            self._start(group, self.reloader.watch_file(self.reload), "config-watch"),
            self._start(group, queue.watch_journal(), "journal-watch"),
            self._start(group, self._keep_systemd_informed(), "sd-notify"),
            self._start(
                group,
                self.state_writes.probe_while_failing(lambda: self._probe(journal)),
                "state-probe",
            ),
        ]
        helpers.append(self._start(group, self._delta_retention(), "delta-retention"))
        helpers.append(self._start(group, self._delta_heap_trim(), "heap-trim"))
        self.notifier.ready(f"watching {self.config.base_output_directory}")
        ends = [self._stop, self._lead_over] + ([lost] if lost is not None else [])
        waits = [asyncio.create_task(end.wait()) for end in ends]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        for helper in helpers:
            helper.cancel()
        # The lease lost: nothing more may be sent, so requests in flight are not waited for.
        at_once = self._lead_over.is_set() or (lost is not None and lost.is_set())
        await self._shut_down(main, sender, queue, at_once)

    async def _shut_down(
        self, tasks: list[asyncio.Task[None]], sender: Sender, queue: FileQueue, at_once: bool
    ) -> None:
        sender_task, queue_task, watcher_task = tasks
        watcher_task.cancel()
        queue_task.cancel()  # stops reading; the active file keeps its place
        sender.stop_dispatching()
        grace = 0 if at_once else self.config.settings.shutdown_grace_seconds
        drain = asyncio.create_task(sender.drain(grace))
        hard = asyncio.create_task(self._hard_stop.wait())
        try:
            await asyncio.wait([drain, hard], return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
            hard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        sender_task.cancel()
        await asyncio.wait(tasks)
        if self.delta is not None:
            await self.delta.synced()  # rows waiting for the store's sync settle first
        if queue.active is not None:
            await queue.active.suspend()

    def _status_line(self) -> str:
        queue = self.queue
        queued = queue.waiting() if queue else 0
        active = queue.active.status_text() if queue and queue.active else "idle"
        return f"{active}; {queued} files queued"

    async def _keep_systemd_informed(self) -> None:
        """WATCHDOG=1 every half period while the daemon runs, and a STATUS line. (A failed
        task stops the daemon, so a hung loop is what the watchdog catches.)"""
        period = (self.notifier.watchdog_s or 10.0) / 2
        while True:
            if self.notifier.watchdog_s:
                self.notifier.watchdog()
            self.notifier.status(self._status_line())
            await asyncio.sleep(period)

    def _probe(self, journal: Journal) -> None:
        probe_writable(self.config.state_directory)
        journal.note_writable()


async def serve(config: LoadedConfig, load_again: Callable[[], LoadedConfig]) -> int:
    return await Daemon(config, load_again=load_again).run()
