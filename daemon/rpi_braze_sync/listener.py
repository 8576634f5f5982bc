"""What the watcher finds, written to the journal: the first start's history, files seen,
gone and complete (queued to send, with RPI's post-execution call when one matched).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from .config import LoadedConfig
from .errors import JournalError
from .filequeue import FileQueue
from .filestates import FileState
from .firststart import start_journal
from .journal import Journal
from .rpicalls import RpiCallStore
from .shareio import Snapshot
from .watchrules import ExportPath

log = logging.getLogger(__name__)


class JournalListener:
    """What the watcher finds, written to the journal; complete files go to the queue."""

    def __init__(
        self,
        config: LoadedConfig,
        journal: Journal,
        queue: FileQueue,
        rpi_calls: RpiCallStore,
        export_of: Callable[[str], ExportPath | None],
    ) -> None:
        self.config = config
        self.journal = journal
        self.rpi_calls = rpi_calls
        self.export_of = export_of
        self.queue = queue
        self.state_writes = queue.state_writes
        # Complete files the journal could not record yet (a full disk): the watcher counts
        # them as known, so they are kept here and recorded at the next scan.
        self._unrecorded: dict[str, tuple[ExportPath, int, int, float]] = {}

    def apply(self, config: LoadedConfig) -> None:
        """A reloaded configuration: hook.recheck_seconds, journal.retention_days."""
        self.config = config

    def initialize(self, snapshot: Snapshot) -> Snapshot:
        """The first scan. At the very first start of the state directory, what is already on
        the share is history, not news (firststart.py)."""
        journal, config = self.journal, self.config
        if journal.initialized:
            self._forget_vanished_while_down(snapshot)
            return self._known()

        def channel_of(rel: str) -> str | None:
            export = self.export_of(rel)
            return export.channel if export else None

        history = start_journal(
            journal,
            snapshot,
            dry_run=config.dry_run,
            backfill=config.settings.watch.backfill,
            channel_of=channel_of,
            base=config.base_output_directory,
            state_directory=config.state_directory,
        )
        return {**self._known(), **snapshot} if history else self._known()

    def _known(self) -> Snapshot:
        # A file only 'seen' before a restart is compared afresh, so it still completes.
        return {
            r.rel_path: (r.size, r.mtime_ns)
            for r in self.journal.latest_by_path().values()
            if r.state != FileState.SEEN
        }

    def _forget_vanished_while_down(self, snapshot: Snapshot) -> None:
        """A file seen before a restart but gone now will never complete: say so, so that no
        append file waits for it."""
        for record in self.journal.latest_by_path().values():
            if record.state == FileState.SEEN and record.rel_path not in snapshot:
                self.journal.finish(record.id, FileState.VANISHED, "deleted before it was complete")

    def seen(self, rel: str, export: ExportPath, size: int, mtime_ns: int, at: float) -> None:
        try:  # only a note: a file completes without it
            if self.journal.seen_id(rel) is None:
                self.journal.record_seen(rel, export.channel, size, mtime_ns, at)
        except JournalError as exc:
            self.state_writes.failed("the journal", exc)

    def gone(self, rel: str) -> None:
        self._unrecorded.pop(rel, None)
        try:  # a 'seen' record left behind is marked vanished at the next start
            file_id = self.journal.seen_id(rel)
            if file_id is not None:
                self.journal.finish(file_id, FileState.VANISHED, "deleted before it was complete")
        except JournalError as exc:
            self.state_writes.failed("the journal", exc)

    def waiting(self, rel: str, export: ExportPath, reason: str | None) -> None:
        """Why the file waits (it cannot be opened), shown by `status`; None once it can."""
        file_id = self.journal.seen_id(rel)
        if file_id is None and reason is not None:
            file_id = self.journal.record_seen(rel, export.channel, 0, 0)
        if file_id is not None:
            self.journal.note(file_id, reason)

    def complete(self, rel: str, export: ExportPath, size: int, mtime_ns: int, at: float) -> None:
        self._unrecorded[rel] = (export, size, mtime_ns, at)
        self._record_complete()

    def _record_complete(self) -> None:
        for rel, (export, size, mtime_ns, at) in list(self._unrecorded.items()):
            call = self.rpi_calls.call_for(export.values)
            body = orjson.dumps(dict(call.fields)).decode() if call else None
            try:
                record = self.journal.record_complete(rel, export.channel, size, mtime_ns, body, at)
            except JournalError as exc:
                self.state_writes.failed("the journal", exc)
                return
            del self._unrecorded[rel]
            self.queue.put(record)

    def fast_settle_s(self, export: ExportPath) -> float | None:
        if self.rpi_calls.call_for(export.values) is None:
            return None
        return self.config.settings.hook.recheck_seconds

    def scanned(self, snapshot: Snapshot) -> None:
        self._record_complete()
        retention_s = self.config.settings.journal.retention_days * 86400
        try:
            self.journal.sweep(set(snapshot), retention_s)
        except JournalError as exc:
            self.state_writes.failed("the journal", exc)
