"""Pure: rows settled per second, now and over the last hour, from samples of the daemon's
running total of rows settled (and of the file being sent) taken every few seconds. Times
are monotonic seconds, given: no clock here.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

HISTORY_STEP_S = 60
HISTORY_STEPS = 60
RATE_WINDOW_S = 30.0


@dataclass(frozen=True)
class Interval:
    rows: int  # settled in the interval
    rows_per_s: float  # over the part of it the samples cover


class Samples:
    """Rows settled (the daemon's running total) and the file being sent, taken every few
    seconds: the rate now and the last hour's chart come from these. Monotonic seconds."""

    def __init__(self, keep_s: float = HISTORY_STEP_S * HISTORY_STEPS + 120.0) -> None:
        self._keep_s = keep_s
        self._at: deque[float] = deque()
        self._total: deque[int] = deque()
        self._file: deque[tuple[int | None, int]] = deque()  # (file id, its rows settled)

    def add(self, at: float, total: int, file_id: int | None, file_settled: int) -> None:
        self._at.append(at)
        self._total.append(total)
        self._file.append((file_id, file_settled))
        while self._at and self._at[0] < at - self._keep_s:
            self._at.popleft()
            self._total.popleft()
            self._file.popleft()

    def file_rate(self, at: float, file_id: int, settled: int) -> float | None:
        """Rows/s of this file over the last RATE_WINDOW_S; None before two samples of it."""
        since = bisect.bisect_left(self._at, at - RATE_WINDOW_S)
        for i in range(since, len(self._at)):
            then_id, then_settled = self._file[i]
            if then_id == file_id and at - self._at[i] > 1.0:
                return max(0.0, (settled - then_settled) / (at - self._at[i]))
        return None

    def _total_at(self, t: float) -> int:
        """The running total at `t` (the last sample at or before it)."""
        return self._total[max(0, bisect.bisect_right(self._at, t) - 1)]

    def history(self, at: float, step_s: float = HISTORY_STEP_S) -> list[Interval | None]:
        """Rows settled in each of HISTORY_STEPS intervals ending at `at`, and their rate;
        None before the first sample (a partly covered interval's rate counts from it)."""
        out: list[Interval | None] = []
        first = self._at[0] if self._at else math.inf
        for k in range(HISTORY_STEPS):
            end = at - (HISTORY_STEPS - 1 - k) * step_s
            start = max(end - step_s, first)
            if end - start < 1.0:
                out.append(None)
                continue
            rows = self._total_at(end) - self._total_at(start)
            # Two decimals: one row a minute is 0.02 rows/s, not 0.
            out.append(Interval(rows, round(rows / (end - start), 2)))
        return out
