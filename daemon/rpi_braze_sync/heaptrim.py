"""Memory freed inside the C heap given back to the system every few seconds, while delta's
store is open (app.Daemon owns the task).

Why: RocksDB's flushes and compactions run on threads of their own. glibc's malloc gives each
such thread an arena of its own, and raises its threshold for mapping a large block on its own
each time one is freed, so those buffers end up inside the arenas, where freed space stays
resident: the daemon grew run after run. malloc_trim(0) gives back the free pages of every
arena. Measured at 5M users, four runs (first, unchanged, new execution id, changed), the
daemon's peak: 112-127 MB on the first run, 126-143 after it, in three runs without it;
110 -> 121 MB with a trim every 10 s, and as much every 5 s. At 1M rows, three first runs in
turns, no cost seen (71,396 against 68,664 rows/s, medians). Every second, it cost the first
run 2-3 us a row: the memory in use is faulted in again after each trim. Settings of malloc
itself (one arena, a fixed mapping threshold) cost as much (README, Delta benchmarks).

glibc's alone: elsewhere there is no malloc_trim, and nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_EVERY_S = 10.0


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim(pad), None where the C library has none (musl, say)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


async def trim_forever(every_s: float = TRIM_EVERY_S) -> None:
    trim = malloc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library: freed memory is left to malloc")
        return
    while True:
        await asyncio.sleep(every_s)
        # On a thread: it takes each arena's lock in turn, and the loop must not wait for it.
        # (ctypes releases the interpreter's lock for the call.)
        await asyncio.to_thread(trim, 0)
