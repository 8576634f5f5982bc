"""The watcher's observer thread (native inotify or polling): started, checked on every
watcher loop, and started again when it or one of its emitter threads died.

Its events are only hints: the thread hands each path over to the event loop with
`call_soon_threadsafe` and never touches the disk or the watcher's state itself. What is on
the share is decided by the watcher's scans (watch.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .metrics import Metrics
from .settings import WatchSettings
from .watchrules import choose_observer

log = logging.getLogger(__name__)


def read_mounts() -> str:
    try:
        return Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


class Forwarder(FileSystemEventHandler):
    """Runs in the observer's thread: only hands paths over to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[str, bool], None]) -> None:
        self._loop = loop
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = os.fsdecode(raw)  # a name that is not UTF-8 keeps its bytes
                self._loop.call_soon_threadsafe(self._sink, path, event.is_directory)


class ObserverThread:
    """One observer on `base`, started again when it stopped. `sink(path, is_directory)` is
    called in the event loop's thread."""

    def __init__(self, base: Path, metrics: Metrics, sink: Callable[[str, bool], None]) -> None:
        self.base = base
        self.metrics = metrics
        self._sink = sink
        self.current: BaseObserver | None = None
        self.kind = ""
        self.restarts = 0

    def alive(self) -> bool:
        """The observer's thread and every emitter thread (inotify readers) it started."""
        observer = self.current
        return (
            observer is not None
            and observer.is_alive()
            and all(emitter.is_alive() for emitter in observer.emitters)
        )

    def ensure(self, settings: WatchSettings) -> bool:
        """Start the observer if it is not running. True when a running one had died: events
        may have been missed while it was down, so the caller scans again."""
        if self.alive():
            return False
        died = self.current is not None
        if died:
            log.warning(
                "the %s observer's thread stopped (share unavailable, or an error in it);"
                " restarting it (scans go on meanwhile)",
                self.kind,
            )
            self.restarts += 1
            self.metrics.observer_restarts.inc()
            self.stop()
        kind = choose_observer(settings.observer, read_mounts(), str(self.base.resolve()))
        observer: BaseObserver = (
            PollingObserver(timeout=settings.poll_interval_seconds)
            if kind == "polling"
            else Observer()
        )
        try:
            observer.schedule(
                Forwarder(asyncio.get_running_loop(), self._sink), str(self.base), recursive=True
            )
            observer.start()
        except OSError as exc:
            log.warning("cannot watch %s yet (%s); relying on scans", self.base, exc.strerror)
            return died
        if kind != self.kind:
            log.info("watching %s with the %s observer", self.base, kind)
        self.current, self.kind = observer, kind
        return died

    def stop(self) -> None:
        if self.current is not None:
            try:
                self.current.stop()
                self.current.join(timeout=5)
            except Exception:
                log.debug("observer stop failed", exc_info=True)
            self.current = None
