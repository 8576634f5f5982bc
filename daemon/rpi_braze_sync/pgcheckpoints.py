"""Checkpoints to the PostgreSQL journal, written by a thread of their own.

The pipeline checkpoints once per turn of the event loop (a few thousand times a second);
a round trip to the database for each, on the loop, would stall sending. Here the loop only
hands the latest values of a file over; one thread writes them on its own connection, the
newest values of each file at a time (older ones it did not write yet are simply replaced).
What a kill loses is at most the values not written yet: rows acknowledged within the last
round trip, sent again after a fail-over (as rows in flight are). So the caller is told when
its values, or newer ones of the file, are written (`written`): the sender keeps a request's
place until then (concurrency.Slot), and those rows count among the rows in flight.

A write that failed (the database gone, the lease moved) is kept, tried again every second,
and raised at every hand over until a write succeeds, so the pipeline's StateWrites pauses
sending meanwhile as for any checkpoint it cannot write; `drain` waits until everything handed
over is written (before a file's state changes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeAlias

from .errors import JournalError, LeaseLostError

# checkpoint, settled_ahead, sent, rejected, dropped, delta's points sent and skipped
Values = tuple[int, str | None, int, int, int, int | None, int | None]
Write = Callable[[int, Values], None]
Written: TypeAlias = Callable[[], None]
RETRY_S = 1.0


class CheckpointWriter:
    def __init__(self, write: Write, closing: Callable[[], None]) -> None:
        self._write = write
        self._closing = closing  # the writer's connection
        self._pending: dict[int, Values] = {}
        self._written: dict[int, list[Written]] = {}  # by file: called once its values are written
        self._error: JournalError | None = None
        self._busy = False
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pg-checkpoints", daemon=True)
        self._thread.start()

    def put(self, file_id: int, values: Values, written: Written | None = None) -> None:
        """Hand the newest values of a file over; `written` is called (on the writer's thread)
        once they, or newer ones, are written. Raises while writes fail (until one succeeds),
        so that sending stays paused meanwhile; the values are kept."""
        with self._changed:
            self._pending[file_id] = values
            if written is not None:
                self._written.setdefault(file_id, []).append(written)
            error = self._error
            self._changed.notify_all()
        if error is not None:
            raise error

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every value handed over is written; raises a failure to write them."""
        with self._changed:
            self._changed.wait_for(
                lambda: (not self._pending and not self._busy) or self._error is not None,
                timeout_s,
            )
            error, left = self._error, bool(self._pending)
        if error is not None:
            raise error
        if left:
            raise JournalError("checkpoints not written in time")

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._error is not None:  # a failing database: tried again once a second
                    self._changed.wait_for(lambda: self._closed, RETRY_S)
                self._changed.wait_for(lambda: self._closed or bool(self._pending))
                if self._closed:
                    self._closing()
                    return
                batch, self._pending = self._pending, {}
                calls, self._written = self._written, {}
                self._busy = True
            failed: JournalError | None = None
            for file_id, values in batch.items():
                try:
                    self._write(file_id, values)
                except LeaseLostError as exc:
                    failed = exc  # this writer's epoch is over: its values are dropped
                except JournalError as exc:
                    failed = exc
                    with self._changed:  # kept unless newer values came meanwhile
                        self._pending.setdefault(file_id, values)
                        self._written.setdefault(file_id, [])[:0] = calls.get(file_id, [])
                else:
                    for written in calls.get(file_id, ()):
                        written()
            with self._changed:
                self._busy = False
                self._error = failed
                self._changed.notify_all()
