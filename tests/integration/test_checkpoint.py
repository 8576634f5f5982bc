"""The checkpoint, in-process against the fake Braze: it only ever covers rows Braze
acknowledged or that were rejected (through the mapping process and its read-ahead), and a
restart skips exactly the settled rows it records, whatever their order."""

from __future__ import annotations

import asyncio
import csv
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from rpi_braze_sync.delta import user_key
from rpi_braze_sync.deltastore import DeltaStoreError
from rpi_braze_sync.inspection import inspect_file
from rpi_braze_sync.metrics import Metrics
from rpi_braze_sync.pgjournal import PgJournal
from rpi_braze_sync.settings import FormatSettings
from rpi_braze_sync.settlement import Settlement
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from rpi_braze_sync.statewriter import StateWriter
from rpi_braze_sync.statewrites import StateWrites
from tests.e2e.conftest import UPSERT, wait_until
from tests.fakebraze import FakeBraze
from tests.integration.test_pipeline import InProcess, daemon  # noqa: F401 - the fixture

ROWS = 4000
REJECTED_READING = len([i for i in range(ROWS) if i % 97 == 50])  # user(i) is empty


def csv_lines(process: InProcess, kind: str) -> list[int]:
    """The line numbers listed in the file's <kind>.csv (rejects, dropped) now."""
    files = [*process.state.glob(f"rejects/**/*.{kind}.csv")]
    with files[0].open() if files else open(os.devnull) as f:
        return [int(row["_line"]) for row in csv.DictReader(f)]


def user(index: int) -> str:
    """Record `index`'s external_id; every 97th is empty (rejected when read)."""
    return "" if index % 97 == 50 else f"u{index}"


def export_text(rows: int) -> bytes:
    lines = ["external_id,first_name,dob"]
    for i in range(rows):
        dob = "1990-02-31" if i % 31 == 7 else "1990-02-03"  # a bad date: a dropped field
        lines.append(f"{user(i)},N{i},{dob}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("mapping_process", [True, False], ids=["mapping-process", "in-process"])
async def test_every_checkpoint_covers_only_rows_braze_acknowledged_or_rejected(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
    mapping_process: bool,
) -> None:
    fake_braze.latency_s = 0.01
    fake_braze.slow_under_load(workers=3, service_s=0.004)
    fake_braze.minor_errors = {f"u{i}": "invalid" for i in range(3, ROWS, 211) if user(i)}
    daemon.changes["braze"]["batch_size"] = 25
    daemon.changes["performance"] = {"mapping_process": mapping_process}
    await daemon.start()
    assert daemon.daemon is not None
    journal = daemon.daemon.journal
    assert journal is not None
    written: list[tuple[int, list[tuple[int, int]], set[str]]] = []
    dropped_lines: list[tuple[list[int], int]] = []  # the dropped file's lines, the count
    checkpoint = journal.checkpoint

    rejected_lines: list[tuple[int, int]] = []  # the rejects file's rows, the count
    threads: set[str] = set()

    def spy(file_id: int, at: int, *counts: Any) -> None:
        threads.add(threading.current_thread().name)
        acknowledged = set(fake_braze.users())  # answered before this line could run
        written.append((at, list(counts[3] if len(counts) > 3 else ()), acknowledged))
        dropped_lines.append((csv_lines(daemon, "dropped"), counts[2]))
        rejected_lines.append((len(csv_lines(daemon, "rejects")), counts[1]))
        checkpoint(file_id, at, *counts)

    setattr(journal, "checkpoint", spy)  # noqa: B010 - a spy on the real journal
    daemon.drop("f.txt", export_text(ROWS))
    await wait_until(daemon.finished(1), timeout_s=60, what="the file")
    assert await daemon.stop() == 0
    assert len(written) > 20
    assert any(ahead for _, ahead, _ in written)  # ranges beyond the prefix were recorded
    for at, ahead, acknowledged in written:
        covered = [*range(at), *(i for start, end in ahead for i in range(start, end))]
        unacknowledged = [i for i in covered if user(i) and user(i) not in acknowledged]
        assert unacknowledged == []
    # A dropped field is listed (and counted) once its row is settled, never before: a row
    # sent again after a kill does not list its drops twice.
    for (_, _, acknowledged), (lines, count) in zip(written, dropped_lines, strict=True):
        rows = [line - 2 for line in lines]
        assert [i for i in rows if user(i) not in acknowledged] == []
        assert len(lines) == count
    assert written[-1][0] == ROWS
    # Every checkpoint is written by the state writer's thread, off the event loop, after
    # the rejected rows it counts are in the rejects file (statewriter.py: a checkpoint never
    # covers a reject that a kill would lose).
    assert threads == {"state-writer_0"}
    assert [on_disk for on_disk, _ in rejected_lines] == [count for _, count in rejected_lines]
    assert rejected_lines[-1][1] == REJECTED_READING + len(fake_braze.minor_errors)


async def test_a_restart_skips_the_rows_settled_beyond_the_checkpoint(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
) -> None:
    """As after a kill: the journal says rows 0-99 and 150-199 are settled. Only the others
    are sent, rejected or have their dropped fields written, and the counts add up."""
    rows = 300
    path = daemon.drop("f.txt", export_text(rows))
    rel = path.relative_to(daemon.exports).as_posix()
    inspection = inspect_file(path, FormatSettings())
    journal = SqliteJournal(journal_path(daemon.state, dry_run=False))
    journal.mark_initialized([])
    stat = path.stat()
    record = journal.record_complete(rel, UPSERT, stat.st_size, stat.st_mtime_ns)
    journal.start(record.id, inspection.sha256, inspection.size, inspection.mtime_ns)
    settled = [(0, 100), (150, 200)]
    sent_before = sum(1 for s, e in settled for i in range(s, e) if user(i))
    rejected_before = sum(1 for s, e in settled for i in range(s, e) if not user(i))
    dropped_before = sum(1 for s, e in settled for i in range(s, e) if i % 31 == 7 and user(i))
    journal.checkpoint(record.id, 100, sent_before, rejected_before, dropped_before, settled[1:])
    journal.close()
    rejects = daemon.state / "rejects" / rel
    rejects.parent.mkdir(parents=True)
    rejects.with_name("f.txt.dropped.csv").write_text("_line,field,value,reason\nearlier\n")

    await daemon.start()
    await wait_until(daemon.finished(1), what="the file")
    assert await daemon.stop() == 0
    remaining = [i for i in range(rows) if not 0 <= i < 100 and not 150 <= i < 200]
    assert sorted(fake_braze.users()) == sorted(user(i) for i in remaining if user(i))
    done = daemon.records()["f.txt"]
    assert (done.state, done.checkpoint, done.ahead) == ("done", rows, [])
    assert done.rows_sent == sum(1 for i in range(rows) if user(i))
    assert done.rows_rejected == sum(1 for i in range(rows) if not user(i))
    assert done.fields_dropped == sum(1 for i in range(rows) if i % 31 == 7 and user(i))
    with rejects.with_name("f.txt.dropped.csv").open() as handle:
        lines = [int(row[0]) - 2 for row in csv.reader(handle) if row[0].isdigit()]
    assert lines == [i for i in remaining if i % 31 == 7 and user(i)]  # none written twice
    with rejects.with_name("f.txt.rejects.csv").open() as handle:
        rejected = [int(row[-2]) - 2 for row in list(csv.reader(handle))[1:]]
    assert rejected == [i for i in remaining if not user(i)]


async def test_a_slow_state_directory_holds_neither_sending_nor_the_order(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
) -> None:
    """Checkpoints that take 50 ms each: requests go on meanwhile (the writer is off the
    event loop, which serves the fake Braze too), checkpoints of loop turns wait for one
    another instead of queueing, and each is written after the rejects it counts."""
    fake_braze.latency_s = 0.005
    fake_braze.minor_errors = {f"u{i}": "invalid" for i in range(3, ROWS, 211) if user(i)}
    daemon.changes["braze"]["batch_size"] = 25
    await daemon.start()
    assert daemon.daemon is not None
    journal = daemon.daemon.journal
    assert journal is not None
    checkpoint = journal.checkpoint
    arrived_meanwhile: list[int] = []
    rejected_lines: list[tuple[int, int]] = []

    def slow(file_id: int, at: int, *counts: Any) -> None:
        before = fake_braze.arrived_rows
        time.sleep(0.05)  # a disk that takes its time
        arrived_meanwhile.append(fake_braze.arrived_rows - before)
        rejected_lines.append((len(csv_lines(daemon, "rejects")), counts[1]))
        checkpoint(file_id, at, *counts)

    setattr(journal, "checkpoint", slow)  # noqa: B010 - a spy on the real journal
    daemon.drop("f.txt", export_text(ROWS))
    await wait_until(daemon.finished(1), timeout_s=90, what="the file")
    assert await daemon.stop() == 0
    # (Written on the loop, nothing could arrive during one: the fake Braze shares the loop.)
    assert any(arrived_meanwhile)
    assert len(arrived_meanwhile) < ROWS // 25  # fewer checkpoints than requests
    assert [on_disk for on_disk, _ in rejected_lines] == [count for _, count in rejected_lines]
    (record,) = daemon.records().values()
    assert (record.state, record.checkpoint) == ("done", ROWS)
    assert record.rows_rejected == REJECTED_READING + len(fake_braze.minor_errors)
    assert record.rows_sent == ROWS - record.rows_rejected


async def test_a_pairs_journal_stores_the_rejects_off_the_loop_before_their_checkpoint(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
    pg_url: str,
) -> None:
    """A pair's journal (PostgreSQL) keeps every rejected row too: stored by the state
    writer's thread, on a connection of their own, each before the checkpoint that counts it,
    and read back there at the end; the journal's own connection is used by one thread at a
    time (the loop's reads, the state writer's state changes: its lock held)."""
    fake_braze.latency_s = 0.005
    fake_braze.minor_errors = {f"u{i}": "invalid" for i in range(3, ROWS, 211) if user(i)}
    daemon.changes["braze"]["batch_size"] = 25
    daemon.changes["journal"] = {"url": pg_url}
    await daemon.start()  # (the watcher runs once the lease is held)
    assert daemon.daemon is not None
    journal = daemon.daemon.journal
    assert isinstance(journal, PgJournal)
    assert journal.epoch is not None
    store, read, checkpoint, connection = (
        journal.store_rejects, journal.rejects_of, journal.checkpoint, journal._connection,
    )  # fmt: skip
    stored: set[int] = set()
    threads: dict[str, set[str]] = {"store": set(), "read": set(), "connection": set()}
    counted: list[tuple[int, int]] = []  # rows stored, rows the checkpoint counts rejected

    def store_spy(file_id: int, rows: Sequence[tuple[int, list[str], str]]) -> None:
        threads["store"].add(threading.current_thread().name)
        store(file_id, rows)
        stored.update(line for line, _, _ in rows)

    def read_spy(file_id: int) -> list[tuple[int, list[str], str]]:
        threads["read"].add(threading.current_thread().name)
        return read(file_id)

    def checkpoint_spy(file_id: int, at: int, *counts: Any) -> None:
        counted.append((len(stored), counts[1]))
        checkpoint(file_id, at, *counts)

    unlocked: list[str] = []  # threads that used the connection without its lock

    def connection_spy() -> Any:
        threads["connection"].add(threading.current_thread().name)
        if not getattr(journal._lock, "_is_owned")():  # noqa: B009 - RLock's own check
            unlocked.append(threading.current_thread().name)
        return connection()

    for name, spy in [("store_rejects", store_spy), ("rejects_of", read_spy),
                      ("checkpoint", checkpoint_spy), ("_connection", connection_spy)]:  # fmt: skip
        setattr(journal, name, spy)  # spies on the real journal
    daemon.drop("f.txt", export_text(ROWS))
    await wait_until(daemon.finished(1), timeout_s=90, what="the file")
    (record,) = journal.all()
    assert await daemon.stop() == 0
    rejected = REJECTED_READING + len(fake_braze.minor_errors)
    assert (record.state, record.checkpoint, record.rows_rejected) == ("done", ROWS, rejected)
    assert threads == {"store": {"state-writer_0"}, "read": {"state-writer_0"},
                       "connection": {"MainThread", "state-writer_0"}}  # fmt: skip
    assert unlocked == []
    assert len(counted) > 5
    assert all(on_disk >= count for on_disk, count in counted)
    assert len(stored) == rejected
    assert len(csv_lines(daemon, "rejects")) == rejected  # (rewritten from the database)


async def test_a_file_jobs_helper_task_that_fails_is_logged(
    daemon: InProcess,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The job's once-a-second checkpoints run as a task nothing awaits: a bug there is
    logged with its traceback (the loop turns' checkpoints still cover the file)."""

    async def broken(self: Settlement, interval_s: float) -> None:
        raise RuntimeError("a bug in the durable checkpoints")

    monkeypatch.setattr(Settlement, "checkpoint_every", broken)
    await daemon.start()
    daemon.drop("f.txt", export_text(300))
    await wait_until(daemon.finished(1), what="the file")
    assert await daemon.stop() == 0
    (line,) = [r.getMessage() for r in caplog.records if "helper task" in r.getMessage()]
    assert line.endswith(".<locals>.broken failed")  # the coroutine's qualified name
    assert "a bug in the durable checkpoints" in caplog.text
    (record,) = daemon.records().values()
    assert (record.state, record.checkpoint) == ("done", 300)


@pytest.mark.parametrize("delta", [False, True], ids=["delta-off", "delta-on"])
async def test_rows_in_flight_and_acknowledged_unwritten_stay_within_the_places_allowed(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
    delta: bool,
) -> None:
    """What a kill would send again, at every moment: the rows inside Braze plus those it
    acknowledged that no written checkpoint covers and, with delta, whose values the store
    does not hold (written, a kill -9 finds them and skips those rows read again). With
    checkpoints 30 ms slow and Braze 5 ms away, it stays within batch_size x max_in_flight:
    a request's place is only given back once its rows' checkpoint is written, not when Braze
    answers (Slot); with delta, as soon as the store holds them (before their sync and
    checkpoint, which still wait for each other), but not when the store failed to write
    them (here one write in two: those users are forgotten instead)."""
    batch, in_flight, rows = 10, 4, 1500
    fake_braze.latency_s = 0.005
    fake_braze.minor_errors = {f"u{i}": "invalid" for i in range(3, rows, 61) if user(i)}
    daemon.changes["braze"].update({"batch_size": batch, "max_in_flight": in_flight})
    daemon.changes["delta"] = {"enabled": delta}
    await daemon.start()
    assert daemon.daemon is not None
    journal = daemon.daemon.journal
    assert journal is not None
    checkpoint = journal.checkpoint
    covered: frozenset[str] = frozenset()  # the users of the rows the last written one covers
    stored: set[bytes] = set()  # the users whose values the store holds (delta)
    exposed: list[int] = []
    early = 0  # writes of users no checkpoint covered yet (the store ran ahead)
    writes = 0

    def slow(
        file_id: int,
        at: int,
        sent: int,
        rejected: int,
        dropped: int,
        ahead: Sequence[tuple[int, int]] = (),
        points: tuple[int, int] | None = None,
        written: Callable[[], None] | None = None,
    ) -> None:
        nonlocal covered
        indexes = [*range(at), *(i for start, end in ahead for i in range(start, end))]
        users = frozenset(user(i) for i in indexes)

        time.sleep(0.03)  # a disk that takes its time
        checkpoint(file_id, at, sent, rejected, dropped, ahead, points)
        covered = users  # the journal holds it: the sender is told right after
        if written is not None:
            written()

    if delta:
        assert daemon.daemon.delta is not None
        store = daemon.daemon.delta.store
        remember = store.remember

        def failing_store(records: Sequence[tuple[bytes, bytes]], marked: bool = False) -> None:
            nonlocal early, writes
            records = list(records)
            writes += 1
            if writes % 2 == 0:
                raise DeltaStoreError("a write that fails")
            remember(records, marked)
            keys = {key for key, _ in records}
            early += bool(keys - {user_key(u) for u in covered})
            stored.update(keys)  # (before the loop hears of it: a kill now skips them)

        setattr(store, "remember", failing_store)  # noqa: B010 - a spy on the real store

    def arrived(_: object) -> None:
        unsafe = [u for u in fake_braze.users() if u not in covered]
        acknowledged = sum(1 for u in unsafe if user_key(u) not in stored)
        exposed.append(fake_braze.in_flight_rows + acknowledged)

    setattr(journal, "checkpoint", slow)  # noqa: B010 - a spy on the real journal
    fake_braze.on_arrival = arrived
    daemon.drop("f.txt", export_text(rows))
    await wait_until(daemon.finished(1), timeout_s=60, what="the file")
    assert await daemon.stop() == 0
    assert len(exposed) >= (rows - rows // 97) // batch  # every request, resends too
    assert max(exposed) <= batch * in_flight, sorted(exposed)[-10:]
    (record,) = daemon.records().values()
    assert (record.state, record.checkpoint) == ("done", rows)
    assert (record.points_sent is not None) == delta  # (delta counted its data points)
    assert (early > 0) == delta  # (the store's writes ran ahead of the checkpoints)


async def test_a_checkpoint_whose_waiter_is_cancelled_is_written_without_an_error(
    tmp_path: Path,
) -> None:
    """write_last's task cancelled while the state writer writes its checkpoint (the daemon
    stopping): the checkpoint is still written, and no callback fails on the cancelled future
    (it logged a traceback at a SIGTERM in test_hostile_share.py)."""
    journal = SqliteJournal(tmp_path / "j.sqlite")
    record = journal.record_complete("Braze Append/a.csv", "Braze Append", 1, 1)
    writer, writes = StateWriter(), StateWrites()
    settlement = Settlement(record, journal, writer, writes, Metrics(), "Braze Append")
    settlement.open_rejects(tmp_path / "rejects", "a.csv", ["external_id"])
    checkpoint = journal.checkpoint
    started = threading.Event()

    def slow(file_id: int, at: int, *counts: Any) -> None:
        started.set()
        time.sleep(0.2)
        checkpoint(file_id, at, *counts)

    setattr(journal, "checkpoint", slow)  # noqa: B010 - a spy on the real journal
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    settlement.reject(2, [""], "no id")
    settlement.settle([0, 1])
    assert await settlement.write_last()  # (and the loop turn's checkpoint before it)
    started.clear()
    settlement.reject(3, [""], "no id")  # rejects to write first: through the state writer
    waiter = asyncio.ensure_future(settlement.write_last())
    assert await asyncio.to_thread(started.wait, 5)
    waiter.cancel()
    await writer.write(lambda: None)  # the checkpoint written
    await asyncio.sleep(0.1)  # its callback run (two loop turns after the thread's)
    assert errors == []
    written = journal.get(record.id)  # the cancelled checkpoint's count of rejected rows
    assert (written.checkpoint, written.rows_rejected) == (2, 2)
    await settlement.close()
    await writer.close()
    journal.close()
