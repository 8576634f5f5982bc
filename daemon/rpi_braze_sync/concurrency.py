"""Pure: how many requests may be in flight, from what Braze actually delivers (BBR-style).

    limit = ceil(GAIN x max delivery rate x min round trip) + ADDITIVE, within [floor, ceiling]

More requests in flight than Braze's rate times its unloaded round trip buys nothing: they
wait in Braze's queues, its answers slow down while its rate stays the same, and each is one
more a crash may send twice. So the limit follows the rate Braze delivered (answers with
success per interval of a round trip, the most over RATE_WINDOW_S of intervals where the
limit held requests back, and never above the configured rate) and the shortest round trip
it gave, never the current (queued) latency. Intervals where the limit did not bind
(rate-limited, paused, idle) say nothing of Braze's capacity: they neither lower the
estimate nor age it.

Slow start: from a small limit, one more for each success while the limit binds (it doubles
each round trip), until a round trip delivers less than a quarter more than the best before,
or takes twice the minimum. GAIN is 1.5 and not BBR's 2: BBR paces its sends at the rate, so
its window is only a cap; here every place is used at once, so the limit is what is in
flight, and 1.5 leaves half again the rate x round trip for jitter. After PROBE_EVERY_S of
binding (the rate limiter not setting the pace) without a round trip as short as the
minimum, the limit drops to PROBE_LIMIT a moment so that queues drain and the minimum is
measured again: its own queue would otherwise pass for Braze's latency, and the limit would
creep up.
No clock here: every call takes `now` (monotonic seconds).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

GAIN = 1.5
ADDITIVE = 2
RATE_WINDOW_S = 10.0
MIN_INTERVAL_S = 0.25  # an interval lasts 2 minimum round trips, and at least this
PROBE_EVERY_S = 10.0
PROBE_MIN_S = 0.2
PROBE_LIMIT = 4  # in flight while probing: low enough to drain any queue of ours
RTT_RISE = 1.25  # a round trip this much longer than the minimum: a queue, or a slower Braze


@dataclass(frozen=True, slots=True)
class Sent:
    """What the limit noted when a request started (see `started`)."""

    at: float
    round: int  # the round trip it started in
    held_before: int  # times the limit had held a request back


class KeptPlaces:
    """Places of requests Braze answered, kept until a checkpoint covers their rows: a kill
    sends again the rows in flight and those acknowledged but not checkpointed, so it is their
    sum that the limit must bound, not only the requests on the wire. (With delta, rows whose
    values the store holds are not sent again: deltawrites.Remembered gives back sooner.)"""

    def __init__(self, freed: Callable[[], None]) -> None:
        self.count = 0
        self.freed = freed  # called as each is given back

    def keep(self, rows: int) -> Slot:
        """The place of an answered request of `rows` rows (acknowledged and rejected)."""
        self.count += 1
        return Slot(self, rows)


class Slot:
    """One kept place (KeptPlaces), given back once: `release` again does nothing."""

    __slots__ = ("_places", "rows")

    def __init__(self, places: KeptPlaces, rows: int) -> None:
        self._places: KeptPlaces | None = places
        self.rows = rows  # its request's

    def release(self) -> None:
        places, self._places = self._places, None
        if places is not None:
            places.count -= 1
            places.freed()


class ConcurrencyLimit:
    def __init__(
        self,
        floor: int,
        ceiling: int,
        initial: int | None = None,
        rate_cap_per_s: float = math.inf,
    ) -> None:
        self.floor, self.ceiling = min(floor, ceiling), ceiling  # the configured ceiling wins
        # The configured rate limit: the bursts the rate limiter allows (a window at once)
        # deliver faster for a moment, but more than this is never sustained.
        self.rate_cap_per_s = rate_cap_per_s
        self.limit = self._clamp(initial if initial is not None else floor)
        self.starting = True  # slow start
        self._round = 0  # round trips so far: one ends when a request of the next is answered
        self._round_began = 0.0
        self._round_answers = 0
        self._held = 0  # times the limit held a request back
        self._best_round_rate = 0.0
        self.min_rtt_s: float | None = None
        self._min_rtt_at = 0.0  # when the minimum was last measured or confirmed
        self._last_rtt_s = 0.0
        self._rates: deque[tuple[float, float]] = deque()  # (interval end, answers per s)
        self.max_rate_per_s = 0.0  # the most in _rates
        self._interval_start: float | None = None
        self._interval_answers = 0
        self._interval_bound = False
        self._bound_since: float | None = None  # binding without a fresh minimum since then
        self._probe_until: float | None = None
        self._probe_min_s: float | None = None

    def _clamp(self, limit: int) -> int:
        return max(self.floor, min(self.ceiling, limit))

    def set_bounds(self, floor: int, ceiling: int) -> None:
        """A reloaded configuration or a smaller batch size: new bounds, applied now."""
        self.floor, self.ceiling = min(floor, ceiling), ceiling
        self.limit = self._clamp(self.limit)

    # --- events ---------------------------------------------------------------------------

    def held_back(self, now: float) -> None:
        """A request that could have started now (work ready, allowed by the rate limiter)
        waits because of this limit: what is delivered now measures Braze, not our demand."""
        self._interval_bound = True
        self._held += 1
        if self._bound_since is None:
            self._bound_since = now

    def rate_limited(self, now: float) -> None:
        """The rate limiter (ours or Braze's) holds requests back: it sets the pace now, so
        requests in flight are not queueing in Braze because of this limit (no probe due)."""
        self._bound_since = None

    def started(self, now: float) -> Sent:
        return Sent(now, self._round, self._held)

    def answered(self, sent: Sent, now: float) -> None:
        """The request `sent` was answered with success. Only successes are samples: errors
        and 429s say nothing about how much Braze can take."""
        rtt_s = max(now - sent.at, 1e-6)
        self._last_rtt_s = rtt_s
        if self._probe_until is not None:
            self._probe_min_s = min(rtt_s, self._probe_min_s or rtt_s)
        if self.min_rtt_s is None or rtt_s <= self.min_rtt_s:
            self.min_rtt_s = rtt_s
            self._min_rtt_at = now
            self._bound_since = None
        if self.starting:
            self._slow_start(sent, now)
        if self._interval_start is None:
            self._interval_start = now - rtt_s  # this answer's request started then
        self._interval_answers += 1
        if now - self._interval_start >= max(MIN_INTERVAL_S, 2 * self.min_rtt_s):
            self._close_interval(now)
        self.current(now)

    def _slow_start(self, sent: Sent, now: float) -> None:
        """One more for each success while the limit binds: it doubles each round trip. Slow
        start ends when an answer takes twice the minimum (a queue is forming), or a round
        trip delivers less than a quarter more than the best before (Braze gives no more)."""
        assert self.min_rtt_s is not None
        binding = self._held > sent.held_before  # requests were held back while it was out
        if binding and now - sent.at > 2 * self.min_rtt_s:
            self.starting = False
            return
        if binding:
            self.limit = self._clamp(self.limit + 1)
        self._round_answers += 1
        if sent.round < self._round:
            return
        rate = self._round_answers / max(now - self._round_began, 1e-6)
        if binding and rate < 1.25 * self._best_round_rate:
            self.starting = False
        self._best_round_rate = max(self._best_round_rate, rate)
        self._round += 1
        self._round_began, self._round_answers = now, 0

    def _close_interval(self, now: float) -> None:
        assert self._interval_start is not None
        rate = self._interval_answers / max(now - self._interval_start, 1e-6)
        if self._interval_bound or rate > self.max_rate_per_s:
            self._rates.append((now, rate))
            aged = False
            while self._rates[0][0] < now - RATE_WINDOW_S:
                self._rates.popleft()  # aged by newer samples only
                aged = True
            self.max_rate_per_s = (
                max(r for _, r in self._rates) if aged else max(self.max_rate_per_s, rate)
            )
        if not self._interval_bound:
            self._bound_since = None  # only a limit binding all along may have built a queue
        self._interval_start, self._interval_answers = now, 0
        self._interval_bound = False

    # --- the limit ---------------------------------------------------------------------------

    def current(self, now: float) -> int:
        """The limit now (also starts and ends the round-trip probe)."""
        if self._probe_until is not None:
            if now < self._probe_until:
                return self.limit
            self._end_probe(now)
        elif (
            self._bound_since is not None
            and self.min_rtt_s is not None
            and now - max(self._bound_since, self._min_rtt_at) >= PROBE_EVERY_S
        ):
            self._probe_until = now + max(PROBE_MIN_S, 2 * self._last_rtt_s)
            self._probe_min_s = None
            self.starting = False
            self.limit = min(PROBE_LIMIT, self.floor)
            return self.limit
        if self._rates and self.min_rtt_s is not None:
            rate = min(self.max_rate_per_s, self.rate_cap_per_s)
            estimate = self._clamp(math.ceil(GAIN * rate * self.min_rtt_s) + ADDITIVE)
            self.limit = max(self.limit, estimate) if self.starting else estimate
        return self.limit

    def _end_probe(self, now: float) -> None:
        probed = self._probe_min_s
        if probed is not None:
            if self.min_rtt_s is not None and probed > RTT_RISE * self.min_rtt_s:
                # Braze itself got slower: rates measured before say nothing of it now (with
                # the longer round trip they would ask for more in flight). Start again.
                self._rates.clear()
                self.max_rate_per_s = 0.0
            self.min_rtt_s = probed
        self._min_rtt_at = now
        self._bound_since = None
        self._probe_until = None
