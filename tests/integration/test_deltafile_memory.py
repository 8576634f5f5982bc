"""deltafile.DeltaFile with a real store: a body delta rebuilds holds about its own length until
its row is sent (orjson's bytes keep the 4 KB buffer they were written into: a run where each
row gains one array value, a new execution id, held 4 KB a row, 40 MB at 10,000 rows)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import orjson

from rpi_braze_sync.batching import Item
from rpi_braze_sync.chunks import ChunkData
from rpi_braze_sync.deltafile import DeltaFile
from rpi_braze_sync.deltarun import DeltaRun
from rpi_braze_sync.deltastore import DeltaStore
from rpi_braze_sync.metrics import Metrics

NOW = 1_800_000_000
ROWS = 500


def chunk(execution_id: str) -> ChunkData:
    bodies = [
        orjson.dumps({
            "external_id": f"u{i}", "first_name": f"Ann{i}", "country": "FR",
            "rpi_channel_exec_ids": {"add": [execution_id]},
            "rpi_cdp_attributes": {"income": i}, "_merge_objects": True,
        })
        for i in range(ROWS)
    ]  # fmt: skip
    indexes = list(range(ROWS))
    users = [f"u{i}" for i in indexes]
    return ChunkData(indexes, indexes, users, bodies, [""] * ROWS, [], {}, False, 0.0, ROWS)


async def test_a_rebuilt_body_holds_about_its_length(tmp_path: Path) -> None:
    run = DeltaRun(DeltaStore.open(tmp_path, "workspace"), 30, Metrics(), clock=lambda: NOW)
    try:
        first = DeltaFile(run, "c", "upsert")
        sent = chunk("5501")
        assert await first.filter(sent) == []  # nothing remembered: every row whole
        items = [
            Item(None, i, i, u, b, "")
            for i, u, b in zip(sent.indexes, sent.users, sent.bodies, strict=True)
        ]
        written = first.acknowledged(items)
        assert written is not None
        await written
        again = chunk("5502")
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            second = DeltaFile(run, "c", "upsert")
            assert await second.filter(again) == []
            held = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        assert all(b.startswith(b'{"external_id":"u') and b"5502" in b for b in again.bodies)
        assert all(b"first_name" not in b for b in again.bodies)  # only the new value left
        grown = sum(stat.size_diff for stat in held.compare_to(before, "filename"))
        # each row: its body (~70 B), summary, state and entries; 4 KB more with orjson's
        assert grown / ROWS < 1500, grown / ROWS
    finally:
        await run.close()
