"""The sender's batches that wait to be sent again (delivery.py): those that go before any
new batch (the halves of a refused one, one Braze rate-limited, one waiting for a good API
key) and those waiting out a backoff on a timer. Nothing of them is on the wire; their users
stay claimed in the planner meanwhile (no reordering)."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable

from .batching import Item
from .sendjob import Job

Batch = tuple[list[Item], int]  # (its items, the attempts made)


class Resends:
    def __init__(self, wake: Callable[[], None]) -> None:
        self._first: deque[Batch] = deque()  # sent before new ones, in order
        self._backing_off: dict[int, asyncio.TimerHandle] = {}
        self._keys = itertools.count()
        self._wake = wake  # the dispatcher's, once a backoff is over

    def __bool__(self) -> bool:
        """Whether one is ready to be sent now."""
        return bool(self._first)

    @property
    def backing_off(self) -> int:
        return len(self._backing_off)

    def first(self, batch: list[Item], attempt: int) -> None:
        """Before every other batch (the second half of a split: call it first)."""
        self._first.appendleft((batch, attempt))

    def next(self) -> Batch:
        return self._first.popleft()

    def after(self, delay_s: float, batch: list[Item], attempt: int) -> None:
        """After `delay_s`, behind those ready then. A timer, not a task: nothing to cancel
        on the wire."""
        key = next(self._keys)
        self._backing_off[key] = asyncio.get_running_loop().call_later(
            delay_s, self._due, key, batch, attempt
        )

    def _due(self, key: int, batch: list[Item], attempt: int) -> None:
        del self._backing_off[key]
        self._first.append((batch, attempt))
        self._wake()

    def cancel_backoffs(self) -> None:
        """(Draining: those batches stay unsettled, sent after a restart.)"""
        for handle in self._backing_off.values():
            handle.cancel()
        self._backing_off.clear()

    def drop_job(self, job: Job) -> list[list[Item]]:
        """Take out the ready batches of `job` (one file per batch); returns them."""
        dropped = [entry for entry in self._first if entry[0] and entry[0][0].job is job]
        for entry in dropped:
            self._first.remove(entry)
        return [batch for batch, _ in dropped]
