"""deltafile.DeltaFile with a dict for a store: the first run's rows, kept per chunk and answered
in bulk, are remembered, counted and released exactly as any row compared one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from rpi_braze_sync.batching import Item
from rpi_braze_sync.chunks import ChunkData
from rpi_braze_sync.delta import Merge, Remember, build_record, compare_row, user_key
from rpi_braze_sync.deltabody import rebuild, summary
from rpi_braze_sync.deltafile import DeltaFile
from rpi_braze_sync.deltaflight import InFlight
from rpi_braze_sync.deltarecord import header, points_of, summarize
from rpi_braze_sync.deltastats import FilePoints
from rpi_braze_sync.metrics import Metrics

NOW = 1_800_000_000


class Run:
    def __init__(self) -> None:
        self.inflight = InFlight()
        self.generation = 0
        self.max_age_s = 30 * 86400
        self.metrics = Metrics()
        self.store: dict[bytes, bytes] = {}
        self.written: list[list[tuple[bytes, bytes]]] = []
        self.lookups: list[list[bytes]] = []
        self.clock: Callable[[], float] = lambda: NOW

    async def lookup(self, keys: list[bytes]) -> list[bytes | None]:
        self.lookups.append(keys)
        return [self.store.get(key) for key in keys]

    def remember(
        self, records: list[tuple[bytes, bytes]], marked: bool = False
    ) -> asyncio.Future[None]:
        self.written.append(records)
        self.store.update(records)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def file_finished(self, entry: FilePoints) -> None:
        pass


def chunk(users: list[str], start: int = 0, **extra: object) -> ChunkData:
    bodies = [
        orjson.dumps({"external_id": u, "first_name": f"Ann {u}", "country": "FR", **extra})
        for u in users
    ]
    indexes = list(range(start, start + len(users)))
    found = ChunkData(indexes, indexes, users, bodies, [""] * len(users), [], {}, False, 0.0, 0)
    found.deltas = [summary(body) for body in bodies]
    return found


def items(sent: ChunkData) -> list[Item]:
    return sent.items_for(None)


async def test_first_run_rows_are_remembered_as_their_summaries_timed() -> None:
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    sent = chunk(["a", "b", "c"])
    summaries = list(sent.deltas or ())
    assert await delta.filter(sent) == []
    assert len(run.inflight) == 3
    written = delta.acknowledged(items(sent)[:2])
    assert written is not None
    await written
    expected = [
        (user_key(u), build_record(Remember(Merge.REBUILD, s), None, NOW))
        for u, s in zip("ab", summaries, strict=False)
    ]
    assert run.written == [expected]
    assert delta.points_sent == points_of(summaries[0]) + points_of(summaries[1]) > 0
    assert len(run.inflight) == 1  # c, still in flight
    delta.abandoned(items(sent)[2:])
    assert len(run.inflight) == 0
    assert len(run.written) == 1  # nothing remembered for an abandoned row


async def test_first_run_rows_answered_with_other_rows_are_answered_one_by_one() -> None:
    """A batch mixing a first-run row with a row compared one by one (its user busy)."""
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    first = chunk(["a", "b"])
    assert await delta.filter(first) == []
    again = chunk(["a"], start=2, country="DE")  # a is in flight: sent whole, merged later
    assert await delta.filter(again) == []
    written = delta.acknowledged([*items(first), *items(again)])
    assert written is not None
    await written
    assert [key for key, _ in run.written[0]] == [user_key("a"), user_key("b"), user_key("a")]
    assert len(run.inflight) == 0
    assert await delta.filter(chunk(["a"], start=3, country="DE")) == [3]  # a's merged record
    assert await delta.filter(chunk(["b"], start=4)) == [4]  # b's first-run record
    assert delta.rows_unchanged == 2


async def test_close_releases_first_run_rows_in_flight() -> None:
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    assert await delta.filter(chunk(["a", "b"])) == []
    delta.close()
    assert len(run.inflight) == 0
    assert await delta.filter(chunk(["a", "b"], start=2)) == []  # nothing known: sent again


async def test_a_chunk_looked_up_ahead_sees_what_is_written_before_it_is_compared() -> None:
    """The pipeline starts the next chunk's lookup while this one's rows are sent: a row of
    its user acknowledged meanwhile (its record written after the read) is what it is
    compared with, and a lookup never compared is dropped when the file ends."""
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    first = chunk(["a", "b"])
    assert await delta.filter(first) == []
    ahead = chunk(["a"], start=2)  # a again, unchanged
    delta.look_up(ahead)
    await asyncio.sleep(0)  # read: nothing known of a yet
    written = delta.acknowledged(items(first))
    assert written is not None
    await written
    reads = len(run.lookups)
    assert await delta.filter(ahead) == [2]  # compared with a's record written since
    assert len(run.lookups) == reads  # the lookup started ahead, not another
    delta.look_up(chunk(["c"], start=3))
    delta.close()  # the file ended before that chunk was compared
    assert len(run.inflight) == 0
    assert not run.inflight._lookups


async def remembered_first_run(run: Run, users: list[str]) -> None:
    """The users' first export (an offer and execution id 5501 added), acknowledged."""
    first = chunk(users, rpi_offers={"add": ["Spring"]}, rpi_channel_exec_ids={"add": ["5501"]})
    first_file = DeltaFile(run, "c", "upsert")
    assert await first_file.filter(first) == []
    remembered = first_file.acknowledged(items(first))
    assert remembered is not None
    await remembered


async def test_a_new_execution_id_run_is_the_general_paths() -> None:
    """The daily re-export (each row's only new value its last added, deltanewest.py), mixed
    with a row whose field changed: bodies sent, points and records written are those of
    compare_row, arrays_only/rebuild and build_record."""
    run = Run()
    users = ["a", "b", "c", "d"]
    await remembered_first_run(run, users)
    before = dict(run.store)
    assert len(before) == 4
    again = chunk(users, rpi_offers={"add": ["Spring"]}, rpi_channel_exec_ids={"add": ["5502"]})
    bodies = list(again.bodies)
    bodies[2] = orjson.dumps(orjson.loads(bodies[2]) | {"first_name": "Changed"})
    again.bodies = list(bodies)
    again.deltas = [summary(body) for body in bodies]
    rows = list(again.deltas)
    # the general path's answers, row by row
    expected_bodies: list[bytes] = []
    expected_records: list[tuple[bytes, bytes | None]] = []
    sent_points = skipped_points = 0
    for user, body, row in zip(users, bodies, rows, strict=True):
        record = before.get(user_key(user))
        decision = compare_row(row, record, NOW, run.max_age_s, "upsert")
        obj = orjson.loads(body)
        expected_bodies.append(rebuild(obj, decision.skipped_fields, decision.skipped_adds))
        assert decision.remember is not None
        expected_records.append((user_key(user), build_record(decision.remember, record, NOW)))
        sent_points += decision.points_sent
        skipped_points += decision.points_skipped
    delta = DeltaFile(run, "c", "upsert")
    assert await delta.filter(again) == []
    assert again.bodies == expected_bodies
    assert b"5502" in again.bodies[0]
    assert b"Spring" not in again.bodies[0]
    run.written.clear()
    written = delta.acknowledged(items(again))
    assert written is not None
    await written
    assert run.written == [expected_records]
    assert (delta.points_sent, delta.points_skipped) == (sent_points, skipped_points) == (5, 11)


async def test_points_left_out_of_rows_sent_are_counted_once_acknowledged() -> None:
    """A row sent with values left out (newest-add, some fields held) counts them when Braze
    acknowledges it, not when it is compared: the checkpoint (points()) of rows dropped
    unsent holds none of them, so the try after reads them again and counts them once."""
    run = Run()
    users = ["a", "b", "c", "d"]
    await remembered_first_run(run, users)

    def again() -> ChunkData:
        sent = chunk(users, rpi_offers={"add": ["Spring"]}, rpi_channel_exec_ids={"add": ["5502"]})
        body = orjson.loads(sent.bodies[2]) | {"first_name": "Changed"}  # some fields held
        sent.bodies[2] = orjson.dumps(body)
        sent.deltas = [summary(b) for b in sent.bodies]
        return sent

    def skipped() -> float | None:
        labels = {"channel": "c", "outcome": "skipped"}
        return run.metrics.registry.get_sample_value("rpi_braze_sync_data_points_total", labels)

    dropped = DeltaFile(run, "c", "upsert")
    sent = again()
    assert await dropped.filter(sent) == []
    assert dropped.points() == (0, 0)  # nothing answered yet
    dropped.abandoned(items(sent))  # never sent (the job dropped), or rejected
    dropped.close()
    assert dropped.points() == (0, 0)
    assert not skipped()

    retried = DeltaFile(run, "c", "upsert", points=dropped.points())  # from its checkpoint
    sent = again()
    assert await retried.filter(sent) == []
    written = retried.acknowledged(items(sent))
    assert written is not None
    await written
    assert retried.points() == (5, 11)  # as test_a_new_execution_id_run_is_the_general_paths
    assert skipped() == 11


async def test_a_row_whose_paths_collide_forgets_the_users_older_record() -> None:
    """Sent whole and never remembered (COLLIDES): were the user's older record kept, a later
    row going back to its values would be skipped, while Braze holds the colliding row's."""
    run = Run()
    delta = DeltaFile(run, "c", "upsert")
    first = chunk(["a"])
    assert await delta.filter(first) == []
    await acknowledged(delta, first)
    assert header(run.store[user_key("a")]) is not None
    colliding = chunk(["a"], start=1, city="Paris")
    colliding.deltas = [summarize(["city", "city"], [b"1", b"2"], [], [], bytes(8))]
    assert await delta.filter(colliding) == []  # sent whole
    await acknowledged(delta, colliding)
    assert header(run.store[user_key("a")]) is None
    assert await delta.filter(chunk(["a"], start=2)) == []  # the first row's values: sent


async def acknowledged(delta: DeltaFile, sent: ChunkData) -> None:
    written = delta.acknowledged(items(sent))
    assert written is not None
    await written
