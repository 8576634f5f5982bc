"""The one thread that writes the state directory while files are sent: rejects and dropped
fields (with their fsync), journal checkpoints, the files' state changes (seen, complete,
started, done, failed...: pipeline.py, filequeue.py, listener.py), and the dry run's outbox.

Off the event loop, so that a slow disk (an fsync, a full SQLite page cache) never delays
the requests to Braze; and one thread, so that writes happen in the order they are handed
over. That order is what makes a kill lose nothing (settlement.py hands them over so):

1. a row's request body reaches the outbox (a dry run) before its reply settles the row;
2. delta's store holds a row's values before the row settles (deltarun.py: settle_sent waits
   for the store's write), so before any checkpoint covers it;
3. a rejected row, or a field dropped from a row, is written (and, for a durable checkpoint,
   fsynced) before the checkpoint that counts it: each checkpoint is handed over as one job,
   the rejects first, the journal after;
4. a file's last checkpoint is written before its final state (the pipeline awaits it, and
   hands the final state over after it).

A checkpoint that covered a row whose reject was not written would lose that row for good:
the restart resumes after it. A reject written and not yet covered is only written again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StateWriter:
    """Owned by the daemon (app.py's exit stack closes it after the sending it serves)."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="state-writer")

    def submit(self, write: Callable[[], T]) -> asyncio.Future[T]:
        """Run `write` after everything handed over before it; await the result (or its
        exception). Once closing (a callback late in a shutdown), `write` runs here, after
        what the thread still has to write: blocking then costs nothing, and nothing handed
        over is dropped or reordered."""
        try:
            return asyncio.wrap_future(self._pool.submit(write))
        except RuntimeError:  # shut down
            pass
        self._pool.shutdown(wait=True)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(write())
        except Exception as exc:  # (to the awaiting caller, as from the thread)
            future.set_exception(exc)
        return future

    async def write(self, write: Callable[[], T]) -> T:
        """Submit `write` and wait for it (the loop serves others meanwhile). Shielded: a
        caller cancelled (a shutdown) does not take back a write it handed over."""
        return await asyncio.shield(self.submit(write))

    async def close(self) -> None:
        """Write everything handed over, then stop the thread."""
        await asyncio.to_thread(self._pool.shutdown, wait=True)
