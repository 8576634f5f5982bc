"""The status page's cost with a big journal: GET / and GET /status.json served by the real
HTTP server (server.py + statusweb.py) from a journal of --files files (10,000 by default:
mostly done in the last 24 hours, some failed or partly rejected, some queued; delta's data
points recorded for every done file in <state>/delta/files.jsonl), and how long the event
loop that sends is held up meanwhile.

Prints latencies (median, p95, max) seen by a client in a process of its own, uncached (the
journal read every time) and as served (reads kept for a second), the daemon side's CPU time
per request (its journal thread included) and the longest stall of a 5 ms ticker on the
daemon's event loop while it served them; and the one-off cost of reading files.jsonl whole
(the first request after a start), every later request reading only the lines appended.

    python tests/benchmarks/status_page.py [--files 10000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from rpi_braze_sync import deltastats, statusreads
from rpi_braze_sync.app import Daemon
from rpi_braze_sync.config import load_config
from rpi_braze_sync.deltastats import FilePoints
from rpi_braze_sync.deltastore import STORE_DIRECTORY
from rpi_braze_sync.server import build_app, start_server
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from rpi_braze_sync.statusinputs import RECENT_S
from rpi_braze_sync.statusweb import add_status_page

ROOT = Path(__file__).resolve().parents[2]
UPSERT, APPEND = "Braze Onboarding and Upsert", "Braze Append"
COLUMNS = (
    "rel_path, channel, size, mtime_ns, sha256, state, checkpoint, rows_sent, rows_rejected,"
    " fields_dropped, reason, first_seen_at, completed_at, started_at, finished_at, updated_at,"
    " rows_total"
)


def fill(state: Path, files: int) -> None:
    """`files` records in one transaction: 2% failed, 5% with rejects, 1% queued; the data
    points of every done file."""
    journal = journal_path(state, dry_run=False)
    SqliteJournal(journal).close()  # its schema
    now = time.time()
    rows = []
    points = []
    for i in range(files):
        at = now - 86_400 * 0.9 * (files - i) / files  # spread over the last ~22 hours
        channel = APPEND if i % 7 == 0 else UPSERT
        rel = f"{channel}/Offer {i % 40}/{1000 + i}/RPI_Export_{i}.txt"
        state_name, reason, rejected = "done", None, 0
        if i % 50 == 0:
            state_name, reason = "failed", "line 2 (byte 10): not valid utf-8; nothing was sent"
        elif i % 20 == 0:
            rejected = 12
        queued = i >= files - files // 100
        if queued:
            state_name = "complete"
        finished = None if queued else at + 30
        if state_name == "done":
            points.append(FilePoints(i + 1, rel, channel, 3 * (5000 - rejected), 7000, at + 30))
        rows.append(
            (rel, channel, 1000, i, "x" * 64, state_name, 5000, 5000 - rejected, rejected, 3,
             reason, at, at + 2, None if queued else at + 3, finished, finished or at, 5000)
        )  # fmt: skip
    with sqlite3.connect(journal) as db:
        marks = ", ".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO files ({COLUMNS}) VALUES ({marks})", rows)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('initialized_at', ?)", (str(now),))
    (state / STORE_DIRECTORY).mkdir()
    for entry in points:
        deltastats.append(state, entry)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLIENT = """
import asyncio, sys, time, aiohttp
async def main(url, n):
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            start = time.perf_counter()
            async with session.get(url) as answer:
                await answer.read()
                assert answer.status == 200, answer.status
            print(1000 * (time.perf_counter() - start))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def measure(url: str, requests: int) -> tuple[list[float], float, float]:
    """Latencies (ms) seen by a client in a process of its own; the daemon side's CPU
    seconds per request and the longest stall of its event loop (ms)."""
    stalls: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(time.perf_counter() - before - 0.005)

    tick = asyncio.create_task(ticker())
    cpu = time.process_time()
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, url, str(requests), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await client.communicate()
    cpu = (time.process_time() - cpu) / requests
    tick.cancel()
    assert client.returncode == 0
    latencies = [float(line) for line in out.decode().split()]
    return latencies, cpu, 1000 * max(stalls, default=0.0)


def row(name: str, latencies: list[float], cpu: float, stall: float) -> str:
    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (
        f"{name:<34} {statistics.median(ordered):>8.1f} {p95:>8.1f} {ordered[-1]:>8.1f}"
        f" {1000 * cpu:>9.1f} {stall:>10.1f}"
    )


async def main(files: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        config = yaml.safe_load((ROOT / "config" / "rpi-braze-sync.yaml").read_text())
        config["watch"]["base_output_directory"] = str(tmp / "exports")
        config["state_directory"] = str(tmp / "state")
        config["braze"]["dry_run"] = False
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))
        fill(tmp / "state", files)
        # Live (a dry run reads no data points), never started: nothing is sent.
        daemon = Daemon(load_config(tmp / "config.yaml", {"BRAZE_API_KEY": "bench-key"}))
        app = build_app(daemon.metrics, daemon.readiness.problems)
        add_status_page(app, daemon)
        port = free_port()
        server = await start_server(app, f"127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(base + "/") as first:
                    size = len(await first.read())  # also opens the reader's connection
                async with session.get(base + "/status.json?page=20") as older:
                    shown = (await older.json())["recent"]["files"]
            counted = sum(f["data_points_sent"] is not None for f in shown)
            assert counted == sum(f["state"] == "done" for f in shown) > 0, "no data points"
            print(f"journal: {files:,} files; the page: {size:,} bytes; {requests} requests each")
            cpu = time.process_time()
            known = len(deltastats.Follower(tmp / "state", RECENT_S + 3600).points(time.time()))
            cpu = 1000 * (time.process_time() - cpu)
            print(
                f"files.jsonl read whole (once, after a start): {known:,} files, {cpu:.1f} ms CPU;"
                f" page 20 shows the data points of {counted} done files"
            )
            print(
                f"{'request':<34} {'median':>8} {'p95':>8} {'max':>8} {'CPU/req':>9} {'loop stall':>10}"
            )
            print(f"{'':<34} {'ms':>8} {'ms':>8} {'ms':>8} {'ms':>9} {'max ms':>10}")
            cache_s = statusreads.CACHE_S
            for label, cache in (("uncached", 0.0), ("as served (1 s cache)", cache_s)):
                statusreads.CACHE_S = cache
                for path in ("/status.json", "/", "/status.json?page=20"):
                    print(row(f"{path} {label}", *await measure(base + path, requests)))
        finally:
            await server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.files, args.requests))
    sys.exit(0)
