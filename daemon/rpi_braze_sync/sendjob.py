"""Pure: the sender's side of the contract with the file jobs whose rows it sends
(pipeline.FileJob keeps it, as do the jobs of tests/unit/test_sender.py)."""

from __future__ import annotations

from typing import Protocol

from .batching import Item
from .concurrency import Slot


class Job(Protocol):
    """What the sender needs from the file an item came from. Each request answered ends
    with settle_sent (its rows acknowledged, maybe none), after settle_rejected of any it
    lost: its `slot` is released once a checkpoint covers them all. `fail`: a request's rows
    will never settle (a bug while sending or settling it): the file stops and is tried again."""

    source: str

    def settle_sent(self, items: list[Item], slot: Slot) -> None: ...

    def settle_rejected(self, item: Item, reason: str) -> None: ...

    def fail(self, exc: Exception, items: list[Item]) -> None: ...
