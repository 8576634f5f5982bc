"""The journal in PostgreSQL (journal.url): the same records and calls as journal.py's SQLite
journal, shared by an active/standby pair.

Fencing: the leader sets `epoch` to the lease's. Every state change and checkpoint is then
one statement that holds only while `ha_lease.epoch` is still that number (a share lock on the
lease row, so a concurrent take-over waits for it or makes it change nothing); one that
changes nothing because the lease moved raises LeaseLostError. Calls from RPI and the
operator's `retry` are not fenced: either machine may take them.

Checkpoints commit without waiting for the WAL flush (synchronous_commit off, as the SQLite
journal's checkpoints reach the OS and are fsynced once a second): a killed daemon loses
nothing, a crashed database server at most its last fraction of a second of checkpoints
(those rows are sent again). The end of a file waits for its flush.

The calls are synchronous, like journal.py's, on the event loop; a database that stops
answering holds it at most a few seconds (pgconnect.py), then raises JournalError.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import psycopg

from .config import LoadedConfig
from .errors import JournalError, LeaseLostError
from .filestates import FINAL_STATES, QUEUED_STATES, FileState
from .journal import FileRecord, FileVersion
from .pgconnect import connect, shown_url, why
from .pgschema import migrate

COMPLETE, DONE, PREEXISTING = FileState.COMPLETE, FileState.DONE, FileState.PREEXISTING
SEEN, SENDING = FileState.SEEN, FileState.SENDING
_COLUMNS = ", ".join(FileRecord.__dataclass_fields__)
_HELD = "EXISTS (SELECT 1 FROM ha_lease WHERE id = 1 AND epoch = %(epoch)s FOR SHARE)"


def _name(rel_path: str) -> bytes:
    return os.fsencode(rel_path)  # surrogates (a name that is not UTF-8) back to its bytes


def _ranges_json(ranges: Sequence[tuple[int, int]]) -> str | None:
    return orjson.dumps(ranges).decode() if ranges else None


class PgJournal:
    """journal.Journal's interface, on PostgreSQL. `epoch`: the lease held (None: standby or
    a command-line tool, which may only read, take RPI calls and queue retries)."""

    def __init__(self, config: LoadedConfig, role: str = "journal", migrate_schema: bool = True):
        url = config.journal_url
        assert url is not None
        self._config = config
        self._role = role
        self.where = shown_url(url)
        self.path = config.state_directory  # (SQLite's journal path: not a file here)
        self.epoch: int | None = None
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
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
        if self._conn is not None:
            self._conn.close()

    def _rows(self, sql: str, args: dict[str, object] | tuple[object, ...] = ()) -> list[Any]:
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

    # --- first start ---------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return bool(self._rows("SELECT 1 FROM meta WHERE key = 'initialized_at'"))

    def preexisting(self) -> list[FileVersion]:
        sql = "SELECT rel_path, channel, size, mtime_ns FROM files WHERE state = %s ORDER BY id"
        rows = self._rows(sql, (PREEXISTING,))
        return [(os.fsdecode(rel), channel, size, mtime) for rel, channel, size, mtime in rows]

    def mark_initialized(self, preexisting: list[FileVersion]) -> None:
        now = time.time()
        try:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit TO on")
                self._change(f"SELECT 1 WHERE {_HELD}", {})
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO files (rel_path, channel, size, mtime_ns, state,"
                        " first_seen_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(_name(r), c, s, m, PREEXISTING, now, now) for r, c, s, m in preexisting],
                    )
                conn.execute(
                    "INSERT INTO meta VALUES ('initialized_at', %s) ON CONFLICT DO NOTHING",
                    (str(now),),
                )
        except psycopg.Error as exc:
            raise self._failed("write", exc) from None

    # --- reading -------------------------------------------------------------------------

    def _records(self, where: str = "", args: tuple[object, ...] = ()) -> Iterator[FileRecord]:
        for row in self._rows(f"SELECT {_COLUMNS} FROM files {where}", args):
            values = [row[0], os.fsdecode(row[1]), *row[2:]]
            values[6] = FileState(values[6])
            yield FileRecord(*values)

    def get(self, file_id: int) -> FileRecord:
        for record in self._records("WHERE id = %s", (file_id,)):
            return record
        raise JournalError(f"no journal record {file_id}")

    def latest_by_path(self) -> dict[str, FileRecord]:
        return {record.rel_path: record for record in self._records("ORDER BY id")}

    def queued(self, after_id: int = 0) -> list[FileRecord]:
        where = "WHERE state = ANY(%s) AND id > %s ORDER BY completed_at, id"
        return list(self._records(where, (list(QUEUED_STATES), after_id)))

    def all(self) -> list[FileRecord]:
        return list(self._records("ORDER BY id"))

    def unfinished(self, channels: Sequence[str]) -> list[FileRecord]:
        where = "WHERE state = ANY(%s) AND channel = ANY(%s) ORDER BY id"
        return list(self._records(where, ([SEEN, *QUEUED_STATES], list(channels))))

    def last_sent_at(self, channels: Sequence[str]) -> float | None:
        ((last,),) = self._rows(
            "SELECT MAX(finished_at) FROM files WHERE state = %s AND rows_sent > 0"
            " AND channel = ANY(%s)",
            (DONE, list(channels)),
        )
        return None if last is None else float(last)

    def seen_id(self, rel_path: str) -> int | None:
        rows = self._rows(
            "SELECT id FROM files WHERE rel_path = %s AND state = %s ORDER BY id DESC LIMIT 1",
            (_name(rel_path), SEEN),
        )
        return int(rows[0][0]) if rows else None

    def previous_done(self, rel_path: str, before_id: int) -> FileRecord | None:
        where = (
            "WHERE rel_path = %s AND id < %s AND state = %s AND sha256 IS NOT NULL"
            " ORDER BY id DESC LIMIT 1"
        )
        return next(self._records(where, (_name(rel_path), before_id, DONE)), None)

    def latest(self, rel_path: str) -> FileRecord | None:
        where = "WHERE rel_path = %s ORDER BY id DESC LIMIT 1"
        return next(self._records(where, (_name(rel_path),)), None)

    # --- lifecycle (fenced) --------------------------------------------------------------

    def _insert(self, values: dict[str, object], fenced: bool = True) -> int:
        columns = ", ".join(values)
        marks = ", ".join(f"%({c})s" for c in values)
        held = f" WHERE {_HELD}" if fenced else ""
        rows = self._change(
            f"INSERT INTO files ({columns}) SELECT {marks}{held} RETURNING id", values, fenced
        )
        return int(rows[0][0])

    def _update(self, file_id: int, values: dict[str, object]) -> None:
        sets = ", ".join(f"{column} = %({column})s" for column in values)
        self._change(
            f"UPDATE files SET {sets} WHERE id = %(file_id)s AND {_HELD}",
            {**values, "file_id": file_id},
        )

    def record_seen(
        self, rel_path: str, channel: str, size: int, mtime_ns: int, seen_at: float | None = None
    ) -> int:
        now = time.time() if seen_at is None else seen_at
        return self._insert(
            {"rel_path": _name(rel_path), "channel": channel, "size": size, "mtime_ns": mtime_ns,
             "state": SEEN, "first_seen_at": now, "updated_at": now}
        )  # fmt: skip

    def record_complete(
        self,
        rel_path: str,
        channel: str,
        size: int,
        mtime_ns: int,
        rpi_call: str | None = None,
        completed_at: float | None = None,
    ) -> FileRecord:
        now = time.time() if completed_at is None else completed_at
        file_id = self.seen_id(rel_path)
        if file_id is None:
            file_id = self._insert(
                {"rel_path": _name(rel_path), "channel": channel, "size": size,
                 "mtime_ns": mtime_ns, "state": COMPLETE, "first_seen_at": now,
                 "completed_at": now, "updated_at": now, "rpi_call": rpi_call}
            )  # fmt: skip
        else:
            self._change(
                "UPDATE files SET state = %(state)s, size = %(size)s, mtime_ns = %(mtime)s,"
                " completed_at = %(now)s, updated_at = %(now)s,"
                f" rpi_call = COALESCE(%(call)s, rpi_call) WHERE id = %(id)s AND {_HELD}",
                {"state": COMPLETE, "size": size, "mtime": mtime_ns, "now": now,
                 "call": rpi_call, "id": file_id},
            )  # fmt: skip
        return self.get(file_id)

    def restart_from(
        self, file_id: int, checkpoint: int, ahead: Sequence[tuple[int, int]] = ()
    ) -> None:
        self._update(
            file_id,
            {"checkpoint": checkpoint, "settled_ahead": _ranges_json(ahead), "rows_sent": 0,
             "rows_rejected": 0, "fields_dropped": 0, "updated_at": time.time()},
        )  # fmt: skip

    def request_retry(self, record: FileRecord, size: int, mtime_ns: int) -> FileRecord:
        """The operator's `retry`, from either machine: not fenced."""
        now = time.time()
        file_id = self._insert(
            {"rel_path": _name(record.rel_path), "channel": record.channel, "size": size,
             "mtime_ns": mtime_ns, "state": COMPLETE, "first_seen_at": now, "completed_at": now,
             "updated_at": now, "reason": f"retry requested (after record {record.id})",
             "retry": 1},
            fenced=False,
        )  # fmt: skip
        return self.get(file_id)

    def sweep(self, present: set[str], retention_s: float) -> int:
        now = time.time()
        names = [_name(p) for p in present]
        final = list(FINAL_STATES)
        self._change(
            "UPDATE files SET gone_at = NULL WHERE gone_at IS NOT NULL AND state = ANY(%(final)s)"
            f" AND rel_path = ANY(%(names)s) AND {_HELD}",
            {"final": final, "names": names},
        )
        self._change(
            "UPDATE files SET gone_at = %(now)s WHERE gone_at IS NULL AND state = ANY(%(final)s)"
            f" AND NOT rel_path = ANY(%(names)s) AND {_HELD}",
            {"final": final, "names": names, "now": now},
        )
        removed = self._change(
            "DELETE FROM files WHERE state = ANY(%(final)s) AND gone_at < %(before)s"
            f" AND NOT rel_path = ANY(%(names)s) AND {_HELD} RETURNING id",
            {"final": final, "names": names, "before": now - retention_s},
        )
        return len(removed)

    def start(
        self, file_id: int, sha256: str, size: int, mtime_ns: int, rows_total: int | None = None
    ) -> None:
        now = time.time()
        self._change(
            "UPDATE files SET state = %(state)s, sha256 = %(sha)s, size = %(size)s,"
            " mtime_ns = %(mtime)s, rows_total = %(total)s,"
            " started_at = COALESCE(started_at, %(now)s), updated_at = %(now)s"
            f" WHERE id = %(id)s AND {_HELD}",
            {"state": SENDING, "sha": sha256, "size": size, "mtime": mtime_ns,
             "total": rows_total, "now": now, "id": file_id},
        )  # fmt: skip

    def checkpoint(
        self,
        file_id: int,
        checkpoint: int,
        sent: int,
        rejected: int,
        dropped: int,
        ahead: Sequence[tuple[int, int]] = (),
    ) -> None:
        self._update(
            file_id,
            {"checkpoint": checkpoint, "settled_ahead": _ranges_json(ahead), "rows_sent": sent,
             "rows_rejected": rejected, "fields_dropped": dropped, "updated_at": time.time()},
        )  # fmt: skip

    def note(self, file_id: int, reason: str | None) -> None:
        self._update(file_id, {"reason": reason, "updated_at": time.time()})

    def finish(self, file_id: int, state: str, reason: str | None = None) -> None:
        now = time.time()
        try:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit TO on")  # the end waits for the disk
                self._update(
                    file_id,
                    {"state": state, "reason": reason, "finished_at": now, "updated_at": now},
                )
        except psycopg.Error as exc:
            raise self._failed("write", exc) from None

    # --- rejected rows, whichever daemon rejected them -----------------------------------

    def store_rejects(self, file_id: int, rows: Sequence[tuple[int, list[str], str]]) -> None:
        """(line number, cells, reason) of rows rejected; a row rejected again (by the other
        daemon, after a fail-over) is kept once."""
        if not rows:
            return
        self._change(
            "INSERT INTO rejects (file_id, line_no, cells, reason)"
            " SELECT %(id)s, r.line_no, r.cells, r.reason FROM unnest(%(lines)s::bigint[],"
            " %(cells)s::text[], %(reasons)s::text[]) AS r (line_no, cells, reason)"
            f" WHERE {_HELD} ON CONFLICT DO NOTHING",
            {"id": file_id, "lines": [line for line, _, _ in rows],
             "cells": [orjson.dumps(cells).decode() for _, cells, _ in rows],
             "reasons": [reason for _, _, reason in rows]},
        )  # fmt: skip

    def rejects_of(self, file_id: int) -> list[tuple[int, list[str], str]]:
        rows = self._rows(
            "SELECT line_no, cells, reason FROM rejects WHERE file_id = %s ORDER BY line_no",
            (file_id,),
        )
        return [(int(line), list(orjson.loads(cells)), str(reason)) for line, cells, reason in rows]

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
