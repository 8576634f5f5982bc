"""Progress in words: rates between snapshots, time left, the done line's figures."""

from __future__ import annotations

import pytest

from rpi_braze_sync.progress import ProgressMeter, ProgressSnapshot, format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0.0 s"), (4.25, "4.2 s"), (45.4, "45 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")],
)
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rate_is_measured_over_the_last_interval() -> None:
    meter = ProgressMeter(total=10_000, settled=0, now=100.0)
    first = meter.snapshot(2_000, now=110.0)
    assert (first.rate_per_s, first.left_s) == (200.0, 40.0)
    assert first.describe() == "2,000 of 10,000 rows acknowledged (20.0%), 200 rows/s, 40 s left"
    second = meter.snapshot(8_000, now=112.0)  # faster now: the recent rate says so
    assert second.rate_per_s == 3_000.0
    assert second.left_s == pytest.approx(2 / 3)
    assert second.ratio == 0.8


def test_nothing_acknowledged_lately_says_so() -> None:
    meter = ProgressMeter(total=500, settled=100, now=0.0)
    stalled = meter.snapshot(100, now=15.0)
    assert stalled.left_s is None
    assert stalled.describe() == (
        "100 of 500 rows acknowledged (20.0%), 0 rows/s, time left unknown: no row acknowledged"
        " lately"
    )


def test_peek_does_not_start_a_new_interval() -> None:
    meter = ProgressMeter(total=1_000, settled=0, now=0.0)
    assert meter.peek(100, now=1.0).rate_per_s == 100
    assert meter.snapshot(400, now=2.0).rate_per_s == 200  # from 0 s, not from the peek


def test_done_summary_counts_this_run_only() -> None:
    resumed = ProgressMeter(total=10_000, settled=4_000, now=5.0)
    assert resumed.summary(10_000, now=65.0, since=0.0) == (
        "6,000 rows in 1 min 05 s (92 rows/s, resumed from row 4,001)"
    )
    fresh = ProgressMeter(total=300, settled=0, now=0.0)
    assert fresh.summary(300, now=1.5, since=0.0) == "300 rows in 1.5 s (200 rows/s)"


@pytest.mark.parametrize(
    ("settled", "total", "ratio"), [(0, 0, 1.0), (5, None, 0.0), (7, 5, 1.0), (1, 4, 0.25)]
)
def test_ratio_bounds(settled: int, total: int | None, ratio: float) -> None:
    assert ProgressSnapshot(settled, total, 0.0, None).ratio == ratio


def test_one_row_is_said_in_the_singular() -> None:
    one = ProgressMeter(total=1, settled=0, now=0.0)
    assert one.summary(1, now=2.0, since=0.0) == "1 row in 2.0 s (0 rows/s)"
    assert one.snapshot(1, now=1.0).describe().startswith("1 of 1 row acknowledged (100.0%)")
    assert ProgressSnapshot(1, None, 0.0, None).describe().startswith("1 row acknowledged,")
