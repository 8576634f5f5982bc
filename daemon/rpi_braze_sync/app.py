"""Composition root: opens resources, runs the daemon's tasks, shuts down in reverse order.

Tasks and their owner (this module): the sender's dispatcher, the file queue, the watcher and
the HTTP server. SIGTERM/SIGINT stop taking files, let requests in flight finish within the
grace period, checkpoint and exit 0; a second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import signal
import time
from collections.abc import Callable
from dataclasses import replace

from . import package_version
from .braze import HttpTransport, OutboxTransport, Transport
from .config import LoadedConfig
from .delivery import Sender
from .deltarun import open_delta
from .errors import ConfigError, JournalError
from .filequeue import FileQueue
from .hook import RpiCall, parse_rpi_call
from .journal import Journal
from .listener import JournalListener
from .mapchild import tune_garbage_collector
from .mapping import parse_path_pattern
from .metrics import Metrics
from .notify import Notifier
from .rpicalls import RpiCallStore
from .server import HookRoute, build_app, start_server
from .sources import MappingProcess
from .sqlitejournal import SqliteJournal, journal_path
from .statedir import StateLock, probe_writable, tighten_modes
from .statewrites import StateWrites
from .watch import Watcher, read_mounts
from .watchrules import NETWORK_FILESYSTEMS, ExportPath, classify_path, filesystem_of

log = logging.getLogger(__name__)


# Keys read once at start; a reload that changes them says so and keeps the running values.
RESTART_ONLY = (
    "state_directory", "watch.base_output_directory", "watch.observer", "watch.path_pattern",
    "http.listen", "braze.dry_run",
)  # fmt: skip
CONFIG_POLL_S = 2.0
UNREACHABLE_AFTER_S = 60.0  # retries through shorter blips stay "ready"
# Files queued and none moving (no row settled, no file finished) for this long while Braze
# answers: the queue is stuck (a file that never ends), not waiting for Braze.
STALLED_AFTER_S = 300.0


def _setting(config: LoadedConfig, dotted: str) -> object:
    if dotted == "state_directory":
        return config.state_directory
    if dotted == "watch.base_output_directory":
        return config.base_output_directory
    section, key = dotted.split(".")
    return getattr(getattr(config.settings, section), key)


class Daemon:
    def __init__(
        self,
        config: LoadedConfig,
        metrics: Metrics | None = None,
        load_again: Callable[[], LoadedConfig] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self._load_again = load_again
        self._loaded_stamp = self._config_stamp()
        self.rpi_calls = RpiCallStore(lambda: self.config.settings.hook.call_ttl_seconds)
        self.notifier = Notifier()
        self._stop = asyncio.Event()
        self._hard_stop = asyncio.Event()
        self._pattern = parse_path_pattern(config.settings.watch.path_pattern)
        self.journal: Journal | None = None
        self.watcher: Watcher | None = None
        self.listener: JournalListener | None = None
        self.sender: Sender | None = None
        self.queue: FileQueue | None = None
        self.state_writes = StateWrites()

    # --- wiring --------------------------------------------------------------------------

    def _transport(self) -> Transport:
        braze = self.config.settings.braze
        if self.config.dry_run:
            outbox = self.config.state_directory / "outbox"
            return OutboxTransport(outbox, on_failure=self.state_writes.failed)
        assert self.config.api_key is not None  # load_config refuses a live run without one
        return HttpTransport(
            braze.api_url, self.config.api_key, braze.request_timeout_seconds, braze.max_in_flight
        )

    def export_of(self, rel_path: str) -> ExportPath | None:
        where = classify_path(rel_path, self._pattern, set(self.config.channels))
        return where if isinstance(where, ExportPath) else None

    # --- RPI's post-execution call --------------------------------------------------------

    def rpi_call_for(self, export: ExportPath) -> RpiCall | None:
        return self.rpi_calls.call_for(export.values)

    def accept_rpi_call(self, payload: object) -> tuple[int, str]:
        """Store the call (before answering), then let matching files settle sooner."""
        call = parse_rpi_call(payload, time.time())
        if isinstance(call, str):
            self.metrics.hook_calls.labels("invalid").inc()
            return 400, call
        if self.journal is None:
            self.metrics.hook_calls.labels("unavailable").inc()
            return 503, "not started yet"
        try:
            new = self.rpi_calls.add(call)
        except JournalError as exc:
            self.metrics.hook_calls.labels("unavailable").inc()
            return 503, f"cannot keep the call now: {exc}"
        if not new:
            self.metrics.hook_calls.labels("duplicate").inc()
            return 200, "already known"
        self.metrics.hook_calls.labels("accepted").inc()
        log.info(
            "RPI says channel %r, offer %r finished (channel execution %s)",
            call.channel,
            call.offer,
            call.channel_execution_id or "?",
        )
        if self.watcher is not None:
            self.watcher.reconsider()
        return 202, "accepted"

    def readiness(self) -> list[str]:
        problems = []
        if self.journal is None:
            problems.append("the journal is not open")
        if self.watcher is None or not self.watcher.running:
            problems.append("the watcher is not running")
        elif not self.watcher.initialized:
            # Before the first scan, a file dropped now could be taken for history.
            problems.append("the first scan of the export folder has not completed")
        if self.sender is not None and self.sender.auth_failing:
            problems.append(f"Braze refuses the API key or URL ({self.sender.auth_message})")
        if self.sender is not None and self.sender.failing_for_s() > UNREACHABLE_AFTER_S:
            problems.append(
                f"Braze has not answered well for {self.sender.failing_for_s():.0f} s (retrying)"
            )
        if self.state_writes.problem is not None:
            problems.append(f"{self.state_writes.problem}: sending is paused")
        if self.queue is not None and self.sender is not None and not self.sender.auth_failing:
            stalled_s = self.queue.stalled_for_s(time.monotonic())
            if stalled_s > STALLED_AFTER_S and self.sender.failing_for_s() < UNREACHABLE_AFTER_S:
                age_s = self.queue.oldest_unfinished_age_s(time.time())
                problems.append(
                    f"no queued file has moved for {stalled_s:.0f} s while Braze answers"
                    f" (the oldest unfinished file is {age_s:.0f} s old); see the log and"
                    " `rpi-braze-sync status`"
                )
        if self.watcher is not None and not self.watcher.share_available:
            problems.append(
                f"the export folder {self.config.base_output_directory} is not available"
            )
        return problems

    # --- reload --------------------------------------------------------------------------

    def reload(self) -> bool:
        """Apply the configuration file again; files in progress keep the mapping they had."""
        if self._load_again is None:
            return False
        self.notifier.reloading()
        try:
            return self._reload()
        except Exception as exc:  # whatever the file holds (a bomb, a bug), the daemon goes on
            log.error(
                "configuration reload failed, still running on the previous one: %s: %s",
                type(exc).__name__,
                str(exc)[:200],
            )
            self.metrics.config_reloads.labels("failed").inc()
            self.metrics.config_last_reload_ok.set(0)
            return False
        finally:
            self.notifier.ready(self._status_line())

    def _reload(self) -> bool:
        assert self._load_again is not None
        self._loaded_stamp = self._config_stamp()  # this version, good or bad, is handled
        try:
            new = self._load_again()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error(
                    "configuration reload refused, still running on the previous one: %s", problem
                )
            self.metrics.config_reloads.labels("failed").inc()
            self.metrics.config_last_reload_ok.set(0)
            return False
        old = self.config
        kept = [key for key in RESTART_ONLY if _setting(new, key) != _setting(old, key)]
        if kept:
            log.warning("%s changed: takes effect at the next restart", ", ".join(kept))
        watch = new.settings.watch.model_copy(
            update={
                k: getattr(old.settings.watch, k)
                for k in ("base_output_directory", "observer", "path_pattern")
            }
        )
        braze = new.settings.braze.model_copy(update={"dry_run": old.settings.braze.dry_run})
        settings = new.settings.model_copy(
            update={"watch": watch, "braze": braze, "http": old.settings.http}
        )
        self.config = replace(
            new,
            settings=settings,
            state_directory=old.state_directory,
            base_output_directory=old.base_output_directory,
            api_key=new.api_key if not old.dry_run else old.api_key,
        )
        self.metrics.add_channels(self.config.channels)
        if self.queue is not None:
            self.queue.config = self.config
        if self.watcher is not None:
            self.watcher.apply(watch, set(self.config.channels))
        if self.listener is not None:
            self.listener.apply(self.config)
        if self.sender is not None:
            self.sender.apply(braze)
            transport = self.sender.transport
            if isinstance(transport, HttpTransport) and self.config.api_key is not None:
                transport.set_endpoint(braze.api_url, self.config.api_key)
        self.metrics.config_reloads.labels("applied").inc()
        self.metrics.config_last_reload_ok.set(1)
        log.info(
            "configuration reloaded from %s: applies to files that start from now on", new.path
        )
        return True

    def _config_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.config.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def _watch_config_file(self) -> None:
        """Reload when the file changes, as after SIGHUP (editors and config management)."""
        while True:
            await asyncio.sleep(CONFIG_POLL_S)
            current = self._config_stamp()
            if current is not None and current != self._loaded_stamp:
                self.reload()

    # --- running -------------------------------------------------------------------------

    def _status_line(self) -> str:
        queued = self.queue.waiting() if self.queue else 0
        active = self.queue.active.status_text() if self.queue and self.queue.active else "idle"
        return f"{active}; {queued} files queued"

    async def _keep_systemd_informed(self, tasks: list[asyncio.Task[None]]) -> None:
        """WATCHDOG=1 every half period while every task is alive, and a STATUS line."""
        period = (self.notifier.watchdog_s or 10.0) / 2
        while True:
            if all(not t.done() for t in tasks):
                if self.notifier.watchdog_s:
                    self.notifier.watchdog()
                self.notifier.status(self._status_line())
            await asyncio.sleep(period)

    def request_stop(self) -> None:
        self.notifier.stopping()
        if self._stop.is_set():
            log.warning("second stop signal: stopping now; the journal resumes from its checkpoint")
            self._hard_stop.set()
        else:
            log.info("stopping: no new files; requests in flight may finish")
            self._stop.set()

    async def run(self, install_signals: bool = True) -> int:
        config = self.config
        tune_garbage_collector()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        # The lock first: a second daemon on the same state directory stops here (exit 75),
        # before it writes anything; then the address (exit 69), before the journal.
        lock = StateLock(config.state_directory)
        lock.acquire()
        try:
            tighten_modes(config.state_directory)
            hook = HookRoute(self.accept_rpi_call, config.hook_token)
            server = await start_server(
                build_app(self.metrics, self.readiness, hook), config.settings.http.listen
            )
            try:
                return await self._run()
            finally:
                await server.cleanup()
        finally:
            lock.release()

    async def _run(self) -> int:
        config = self.config
        config.state_directory.mkdir(parents=True, exist_ok=True)
        self._warn_if_network_state(config)
        self.metrics.add_channels(config.channels)
        journal = self.journal = SqliteJournal(journal_path(config.state_directory, config.dry_run))
        self.rpi_calls.attach(journal)
        transport = self._transport()
        sender = self.sender = Sender(transport, config.settings.braze, self.metrics)
        queue = self.queue = FileQueue(config, journal, sender, self.metrics, self.export_of)
        queue.state_writes = self.state_writes
        self.state_writes.on_change(lambda writable: sender.hold(not writable))
        mapping_process = (
            MappingProcess(secret_env_names(config))
            if config.settings.performance.mapping_process
            else None
        )
        queue.mapping_process = mapping_process
        delta = queue.delta = open_delta(config, self.metrics)
        for record in journal.queued():
            queue.put(record)  # interrupted sends resume first, in their order
        self.listener = JournalListener(config, journal, queue, self.rpi_calls, self.export_of)
        self.watcher = Watcher(
            config.base_output_directory,
            config.settings.watch,
            set(config.channels),
            self.listener,
            self.metrics,
        )
        self._announce()
        tasks = [
            asyncio.create_task(sender.run(), name="sender"),
            asyncio.create_task(queue.run(), name="file-queue"),
            asyncio.create_task(self.watcher.run(), name="watcher"),
        ]
        helpers = [
            asyncio.create_task(self._watch_config_file(), name="config-watch"),
            asyncio.create_task(queue.watch_journal(), name="journal-watch"),
            asyncio.create_task(self._keep_systemd_informed(tasks), name="sd-notify"),
            asyncio.create_task(
                self.state_writes.probe_while_failing(lambda: self._probe(journal)),
                name="state-probe",
            ),
        ]
        if delta is not None:
            helpers.append(asyncio.create_task(delta.sweep_forever(), name="delta-retention"))
        self.notifier.ready(f"watching {config.base_output_directory}")
        stop_wait = asyncio.create_task(self._stop.wait())
        await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        crashed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
        for task in crashed:
            log.critical("task %s failed", task.get_name(), exc_info=task.exception())
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        try:
            await self._shut_down(tasks, sender, queue)
        finally:
            stop_wait.cancel()
            await transport.close()
            if mapping_process is not None:
                await mapping_process.stop()
            if delta is not None:
                await delta.close()
            journal.close()
            self.notifier.close()
        log.info("stopped")
        return 1 if crashed else 0

    async def _shut_down(
        self, tasks: list[asyncio.Task[None]], sender: Sender, queue: FileQueue
    ) -> None:
        sender_task, queue_task, watcher_task = tasks
        watcher_task.cancel()
        queue_task.cancel()  # stops reading; the active file keeps its place
        sender.stop_dispatching()
        grace = self.config.settings.shutdown_grace_seconds
        drain = asyncio.create_task(sender.drain(grace))
        hard = asyncio.create_task(self._hard_stop.wait())
        await asyncio.wait([drain, hard], return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():
            drain.cancel()
        hard.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        sender_task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if queue.active is not None:
            queue.active.suspend()

    def _probe(self, journal: Journal) -> None:
        probe_writable(self.config.state_directory)
        journal.note_writable()

    @staticmethod
    def _warn_if_network_state(config: LoadedConfig) -> None:
        fs_type = filesystem_of(read_mounts(), str(config.state_directory.resolve()))
        if fs_type in NETWORK_FILESYSTEMS:
            log.warning(
                "the state directory %s is on a network filesystem (%s): SQLite's locking is "
                "unreliable there; put state_directory on a local disk",
                config.state_directory,
                fs_type,
            )

    def _announce(self) -> None:
        config = self.config
        log.info(
            "rpi-braze-sync %s (Python %s) started, pid %d",
            package_version(),
            platform.python_version(),
            os.getpid(),
        )
        base = config.base_output_directory
        pattern = config.settings.watch.path_pattern.replace("{", "<").replace("}", ">")
        log.info("watching %s: drop exports as %s/%s/<file>", base, base, pattern)
        log.info(
            "channels: %s",
            ", ".join(f"{n!r} ({c.settings.mode})" for n, c in config.channels.items()),
        )
        if config.dry_run:
            log.info(
                "dry run: request bodies go to %s, nothing is sent",
                config.state_directory / "outbox",
            )
        else:
            log.info("sending to %s/users/track", config.settings.braze.api_url)
        log.info("rejected rows: %s", config.state_directory / "rejects")
        log.info("metrics: http://%s/metrics", config.settings.http.listen)


def secret_env_names(config: LoadedConfig) -> set[str]:
    """Environment variables that hold (or lead to) a secret: the mapping process goes without."""
    names = {config.settings.braze.api_key_env, "BRAZE_API_KEY", "CREDENTIALS_DIRECTORY"}
    if config.settings.hook.token_env:
        names.add(config.settings.hook.token_env)
    return names


async def serve(config: LoadedConfig, load_again: Callable[[], LoadedConfig]) -> int:
    return await Daemon(config, load_again=load_again).run()
