"""Delta in the daemon (issue 16): the store on a thread of its own and the rows in flight;
per file, deltafile.DeltaFile compares each chunk before it is sent and builds the records of
the rows Braze acknowledged.

Crash safety (kill -9 or a power cut at any moment): nothing is written to the store when a
chunk is compared or a request leaves; a row's record is written only from `acknowledged`, which
the sender calls for the objects of a 2xx answer that Braze did not list in `errors`. The job
settles those rows only once the store's write is done AND synced (one fsync for every write of
SYNC_EVERY_S: group commit), so no checkpoint covers a row whose new values the store may lack
(deltastore.py: the other order skips a reverted value wrongly after a kill). A write that
fails forgets those users instead (sent whole next time); while the store takes no write at
all, their rows stay unsettled, sending pauses and /readyz says why (`writes`, as StateWrites
does for the state directory), and the forgetting is tried again until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

from . import deltastats
from .deltaflight import InFlight
from .deltastore import DeltaStore, DeltaStoreError, workspace_fingerprint
from .statewrites import RETRY_S, StateWrites

if TYPE_CHECKING:
    from .config import LoadedConfig
    from .metrics import Metrics

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 3600.0  # retention: one step between others, all records once an hour
SWEEP_PAUSE_S = 1.0
DAY_S = 86400
# Group commit: the writes of this long share one fsync, which their rows' settling waits for
# (a sync costs milliseconds: one per write would cost more than the writes).
SYNC_EVERY_S = 0.2


class _Write(NamedTuple):
    """A write of acknowledged records: the users, and the future their rows settle on."""

    keys: list[bytes]
    done: Future[None]


def uses_delta(config: LoadedConfig) -> bool:
    """Some channel sends only what changed (never in a dry run: nothing is acknowledged)."""
    settings = config.settings
    return not config.dry_run and any(settings.delta_for(name) for name in settings.channels)


def workspace_of(config: LoadedConfig) -> str:
    """The Braze workspace's fingerprint: api_url and key, the key never kept as it is."""
    key = config.api_key.reveal() if config.api_key is not None else ""
    return workspace_fingerprint(config.settings.braze.api_url, key)


def open_delta(config: LoadedConfig, metrics: Metrics, retry_s: float = RETRY_S) -> DeltaRun | None:
    """The daemon's delta, if a channel uses it (raises DeltaStoreError)."""
    if not uses_delta(config):
        return None
    store = DeltaStore.open(config.state_directory, workspace_of(config))  # (logs a change)
    try:
        deltastats.prune(config.state_directory)
    except OSError as exc:
        log.warning("delta: cannot prune %s: %s", deltastats.FILE_NAME, exc)
    log.info(
        "delta: values remembered in %s (about %d users)", store.directory, store.records_estimate()
    )
    workspace = workspace_of(config)
    run = DeltaRun(store, config.settings.delta.max_age_days, metrics, workspace=workspace)
    run.writes.retry_s = retry_s
    return run


class DeltaRun:
    """One per daemon: the store (one thread makes every call, in order: a lookup queued after
    a write reads it), and the rows in flight of every file."""

    def __init__(
        self,
        store: DeltaStore,
        max_age_days: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        workspace: str = "",
    ) -> None:
        self.store = store
        self.workspace = workspace
        self.state_directory = store.directory.parent
        self.max_age_s = int(max_age_days * DAY_S)
        self.metrics = metrics
        self.clock = clock
        self.inflight = InFlight()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="delta-store")
        # Whether the store takes writes: its own verdict (the journal's successes must not
        # clear it); the daemon pauses sending while it fails, /readyz says why.
        self.writes = StateWrites()
        self._unsynced: list[_Write] = []  # written, waiting for the next sync
        self._failed: list[_Write] = []  # neither written nor forgotten: tried again
        self._sync_due: asyncio.TimerHandle | None = None
        self._retry_due: asyncio.TimerHandle | None = None
        self._syncing = False
        self._forgot_at = 0.0  # the last 'forgotten instead' log line (one a minute)
        # Monotonic time of a failed change of workspace (values of the other one may stay).
        self._stale_since: float | None = None

    def apply(self, config: LoadedConfig) -> None:
        """A reload: another Braze workspace (api_url or key) starts with nothing remembered;
        the reset is queued on the store's thread, so every later lookup sees it."""
        self.max_age_s = int(config.settings.delta.max_age_days * DAY_S)
        workspace = workspace_of(config)
        if workspace == self.workspace:
            return
        self.workspace = workspace
        log.warning(
            "delta: the Braze workspace (api_url or API key) changed: forgetting every"
            " remembered value; everything is sent again"
        )
        self._thread.submit(self._change_workspace, workspace)

    def _change_workspace(self, workspace: str) -> None:
        """(The store's thread.) Until the other workspace's values are forgotten, none is
        trusted: every lookup finds nothing (sent whole), and forgetting is tried again once
        a minute; a restart before then empties the store (its marker names the other)."""
        try:
            self.store.change_workspace(workspace)
        except DeltaStoreError as exc:
            if self._stale_since is None:
                log.error("delta: cannot forget the other workspace's values (%s): every row"
                          " is sent whole until they are", exc)  # fmt: skip
            self._stale_since = time.monotonic()
            return
        if self._stale_since is not None:
            log.info("delta: the other workspace's values are forgotten")
        self._stale_since = None

    def _lookup(self, keys: list[bytes]) -> list[bytes | None]:
        """(The store's thread.)"""
        stale_since = self._stale_since
        if stale_since is not None and time.monotonic() - stale_since > 60:
            self._change_workspace(self.workspace)
        if self._stale_since is not None:
            return [None] * len(keys)
        return self.store.lookup(keys)

    @property
    def held(self) -> bool:
        """The store takes no write: acknowledged rows wait (sending pauses meanwhile)."""
        return not self.writes.writable

    def file_finished(self, entry: deltastats.FilePoints) -> None:
        """A file's data points, for `status` (written on the store's thread)."""
        future = self._thread.submit(deltastats.append, self.state_directory, entry)
        future.add_done_callback(self._stats_written)

    @staticmethod
    def _stats_written(future: Future[None]) -> None:
        if future.exception() is not None:  # only status loses a line
            log.warning("delta: cannot record a file's data points: %s", future.exception())

    async def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._thread, self._lookup, keys
            )
        except DeltaStoreError as exc:  # nothing known: everything is sent
            log.error("delta: %s: the rows are sent whole", exc)
            return [None] * len(keys)

    def remember(self, records: list[tuple[bytes, bytes]]) -> Future[None]:
        """Queue a write of acknowledged records (before the next lookup, in order). The
        future is done once the store holds them, or has forgotten those users, on disk (never
        with an error: while neither can be written, it waits)."""
        loop = asyncio.get_running_loop()
        write = _Write([key for key, _ in records], Future())
        attempt = self._thread.submit(self._write_or_forget, records)
        attempt.add_done_callback(lambda f: loop.call_soon_threadsafe(self._written, f, write))
        return write.done

    def _write_or_forget(self, records: list[tuple[bytes, bytes]]) -> str | None:
        """(The store's thread.) None once written; why not, once forgotten instead."""
        try:
            self.store.remember(records)
            return None
        except DeltaStoreError as exc:
            # The old records must not stay: the rows' checkpoint would cover values the
            # store does not hold, and a later row going back to an old value would be
            # skipped. Forgotten, those users are sent whole next time (dearer, never wrong).
            self.store.forget_keys([key for key, _ in records])  # raises: held, tried again
            return str(exc)

    def _written(self, attempt: Future[str | None], write: _Write) -> None:
        exc = attempt.exception()
        if exc is not None:
            self._hold([write], exc)
            return
        why = attempt.result()
        if why is not None and time.monotonic() - self._forgot_at > 60:
            self._forgot_at = time.monotonic()
            log.error(
                "delta: cannot remember acknowledged values (%s): those users are forgotten"
                " instead, their values sent whole next time",
                why,
            )
        self._unsynced.append(write)
        self._sync_soon()

    def _sync_soon(self) -> None:
        if self._sync_due is None and not self._syncing and self._unsynced:
            loop = asyncio.get_running_loop()
            self._sync_due = loop.call_later(SYNC_EVERY_S, self._sync)

    def _sync(self) -> None:
        """Group commit: one fsync for every write done so far; their rows settle after it."""
        self._sync_due = None
        writes, self._unsynced = self._unsynced, []
        self._syncing = True
        loop = asyncio.get_running_loop()
        attempt = self._thread.submit(self.store.sync)
        attempt.add_done_callback(lambda f: loop.call_soon_threadsafe(self._synced, f, writes))

    def _synced(self, attempt: Future[None], writes: list[_Write]) -> None:
        self._syncing = False
        exc = attempt.exception()
        if exc is not None:  # what reached the disk is unknown: forgotten, when it can be
            self._hold(writes, exc)
        else:
            for write in writes:
                write.done.set_result(None)
        self._sync_soon()

    def _hold(self, writes: list[_Write], exc: BaseException) -> None:
        """Neither written nor forgotten: the rows wait; forgetting is tried again."""
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
        keys = [key for write in writes for key in write.keys]
        loop = asyncio.get_running_loop()
        attempt = self._thread.submit(self._forget_synced, keys)
        attempt.add_done_callback(lambda f: loop.call_soon_threadsafe(self._retried, f, writes))

    def _forget_synced(self, keys: list[bytes]) -> None:
        self.store.forget_keys(keys)
        self.store.sync()

    def _retried(self, attempt: Future[None], writes: list[_Write]) -> None:
        exc = attempt.exception()
        if exc is not None:
            self._hold(writes, exc)
            return
        log.warning(
            "delta: the store takes writes again: %d users whose values it could not remember"
            " are forgotten (sent whole next time)",
            sum(len(write.keys) for write in writes),
        )
        for write in writes:
            write.done.set_result(None)
        if not self._failed:
            self.writes.succeeded()

    async def synced(self) -> None:
        """Sync now what waits for the next sync (a graceful stop: its rows settle first;
        writes that fail stay held, unsettled)."""
        for _ in range(4):  # a write done meanwhile waits for one more sync
            if self._sync_due is not None:
                self._sync_due.cancel()
                self._sync_due = None
            if self._unsynced and not self._syncing:
                self._sync()
            await self.drained()
            await asyncio.sleep(0)  # the sync's callback, then the rows' settling, run
            if not self._unsynced and not self._syncing and self._sync_due is None:
                return

    async def drained(self) -> None:
        """Every queued write is done (a file's end, shutdown)."""
        await asyncio.get_running_loop().run_in_executor(self._thread, lambda: None)

    async def sweep_forever(self) -> None:
        """Retention: records older than max_age_days only cause sending again: deleted, a
        step at a time on the store's thread, so that lookups wait at most one step."""
        loop = asyncio.get_running_loop()
        while True:
            after: bytes | None = None
            deleted = 0
            while True:
                step = self.store.sweep_step
                try:
                    n, after = await loop.run_in_executor(
                        self._thread, step, int(self.clock()), self.max_age_s, after
                    )
                except DeltaStoreError as exc:
                    log.error("delta: retention: %s", exc)
                    break
                deleted += n
                if after is None:
                    break
                await asyncio.sleep(SWEEP_PAUSE_S)
            if deleted:
                log.info("delta: retention removed %d users' values older than max_age", deleted)
            await asyncio.sleep(SWEEP_EVERY_S)

    async def close(self) -> None:
        """Rows still waiting for a write or a sync stay unsettled: sent again after a start."""
        for due in (self._sync_due, self._retry_due):
            if due is not None:
                due.cancel()
        await self.drained()
        self._thread.shutdown(wait=True)
        self.store.close()
