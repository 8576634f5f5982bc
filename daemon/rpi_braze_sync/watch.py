"""Watch BASE_OUTPUT_DIRECTORY: watchdog events as hints, a periodic scan as the truth.

Owns the observer thread (native inotify or polling) and hands its events to the event loop
with `call_soon_threadsafe`. Disk access runs in worker threads: a network share can hang.
Reports each export once it is complete (size and mtime stable for settle_seconds, read with
open + fstat, which revalidates NFS's attribute cache).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .mapping import parse_path_pattern
from .metrics import Metrics
from .settings import WatchSettings
from .watchrules import (
    ExportPath,
    Ignored,
    SettleTracker,
    choose_observer,
    classify_path,
    is_ignored_name,
)

log = logging.getLogger(__name__)
Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns)


class WatchListener(Protocol):
    """What the watcher reports, in the event loop's thread."""

    def initialize(self, snapshot: Snapshot) -> Snapshot:
        """First successful scan; returns the versions already handled (the journal's)."""
        ...

    def seen(self, rel: str, export: ExportPath, size: int, mtime_ns: int, at: float) -> None:
        """A new file. `at` (wall clock) is shared by every file found in one scan."""
        ...

    def gone(self, rel: str) -> None:
        """A file seen but not yet complete disappeared."""
        ...

    def complete(self, rel: str, export: ExportPath, size: int, mtime_ns: int, at: float) -> None:
        """A file is complete. `at` (wall clock) is shared by every file complete at once."""
        ...

    def scanned(self, snapshot: Snapshot) -> None: ...

    def fast_settle_s(self, export: ExportPath) -> float | None:
        """A shorter settle time for this file (RPI said its run finished), or None."""
        ...


def scan_tree(base: Path, max_depth: int) -> Snapshot | None:
    """Every visible file down to `max_depth` folders below `base`; None if the share is gone."""
    found: Snapshot = {}
    try:
        base_fd_check = os.stat(base)
    except OSError:
        return None
    del base_fd_check
    stack: list[tuple[Path, str, int]] = [(base, "", 0)]
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            if depth == 0:
                return None
            continue  # a folder that vanished mid-scan; the next scan will tell
        for entry in entries:
            if is_ignored_name(entry.name):
                continue
            rel = f"{prefix}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < max_depth:
                        stack.append((Path(entry.path), rel + "/", depth + 1))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found[rel] = (st.st_size, st.st_mtime_ns)
            except OSError:
                continue
    return found


def stat_file(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) through open + fstat (fresh attributes on NFS); None if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        return st.st_size, st.st_mtime_ns
    finally:
        os.close(fd)


def read_mounts() -> str:
    try:
        return Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


class _Forwarder(FileSystemEventHandler):
    """Runs in the observer's thread: only hands paths over to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[str, bool], None]) -> None:
        self._loop = loop
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = raw.decode() if isinstance(raw, bytes) else raw
                self._loop.call_soon_threadsafe(self._sink, path, event.is_directory)


class Watcher:
    """Finds complete export files and reports each (path, size, mtime) version once."""

    def __init__(
        self,
        base: Path,
        settings: WatchSettings,
        channels: set[str],
        listener: WatchListener,
        metrics: Metrics,
    ) -> None:
        self.base = base
        self.settings = settings
        self.channels = channels
        self.known: Snapshot = {}
        self.listener = listener
        self.metrics = metrics
        self._initialized = False
        self._pattern = parse_path_pattern(settings.path_pattern)
        self._tracker = SettleTracker(settings.settle_seconds)
        self._observer: BaseObserver | None = None
        self._hints: set[str] = set()
        self._wake = asyncio.Event()
        self._rescan_now = True
        self._logged_ignored: set[str] = set()
        self.observer_kind = ""
        self.running = False
        self.share_available = True

    # --- observer --------------------------------------------------------------------------

    def _on_event(self, path: str, is_directory: bool) -> None:
        if is_directory:
            self._rescan_now = True  # a new folder: its files may predate our watch on it
        else:
            self._hints.add(path)
        self._wake.set()

    def _ensure_observer(self) -> None:
        if self._observer is not None and self._observer.is_alive():
            return
        if self._observer is not None:
            log.warning(
                "the %s observer stopped (share unavailable?); restarting it", self.observer_kind
            )
            self._stop_observer()
        kind = choose_observer(self.settings.observer, read_mounts(), str(self.base.resolve()))
        observer: BaseObserver = (
            PollingObserver(timeout=self.settings.poll_interval_seconds)
            if kind == "polling"
            else Observer()
        )
        try:
            observer.schedule(
                _Forwarder(asyncio.get_running_loop(), self._on_event),
                str(self.base),
                recursive=True,
            )
            observer.start()
        except OSError as exc:
            log.warning("cannot watch %s yet (%s); relying on scans", self.base, exc.strerror)
            return
        if kind != self.observer_kind:
            log.info("watching %s with the %s observer", self.base, kind)
        self._observer, self.observer_kind = observer, kind

    def _stop_observer(self) -> None:
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(timeout=5)
            except Exception:
                log.debug("observer stop failed", exc_info=True)
            self._observer = None

    # --- scanning ------------------------------------------------------------------------

    def _consider(self, rel: str, size: int, mtime_ns: int, now: float, found_at: float) -> None:
        if self.known.get(rel) == (size, mtime_ns):
            return
        where = classify_path(rel, self._pattern, self.channels)
        if isinstance(where, Ignored):
            if rel not in self._logged_ignored:
                self._logged_ignored.add(rel)
                self.metrics.ignored_files.labels(where.reason).inc()
                why = (
                    "does not fit the layout"
                    if where.reason == "layout"
                    else "is under no configured channel"
                )
                log.info("ignoring %s: it %s (%s/<file>)", rel, why, self.settings.path_pattern)
            return
        first_sight = rel not in self._tracker
        self._tracker.observe(rel, size, mtime_ns, now)
        if first_sight:
            self.listener.seen(rel, where, size, mtime_ns, found_at)
        fast = self.listener.fast_settle_s(where)
        if fast is not None:
            self._tracker.shorten(rel, fast, now)

    def _rel(self, path: str) -> str | None:
        try:
            rel = Path(path).relative_to(self.base).as_posix()
        except ValueError:
            return None
        return None if any(is_ignored_name(p) for p in rel.split("/")) else rel

    async def _scan(self) -> bool:
        snapshot = await asyncio.to_thread(scan_tree, self.base, len(self._pattern))
        self.share_available = snapshot is not None
        self.metrics.share_available.set(1 if self.share_available else 0)
        if snapshot is None:
            log.warning("the export folder %s is not available; will retry", self.base)
            return False
        if not self._initialized:
            self.known = self.listener.initialize(snapshot)
            self._initialized = True  # ready from here: what is on the share is known
        self.listener.scanned(snapshot)
        now, found_at = time.monotonic(), time.time()
        for rel, (size, mtime) in snapshot.items():
            self._consider(rel, size, mtime, now, found_at)
        return True

    async def _recheck(self) -> None:
        paths = set(self._tracker.paths())
        for hint in self._hints:
            rel = self._rel(hint)
            if rel is not None:
                paths.add(rel)
        self._hints.clear()
        if not paths:
            return
        stats = await asyncio.to_thread(lambda: {p: stat_file(self.base / p) for p in paths})
        now, found_at = time.monotonic(), time.time()
        for rel, stat in stats.items():
            if stat is None:
                if rel in self._tracker:
                    self._tracker.forget(rel)
                    self.listener.gone(rel)
            else:
                self._consider(rel, stat[0], stat[1], now, found_at)
        for rel, size, mtime in self._tracker.due(now):
            where = classify_path(rel, self._pattern, self.channels)
            if isinstance(where, ExportPath):
                self.known[rel] = (size, mtime)
                self.listener.complete(rel, where, size, mtime, found_at)

    @property
    def initialized(self) -> bool:
        """The first scan is done: files found from now on are news, not history."""
        return self._initialized

    def apply(self, settings: WatchSettings, channels: set[str]) -> None:
        """A reloaded configuration: new channels and timings (the folder and observer stay)."""
        self.settings = settings.model_copy(
            update={"base_output_directory": self.settings.base_output_directory,
                    "observer": self.settings.observer, "path_pattern": self.settings.path_pattern}
        )  # fmt: skip
        self.channels = channels
        self._tracker.settle_s = settings.settle_seconds
        self._logged_ignored.clear()
        self._rescan_now = True  # a newly configured channel's files are found now

    def reconsider(self) -> None:
        """Something changed what settles fast (an RPI call came): look again now."""
        now = time.monotonic()
        for rel in self._tracker.paths():
            where = classify_path(rel, self._pattern, self.channels)
            fast = self.listener.fast_settle_s(where) if isinstance(where, ExportPath) else None
            if fast is not None:
                self._tracker.shorten(rel, fast, now)
        self._rescan_now = True  # files written before the call but not yet seen
        self._wake.set()

    async def run(self) -> None:
        self.running = True
        next_scan = 0.0
        try:
            while True:
                self._ensure_observer()
                now = time.monotonic()
                if self._rescan_now or now >= next_scan:
                    self._rescan_now = False
                    ok = await self._scan()
                    next_scan = now + (
                        self.settings.rescan_interval_seconds
                        if ok
                        else min(5.0, self.settings.rescan_interval_seconds)
                    )
                if self._initialized:
                    await self._recheck()
                self._wake.clear()
                # Wake when the next file could be complete, so a short settle is not
                # rounded up to the poll interval.
                due_in = self._tracker.next_due_in(time.monotonic())
                timeout = self.settings.poll_interval_seconds
                if due_in is not None:
                    timeout = min(timeout, due_in + 0.01)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
                else:
                    # A file being written raises an event per write: gather them a moment.
                    await asyncio.sleep(min(0.2, self.settings.poll_interval_seconds))
        finally:
            self.running = False
            await asyncio.to_thread(self._stop_observer)
