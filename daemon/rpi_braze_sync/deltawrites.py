"""Delta's writes (issue 16): acknowledged records written at once, on the loop, one fsync
for the writes of SYNC_EVERY_S (group commit) on the store's thread, and the writes the
store could not take held and forgotten later (deltarun.DeltaRun owns the store's thread).

Crash safety (see deltastore.py for the order): a write's future is done only once its
records, or the forgetting of its users, are on disk; its rows settle (and are checkpointed)
only then. A lookup queued after a write reads it (deltaflight.InFlight relies on it): the
write is done before `remember` returns.

Why on the loop: rocksdict's write holds the GIL (a thread counting beside a write of 100,000
records ran at 4 % of its rate; its lookups and flush_wal let go of it), so on the store's
thread a write ran no more in parallel with the loop than here, and cost a thread hop per
request besides: submit, the thread's wake-up, a callback through call_soon_threadsafe, two
GIL handoffs (py-spy: the loop thread held the GIL in SimpleQueue.put for 9 % of its samples).
Measured on a first run of 200,000 rows, daemon CPU: store thread 2.95-3.30 -> 1.15-1.20
us/row, loop thread 6.50-7.35 -> 8.10-8.30. RocksDB takes a write and a lookup from two
threads at once (rocksdict holds a multi-threaded DB).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from .concurrency import Slot
from .deltastore import DeltaStore, DeltaStoreError
from .statewrites import StateWrites

log = logging.getLogger(__name__)
# Group commit: the writes of this long share one fsync, which their rows' settling waits for
# (a sync costs milliseconds: one per write would cost more than the writes).
SYNC_EVERY_S = 0.2
# ... or sooner, once this many rows wait for it: a request's place is given back once its
# rows are written, so the sender's places no longer limit the rows held (in memory, until
# their checkpoint) between a write and its sync; syncing by rows keeps them few while syncs
# are fast: at 200,000 rows/s, a sync every 10 ms (peak RSS of a 200,000-row first run:
# 133-135 MB as before; 136-141 MB with 5,000). It starts a sync, it does not wait for one:
# while an fsync is slow, the job's limit on bytes held (backlog.MAX_HELD_BYTES) bounds them.
SYNC_EVERY_ROWS = 2000


class Remembered(asyncio.Future[None]):
    """A write of acknowledged records: done once synced (their rows settle, and may be
    checkpointed, only then); `stored` as soon as remember returns: whether the store holds
    them (False: it forgot those users instead, or could do neither)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, records: int) -> None:
        super().__init__(loop=loop)
        self.records = records
        self.stored = False
        self.place_waits_for_sync = True  # its request's place (give_back_if_stored)

    def give_back_if_stored(self, slot: Slot) -> None:
        """The places bound what a kill sends again: the rows in flight and those acknowledged
        that a restart would send again. A request is no longer among them once the store
        holds a record for each of its slot.rows rows (so none was rejected): a kill -9 leaves
        the WAL written (in the page cache), the restart reads them again and skips them. So
        its place is given back now, without waiting for the sync and the checkpoint (which
        still follow in that order: a power cut). Otherwise (a row without a record,
        users forgotten instead) the place waits for the checkpoint, as with delta off.

        (A user with two rows among those not checkpointed is the exception: his first row,
        read again, differs from his newest record and is sent again, then the second.)"""
        if self.stored and self.records == slot.rows:
            self.place_waits_for_sync = False
            slot.release()


class Write(NamedTuple):
    """A write of acknowledged records, and the future their rows settle on."""

    records: list[tuple[bytes, bytes]]
    done: Remembered


# A write's outcome: None written, a reason once forgotten instead, the exception when
# neither could be done.
Outcome = str | BaseException | None


class GroupCommit:
    """The store's writes, made on the loop; its syncs and retries run on `thread`."""

    def __init__(self, store: DeltaStore, thread: ThreadPoolExecutor) -> None:
        self.store = store
        self.thread = thread
        # Whether the store takes writes: its own verdict (the journal's successes must not
        # clear it); the daemon pauses sending while it fails, /readyz says why.
        self.writes = StateWrites()
        self._unsynced: list[Write] = []  # written, waiting for the next sync
        self._failed: list[Write] = []  # neither written nor forgotten: tried again
        self._sync_due: asyncio.TimerHandle | None = None
        self._retry_due: asyncio.TimerHandle | None = None
        self._syncing = False
        self._closed = False  # cancel(): no sync or retry is scheduled any more
        self._rows_unsynced = 0  # rows of the writes in _unsynced
        self._hurried = False  # the sender waits for rows that wait for the sync (sync_now)
        self._forgot_at = 0.0  # the last 'forgotten instead' log line (one a minute)

    def remember(self, records: list[tuple[bytes, bytes]], marked: bool = False) -> Remembered:
        """Write acknowledged records now (a later lookup reads them). The future is done
        once the store holds them, or has forgotten those users, on disk (never with an
        error: while neither can be written, it waits). `marked`: DeltaStore.remember's."""
        write = Write(records, Remembered(asyncio.get_running_loop(), len(records)))
        self._written(write, self._write(records, marked))
        return write.done

    def _write(self, records: list[tuple[bytes, bytes]], marked: bool) -> Outcome:
        """None once written; why not, once forgotten instead; the exception when neither
        could be done."""
        try:
            self.store.remember(records, marked)
            return None
        except DeltaStoreError as exc:
            # The old records must not stay: the rows' checkpoint would cover values the
            # store does not hold, and a later row going back to an old value would be
            # skipped. Forgotten, those users are sent whole next time (dearer, never wrong).
            try:
                self.store.forget_keys([key for key, _ in records])
            except Exception as failed:  # held, tried again
                return failed
            return str(exc)
        except Exception as exc:
            return exc

    def _written(self, write: Write, wrote: Outcome) -> None:
        """A write done: it waits for the next sync."""
        if isinstance(wrote, BaseException):
            self._hold([write], wrote)
            return
        if wrote is not None:
            self._forgotten(wrote)
        write.done.stored = wrote is None
        self._unsynced.append(write)
        self._rows_unsynced += write.done.records
        if self._rows_unsynced >= SYNC_EVERY_ROWS:
            self._hurry()
        else:
            self.sync_soon()

    def _forgotten(self, why: str) -> None:
        if time.monotonic() - self._forgot_at > 60:  # one line a minute
            self._forgot_at = time.monotonic()
            log.error(
                "delta: cannot remember acknowledged values (%s): those users are forgotten"
                " instead, their values sent whole next time",
                why,
            )

    def sync_soon(self) -> None:
        if self._closed:  # (a job done after cancel(): the thread is being shut down)
            return
        if self._sync_due is None and not self._syncing and self._unsynced:
            loop = asyncio.get_running_loop()
            self._sync_due = loop.call_later(0 if self._hurried else SYNC_EVERY_S, self.sync)

    def sync_now(self) -> None:
        """The sender has no place left for a request while some are kept: if some are kept
        by rows waiting for the sync (their checkpoint waits for it), the next sync does not
        wait for the end of its interval. Most places wait only for their write, not the
        sync (Remembered.give_back_if_stored): hurrying for those cost an fsync every
        few requests (1,700 syncs for a first run of 200,000 rows)."""
        if any(write.done.place_waits_for_sync for write in self._unsynced):
            self._hurry()

    def _hurry(self) -> None:
        self._hurried = True
        if self._sync_due is not None:
            self._sync_due.cancel()
            self.sync()
        else:
            self.sync_soon()  # (now, or right after the sync being done)

    def sync(self) -> None:
        """Group commit: one fsync (on the store's thread: flush_wal lets go of the GIL) for
        every write done so far; their rows settle after it."""
        self._sync_due = None
        unsynced, self._unsynced, self._rows_unsynced = self._unsynced, [], 0
        self._syncing, self._hurried = True, False
        loop = asyncio.get_running_loop()
        job = self.thread.submit(self.store.sync)
        job.add_done_callback(lambda f: loop.call_soon_threadsafe(self._synced, f, unsynced))

    def _synced(self, job: Future[None], unsynced: list[Write]) -> None:
        self._syncing = False
        failed = job.exception()
        if failed is not None:  # what reached the disk is unknown: forgotten, when it can be
            self._hold(unsynced, failed)
        else:
            for write in unsynced:
                if not write.done.done():
                    write.done.set_result(None)
        self.sync_soon()

    def _hold(self, writes: list[Write], exc: BaseException) -> None:
        """Neither written nor forgotten: the rows wait; forgetting is tried again."""
        self.writes.failed("the delta store", exc)
        self._failed += writes
        if self._retry_due is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._retry_due = loop.call_later(self.writes.retry_s, self._retry)

    def _retry(self) -> None:
        # Forgotten rather than written again: a later write of the same user may have
        # succeeded meanwhile, and an older record written over it would be wrong.
        self._retry_due = None
        writes, self._failed = self._failed, []
        keys = [key for write in writes for key, _ in write.records]
        loop = asyncio.get_running_loop()
        attempt = self.thread.submit(self._forget_synced, keys)
        attempt.add_done_callback(lambda f: loop.call_soon_threadsafe(self._retried, f, writes))

    def _forget_synced(self, keys: list[bytes]) -> None:
        self.store.forget_keys(keys)
        self.store.sync()

    def _retried(self, attempt: Future[None], writes: list[Write]) -> None:
        exc = attempt.exception()
        if exc is not None:
            self._hold(writes, exc)
            return
        log.warning(
            "delta: the store takes writes again: %d users whose values it could not remember"
            " are forgotten (sent whole next time)",
            sum(len(write.records) for write in writes),
        )
        for write in writes:
            if not write.done.done():
                write.done.set_result(None)
        if not self._failed:
            self.writes.succeeded()

    async def synced(self) -> None:
        """Write and sync now what waits for the next sync (a graceful stop: its rows settle
        first; writes that fail stay held, unsettled)."""
        for _ in range(4):  # a write done meanwhile waits for one more sync
            if self._sync_due is not None:
                self._sync_due.cancel()
                self._sync_due = None
            if self._unsynced and not self._syncing:
                self.sync()
            await self.drained()
            await asyncio.sleep(0)  # the sync's callback, then the rows' settling, run
            if not (self._unsynced or self._syncing or self._sync_due):
                return

    async def drained(self) -> None:
        """Every job queued on the store's thread is done (a file's end, shutdown)."""
        await asyncio.get_running_loop().run_in_executor(self.thread, lambda: None)

    def cancel(self) -> None:
        """The daemon stops: no more syncs or retries (what waits stays unsettled)."""
        self._closed = True
        for due in (self._sync_due, self._retry_due):
            if due is not None:
                due.cancel()
