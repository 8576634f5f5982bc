"""CPU per row of delta in the daemon (issue 16): deltarun.DeltaFile with a real store, on
the objects the seed's mapping sends for run.py's rows (8 standard fields, 3 nested keys, 4
array values).

    python tests/benchmarks/delta_compare.py [--rows 200000] [--profile]

Chunks of 500 rows, as the pipeline hands them: per chunk `filter` (user keys, one batched
lookup, the comparison, objects rebuilt), then `acknowledged` for the rows sent, 75 at a time
as Braze answers them (records built and written on the store's thread). Prints CPU µs per row, the process's (every thread: the
store's writes and compactions included), and apart the rows' summaries (made in the mapping
process from the objects' columns: mapping with delta on less mapping with it off), for:
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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.run import HEADER, ROOT, UPSERT

from rpi_braze_sync.batching import Item
from rpi_braze_sync.chunks import ChunkData
from rpi_braze_sync.config import load_config
from rpi_braze_sync.deltafile import DeltaFile
from rpi_braze_sync.deltarun import DeltaRun
from rpi_braze_sync.deltastore import DeltaStore
from rpi_braze_sync.mapper import FileMapper, bind
from rpi_braze_sync.metrics import Metrics

CHUNK = 500
REQUEST = 75  # objects per request (batching.py's default)


def cells(i: int, run: int = 1, changed_every: int = 0) -> list[str]:
    """run.py's row i (generate), of run `run` (its ChannelExecutionID), one in
    `changed_every` with its first name changed."""
    first = f"First{i % 977}" + ("x" if changed_every and i % changed_every == 0 else "")
    return [
        str(100000 + i), str(5500 + run), f"u{i}", first, f"Last{i % 1013}", f"u{i}@example.com",
        "FR", f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9}", "MF"[i % 2], "Paris",
        f"+3312345{i % 10000:04d}", "Spring Sale", "Master", str(i % 100000), "married",
    ]  # fmt: skip


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_pass(run: DeltaRun, mapper: FileMapper, n: int, make: object) -> tuple[float, float]:
    """CPU seconds of delta's work on n rows in the daemon, and of the rows' summaries (made
    in the mapping process; making the objects is not counted)."""
    file = DeltaFile(run, "bench", "upsert")
    spent = summarising = 0.0
    for start in range(0, n, CHUNK):
        indexes = list(range(start, min(n, start + CHUNK)))
        rows = [make(i) for i in indexes]  # type: ignore[operator]
        before = cpu()
        mapper.map_rows(rows, indexes)
        middle = cpu()
        mapped = mapper.map_rows(rows, indexes, delta=True)
        summarising += (cpu() - middle) - (middle - before)
        bodies = [b for b in mapped.bodies if b is not None]
        deltas = [s for s in mapped.summaries or () if s is not None]
        assert len(bodies) == len(deltas) == len(rows)  # none rejected
        chunk = ChunkData(
            indexes, indexes, mapped.users, bodies, [""] * len(indexes), [], {}, False, 0.0, 0,
            deltas,
        )  # fmt: skip
        before = cpu()
        await file.filter(chunk)
        items = [
            Item(None, i, i, u, b, "")
            for i, u, b in zip(chunk.indexes, chunk.users, chunk.bodies, strict=True)
        ]
        for at in range(0, len(items), REQUEST):  # one answer at a time, as Braze gives them
            file.acknowledged(items[at : at + REQUEST])
            await asyncio.sleep(0)
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
        channel = load_config(ROOT / "config" / "rpi-braze-sync.yaml", env={}, secrets=False)
        mapping = channel.channels[UPSERT].plan.mapping
        mapper = bind(mapping, HEADER, {"channel": UPSERT, "offer": "Bench", "workflow_id": "1"})
        cases = [
            ("first run", lambda i: cells(i)),
            ("unchanged", lambda i: cells(i)),
            ("10 % changed", lambda i: cells(i, 1, 10)),
            ("new ids each run", lambda i: cells(i, 2)),
        ]
        print(
            "| case | CPU µs per row, daemon | summaries (mapping process) |\n| --- | --- | --- |"
        )
        for name, make in cases:
            profile = cProfile.Profile() if args.profile else None
            if profile:
                profile.enable()
            spent, summarising = await one_pass(run, mapper, n, make)
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
