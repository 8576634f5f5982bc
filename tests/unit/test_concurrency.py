"""The concurrency limit against a simulated Braze: a fixed number of workers, each taking a
service time, behind a base latency, so that extra concurrency only queues. Pure: simulated
time, no sleeps."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

import pytest

from rpi_braze_sync.concurrency import ADDITIVE, GAIN, ConcurrencyLimit, Sent


@dataclass
class Braze:
    latency_s: float  # each way is included: the round trip without any queue is this + service
    workers: int
    service_s: float
    free_at: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free_at = [0.0] * self.workers

    def answer_at(self, start: float) -> float:
        """Requests are served in arrival order by the first free worker."""
        arrival = start + self.latency_s
        begin = max(arrival, heapq.heappop(self.free_at))
        heapq.heappush(self.free_at, begin + self.service_s)
        return begin + self.service_s

    @property
    def capacity_per_s(self) -> float:
        return self.workers / self.service_s

    @property
    def bdp(self) -> float:
        """Requests in flight that use the whole capacity without queueing."""
        return self.capacity_per_s * (self.latency_s + self.service_s)


@dataclass
class Run:
    answers: list[tuple[float, float]] = field(default_factory=list)  # (time, round trip)
    in_flight: list[tuple[float, int]] = field(default_factory=list)  # at each start
    limits: list[tuple[float, int]] = field(default_factory=list)

    def rate(self, start: float, end: float) -> float:
        return sum(1 for t, _ in self.answers if start <= t < end) / (end - start)

    def peak_in_flight(self, start: float, end: float) -> int:
        return max(n for t, n in self.in_flight if start <= t < end)


def simulate(
    limit: ConcurrencyLimit,
    braze: Braze,
    until_s: float,
    rate_cap_per_s: float | None = None,
    changes: dict[float, Braze] | None = None,
    outage: tuple[float, float] | None = None,
) -> Run:
    """A sender with endless work: starts requests while the limit (and the rate cap, a
    sliding window of 1 s) allow, and tells the limit what it sees."""
    run = Run()
    answers: list[tuple[float, int, Sent]] = []  # (answer time, order, what the limit noted)
    starts: deque[float] = deque()
    in_flight = 0
    now = 0.0
    pending_changes = sorted((changes or {}).items())
    while now < until_s:
        while pending_changes and pending_changes[0][0] <= now:
            braze = pending_changes.pop(0)[1]
        while starts and starts[0] <= now - 1.0:
            starts.popleft()
        down = outage is not None and outage[0] <= now < outage[1]
        while True:
            allowed = rate_cap_per_s is None or len(starts) < rate_cap_per_s
            current = limit.current(now)
            if not allowed:
                limit.rate_limited(now)
                break
            if down:
                break
            if in_flight >= current:
                limit.held_back(now)
                break
            in_flight += 1
            starts.append(now)
            heapq.heappush(answers, (braze.answer_at(now), len(run.in_flight), limit.started(now)))
            run.in_flight.append((now, in_flight))
        run.limits.append((now, limit.current(now)))
        tick = now + 0.002
        if answers and answers[0][0] <= tick:
            now = answers[0][0]
            while answers and answers[0][0] == now:  # answered together: seen in one go,
                _, _, sent = heapq.heappop(answers)  # as the event loop reads them
                in_flight -= 1
                if not down:  # an outage answers nothing well: no sample
                    limit.answered(sent, now)
                    run.answers.append((now, now - sent.at))
        else:
            now = tick
    return run


def new_limit() -> ConcurrencyLimit:
    return ConcurrencyLimit(floor=4, ceiling=200)


# Each answer's rate sample is noisy (answers come in clusters), and the limit keeps the most
# of them: in flight settles within about a quarter above twice the BDP.
NOISE = 1.25


def test_a_braze_that_slows_under_load_gets_about_its_bdp_not_more() -> None:
    braze = Braze(latency_s=0.02, workers=4, service_s=0.01)  # 400/s, 30 ms, BDP 12
    run = simulate(new_limit(), braze, until_s=40)
    assert run.rate(5, 40) >= 0.9 * braze.capacity_per_s
    # Extra requests would only queue: in flight stays near twice the BDP, not the ceiling.
    assert run.peak_in_flight(5, 40) <= GAIN * braze.bdp * NOISE + ADDITIVE
    round_trips = [rtt for t, rtt in run.answers if t >= 5]
    assert sum(round_trips) / len(round_trips) <= 2.5 * (braze.latency_s + braze.service_s)


def test_the_limit_does_not_climb_when_braze_slows_down() -> None:
    fast = Braze(latency_s=0.02, workers=8, service_s=0.01)  # 800/s
    slow = Braze(latency_s=0.02, workers=8, service_s=0.04)  # 200/s: answers take longer
    run = simulate(new_limit(), fast, until_s=60, changes={20.0: slow})
    before = max(n for t, n in run.limits if 10 <= t < 20)
    after = [n for t, n in run.limits if 35 <= t < 60]
    assert max(after) <= before
    assert max(after) <= GAIN * slow.bdp * NOISE + ADDITIVE
    assert run.rate(35, 60) >= 0.9 * slow.capacity_per_s


def test_when_the_rate_limit_binds_the_limit_still_covers_rate_times_base_latency() -> None:
    braze = Braze(latency_s=0.1, workers=1000, service_s=0.001)  # far more than the cap
    run = simulate(new_limit(), braze, until_s=30, rate_cap_per_s=1000)
    needed = 1000 * (braze.latency_s + braze.service_s)
    assert min(n for t, n in run.limits if t >= 3) >= needed  # never below what the rate needs
    assert run.rate(3, 30) >= 0.97 * 1000  # the whole rate is used


def test_slow_start_reaches_the_rate_within_a_few_round_trips() -> None:
    braze = Braze(latency_s=0.1, workers=1000, service_s=0.001)
    run = simulate(new_limit(), braze, until_s=3, rate_cap_per_s=1000)
    assert run.limits[0][1] == 4  # from a small limit
    assert run.rate(1, 3) >= 0.95 * 1000  # (whole seconds: the cap lets starts come in bursts)


def test_an_outage_leaves_the_limit_where_it_was() -> None:
    braze = Braze(latency_s=0.02, workers=4, service_s=0.01)
    run = simulate(new_limit(), braze, until_s=50, outage=(20, 40))
    before = [n for t, n in run.limits if 15 <= t < 20]
    during = [n for t, n in run.limits if 25 <= t < 40]
    assert min(during) >= min(before)  # failures are no samples
    assert run.rate(42, 50) >= 0.9 * braze.capacity_per_s


def test_a_longer_path_is_measured_again_and_the_rate_kept() -> None:
    near = Braze(latency_s=0.01, workers=4, service_s=0.01)
    far = Braze(latency_s=0.08, workers=4, service_s=0.01)  # the same capacity, farther
    run = simulate(new_limit(), near, until_s=60, changes={20.0: far})
    assert run.rate(40, 60) >= 0.85 * far.capacity_per_s


@pytest.mark.parametrize(("floor", "ceiling"), [(4, 1), (4, 8), (1, 200)])
def test_the_limit_stays_within_its_bounds(floor: int, ceiling: int) -> None:
    limit = ConcurrencyLimit(floor, ceiling)
    run = simulate(limit, Braze(latency_s=0.05, workers=100, service_s=0.001), until_s=5)
    assert all(min(floor, ceiling) <= n <= ceiling for _, n in run.limits)
