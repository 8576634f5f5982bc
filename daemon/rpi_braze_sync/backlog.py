"""A file job's backlog: the rows it has taken and not settled yet (the backlog_rows gauge),
and the bytes held by the rows it has taken and not checkpointed yet (heldrows.py). The job
(pipeline.py) reads on only while the bytes leave room, and ends once every row has settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .heldrows import HeldChunks

if TYPE_CHECKING:
    from .chunks import ChunkData
    from .settlement import Settlement

# Rows read and not yet settled hold their bodies and source rows: at most about this many
# bytes of them (the sender's own bounds count rows, and rows can be 1 MiB each).
MAX_HELD_BYTES = 64 << 20


class Gauge(Protocol):
    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...


class Backlog:
    def __init__(self, gauge: Gauge) -> None:
        self.rows = 0  # taken and not settled (nor dropped unsent) yet
        self.held = HeldChunks()
        self._gauge = gauge
        self._settled = asyncio.Event()

    def add(self, rows: int) -> None:
        self.rows += rows
        self._gauge.inc(rows)
        if self.rows:
            self._settled.clear()

    def take(
        self,
        chunk: ChunkData,
        unchanged: list[int],
        settlement: Settlement,
        delta_held: Callable[[ChunkData], int] | None = None,
    ) -> None:
        """A chunk read: its rows taken, its bytes held; those settled at once are settled
        (rejected, or `unchanged`: rows delta left with nothing to send, settled as sent:
        Braze holds every value of theirs). The job then hands the others to the sender.
        `delta_held`: what delta holds for a chunk's rows sent until they are answered."""
        if chunk.drops:
            settlement.hold_drops(chunk.drops)
        rows = len(chunk.rejected) + len(chunk.indexes) + len(unchanged)
        if chunk.indexes:
            size = sum(map(len, chunk.bodies)) + sum(map(len, chunk.packed))
            if delta_held is not None:  # what delta holds for those rows until answered
                size += delta_held(chunk)
            self.held.take(chunk.indexes[-1] + 1, size)
        self.add(rows)
        for _, line_no, cells, reason in chunk.rejected:
            settlement.reject(line_no, cells, reason)
        if chunk.rejected:
            settlement.settle([index for index, _, _, _ in chunk.rejected])
            self.remove(len(chunk.rejected))
        if unchanged:
            settlement.sent_rows(unchanged)
            self.remove(len(unchanged))

    def remove(self, rows: int) -> None:
        """`rows` settled, or dropped from the sender's queue unsent."""
        self.rows -= rows
        self._gauge.dec(rows)
        if self.rows == 0:
            self._settled.set()

    async def until_settled(self) -> None:
        if self.rows:
            self._settled.clear()
            await self._settled.wait()

    async def until_room(self, checkpoint: Callable[[], int], broken: Callable[[], bool]) -> None:
        """Wait, before reading on, until the rows held take less than MAX_HELD_BYTES (or
        nothing is left to settle that would free them, or the job is broken)."""
        while True:
            held = self.held.release_to(checkpoint())
            if held < MAX_HELD_BYTES or not self.rows or broken():
                return
            await asyncio.sleep(0.05)  # (only over the bound: rows of hundreds of KB)
