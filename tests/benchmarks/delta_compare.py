"""CPU per row of delta in the daemon (issue 16): deltarun.DeltaFile with a real store, on
objects shaped like the seed's mapping sends (8 standard fields, 3 nested keys, 4 array values).

    python tests/benchmarks/delta_compare.py [--rows 200000] [--profile]

Chunks of 500 rows, as the pipeline hands them: per chunk `filter` (user keys, one batched
lookup, the comparison, objects rebuilt), then `acknowledged` for the rows sent (records built
and written on the store's thread). Prints CPU µs per row, the process's (every thread: the
store's writes and compactions included), and apart the rows' summaries (made in the mapping
process, beside the objects), for:
- first run: nothing remembered;
- unchanged: the same rows again (nothing sent, nothing written);
- 10 % changed: one value changed in one row of ten;
- new ids: every row carries a new channel execution id (an array value added).
Not in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import resource
import tempfile
from pathlib import Path

import orjson

from rpi_braze_sync.batching import Item
from rpi_braze_sync.chunks import ChunkData
from rpi_braze_sync.deltacolumns import summaries
from rpi_braze_sync.deltafile import DeltaFile
from rpi_braze_sync.deltarun import DeltaRun
from rpi_braze_sync.deltastore import DeltaStore
from rpi_braze_sync.metrics import Metrics

CHUNK = 500


def body(i: int, run: int = 1, changed_every: int = 0) -> bytes:
    first = f"First{i % 977}" + ("x" if changed_every and i % changed_every == 0 else "")
    return orjson.dumps({
        "external_id": f"u{i}", "first_name": first, "last_name": f"Last{i % 1013}",
        "email": f"u{i}@example.com", "country": "FR", "dob": f"19{50 + i % 50}-01-1{i % 9}",
        "gender": "MF"[i % 2], "home_city": "Paris", "phone": f"+3312345{i % 10000:04d}",
        "rpi_audience_outputs": {"add": ["Spring Sale"]}, "rpi_offers": {"add": ["Bench"]},
        "rpi_contact_ids": {"add": [str(100000 + i)]}, "rpi_channel_exec_ids": {"add": [str(run)]},
        "rpi_cdp_attributes": {"education": "Master", "income": i % 100000, "marital_status": "married"},
        "_merge_objects": True, "_update_existing_only": False,
    })  # fmt: skip


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_pass(run: DeltaRun, n: int, make: object) -> tuple[float, float]:
    """CPU seconds of delta's work on n rows in the daemon, and of the rows' summaries (made
    in the mapping process; making the objects is not counted)."""
    file = DeltaFile(run, "bench", "upsert")
    spent = summarising = 0.0
    for start in range(0, n, CHUNK):
        indexes = list(range(start, min(n, start + CHUNK)))
        bodies = [make(i) for i in indexes]  # type: ignore[operator]
        chunk = ChunkData(
            indexes, indexes, [f"u{i}" for i in indexes], bodies, [""] * len(indexes), [], {},
            False, 0.0, 0,
        )  # fmt: skip
        before = cpu()
        chunk.deltas = summaries(bodies)
        summarising += cpu() - before
        before = cpu()
        await file.filter(chunk)
        items = [
            Item(None, i, i, u, b, "")
            for i, u, b in zip(chunk.indexes, chunk.users, chunk.bodies, strict=True)
        ]
        file.acknowledged(items)
        spent += cpu() - before
    before = cpu()
    await run.drained()
    run.store._db.flush()  # the memtable's share of the writes' cost
    spent += cpu() - before
    return spent, summarising


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = DeltaStore.open(Path(tmp), "bench")
        run = DeltaRun(store, 30, Metrics())
        n = args.rows
        cases = [
            ("first run", lambda i: body(i)),
            ("unchanged", lambda i: body(i)),
            ("10 % changed", lambda i: body(i, 1, 10)),
            ("new ids each run", lambda i: body(i, 2)),
        ]
        print(
            "| case | CPU µs per row, daemon | summaries (mapping process) |\n| --- | --- | --- |"
        )
        for name, make in cases:
            profile = cProfile.Profile() if args.profile else None
            if profile:
                profile.enable()
            spent, summarising = await one_pass(run, n, make)
            if profile:
                profile.disable()
                pstats.Stats(profile).sort_stats("cumulative").print_stats(15)
            print(f"| {name} | {spent / n * 1e6:.2f} | {summarising / n * 1e6:.2f} |", flush=True)
        await run.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
    asyncio.run(main(parser.parse_args()))
