"""deltarun.DeltaRun with a real store: retention removes users whose values were all last
sent more than max_age_days ago, and keeps the others."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from rpi_braze_sync import deltawrites
from rpi_braze_sync.concurrency import KeptPlaces
from rpi_braze_sync.delta import user_key
from rpi_braze_sync.deltarecord import pack_record
from rpi_braze_sync.deltarun import DeltaRun
from rpi_braze_sync.deltastore import DeltaStore
from rpi_braze_sync.deltaunwritten import USELESS_LOOKUPS
from rpi_braze_sync.metrics import Metrics

NOW = 1_800_000_000
DAY = 86400


async def test_retention_removes_only_users_older_than_max_age(tmp_path: Path) -> None:
    store = DeltaStore.open(tmp_path, "workspace")
    old, young = user_key("old"), user_key("young")
    fields = (b"path", b"12345678", b"")
    store.remember(
        [
            (old, pack_record(NOW - 31 * DAY, *fields, 1, bytes(8), bytes(8))),
            (young, pack_record(NOW - 29 * DAY, *fields, 1, bytes(8), bytes(8))),
        ]
    )
    run = DeltaRun(store, 30, Metrics(), clock=lambda: NOW)
    sweeping = asyncio.create_task(run.sweep_forever())
    try:
        for _ in range(100):
            if (await run.lookup([old]))[0] is None:
                break
            await asyncio.sleep(0.05)
        gone, kept = await run.lookup([old, young])
        assert gone is None
        assert kept is not None
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
        await run.close()


def _records(n: int) -> list[tuple[bytes, bytes]]:
    fields = (b"path", b"12345678", b"")
    return [(user_key(f"u{i}"), pack_record(NOW, *fields, 1, bytes(8), bytes(8))) for i in range(n)]


async def test_acknowledged_records_reach_the_store_at_once_and_settle_after_the_sync(
    tmp_path: Path,
) -> None:
    """Writes are made on the loop before remember returns (deltawrites.py): a kill -9 then
    finds them; their future is done only once a sync followed them."""
    run = DeltaRun(DeltaStore.open(tmp_path, "workspace"), 30, Metrics(), clock=lambda: NOW)
    try:
        first, second = _records(2), _records(4)[2:]
        done_first = run.remember(first)
        done_second = run.remember(second)
        loop = asyncio.get_running_loop()
        held = await loop.run_in_executor(run._thread, run.store.lookup, [first[0][0]])
        assert held == [first[0][1]]
        assert done_first.stored
        assert not done_first.done()  # not synced yet: its rows may not settle
        await asyncio.wait_for(asyncio.gather(done_first, done_second), timeout=5)
        stored = await loop.run_in_executor(run._thread, run.store.lookup, [second[0][0]])
        assert stored == [second[0][1]]
    finally:
        await run.close()


async def test_a_lookup_reads_the_records_acknowledged_before_it(tmp_path: Path) -> None:
    """deltaflight.InFlight trusts a lookup for every record acknowledged before it was queued:
    the queued writes go first, in the lookup's own job."""
    run = DeltaRun(DeltaStore.open(tmp_path, "workspace"), 30, Metrics(), clock=lambda: NOW)
    try:
        records = _records(300)
        # without a loop turn between: the first handed over, the others queued behind it
        writes = [run.remember(records[at : at + 75]) for at in range(0, 300, 75)]
        assert await run.lookup([key for key, _ in records]) == [r for _, r in records]
        await asyncio.wait_for(asyncio.gather(*writes), timeout=5)
    finally:
        await run.close()


async def test_a_sync_is_not_left_for_the_interval_once_enough_rows_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Places are given back once rows are written: the rows waiting for a sync (held in
    memory until their checkpoint) are bounded by SYNC_EVERY_ROWS, not only by the interval
    (a minute here: without the bound, nothing would be synced for one)."""
    monkeypatch.setattr(deltawrites, "SYNC_EVERY_S", 60.0)
    monkeypatch.setattr(deltawrites, "SYNC_EVERY_ROWS", 3)
    run = DeltaRun(DeltaStore.open(tmp_path, "workspace"), 30, Metrics(), clock=lambda: NOW)
    try:
        records = _records(4)
        first = run.remember(records[:2])
        await run.drained()
        await asyncio.sleep(0)
        assert not first.done()  # 2 rows wait: the interval's sync
        await asyncio.wait_for(run.remember(records[2:]), 10)  # 4 rows wait: synced now
        assert first.done()
    finally:
        await run.close()


async def test_sync_now_syncs_what_waits_without_waiting_for_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender out of places kept by rows waiting for the sync: their write is synced at
    once (here the interval is a minute: without sync_now, nothing would be done for one);
    not when the places kept wait only for their write."""
    monkeypatch.setattr(deltawrites, "SYNC_EVERY_S", 60.0)
    run = DeltaRun(DeltaStore.open(tmp_path, "workspace"), 30, Metrics(), clock=lambda: NOW)
    try:
        first, second = _records(2), _records(4)[2:]
        done_first = run.remember(first)
        await run.drained()
        await asyncio.sleep(0)  # (the write's callback: it waits for the sync now)
        assert not done_first.done()
        run.commit.sync_now()
        await asyncio.wait_for(done_first, 10)
        # A write whose request's place is given back once written: its place waits for no
        # sync, so sync_now does not hurry one (an fsync every few requests, under load).
        places = KeptPlaces(lambda: None)
        done_second = run.remember(second)
        done_second.give_back_if_stored(places.keep(len(second) + 1))  # a row without one
        assert places.count == 1
        done_second.give_back_if_stored(places.keep(len(second)))
        assert places.count == 1
        run.commit.sync_now()
        due = run.commit._sync_due
        assert due is not None
        assert due.when() - asyncio.get_running_loop().time() > 30
        assert not done_second.done()
    finally:
        await run.close()


class CountingStore(DeltaStore):
    """The real store, counting the users each lookup asks it for."""

    asked: list[list[bytes]]

    def lookup(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self.asked.append(list(keys))
        return super().lookup(keys)


def _counting(tmp_path: Path) -> CountingStore:
    store = CountingStore.open(tmp_path, "workspace")
    assert isinstance(store, CountingStore)
    store.asked = []
    return store


async def test_a_store_found_empty_is_asked_only_of_users_written_since(tmp_path: Path) -> None:
    """A first run's chunks cost no lookup (deltaunwritten.py); a user written since is asked
    for, and found, as is a record written while a lookup of him was queued. A user looked up
    is marked then: his write need not mark him again (remember's marked)."""
    store = _counting(tmp_path)
    run = DeltaRun(store, 30, Metrics(), clock=lambda: NOW)
    try:
        records = _records(600)
        assert await run.lookup([key for key, _ in records[:250]]) == [None] * 250
        assert store.asked == []
        await run.remember(records[:250], marked=True)
        await run.remember(records[250:300])  # (not looked up: marked as written)
        found = await run.lookup([key for key, _ in records])
        assert found == [record for _, record in records[:300]] + [None] * 300
        asked = {key for keys in store.asked for key in keys}
        assert {key for key, _ in records[:300]} <= asked
        assert len(asked - {key for key, _ in records[:300]}) < 10  # (bits shared: a few)
    finally:
        await run.close()
    store = _counting(tmp_path)  # not empty: every user is asked for
    run = DeltaRun(store, 30, Metrics(), clock=lambda: NOW)
    try:
        found = await run.lookup([key for key, _ in records])
        assert found == [record for _, record in records[:300]] + [None] * 300
        assert store.asked == [[key for key, _ in records]]
    finally:
        await run.close()


async def test_the_bitmap_is_dropped_once_every_user_asked_for_was_written(
    tmp_path: Path,
) -> None:
    """An unchanged run: each check would spare nothing; dropped, the store is asked as
    before (a first run's user after that is looked up, and not found)."""
    store = _counting(tmp_path)
    run = DeltaRun(store, 30, Metrics(), clock=lambda: NOW)
    try:
        records = _records(20)
        await run.remember(records)
        keys = [key for key, _ in records]
        for _ in range(USELESS_LOOKUPS):
            assert await run.lookup(keys) == [record for _, record in records]
        assert store.unwritten is None
        store.asked.clear()
        assert await run.lookup([user_key("new")]) == [None]
        assert store.asked == [[user_key("new")]]
    finally:
        await run.close()


async def test_a_store_emptied_by_forgetting_all_is_asked_only_of_users_written_since(
    tmp_path: Path,
) -> None:
    store = DeltaStore.open(tmp_path, "workspace")
    store.remember(_records(5))
    store.forget_all()
    store.close()
    store = _counting(tmp_path)
    run = DeltaRun(store, 30, Metrics(), clock=lambda: NOW)
    try:
        assert await run.lookup([key for key, _ in _records(5)]) == [None] * 5
        assert store.asked == []
    finally:
        await run.close()


async def test_a_chunk_with_few_users_the_store_may_hold_reads_them_on_the_loop(
    tmp_path: Path,
) -> None:
    """A first run's chunk with a few users written since (READ_ON_LOOP_AT_MOST): they are
    read at once, with no hop to the store's thread; more of them, on the store's thread."""
    store = _counting(tmp_path)
    run = DeltaRun(store, 30, Metrics(), clock=lambda: NOW)
    try:
        records = _records(300)
        await run.remember(records[:20])
        keys = [key for key, _ in records]
        few = run.lookup(keys[:10] + keys[100:200])  # 10 of 110 (13 at most)
        assert few.done()
        assert few.result() == [record for _, record in records[:10]] + [None] * 100
        [asked] = store.asked
        assert asked[:10] == keys[:10]
        assert len(asked) < 13  # (a user sharing a bit with one written: a few more)
        many = run.lookup(keys[10:20] + keys[200:240])  # 10 of 50
        assert not many.done()
        assert await many == [record for _, record in records[10:20]] + [None] * 40
    finally:
        await run.close()


async def test_a_change_of_workspace_queued_is_waited_for_by_a_chunk_read_on_the_loop(
    tmp_path: Path,
) -> None:
    """The other workspace's values are forgotten on the store's thread: until that is done,
    a chunk with a few users held is read there, behind it, never on the loop (it would find
    the other workspace's records, and skip what the new one lacks)."""
    store = _counting(tmp_path)
    run = DeltaRun(store, 30, Metrics(), clock=lambda: NOW, workspace="workspace")
    busy = threading.Event()
    try:
        records = _records(200)
        await run.remember(records[:5])
        keys = [key for key, _ in records]
        run._thread.submit(busy.wait)  # the store's thread busy: the change waits behind
        run.change_workspace("another")
        queued = run.lookup(keys[:5] + keys[50:100])
        assert not queued.done()
        busy.set()
        assert await asyncio.wait_for(queued, 10) == [None] * 55
        after = run.lookup(keys[:5] + keys[100:200])  # the store holds this workspace's only
        assert after.done()
        assert after.result() == [None] * 105
        run._stale_since = time.monotonic()  # (as when forgetting the other one failed)
        stale = run.lookup(keys[:5] + [user_key(f"new-{i}") for i in range(100)])
        assert not stale.done()
        assert await asyncio.wait_for(stale, 10) == [None] * 105
    finally:
        busy.set()
        await run.close()
