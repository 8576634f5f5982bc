"""The SQLite journal's connection and side tables (sqlitejournal.py holds the files'
records): one connection, serialised by one lock, since the event loop and the state writer's
thread both use it; sqlite3's errors become JournalError here.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .errors import JournalError
from .journaldb import db_args, open_database, py_row


class SqliteStore:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        """`read_only` for tools (status) run as another user: they must not leave files the
        daemon's user cannot write, nor change the schema under a running daemon."""
        self.path = path
        self._lock = threading.RLock()
        self._db = open_database(path, read_only)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                rows = self._db.execute(sql, db_args(args)).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"journal read failed: {exc}") from None
        return list(map(py_row, rows))

    def _execute(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._db.execute(sql, db_args(args))
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        return self._execute(sql, args).lastrowid or 0

    def _transaction(self) -> sqlite3.Connection:
        self._db.execute("BEGIN")
        return self._db

    # --- RPI calls and probes -----------------------------------------------------------

    def store_rpi_call(self, body: str) -> bool:
        """Keep a post-execution call (its JSON text); False if the same call was kept before."""
        cursor = self._execute(
            "INSERT OR IGNORE INTO rpi_calls (received_at, body) VALUES (?, ?)",
            (time.time(), body),
        )
        return cursor.rowcount == 1

    def rpi_calls_since(self, since: float) -> list[tuple[float, str]]:
        """Calls received after `since` (epoch seconds), oldest first; older ones are dropped."""
        self._write("DELETE FROM rpi_calls WHERE received_at < ?", (since,))
        rows = self._read("SELECT received_at, body FROM rpi_calls ORDER BY id")
        return [(float(at), str(body)) for at, body in rows]

    def note_writable(self) -> None:
        """A real write (StateWrites' probe): raises JournalError while the journal cannot
        take one."""
        self._write("INSERT OR REPLACE INTO meta VALUES ('write_probe', ?)", (str(time.time()),))

    def prune_rpi_calls(self, before: float, keep: int) -> None:
        """Forget calls received before `before`, and all but the newest `keep`."""
        self._execute(
            "DELETE FROM rpi_calls WHERE received_at < ? OR id <= COALESCE("
            "(SELECT id FROM rpi_calls ORDER BY id DESC LIMIT 1 OFFSET ?), 0)",
            (before, keep),
        )
