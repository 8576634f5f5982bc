"""SQLite journal: every export file seen, its state, its progress and its outcome.

One row per file version (relative path + size + mtime, and the content hash once read). The
checkpoint is the number of leading records settled (acknowledged by Braze or rejected), and
`settled_ahead` the ranges settled beyond it, so a restart resumes there and skips those.
All writes are single transactions: a kill at any moment leaves a consistent journal.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import JournalError
from .journaldb import open_database

# States of a file version, in lifecycle order.
PREEXISTING = "preexisting"  # on the share before the very first start; never sent
SEEN = "seen"  # found, still being written (or not yet settled)
COMPLETE = "complete"  # settled on disk, queued to send
SENDING = "sending"
DONE = "done"
FAILED = "failed"
VANISHED = "vanished"
QUEUED_STATES = (COMPLETE, SENDING)
FINAL_STATES = (PREEXISTING, DONE, FAILED, VANISHED)
STATES = (PREEXISTING, SEEN, COMPLETE, SENDING, DONE, FAILED, VANISHED)


def _db_text(value: object) -> object:
    """A name that is not UTF-8 (os.fsdecode keeps its bytes as surrogates, which SQLite's
    text cannot hold) is stored as those bytes, a BLOB; _py_text turns it back, byte for byte.
    Every other value is stored as it is."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(value)
    return value


def _db_args(args: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(map(_db_text, args))


def _py_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as read: a BLOB (only ever a name stored by _db_text) back to its text."""
    return tuple(os.fsdecode(v) if isinstance(v, bytes) else v for v in row)


def journal_path(state_directory: Path, dry_run: bool) -> Path:
    """The journal a run uses: `dry_run` is the configuration's (braze.dry_run, or --dry-run).

    A dry run keeps its own journal, so it never marks a file done for the live run."""
    return state_directory / ("journal-dry-run.sqlite" if dry_run else "journal.sqlite")


FileVersion = tuple[str, str | None, int, int]  # rel_path, channel, size, mtime_ns


@dataclass(frozen=True)
class FileRecord:
    id: int
    rel_path: str
    channel: str | None
    size: int
    mtime_ns: int
    sha256: str | None
    state: str
    checkpoint: int
    rows_sent: int
    rows_rejected: int
    fields_dropped: int
    reason: str | None
    first_seen_at: float
    completed_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float
    gone_at: float | None
    rpi_call: str | None
    retry: int  # 1: asked for by `rpi-braze-sync retry`: sent whole, whatever was sent before
    rows_total: int | None  # data records in the version being sent, counted when inspected
    settled_ahead: str | None  # JSON [[start, end], ...]: records settled beyond the checkpoint

    @property
    def ahead(self) -> list[tuple[int, int]]:
        """The ranges [start, end) of records settled beyond the checkpoint."""
        if not self.settled_ahead:
            return []
        return [(int(start), int(end)) for start, end in orjson.loads(self.settled_ahead)]


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _ranges_json(ranges: Sequence[tuple[int, int]]) -> str | None:
    return orjson.dumps(ranges).decode() if ranges else None


class Journal:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        """`read_only` for tools (status) run as another user: they must not leave files the
        daemon's user cannot write, nor change the schema under a running daemon."""
        self.path = path
        self._db = open_database(path, read_only)
        try:
            self._columns = self._select_list()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None

    def _select_list(self) -> str:
        """FileRecord's columns; NULL for those a journal opened read-only has not gained yet
        (a daemon of an earlier version wrote it)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        return ", ".join(c if c in have else "NULL" for c in FileRecord.__dataclass_fields__)

    def close(self) -> None:
        self._db.close()

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            rows = self._db.execute(sql, _db_args(args)).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from None
        return list(map(_py_row, rows))

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        try:
            cursor = self._db.execute(sql, _db_args(args))
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        return cursor.lastrowid or 0

    # --- first start ---------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'initialized_at'").fetchone()
        return row is not None

    def preexisting(self) -> list[FileVersion]:
        """The files recorded as pre-existing at the first start."""
        sql = "SELECT rel_path, channel, size, mtime_ns FROM files WHERE state = ? ORDER BY id"
        return [(rel, channel, size, mtime) for rel, channel, size, mtime in
                self._read(sql, (PREEXISTING,))]  # fmt: skip

    def mark_initialized(self, preexisting: list[FileVersion]) -> None:
        """Record the files found at the very first start as pre-existing, atomically."""
        now = time.time()
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        _db_args((rel, ch, size, mtime, PREEXISTING, now, now))
                        for rel, ch, size, mtime in preexisting
                    ],
                )
                self._db.execute("INSERT INTO meta VALUES ('initialized_at', ?)", (str(now),))
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None

    def _transaction(self) -> sqlite3.Connection:
        self._db.execute("BEGIN")
        return self._db

    # --- reading -------------------------------------------------------------------------

    def _records(self, where: str = "", args: tuple[object, ...] = ()) -> Iterator[FileRecord]:
        for row in self._read(f"SELECT {self._columns} FROM files {where}", args):
            yield FileRecord(*row)

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
        states = (SEEN, *QUEUED_STATES)
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
            (DONE, *channels),
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
            (rel_path, channel, size, mtime_ns, SEEN, now, now),
        )

    def seen_id(self, rel_path: str) -> int | None:
        row = self._db.execute(
            "SELECT id FROM files WHERE rel_path = ? AND state = ? ORDER BY id DESC LIMIT 1",
            _db_args((rel_path, SEEN)),
        ).fetchone()
        return int(row[0]) if row else None

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
                (rel_path, channel, size, mtime_ns, COMPLETE, now, now, now, rpi_call),
            )
        else:
            self._write(
                "UPDATE files SET state = ?, size = ?, mtime_ns = ?, completed_at = ?,"
                " updated_at = ?, rpi_call = COALESCE(?, rpi_call) WHERE id = ?",
                (COMPLETE, size, mtime_ns, now, now, rpi_call, file_id),
            )
        return self.get(file_id)

    def previous_done(self, rel_path: str, before_id: int) -> FileRecord | None:
        """The last finished send of this path before `before_id`: what a new version is
        compared with (same content: not resent; appended to: continue)."""
        for record in self._records(
            "WHERE rel_path = ? AND id < ? AND state = ? AND sha256 IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            (rel_path, before_id, DONE),
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
            " rows_rejected = 0, fields_dropped = 0, updated_at = ? WHERE id = ?",
            (checkpoint, _ranges_json(ahead), time.time(), file_id),
        )

    def request_retry(self, record: FileRecord, size: int, mtime_ns: int) -> FileRecord:
        """A new version of a finished file, queued to be sent again from its first row."""
        now = time.time()
        file_id = self._write(
            "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
            " completed_at, updated_at, reason, retry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            (record.rel_path, record.channel, size, mtime_ns, COMPLETE, now, now, now,
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
            with self._transaction():
                rows = self._db.execute(
                    "SELECT id, rel_path, gone_at FROM files"
                    f" WHERE state IN ({_marks(FINAL_STATES)})",
                    FINAL_STATES,
                ).fetchall()
                for file_id, rel_path, gone_at in map(_py_row, rows):
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
        self._write(
            "UPDATE files SET state = ?, sha256 = ?, size = ?, mtime_ns = ?, rows_total = ?,"
            " started_at = COALESCE(started_at, ?), updated_at = ? WHERE id = ?",
            (SENDING, sha256, size, mtime_ns, rows_total, now, now, file_id),
        )

    def checkpoint(
        self,
        file_id: int,
        checkpoint: int,
        sent: int,
        rejected: int,
        dropped: int,
        ahead: Sequence[tuple[int, int]] = (),
    ) -> None:
        """How far a file got: the settled prefix, the settled ranges beyond it and the
        counts, in one statement (a kill leaves them consistent)."""
        self._write(
            "UPDATE files SET checkpoint = ?, settled_ahead = ?, rows_sent = ?,"
            " rows_rejected = ?, fields_dropped = ?, updated_at = ? WHERE id = ?",
            (checkpoint, _ranges_json(ahead), sent, rejected, dropped, time.time(), file_id),
        )

    def store_rpi_call(self, body: str) -> bool:
        """Keep a post-execution call (its JSON text); False if the same call was kept before."""
        try:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO rpi_calls (received_at, body) VALUES (?, ?)",
                (time.time(), body),
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        return cursor.rowcount == 1

    def rpi_calls_since(self, since: float) -> list[tuple[float, str]]:
        """Calls received after `since` (epoch seconds), oldest first; older ones are dropped."""
        self._write("DELETE FROM rpi_calls WHERE received_at < ?", (since,))
        rows = self._read("SELECT received_at, body FROM rpi_calls ORDER BY id")
        return [(float(at), str(body)) for at, body in rows]

    def note(self, file_id: int, reason: str | None) -> None:
        """Why a file waits (it cannot be opened), without changing its state; None clears."""
        self._write(
            "UPDATE files SET reason = ?, updated_at = ? WHERE id = ?",
            (reason, time.time(), file_id),
        )

    def note_writable(self) -> None:
        """A real write (StateWrites' probe): raises JournalError while the journal cannot
        take one."""
        self._write("INSERT OR REPLACE INTO meta VALUES ('write_probe', ?)", (str(time.time()),))

    def prune_rpi_calls(self, before: float, keep: int) -> None:
        """Forget calls received before `before`, and all but the newest `keep`."""
        try:
            self._db.execute(
                "DELETE FROM rpi_calls WHERE received_at < ? OR id <= COALESCE("
                "(SELECT id FROM rpi_calls ORDER BY id DESC LIMIT 1 OFFSET ?), 0)",
                (before, keep),
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None

    def finish(self, file_id: int, state: str, reason: str | None = None) -> None:
        now = time.time()
        self._write(
            "UPDATE files SET state = ?, reason = ?, finished_at = ?, updated_at = ? WHERE id = ?",
            (state, reason, now, now, file_id),
        )
