"""Pure: the sliding-window request limiter, Braze's rate-limit headers, retry delays.

Every function takes `now` (seconds, monotonic or epoch as stated) so tests need no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

# A Reset value above this is an epoch timestamp, below it a number of seconds remaining.
_EPOCH_THRESHOLD = 1_000_000_000


class SlidingWindow:
    """At most `limit` requests in any window of `window_s`, as Braze counts them.

    Braze counts a request when it arrives, which we cannot see: it is somewhere between our
    start and our answer, and connection set-up or a slow network shifts it. So a request
    holds its place in the window from its start until `window_s` after its answer: the
    (limit+1)-th request cannot start until the oldest answered one has left the window, and
    therefore cannot arrive within `window_s` of its arrival. The price is the latency: the
    rate is `limit / (window_s + latency)`, about 3 % under the limit at 100 ms for 3 s.
    (A token bucket of the same size allows twice the rate across a window boundary.)
    """

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.in_flight = 0
        self._answered: deque[float] = deque()  # answer times within the window, in order
        self.blocked_until = 0.0  # set when Braze says stop; applies to every sender

    def delay(self, now: float) -> float:
        """Seconds to wait before a start at `now` is allowed: 0 when it is, `inf` when every
        place is held by a request still in flight (wait for an answer)."""
        answered = self._answered
        while answered and answered[0] <= now - self.window_s:
            answered.popleft()
        wait = self.blocked_until - now
        if self.in_flight + len(answered) >= self.limit:
            wait = max(wait, answered[0] + self.window_s - now if answered else float("inf"))
        return max(wait, 0.0)

    def record(self, now: float) -> None:
        """A request starts."""
        self.in_flight += 1

    def finish(self, now: float) -> None:
        """A request was answered (or failed): its place frees `window_s` from now."""
        self.in_flight -= 1
        self._answered.append(now)

    def block(self, until: float) -> None:
        self.blocked_until = max(self.blocked_until, until)


def header_seconds(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    # 'inf', 'nan' or a negative number is no instruction: ignore it rather than stall.
    return seconds if 0 <= seconds < float("inf") else None


def retry_after_s(headers: Mapping[str, str], epoch_now: float) -> float | None:
    """How long Braze asks us to wait, from its headers; None when it does not say.

    `headers` must be case-insensitive (Braze sends lower case over HTTP/2).
    """
    for name in ("X-Ratelimit-Retry-After", "Retry-After"):
        seconds = header_seconds(headers, name)
        if seconds is not None:
            return seconds
    return reset_wait_s(headers, epoch_now)


def reset_wait_s(headers: Mapping[str, str], epoch_now: float) -> float | None:
    """Seconds until X-RateLimit-Reset, which Braze gives as epoch seconds or as a remainder."""
    reset = header_seconds(headers, "X-RateLimit-Reset")
    if reset is None:
        return None
    return max(reset - epoch_now, 0.0) if reset > _EPOCH_THRESHOLD else reset


def exhausted_wait_s(headers: Mapping[str, str], epoch_now: float) -> float | None:
    """When a success says Remaining is 0, the wait until Reset; else None."""
    remaining = header_seconds(headers, "X-RateLimit-Remaining")
    if remaining is None or remaining > 0:
        return None
    return reset_wait_s(headers, epoch_now)


def backoff_s(attempt: int, base_s: float, cap_s: float, random: Callable[[], float]) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return float(random() * min(cap_s, base_s * 2.0 ** min(attempt, 30)))


def file_retry_s(failed_tries: int, first_s: float, cap_s: float = 900.0) -> float:
    """Wait before trying a file again after `failed_tries` (1, 2, ...) failed tries: `first_s`,
    then doubled each time, at most `cap_s`."""
    return float(min(cap_s, first_s * 2.0 ** min(failed_tries - 1, 30)))
