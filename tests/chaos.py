"""Chaos run: the real daemon killed with SIGKILL at random moments, many times, while files
of numbered rows arrive. Prints delivered, missing and duplicated rows; missing must be 0.

    .venv/bin/python tests/chaos.py --kills 30 --files 6 --rows 20000

A small run is part of the default suite (tests/e2e/test_chaos.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rpi_braze_sync.journal import Journal, journal_path
from tests.e2e.conftest import UPSERT, DaemonProcess
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
    journal = Journal(path)
    try:
        done = {Path(r.rel_path).name for r in journal.all() if r.state == "done"}
    finally:
        journal.close()
    return names <= done


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
        if daemon.proc is not None and daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
        await fake.stop()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run_chaos(Path(tmp), args.kills, args.files, args.rows, args.seed))
    print(f"seed {args.seed}")
    print(result.table())
    return 1 if result.missing else 0


if __name__ == "__main__":
    sys.exit(main())
