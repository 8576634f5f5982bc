"""A chunk through delta (issue 16): its lookup started ahead of its comparison (the records of
the next chunk's users read on the store's thread while the loop sends this chunk's rows; a
first run's, nothing or a few read at once: deltarun.DeltaRun.lookup), and its rows left with
nothing to send taken out.

Awaited in DeltaFile.filter, a lookup held the file's reading for as long as the loop took to
send a chunk: 17-18 ms a chunk of 500 rows (median; first run of 100,000 rows on a busy 2-core
machine: 4.6 s of a 16 s run), the store's thread waiting for a core and for the GIL. Started
ahead: 0.3 s. What is written meanwhile for the chunk's users, InFlight keeps for its token
(deltaflight.InFlight.lookup_started(keys)), as for any lookup outstanding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from .chunks import ChunkData
from .deltaflight import InFlight


class Lookup(NamedTuple):
    chunk: ChunkData
    keys: list[bytes]  # its users'
    token: int  # InFlight's
    records: asyncio.Future[list[bytes | None]]


def start(
    chunk: ChunkData,
    keys: list[bytes],
    inflight: InFlight,
    lookup: Callable[[list[bytes]], Awaitable[list[bytes | None]]],
) -> Lookup:
    token = inflight.lookup_started(keys)
    return Lookup(chunk, keys, token, asyncio.ensure_future(lookup(keys)))


def drop(inflight: InFlight, started: Lookup | None) -> None:
    """A lookup started for a chunk that will not be compared (the file ended)."""
    if started is not None:
        started.records.cancel()
        inflight.lookup_done(started.token)


def leave_out(chunk: ChunkData, positions: list[int]) -> list[int]:
    """Remove rows from the chunk's columns; returns their record indexes."""
    if len(positions) == len(chunk.indexes):  # every row
        left = chunk.indexes
        chunk.indexes, chunk.line_numbers, chunk.users, chunk.bodies = [], [], [], []
        chunk.packed = []
        chunk.deltas = None if chunk.deltas is None else []
        return left
    drop = set(positions)
    keep = [i for i in range(len(chunk.indexes)) if i not in drop]
    left = [chunk.indexes[i] for i in positions]
    chunk.indexes = [chunk.indexes[i] for i in keep]
    chunk.line_numbers = [chunk.line_numbers[i] for i in keep]
    chunk.users = [chunk.users[i] for i in keep]
    chunk.bodies = [chunk.bodies[i] for i in keep]
    chunk.packed = [chunk.packed[i] for i in keep]
    if chunk.deltas is not None:
        chunk.deltas = [chunk.deltas[i] for i in keep]
    return left
