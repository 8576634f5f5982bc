"""What the watcher finds, written to the journal: the first start's history, files seen,
gone and complete (queued to send, with RPI's post-execution call when one matched).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson

from .filequeue import FileQueue
from .journal import SEEN, VANISHED, Journal
from .watch import Snapshot
from .watchrules import ExportPath

if TYPE_CHECKING:
    from .app import Daemon

log = logging.getLogger(__name__)


class JournalListener:
    """What the watcher finds, written to the journal; complete files go to the queue."""

    def __init__(self, daemon: Daemon, journal: Journal, queue: FileQueue) -> None:
        self.daemon = daemon
        self.journal = journal
        self.queue = queue

    def initialize(self, snapshot: Snapshot) -> Snapshot:
        """The very first start: what is already on the share is history, not news."""
        journal, config = self.journal, self.daemon.config
        # A file only 'seen' before a restart is compared afresh, so it still completes.
        known = {
            r.rel_path: (r.size, r.mtime_ns)
            for r in journal.latest_by_path().values()
            if r.state != SEEN
        }
        if journal.initialized:
            return known
        if config.settings.watch.backfill:
            journal.mark_initialized([])
            log.info(
                "first start with watch.backfill: the %d files there will be sent", len(snapshot)
            )
            return known
        rows = []
        for rel, (size, mtime) in snapshot.items():
            export = self.daemon.export_of(rel)
            rows.append((rel, export.channel if export else None, size, mtime))
        journal.mark_initialized(rows)
        log.info(
            "first start: %d files already in %s recorded as pre-existing and not sent "
            "(set watch.backfill: true to send them)",
            len(rows),
            config.base_output_directory,
        )
        return {**known, **snapshot}

    def seen(self, rel: str, export: ExportPath, size: int, mtime_ns: int) -> None:
        if self.journal.seen_id(rel) is None:
            self.journal.record_seen(rel, export.channel, size, mtime_ns)

    def gone(self, rel: str) -> None:
        file_id = self.journal.seen_id(rel)
        if file_id is not None:
            self.journal.finish(file_id, VANISHED, "deleted before it was complete")

    def complete(self, rel: str, export: ExportPath, size: int, mtime_ns: int) -> None:
        call = self.daemon.rpi_call_for(export)
        body = orjson.dumps(dict(call.fields)).decode() if call else None
        self.queue.put(self.journal.record_complete(rel, export.channel, size, mtime_ns, body))

    def fast_settle_s(self, export: ExportPath) -> float | None:
        if self.daemon.rpi_call_for(export) is None:
            return None
        return self.daemon.config.settings.hook.recheck_seconds

    def scanned(self, snapshot: Snapshot) -> None:
        retention_s = self.daemon.config.settings.journal.retention_days * 86400
        self.journal.sweep(set(snapshot), retention_s)
