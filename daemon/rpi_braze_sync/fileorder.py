"""Pure: which complete file is sent next, and why the others wait.

Braze applies /users/track asynchronously and silently ignores an update-only (append) row for
a user it does not have yet, so an append file waits for every upsert file seen no later than
it, then `append_delay_seconds` after the last upsert that was sent. No I/O or clock here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

UPSERT, APPEND = "upsert", "append"


@dataclass(frozen=True)
class FileInfo:
    """What the order rules need to know of one file version (a journal record)."""

    id: int
    rel_path: str
    mode: str  # upsert or append (from its channel)
    first_seen_at: float  # wall clock; files found in one scan share it
    completed_at: float
    mtime_ns: int


def queue_key(info: FileInfo) -> tuple[float, int, int, str, int]:
    """Files in the order they became complete; those that became complete together by
    modification time, then upserts before appends, then path."""
    return (info.completed_at, info.mtime_ns, 0 if info.mode == UPSERT else 1, info.rel_path,
            info.id)  # fmt: skip


@dataclass(frozen=True)
class Start:
    file: FileInfo


@dataclass(frozen=True)
class Wait:
    """Nothing can start now. `until`: the wall-clock time when `file` may start (the delay
    after an upsert), or None: wait for a file to finish or to become complete."""

    until: float | None
    # Each append file held back and the upsert file it waits for (None: the delay).
    held: tuple[tuple[FileInfo, FileInfo | None], ...]


NextStep = Start | Wait


def blocking_upsert(append: FileInfo, unfinished_upserts: Sequence[FileInfo]) -> FileInfo | None:
    """The first upsert file seen no later than `append` that is not finished, if any."""
    earlier = [u for u in unfinished_upserts if u.first_seen_at <= append.first_seen_at]
    return min(earlier, key=lambda u: (u.first_seen_at, u.id)) if earlier else None


def choose_next(
    queued: Sequence[FileInfo],
    unfinished_upserts: Sequence[FileInfo],
    last_upsert_sent_at: float | None,
    append_delay_s: float,
    now: float,
) -> NextStep | None:
    """The first runnable file in queue order; None when nothing is queued.

    `unfinished_upserts`: every upsert file seen, complete or being sent (including those
    still being written, which are not queued yet). An append file blocked by one is passed
    over, so that files behind it (the upsert it waits for among them) can go. An append file
    whose only obstacle is the delay after the last upsert sent makes everything wait: a file
    behind it could only be another upsert, which would push the delay further back.
    """
    if not queued:
        return None
    held: list[tuple[FileInfo, FileInfo | None]] = []
    for info in sorted(queued, key=queue_key):
        if info.mode != APPEND:
            return Start(info)
        blocker = blocking_upsert(info, [u for u in unfinished_upserts if u.id != info.id])
        if blocker is not None:
            held.append((info, blocker))
            continue
        ready_at = (last_upsert_sent_at or 0.0) + append_delay_s
        if last_upsert_sent_at is None or now >= ready_at:
            return Start(info)
        return Wait(ready_at, (*held, (info, None)))
    return Wait(None, tuple(held))
