"""Delta's targets (issue 16), the daemon as a real process against the counting fake Braze,
side by side with delta off in the same run (run.py calls it; `make bench` prints it).

Per run, in turns: the daemon with delta off sends the file once; then a daemon with delta on
sends it (first run: nothing remembered), the same rows again under another name (unchanged
run), the rows with a new ChannelExecutionID (as each real export has: the shipped mapping adds
it to an array, so each row sends that one value), and the rows with one value changed in one
row of ten (changed run); then a first run with delta off and one with delta on at the rate
limit the sample config ships, as a first run meets it in service. A big run checks the peak
memory of those four runs with --memory-rows users remembered.

    python tests/benchmarks/delta_run.py [--rows 1000000] [--runs 3] [--memory-rows 5000000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.run import (
    FAST,
    QUICK_WATCH,
    ROOT,
    Daemon,
    Fake,
    Figure,
    generate,
    print_table,
    wait_for_first_request,
    wait_for_objects,
)

DELTA_ON = {"delta": {"enabled": True}}
CHANGED_EVERY = 10  # one row in ten has one value changed
# The rate limit config/rpi-braze-sync.yaml ships (braze.rate_limit, under Braze's 3,000 requests
# per 3 s): what a first run meets in service. The figures say whether delta keeps up with it,
# for a file that takes several windows (180,000 rows a window, 75 a request): a smaller one
# goes out in one burst, unpaced.
_SHIPPED = yaml.safe_load((ROOT / "config" / "rpi-braze-sync.yaml").read_text())["braze"]
LIMIT = "{requests:,} requests / {seconds} s".format(**_SHIPPED["rate_limit"])
# The rows/s that limit allows: a machine on which delta off sends fewer is not paced by it,
# and the runs "at the limit" are unlimited runs again (the table says so).
LIMIT_ROWS_S = (
    _SHIPPED["rate_limit"]["requests"] / _SHIPPED["rate_limit"]["seconds"] * _SHIPPED["batch_size"]
)
_SAMPLE = re.compile(r"^(rpi_braze_sync_\w+)\{([^}]*)\} ([0-9.e+]+)$", re.M)


def new_execution_id(data: Path, target: Path) -> None:
    """The same rows from another run of the same audience: a new ChannelExecutionID."""
    with open(data, encoding="utf-8", newline="") as src, open(target, "w", newline="") as out:
        out.write(src.readline())
        for line in src:
            out.write(line.replace(",5501,", ",5502,", 1))


def later_exports(work: Path, data: Path) -> tuple[Path, Path, int]:
    """The rows with a new execution id, the rows with one in ten changed, and the number of
    values changed: what delta_runs sends after its first two runs."""
    new_id = work / "rows-new-id.txt"
    new_execution_id(data, new_id)
    changed = work / "rows-changed.txt"
    return new_id, changed, change_every_tenth(data, changed)


def change_every_tenth(data: Path, target: Path) -> int:
    """The same rows, the first name changed in one row of ten; returns the values changed."""
    changed = 0
    with open(data, encoding="utf-8", newline="") as src, open(target, "w", newline="") as out:
        out.write(src.readline())
        for i, line in enumerate(src):
            if i % CHANGED_EVERY == 0:
                cells = line.split(",")
                cells[3] = cells[3] + "x"  # first_name
                line = ",".join(cells)
                changed += 1
            out.write(line)
    return changed


async def metrics(daemon: Daemon) -> dict[tuple[str, str], float]:
    url = f"http://127.0.0.1:{daemon.port}/metrics"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
    return {(name, labels): float(value) for name, labels, value in _SAMPLE.findall(text)}


def value(samples: dict[tuple[str, str], float], name: str, **labels: str) -> float:
    total = 0.0
    for (sample, text), number in samples.items():
        if sample == name and all(f'{k}="{v}"' in text for k, v in labels.items()):
            total += number
    return total


async def until_done(daemon: Daemon, files: int, timeout_s: float = 900) -> float:
    """Waits until `files` files are done; returns when (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = value(await metrics(daemon), "rpi_braze_sync_files_total", outcome="done")
        if done >= files:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {files} files")


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def sending(daemon: Daemon, fake: Fake, rows: int) -> tuple[dict[str, Any], float]:
    """Waits until the fake has all `rows`; returns its stats and the share of that time, from
    the first request on, that the daemon's loop was running or waiting for a core. Near 1, the
    loop sets the pace: only less work on it makes the file go faster."""
    await wait_for_first_request(fake, timeout_s=900)
    loop0, wall0 = daemon.loop_s(), time.monotonic()
    stats = await wait_for_objects(fake, rows, timeout_s=900)
    return stats, (daemon.loop_s() - loop0) / (time.monotonic() - wall0)


async def delta_runs(
    work: Path, data: Path, new_id: Path, changed: Path, rows: int, n_changed: int
) -> dict[str, float]:
    """One daemon, delta on: first run, unchanged run, new execution id run, changed run."""
    async with Fake() as fake, Daemon(work, fake, FAST, QUICK_WATCH, {}, DELTA_ON) as daemon:
        cpu0 = daemon.cpu_s()
        start = time.monotonic()
        daemon.drop(data, "first.txt")
        stats, loop_busy = await sending(daemon, fake, rows)
        first_done = await until_done(daemon, 1)
        cpu1 = daemon.cpu_s()
        remembered = value(
            await metrics(daemon), "rpi_braze_sync_data_points_total", outcome="sent"
        )
        requests_before = (await fake.stats())["requests"]
        second_start = time.monotonic()
        daemon.drop(data, "again.txt")
        second_done = await until_done(daemon, 2)
        cpu2 = daemon.cpu_s()
        requests_again = (await fake.stats())["requests"] - requests_before
        before_id = await metrics(daemon)
        id_start = time.monotonic()
        daemon.drop(new_id, "new-id.txt")
        id_done = await until_done(daemon, 3)
        cpu3 = daemon.cpu_s()
        before = await metrics(daemon)
        daemon.drop(changed, "changed.txt")
        await until_done(daemon, 4)
        after = await metrics(daemon)
        rss = daemon.peak_rss_mb()
    sent = value(after, "rpi_braze_sync_data_points_total", outcome="sent") - value(
        before, "rpi_braze_sync_data_points_total", outcome="sent"
    )
    seconds = stats["last"] - stats["first"]
    sent_id = value(before, "rpi_braze_sync_data_points_total", outcome="sent") - value(
        before_id, "rpi_braze_sync_data_points_total", outcome="sent"
    )
    return {
        "id_s": id_done - id_start,
        "id_rows_s": rows / (id_done - id_start),
        "cpu_id_per_m": (cpu3 - cpu2) / rows * 1e6,
        "points_per_row_id": sent_id / rows,
        "rows_s": rows / seconds,
        "loop_busy": loop_busy,
        "first_s": first_done - start,
        "second_s": second_done - second_start,
        "requests_again": requests_again,
        "cpu_first_per_m": (cpu1 - cpu0) / rows * 1e6,
        "cpu_second_per_m": (cpu2 - cpu1) / rows * 1e6,
        "points_over_changed": sent / n_changed,
        "rss_mb": rss,
        "store_bytes": disk_bytes(work / "state" / "delta"),
        "values": remembered,
    }


async def one_run(
    work: Path,
    data: Path,
    rows: int,
    braze: dict[str, Any] = FAST,
    extra: dict[str, Any] | None = None,
) -> dict[str, float]:
    """One daemon sends the file once (delta off, unless `extra` turns it on), timed as
    delta_runs times its first run (from the drop to done) too."""
    async with Fake() as fake, Daemon(work, fake, braze, QUICK_WATCH, {}, extra) as daemon:
        cpu0 = daemon.cpu_s()
        start = time.monotonic()
        daemon.drop(data, "first.txt")
        stats, loop_busy = await sending(daemon, fake, rows)
        done = await until_done(daemon, 1)
        cpu = daemon.cpu_s() - cpu0
    return {
        "rows_s": rows / (stats["last"] - stats["first"]),
        "loop_busy": loop_busy,
        "first_s": done - start,
        "cpu_per_m": cpu / rows * 1e6,
    }


async def big_run(work: Path, data: Path, rows: int) -> dict[str, float]:
    """The peak memory with `rows` users remembered: the same four runs as delta_runs (the
    runs after the first hold every user's record; the new execution id run rewrites each)."""
    work.mkdir(parents=True, exist_ok=True)
    new_id, changed, n_changed = later_exports(work, data)
    result = await delta_runs(work, data, new_id, changed, rows, n_changed)
    return {"rss_mb": result["rss_mb"], "store_bytes": result["store_bytes"]}


async def delta_figures(
    work: Path, data: Path, rows: int, runs: int, big: Path | None, big_rows: int
) -> list[Figure]:
    new_id, changed, n_changed = later_exports(work, data)
    off: list[dict[str, float]] = []
    on: list[dict[str, float]] = []
    limited: list[tuple[float, float]] = []  # (delta off, delta on) at the shipped rate limit
    for i in range(runs):  # in turns, so the machine's noise hits both alike
        off.append(await one_run(work / f"doff{i}", data, rows))
        on.append(await delta_runs(work / f"don{i}", data, new_id, changed, rows, n_changed))
        off_limited = await one_run(work / f"loff{i}", data, rows, braze={})
        on_limited = await one_run(work / f"lon{i}", data, rows, braze={}, extra=DELTA_ON)
        limited.append((off_limited["rows_s"], on_limited["rows_s"]))
    paced = statistics.median(o for o, _ in limited) >= 0.95 * LIMIT_ROWS_S
    unpaced = "" if paced else f"not paced: delta off stays under {LIMIT_ROWS_S:,.0f} rows/s"
    figures = [
        Figure("delta off: rows/s", [r["rows_s"] for r in off], "", "reference"),
        Figure("delta on, first run: rows/s", [r["rows_s"] for r in on], "", ""),
        Figure(
            "delta on, first run / delta off",
            [d["rows_s"] / o["rows_s"] for o, d in zip(off, on, strict=True)],
            "",
            ">= 0.80",
        ),
        Figure("delta on, first run: drop -> done", [r["first_s"] for r in on], "s", ""),
        Figure(
            "delta off: daemon's loop running or waiting for a core",
            [r["loop_busy"] for r in off],
            "",
            "share of the time",
        ),
        Figure(
            "delta on, first run: daemon's loop running or waiting for a core",
            [r["loop_busy"] for r in on],
            "",
            "near 1: it sets the pace",
        ),
        Figure("delta off: CPU s per 1M rows", [r["cpu_per_m"] for r in off], "s", ""),
        Figure(
            "delta on, first run: CPU s per 1M rows", [r["cpu_first_per_m"] for r in on], "s", ""
        ),
        Figure(
            "delta on, first run / delta off (CPU per row, inverted)",
            [o["cpu_per_m"] / d["cpu_first_per_m"] for o, d in zip(off, on, strict=True)],
            "",
            "steadier than rows/s here",
        ),
        Figure(
            f"at the shipped rate limit ({LIMIT}): delta off, rows/s",
            [o for o, _ in limited],
            "",
            unpaced,
        ),
        Figure(
            f"at the shipped rate limit ({LIMIT}): first run / delta off",
            [d / o for o, d in limited],
            "",
            unpaced,
        ),
        Figure("unchanged run: requests", [r["requests_again"] for r in on], "", "0"),
        Figure("unchanged run: drop -> done", [r["second_s"] for r in on], "s", ""),
        Figure(
            "unchanged run / first run (time)",
            [r["second_s"] / r["first_s"] for r in on],
            "",
            "< 0.5",
        ),
        Figure("unchanged run: CPU s per 1M rows", [r["cpu_second_per_m"] for r in on], "s", ""),
        Figure("new execution id run: rows/s (drop -> done)", [r["id_rows_s"] for r in on], "", ""),
        Figure(
            "new execution id run / first run (time)",
            [r["id_s"] / r["first_s"] for r in on],
            "",
            "",
        ),
        Figure("new execution id run: CPU s per 1M rows", [r["cpu_id_per_m"] for r in on], "s", ""),
        Figure(
            "new execution id run: data points sent per row",
            [r["points_per_row_id"] for r in on],
            "",
            "1",
        ),
        Figure(
            "10 % changed: data points sent / values changed",
            [r["points_over_changed"] for r in on],
            "",
            "<= 1.05",
        ),
        Figure(f"delta on: peak RSS, {rows:,} rows", [r["rss_mb"] for r in on], "MB", ""),
        Figure(f"store on disk, {rows:,} users", [r["store_bytes"] / 1e6 for r in on], "MB", ""),
        Figure(
            "store: bytes per remembered value",
            [r["store_bytes"] / r["values"] for r in on],
            "B",
            "",
        ),
    ]
    if big is not None:
        result = await big_run(work / "dbig", big, big_rows)
        figures.append(
            Figure(
                f"delta on: peak RSS, {big_rows:,} users (four runs)",
                [result["rss_mb"]],
                "MB",
                "< 150",
            )
        )
        figures.append(
            Figure(f"store on disk, {big_rows:,} users", [result["store_bytes"] / 1e6], "MB", "")
        )
    return figures


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        data = work / "rows.txt"
        generate(data, args.rows)
        big = None
        if args.memory_rows:
            big = work / "rows-big.txt"
            generate(big, args.memory_rows)
        figures = await delta_figures(work, data, args.rows, args.runs, big, args.memory_rows)
    print_table(args.runs, figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=5_000_000, help="0: no big run")
    parser.add_argument("--workdir", default=None)
    asyncio.run(main(parser.parse_args()))
