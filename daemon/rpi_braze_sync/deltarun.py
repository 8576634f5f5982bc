"""Delta in the daemon (issue 16): the store on a thread of its own and the rows in flight;
per file, deltafile.DeltaFile compares each chunk before it is sent and builds the records of
the rows Braze acknowledged.

Crash safety (kill -9 or a power cut at any moment): nothing is written to the store when a
chunk is compared or a request leaves; a row's record is written only from `acknowledged`, which
the sender calls for the objects of a 2xx answer that Braze did not list in `errors`. The job
settles those rows only once the store's write is done AND synced (deltawrites.py: one fsync
for every write of SYNC_EVERY_S, group commit), so no checkpoint covers a row whose new values
the store may lack (deltastore.py: the other order skips a reverted value wrongly after a
kill). A write that fails forgets those users instead (sent whole next time); while the store
takes no write at all, their rows stay unsettled, sending pauses and /readyz says why
(`writes`, as StateWrites does for the state directory), and the forgetting is tried again
until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import deltastats
from .deltaflight import InFlight
from .deltastore import DeltaStore, DeltaStoreError, workspace_fingerprint
from .deltawrites import GroupCommit, Remembered
from .statewrites import RETRY_S

if TYPE_CHECKING:
    from .config import LoadedConfig
    from .metrics import Metrics

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 3600.0  # retention: one step between others, all records once an hour
SWEEP_PAUSE_S = 1.0
DAY_S = 86400
# A chunk whose users the store may hold are at most one in this many (a first run's: the
# bitmap's false positives, a user met twice) reads them on the loop, not on the store's
# thread: there the hop cost the loop more than the read (a first run of 1M rows, 3 % false
# positives, nearly every chunk: 0.5 us a row of the loop's GIL, 0.27 of the store's thread),
# while reading 15 users a store does not hold costs 8 us (its Bloom filters), 60 it holds
# 200 us, the GIL let go meanwhile.
READ_ON_LOOP_AT_MOST = 8


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
    """One per daemon: the store (written on the loop; read, synced and swept on a thread of
    its own, in order: a lookup queued after a write reads it; a first run's few users read on
    the loop: `lookup`), and the rows in flight of every file."""

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
        # Which workspace's store the values belong to: rows compared or sent under an
        # earlier one are never remembered (deltafile.DeltaFile.disown_if_stale).
        self.generation = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="delta-store")
        self.commit = GroupCommit(store, self._thread)  # the writes, synced in groups
        # Whether the store takes writes: the daemon pauses sending while it fails, /readyz
        # says why.
        self.writes = self.commit.writes
        # Monotonic time of a failed change of workspace (values of the other one may stay).
        self._stale_since: float | None = None
        # The generation whose values alone the store holds (set on the store's thread once
        # it forgot the others): until then a lookup must queue behind the change.
        self._store_generation = 0
        # (The store's thread.) The change of workspace to try again while stale: its own
        # copy, so that the thread never reads the loop's `workspace` and `generation`.
        self._change_again: tuple[str, int] | None = None

    def apply(self, config: LoadedConfig) -> None:
        """A reload: another Braze workspace (api_url or key) starts with nothing remembered;
        the reset is queued on the store's thread, so every later lookup sees it."""
        self.max_age_s = int(config.settings.delta.max_age_days * DAY_S)
        self.change_workspace(workspace_of(config))

    def change_workspace(self, workspace: str) -> None:
        """`apply`'s: another workspace (its fingerprint) forgets every remembered value."""
        if workspace == self.workspace:
            return
        self.workspace = workspace
        self.generation += 1
        log.warning(
            "delta: the Braze workspace (api_url or API key) changed: forgetting every"
            " remembered value; everything is sent again"
        )
        # (The old workspace's acknowledged values are written already: the reset follows.)
        self._thread.submit(self._change_workspace, workspace, self.generation)

    def _change_workspace(self, workspace: str, generation: int) -> None:
        """(The store's thread.) Until the other workspace's values are forgotten, none is
        trusted: every lookup finds nothing (sent whole), and forgetting is tried again once
        a minute; a restart before then empties the store (its marker names the other)."""
        try:
            self.store.change_workspace(workspace)
        except DeltaStoreError as exc:
            self._change_again = (workspace, generation)
            if self._stale_since is None:
                log.error("delta: cannot forget the other workspace's values (%s): every row"
                          " is sent whole until they are", exc)  # fmt: skip
            self._stale_since = time.monotonic()
            return
        if self._stale_since is not None:
            log.info("delta: the other workspace's values are forgotten")
        self._stale_since = None
        self._change_again = None
        self._store_generation = generation

    def _lookup(self, keys: list[bytes]) -> list[bytes | None]:
        """(The store's thread.)"""
        stale_since, again = self._stale_since, self._change_again
        if stale_since is not None and again is not None and time.monotonic() - stale_since > 60:
            self._change_workspace(*again)
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

    # --- lookups, on the store's thread or, a first run's, on the loop (writes are made on
    # the loop: deltawrites.py) ---

    def lookup(self, keys: list[bytes]) -> asyncio.Future[list[bytes | None]]:
        """The users' records; only those the store may hold are asked of it (a first run's
        chunk: none or a few, read on the loop, with no task to run: deltaunwritten.py and
        READ_ON_LOOP_AT_MOST)."""
        held = self.store.maybe_held(keys)
        if held is None or len(held) == len(keys):
            return asyncio.ensure_future(self._looked_up(keys))
        # (None held: the store holds none of them, whatever is queued on its thread.)
        if held and (len(held) * READ_ON_LOOP_AT_MOST > len(keys) or not self._store_current()):
            return asyncio.ensure_future(self._partly(keys, held))
        answer = asyncio.get_running_loop().create_future()
        try:  # (an error reaches the chunk's comparison, as from the store's thread)
            answer.set_result(_spread(len(keys), held, self._read_on_loop(keys, held)))
        except Exception as exc:
            answer.set_exception(exc)
        return answer

    def _store_current(self) -> bool:
        """Whether the store holds only this workspace's values: no change of workspace is
        queued on its thread, or failed (a read on the loop would not wait for it)."""
        return self._store_generation == self.generation and self._stale_since is None

    def _read_on_loop(self, keys: list[bytes], held: list[int]) -> list[bytes | None]:
        """The records of the users at `held` (none or few: READ_ON_LOOP_AT_MOST), read here."""
        if not held:
            return []
        try:
            return self.store.lookup([keys[i] for i in held])
        except DeltaStoreError as exc:  # nothing known: everything is sent
            return _sent_whole(exc, len(held))

    async def _partly(self, keys: list[bytes], held: list[int]) -> list[bytes | None]:
        return _spread(len(keys), held, await self._looked_up([keys[i] for i in held]))

    async def _looked_up(self, keys: list[bytes]) -> list[bytes | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._lookup_or_none, keys)

    def _lookup_or_none(self, keys: list[bytes]) -> list[bytes | None]:
        """(The store's thread.)"""
        try:
            return self._lookup(keys)
        except DeltaStoreError as exc:  # nothing known: everything is sent
            return _sent_whole(exc, len(keys))

    def remember(self, records: list[tuple[bytes, bytes]], marked: bool = False) -> Remembered:
        """Write acknowledged records (deltawrites.GroupCommit.remember). `marked`: each of
        their users was looked up (`lookup` since this store was opened: DeltaStore.remember)."""
        return self.commit.remember(records, marked)

    async def synced(self) -> None:
        """Write and sync now what waits for the next sync (a graceful stop)."""
        await self.commit.synced()

    async def drained(self) -> None:
        """Every job queued on the store's thread is done (a file's end, shutdown)."""
        await self.commit.drained()

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
        self.commit.cancel()
        await self.drained()
        self._thread.shutdown(wait=True)
        self.store.close()


def _spread(count: int, held: list[int], found: list[bytes | None]) -> list[bytes | None]:
    """The records of a chunk's `count` users: those found for the users at `held`, None for
    the others."""
    records: list[bytes | None] = [None] * count
    for i, record in zip(held, found, strict=True):
        records[i] = record
    return records


def _sent_whole(exc: DeltaStoreError, count: int) -> list[bytes | None]:
    """A lookup that failed: nothing is known of those users, their rows are sent whole."""
    log.error("delta: %s: the rows are sent whole", exc)
    return [None] * count
