"""The RPI-call store: expired calls pruned on every use, at most max_calls kept, the journal
told the same; and repeated server log lines held back with a count."""

from __future__ import annotations

import logging

from rpi_braze_sync.hook import MAX_FIELD_CHARS, RpiCall, parse_rpi_call
from rpi_braze_sync.logs import RepeatFilter
from rpi_braze_sync.rpicalls import RpiCallStore


class FakeJournal:
    def __init__(self) -> None:
        self.bodies: dict[str, float] = {}
        self.prunes: list[tuple[float, int]] = []

    def store_rpi_call(self, body: str) -> bool:
        if body in self.bodies:
            return False
        self.bodies[body] = 0.0
        return True

    def rpi_calls_since(self, since: float) -> list[tuple[float, str]]:
        return []

    def prune_rpi_calls(self, before: float, keep: int) -> None:
        self.prunes.append((before, keep))


def a_call(n: int, at: float) -> RpiCall:
    call = parse_rpi_call({"channelName": "C", "offerName": "O", "channelExecutionID": str(n)}, at)
    assert isinstance(call, RpiCall)
    return call


def test_calls_expire_and_are_capped() -> None:
    now = [1000.0]
    store = RpiCallStore(lambda: 60.0, max_calls=3, clock=lambda: now[0])
    journal = FakeJournal()
    store.attach(journal)
    for n in range(5):
        now[0] += 1
        assert store.add(a_call(n, now[0]))
    assert len(store) == 3  # the newest three
    assert not store.add(a_call(4, now[0]))  # the same call again
    found = store.call_for({"channel": "C", "offer": "O", "workflow_id": "x"})
    assert found is not None
    assert found.channel_execution_id == "4"
    assert journal.prunes[-1] == (945.0, 3)
    now[0] += 61
    assert store.call_for({"channel": "C", "offer": "O"}) is None
    assert len(store) == 0


def test_a_field_over_the_limit_refuses_the_call() -> None:
    long = "x" * (MAX_FIELD_CHARS + 1)
    assert parse_rpi_call({"channelName": "C", "offerName": long}, 0.0) == (
        f"these fields are longer than {MAX_FIELD_CHARS} characters: offerName"
    )


def test_repeated_server_lines_are_shown_once_per_interval_with_a_count() -> None:
    now = [0.0]
    repeat = RepeatFilter(interval_s=60, clock=lambda: now[0])

    def record(name: str, n: int) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, "f", 1, "accept failed on %s", (n,), None)

    shown = [repeat.filter(record("asyncio", n)) for n in range(100)]
    assert shown == [True] + [False] * 99
    assert repeat.filter(record("rpi_braze_sync.app", 0))  # the daemon's own lines: all
    assert repeat.filter(record("rpi_braze_sync.app", 0))
    now[0] = 61
    later = record("asyncio", 100)
    assert repeat.filter(later)
    assert (
        later.getMessage() == "accept failed on 100 (99 more like this in the last 61 s, not shown)"
    )
