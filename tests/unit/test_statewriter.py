"""The state writer (statewriter.py): one thread, off the event loop, in the order handed over,
and nothing handed over is dropped by closing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rpi_braze_sync.statewriter import StateWriter


async def test_writes_run_in_order_on_one_thread_off_the_loop() -> None:
    writer = StateWriter()
    done: list[tuple[int, str]] = []

    def write(n: int) -> int:
        time.sleep(0.002 if n % 3 else 0)  # uneven: an order by chance would show
        done.append((n, threading.current_thread().name))
        return n

    results = [writer.submit(lambda n=n: write(n)) for n in range(30)]  # type: ignore[misc]
    ticks = 0
    while not results[-1].done():  # the loop turns while the thread writes
        ticks += 1
        await asyncio.sleep(0)
    assert [await r for r in results] == list(range(30))
    await writer.close()
    assert [n for n, _ in done] == list(range(30))
    assert {name for _, name in done} == {"state-writer_0"}
    assert ticks > 1


async def test_a_failure_reaches_the_caller_and_later_writes_still_run() -> None:
    writer = StateWriter()

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    failed, later = writer.submit(full_disk), writer.submit(lambda: "written")
    with pytest.raises(OSError, match="No space"):
        await failed
    assert await later == "written"
    await writer.close()


async def test_closing_writes_what_was_handed_over_and_later_writes_still_happen() -> None:
    writer = StateWriter()
    done: list[str] = []

    def note(what: str, delay_s: float = 0.0) -> str:
        time.sleep(delay_s)
        done.append(what)
        return what

    slow = writer.submit(lambda: note("before close", 0.05))
    await writer.close()
    assert slow.done()
    assert done == ["before close"]
    # A late callback of a shutdown: written here, after the thread's, not dropped.
    assert await writer.submit(lambda: note("after close")) == "after close"
    assert done == ["before close", "after close"]
