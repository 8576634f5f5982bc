"""The SQLite journal, on a real database file in tmp_path."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpi_braze_sync.errors import JournalError
from rpi_braze_sync.filestates import FileState
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite"


@pytest.fixture
def journal(db_path: Path) -> Iterator[SqliteJournal]:
    j = SqliteJournal(db_path)
    yield j
    j.close()


def set_completed_at(db_path: Path, file_id: int, when: float) -> None:
    """Another connection edits the file, as a wall clock stepped back would have."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("UPDATE files SET completed_at = ? WHERE id = ?", (when, file_id))
    finally:
        db.close()


def test_a_new_journal_is_empty_and_not_initialized(journal: SqliteJournal, db_path: Path) -> None:
    assert db_path.is_file()  # the parent folder was created
    assert journal.initialized is False
    assert journal.all() == []
    assert journal.queued() == []
    assert journal.latest_by_path() == {}


def test_mark_initialized_records_preexisting_files(journal: SqliteJournal) -> None:
    before = time.time()
    journal.mark_initialized(
        [("email/O1/W1/a.txt", "email", 120, 1_000), ("old/b.txt", None, 0, 2_000)]
    )
    after = time.time()
    assert journal.initialized is True
    rows = journal.all()
    assert [(r.rel_path, r.channel, r.size, r.mtime_ns, r.state) for r in rows] == [
        ("email/O1/W1/a.txt", "email", 120, 1_000, FileState.PREEXISTING),
        ("old/b.txt", None, 0, 2_000, FileState.PREEXISTING),
    ]
    for r in rows:
        assert before <= r.first_seen_at == r.updated_at <= after
        assert (r.completed_at, r.started_at, r.finished_at, r.sha256) == (None, None, None, None)
        assert (r.checkpoint, r.rows_sent, r.rows_rejected, r.fields_dropped) == (0, 0, 0, 0)
    assert journal.queued() == []  # pre-existing files are never sent


def test_mark_initialized_with_no_files(journal: SqliteJournal) -> None:
    journal.mark_initialized([])
    assert journal.initialized is True
    assert journal.all() == []


def test_a_second_mark_initialized_fails_and_writes_nothing(journal: SqliteJournal) -> None:
    journal.mark_initialized([("a.txt", "email", 1, 1)])
    with pytest.raises(JournalError, match="journal write failed"):
        journal.mark_initialized([("b.txt", "email", 2, 2), ("c.txt", "email", 3, 3)])
    assert [r.rel_path for r in journal.all()] == ["a.txt"]  # atomic: no partial insert
    assert journal.initialized is True


def test_lifecycle_round_trip(journal: SqliteJournal) -> None:
    before = time.time()
    record = journal.record_complete("email/O1/W1/a.txt", "email", 100, 5_000)
    assert record == journal.get(record.id)
    assert (record.rel_path, record.channel, record.size, record.mtime_ns, record.state) == (
        "email/O1/W1/a.txt",
        "email",
        100,
        5_000,
        FileState.COMPLETE,
    )
    assert record.completed_at is not None
    assert before <= record.first_seen_at <= record.completed_at <= time.time()
    assert (record.started_at, record.finished_at, record.sha256) == (None, None, None)

    journal.start(record.id, "ab" * 32, 150, 6_000)  # the file grew before it was read
    started = journal.get(record.id)
    assert (started.state, started.sha256, started.size, started.mtime_ns) == (
        FileState.SENDING,
        "ab" * 32,
        150,
        6_000,
    )
    assert started.started_at is not None
    assert started.started_at >= record.completed_at

    journal.checkpoint(record.id, 40, 37, 2, 5)
    progressed = journal.get(record.id)
    assert (
        progressed.checkpoint,
        progressed.rows_sent,
        progressed.rows_rejected,
        progressed.fields_dropped,
    ) == (40, 37, 2, 5)
    assert progressed.state == FileState.SENDING
    assert (progressed.points_sent, progressed.points_skipped) == (None, None)  # delta off
    journal.checkpoint(record.id, 40, 37, 2, 5, (), (148, 12))  # delta's data points
    assert (journal.get(record.id).points_sent, journal.get(record.id).points_skipped) == (148, 12)
    journal.restart_from(record.id, 0)  # another version: its counts start again
    assert journal.get(record.id).points_sent is None
    journal.checkpoint(record.id, 40, 37, 2, 5, (), (148, 12))

    journal.finish(record.id, FileState.DONE)
    done = journal.get(record.id)
    assert (done.state, done.reason, done.checkpoint, done.rows_sent) == (
        FileState.DONE,
        None,
        40,
        37,
    )
    assert done.finished_at is not None
    assert done.finished_at >= started.started_at
    assert done.updated_at == done.finished_at


def test_finish_with_a_reason(journal: SqliteJournal) -> None:
    record = journal.record_complete("a.txt", "email", 1, 1)
    journal.finish(record.id, FileState.FAILED, "bad header: no external_id column")
    failed = journal.get(record.id)
    assert (failed.state, failed.reason) == (FileState.FAILED, "bad header: no external_id column")


def test_a_restart_keeps_the_first_started_at(journal: SqliteJournal, db_path: Path) -> None:
    record = journal.record_complete("a.txt", "email", 1, 1)
    journal.start(record.id, "00" * 32, 1, 1)
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("UPDATE files SET started_at = 1000.0 WHERE id = ?", (record.id,))
    db.close()
    journal.start(record.id, "11" * 32, 2, 2)
    again = journal.get(record.id)
    assert (again.started_at, again.sha256, again.size) == (1000.0, "11" * 32, 2)


def test_get_an_unknown_record(journal: SqliteJournal) -> None:
    with pytest.raises(JournalError, match="no journal record 42"):
        journal.get(42)


def test_queued_holds_complete_and_sending_in_completion_order(
    journal: SqliteJournal, db_path: Path
) -> None:
    ids = {
        name: journal.record_complete(f"email/O/W/{name}.txt", "email", 1, 1).id
        for name in ("a", "b", "c", "d", "e", "f")
    }
    journal.mark_initialized([("email/O/W/old.txt", "email", 1, 1)])
    journal.start(ids["b"], "00" * 32, 1, 1)
    journal.finish(ids["c"], FileState.DONE)
    journal.finish(ids["d"], FileState.FAILED, "unreadable")
    journal.finish(ids["e"], FileState.VANISHED)
    # completion times out of id order (the wall clock was stepped back)
    set_completed_at(db_path, ids["a"], 300.0)
    set_completed_at(db_path, ids["b"], 100.0)
    set_completed_at(db_path, ids["f"], 200.0)
    queued = journal.queued()
    assert [r.rel_path for r in queued] == ["email/O/W/b.txt", "email/O/W/f.txt", "email/O/W/a.txt"]
    assert [r.state for r in queued] == [FileState.SENDING, FileState.COMPLETE, FileState.COMPLETE]


def test_queued_ties_on_completion_keep_id_order(journal: SqliteJournal, db_path: Path) -> None:
    ids = [journal.record_complete(f"{n}.txt", "email", 1, 1).id for n in range(4)]
    for file_id in ids:
        set_completed_at(db_path, file_id, 500.0)
    assert [r.id for r in journal.queued()] == ids


def test_latest_by_path_returns_the_newest_record_per_path(journal: SqliteJournal) -> None:
    journal.mark_initialized([("a.txt", "email", 1, 1), ("b.txt", "email", 2, 2)])
    first_a = journal.record_complete("a.txt", "email", 10, 10)
    journal.finish(first_a.id, FileState.DONE)
    second_a = journal.record_complete("a.txt", "email", 20, 20)
    c = journal.record_complete("c.txt", "sms", 3, 3)
    latest = journal.latest_by_path()
    assert sorted(latest) == ["a.txt", "b.txt", "c.txt"]
    assert latest["a.txt"] == journal.get(second_a.id)
    assert (latest["a.txt"].size, latest["a.txt"].state) == (20, FileState.COMPLETE)
    assert (latest["b.txt"].size, latest["b.txt"].state) == (2, FileState.PREEXISTING)
    assert latest["c.txt"] == journal.get(c.id)


def test_reopening_keeps_everything(db_path: Path) -> None:
    journal = SqliteJournal(db_path)
    journal.mark_initialized([("old.txt", None, 5, 5)])
    a = journal.record_complete("a.txt", "email", 10, 10)
    journal.start(a.id, "cd" * 32, 10, 10)
    journal.checkpoint(a.id, 7, 6, 1, 0)
    b = journal.record_complete("b.txt", "sms", 20, 20)
    journal.finish(b.id, FileState.FAILED, "gone bad")
    snapshot = journal.all()
    queued = journal.queued()
    journal.close()

    reopened = SqliteJournal(db_path)
    try:
        assert reopened.initialized is True
        assert reopened.all() == snapshot
        assert reopened.queued() == queued
        assert [r.rel_path for r in queued] == ["a.txt"]
        assert reopened.get(a.id).checkpoint == 7
        c = reopened.record_complete("c.txt", "email", 1, 1)
        assert c.id > b.id  # ids are never reused
    finally:
        reopened.close()


def test_a_journal_that_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot open the journal"):
        SqliteJournal(tmp_path)  # a directory, not a database file


@pytest.mark.parametrize(
    ("dry_run", "name"), [(False, "journal.sqlite"), (True, "journal-dry-run.sqlite")]
)
def test_journal_path(tmp_path: Path, dry_run: bool, name: str) -> None:
    assert journal_path(tmp_path, dry_run) == tmp_path / name


def test_start_records_the_files_rows(journal: SqliteJournal) -> None:
    record = journal.record_complete("C/o/w/f.txt", "C", 10, 1)
    assert record.rows_total is None  # not inspected yet
    journal.start(record.id, "ab" * 32, 10, 1, 1234)
    assert journal.get(record.id).rows_total == 1234


def test_a_tool_reads_a_journal_an_older_daemon_wrote(db_path: Path) -> None:
    """`status` opens it read-only, so it cannot add the columns added since: they read None."""
    SqliteJournal(db_path).close()
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("ALTER TABLE files DROP COLUMN rows_total")
    db.execute(
        "INSERT INTO files (rel_path, size, mtime_ns, state, first_seen_at, updated_at)"
        " VALUES ('C/o/w/f.txt', 1, 1, 'done', 0, 0)"
    )
    db.close()
    old = SqliteJournal(db_path, read_only=True)
    try:
        (record,) = old.all()
    finally:
        old.close()
    assert (record.rel_path, record.rows_total) == ("C/o/w/f.txt", None)


def test_a_name_that_is_not_utf8_round_trips_byte_for_byte(db_path: Path) -> None:
    """os.fsdecode keeps such bytes as surrogates, which SQLite text cannot hold: the name is
    stored as its bytes and read back as the same str, at every step and after a restart."""
    import os

    odd = "Braze Append/O/1/" + os.fsdecode(b"RPI_\xff\xfe.txt")
    journal = SqliteJournal(db_path)
    journal.mark_initialized([(odd + ".old", "Braze Append", 1, 1)])
    journal.record_seen(odd, "Braze Append", 10, 20)
    journal.note(journal.seen_id(odd) or 0, "cannot be opened: Permission denied (waiting)")
    record = journal.record_complete(odd, "Braze Append", 11, 21)
    assert record.rel_path == odd
    journal.start(record.id, "f" * 64, 11, 21)
    journal.finish(record.id, FileState.DONE)
    assert journal.previous_done(odd, record.id + 1) is not None
    journal.close()
    reopened = SqliteJournal(db_path)
    try:
        paths = set(reopened.latest_by_path())
        assert paths == {odd, odd + ".old"}
        assert reopened.latest(odd) is not None
        assert reopened.sweep({odd, odd + ".old"}, 0) == 0  # still present: kept, not gone
        assert all(r.gone_at is None for r in reopened.all())
    finally:
        reopened.close()
    stored = sqlite3.connect(db_path).execute("SELECT rel_path FROM files").fetchall()
    assert (os.fsencode(odd),) in stored
