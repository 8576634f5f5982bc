"""Planner (batches, per-user claims, jobs), build_body and SettledRecords."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from rpi_braze_sync.batching import (
    Item,
    Planner,
    SettledRecords,
    build_body,
    keep_unsettled,
    pack_cells,
    pack_rows,
    split_batch,
)


class Job:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Job({self.name})"


def item(job: Any, index: int, user: str, pad: int = 0) -> Item:
    body = json.dumps({"external_id": user, "i": index, "p": "x" * pad}, separators=(",", ":"))
    return Item(job, index, index + 2, user, body.encode(), [user, str(index)])


def keys(batch: list[Item]) -> list[tuple[str, int]]:
    return [(i.user, i.index) for i in batch]


JOB = Job("a")


def test_batches_never_exceed_batch_size() -> None:
    planner = Planner(batch_size=3)
    for n in range(8):
        planner.push(item(JOB, n, f"u{n}"))
    sizes = []
    while batch := planner.next_batch():
        sizes.append(len(batch))
    assert sizes == [3, 3, 2]
    assert len(planner) == 0


def test_batches_never_exceed_max_body_bytes() -> None:
    items = [item(JOB, n, f"u{n}", pad=n % 4) for n in range(12)]
    item_len = {len(i.body) for i in items}
    assert max(item_len) < 40
    limit = 100  # envelope 17 + at most two 40-byte objects
    planner = Planner(batch_size=75, max_body_bytes=limit)
    for i in items:
        planner.push(i)
    emitted = []
    while batch := planner.next_batch():
        assert len(build_body(batch)) <= limit
        assert 1 <= len(batch) <= 2
        emitted += batch
    assert emitted == items


def test_a_single_oversized_item_still_goes_alone() -> None:
    planner = Planner(batch_size=10, max_body_bytes=30)
    big, small = item(JOB, 0, "u0", pad=50), item(JOB, 1, "u1")
    planner.push(big)
    planner.push(small)
    assert planner.next_batch() == [big]
    assert planner.next_batch() == [small]


def test_a_users_later_items_wait_for_release_and_keep_file_order() -> None:
    planner = Planner(batch_size=10)
    pushed = [item(JOB, 0, "u"), item(JOB, 1, "v"), item(JOB, 2, "u"), item(JOB, 3, "u")]
    for i in pushed:
        planner.push(i)
    assert len(planner) == 4
    first = planner.next_batch()
    assert keys(first) == [("u", 0), ("v", 1)]
    assert planner.next_batch() == []
    assert len(planner) == 2
    planner.release([first[1]])  # v settled: nothing of u may go yet
    assert planner.next_batch() == []
    planner.release([first[0]])
    second = planner.next_batch()
    assert keys(second) == [("u", 2)]
    assert planner.next_batch() == []
    planner.release(second)
    assert keys(planner.next_batch()) == [("u", 3)]
    assert len(planner) == 0


def test_items_of_different_jobs_never_share_a_batch() -> None:
    a, b = Job("a"), Job("b")
    planner = Planner(batch_size=10)
    for n, job in enumerate([a, a, b, b, a]):
        planner.push(item(job, n, f"u{n}"))
    batches = []
    while batch := planner.next_batch():
        batches.append([(i.job.name, i.index) for i in batch])
    assert batches == [[("a", 0), ("a", 1)], [("b", 2), ("b", 3)], [("a", 4)]]


def test_requeue_front_goes_first_and_keeps_the_claim() -> None:
    planner = Planner(batch_size=2)
    for n, user in enumerate(["u", "v", "w", "u"]):
        planner.push(item(JOB, n, user))
    first = planner.next_batch()
    assert keys(first) == [("u", 0), ("v", 1)]
    planner.requeue_front(first)
    assert len(planner) == 4
    assert keys(planner.next_batch()) == [("u", 0), ("v", 1)]
    assert keys(planner.next_batch()) == [("w", 2)]  # u's second row still waits


def test_drop_job_removes_ready_and_waiting_and_frees_the_user() -> None:
    a, b = Job("a"), Job("b")
    planner = Planner(batch_size=10)
    a0, a1, b2, a3 = item(a, 0, "u"), item(a, 1, "u"), item(b, 2, "u"), item(a, 3, "v")
    for i in (a0, a1, b2, a3):
        planner.push(i)
    assert len(planner) == 4
    removed = planner.drop_job(a)
    assert sorted(i.index for i in removed) == [0, 1, 3]
    assert len(planner) == 1
    assert planner.next_batch() == [b2]  # u's claim passed to the other job's row
    planner.release([b2])
    planner.push(item(a, 4, "v"))  # v is free again
    assert keys(planner.next_batch()) == [("v", 4)]


def test_drop_job_keeps_the_claim_of_an_item_in_flight() -> None:
    a, b = Job("a"), Job("b")
    planner = Planner(batch_size=10)
    a0, a1, b2 = item(a, 0, "u"), item(a, 1, "u"), item(b, 2, "u")
    for i in (a0, a1, b2):
        planner.push(i)
    assert planner.next_batch() == [a0]  # in flight
    assert planner.drop_job(a) == [a1]
    assert len(planner) == 1
    assert planner.next_batch() == []  # b2 waits for a0's acknowledgement
    planner.release([a0])
    assert planner.next_batch() == [b2]
    planner.release([b2])
    assert len(planner) == 0
    planner.push(item(b, 3, "u"))
    assert keys(planner.next_batch()) == [("u", 3)]


def test_drop_job_of_an_unknown_job_changes_nothing() -> None:
    planner = Planner(batch_size=10)
    planner.push(item(JOB, 0, "u"))
    assert planner.drop_job(Job("other")) == []
    assert len(planner) == 1


@pytest.mark.parametrize("seed", range(40))
def test_random_simulation_keeps_users_exclusive_and_in_order(seed: int) -> None:
    rng = random.Random(seed)
    users = [f"u{n}" for n in range(rng.randint(1, 4))]
    jobs = [Job(f"j{n}") for n in range(rng.randint(1, 3))]
    batch_size = rng.randint(1, 5)
    limit = 130
    pushed = [
        item(rng.choice(jobs), n, rng.choice(users), pad=rng.randint(0, 40)) for n in range(60)
    ]
    planner = Planner(batch_size, max_body_bytes=limit)
    to_push = list(pushed)
    in_flight: list[list[Item]] = []
    emitted: list[Item] = []
    while to_push or len(planner) or in_flight:
        step = rng.random()
        if to_push and step < 0.4:
            planner.push(to_push.pop(0))
        elif in_flight and (step < 0.7 or not planner.has_ready):
            planner.release(in_flight.pop(rng.randrange(len(in_flight))))
        else:
            batch = planner.next_batch()
            if not batch:
                # with nothing in flight every queued user holds a ready item: never stuck
                assert in_flight or len(planner) == 0
                continue
            assert len(batch) <= batch_size
            assert len(build_body(batch)) <= limit
            assert len({i.user for i in batch}) == len(batch)
            assert len({id(i.job) for i in batch}) == 1
            in_flight.append(batch)
            emitted += batch
        flying = [i.user for b in in_flight for i in b]
        assert len(flying) == len(set(flying)), flying
        assert len(planner) == len(pushed) - len(to_push) - len(emitted)
    assert sorted(id(i) for i in emitted) == sorted(id(i) for i in pushed)
    for user in users:
        assert [i.index for i in emitted if i.user == user] == [
            i.index for i in pushed if i.user == user
        ]


class OneByOne:
    """The planner's rules, an item at a time: what Planner's column-wise steps must equal."""

    def __init__(self, batch_size: int, max_body_bytes: int) -> None:
        self.batch_size, self.max_body_bytes = batch_size, max_body_bytes
        self.ready: list[Item] = []
        self.waiting: dict[str, list[Item]] = {}
        self.claimed: set[str] = set()

    def push(self, item: Item) -> None:
        if item.user in self.claimed:
            self.waiting.setdefault(item.user, []).append(item)
        else:
            self.claimed.add(item.user)
            self.ready.append(item)

    def next_batch(self) -> list[Item]:
        batch: list[Item] = []
        size = len(b'{"attributes":[]}')
        while self.ready and len(batch) < self.batch_size:
            grown = size + len(self.ready[0].body) + 1
            if batch and (grown > self.max_body_bytes or self.ready[0].job is not batch[0].job):
                break
            batch.append(self.ready.pop(0))
            size = grown
        return batch

    def release(self, items: list[Item]) -> None:
        for item in items:
            queue = self.waiting.get(item.user)
            if queue:
                self.ready.append(queue.pop(0))
                if not queue:
                    del self.waiting[item.user]
            else:
                self.claimed.discard(item.user)


@pytest.mark.parametrize("seed", range(60))
def test_chunks_pushed_at_once_are_batched_as_one_by_one(seed: int) -> None:
    # push_all takes a chunk in one step, next_batch cuts a batch column-wise and release
    # frees claims at once when nobody waits: each batch must be the one-by-one planner's,
    # item for item, with users repeated or not, several jobs, and bodies near the limit.
    rng = random.Random(seed)
    users = [f"u{n}" for n in range(rng.choice([3, 50, 1000]))]
    jobs = [Job(f"j{n}") for n in range(rng.randint(1, 3))]
    batch_size, limit = rng.randint(1, 8), rng.choice([60, 130, 400, 4_000_000])
    planner, reference = Planner(batch_size, max_body_bytes=limit), OneByOne(batch_size, limit)
    in_flight: list[list[Item]] = []
    count = 0
    for _ in range(300):
        step = rng.random()
        if step < 0.3:
            job = rng.choice(jobs)
            chunk = [
                item(job, count + n, rng.choice(users), pad=rng.randint(0, 60))
                for n in range(rng.randint(0, 12))
            ]
            count += len(chunk)
            planner.push_all(chunk)
            for each in chunk:
                reference.push(each)
        elif in_flight and step < 0.6:
            released = in_flight.pop(rng.randrange(len(in_flight)))
            planner.release(released)
            reference.release(released)
        else:
            batch = planner.next_batch()
            assert [id(i) for i in batch] == [id(i) for i in reference.next_batch()]
            if batch:
                in_flight.append(batch)
        assert len(planner) == len(reference.ready) + sum(map(len, reference.waiting.values()))
    assert count > 100


def test_build_body_is_valid_json_with_attributes() -> None:
    items = [item(JOB, 0, "u"), item(JOB, 1, 'v"quoted')]
    assert json.loads(build_body(items)) == {
        "attributes": [
            {"external_id": "u", "i": 0, "p": ""},
            {"external_id": 'v"quoted', "i": 1, "p": ""},
        ]
    }
    assert json.loads(build_body([])) == {"attributes": []}


@pytest.mark.parametrize(
    ("n", "first", "second"), [(1, [], [0]), (2, [0], [1]), (5, [0, 1], [2, 3, 4])]
)
def test_split_batch_halves(n: int, first: list[int], second: list[int]) -> None:
    items = [item(JOB, i, f"u{i}") for i in range(n)]
    left, right = split_batch(items)
    assert [i.index for i in left] == first
    assert [i.index for i in right] == second


@pytest.mark.parametrize(
    ("start", "settles", "checkpoints", "ahead"),
    [
        (0, [2, 1, 0], [0, 0, 3], 0),
        (0, [1, 3, 0, 2, 5], [0, 0, 2, 4, 4], 1),
        (0, [0, 0, 1, 1], [1, 1, 2, 2], 0),  # duplicates
        (10, [9, 3, 10, 12, 12, 11], [10, 10, 11, 11, 11, 13], 0),  # below start ignored
        (10, [0, 11], [10, 10], 1),
    ],
)
def test_progress_checkpoint_is_the_contiguous_settled_prefix(
    start: int, settles: list[int], checkpoints: list[int], ahead: int
) -> None:
    progress = SettledRecords(start)
    assert progress.checkpoint == start
    seen = []
    for index in settles:
        progress.settle(index)
        seen.append(progress.checkpoint)
    assert seen == checkpoints
    assert progress.outstanding_ahead == ahead


@pytest.mark.parametrize("seed", range(10))
def test_progress_random_order_with_duplicates(seed: int) -> None:
    rng = random.Random(seed)
    start = rng.randint(0, 5)
    order = list(range(start, start + 50))
    rng.shuffle(order)
    progress = SettledRecords(start)
    settled: set[int] = set()
    for index in order:
        progress.settle(index)
        settled.add(index)
        progress.settle(rng.choice([*settled, *range(start)]))  # a repeat or a stale index
        expected = start
        while expected in settled:
            expected += 1
        assert progress.checkpoint == expected
        assert progress.outstanding_ahead == len([i for i in settled if i > expected])
    assert progress.checkpoint == start + 50
    assert progress.outstanding_ahead == 0


@pytest.mark.parametrize("seed", range(10))
def test_progress_keeps_exactly_the_settled_ranges_beyond_the_checkpoint(seed: int) -> None:
    """What a restart skips is exactly what was settled: as compact ranges, in one run of
    settle_all per request, and the same after a round trip through a new SettledRecords."""
    rng = random.Random(seed)
    start = rng.randint(0, 5)
    order = list(range(start, start + 300))
    cuts = sorted({0, 300, *rng.sample(range(1, 300), 30)})
    requests = [order[a:b] for a, b in itertools.pairwise(cuts)]
    rng.shuffle(requests)
    progress = SettledRecords(start)
    settled: set[int] = set()
    for request in requests:
        if rng.random() < 0.2:
            rng.shuffle(request)  # mostly in order, not always
        progress.settle_all(request)
        settled.update(request)
        ahead = progress.ahead
        covered = {i for s, e in ahead for i in range(s, e)}
        assert covered == {i for i in settled if i >= progress.checkpoint}
        assert all(e < s2 for (_, e), (s2, _) in itertools.pairwise(ahead))  # apart
        assert all(s > progress.checkpoint for s, _ in ahead)
        again = SettledRecords(progress.checkpoint, ahead)
        assert (again.checkpoint, again.ahead) == (progress.checkpoint, ahead)
    assert (progress.checkpoint, progress.ahead) == (start + 300, [])


@pytest.mark.parametrize(
    ("first", "count", "settled", "kept"),
    [
        (0, 5, [], None),
        (0, 5, [(10, 20)], None),
        (0, 5, [(1, 3)], [0, 3, 4]),
        (10, 5, [(0, 11), (13, 14), (20, 30)], [1, 2, 4]),
        (10, 3, [(5, 30)], []),
    ],
)
def test_keep_unsettled(
    first: int, count: int, settled: list[tuple[int, int]], kept: list[int] | None
) -> None:
    assert keep_unsettled(first, count, settled) == kept


@pytest.mark.parametrize(
    "rows",
    [
        [["a", "b"], ["", "c", ""], ["d"]],
        [["a", "b\x1fc"], ["d", "e"]],  # a cell holding the separator: kept as a list
        [["\x1f"], ["x", ""]],
        [],
    ],
)
def test_pack_rows_is_pack_cells_of_each_row(rows: list[list[str]]) -> None:
    packed = pack_rows(rows)
    assert packed == [pack_cells(row) for row in rows]
    for row, one in zip(rows, packed, strict=True):
        item = Item(None, 0, 2, "u", b"{}", one)
        assert item.cells == row


def test_unsettled_lists_the_records_neither_before_the_checkpoint_nor_ahead() -> None:
    progress = SettledRecords(2, [(5, 7)])
    progress.settle_all([2, 9])
    assert progress.unsettled(range(12)) == [3, 4, 7, 8, 10, 11]
