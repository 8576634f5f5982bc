"""Pure: group mapped rows into requests, keep one user out of two requests at once, and turn
out-of-order acknowledgements into a safe checkpoint.

Braze may apply two concurrent updates of one profile in either order, so a user is "claimed"
from the moment one of its rows is queued to send until Braze acknowledged that row; the
user's later rows wait, in file order, behind it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

MAX_BODY_BYTES = 4_000_000  # Braze answers 413 above 4 MB; stay under with room for the envelope
_ENVELOPE = len(b'{"attributes":[]}')


@dataclass(slots=True, eq=False)
class Item:
    """One attributes object ready to send, and where it came from."""

    job: Any  # the owning file's job; opaque here
    index: int  # record index in its file
    line_no: int
    user: str
    body: bytes  # the object serialised once; requests are joined from these
    packed_cells: str | list[str]  # the source row, for the rejects file (see pack_cells)

    @property
    def cells(self) -> list[str]:
        packed = self.packed_cells
        return packed.split(_SEPARATOR) if isinstance(packed, str) else packed


_SEPARATOR = "\x1f"  # ASCII unit separator


def pack_cells(cells: list[str]) -> str | list[str]:
    """A row's cells as one string: a fifth of the memory of the list, for the rows waiting
    for Braze. Kept as a list in the rare row whose cells contain the separator."""
    packed = _SEPARATOR.join(cells)
    return packed if packed.count(_SEPARATOR) == len(cells) - 1 else cells


def pack_rows(rows: list[list[str]]) -> list[str | list[str]]:
    """pack_cells over a chunk. Joining never loses a separator, so each packed row holds at
    least its own; if the total is exact, no cell held one and every row is a plain join."""
    packed: list[str | list[str]] = list(map(_SEPARATOR.join, rows))
    separators = sum(map(str.count, packed, repeat(_SEPARATOR)))  # type: ignore[arg-type]
    if separators == sum(map(len, rows)) - len(rows):
        return packed
    return list(map(pack_cells, rows))


def build_body(items: Iterable[Item]) -> bytes:
    return b'{"attributes":[' + b",".join(i.body for i in items) + b"]}"


class Planner:
    """Items in, batches out: at most `batch_size` objects, under the body limit, one per user."""

    def __init__(self, batch_size: int, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self._ready: deque[Item] = deque()
        self._waiting: dict[str, deque[Item]] = {}  # rows whose user is claimed, in file order
        self._claimed: set[str] = set()
        self.waiting_count = 0

    def __len__(self) -> int:
        """Items not yet handed out in a batch."""
        return len(self._ready) + self.waiting_count

    @property
    def has_ready(self) -> bool:
        return bool(self._ready)

    def push(self, item: Item) -> None:
        if item.user in self._claimed:
            self._waiting.setdefault(item.user, deque()).append(item)
            self.waiting_count += 1
        else:
            self._claimed.add(item.user)
            self._ready.append(item)

    def next_batch(self) -> list[Item]:
        """The next request's items (users all distinct); empty when nothing is ready."""
        batch: list[Item] = []
        size = _ENVELOPE
        while self._ready and len(batch) < self.batch_size:
            item = self._ready[0]
            grown = size + len(item.body) + 1
            # One file per request, so a reply's errors and the outbox map back to one file.
            if batch and (grown > self.max_body_bytes or item.job is not batch[0].job):
                break
            self._ready.popleft()
            batch.append(item)
            size = grown
        return batch

    def release(self, items: Iterable[Item]) -> None:
        """These items are settled (acknowledged or rejected): their users' next rows may go."""
        for item in items:
            queue = self._waiting.get(item.user)
            if queue:
                self._ready.append(queue.popleft())
                self.waiting_count -= 1
                if not queue:
                    del self._waiting[item.user]
            else:
                self._claimed.discard(item.user)

    def requeue_front(self, items: list[Item]) -> None:
        """Items of a request that must be sent again keep their claim and go first."""
        self._ready.extendleft(reversed(items))

    def drop_job(self, job: Any) -> list[Item]:
        """Remove every queued item of one file (it vanished or failed); returns them.

        Only a ready item holds its user's claim (a waiting one does not), so only those are
        released; the file's items already in flight are released by their acknowledgement.
        """
        removed_ready = [i for i in self._ready if i.job is job]
        self._ready = deque(i for i in self._ready if i.job is not job)
        removed_waiting: list[Item] = []
        for user, queue in list(self._waiting.items()):
            kept = deque(i for i in queue if i.job is not job)
            removed_waiting += [i for i in queue if i.job is job]
            self.waiting_count -= len(queue) - len(kept)
            if kept:
                self._waiting[user] = kept
            else:
                del self._waiting[user]
        self.release(removed_ready)
        return removed_ready + removed_waiting


def split_batch(items: list[Item]) -> tuple[list[Item], list[Item]]:
    half = len(items) // 2
    return items[:half], items[half:]


class Progress:
    """Acknowledgements arrive out of order; the checkpoint is the contiguous settled prefix."""

    def __init__(self, start_index: int = 0) -> None:
        self.checkpoint = start_index  # every record before this index is settled
        self._settled_ahead: set[int] = set()

    def settle(self, index: int) -> None:
        if index == self.checkpoint:
            self.checkpoint += 1
            ahead = self._settled_ahead
            while self.checkpoint in ahead:
                ahead.remove(self.checkpoint)
                self.checkpoint += 1
        elif index > self.checkpoint:
            self._settled_ahead.add(index)

    @property
    def outstanding_ahead(self) -> int:
        return len(self._settled_ahead)
