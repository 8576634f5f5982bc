"""SQLite journal: every export file seen, its state, its progress and its outcome.

One row per file version (relative path + size + mtime, and the content hash once read). The
checkpoint is the number of leading records settled (acknowledged by Braze or rejected), so a
restart resumes there. All writes are single transactions: a kill at any moment leaves a
consistent journal.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import JournalError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    rel_path TEXT NOT NULL,
    channel TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    state TEXT NOT NULL,
    checkpoint INTEGER NOT NULL DEFAULT 0,
    rows_sent INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    fields_dropped INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    first_seen_at REAL NOT NULL,
    completed_at REAL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    gone_at REAL,
    rpi_call TEXT,
    retry INTEGER NOT NULL DEFAULT 0,
    rows_total INTEGER
);
CREATE TABLE IF NOT EXISTS rpi_calls (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    body TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS files_by_path ON files (rel_path, id);
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, id);
"""

_ADDED_COLUMNS = {  # since the first schema: name -> declaration
    "gone_at": "REAL",
    "rpi_call": "TEXT",
    "retry": "INTEGER NOT NULL DEFAULT 0",
    "rows_total": "INTEGER",
}

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


def journal_path(state_directory: Path, dry_run: bool) -> Path:
    # A dry run keeps its own journal, so a later live run still sends the same files.
    return state_directory / ("journal-dry-run.sqlite" if dry_run else "journal.sqlite")


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


class Journal:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        """`read_only` for tools (status) run as another user: they must not leave files the
        daemon's user cannot write, nor change the schema under a running daemon."""
        self.path = path
        if read_only:
            try:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None)
                self._db.execute("PRAGMA busy_timeout=5000")
                self._columns = self._select_list()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot open the journal {path}: {exc}") from None
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
            self._columns = self._select_list()
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None

    def _add_missing_columns(self) -> None:
        """A journal written by an earlier version gains the columns added since."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        for column, declaration in _ADDED_COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE files ADD COLUMN {column} {declaration}")

    def _select_list(self) -> str:
        """FileRecord's columns; NULL for those a journal opened read-only has not gained yet
        (a daemon of an earlier version wrote it)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        return ", ".join(c if c in have else "NULL" for c in FileRecord.__dataclass_fields__)

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        try:
            cursor = self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        return cursor.lastrowid or 0

    # --- first start ---------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'initialized_at'").fetchone()
        return row is not None

    def mark_initialized(self, preexisting: list[tuple[str, str | None, int, int]]) -> None:
        """Record the files found at the very first start as pre-existing, atomically."""
        now = time.time()
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (rel, ch, size, mtime, PREEXISTING, now, now)
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
        sql = f"SELECT {self._columns} FROM files {where}"
        try:
            rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from None
        for row in rows:
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
        marks = ", ".join("?" * len(QUEUED_STATES))
        return list(
            self._records(
                f"WHERE state IN ({marks}) AND id > ? ORDER BY completed_at, id",
                (*QUEUED_STATES, after_id),
            )
        )

    def all(self) -> list[FileRecord]:
        return list(self._records("ORDER BY id"))

    # --- lifecycle -----------------------------------------------------------------------

    def record_seen(self, rel_path: str, channel: str, size: int, mtime_ns: int) -> int:
        now = time.time()
        return self._write(
            "INSERT INTO files (rel_path, channel, size, mtime_ns, state, first_seen_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rel_path, channel, size, mtime_ns, SEEN, now, now),
        )

    def seen_id(self, rel_path: str) -> int | None:
        row = self._db.execute(
            "SELECT id FROM files WHERE rel_path = ? AND state = ? ORDER BY id DESC LIMIT 1",
            (rel_path, SEEN),
        ).fetchone()
        return int(row[0]) if row else None

    def record_complete(
        self, rel_path: str, channel: str, size: int, mtime_ns: int, rpi_call: str | None = None
    ) -> FileRecord:
        """The file settled: its 'seen' record (or a new one) becomes complete, queued to send."""
        now = time.time()
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

    def restart_from(self, file_id: int, checkpoint: int) -> None:
        """Send a version from `checkpoint` (0: from scratch), forgetting earlier counts."""
        self._write(
            "UPDATE files SET checkpoint = ?, rows_sent = 0, rows_rejected = 0,"
            " fields_dropped = 0, updated_at = ? WHERE id = ?",
            (checkpoint, time.time(), file_id),
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
                marks = ", ".join("?" * len(FINAL_STATES))
                rows = self._db.execute(
                    f"SELECT id, rel_path, gone_at FROM files WHERE state IN ({marks})",
                    FINAL_STATES,
                ).fetchall()
                for file_id, rel_path, gone_at in rows:
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
        self, file_id: int, checkpoint: int, sent: int, rejected: int, dropped: int
    ) -> None:
        self._write(
            "UPDATE files SET checkpoint = ?, rows_sent = ?, rows_rejected = ?,"
            " fields_dropped = ?, updated_at = ? WHERE id = ?",
            (checkpoint, sent, rejected, dropped, time.time(), file_id),
        )

    def store_rpi_call(self, body: str) -> bool:
        """Keep a post-execution call (its JSON text); False if the same call was kept before."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO rpi_calls (received_at, body) VALUES (?, ?)", (time.time(), body)
        )
        return cursor.rowcount == 1

    def rpi_calls_since(self, since: float) -> list[tuple[float, str]]:
        """Calls received after `since` (epoch seconds), oldest first; older ones are dropped."""
        try:
            self._db.execute("DELETE FROM rpi_calls WHERE received_at < ?", (since,))
            rows = self._db.execute(
                "SELECT received_at, body FROM rpi_calls ORDER BY id"
            ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from None
        return [(float(at), str(body)) for at, body in rows]

    def finish(self, file_id: int, state: str, reason: str | None = None) -> None:
        now = time.time()
        self._write(
            "UPDATE files SET state = ?, reason = ?, finished_at = ?, updated_at = ? WHERE id = ?",
            (state, reason, now, now, file_id),
        )
