"""The journal in PostgreSQL (journal.url): the same records and calls as journal.py's SQLite
journal, shared by an active/standby pair.

Every state change and checkpoint is fenced by the lease's epoch (pgbase.py); the operator's
`retry` is not (either machine queues it).

Checkpoints commit without waiting for the WAL flush (synchronous_commit off, as the SQLite
journal's checkpoints reach the OS and are fsynced once a second): a killed daemon loses
nothing, a crashed database server at most its last fraction of a second of checkpoints
(those rows are sent again). The end of a file waits for its flush.

The calls are synchronous, like journal.py's: the files' state changes in the state writer's
thread, reads on the event loop, one at a time on the connection (pgbase.py's lock); a
database that stops answering holds them at most a few seconds (pgconnect.py), then raises
JournalError. The checkpoints (pgcheckpoints.py) and the rejected rows (pgbase.py) have
connections and threads of their own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import orjson
import psycopg

from .errors import JournalError, LeaseLostError
from .filestates import FINAL_STATES, QUEUED_STATES, FileState, check_transition, sources_of
from .journal import FileRecord, FileVersion
from .pgbase import HELD, PgStore
from .pgcheckpoints import CheckpointWriter, Values

COMPLETE, DONE, PREEXISTING = FileState.COMPLETE, FileState.DONE, FileState.PREEXISTING
SEEN, SENDING = FileState.SEEN, FileState.SENDING
_COLUMNS = ", ".join(FileRecord.__dataclass_fields__)


def _name(rel_path: str) -> bytes:
    return os.fsencode(rel_path)  # surrogates (a name that is not UTF-8) back to its bytes


def _ranges_json(ranges: Sequence[tuple[int, int]]) -> str | None:
    return orjson.dumps(ranges).decode() if ranges else None


class PgJournal(PgStore):
    """journal.Journal's interface, on PostgreSQL (the connection and fencing: pgbase.py)."""

    checkpoint_blocks = False  # handed to the checkpoint writer's thread (journal.Journal)
    _checkpoints: CheckpointWriter | None = None
    # checkpoint() runs in the state writer's thread (statewriter.py), a new epoch on the loop.
    _checkpoints_lock = threading.RLock()

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
            with self._lock, self._connection().transaction() as tx:
                conn = tx.connection
                conn.execute("SET LOCAL synchronous_commit TO on")
                self._change(f"SELECT 1 WHERE {HELD}", {})
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
        held = f" WHERE {HELD}" if fenced else ""
        rows = self._change(
            f"INSERT INTO files ({columns}) SELECT {marks}{held} RETURNING id", values, fenced
        )
        return int(rows[0][0])

    def _update(self, file_id: int, values: dict[str, object]) -> None:
        sets = ", ".join(f"{column} = %({column})s" for column in values)
        self._change(
            f"UPDATE files SET {sets} WHERE id = %(file_id)s AND {HELD}",
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
            self._move(
                file_id, COMPLETE,
                "size = %(size)s, mtime_ns = %(mtime)s, completed_at = %(now)s,"
                " updated_at = %(now)s, rpi_call = COALESCE(%(call)s, rpi_call)",
                {"size": size, "mtime": mtime_ns, "now": now, "call": rpi_call},
            )  # fmt: skip
        return self.get(file_id)

    def restart_from(
        self, file_id: int, checkpoint: int, ahead: Sequence[tuple[int, int]] = ()
    ) -> None:
        self.flush()
        self._update(
            file_id,
            {"checkpoint": checkpoint, "settled_ahead": _ranges_json(ahead), "rows_sent": 0,
             "rows_rejected": 0, "fields_dropped": 0, "points_sent": None,
             "points_skipped": None, "updated_at": time.time()},
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
            f" AND rel_path = ANY(%(names)s) AND {HELD}",
            {"final": final, "names": names},
        )
        self._change(
            "UPDATE files SET gone_at = %(now)s WHERE gone_at IS NULL AND state = ANY(%(final)s)"
            f" AND NOT rel_path = ANY(%(names)s) AND {HELD}",
            {"final": final, "names": names, "now": now},
        )
        removed = self._change(
            "DELETE FROM files WHERE state = ANY(%(final)s) AND gone_at < %(before)s"
            f" AND NOT rel_path = ANY(%(names)s) AND {HELD} RETURNING id",
            {"final": final, "names": names, "before": now - retention_s},
        )
        return len(removed)

    def start(
        self, file_id: int, sha256: str, size: int, mtime_ns: int, rows_total: int | None = None
    ) -> None:
        now = time.time()
        self._move(
            file_id, SENDING,
            "sha256 = %(sha)s, size = %(size)s, mtime_ns = %(mtime)s, rows_total = %(total)s,"
            " started_at = COALESCE(started_at, %(now)s), updated_at = %(now)s",
            {"sha": sha256, "size": size, "mtime": mtime_ns, "total": rows_total, "now": now},
        )  # fmt: skip

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
        """Handed to the checkpoint writer (pgcheckpoints.py): the loop does not wait for
        the database; a failure to write comes back at a following call."""
        with self._checkpoints_lock:
            if self.epoch is None:
                raise LeaseLostError("this daemon does not hold the lease: it writes nothing")
            if self._checkpoints is None:
                side = PgJournal(self._config, "checkpoints", migrate_schema=False)
                side.epoch = self.epoch
                self._checkpoints = CheckpointWriter(side.write_checkpoint, side.close)
            writer = self._checkpoints
        points_sent, points_skipped = points if points is not None else (None, None)
        values = (
            checkpoint, _ranges_json(ahead), sent, rejected, dropped, points_sent, points_skipped
        )  # fmt: skip
        writer.put(file_id, values, written)

    def write_checkpoint(self, file_id: int, values: Values) -> None:
        """One checkpoint, now (the checkpoint writer's thread, on a connection of its own)."""
        checkpoint, ahead, sent, rejected, dropped, points_sent, points_skipped = values
        self._update(
            file_id,
            {"checkpoint": checkpoint, "settled_ahead": ahead, "rows_sent": sent,
             "rows_rejected": rejected, "fields_dropped": dropped, "points_sent": points_sent,
             "points_skipped": points_skipped, "updated_at": time.time()},
        )  # fmt: skip

    def flush(self) -> None:
        """Every checkpoint handed over is written (before a file's state changes); raises
        JournalError (LeaseLostError) when one could not be."""
        if self._checkpoints is not None:
            self._checkpoints.drain()

    def _epoch_ends(self) -> None:
        with self._checkpoints_lock:
            writer, self._checkpoints = self._checkpoints, None
        if writer is not None:
            with contextlib.suppress(JournalError):
                writer.drain()  # (a clean stop's last checkpoint)
            writer.close()

    def close(self) -> None:
        self._epoch_ends()
        super().close()

    def note(self, file_id: int, reason: str | None) -> None:
        self._update(file_id, {"reason": reason, "updated_at": time.time()})

    def finish(self, file_id: int, state: FileState, reason: str | None = None) -> None:
        now = time.time()
        try:
            with self._lock, self._connection().transaction() as tx:
                tx.connection.execute("SET LOCAL synchronous_commit TO on")  # waits for the disk
                self._move(
                    file_id, state,
                    "reason = %(reason)s, finished_at = %(now)s, updated_at = %(now)s",
                    {"reason": reason, "now": now},
                )  # fmt: skip
        except psycopg.Error as exc:
            raise self._failed("write", exc) from None

    def _move(self, file_id: int, target: FileState, sets: str, args: dict[str, object]) -> None:
        """A state change, checked against filestates.TRANSITIONS in the write itself (and
        fenced): a move the table does not allow changes nothing and raises."""
        self.flush()
        rows = self._change(
            f"UPDATE files SET state = %(target)s, {sets} WHERE id = %(file_id)s"
            f" AND state = ANY(%(sources)s) AND {HELD} RETURNING id",
            {**args, "target": target, "file_id": file_id, "sources": list(sources_of(target))},
        )
        if not rows:
            check_transition(self.get(file_id).state, target)
