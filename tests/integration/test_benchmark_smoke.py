"""The benchmark runs end to end and prints its table (a few seconds; no timing is checked:
speed targets live in `make bench`, never in the default suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "benchmarks" / "run.py"),
            "--quick",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1] == "| figure | median | min .. max | target |"
    rows = {line.split(" | ")[0].lstrip("| ") for line in lines[3:]}
    for figure in (
        "bare pipeline, rows/s",
        "daemon, rows/s",
        "daemon / bare pipeline",
        "journal cost (1 - with/without)",
        "max requests in any 3 s",
        "RPI call -> first request, after re-check",
        "last write -> first request",
        "delta on, first run / delta off",
        "journal PostgreSQL / SQLite",
        "unchanged run: requests",
        "10 % changed: data points sent / values changed",
    ):
        assert figure in rows, result.stdout
