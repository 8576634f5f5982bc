"""The sender against a real aiohttp fake Braze: every row ends sent or rejected with a reason,
the rate is kept in every sliding window, and no two requests in flight share a user."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from rpi_braze_sync.batching import Item
from rpi_braze_sync.braze import HttpTransport
from rpi_braze_sync.concurrency import Slot
from rpi_braze_sync.delivery import Sender
from rpi_braze_sync.metrics import Metrics
from rpi_braze_sync.secret import Secret
from rpi_braze_sync.settings import BrazeSettings, RateLimitSettings
from tests.fakebraze import API_KEY, FakeBraze, Scripted, html_error, rate_limited


class RecordingJob:
    source = "Braze Onboarding and Upsert/offer/1/f.txt"

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.rejected: dict[int, str] = {}
        self.done = asyncio.Event()
        self.expected = 0

    def settle_sent(self, items: list[Item], slot: Slot) -> None:
        slot.release()  # (no checkpoint to wait for)
        self.sent.extend(item.index for item in items)
        self._check()

    def settle_rejected(self, item: Item, reason: str) -> None:
        assert item.index not in self.rejected, "settled twice"
        self.rejected[item.index] = reason
        self._check()

    def _check(self) -> None:
        if len(self.sent) + len(self.rejected) >= self.expected:
            self.done.set()


def settings(**overrides: Any) -> BrazeSettings:
    base: dict[str, Any] = {
        "request_timeout_seconds": 2.0,
        "retry_max_delay_seconds": 0.2,
        "auth_retry_seconds": 0.2,
        "rate_limit": RateLimitSettings(requests=1000, seconds=1.0),
    }
    return BrazeSettings(**{**base, **overrides})


async def deliver(
    fake: FakeBraze, users: list[str], braze: BrazeSettings, metrics: Metrics | None = None
) -> tuple[RecordingJob, Sender]:
    job = RecordingJob()
    job.expected = len(users)
    transport = HttpTransport(fake.url, Secret(API_KEY), braze.request_timeout_seconds, 64)
    sender = Sender(transport, braze, metrics or Metrics(), rand=random.Random(7).random)
    runner = asyncio.create_task(sender.run())
    try:
        for index, user in enumerate(users):
            body = orjson.dumps({"external_id": user, "seq": index, "_update_existing_only": False})
            sender.submit([Item(job, index, index + 2, user, body, [user])])
            if index % 500 == 0:
                await sender.wait_room()
        await asyncio.wait_for(job.done.wait(), 30)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await sender.drain(1)
        await transport.close()
    return job, sender


def assert_each_row_once(job: RecordingJob, count: int) -> None:
    settled = sorted([*job.sent, *job.rejected])
    assert settled == list(range(count))


async def test_rate_is_kept_in_every_sliding_window(fake_braze: FakeBraze) -> None:
    fake_braze.rate_limit = (44, 1.0)  # 10% above the client's limit: jitter cannot trip it
    users = [f"u{i}" for i in range(900)]
    braze = settings(batch_size=10, rate_limit=RateLimitSettings(requests=40, seconds=1.0))
    job, _ = await deliver(fake_braze, users, braze)
    assert_each_row_once(job, 900)
    assert not job.rejected
    assert 429 not in fake_braze.statuses
    assert fake_braze.max_in_window(1.0) <= 40
    assert sorted(fake_braze.users()) == sorted(users)


async def test_concurrency_stays_near_what_a_braze_slowing_under_load_can_take(
    fake_braze: FakeBraze,
) -> None:
    """Four workers of 5 ms behind 40 ms: 800 requests/s, 36 in flight are enough. More only
    wait inside Braze: its answers slow down, its rate does not grow."""
    fake_braze.latency_s = 0.04
    fake_braze.slow_under_load(workers=4, service_s=0.005)
    metrics = Metrics()
    braze = settings(batch_size=10, rate_limit=RateLimitSettings(requests=1000, seconds=1.0))
    job, _ = await deliver(fake_braze, [f"u{i}" for i in range(16000)], braze, metrics)
    assert_each_row_once(job, 16000)
    needed = 800 * 0.045  # the rate Braze can take x its unloaded round trip
    # 2 x that + 2, with room for noisy rate samples (tests/unit/test_concurrency.py)
    assert fake_braze.peak_requests <= 2.5 * needed + 2
    gauge = metrics.registry.get_sample_value("rpi_braze_sync_concurrency_limit")
    assert gauge is not None
    assert 4 <= gauge <= 2.5 * needed + 2  # the limit as exported


async def test_no_two_requests_in_flight_share_a_user_and_order_is_kept(
    fake_braze: FakeBraze,
) -> None:
    fake_braze.latency_s = 0.01
    rng = random.Random(3)
    users = [f"u{rng.randrange(20)}" for _ in range(600)]
    job, _ = await deliver(fake_braze, users, settings(batch_size=5))
    assert_each_row_once(job, 600)
    assert fake_braze.overlaps == []
    for body in fake_braze.requests:
        ids = [o["external_id"] for o in body["attributes"]]
        assert len(ids) == len(set(ids)), "one user twice in one request"
    per_user: dict[str, list[int]] = {}
    for obj in fake_braze.objects():
        per_user.setdefault(obj["external_id"], []).append(obj["seq"])
    assert all(seqs == sorted(seqs) for seqs in per_user.values())


@pytest.mark.parametrize(
    ("scripted", "retry_reason"),
    [
        (rate_limited("retry-after"), "rate_limited"),
        (rate_limited("epoch"), "rate_limited"),
        (rate_limited("seconds"), "rate_limited"),
        (html_error(502), "http_5xx"),
        (html_error(503), "http_5xx"),
        (Scripted("reset"), "connection"),
        (Scripted("stall", stall_s=2.5), "timeout"),
    ],
)
async def test_transient_answers_lose_nothing(
    fake_braze: FakeBraze, scripted: Scripted, retry_reason: str
) -> None:
    fake_braze.script.extend([scripted, scripted])
    metrics = Metrics()
    users = [f"u{i}" for i in range(300)]
    job, _ = await deliver(fake_braze, users, settings(), metrics)
    assert_each_row_once(job, 300)
    assert not job.rejected
    assert set(users) <= set(fake_braze.users())
    retries = metrics.registry.get_sample_value(
        "rpi_braze_sync_retries_total", {"reason": retry_reason}
    )
    assert retries == 2
    duplicates = len(fake_braze.users()) - len(users)
    counted = metrics.registry.get_sample_value("rpi_braze_sync_possible_duplicate_rows_total")
    assert counted is not None
    assert duplicates <= counted  # only resends after no answer may duplicate, and they are counted


async def test_minor_errors_reject_only_the_listed_rows(fake_braze: FakeBraze) -> None:
    fake_braze.minor_errors = {"u7": "EMAIL_BAD_FORMAT", "u42": "EXTERNAL_USER_ID_TOO_LARGE"}
    users = [f"u{i}" for i in range(100)]
    job, _ = await deliver(fake_braze, users, settings())
    assert job.rejected == {7: "Braze: EMAIL_BAD_FORMAT", 42: "Braze: EXTERNAL_USER_ID_TOO_LARGE"}
    assert len(job.sent) == 98


async def test_a_batch_of_only_invalid_rows_is_rejected_whole(fake_braze: FakeBraze) -> None:
    fake_braze.minor_errors = {f"u{i}": "BAD_THING" for i in range(10)}
    job, _ = await deliver(fake_braze, [f"u{i}" for i in range(10)], settings(batch_size=10))
    assert job.rejected == {i: "Braze: BAD_THING" for i in range(10)}


async def test_max_input_length_splits_and_lowers_the_batch_size(fake_braze: FakeBraze) -> None:
    fake_braze.max_objects = 20
    job, sender = await deliver(fake_braze, [f"u{i}" for i in range(200)], settings(batch_size=75))
    assert_each_row_once(job, 200)
    assert not job.rejected
    assert sender.planner.batch_size <= 20
    assert all(len(b["attributes"]) <= 20 for b in fake_braze.requests)


async def test_other_400_bisects_down_to_the_bad_rows(fake_braze: FakeBraze) -> None:
    fake_braze.invalid_users = {"u13", "u61"}
    job, _ = await deliver(fake_braze, [f"u{i}" for i in range(75)], settings())
    assert set(job.rejected) == {13, 61}
    assert job.rejected[13] == "Braze: Invalid attribute value"
    assert len(job.sent) == 73


async def test_refused_key_pauses_then_resumes_without_rejecting(fake_braze: FakeBraze) -> None:
    fake_braze.api_key = "rotated"  # our key is refused until the operator fixes it
    metrics = Metrics()

    async def fix_key_later() -> None:
        await asyncio.sleep(0.5)
        assert metrics.registry.get_sample_value("rpi_braze_sync_braze_auth_failing") == 1
        fake_braze.api_key = API_KEY

    fixer = asyncio.create_task(fix_key_later())
    job, sender = await deliver(fake_braze, [f"u{i}" for i in range(150)], settings(), metrics)
    await fixer
    assert not job.rejected
    assert_each_row_once(job, 150)
    assert 401 in fake_braze.statuses
    assert not sender.auth_failing
    assert metrics.registry.get_sample_value("rpi_braze_sync_braze_auth_failing") == 0
    assert all(API_KEY not in h or h == f"Bearer {API_KEY}" for h in fake_braze.auth_headers)


async def test_a_long_outage_only_delays_rows(fake_braze: FakeBraze) -> None:
    fake_braze.script.extend([html_error(503)] * 40)  # forty failures in a row
    metrics = Metrics()
    job, _ = await deliver(fake_braze, [f"u{i}" for i in range(200)], settings(), metrics)
    assert_each_row_once(job, 200)
    assert not job.rejected
    assert (
        metrics.registry.get_sample_value("rpi_braze_sync_retries_total", {"reason": "http_5xx"})
        == 40
    )
    assert metrics.registry.get_sample_value("rpi_braze_sync_requests_total", {"code": "503"}) == 40


async def test_remaining_zero_makes_every_sender_wait_for_the_reset(fake_braze: FakeBraze) -> None:
    # A success that says the window is used up: the next request waits for the reset.
    fake_braze.script.append(
        Scripted(
            "status",
            201,
            b'{"message":"success"}',
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.6"},
        )
    )
    job, _ = await deliver(fake_braze, ["a", "b"], settings(batch_size=1, max_in_flight=1))
    assert sorted(job.sent) == [0, 1]
    first, second = fake_braze.starts
    assert second - first >= 0.55
