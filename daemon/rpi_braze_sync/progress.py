"""Pure: how far a file's send has got, in words: rows acknowledged out of the file's total,
the rate and the time left (progress lines, systemd's STATUS=), and the `done` line.

Takes counts and `now` (monotonic seconds); no clock or I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass


def plural(count: int, word: str) -> str:
    """The word as it goes after the count: 1 row, 2 rows, 0 files."""
    return word if count == 1 else f"{word}s"


def format_duration(seconds: float) -> str:
    """45 s, 3 min 20 s, 2 h 05 min: as precise as a person needs."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class ProgressSnapshot:
    settled: int  # rows acknowledged by Braze or rejected, from the file's first row
    total: int | None  # the file's data rows; None when unknown
    rate_per_s: float  # rows settled per second since the previous snapshot
    left_s: float | None  # time left at that rate; None when nothing moves

    @property
    def ratio(self) -> float:
        if not self.total:
            return 1.0 if self.total == 0 else 0.0
        return min(1.0, self.settled / self.total)

    def describe(self) -> str:
        """12,345 of 100,000 rows acknowledged (12.3%), 2,310 rows/s, 38 s left"""
        if self.total is None:
            done = f"{self.settled:,} {plural(self.settled, 'row')} acknowledged"
        else:
            rows = plural(self.total, "row")
            done = f"{self.settled:,} of {self.total:,} {rows} acknowledged ({self.ratio:.1%})"
        if self.left_s is None:
            left = "time left unknown: no row acknowledged lately"
        else:
            left = f"{format_duration(self.left_s)} left"
        return f"{done}, {self.rate_per_s:,.0f} rows/s, {left}"


class ProgressMeter:
    """One file's send: the rate is measured between two snapshots, the last interval."""

    def __init__(self, total: int | None, settled: int, now: float) -> None:
        self.total = total
        self.started_at = now
        self.first_settled = settled  # a resumed file starts past its first rows
        self._last = (now, settled)

    def snapshot(self, settled: int, now: float) -> ProgressSnapshot:
        then, settled_then = self._last
        elapsed = now - then
        rate = (settled - settled_then) / elapsed if elapsed > 0 else 0.0
        self._last = (now, settled)
        left: float | None = None
        if self.total is not None and settled >= self.total:
            left = 0.0
        elif self.total is not None and rate > 0:
            left = (self.total - settled) / rate
        return ProgressSnapshot(settled, self.total, rate, left)

    def peek(self, settled: int, now: float) -> ProgressSnapshot:
        """A snapshot that does not start a new interval (systemd's status line)."""
        last = self._last
        try:
            return self.snapshot(settled, now)
        finally:
            self._last = last

    def summary(self, settled: int, now: float, since: float) -> str:
        """The `done` line's figures: rows settled in this run, how long since `since` (the
        file's turn began: its inspection included), how fast."""
        rows = settled - self.first_settled
        elapsed = now - since
        rate = rows / elapsed if elapsed > 0 else 0.0
        resumed = f", resumed from row {self.first_settled + 1:,}" if self.first_settled else ""
        took = f"{format_duration(elapsed)} ({rate:,.0f} rows/s{resumed})"
        return f"{rows:,} {plural(rows, 'row')} in {took}"
