"""The PostgreSQL journal (journal.url, issue 17) against the SQLite one: the daemon as a real
process sends the same file with each, in turns, in one run (run.py calls it; `make bench`
prints it). Target: PostgreSQL at least 90% of SQLite's rows/s.

Each PostgreSQL run gets a database of its own on the server of tests/pg.py
($RPI_BRAZE_SYNC_TEST_PG, else 127.0.0.1:5432, user postgres), dropped afterwards. The daemon
is one of a pair whose standby is not started: it sends once it holds the lease.

    python tests/benchmarks/journal_engines.py [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.run import (
    FAST,
    QUICK_WATCH,
    Daemon,
    Fake,
    Figure,
    generate,
    print_table,
    wait_for_objects,
)
from tests.pg import Database


async def _leading(daemon: Daemon, timeout_s: float = 30) -> None:
    """Until /readyz says the daemon leads (a file dropped before would be history)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{daemon.port}/readyz") as r,
        ):
            if "role: leader" in await r.text():
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"never the leader: see {daemon.workdir / 'daemon.log'}")


async def _throughput(work: Path, data: Path, rows: int, url: str | None) -> dict[str, float]:
    extra: dict[str, Any] = {"journal": {"url": url}} if url else {}
    async with Fake() as fake, Daemon(work, fake, FAST, QUICK_WATCH, {}, extra) as daemon:
        if url:
            await _leading(daemon)
        cpu_before = daemon.cpu_s()
        daemon.drop(data, "export.txt")
        stats = await wait_for_objects(fake, rows, timeout_s=600)
        cpu = daemon.cpu_s() - cpu_before
    seconds = stats["last"] - stats["first"]
    return {"rows_s": rows / seconds, "cpu_s_per_m": cpu / rows * 1_000_000}


async def journal_figures(work: Path, data: Path, rows: int, runs: int) -> list[Figure]:
    sqlite: list[dict[str, float]] = []
    postgres: list[dict[str, float]] = []
    for i in range(runs):  # in turns, so the machine's noise hits both alike
        database = Database()
        try:
            first_pg = i % 2 == 1
            if first_pg:
                postgres.append(await _throughput(work / f"jp{i}", data, rows, database.url))
            sqlite.append(await _throughput(work / f"js{i}", data, rows, None))
            if not first_pg:
                postgres.append(await _throughput(work / f"jp{i}", data, rows, database.url))
        finally:
            database.drop()
    ratio = [p["rows_s"] / s["rows_s"] for p, s in zip(postgres, sqlite, strict=True)]
    return [
        Figure("journal SQLite, rows/s", [s["rows_s"] for s in sqlite], "", "reference"),
        Figure("journal PostgreSQL, rows/s", [p["rows_s"] for p in postgres], "", ""),
        Figure("journal PostgreSQL / SQLite", ratio, "", ">= 0.90"),
        Figure("journal SQLite, CPU s per 1M rows", [s["cpu_s_per_m"] for s in sqlite], "s", ""),
        Figure(
            "journal PostgreSQL, CPU s per 1M rows", [p["cpu_s_per_m"] for p in postgres], "s", ""
        ),
    ]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        data = work / "rows.txt"
        generate(data, args.rows)
        print_table(args.runs, await journal_figures(work, data, args.rows, args.runs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", default=None)
    asyncio.run(main(parser.parse_args()))
