"""What the watcher finds, written to the journal: the first start's history, files seen,
gone and complete (queued to send, with RPI's post-execution call when one matched).

The writes (and the reads they depend on) are the state writer's (statewriter.py), in the
order the watcher found things, after whatever was handed over before (a file's checkpoints,
its end): the event loop does not wait for the disk or the database. A complete file is
queued once its record is written.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

import orjson

from .config import LoadedConfig
from .errors import JournalError
from .filequeue import FileQueue
from .filestates import FileState
from .firststart import start_journal
from .journal import FileRecord, Journal
from .rpicalls import RpiCallStore
from .shareio import Snapshot
from .watchrules import ExportPath

log = logging.getLogger(__name__)
T = TypeVar("T")
Unrecorded = tuple[ExportPath, int, int, float]  # export, size, mtime_ns, found at
GONE = "deleted before it was complete"


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
        self.writer = queue.sending.writer
        # Complete files the journal could not record yet (a full disk): the watcher counts
        # them as known, so they are kept here and recorded at the next scan.
        self._unrecorded: dict[str, Unrecorded] = {}
        self._recording: dict[str, Unrecorded] = {}  # handed to the writer, not written yet

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
        journal = self.journal
        for record in journal.latest_by_path().values():
            if record.state == FileState.SEEN and record.rel_path not in snapshot:
                self._write(functools.partial(journal.finish, record.id, FileState.VANISHED, GONE))

    def _write(
        self,
        write: Callable[[], T],
        then: Callable[[T], None] | None = None,
        anyway: Callable[[], None] | None = None,
    ) -> None:
        """Hand `write` to the state writer; `then` gets its result, `anyway` is called
        whatever the outcome (on the loop). A journal that refuses the write pauses sending
        until it takes writes (statewrites.py)."""
        written = self.writer.submit(write)

        def done(_: object) -> None:
            if anyway is not None:
                anyway()
            if written.cancelled():  # (the writer never cancels: only a loop torn down)
                return
            exc = written.exception()
            if exc is None:
                if then is not None:
                    then(written.result())
            elif isinstance(exc, JournalError):
                self.state_writes.failed("the journal", exc)
            else:  # not the journal's refusal: a bug, said with its traceback
                log.error("a journal write of the watcher's failed", exc_info=exc)

        written.add_done_callback(done)

    def seen(self, rel: str, export: ExportPath, size: int, mtime_ns: int, at: float) -> None:
        journal = self.journal

        def write() -> None:  # only a note: a file completes without it
            if journal.seen_id(rel) is None:
                journal.record_seen(rel, export.channel, size, mtime_ns, at)

        self._write(write)

    def gone(self, rel: str) -> None:
        self._unrecorded.pop(rel, None)
        journal = self.journal

        def write() -> None:  # a 'seen' record left behind is marked vanished at the next start
            file_id = journal.seen_id(rel)
            if file_id is not None:
                journal.finish(file_id, FileState.VANISHED, GONE)

        self._write(write)

    def waiting(self, rel: str, export: ExportPath, reason: str | None) -> None:
        """Why the file waits (it cannot be opened), shown by `status`; None once it can."""
        journal = self.journal

        def write() -> None:
            file_id = journal.seen_id(rel)
            if file_id is None and reason is not None:
                file_id = journal.record_seen(rel, export.channel, 0, 0)
            if file_id is not None:
                journal.note(file_id, reason)

        self._write(write)

    def complete(self, rel: str, export: ExportPath, size: int, mtime_ns: int, at: float) -> None:
        self._unrecorded[rel] = (export, size, mtime_ns, at)
        self._record_complete()

    def _record_complete(self) -> None:
        for rel, entry in self._unrecorded.items():
            if self._recording.get(rel) is not entry:  # (recorded twice, it would be sent twice)
                self._record_one(rel, entry)

    def _record_one(self, rel: str, entry: Unrecorded) -> None:
        self._recording[rel] = entry
        export, size, mtime_ns, at = entry
        call = self.rpi_calls.call_for(export.values)
        body = orjson.dumps(dict(call.fields)).decode() if call else None
        journal = self.journal

        def write() -> FileRecord:
            return journal.record_complete(rel, export.channel, size, mtime_ns, body, at)

        def recorded(record: FileRecord) -> None:  # (a failure: recorded at the next scan)
            if self._unrecorded.get(rel) is entry:
                del self._unrecorded[rel]
            self.queue.put(record)

        def handed() -> None:
            if self._recording.get(rel) is entry:
                del self._recording[rel]

        self._write(write, recorded, handed)

    def fast_settle_s(self, export: ExportPath) -> float | None:
        if self.rpi_calls.call_for(export.values) is None:
            return None
        return self.config.settings.hook.recheck_seconds

    def scanned(self, snapshot: Snapshot) -> None:
        self._record_complete()
        retention_s = self.config.settings.journal.retention_days * 86400
        present, journal = set(snapshot), self.journal
        self._write(lambda: journal.sweep(present, retention_s))
