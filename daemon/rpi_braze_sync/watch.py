"""Watch BASE_OUTPUT_DIRECTORY: watchdog events as hints, a periodic scan as the truth.

The observer thread (observer.py) hands its events over as hints; the scans and stats here
decide. Disk access runs in worker threads: a network share can hang.
Reports each export once it is complete (size and mtime stable for settle_seconds, read with
open + fstat, which revalidates NFS's attribute cache). Only regular files inside the share
are considered (shareio.py): links, FIFOs, devices, sockets and folders where a file should be
are skipped and logged once; a file that cannot be opened waits, with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Protocol

from .logs import display_name
from .mapping import parse_path_pattern
from .metrics import Metrics
from .observer import ObserverThread
from .settings import WatchSettings
from .shareio import Snapshot, Unreadable, scan_tree, stat_file
from .watchrules import (
    ExportPath,
    Ignored,
    SettleTracker,
    classify_path,
    is_ignored_name,
)

log = logging.getLogger(__name__)


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

    def waiting(self, rel: str, export: ExportPath, reason: str | None) -> None:
        """The file cannot be opened (reason), or can again (None)."""
        ...

    def scanned(self, snapshot: Snapshot) -> None: ...

    def fast_settle_s(self, export: ExportPath) -> float | None:
        """A shorter settle time for this file (RPI said its run finished), or None."""
        ...


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
        self.observer = ObserverThread(base, metrics, self._on_event)
        self._hints: set[str] = set()
        self._wake = asyncio.Event()
        self._rescan_now = True
        self._logged_ignored: set[str] = set()
        self._unreadable: dict[str, str] = {}  # path -> why it cannot be opened (waits)
        self.running = False
        self.share_available = True

    # --- events ------------------------------------------------------------------------------

    def _on_event(self, path: str, is_directory: bool) -> None:
        if is_directory:
            self._rescan_now = True  # a new folder: its files may predate our watch on it
        else:
            self._hints.add(path)
        self._wake.set()

    # --- scanning ------------------------------------------------------------------------

    def _ignore(self, rel: str, reason: str, why: str) -> None:
        """Log a path left alone once (until a reload), and count it by reason."""
        if rel in self._logged_ignored:
            return
        self._logged_ignored.add(rel)
        self.metrics.ignored_files.labels(reason).inc()
        log.info("ignoring %s: %s", display_name(rel), why)

    def _skip_special(self, rel: str, kind: str) -> None:
        """Not a regular file: never opened (a link may lead outside the share, a FIFO or a
        device would block or never end)."""
        if rel in self._tracker:  # it was a file a moment ago
            self._tracker.forget(rel)
            self.listener.gone(rel)
        self._ignore(rel, kind, f"a {kind}, not a regular file: never read")

    def _consider(self, rel: str, size: int, mtime_ns: int, now: float, found_at: float) -> None:
        if self.known.get(rel) == (size, mtime_ns) or rel in self._unreadable:
            return
        where = classify_path(rel, self._pattern, self.channels)
        if isinstance(where, Ignored):
            why = (
                "does not fit the layout"
                if where.reason == "layout"
                else "is under no configured channel"
            )
            self._ignore(rel, where.reason, f"it {why} ({self.settings.path_pattern}/<file>)")
            return
        first_sight = rel not in self._tracker
        self._tracker.observe(rel, size, mtime_ns, now)
        if first_sight:
            self.listener.seen(rel, where, size, mtime_ns, found_at)
        fast = self.listener.fast_settle_s(where)
        if fast is not None:
            self._tracker.shorten(rel, fast, now)

    def _cannot_open(self, rel: str, reason: str) -> None:
        """A file that cannot be opened (permissions) waits, with its reason: not taken for
        gone (that would be churn: vanished, seen, vanished...) nor sent half-checked."""
        where = classify_path(rel, self._pattern, self.channels)
        if not isinstance(where, ExportPath):
            return
        if rel not in self._tracker and rel in self.known:
            return  # a version already complete: its send says what it cannot read
        self._tracker.forget(rel)
        if rel not in self._unreadable:
            self._unreadable[rel] = reason
            log.warning(
                "cannot open %s (%s): waiting until it can be read", display_name(rel), reason
            )
            self.listener.waiting(rel, where, f"cannot be opened: {reason} (waiting)")

    def _readable_again(self, rel: str) -> None:
        where = classify_path(rel, self._pattern, self.channels)
        if isinstance(where, ExportPath):
            log.info("%s can be read now", display_name(rel))
            self.listener.waiting(rel, where, None)

    def _rel(self, path: str) -> str | None:
        try:
            rel = Path(path).relative_to(self.base).as_posix()
        except ValueError:
            return None
        return None if any(is_ignored_name(p) for p in rel.split("/")) else rel

    async def _scan(self) -> bool:
        scanned = await asyncio.to_thread(scan_tree, self.base, len(self._pattern))
        self.share_available = scanned is not None
        self.metrics.share_available.set(1 if self.share_available else 0)
        if scanned is None:
            log.warning("the export folder %s is not available; will retry", self.base)
            return False
        snapshot, specials = scanned
        if not self._initialized:
            self.known = self.listener.initialize(snapshot)
            self._initialized = True  # ready from here: what is on the share is known
        self.listener.scanned(snapshot)
        now, found_at = time.monotonic(), time.time()
        for rel, kind in specials.items():
            self._skip_special(rel, kind)
        for rel, (size, mtime) in snapshot.items():
            self._consider(rel, size, mtime, now, found_at)
        return True

    async def _recheck(self) -> None:
        paths = set(self._tracker.paths()) | set(self._unreadable)
        for hint in self._hints:
            rel = self._rel(hint)
            if rel is not None:
                paths.add(rel)
        self._hints.clear()
        if not paths:
            return
        stats = await asyncio.to_thread(lambda: {p: stat_file(self.base, p) for p in paths})
        now, found_at = time.monotonic(), time.time()
        for rel, stat in stats.items():
            if isinstance(stat, Unreadable):
                self._cannot_open(rel, stat.reason)
                continue
            was_waiting = self._unreadable.pop(rel, None) is not None
            if stat is None:
                if rel in self._tracker or was_waiting:
                    self._tracker.forget(rel)
                    self.listener.gone(rel)
            elif isinstance(stat, str):
                if was_waiting:
                    self.listener.gone(rel)
                self._skip_special(rel, stat)
            else:
                if was_waiting:
                    self._readable_again(rel)
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
                if self.observer.ensure(self.settings):
                    self._rescan_now = True  # events may have been missed while it was down
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
            await asyncio.to_thread(self.observer.stop)
