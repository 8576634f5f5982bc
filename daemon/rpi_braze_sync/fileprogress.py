"""How far the file being sent has got, told to people: a log line every few seconds, and
systemd's STATUS= line (the words are progress.py's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .batching import SettledRecords
from .logs import ExportLogger
from .progress import ProgressMeter, plural


class FileProgress:
    def __init__(self, source: str, log: ExportLogger, settled: Callable[[], int]) -> None:
        self.source = source
        self.log = log
        self._settled = settled  # rows settled so far, from the file's first row
        self.meter: ProgressMeter | None = None  # from the first row sent
        self.started_at = time.monotonic()

    def starting(self, rows_total: int, settled: SettledRecords, mode: str) -> None:
        """The `sending` line: how many rows, and where from when the send resumes."""
        resumed = f" from row {settled.checkpoint + 1}" if settled.checkpoint else ""
        if settled.outstanding_ahead:
            ahead = settled.outstanding_ahead
            resumed += f", skipping the {ahead} {plural(ahead, 'row')} settled after it"
        rows = f"{rows_total:,} {plural(rows_total, 'row')}"
        self.log.info("sending %s%s (%s mode)", rows, resumed, mode)

    def start(self, rows_total: int | None) -> None:
        self.meter = ProgressMeter(rows_total, self._settled(), time.monotonic())

    async def report_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            assert self.meter is not None
            snapshot = self.meter.snapshot(self._settled(), time.monotonic())
            self.log.info("progress: %s", snapshot.describe())

    def status_text(self) -> str:
        """One line for systemd's STATUS=: the file and how far it got."""
        if self.meter is None:
            return f"reading {self.source}"
        snapshot = self.meter.peek(self._settled(), time.monotonic())
        return f"sending {self.source}: {snapshot.describe()}"

    def summary(self) -> str:
        """How long the whole file took, and at what rate (the `done` line)."""
        assert self.meter is not None
        return self.meter.summary(self._settled(), time.monotonic(), self.started_at)
