"""One file's settled records: which are settled (acknowledged by Braze or rejected), their
counts, the rejects and dropped fields written, and the checkpoint that covers them.

The journal's checkpoint is what a restart resumes from, so it must never cover a row whose
reject is not written yet: every checkpoint writes the rejects first (write_checkpoint). A
field dropped from a row is written, and counted, only once its row settles: a row sent
again after a kill would otherwise list its drops twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from .batching import SettledRecords
from .chunks import Drop
from .journal import FileRecord, Journal
from .metrics import Metrics
from .rejects import RejectsWriter
from .statewrites import StateWriteErrors, StateWrites

# Benchmarks only (tests/benchmarks measure the journal's cost): no checkpoint while sending.
CHECKPOINTS = not os.environ.get("RPI_BRAZE_SYNC_BENCH_NO_CHECKPOINTS")
Rejected = tuple[int, list[str], str]  # line number, cells, reason


class Settlement:
    def __init__(
        self,
        record: FileRecord,
        journal: Journal,
        state_writes: StateWrites,
        metrics: Metrics,
        channel: str,
    ) -> None:
        self.file_id = record.id
        self.journal = journal
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
        self._drops: dict[int, list[Drop]] = {}  # by index, rows sent but not settled
        self._checkpoint_due = False
        # A journal shared by a pair (pgjournal.py) also keeps every rejected row, so that the
        # rejects file holds the rows the other daemon rejected too: these are not stored yet.
        self._shared_rejects: list[Rejected] | None = (
            [] if hasattr(journal, "store_rejects") else None
        )
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

    def hold_drops(self, drops: list[Drop], index_of: dict[int, int]) -> None:
        """Fields dropped from rows read: written when their row settles (`index_of`: line
        number to index of the rows to send; a row not among them is settled already)."""
        settled_now = []
        for drop in drops:
            index = index_of.get(drop.line_no)
            if index is None:  # a row delta settles at once (unchanged)
                settled_now.append(drop)
            else:
                self._drops.setdefault(index, []).append(drop)
        self._write_drops(settled_now)

    def sent_rows(self, indexes: list[int]) -> None:
        self.sent += len(indexes)
        self._sent_label.inc(len(indexes))
        self.settle(indexes)

    def reject(self, line_no: int, cells: list[str], reason: str) -> None:
        """A row rejected (settled by the caller, with the others of its chunk or request)."""
        assert self.rejects is not None
        self.rejects.reject(line_no, cells, reason)
        if self._shared_rejects is not None:
            self._shared_rejects.append((line_no, cells, reason))
        self.rejected += 1
        self._rejected_label.inc()

    def settle(self, indexes: list[int]) -> None:
        """These records are done with (one request's, or a chunk's rejects)."""
        self.progress.settle_all(indexes)
        if self._drops:
            self._write_drops([d for i in indexes for d in self._drops.pop(i, ())])
        if not self._checkpoint_due and CHECKPOINTS:
            # Checkpoint what is settled at once (once per loop turn, however many answers it
            # brought), beyond the prefix too: after a kill, only rows in flight go again.
            self._checkpoint_due = True
            asyncio.get_running_loop().call_soon(self._checkpoint_soon)

    def _write_drops(self, drops: list[Drop]) -> None:
        if not drops:
            return
        if self.rejects is not None:
            for drop in drops:
                self.rejects.drop(drop)
        self.dropped += len(drops)
        self._dropped_label.inc(len(drops))

    # --- checkpoints ---------------------------------------------------------------------

    def _checkpoint_soon(self) -> None:
        self._checkpoint_due = False
        self.write_checkpoint(durable=False)

    async def checkpoint_every(self, interval_s: float) -> None:
        while CHECKPOINTS:
            await asyncio.sleep(interval_s)
            self.write_checkpoint()

    async def until_written(self) -> None:
        """The checkpoint of every record settled so far, durable (a full disk: waits)."""
        await self.state_writes.until_written(self.write_checkpoint)

    def write_checkpoint(self, durable: bool = True) -> bool:
        """Rejects first, then the journal: a checkpoint never covers a reject not written.

        Every checkpoint reaches the OS (enough for a killed process); `durable` ones are also
        fsynced (a power cut), once a second. False when the state directory cannot take them
        (StateWrites pauses sending; the next call tries again).
        """
        try:
            if self.rejects is not None:
                self.rejects.flush(durable)
            if self._shared_rejects:
                self.journal.store_rejects(self.file_id, self._shared_rejects)  # type: ignore[attr-defined]
                self._shared_rejects.clear()
            progress = self.progress
            points = self.points() if self.points is not None else None
            self.journal.checkpoint(
                self.file_id, progress.checkpoint, self.sent, self.rejected, self.dropped,
                progress.ahead, points,
            )  # fmt: skip
        except StateWriteErrors as exc:
            self.state_writes.failed("the checkpoint (journal or rejects)", exc)
            return False
        self.state_writes.succeeded()
        if self.rows_total:
            self.metrics.current_file_progress.set(min(1.0, self.settled_rows / self.rows_total))
        return True

    async def until_rejects_complete(self) -> None:
        """At the end, with a shared journal: the rejects file again from it (a full disk:
        waits), so that it lists every row rejected, by this daemon or by the other before a
        fail-over."""
        await self.state_writes.until_written(self._write_shared_rejects)

    def _write_shared_rejects(self) -> bool:
        if self._shared_rejects is None or self.rejects is None:
            return True
        try:
            rows = self.journal.rejects_of(self.file_id)  # type: ignore[attr-defined]
            if rows:
                self.rejects.rewrite(rows)
        except StateWriteErrors as exc:
            self.state_writes.failed("the rejects file", exc)
            return False
        return True

    def close(self) -> None:
        if self.rejects is not None:
            self.rejects.close()
