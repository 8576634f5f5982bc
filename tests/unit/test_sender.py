"""The Sender against an in-memory transport: what it does with each kind of answer."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from rpi_braze_sync.batching import Item
from rpi_braze_sync.braze import Reply, Transport
from rpi_braze_sync.concurrency import Slot
from rpi_braze_sync.delivery import Sender
from rpi_braze_sync.errors import TransportError
from rpi_braze_sync.metrics import Metrics
from rpi_braze_sync.settings import BrazeSettings
from tests.faketransport import MemoryTransport, reply


class Job:
    """A file job as the sender sees it: it counts what settles."""

    source = "c/o/1/a.txt"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.rejected: dict[str, str] = {}
        self.settled = asyncio.Event()
        self.expected = 0

    def settle_sent(self, items: list[Item], slot: Slot) -> None:
        slot.release()  # (no checkpoint to wait for)
        self.sent += [item.user for item in items]
        self._check()

    def settle_rejected(self, item: Item, reason: str) -> None:
        self.rejected[item.user] = reason
        self._check()

    def _check(self) -> None:
        if len(self.sent) + len(self.rejected) >= self.expected:
            self.settled.set()

    def items(self, count: int) -> list[Item]:
        self.expected += count
        return [
            Item(self, i, i + 2, f"u{i}", orjson.dumps({"external_id": f"u{i}"}), f"u{i}")
            for i in range(count)
        ]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


async def run_sender(transport: Transport, metrics: Metrics, job: Job, items: list[Item]) -> None:
    settings = BrazeSettings(api_url="https://rest.example.braze.com", batch_size=75)
    sender = Sender(transport, settings, metrics, rand=lambda: 0.0)
    runner = asyncio.create_task(sender.run())
    try:
        sender.submit(items)
        await asyncio.wait_for(job.settled.wait(), 10)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        assert await sender.drain(1.0)


async def test_rows_go_in_batches_of_75_and_each_settles_once(metrics: Metrics) -> None:
    transport, job = MemoryTransport(), Job()
    await run_sender(transport, metrics, job, job.items(160))
    assert [len(orjson.loads(b)["attributes"]) for b in transport.bodies] == [75, 75, 10]
    assert sorted(job.sent) == sorted(f"u{i}" for i in range(160))
    assert job.rejected == {}


async def test_a_row_braze_lists_as_an_error_is_rejected_with_its_reason(metrics: Metrics) -> None:
    errors = {"errors": [{"type": "'external_id' is invalid", "input_array": "attributes",
                          "index": 1}], "message": "success"}  # fmt: skip
    transport, job = MemoryTransport([reply(201, errors)]), Job()
    await run_sender(transport, metrics, job, job.items(3))
    assert sorted(job.sent) == ["u0", "u2"]
    assert job.rejected == {"u1": "Braze: 'external_id' is invalid"}


@pytest.mark.parametrize(
    "first",
    [
        reply(429, {"message": "rate limited"}, **{"Retry-After": "0"}),
        reply(503, {"message": "unavailable"}),
        TransportError("connection", False, "connection refused by host:443"),
    ],
    ids=["429", "503", "refused"],
)
async def test_an_answer_that_is_no_verdict_sends_the_batch_again(
    metrics: Metrics, first: Reply | TransportError
) -> None:
    transport, job = MemoryTransport([first]), Job()
    await run_sender(transport, metrics, job, job.items(2))
    assert transport.users() == ["u0", "u1", "u0", "u1"]
    assert sorted(job.sent) == ["u0", "u1"]
    assert job.rejected == {}


async def test_a_bad_object_is_isolated_by_bisection(metrics: Metrics) -> None:
    def answer(body: bytes) -> Reply:
        users = [o["external_id"] for o in orjson.loads(body)["attributes"]]
        if "u2" in users:
            return reply(400, {"message": "Invalid request"})
        return reply(201, {"message": "success"})

    transport, job = MemoryTransport(default=answer), Job()
    await run_sender(transport, metrics, job, job.items(4))
    assert sorted(job.sent) == ["u0", "u1", "u3"]
    assert list(job.rejected) == ["u2"]
    assert "Invalid request" in job.rejected["u2"]


class KeepingJob(Job):
    """A file job whose checkpoints are not written yet (while `keeping`): it keeps every
    request's slot."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: list[Slot] = []
        self.keeping = True

    def settle_sent(self, items: list[Item], slot: Slot) -> None:
        self.slots.append(slot)
        if not self.keeping:
            slot.release()
        self.sent += [item.user for item in items]
        self._check()


@pytest.mark.parametrize(
    "answer",
    [reply(201, {"message": "success"}), reply(400, {"message": "Invalid request"})],
    ids=["acknowledged", "rejected"],
)
async def test_a_request_keeps_its_place_until_its_rows_are_checkpointed(
    metrics: Metrics, answer: Reply
) -> None:
    """Answered, acknowledged or rejected, a request still holds its place among the
    max_in_flight until its slot is released (its rows' checkpoint written): a kill sends
    again those rows too, and they must count within the bound."""
    transport, job = MemoryTransport(default=lambda _: answer), KeepingJob()
    settings = BrazeSettings(api_url="https://rest.example.braze.com", batch_size=1,
                             max_in_flight=4)  # fmt: skip
    sender = Sender(transport, settings, metrics, rand=lambda: 0.0)
    runner = asyncio.create_task(sender.run())
    try:
        sender.submit(job.items(10))
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(transport.bodies) == 4
        assert len(job.slots) == 4  # answered, their places kept
        job.slots[0].release()
        job.slots[0].release()  # (once only)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(transport.bodies) == 5
        job.keeping = False
        for slot in job.slots:
            slot.release()
        await asyncio.wait_for(job.settled.wait(), 10)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert len(job.sent) + len(job.rejected) == 10
