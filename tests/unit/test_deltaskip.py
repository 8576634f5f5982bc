"""deltaskip.ChunkSkip inside a DeltaFile (a dict for a store): what a chunk decided in phase 1
does once it is taken (DeltaFile.filter), a few chunks later."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from rpi_braze_sync.chunks import ChunkData, KeysData
from rpi_braze_sync.deltabody import summary
from rpi_braze_sync.deltafile import DeltaFile
from rpi_braze_sync.deltaprefilter import raw_fps, skip_points, with_raw
from rpi_braze_sync.deltarecord import timed, user_key
from rpi_braze_sync.errors import WorkspaceChangedError

from .test_deltafile import NOW, Run  # the same fake of the daemon's delta

SEED = 7


def known(run: Run, users: list[str]) -> KeysData:
    """Phase 1 of a chunk of `users`, each acknowledged before from the same source row."""
    raws = raw_fps([f"{u}\x1fAnn" for u in users], SEED)
    for user, raw in zip(users, raws, strict=True):
        body = orjson.dumps({"external_id": user, "first_name": "Ann"})
        run.store[user_key(user)] = timed(with_raw(summary(body), raw), NOW - 60)
    return KeysData(list(range(len(users))), [user_key(u) for u in users], raws, False)


def phase2(skipped: list[int]) -> ChunkData:
    """Its phase 2: no row mapped, `skipped` left unmapped."""
    chunk = ChunkData([], [], [], [], [], [], {}, False, 1.0, len(skipped))
    chunk.deltas = []
    chunk.skipped = skipped
    return chunk


async def test_skipped_rows_settle_as_unchanged_when_taken() -> None:
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    assert await delta.skip.decide(known(run, ["a", "b"])) == b"\0\0"
    assert await delta.filter(phase2([0, 1])) == [0, 1]
    assert delta.rows_unchanged == 2


async def test_rows_skipped_before_a_change_of_workspace_are_not_settled_after_it() -> None:
    """A reload names another Braze workspace between phase 1 (decided against the old one's
    store) and the chunk being taken: the new workspace may hold none of those values, so
    the rows must not settle as unchanged (the file is read again from its checkpoint)."""
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    assert await delta.skip.decide(known(run, ["a"])) == b"\0"
    run.generation += 1  # DeltaRun.apply: another workspace, its store emptied
    run.store.clear()
    with pytest.raises(WorkspaceChangedError):
        await delta.filter(phase2([0]))
    assert delta.points() == (0, 0)  # (counted when taken: never)
    assert delta.rows_unchanged == 0
    # A chunk decided after the change is taken as usual.
    again = DeltaFile(run, "c", "upsert")
    assert await again.skip.decide(known(run, ["b"])) == b"\0"
    assert await again.filter(phase2([0])) == [0]


class ReloadDuringLookup(Run):
    """A reload names another workspace while a chunk's records are read (DeltaRun.apply runs
    on the loop while the store's thread reads)."""

    reload = False

    async def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        records = [self.store.get(key) for key in keys]
        await asyncio.sleep(0)
        if self.reload:
            self.generation += 1
            self.store.clear()
        return records


async def test_rows_skipped_are_not_settled_when_the_workspace_changes_during_the_lookup() -> None:
    """The chunk's check before its comparison passed; the reload came while its mapped rows'
    records were read: the rows it skipped must not settle as unchanged either."""
    run = ReloadDuringLookup()
    delta = DeltaFile(run, "c", "upsert")
    keys = known(run, ["a", "b"])
    raws = list(keys.raws)
    raws[1] = b"\x09" * 8  # b's source row changed: mapped
    assert await delta.skip.decide(KeysData(keys.indexes, keys.keys, raws, False)) == b"\0\1"
    run.reload = True
    body = orjson.dumps({"external_id": "b", "first_name": "Bob"})
    chunk = ChunkData([1], [3], ["b"], [body], ["b\x1fBob"], [], {}, False, 1.0, 2)
    chunk.skipped = [0]
    with pytest.raises(WorkspaceChangedError):
        await delta.filter(chunk)
    assert delta.rows_unchanged == 0


async def test_skipped_rows_are_counted_when_taken_not_when_decided() -> None:
    """A checkpoint holds DeltaFile.points(): rows decided ahead and not yet taken (nor
    settled) must not be in it, or a restart reads, skips and counts them again."""
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    keys = known(run, ["a", "b"])
    points = sum(
        skip_points(run.store[key], raw, False, NOW, run.max_age_s)
        for key, raw in zip(keys.keys, keys.raws, strict=True)
    )
    assert points > 0
    await delta.skip.decide(keys)
    await delta.skip.decide(known(run, ["c"]))
    assert delta.points() == (0, 0)
    assert delta.rows_unchanged == 0
    assert delta.skip.rows_unmapped == 0
    assert await delta.filter(phase2([0, 1])) == [0, 1]
    assert delta.points() == (0, points)
    assert delta.rows_unchanged == 2
    assert delta.skip.rows_unmapped == 2
