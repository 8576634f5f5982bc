"""The SQLite journal (journal.Journal): every export file seen, its state, its progress and
its outcome.

One row per file version (relative path + size + mtime, and the content hash once read). The
checkpoint is the number of leading records settled (acknowledged by Braze or rejected), and
`settled_ahead` the ranges settled beyond it, so a restart resumes there and skips those.
All writes are single transactions: a kill at any moment leaves a consistent journal. The
connection, its lock and the side tables (RPI's calls, the write probe) are sqlitebase.py's.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .errors import JournalError
from .filestates import (
    FINAL_STATES,
    QUEUED_STATES,
    UNFINISHED_STATES,
    FileState,
    check_transition,
    sources_of,
)
from .journal import FileRecord, FileVersion, ranges_json
from .journaldb import db_args, py_row
from .sqlitebase import SqliteStore


def journal_path(state_directory: Path, dry_run: bool) -> Path:
    """The journal a run uses: `dry_run` is the configuration's (braze.dry_run, or --dry-run).

    A dry run keeps its own journal, so it never marks a file done for the live run."""
    return state_directory / ("journal-dry-run.sqlite" if dry_run else "journal.sqlite")


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


class SqliteJournal(SqliteStore):
    """journal.Journal on SQLite: the files' records (sqlitebase.py holds the connection and
    the side tables)."""

    checkpoint_blocks = True  # a write to the database file (journal.Journal)

    def __init__(self, path: Path, read_only: bool = False) -> None:
        super().__init__(path, read_only)
        try:
            self._columns = self._select_list()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None

    def _select_list(self) -> str:
        """FileRecord's columns; NULL for those a journal opened read-only has not gained yet
        (a daemon of an earlier version wrote it)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        return ", ".join(c if c in have else "NULL" for c in FileRecord.__dataclass_fields__)

    def _move(self, file_id: int, target: FileState, sets: str, args: tuple[object, ...]) -> None:
        """UPDATE files SET state = target, `sets` (its ? bound to `args`), only from a state
        filestates.TRANSITIONS allows; StateTransitionError otherwise."""
        sources = sources_of(target)
        cursor = self._execute(
            f"UPDATE files SET state = ?, {sets} WHERE id = ? AND state IN ({_marks(sources)})",
            (target, *args, file_id, *sources),
        )
        if cursor.rowcount == 0:
            check_transition(self.get(file_id).state, target)  # raises: say which move

    # --- first start ---------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return bool(self._read("SELECT value FROM meta WHERE key = 'initialized_at'"))

    def preexisting(self) -> list[FileVersion]:
        """The files recorded as pre-existing at the first start."""
        sql = "SELECT rel_path, channel, size, mtime_ns FROM files WHERE state = ? ORDER BY id"
        return [(rel, channel, size, mtime) for rel, channel, size, mtime in
                self._read(sql, (FileState.PREEXISTING,))]  # fmt: skip

    def mark_initialized(self, preexisting: list[FileVersion]) -> None:
        """Record the files found at the very first start as pre-existing, atomically."""
        now = time.time()
        try:
            with self._lock, self._transaction():
                self._db.executemany(
                    "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        db_args((rel, ch, size, mtime, FileState.PREEXISTING, now, now))
                        for rel, ch, size, mtime in preexisting
                    ],
                )
                self._db.execute("INSERT INTO meta VALUES ('initialized_at', ?)", (str(now),))
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None

    # --- reading -------------------------------------------------------------------------

    def _records(self, where: str = "", args: tuple[object, ...] = ()) -> Iterator[FileRecord]:
        for row in self._read(f"SELECT {self._columns} FROM files {where}", args):
            values = list(row)
            values[6] = FileState(values[6])  # (a journal holds only known states)
            yield FileRecord(*values)

    def get(self, file_id: int) -> FileRecord:
        for record in self._records("WHERE id = ?", (file_id,)):
            return record
        raise JournalError(f"no journal record {file_id}")

    def latest_by_path(self) -> dict[str, FileRecord]:
        """The newest record of every path: what the watcher compares the share against."""
        latest: dict[str, FileRecord] = {}
        for record in self._records("ORDER BY id"):
            latest[record.rel_path] = record
        return latest

    def queued(self, after_id: int = 0) -> list[FileRecord]:
        """Files to send, in the order they became complete (a restart resumes these)."""
        return list(
            self._records(
                f"WHERE state IN ({_marks(QUEUED_STATES)}) AND id > ? ORDER BY completed_at, id",
                (*QUEUED_STATES, after_id),
            )
        )

    def all(self) -> list[FileRecord]:
        return list(self._records("ORDER BY id"))

    def unfinished(self, channels: Sequence[str]) -> list[FileRecord]:
        """Files of these channels seen, complete or being sent: not finished yet."""
        states = UNFINISHED_STATES
        return list(
            self._records(
                f"WHERE state IN ({_marks(states)}) AND channel IN ({_marks(channels)})"
                " ORDER BY id",
                (*states, *channels),
            )
        )

    def last_sent_at(self, channels: Sequence[str]) -> float | None:
        """When the last file of these channels that sent rows finished (epoch seconds)."""
        (last,) = self._read(
            "SELECT MAX(finished_at) FROM files WHERE state = ? AND rows_sent > 0"
            f" AND channel IN ({_marks(channels)})",
            (FileState.DONE, *channels),
        )[0]
        return None if last is None else float(last)

    # --- lifecycle -----------------------------------------------------------------------

    def record_seen(
        self, rel_path: str, channel: str, size: int, mtime_ns: int, seen_at: float | None = None
    ) -> int:
        """A new file, still being written. `seen_at`: files found in one scan share it."""
        now = time.time() if seen_at is None else seen_at
        return self._write(
            "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rel_path, channel, size, mtime_ns, FileState.SEEN, now, now),
        )

    def seen_id(self, rel_path: str) -> int | None:
        rows = self._read(
            "SELECT id FROM files WHERE rel_path = ? AND state = ? ORDER BY id DESC LIMIT 1",
            (rel_path, FileState.SEEN),
        )
        return int(rows[0][0]) if rows else None

    def record_complete(
        self,
        rel_path: str,
        channel: str,
        size: int,
        mtime_ns: int,
        rpi_call: str | None = None,
        completed_at: float | None = None,
    ) -> FileRecord:
        """The file settled: its 'seen' record (or a new one) becomes complete, queued to send.
        `completed_at`: files found complete together share it."""
        now = time.time() if completed_at is None else completed_at
        file_id = self.seen_id(rel_path)
        if file_id is None:
            file_id = self._write(
                "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
                " completed_at, updated_at, rpi_call) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rel_path, channel, size, mtime_ns, FileState.COMPLETE, now, now, now, rpi_call),
            )
        else:
            self._move(
                file_id,
                FileState.COMPLETE,
                "size = ?, mtime_ns = ?, completed_at = ?, updated_at = ?,"
                " rpi_call = COALESCE(?, rpi_call)",
                (size, mtime_ns, now, now, rpi_call),
            )
        return self.get(file_id)

    def previous_done(self, rel_path: str, before_id: int) -> FileRecord | None:
        """The last finished send of this path before `before_id`: what a new version is
        compared with (same content: not resent; appended to: continue)."""
        for record in self._records(
            "WHERE rel_path = ? AND id < ? AND state = ? AND sha256 IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            (rel_path, before_id, FileState.DONE),
        ):
            return record
        return None

    def restart_from(
        self, file_id: int, checkpoint: int, ahead: Sequence[tuple[int, int]] = ()
    ) -> None:
        """Send a version from `checkpoint` (0: from scratch), forgetting earlier counts;
        `ahead`: ranges beyond it that were settled and stay so."""
        self._write(
            "UPDATE files SET checkpoint = ?, settled_ahead = ?, rows_sent = 0,"
            " rows_rejected = 0, fields_dropped = 0, points_sent = NULL, points_skipped = NULL,"
            " updated_at = ? WHERE id = ?",
            (checkpoint, ranges_json(ahead), time.time(), file_id),
        )

    def request_retry(self, record: FileRecord, size: int, mtime_ns: int) -> FileRecord:
        """A new version of a finished file, queued to be sent again from its first row."""
        now = time.time()
        file_id = self._write(
            "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
            " completed_at, updated_at, reason, retry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            (record.rel_path, record.channel, size, mtime_ns, FileState.COMPLETE, now, now, now,
             f"retry requested (after record {record.id})"),
        )  # fmt: skip
        return self.get(file_id)

    def latest(self, rel_path: str) -> FileRecord | None:
        for record in self._records("WHERE rel_path = ? ORDER BY id DESC LIMIT 1", (rel_path,)):
            return record
        return None

    def sweep(self, present: set[str], retention_s: float) -> int:
        """Note which finished files left the share; forget those gone for `retention_s`.

        A record lives as long as its file plus the retention, so a rescan never resends.
        """
        now = time.time()
        removed = 0
        try:
            with self._lock, self._transaction():
                rows = self._db.execute(
                    "SELECT id, rel_path, gone_at FROM files"
                    f" WHERE state IN ({_marks(FINAL_STATES)})",
                    FINAL_STATES,
                ).fetchall()
                for file_id, rel_path, gone_at in map(py_row, rows):
                    if rel_path in present:
                        if gone_at is not None:
                            self._db.execute(
                                "UPDATE files SET gone_at = NULL WHERE id = ?", (file_id,)
                            )
                    elif gone_at is None:
                        self._db.execute(
                            "UPDATE files SET gone_at = ? WHERE id = ?", (now, file_id)
                        )
                    elif now - gone_at > retention_s:
                        self._db.execute("DELETE FROM files WHERE id = ?", (file_id,))
                        removed += 1
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        return removed

    def start(
        self, file_id: int, sha256: str, size: int, mtime_ns: int, rows_total: int | None = None
    ) -> None:
        now = time.time()
        self._move(
            file_id,
            FileState.SENDING,
            "sha256 = ?, size = ?, mtime_ns = ?, rows_total = ?,"
            " started_at = COALESCE(started_at, ?), updated_at = ?",
            (sha256, size, mtime_ns, rows_total, now, now),
        )

    def checkpoint(
        self,
        file_id: int,
        checkpoint: int,
        sent: int,
        rejected: int,
        dropped: int,
        ahead: Sequence[tuple[int, int]] = (),
        points: tuple[int, int] | None = None,
        written: Callable[[], None] | None = None,
    ) -> None:
        """How far a file got: the settled prefix, the settled ranges beyond it and the
        counts, in one statement (a kill leaves them consistent)."""
        points_sent, points_skipped = points if points is not None else (None, None)
        self._write(
            "UPDATE files SET checkpoint = ?, settled_ahead = ?, rows_sent = ?,"
            " rows_rejected = ?, fields_dropped = ?, points_sent = ?, points_skipped = ?,"
            " updated_at = ? WHERE id = ?",
            (checkpoint, ranges_json(ahead), sent, rejected, dropped, points_sent,
             points_skipped, time.time(), file_id),
        )  # fmt: skip
        if written is not None:
            written()

    def note(self, file_id: int, reason: str | None) -> None:
        """Why a file waits (it cannot be opened), without changing its state; None clears."""
        self._write(
            "UPDATE files SET reason = ?, updated_at = ? WHERE id = ?",
            (reason, time.time(), file_id),
        )

    def finish(self, file_id: int, state: FileState, reason: str | None = None) -> None:
        now = time.time()
        self._move(
            file_id, state, "reason = ?, finished_at = ?, updated_at = ?", (reason, now, now)
        )
