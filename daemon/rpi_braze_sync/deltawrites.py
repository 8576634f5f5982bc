"""Delta's writes (issue 16): acknowledged records queued on the loop and written by the
store's next job, one fsync for the writes of SYNC_EVERY_S (group commit), and the writes
the store could not take held and forgotten later (deltarun.DeltaRun owns the store's thread).

Crash safety (see deltastore.py for the order): a write's future is done only once its
records, or the forgetting of its users, are on disk; its rows settle (and are checkpointed)
only then. Acknowledged records wait in `pending` until the store's thread runs its next job:
a chunk's lookup (deltarun.DeltaRun.lookup) or the sync writes them first, in the same job,
or a write job of their own, handed over at once unless one is being written (then they
follow it, together): under load one thread hop for several requests, not one each, and
never longer in memory than a write queued behind another (a kill -9 loses those: their
rows, unsettled, are sent again). A lookup therefore still reads every record
acknowledged before it was queued (deltaflight.InFlight relies on it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from typing import NamedTuple

from .concurrency import Slot
from .deltastore import DeltaStore, DeltaStoreError
from .statewrites import StateWrites

log = logging.getLogger(__name__)
# Group commit: the writes of this long share one fsync, which their rows' settling waits for
# (a sync costs milliseconds: one per write would cost more than the writes).
SYNC_EVERY_S = 0.2
# ... or sooner, once this many rows wait for it: a request's place is given back once its
# rows are written, so this, not the sender's places, bounds the rows held (in memory, until
# their checkpoint) between a write and its sync: at 200,000 rows/s, a sync every 10 ms
# (peak RSS of a 200,000-row first run: 133-135 MB as before; 136-141 MB with 5,000).
SYNC_EVERY_ROWS = 2000


class Remembered(asyncio.Future[None]):
    """A write of acknowledged records: done once synced (their rows settle, and may be
    checkpointed, only then); `written` earlier, once the store holds them (True) or once it
    forgot those users instead or could do neither (False)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, records: int) -> None:
        super().__init__(loop=loop)
        self.records = records
        self.written: asyncio.Future[bool] = loop.create_future()
        self.place_waits_for_sync = True  # its request's place (give_back_once_written)

    def give_back_once_written(self, slot: Slot, rows: int) -> None:
        """The places bound what a kill sends again: the rows in flight and those acknowledged
        that a restart would send again. A request of `rows` rows, none rejected, is no longer
        among them once the store holds a record for each: a kill -9 leaves the WAL written
        (in the page cache), the restart reads them again and skips them. So its place is
        given back then, without waiting for the sync and the checkpoint (which still follow
        in that order: a power cut). Otherwise (a row without a record, users forgotten
        instead) the place waits for the checkpoint, as with delta off.

        (A user with two rows among those not checkpointed is the exception: his first row,
        read again, differs from his newest record and is sent again, then the second.)"""
        if self.records == rows:
            self.place_waits_for_sync = False
            self.written.add_done_callback(
                lambda stored: slot.release() if stored.result() else None
            )


class Write(NamedTuple):
    """A write of acknowledged records, and the future their rows settle on."""

    records: list[tuple[bytes, bytes]]
    done: Remembered


# A job's writes: None written (or nothing to write), a reason once forgotten instead, the
# exception when neither could be done.
Outcome = str | BaseException | None


def _outcome(job: Future[Outcome]) -> Outcome:
    exc = job.exception()
    return exc if exc is not None else job.result()


class GroupCommit:
    """The store's writes, from the loop; every store call runs on `thread`, in order."""

    def __init__(self, store: DeltaStore, thread: ThreadPoolExecutor) -> None:
        self.store = store
        self.thread = thread
        # Whether the store takes writes: its own verdict (the journal's successes must not
        # clear it); the daemon pauses sending while it fails, /readyz says why.
        self.writes = StateWrites()
        self.pending: list[Write] = []  # acknowledged, written by the store's next job
        self._unsynced: list[Write] = []  # written, waiting for the next sync
        self._failed: list[Write] = []  # neither written nor forgotten: tried again
        self._sync_due: asyncio.TimerHandle | None = None
        self._retry_due: asyncio.TimerHandle | None = None
        self._writing = False  # a write job of flush() is queued or running
        self._syncing = False
        self._hurried = False  # the sender waits for rows that wait for the sync (sync_now)
        self._forgot_at = 0.0  # the last 'forgotten instead' log line (one a minute)

    def take(self) -> list[Write]:
        """The queued writes, for a job to write before its own work (then `written`)."""
        pending, self.pending = self.pending, []
        return pending

    def remember(self, records: list[tuple[bytes, bytes]]) -> Remembered:
        """Queue a write of acknowledged records (written before the next lookup, in order).
        The future is done once the store holds them, or has forgotten those users, on disk
        (never with an error: while neither can be written, it waits)."""
        write = Write(records, Remembered(asyncio.get_running_loop(), len(records)))
        self.pending.append(write)
        if not self._writing:
            self.flush()
        self._sync_by_rows()
        return write.done

    def flush(self) -> None:
        """Hand the queued writes to the store's thread now (before a job that must follow
        them: another workspace's reset, a drain), unless there are none."""
        if not self.pending:
            return
        loop = asyncio.get_running_loop()
        pending = self.take()
        self._writing = True
        job = self.thread.submit(self.write_all, pending)
        job.add_done_callback(
            lambda f: loop.call_soon_threadsafe(self._flushed, pending, _outcome(f))
        )

    def _flushed(self, pending: list[Write], wrote: Outcome) -> None:
        self._writing = False
        self.written(pending, wrote)
        self.flush()  # what was acknowledged meanwhile

    def write_all(self, pending: list[Write]) -> Outcome:
        """(The store's thread.) None once written, or nothing to write; why not, once
        forgotten instead; the exception when neither could be done."""
        if not pending:
            return None
        records = [record for write in pending for record in write.records]
        try:
            self.store.remember(records)
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

    def written(self, writes: list[Write], wrote: Outcome) -> None:
        """(The loop.) Writes done by a job: they wait for the next sync."""
        if not writes:
            return
        if isinstance(wrote, BaseException):
            self._hold(writes, wrote)
            return
        if wrote is not None:
            self._forgotten(wrote)
        _tell_written(writes, wrote is None)
        self._unsynced += writes
        self._sync_by_rows()

    def _sync_by_rows(self) -> None:
        """The next sync at the end of its interval, or now if SYNC_EVERY_ROWS wait for it."""
        waiting = chain(self._unsynced, self.pending)
        if sum(write.done.records for write in waiting) >= SYNC_EVERY_ROWS:
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
        if self._sync_due is None and not self._syncing and (self._unsynced or self.pending):
            loop = asyncio.get_running_loop()
            self._sync_due = loop.call_later(0 if self._hurried else SYNC_EVERY_S, self.sync)

    def sync_now(self) -> None:
        """The sender has no place left for a request while some are kept: if some are kept
        by rows waiting for the sync (their checkpoint waits for it), the next sync does not
        wait for the end of its interval. Most places wait only for their write, not the
        sync (Remembered.give_back_once_written): hurrying for those cost an fsync every
        few requests (1,700 syncs for a first run of 200,000 rows)."""
        writes = (*self._unsynced, *self.pending)
        if any(write.done.place_waits_for_sync for write in writes):
            self._hurry()

    def _hurry(self) -> None:
        self._hurried = True
        if self._sync_due is not None:
            self._sync_due.cancel()
            self.sync()
        else:
            self.sync_soon()  # (now, or right after the sync being done)

    def sync(self) -> None:
        """Group commit: the queued writes, then one fsync for every write done so far; their
        rows settle after it."""
        self._sync_due = None
        pending = self.take()
        unsynced, self._unsynced = self._unsynced, []
        self._syncing, self._hurried = True, False
        loop = asyncio.get_running_loop()
        job = self.thread.submit(self._write_then_sync, pending)
        job.add_done_callback(
            lambda f: loop.call_soon_threadsafe(self._synced, f, pending, unsynced)
        )

    def _write_then_sync(self, pending: list[Write]) -> tuple[Outcome, Exception | None]:
        """(The store's thread.)"""
        wrote = self.write_all(pending)
        try:
            self.store.sync()
        except Exception as exc:
            return wrote, exc
        return wrote, None

    def _synced(
        self,
        job: Future[tuple[Outcome, Exception | None]],
        pending: list[Write],
        unsynced: list[Write],
    ) -> None:
        self._syncing = False
        exc = job.exception()
        wrote, failed = (exc, exc) if exc is not None else job.result()
        if isinstance(wrote, BaseException):
            self._hold(pending, wrote)
            pending = []
        else:
            if wrote is not None:
                self._forgotten(wrote)
            _tell_written(pending, wrote is None)
        covered = unsynced + pending
        if failed is not None:  # what reached the disk is unknown: forgotten, when it can be
            self._hold(covered, failed)
        else:
            for write in covered:
                if not write.done.done():
                    write.done.set_result(None)
        self.sync_soon()

    def _hold(self, writes: list[Write], exc: BaseException) -> None:
        """Neither written nor forgotten: the rows wait; forgetting is tried again."""
        _tell_written(writes, False)
        self.writes.failed("the delta store", exc)
        self._failed += writes
        if self._retry_due is None:
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
            if (self._unsynced or self.pending) and not self._syncing:
                self.sync()
            await self.drained()
            await asyncio.sleep(0)  # the sync's callback, then the rows' settling, run
            if not (self._unsynced or self.pending or self._syncing or self._sync_due):
                return

    async def drained(self) -> None:
        """Every queued write is done (a file's end, shutdown)."""
        self.flush()
        await asyncio.get_running_loop().run_in_executor(self.thread, lambda: None)

    def cancel(self) -> None:
        """The daemon stops: no more syncs or retries (what waits stays unsettled)."""
        for due in (self._sync_due, self._retry_due):
            if due is not None:
                due.cancel()


def _tell_written(writes: list[Write], stored: bool) -> None:
    """Their records are in the store (`stored`), or will not be: forgotten or held."""
    for write in writes:
        if not write.done.written.done():
            write.done.written.set_result(stored)
