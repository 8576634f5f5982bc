"""Chaos run: the real daemon killed with SIGKILL at random moments, many times, while files
of numbered rows arrive. Prints delivered, missing and duplicated rows; missing must be 0.

    .venv/bin/python tests/chaos.py --kills 30 --files 6 --rows 20000

A small run is part of the default suite (tests/e2e/test_chaos.py).

`--resent` measures what a kill costs instead: one upsert file of RPI-like rows (200,000 by
default), the default configuration, a fake Braze 20 ms away that also spends its own time
parsing each request (so it slows under load), killed --kills times mid-file. Prints the peak
requests and rows in flight at the fake, the rows in flight at each kill, and the rows sent
again after each restart (the target is at most 2,500), and 0 lost.

    .venv/bin/python tests/chaos.py --resent --kills 5 [--rows 200000] [--workers 4 --service-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from tests.e2e.conftest import UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze


@dataclass
class ChaosResult:
    expected: int
    delivered: int
    missing: int
    duplicated: int
    kills: int
    seconds: float

    def table(self) -> str:
        return (
            f"kills {self.kills}  rows {self.expected}  delivered {self.delivered}  "
            f"missing {self.missing}  duplicated {self.duplicated}  ({self.seconds:.1f} s)"
        )


def _all_done(state: Path, names: set[str]) -> bool:
    path = journal_path(state, dry_run=False)
    if not path.exists():
        return False
    journal = SqliteJournal(path)
    try:
        done = {Path(r.rel_path).name for r in journal.all() if r.state == "done"}
    finally:
        journal.close()
    return names <= done


def seen_past(seen: set[str], count: float) -> bool:
    return len(seen) >= count


async def _tear_down(daemon: DaemonProcess, fake: FakeBraze) -> None:
    if daemon.proc is not None and daemon.proc.returncode is None:
        daemon.proc.kill()
        await daemon.proc.wait()
    await fake.stop()


async def run_chaos(
    workdir: Path, kills: int, files: int, rows: int, seed: int, latency_s: float = 0.005
) -> ChaosResult:
    rng = random.Random(seed)
    started = time.monotonic()
    fake = FakeBraze(latency_s=latency_s)
    await fake.start()
    daemon = DaemonProcess(workdir, fake)
    daemon.settings["braze"].update({"batch_size": 25, "max_in_flight": 8})
    daemon.settings["watch"].update({"settle_seconds": 0.5, "poll_interval_seconds": 0.1})
    names: set[str] = set()
    expected: set[str] = set()
    try:
        for kill in range(kills):
            await daemon.start()
            if len(names) < files and (kill % 2 == 0 or kill >= kills - files):
                name = f"chaos-{len(names)}.txt"
                ids = [f"f{len(names)}-r{i}" for i in range(rows)]
                path = daemon.export_path(UPSERT, "Chaos", str(len(names)), name)
                path.write_text("external_id,first_name\n" + "".join(f"{u},N\n" for u in ids))
                names.add(name)
                expected.update(ids)
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            await daemon.stop(signal.SIGKILL)
        await daemon.start()
        deadline = time.monotonic() + 120
        while not _all_done(daemon.state, names) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await daemon.stop()
    finally:
        await _tear_down(daemon, fake)
    counts = Counter(fake.users())
    delivered = len(expected & set(counts))
    return ChaosResult(
        expected=len(expected),
        delivered=delivered,
        missing=len(expected) - delivered,
        duplicated=sum(counts.values()) - len(counts),
        kills=kills,
        seconds=time.monotonic() - started,
    )


@dataclass
class ResentResult:
    rows: int
    lost: int
    peak_requests: int
    peak_rows: int
    max_in_window: int
    at_kills: list[int]  # rows in flight at the fake at each kill, or arriving after it
    resent: list[int]  # rows sent again after each restart

    def table(self) -> str:
        lines = [
            f"rows {self.rows}  lost {self.lost}  peak in flight at the fake: "
            f"{self.peak_requests} requests, {self.peak_rows} rows  "
            f"most requests in any 3 s: {self.max_in_window}",
            "kill  rows in flight at the kill  rows sent again after it",
        ]
        for n, (at, again) in enumerate(zip(self.at_kills, self.resent, strict=True), 1):
            lines.append(f"{n:>4}  {at:>26,}  {again:>24,}")
        return "\n".join(lines)


async def run_resent(
    workdir: Path,
    kills: int,
    rows: int,
    seed: int,
    latency_s: float = 0.02,
    workers: int | None = None,
    service_s: float = 0.0,
) -> ResentResult:
    from tests.benchmarks.run import generate  # RPI-like rows, the seed's 15 columns

    rng = random.Random(seed)
    fake = FakeBraze(latency_s=latency_s)
    if workers:
        fake.slow_under_load(workers, service_s)
    seen: set[str] = set()
    resent = [0] * (kills + 1)  # by segment: after restart n, resent[n]
    segment = 0

    def count(body: dict[str, object]) -> None:
        for obj in body["attributes"]:  # type: ignore[attr-defined]
            user = obj["external_id"]
            if user in seen:
                resent[segment] += 1
            seen.add(user)

    fake.on_request = count
    await fake.start()
    daemon = DaemonProcess(workdir, fake)
    data = workdir / "data.txt"
    generate(data, rows)
    at_kills: list[int] = []
    try:
        await daemon.start()
        target = daemon.export_path(UPSERT, "Resent", "1", "big.txt")
        data.rename(target)
        for kill in range(kills):
            share = (kill + rng.uniform(0.3, 0.7)) / kills * 0.9
            await wait_until(
                functools.partial(seen_past, seen, share * rows), timeout_s=300, what="progress"
            )
            in_flight, arrived = fake.in_flight_rows, fake.arrived_rows
            await daemon.stop(signal.SIGKILL)
            await asyncio.sleep(0.5)  # requests it wrote before dying still arrive: in flight too
            at_kills.append(in_flight + fake.arrived_rows - arrived)
            segment += 1
            await daemon.start()
        await wait_until(lambda: _all_done(daemon.state, {"big.txt"}), timeout_s=600, what="done")
        await daemon.stop()
    finally:
        await _tear_down(daemon, fake)
    return ResentResult(
        rows=rows,
        lost=rows - len(seen),
        peak_requests=fake.peak_requests,
        peak_rows=fake.peak_rows,
        max_in_window=fake.max_in_window(3.0),
        at_kills=at_kills,
        resent=resent[1:],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--resent", action="store_true", help="measure rows resent per kill")
    parser.add_argument("--workers", type=int, default=None, help="--resent: fake's workers")
    parser.add_argument("--service-ms", type=float, default=0.0, help="--resent: per request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.resent:
            rows = 200_000 if args.rows == parser.get_default("rows") else args.rows
            measured = asyncio.run(
                run_resent(Path(tmp), args.kills, rows, args.seed,
                           workers=args.workers, service_s=args.service_ms / 1000)
            )  # fmt: skip
            print(f"seed {args.seed}")
            print(measured.table())
            return 1 if measured.lost else 0
        result = asyncio.run(run_chaos(Path(tmp), args.kills, args.files, args.rows, args.seed))
    print(f"seed {args.seed}")
    print(result.table())
    return 1 if result.missing else 0


if __name__ == "__main__":
    sys.exit(main())
