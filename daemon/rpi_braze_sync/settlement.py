"""One file's settled records: which are settled (acknowledged by Braze or rejected), their
counts, the rejects and dropped fields written, and the checkpoint that covers them.

The journal's checkpoint is what a restart resumes from, so it must never cover a row whose
reject is not written yet: every checkpoint writes the rejects first (write_checkpoint). A
field dropped from a row is written, and counted, only once its row settles: a row sent
again after a kill would otherwise list its drops twice. A request's place in the sender
(concurrency.Slot) is given back once the journal holds a checkpoint covering its rows (with
delta, sooner: once the store holds their values, deltawrites.Remembered).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Callable
from itertools import chain
from pathlib import Path

from .batching import SettledRecords
from .chunks import DropData
from .concurrency import Slot
from .journal import FileRecord, Journal, SharedRejects
from .metrics import Metrics
from .rejects import RejectsWriter
from .statewriter import StateWriter
from .statewrites import StateWriteErrors, StateWrites

# Benchmarks only (tests/benchmarks measure the journal's cost): no checkpoint while sending.
CHECKPOINTS = not os.environ.get("RPI_BRAZE_SYNC_BENCH_NO_CHECKPOINTS")
Rejected = tuple[int, list[str], str]  # line number, cells, reason


class Settlement:
    def __init__(
        self,
        record: FileRecord,
        journal: Journal,
        writer: StateWriter,
        state_writes: StateWrites,
        metrics: Metrics,
        channel: str,
    ) -> None:
        self.file_id = record.id
        self.journal = journal
        self.writer = writer
        self.state_writes = state_writes
        self.metrics = metrics
        self.progress = SettledRecords(record.checkpoint, record.ahead)
        self.sent = record.rows_sent
        self.rejected = record.rows_rejected
        self.dropped = record.fields_dropped
        self.rows_total: int | None = None  # once the file is inspected
        self.rejects: RejectsWriter | None = None  # once its header is read
        # Delta's data points (sent, skipped) so far, checkpointed with the rows: a restart
        # or the other daemon of a pair continues from them (deltarun.DeltaFile.points).
        self.points: Callable[[], tuple[int, int]] | None = None
        self._drops: dict[int, list[DropData]] = {}  # by index, rows sent but not settled
        self._checkpoint_due = False
        self._soon: asyncio.Future[bool] | None = None  # the checkpoint of a loop turn, written
        self._again = False  # more settled while it was: one more after it
        # The sender's places of requests settled, each with the number of the first checkpoint
        # that covers its rows: released once that one, or a later one, is written.
        self._slots: deque[tuple[int, Slot]] = deque()
        self._checkpoints = 0  # checkpoints handed over so far
        self._queued = 0  # checkpoints handed to the state writer, not written yet
        self._handed_over: asyncio.Future[bool] | None = None  # (not awaited)
        # A journal shared by a pair (pgjournal.py) also keeps every rejected row, so that the
        # rejects file holds the rows the other daemon rejected too: those not handed over yet
        # (the loop's), and those handed over whose store failed (the state writer's: stored
        # before the next checkpoint, as RejectsWriter keeps the bytes it could not write).
        self._shared = journal if isinstance(journal, SharedRejects) else None
        self._shared_rejects: list[Rejected] | None = [] if self._shared is not None else None
        self._unstored: list[Rejected] = []
        self._sent_label = metrics.rows.labels(channel, "sent")
        self._rejected_label = metrics.rows.labels(channel, "rejected")
        self._dropped_label = metrics.fields_dropped.labels(channel)

    @property
    def settled_rows(self) -> int:
        """Rows acknowledged by Braze or rejected, from the file's first row."""
        return self.progress.checkpoint + self.progress.outstanding_ahead

    def counts(self) -> str:
        return f"{self.sent:,} sent, {self.rejected:,} rejected, {self.dropped:,} fields dropped"

    def restart_from(self, start: int, ahead: tuple[tuple[int, int], ...]) -> None:
        """Another version of the file: sent from `start`, the counts of the earlier gone."""
        self.progress = SettledRecords(start, ahead)
        self.sent = self.rejected = self.dropped = 0

    def open_rejects(self, root: Path, rel_path: str, header: list[str]) -> None:
        """`fresh` (nothing settled): what an earlier send of the path wrote is set aside."""
        fresh = not self.progress.checkpoint and not self.progress.outstanding_ahead
        self.rejects = RejectsWriter(root, rel_path, header, fresh)

    # --- settling ------------------------------------------------------------------------

    def hold_drops(self, drops: dict[int, list[DropData]]) -> None:
        """Fields dropped from rows read, by record index: written when their row settles
        (a row delta leaves unsent settles in the same turn, as sent)."""
        self._drops.update(drops)

    def sent_rows(self, indexes: list[int], slot: Slot | None = None) -> None:
        self.sent += len(indexes)
        self._sent_label.inc(len(indexes))
        self.settle(indexes, slot)

    def reject(self, line_no: int, cells: list[str], reason: str) -> None:
        """A row rejected (settled by the caller, with the others of its chunk or request)."""
        assert self.rejects is not None
        self.rejects.reject(line_no, cells, reason)
        if self._shared_rejects is not None:
            self._shared_rejects.append((line_no, cells, reason))
        self.rejected += 1
        self._rejected_label.inc()

    def settle(self, indexes: list[int], slot: Slot | None = None) -> None:
        """These records are done with (one request's, or a chunk's rejects); `slot`, their
        request's place, is released once a checkpoint that covers them is written."""
        self.progress.settle_all(indexes)
        if slot is not None:
            if CHECKPOINTS:
                self._slots.append((self._checkpoints, slot))
            else:
                slot.release()
        held = self._drops
        if held:
            settled = [held.pop(i) for i in indexes if i in held]
            if settled:
                self._write_drops(settled)
        if not self._checkpoint_due and CHECKPOINTS:
            # Checkpoint what is settled at once (once per loop turn, however many answers it
            # brought), beyond the prefix too: after a kill, only rows in flight go again.
            self._checkpoint_due = True
            asyncio.get_running_loop().call_soon(self._checkpoint_soon)

    def _write_drops(self, rows: list[list[DropData]]) -> None:
        """The dropped fields of rows just settled (each row's list, in the order settled)."""
        if self.rejects is not None:
            self.rejects.drops(chain.from_iterable(rows))
        count = sum(map(len, rows))
        self.dropped += count
        self._dropped_label.inc(count)

    # --- checkpoints ---------------------------------------------------------------------

    def _checkpoint_soon(self) -> None:
        self._checkpoint_due = False
        if self._soon is not None:  # one at a time: the next covers what settles meanwhile
            self._again = True
            return
        soon = self._soon = self._hand_over(durable=False)
        soon.add_done_callback(self._soon_written)

    def _soon_written(self, _: object) -> None:
        self._soon = None
        if self._again:
            self._again = False
            self._checkpoint_soon()

    async def checkpoint_every(self, interval_s: float) -> None:
        while CHECKPOINTS:
            await asyncio.sleep(interval_s)
            await self._hand_over()

    async def until_written(self) -> None:
        """The checkpoint of every record settled so far, durable (a full disk: waits)."""
        while True:
            if await self.write_last():
                return
            await asyncio.sleep(self.state_writes.retry_s)  # nothing signals room on a disk

    async def write_last(self) -> bool:
        """One durable checkpoint of every record settled so far, after any of a loop turn
        still being written (so that none is written after it); False when it could not be."""
        while self._soon is not None:
            await asyncio.wait([self._soon])
        return await self._hand_over()

    def write_checkpoint(self) -> None:
        """A durable checkpoint, handed over without waiting for it (a job cancelled, its
        file left as it is): the state writer still writes it, in its turn."""
        self._handed_over = self._hand_over()

    def _hand_over(self, durable: bool = True) -> asyncio.Future[bool]:
        """Hand the rows rejected or dropped since the last checkpoint and the checkpoint
        that covers them to the state writer, as one job: rejects first, then the journal
        (statewriter.py says why). True once written; False when the state directory cannot
        take them (StateWrites pauses sending; the next checkpoint tries again).

        Every checkpoint reaches the OS (enough for a killed process); `durable` ones, once a
        second and at the end, are also fsynced (a power cut).
        """
        # Every job of a shared journal takes its own list, even an empty one: it stores any
        # rows a failed store left (_unstored) before its checkpoint counts them, and the loop
        # never appends to a list the thread reads.
        shared = self._shared_rejects
        if shared is not None:
            self._shared_rejects = []
        rejects = self.rejects
        taken = rejects.take() if rejects is not None else {}
        number = self._checkpoints
        self._checkpoints += 1
        # A journal that does not block tells when it wrote it (its thread): the requests it
        # covers keep their places until then, not only until it is handed over. (No place
        # kept now, none for it to release: places kept later wait for a later checkpoint.)
        blocks = self.journal.checkpoint_blocks
        on_written = None if blocks or not self._slots else self._release_when_written(number)
        progress = self.progress
        points = self.points() if self.points is not None else None
        values = (
            progress.checkpoint, self.sent, self.rejected, self.dropped, progress.ahead, points,
            on_written,
        )  # fmt: skip
        result: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        nothing_before = not (shared or self._unstored) and (
            rejects is None or not (taken or rejects.unwritten or (durable and rejects.opened))
        )
        if nothing_before and not (self._queued or blocks):
            # Nothing to write or fsync before it, nothing of this file queued that it could
            # overtake, and a journal that does not wait: handed over here, without a thread's
            # turn (a pair's journal then pauses sending as soon as its database fails, and
            # holds what was acknowledged as soon as it can).
            try:
                self.journal.checkpoint(self.file_id, *values)
            except StateWriteErrors as exc:
                result.set_result(self._report(exc))
            else:
                result.set_result(self._report(None))
            return result

        def write() -> None:  # (the state writer's thread)
            if shared is not None:
                self._store_shared(shared)
            if rejects is not None:
                rejects.write(taken, durable)
            self.journal.checkpoint(self.file_id, *values)

        written = self.writer.submit(write)
        self._queued += 1

        def report(_: object) -> None:
            self._queued -= 1
            try:
                outcome = self._report(written.exception(), number if blocks else None)
            except BaseException as exc:  # not a state write's failure: a bug, raised
                if result.done():
                    raise
                result.set_exception(exc)
                return
            # Its waiter may be gone (write_last's task cancelled as the daemon stops, which
            # cancels the future it awaited): the checkpoint is written all the same.
            if not result.done():
                result.set_result(outcome)

        written.add_done_callback(report)
        return result

    def _report(self, exc: BaseException | None, number: int | None = None) -> bool:
        """`number`: the checkpoint written, whose requests' places are released now."""
        if exc is not None:
            if not isinstance(exc, StateWriteErrors):
                raise exc
            self.state_writes.failed("the checkpoint (journal or rejects)", exc)
            return False  # (its requests keep their places: a later checkpoint releases them)
        self.state_writes.succeeded()
        if number is not None:
            self._release_slots(number)
        if self.rows_total:
            self.metrics.current_file_progress.set(min(1.0, self.settled_rows / self.rows_total))
        return True

    def _release_when_written(self, number: int) -> Callable[[], None]:
        """What the journal calls (from its thread) once checkpoint `number` is in it."""
        loop = asyncio.get_running_loop()

        def written() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to release
                loop.call_soon_threadsafe(self._release_slots, number)

        return written

    def _release_slots(self, number: int) -> None:
        """The sender's places of the requests checkpoint `number` covers: every record
        settled before it was handed over (the prefix and the ranges ahead)."""
        slots = self._slots
        while slots and slots[0][0] <= number:
            slots.popleft()[1].release()

    def _store_shared(self, rows: list[Rejected]) -> None:
        """(The state writer's thread.) Rows rejected, and any a failed store left, kept by
        the pair's journal; raises JournalError (all kept for the next checkpoint)."""
        assert self._shared is not None
        self._unstored += rows
        if self._unstored:
            self._shared.store_rejects(self.file_id, self._unstored)
            self._unstored = []

    async def until_rejects_complete(self) -> None:
        """At the end, with a shared journal: the rejects file again from it (a full disk:
        waits), so that it lists every row rejected, by this daemon or by the other before a
        fail-over."""
        rejects, shared = self.rejects, self._shared
        if shared is None or rejects is None:
            return
        while True:
            if await self._rewrite_rejects(rejects, shared):
                return
            await asyncio.sleep(self.state_writes.retry_s)  # nothing signals room on a disk

    async def _rewrite_rejects(self, rejects: RejectsWriter, shared: SharedRejects) -> bool:
        taken = rejects.take()  # (none left: the last checkpoint took them)

        def rewrite() -> None:  # (the state writer's thread, as the journal's reads there)
            self._store_shared([])
            rows = shared.rejects_of(self.file_id)
            if rows or taken:
                rejects.write(taken)
            if rows:
                rejects.rewrite(rows)

        try:
            await self.writer.submit(rewrite)
        except StateWriteErrors as exc:
            self.state_writes.failed("the rejects file", exc)
            return False
        return True

    async def close(self) -> None:
        """What is left of the rejects written, their files closed (in the writer's turn); the
        file's requests give their places back, written or not (it is left: a shutdown)."""
        rejects = self.rejects
        try:
            if rejects is not None:
                taken = rejects.take()
                await self.writer.submit(lambda: rejects.close(taken))
        finally:
            self._release_slots(self._checkpoints)
