"""Peak resident memory of the daemon's processes (daemon + mapping process) on hostile files,
for the README's bound: `python tests/benchmarks/hostile_memory.py [--limits 1 8]`.

Each case runs a fresh daemon (a real process, against the fake Braze in this process) on one
file and reads the peak (VmHWM) of both processes once the file is done. Limits are
format.max_record_bytes in MiB. Minutes, not seconds: not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import UPSERT, DaemonProcess  # noqa: E402
from tests.e2e.test_hostile_share import PeakRss, write_gzip_bomb, write_wide  # noqa: E402
from tests.fakebraze import FakeBraze  # noqa: E402

MIB = 1 << 20


def narrow(path: Path, limit: int) -> None:
    with path.open("w") as out:
        out.write("external_id,first_name,last_name,email,country,income\n")
        for i in range(200_000):
            out.write(f"n{i},First{i},Last{i},n{i}@example.com,France,{i}\n")


def long_line(path: Path, limit: int) -> None:
    path.write_bytes(b"external_id,first_name\nl1,A\nl2," + b"x" * (50 * MIB) + b"\nl3,C\n")


def rows_at_the_limit(path: Path, limit: int) -> None:
    """300 rows just under the limit each, over 20 columns (values too long to send)."""
    cell = "v" * (limit * 9 // 10 // 20)
    with path.open("w") as out:
        out.write("external_id," + ",".join(f"c{i}" for i in range(20)) + "\n")
        for r in range(300):
            out.write(f"r{r}," + ",".join([cell] * 20) + "\n")


CASES: dict[str, Callable[[Path, int], None]] = {
    "200,000 narrow rows": narrow,
    "10,000 columns x 200 rows": lambda p, limit: write_wide(p, 10_000, 200),
    "a 50 MB line": long_line,
    "1 GB without a line end in a .gz": lambda p, limit: write_gzip_bomb(p, 1024 * MIB),
    "300 rows of 0.9 x the limit": rows_at_the_limit,
}


async def measure(tmp: Path, case: str, limit_mib: int) -> tuple[float, float, float]:
    fake = FakeBraze()
    await fake.start()
    daemon = DaemonProcess(tmp, fake)
    daemon.settings["channels"] = {
        UPSERT: {"format": {"max_record_bytes": limit_mib * MIB}},
    }
    try:
        await daemon.start()
        assert daemon.proc is not None
        rss = PeakRss(daemon.proc.pid)
        sampler = asyncio.create_task(rss.run())
        folder = daemon.export_path(UPSERT, "Offer", "wf", "x").parent
        name = "export.txt.gz" if ".gz" in case else "export.txt"
        await asyncio.to_thread(CASES[case], folder / name, limit_mib * MIB)
        started = time.monotonic()
        while (
            await daemon.metric(
                "rpi_braze_sync_files_total", {"channel": UPSERT, "outcome": "done"}
            )
            < 1
        ):
            if time.monotonic() - started > 600:
                raise TimeoutError(case)
            await asyncio.sleep(0.2)
        took = time.monotonic() - started
        rss.sample()
        sampler.cancel()
        daemon_mb = rss.peaks.get(rss.pid, 0) / 1024
        return daemon_mb, rss.total_mb() - daemon_mb, took
    finally:
        if daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.stop()
        await fake.stop()


async def main(limits: list[int]) -> None:
    print("| case | max_record_bytes | daemon MB | mapping process MB | both MB | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for limit in limits:
        for case in CASES:
            with tempfile.TemporaryDirectory() as tmp:
                daemon_mb, worker_mb, took = await measure(Path(tmp), case, limit)
            print(
                f"| {case} | {limit} MiB | {daemon_mb:.0f} | {worker_mb:.0f} |"
                f" {daemon_mb + worker_mb:.0f} | {took:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=int, nargs="+", default=[1, 8])
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(parser.parse_args().limits))
