"""Pure: group mapped rows into requests, keep one user out of two requests at once, and turn
out-of-order acknowledgements into a safe checkpoint.

Braze may apply two concurrent updates of one profile in either order, so a user is "claimed"
from the moment one of its rows is queued to send until Braze acknowledged that row; the
user's later rows wait, in file order, behind it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice, repeat, takewhile
from operator import add, attrgetter, is_
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
        return unpack_cells(self.packed_cells)


_SEPARATOR = "\x1f"  # ASCII unit separator


def pack_cells(cells: list[str]) -> str | list[str]:
    """A row's cells as one string: a fifth of the memory of the list, for the rows waiting
    for Braze. Kept as a list in the rare row whose cells contain the separator."""
    packed = _SEPARATOR.join(cells)
    return packed if packed.count(_SEPARATOR) == len(cells) - 1 else cells


def unpack_cells(packed: str | list[str]) -> list[str]:
    """The cells pack_cells packed, exactly (a string holds no cell with the separator)."""
    return packed.split(_SEPARATOR) if isinstance(packed, str) else packed


def pack_rows(rows: list[list[str]]) -> list[str | list[str]]:
    """pack_cells over a chunk. Joining never loses a separator, so each packed row holds at
    least its own; if the total is exact, no cell held one and every row is a plain join."""
    packed: list[str | list[str]] = list(map(_SEPARATOR.join, rows))
    separators = sum(map(str.count, packed, repeat(_SEPARATOR)))  # type: ignore[arg-type]
    if separators == sum(map(len, rows)) - len(rows):
        return packed
    return list(map(pack_cells, rows))


_body_of = attrgetter("body")
_user_of = attrgetter("user")
_job_of = attrgetter("job")


def build_body(items: Iterable[Item]) -> bytes:
    return b'{"attributes":[' + b",".join(map(_body_of, items)) + b"]}"


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

    def push_all(self, items: list[Item]) -> None:
        """push() of each item, in order; at once when none of their users is claimed or
        repeated (the usual chunk)."""
        users = list(map(_user_of, items))
        if self._claimed.isdisjoint(users) and len(set(users)) == len(users):
            self._claimed.update(users)
            self._ready.extend(items)
            return
        for item in items:
            self.push(item)

    def next_batch(self) -> list[Item]:
        """The next request's items (users all distinct); empty when nothing is ready: up to
        batch_size items of one file (so that a reply's errors and the outbox map back to one
        file), under the body limit (the first item whatever its size)."""
        ready = self._ready
        if not ready:
            return []
        batch = list(islice(ready, self.batch_size))
        job = batch[0].job
        if not all(map(is_, map(_job_of, batch), repeat(job))):
            batch = list(takewhile(lambda item: item.job is job, batch))
        # The body's size up to each item: the envelope, then each body and its comma.
        lengths = map(add, map(len, map(_body_of, batch)), repeat(1))
        sizes = list(accumulate(lengths, initial=_ENVELOPE))
        if sizes[-1] > self.max_body_bytes:
            del batch[max(1, bisect_right(sizes, self.max_body_bytes) - 1) :]
        for _ in batch:
            ready.popleft()
        return batch

    def release(self, items: Iterable[Item]) -> None:
        """These items are settled (acknowledged or rejected): their users' next rows may go."""
        if not self._waiting:  # no user has a row waiting: only claims to release
            self._claimed.difference_update(map(_user_of, items))
            return
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


Range = tuple[int, int]  # record indexes [start, end)


class SettledRecords:
    """Acknowledgements arrive out of order. The checkpoint is the contiguous settled prefix;
    the records settled beyond it are kept as a compact set of ranges, so that a restart can
    skip exactly those (then only the rows in flight at a crash are sent twice)."""

    def __init__(self, start_index: int = 0, ahead: Iterable[Range] = ()) -> None:
        self.checkpoint = start_index  # every record before this index is settled
        self._starts: list[int] = []  # disjoint, non-adjacent ranges beyond the checkpoint
        self._ends: list[int] = []
        for start, end in ahead:
            self.settle_range(start, end)

    def settle(self, index: int) -> None:
        self.settle_range(index, index + 1)

    def settle_all(self, indexes: Iterable[int]) -> None:
        """One request's records: mostly consecutive, so settled a run at a time."""
        run_start = run_end = -1
        for index in indexes:
            if index == run_end:
                run_end += 1
                continue
            if run_end > run_start:
                self.settle_range(run_start, run_end)
            run_start, run_end = index, index + 1
        if run_end > run_start:
            self.settle_range(run_start, run_end)

    def settle_range(self, start: int, end: int) -> None:
        start = max(start, self.checkpoint)
        if end <= start:
            return  # settled before
        starts, ends = self._starts, self._ends
        first = bisect_left(ends, start)  # ranges that overlap or touch [start, end)
        last = bisect_right(starts, end)
        if first < last:
            start, end = min(start, starts[first]), max(end, ends[last - 1])
        starts[first:last], ends[first:last] = [start], [end]
        if starts[0] == self.checkpoint:
            self.checkpoint = ends[0]
            del starts[0], ends[0]

    @property
    def ahead(self) -> list[Range]:
        """The settled ranges beyond the checkpoint, in order."""
        return list(zip(self._starts, self._ends, strict=True))

    def unsettled(self, indexes: Iterable[int]) -> list[int]:
        """Those of `indexes` not settled yet."""
        start, ranges = self.checkpoint, self.ahead
        return [i for i in indexes if i >= start and not any(a <= i < b for a, b in ranges)]

    @property
    def outstanding_ahead(self) -> int:
        """Records settled beyond the checkpoint."""
        return sum(self._ends) - sum(self._starts)


def keep_unsettled(first_index: int, count: int, settled: Sequence[Range]) -> list[int] | None:
    """Positions in a run of `count` records from `first_index` that no settled range holds;
    None when none does (the usual case: keep them all)."""
    last = first_index + count
    overlapping = [(s, e) for s, e in settled if s < last and e > first_index]
    if not overlapping:
        return None
    keep = [True] * count
    for start, end in overlapping:
        lo, hi = max(start, first_index) - first_index, min(end, last) - first_index
        keep[lo:hi] = [False] * (hi - lo)
    return [position for position, kept in enumerate(keep) if kept]
