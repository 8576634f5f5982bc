"""The sliding-window limiter on a simulated clock, Braze's rate-limit headers, retry delays."""

from __future__ import annotations

import bisect
import heapq
import math
import random

import pytest
from multidict import CIMultiDict

from rpi_braze_sync.ratelimit import (
    SlidingWindow,
    backoff_s,
    exhausted_wait_s,
    retry_after_s,
)

NOW = 1_700_000_000.0  # an epoch "now" for header arithmetic


def drive(
    window: SlidingWindow, arrivals: list[float], latencies: list[float]
) -> list[tuple[float, float]]:
    """Start each request (FIFO) as soon as the limiter allows, answer it `latency` later.

    An event-driven clock: time jumps to the next allowed start or the next answer. Returns
    (start, answer) per request.
    """
    now, answers_due, done = 0.0, list[float](), list[tuple[float, float]]()
    for arrival, latency in zip(arrivals, latencies, strict=True):
        now = max(now, arrival)
        while True:
            while answers_due and answers_due[0] <= now:
                window.finish(heapq.heappop(answers_due))
            wait = window.delay(now)
            if wait == 0:
                break
            assert wait != math.inf or answers_due, "blocked with nothing in flight"
            now = min(now + wait, answers_due[0]) if answers_due else now + wait
        window.record(now)
        heapq.heappush(answers_due, now + latency)
        done.append((now, now + latency))
    return done


def max_in_any_window(times: list[float], window_s: float) -> int:
    """The most times in a half-open window [t, t + window_s); a busiest one begins at a time."""
    ordered = sorted(times)
    return max(
        bisect.bisect_left(ordered, t + window_s) - bisect.bisect_left(ordered, t) for t in ordered
    )


@pytest.mark.parametrize(
    ("limit", "window_s", "latency", "count", "last_start"),
    [
        (1, 1.0, 0.0, 10, 9.0),
        (5, 1.0, 0.0, 100, 19.0),
        (5, 1.0, 0.25, 100, 23.75),  # a place is held from the start to window_s after the answer
        (3000, 3.0, 0.125, 30_000, 28.125),  # 3000 per 3.125 s: 4 % under the limit
    ],
)
def test_greedy_starts_never_exceed_the_limit_and_use_the_rate(
    limit: int, window_s: float, latency: float, count: int, last_start: float
) -> None:
    done = drive(SlidingWindow(limit, window_s), [0.0] * count, [latency] * count)
    starts = [s for s, _ in done]
    assert max_in_any_window(starts, window_s) == limit
    assert max_in_any_window([a for _, a in done], window_s) == limit
    # bursts of `limit` every window_s + latency: the whole rate the rule allows
    assert starts[:limit] == [0.0] * limit
    assert starts[limit] == window_s + latency
    assert starts[-1] == last_start


@pytest.mark.parametrize("seed", range(25))
def test_random_traffic_never_exceeds_the_limit_wherever_braze_counts(seed: int) -> None:
    rng = random.Random(seed)
    limit, window_s = rng.randint(1, 8), rng.choice([0.5, 1.0, 3.0])
    count = 300
    arrivals = sorted(rng.randrange(0, 400) / 8 for _ in range(count))  # exact binary fractions
    latencies = [rng.randrange(0, 16) / 8 for _ in range(count)]
    done = drive(SlidingWindow(limit, window_s), arrivals, latencies)
    # Braze counts a request somewhere between its start and its answer: check the extremes
    # and a random point in between.
    for pick in (lambda s, a: s, lambda s, a: a, lambda s, a: rng.uniform(s, a)):
        assert max_in_any_window([pick(s, a) for s, a in done], window_s) <= limit
    answers = {a for _, a in done}
    for (start, _), arrival in zip(done, arrivals, strict=True):
        assert start >= arrival
        # no needless wait: a delayed start happens when an answer leaves the window
        assert start == arrival or start - window_s in answers


def test_delay_counts_requests_in_flight_and_answers_within_the_window() -> None:
    window = SlidingWindow(2, 10.0)
    assert window.delay(0.0) == 0.0
    window.record(0.0)
    window.record(1.0)
    assert window.delay(2.0) == math.inf  # both places held by requests still in flight
    window.finish(3.0)
    assert window.delay(4.0) == 9.0  # 3 + 10 - 4
    window.finish(5.0)
    assert window.delay(12.0) == 1.0
    assert window.delay(13.0) == 0.0  # the answer at 3.0 left the window (half-open)
    window.record(13.0)
    assert window.delay(14.0) == 1.0  # the answer at 5.0 still holds a place
    assert window.delay(15.0) == 0.0


def test_a_lowered_limit_applies_to_the_next_start() -> None:
    window = SlidingWindow(3, 1.0)
    window.record(0.0)
    window.record(0.0)
    assert window.delay(0.0) == 0.0
    window.limit = 2
    assert window.delay(0.0) == math.inf


def test_block_delays_everybody_and_only_lengthens() -> None:
    window = SlidingWindow(100, 1.0)
    window.block(10.0)
    assert window.delay(4.0) == 6.0
    window.block(7.0)  # an earlier deadline does not shorten the block
    assert window.blocked_until == 10.0
    assert window.delay(9.5) == 0.5
    assert window.delay(10.0) == 0.0
    assert window.delay(12.0) == 0.0


def test_block_and_full_window_take_the_longer_wait() -> None:
    window = SlidingWindow(1, 5.0)
    window.record(0.0)
    window.finish(0.0)
    window.block(2.0)
    assert window.delay(1.0) == 4.0
    window.block(8.0)
    assert window.delay(1.0) == 7.0


def headers(**pairs: str) -> CIMultiDict[str]:
    return CIMultiDict((name.replace("_", "-"), value) for name, value in pairs.items())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"x-ratelimit-retry-after": "7", "Retry-After": "30", "X-RateLimit-Reset": "100"},
            7.0,
        ),
        ({"X-RATELIMIT-RETRY-AFTER": "0"}, 0.0),
        ({"retry-after": "30", "x-ratelimit-reset": "100"}, 30.0),
        ({"RETRY-AFTER": " 12 "}, 12.0),
        ({"x-ratelimit-reset": "1700000060"}, 60.0),  # epoch seconds
        ({"x-ratelimit-reset": "1699999990"}, 0.0),  # an epoch in the past: go now
        ({"X-RateLimit-Reset": "45"}, 45.0),  # seconds remaining
        ({"x-ratelimit-reset": "2.5"}, 2.5),
        ({"x-ratelimit-retry-after": "soon", "retry-after": "12"}, 12.0),  # garbage skipped
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT", "x-ratelimit-reset": "9"}, 9.0),
        ({}, None),
        ({"X-RateLimit-Limit": "3000", "X-RateLimit-Remaining": "0"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"x-ratelimit-retry-after": "soon"}, None),
        ({"x-ratelimit-retry-after": ""}, None),
        ({"x-ratelimit-retry-after": "-5"}, None),
        ({"retry-after": "nan"}, None),
        ({"x-ratelimit-reset": "12abc"}, None),
        ({"x-ratelimit-reset": "-1"}, None),
    ],
)
def test_retry_after(given: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(CIMultiDict(given), NOW) == expected


@pytest.mark.parametrize("value", ["inf", "Infinity", "1e999"])
def test_retry_after_infinite_values_are_garbage(value: str) -> None:
    assert retry_after_s(CIMultiDict({"Retry-After": value}), NOW) is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000030"}, 30.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Remaining": "0.0", "X-RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "12"}, None),
        ({"X-RateLimit-Remaining": "2999", "X-RateLimit-Reset": "1700000030"}, None),
        ({"X-RateLimit-Reset": "12"}, None),
        ({"X-RateLimit-Remaining": "0"}, None),
        ({"X-RateLimit-Remaining": "none", "X-RateLimit-Reset": "12"}, None),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "later"}, None),
        ({"X-RateLimit-Remaining": "0", "Retry-After": "12"}, None),  # only Reset counts
    ],
)
def test_exhausted_wait(given: dict[str, str], expected: float | None) -> None:
    assert exhausted_wait_s(CIMultiDict(given), NOW) == expected


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "rand", "expected"),
    [
        (0, 1.0, 30.0, 1.0, 1.0),
        (1, 1.0, 30.0, 1.0, 2.0),
        (3, 1.0, 30.0, 1.0, 8.0),
        (4, 0.5, 30.0, 1.0, 8.0),
        (5, 1.0, 30.0, 1.0, 30.0),  # 32 capped
        (10_000, 1.0, 30.0, 1.0, 30.0),  # no overflow
        (3, 1.0, 30.0, 0.5, 4.0),
        (0, 1.0, 30.0, 0.0, 0.0),
        (10_000, 1.0, 30.0, 0.0, 0.0),
    ],
)
def test_backoff_full_jitter(
    attempt: int, base: float, cap: float, rand: float, expected: float
) -> None:
    assert backoff_s(attempt, base, cap, lambda: rand) == expected


@pytest.mark.parametrize("seed", range(5))
def test_backoff_stays_within_bounds(seed: int) -> None:
    rng = random.Random(seed)
    for attempt in range(40):
        delay = backoff_s(attempt, 0.5, 60.0, rng.random)
        assert 0.0 <= delay <= min(60.0, 0.5 * 2**attempt)
