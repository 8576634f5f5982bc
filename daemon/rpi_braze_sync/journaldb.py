"""Opening the SQLite journal: its schema, the columns added since its first version, and the
settings every connection needs. journal.py reads and writes it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from .errors import JournalDamagedError, JournalError

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
    rows_total INTEGER,
    settled_ahead TEXT,
    points_sent INTEGER,
    points_skipped INTEGER
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
    "settled_ahead": "TEXT",
    "points_sent": "INTEGER",
    "points_skipped": "INTEGER",
}


def open_database(path: Path, read_only: bool) -> sqlite3.Connection:
    """The journal at `path`, created or brought up to date unless `read_only`."""
    try:
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
            db.execute("PRAGMA busy_timeout=5000")
            _check_integrity(db)
            return db
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        _add_missing_columns(db)
        version = (str(SCHEMA_VERSION),)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", version)
        _check_integrity(db)
    except (sqlite3.Error, OSError) as exc:
        raise _opening_failed(path, exc) from None
    return db


_DAMAGE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class _Damaged(sqlite3.DatabaseError):
    """What PRAGMA quick_check found."""


def _check_integrity(db: sqlite3.Connection) -> None:
    """SQLite's own check of every page (quick_check: not the indexes' contents), so that a
    damaged journal stops the start instead of a write hours later."""
    found = [" ".join(str(row[0]).split()) for row in db.execute("PRAGMA quick_check(3)")]
    if found != ["ok"]:
        raise _Damaged("; ".join(found))  # one line: it ends up in one log or error line


def _opening_failed(path: Path, exc: BaseException) -> JournalError:
    damaged = isinstance(exc, _Damaged) or getattr(exc, "sqlite_errorcode", None) in _DAMAGE_CODES
    if damaged:
        return JournalDamagedError(
            f"the journal {path} is damaged or is not a journal ({exc}); restarting will not"
            " help: move it aside (see the README, 'A damaged journal')"
        )
    return JournalError(f"cannot open the journal {path}: {exc}")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A journal written by an earlier version gains the columns added since."""
    have = {row[1] for row in db.execute("PRAGMA table_info(files)")}
    for column, declaration in _ADDED_COLUMNS.items():
        if column not in have:
            db.execute(f"ALTER TABLE files ADD COLUMN {column} {declaration}")


def db_text(value: object) -> object:
    """A name that is not UTF-8 (os.fsdecode keeps its bytes as surrogates, which SQLite's
    text cannot hold) is stored as those bytes, a BLOB; py_row turns it back, byte for byte.
    Every other value is stored as it is."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(value)
    return value


def db_args(args: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(map(db_text, args))


def py_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as read: a BLOB (only ever a name stored by db_text) back to its text."""
    return tuple(os.fsdecode(v) if isinstance(v, bytes) else v for v in row)
