"""Which complete file goes next: upserts before the appends that depend on them."""

from __future__ import annotations

import pytest

from rpi_braze_sync.fileorder import (
    APPEND,
    UPSERT,
    FileInfo,
    Start,
    Wait,
    choose_next,
    queue_key,
)

DELAY = 10.0


def file(
    file_id: int, mode: str, seen: float, completed: float | None = None, mtime: int = 0
) -> FileInfo:
    return FileInfo(
        file_id,
        f"{'U' if mode == UPSERT else 'A'}/o/w/f{file_id}.txt",
        mode,
        seen,
        seen if completed is None else completed,
        mtime,
    )


def test_files_complete_together_go_by_mtime_then_upsert_first_then_path() -> None:
    together = [
        file(1, APPEND, 5, 9, mtime=2),
        file(2, UPSERT, 5, 9, mtime=2),
        file(3, UPSERT, 5, 9, mtime=1),
        file(4, APPEND, 5, 8, mtime=3),  # complete earlier: first whatever its mtime
    ]
    assert [f.id for f in sorted(together, key=queue_key)] == [4, 3, 2, 1]


def test_nothing_queued() -> None:
    assert choose_next([], [], None, DELAY, 100) is None


UP = file(1, UPSERT, seen=10)
APP = file(2, APPEND, seen=10)  # found in the same scan as UP: the same seen time
UP_QUEUED = file(1, UPSERT, 10, 20, mtime=2)


@pytest.mark.parametrize(
    ("queued", "unfinished", "last_sent", "now", "expected"),
    [
        # The scan listed the append first (older mtime): the upsert it waits for goes first.
        ([file(2, APPEND, 10, 20, mtime=1), UP_QUEUED], [UP_QUEUED], None, 30, Start(UP_QUEUED)),
        # The upsert is still being written (not queued): the append waits, says for what.
        ([APP], [UP], None, 30, Wait(None, ((APP, UP),))),
        # An upsert seen after the append is not waited for.
        ([APP], [file(1, UPSERT, seen=11)], None, 30, Start(APP)),
        # No upsert was ever sent: no delay.
        ([APP], [], None, 30, Start(APP)),
        # The delay after the last upsert sent, measured from when it finished.
        ([APP], [], 25, 30, Wait(35, ((APP, None),))),
        ([APP], [], 20, 30, Start(APP)),
        # While one append waits for an unfinished upsert, a later independent file may go.
        ([APP, file(3, UPSERT, 12, 21)], [UP, file(3, UPSERT, 12, 21)], None, 30,
         Start(file(3, UPSERT, 12, 21))),
        # An append only waiting for the delay holds the queue: what is behind it is later.
        ([file(2, APPEND, 10, 20), file(3, UPSERT, 12, 21)], [file(3, UPSERT, 12, 21)], 25, 30,
         Wait(35, ((file(2, APPEND, 10, 20), None),))),
    ],
)  # fmt: skip
def test_choose_next(
    queued: list[FileInfo],
    unfinished: list[FileInfo],
    last_sent: float | None,
    now: float,
    expected: Start | Wait,
) -> None:
    assert choose_next(queued, unfinished, last_sent, DELAY, now) == expected


def test_every_append_waits_for_every_earlier_upsert_whatever_the_order() -> None:
    """Whatever order files arrive in, replaying the decisions never sends an append file
    while an upsert file seen no later than it is unsent, nor within the delay after one."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        files = [
            file(i, rng.choice((UPSERT, APPEND)), rng.choice((1, 2, 3)), rng.uniform(3, 9),
                 rng.randint(0, 3))
            for i in range(6)
        ]  # fmt: skip
        queued, sent_at, now = list(files), dict[int, float](), 10.0
        while queued:
            unfinished = [f for f in files if f.mode == UPSERT and f.id not in sent_at]
            last = max((sent_at[f.id] for f in files if f.id in sent_at and f.mode == UPSERT),
                       default=None)  # fmt: skip
            decision = choose_next(queued, unfinished, last, DELAY, now)
            assert decision is not None
            if isinstance(decision, Wait):
                assert decision.until is not None  # never stuck: everything blocking is queued
                now = decision.until
                continue
            chosen = decision.file
            if chosen.mode == APPEND:
                assert not [u for u in unfinished if u.first_seen_at <= chosen.first_seen_at]
                assert last is None or now >= last + DELAY
            queued.remove(chosen)
            now += 1.0
            sent_at[chosen.id] = now
