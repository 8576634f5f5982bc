"""The PostgreSQL journal's connection, fencing and side tables (pgjournal.py holds the
files' records): one synchronous connection, opened again after the database went away.

Fencing: the leader sets `epoch` to the lease's. A fenced write is one statement that holds
only while `ha_lease.epoch` is still that number (a share lock on the lease row, so a
concurrent take-over waits for it or makes it change nothing); one that changes nothing
because the lease moved raises LeaseLostError. Calls from RPI and the operator's `retry` are
not fenced: either machine may take them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from .config import LoadedConfig
from .errors import JournalError, LeaseLostError
from .pgconnect import connect, shown_url, why
from .pgschema import migrate

HELD = "EXISTS (SELECT 1 FROM ha_lease WHERE id = 1 AND epoch = %(epoch)s FOR SHARE)"


class PgStore:
    """journal.Journal's interface, on PostgreSQL. `epoch`: the lease held (None: standby or
    a command-line tool, which may only read, take RPI calls and queue retries)."""

    def __init__(self, config: LoadedConfig, role: str = "journal", migrate_schema: bool = True):
        url = config.journal_url
        assert url is not None
        self._config = config
        self._role = role
        self.where = shown_url(url)
        # Not a file: its folder is the state directory (firststart.py looks beside it).
        self.path = config.state_directory / "journal.postgresql"
        self._epoch: int | None = None
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        # The loop reads while the state writer's thread changes the files' states
        # (listener.py, pipeline.py): one statement or transaction at a time on `_conn`.
        self._lock = threading.RLock()
        # The rejected rows' store (store_rejects, rejects_of): opened when first used.
        self._rejects: PgStore | None = None
        self._rejects_lock = threading.Lock()
        conn = self._connection()
        if migrate_schema:
            try:
                migrate(conn, self.where)
            except psycopg.Error as exc:
                conn.close()
                raise self._failed("migration", exc) from None
            except JournalError:
                conn.close()
                raise

    @property
    def epoch(self) -> int | None:
        return self._epoch

    @epoch.setter
    def epoch(self, epoch: int | None) -> None:
        self._epoch_ends()
        self._close_rejects(epoch)  # (its writes are fenced by the epoch it was opened with)

    def _epoch_ends(self) -> None:
        """Called before the epoch changes (pgjournal.py: its checkpoint writer)."""

    # --- the connection ------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._config, self._role)
            self._conn.execute("SET synchronous_commit TO off")
        return self._conn

    def _failed(self, what: str, exc: psycopg.Error) -> JournalError:
        if isinstance(exc, psycopg.OperationalError) and self._conn is not None:
            self._conn.close()  # reconnect at the next call
        return JournalError(f"journal {what} failed ({self.where}): {why(exc)}")

    def close(self) -> None:
        self._close_rejects(self._epoch)
        if self._conn is not None:
            self._conn.close()

    def _rows(self, sql: str, args: dict[str, object] | tuple[object, ...] = ()) -> list[Any]:
        with self._lock:  # (a failure closes the connection: under it too)
            try:
                return self._connection().execute(sql, args).fetchall()
            except psycopg.Error as exc:
                raise self._failed("read", exc) from None

    def _change(self, sql: str, args: dict[str, object], fenced: bool = True) -> list[Any]:
        """A write; `fenced` ones hold only under the lease held (else LeaseLostError)."""
        if fenced:
            if self.epoch is None:
                raise LeaseLostError("this daemon does not hold the lease: it writes nothing")
            args = {**args, "epoch": self.epoch}
        with self._lock:
            try:
                cursor = self._connection().execute(sql, args)
                rows = cursor.fetchall() if cursor.description else []
                changed = cursor.rowcount
            except psycopg.Error as exc:
                raise self._failed("write", exc) from None
        if fenced and changed == 0:
            self._check_lease()
        return rows

    def _check_lease(self) -> None:
        (row,) = self._rows("SELECT epoch FROM ha_lease WHERE id = 1")
        if row[0] != self.epoch:
            raise LeaseLostError(
                f"the lease moved to epoch {row[0]} (this daemon held {self.epoch}): another"
                " daemon leads; nothing more is written"
            )

    # --- rejected rows, whichever daemon rejected them -----------------------------------
    # Stored and read in the state writer's thread (settlement.py: before the checkpoint
    # that covers them), while the event loop uses `_conn`: on a connection of their own,
    # used by one thread at a time (the lock; a new epoch or `close` waits for the call).

    def store_rejects(self, file_id: int, rows: Sequence[tuple[int, list[str], str]]) -> None:
        """(line number, cells, reason) of rows rejected; a row rejected again (by the other
        daemon, after a fail-over) is kept once."""
        if not rows:
            return
        with self._rejects_lock:
            if self._epoch is None:  # (before a connection is opened for nothing)
                raise LeaseLostError("this daemon does not hold the lease: it writes nothing")
            self._rejects_store()._change(
                "INSERT INTO rejects (file_id, line_no, cells, reason)"
                " SELECT %(id)s, r.line_no, r.cells, r.reason FROM unnest(%(lines)s::bigint[],"
                " %(cells)s::text[], %(reasons)s::text[]) AS r (line_no, cells, reason)"
                f" WHERE {HELD} ON CONFLICT DO NOTHING",
                {"id": file_id, "lines": [line for line, _, _ in rows],
                 "cells": [orjson.dumps(cells).decode() for _, cells, _ in rows],
                 "reasons": [reason for _, _, reason in rows]},
            )  # fmt: skip

    def rejects_of(self, file_id: int) -> list[tuple[int, list[str], str]]:
        with self._rejects_lock:
            rows = self._rejects_store()._rows(
                "SELECT line_no, cells, reason FROM rejects WHERE file_id = %s ORDER BY line_no",
                (file_id,),
            )
        return [(int(line), list(orjson.loads(cells)), str(reason)) for line, cells, reason in rows]

    def _rejects_store(self) -> PgStore:
        """(Under the lock.)"""
        if self._rejects is None:
            store = PgStore(self._config, "rejects", migrate_schema=False)
            store._epoch = self._epoch
            self._rejects = store
        return self._rejects

    def _close_rejects(self, epoch: int | None) -> None:
        """The rejected rows' store closed (after a call in progress), and `epoch` set: one
        opened after this has it."""
        with self._rejects_lock:
            store, self._rejects, self._epoch = self._rejects, None, epoch
        if store is not None:
            store.close()

    # --- RPI calls and probes (not fenced) -----------------------------------------------

    def store_rpi_call(self, body: str) -> bool:
        rows = self._change(
            "INSERT INTO rpi_calls (received_at, body) VALUES (%(at)s, %(body)s)"
            " ON CONFLICT (body) DO NOTHING RETURNING id",
            {"at": time.time(), "body": body},
            fenced=False,
        )
        return bool(rows)

    def rpi_calls_since(self, since: float) -> list[tuple[float, str]]:
        self._change("DELETE FROM rpi_calls WHERE received_at < %(since)s", {"since": since}, False)
        rows = self._rows("SELECT received_at, body FROM rpi_calls ORDER BY id")
        return [(float(at), str(body)) for at, body in rows]

    def prune_rpi_calls(self, before: float, keep: int) -> None:
        self._change(
            "DELETE FROM rpi_calls WHERE received_at < %(before)s OR id <= COALESCE("
            "(SELECT id FROM rpi_calls ORDER BY id DESC LIMIT 1 OFFSET %(keep)s), 0)",
            {"before": before, "keep": keep},
            fenced=False,
        )

    def note_writable(self) -> None:
        self._change(
            "INSERT INTO meta VALUES ('write_probe', %(now)s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            {"now": str(time.time())},
            fenced=False,
        )
