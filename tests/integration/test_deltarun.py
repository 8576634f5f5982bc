"""deltarun.DeltaRun with a real store: retention removes users whose values were all last
sent more than max_age_days ago, and keeps the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rpi_braze_sync.delta import user_key
from rpi_braze_sync.deltarecord import pack_record
from rpi_braze_sync.deltarun import DeltaRun
from rpi_braze_sync.deltastore import DeltaStore
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
