"""Deliver batches to Braze: one shared rate limiter, a concurrency limit, retries, triage.

The Sender owns every request task and every batch waiting to be sent again. Items come in
from file jobs; each item is settled exactly once, back to its job, as sent or rejected with
a reason. Nothing else ends an item: a 429, a 5xx, a timeout or a refused key only delays it.
How many requests may be in flight follows what Braze delivers (concurrency.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from .batching import Item, Planner, build_body, split_batch
from .braze import Action, Reply, Transport, classify
from .concurrency import ConcurrencyLimit, KeptPlaces, Sent
from .errors import TransportError
from .logs import log_if_failed
from .metrics import Metrics
from .ratelimit import SlidingWindow, backoff_s, exhausted_wait_s, retry_after_s
from .resends import Resends
from .sendjob import Job
from .settings import BrazeSettings

log = logging.getLogger(__name__)
RETRY_BASE_S = 0.5
# Memory bounds, in rows (under 1 KB each with their source row). At 3,000 requests per 3 s
# and 100 ms, about 7,500 rows are in flight; the bound leaves room for 200 ms answers.
MAX_QUEUED_ROWS = 10_000
MAX_IN_FLIGHT_ROWS = 15_000
# The queue's floor, when few requests are allowed (Braze answers fast): two chunks of 500 rows,
# the next ones already mapped (sources.py). At 5,000, once the mapping process outran the
# sender (clean data), the queue stayed full: ~5 MB more peak RSS, rows no request waited for.
MIN_QUEUED_ROWS = 1_000
MIN_CONCURRENCY = 4


class Sender:
    def __init__(
        self,
        transport: Transport,
        settings: BrazeSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.metrics = metrics
        self.planner = Planner(settings.batch_size)
        self._braze_batch_cap = settings.batch_size  # lowered for the run when Braze says so
        self.limiter = SlidingWindow(settings.rate_limit.requests, settings.rate_limit.seconds)
        self._clock, self._wall, self._rand = clock, wall_clock, rand
        self._tasks: set[asyncio.Task[None]] = set()  # requests on the wire
        self._wake = asyncio.Event()
        self._resends = Resends(self._wake.set)  # batches sent again: before new ones, or later
        self._kept = KeptPlaces(self._wake.set)  # answered, their rows not checkpointed yet
        # Called when no place is left and some are kept (delta: sync the store now).
        self.on_places_kept: Callable[[], None] = lambda: None
        self._room = asyncio.Event()
        self._room.set()
        self.limit = ConcurrencyLimit(MIN_CONCURRENCY, self._ceiling(), rate_cap_per_s=self._rate())
        self._shown_limit = self.limit.limit  # what the concurrency_limit gauge says
        metrics.concurrency_limit.set(self._shown_limit)
        self._dispatching = True
        self._held = False  # the state directory cannot take checkpoints: no new requests
        self.auth_failing = False
        self.auth_message = ""
        self._failing_since: float | None = None

    def apply(self, settings: BrazeSettings) -> None:
        """A reloaded configuration: limits and timings apply to the next requests."""
        self.settings = settings
        self.planner.batch_size = min(settings.batch_size, self._braze_batch_cap)
        self.limiter.limit = settings.rate_limit.requests
        self.limiter.window_s = settings.rate_limit.seconds
        self.limit.set_bounds(MIN_CONCURRENCY, self._ceiling())
        self.limit.rate_cap_per_s = self._rate()
        self._wake.set()

    # --- intake --------------------------------------------------------------------------

    @property
    def high_water(self) -> int:
        """Items queued before readers pause: enough to keep every allowed request busy, and
        no more than a bounded number of rows in memory, however large the file."""
        rows = 2 * self.planner.batch_size * self.concurrency()
        return min(MAX_QUEUED_ROWS, max(MIN_QUEUED_ROWS, rows))

    def submit(self, items: list[Item]) -> None:
        self.planner.push_all(items)
        self._wake.set()
        if len(self.planner) >= self.high_water:
            self._room.clear()

    async def wait_room(self) -> None:
        while len(self.planner) >= self.high_water:
            self._room.clear()
            await self._room.wait()

    def drop_job(self, job: Job) -> list[Item]:
        removed = self.planner.drop_job(job)
        for batch in self._resends.drop_job(job):
            self.planner.release(batch)
            removed += batch
        self._update_room()
        return removed

    def _update_room(self) -> None:
        if len(self.planner) < self.high_water:
            self._room.set()

    def _rate(self) -> float:
        return self.settings.rate_limit.requests / self.settings.rate_limit.seconds

    def _ceiling(self) -> int:
        # Rows in flight are rows in memory too: bound them as well as the requests.
        per_request = max(1, self.planner.batch_size)
        return min(self.settings.max_in_flight, max(4, MAX_IN_FLIGHT_ROWS // per_request))

    def concurrency(self) -> int:
        if self.auth_failing:
            return 1  # one probe at a time until the key or URL works again
        limit = self.limit.current(self._clock())
        if limit != self._shown_limit:
            self._shown_limit = limit
            self.metrics.concurrency_limit.set(limit)
        return limit

    @property
    def outstanding(self) -> int:
        """Requests on the wire, batches waiting to be retried (in an outage, new batches must
        not pile up behind them) and requests answered, their rows not checkpointed yet."""
        return len(self._tasks) + self._resends.backing_off + self._kept.count

    def failing_for_s(self) -> float:
        """How long Braze has answered only with errors or not at all (0 when it answers)."""
        return 0.0 if self._failing_since is None else self._clock() - self._failing_since

    # --- dispatch ------------------------------------------------------------------------

    async def run(self) -> None:
        """Start requests as the rate limit and the concurrency allow; runs until cancelled."""
        while True:
            work = bool(self._resends or self.planner.has_ready)
            held = not self._dispatching or self._held
            if held or not work or self.outstanding >= self.concurrency():
                if (
                    not held
                    and work
                    and not self.auth_failing
                    and self.limiter.delay(self._clock()) == 0
                ):
                    self.limit.held_back(self._clock())  # Braze's pace, not ours, decides now
                    if self._kept.count:
                        self.on_places_kept()
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self._clock()
            delay = self.limiter.delay(now)
            if delay > 0:
                self.limit.rate_limited(now)
                source = "braze" if self.limiter.blocked_until > now else "local"
                self.metrics.rate_limit_waits.labels(source).inc()
                self._wake.clear()
                if delay == float("inf"):  # every place is held by a request in flight
                    await self._wake.wait()
                else:
                    await asyncio.sleep(delay)
                continue
            if self._resends:
                batch, attempt = self._resends.next()
            else:
                batch, attempt = self.planner.next_batch(), 0
                self._update_room()
            self.limiter.record(now)
            task = asyncio.create_task(self._send(batch, attempt, self.limit.started(now)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)  # (also if cancelled before it ran)
            task.add_done_callback(log_if_failed(log))  # (_send's own failure: not lost either)
            self.metrics.in_flight.set(len(self._tasks))

    def hold(self, held: bool) -> None:
        """No new requests while `held` (those in flight finish and settle)."""
        self._held = held
        self._wake.set()

    def stop_dispatching(self) -> None:
        self._dispatching = False

    async def drain(self, grace_s: float) -> bool:
        """Let requests on the wire finish for up to `grace_s`, then cancel the rest. Batches
        waiting to be retried are not waited for: they stay unsettled, sent after a restart."""
        self.stop_dispatching()
        self._resends.cancel_backoffs()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                return False
        return True

    # --- one request ---------------------------------------------------------------------

    async def _send(self, batch: list[Item], attempt: int, note: Sent) -> None:
        try:
            await self._attempt(batch, attempt, note)
        except Exception as exc:  # a bug: its file must not wait for ever for these rows
            job = batch[0].job
            log.error("a request of %s failed: %r", job.source, exc, exc_info=exc)
            self.planner.release(batch)  # (not released yet: the last step of settling)
            job.fail(exc, batch)
        finally:
            # Off the wire before the dispatcher wakes, so it counts this place as free.
            self._tasks.discard(asyncio.current_task())
            self.metrics.in_flight.set(len(self._tasks))
            self._wake.set()

    async def _attempt(self, batch: list[Item], attempt: int, note: Sent) -> None:
        body = build_body(batch)
        started = self._clock()
        try:
            reply: Reply | TransportError = await self.transport.post(body, batch[0].job.source)
        except TransportError as failure:
            reply = failure
        finally:
            self.limiter.finish(self._clock())
        if isinstance(reply, TransportError):
            self.metrics.request_errors.labels(reply.error).inc()
            if reply.reached:  # Braze may have applied it: the resend may duplicate it
                self.metrics.possible_duplicates.inc(len(batch))
            self._retry_later(batch, attempt, reply.error, reply.detail)
            return
        elapsed = self._clock() - started
        self.metrics.request_duration.observe(elapsed)
        self.metrics.requests.labels(str(reply.status)).inc()
        verdict = classify(reply)
        action = verdict.action
        if action is not Action.AUTH and self.auth_failing:
            self.auth_failing = False
            self.metrics.auth_failing.set(0)
            log.info("Braze accepts the API key again; sending resumes")
        job = batch[0].job  # one file per request
        if action is Action.SENT:
            self.limit.answered(note, self._clock())
            self.metrics.last_success.set(self._wall())
            if wait := exhausted_wait_s(reply.headers, self._wall()):
                self.limiter.block(self._clock() + wait)
            if self._failing_since is not None:
                log.info("Braze answers again after %.0f s", self._clock() - self._failing_since)
                self._failing_since = None
            errors = verdict.errors
            for index, reason in errors.items():
                if 0 <= index < len(batch):
                    job.settle_rejected(batch[index], f"Braze: {reason}")
            sent = [item for i, item in enumerate(batch) if i not in errors] if errors else batch
            self._settle_sent(job, sent, len(batch))
            self.planner.release(batch)
        elif action is Action.REJECT_ALL:
            for index, item in enumerate(batch):
                job.settle_rejected(item, f"Braze: {verdict.errors.get(index, verdict.message)}")
            self._settle_sent(job, [], len(batch))
            self.planner.release(batch)
        elif action in (Action.SPLIT, Action.BISECT):
            self._split(batch, attempt, action, verdict.message)
        elif action is Action.AUTH:
            self._pause_for_auth(batch, attempt, reply.status, verdict.message)
        elif action is Action.RATE_LIMITED:
            wait = retry_after_s(reply.headers, self._wall())
            if wait is None:
                wait = backoff_s(attempt, 1.0, self.settings.retry_max_delay_seconds, self._rand)
            self.limiter.block(self._clock() + wait)
            self.metrics.retries.labels("rate_limited").inc()
            self._resends.first(batch, attempt)
        else:
            reason = f"http_{reply.status // 100}xx"
            self._retry_later(batch, attempt, reason, f"HTTP {reply.status}: {verdict.message}")

    def _settle_sent(self, job: Job, items: list[Item], rows: int) -> None:
        """With a kept place (KeptPlaces) for the request's `rows`, given back if settling
        raised (_send: a bug)."""
        slot = self._kept.keep(rows)
        try:
            job.settle_sent(items, slot)
        except BaseException:
            slot.release()
            raise

    def _split(self, batch: list[Item], attempt: int, action: Action, message: str) -> None:
        if len(batch) == 1:
            batch[0].job.settle_rejected(batch[0], f"Braze: {message}")
            self._settle_sent(batch[0].job, [], 1)
            self.planner.release(batch)
            return
        if action is Action.SPLIT and len(batch) // 2 < self.planner.batch_size:
            self._braze_batch_cap = self.planner.batch_size = max(1, len(batch) // 2)
            self.limit.set_bounds(MIN_CONCURRENCY, self._ceiling())
            log.warning(
                "Braze refused a request as too large (%s); batch size lowered to %d for this run",
                message,
                self.planner.batch_size,
            )
        self.metrics.retries.labels("too_large" if action is Action.SPLIT else "bisect").inc()
        first, second = split_batch(batch)
        self._resends.first(second, attempt)
        self._resends.first(first, attempt)

    def _pause_for_auth(self, batch: list[Item], attempt: int, status: int, message: str) -> None:
        if not self.auth_failing:
            self.auth_failing = True
            self.auth_message = f"HTTP {status}: {message}"
            self.metrics.auth_failing.set(1)
            log.error(
                "Braze refused the request (HTTP %d: %s): check braze.api_url and the API key "
                "(it needs users.track). Sending is paused, files stay queued, retry every %.0f s",
                status,
                message,
                self.settings.auth_retry_seconds,
            )
        self.metrics.retries.labels("auth").inc()
        self.limiter.block(self._clock() + self.settings.auth_retry_seconds)
        self._resends.first(batch, attempt)

    def _retry_later(self, batch: list[Item], attempt: int, reason: str, detail: str) -> None:
        """Send the batch again after a backoff; its users stay claimed meanwhile (no
        reordering). It waits on a timer, not in a task: nothing of it is on the wire."""
        self.metrics.retries.labels(reason).inc()
        if self._failing_since is None:
            self._failing_since = self._clock()
            log.warning(
                "Braze did not answer well (%s); retrying with backoff, nothing is lost", detail
            )
        delay = backoff_s(attempt, RETRY_BASE_S, self.settings.retry_max_delay_seconds, self._rand)
        self._resends.after(delay, batch, attempt + 1)
