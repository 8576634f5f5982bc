"""The PostgreSQL journal and the lease on a real server (a database per test): versioned
migrations, the records, fencing by epoch, rejects kept once, and two lease keepers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rpi_braze_sync.braze import HttpTransport, Reply
from rpi_braze_sync.config import LoadedConfig, load_config
from rpi_braze_sync.errors import ConfigError, JournalError, LeaseLostError, TransportError
from rpi_braze_sync.filestates import FileState
from rpi_braze_sync.leader import FencedTransport, LeaseKeeper
from rpi_braze_sync.lease import Role
from rpi_braze_sync.metrics import Metrics
from rpi_braze_sync.pair import PairState
from rpi_braze_sync.pgjournal import PgJournal
from rpi_braze_sync.pgschema import LATEST
from rpi_braze_sync.secret import Secret
from rpi_braze_sync.settlement import Settlement
from rpi_braze_sync.statewriter import StateWriter
from rpi_braze_sync.statewrites import StateWrites
from tests.e2e.conftest import write_config
from tests.fakebraze import API_KEY, FakeBraze
from tests.integration.test_pipeline import InProcess, daemon  # noqa: F401 - the fixture

WEIRD = "Braze Append/caf\udce9.csv"  # a name that is not UTF-8 (os.fsdecode's surrogate)


def config_for(tmp_path: Path, url: str, lease_s: float = 15, **journal: str) -> LoadedConfig:
    path = write_config(
        tmp_path / "config.yaml",
        {"journal": {"url": url, **journal}, "ha": {"lease_seconds": lease_s},
         "braze": {"dry_run": False}, "state_directory": str(tmp_path / "state")},
    )  # fmt: skip
    return load_config(path, env={"BRAZE_API_KEY": API_KEY})


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def take_lease(url: str) -> int:
    """What another daemon's acquisition does to the lease row."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("UPDATE ha_lease SET epoch = epoch + 1 RETURNING epoch").fetchone()
        assert row is not None
        return int(row[0])


def test_migrations_are_versioned_applied_once_and_a_newer_schema_is_refused(
    tmp_path: Path, pg_url: str
) -> None:
    config = config_for(tmp_path, pg_url)
    PgJournal(config).close()
    assert versions(pg_url) == list(range(1, LATEST + 1))
    PgJournal(config).close()  # a second start applies nothing again
    assert versions(pg_url) == list(range(1, LATEST + 1))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 'from the future')", (LATEST + 1,))
    with pytest.raises(JournalError, match="newer than this daemon"):
        PgJournal(config)


def test_a_file_from_seen_to_done_with_a_name_that_is_not_utf8(tmp_path: Path, pg_url: str) -> None:
    journal = PgJournal(config_for(tmp_path, pg_url))
    journal.epoch = take_lease(pg_url)
    file_id = journal.record_seen(WEIRD, "Braze Append", 10, 1)
    assert journal.seen_id(WEIRD) == file_id
    record = journal.record_complete(WEIRD, "Braze Append", 20, 2, '{"call": 1}')
    assert (record.id, record.state, record.size, record.rpi_call) == (
        file_id,
        "complete",
        20,
        '{"call": 1}',
    )
    journal.start(file_id, "abc", 20, 2, 5)
    journal.checkpoint(file_id, 3, 2, 1, 0, [(4, 5)], (9, 4))  # written by a thread of its own
    journal.flush()
    got = journal.get(file_id)
    assert (got.state, got.checkpoint, got.rows_sent, got.ahead) == (
        FileState.SENDING,
        3,
        2,
        [(4, 5)],
    )
    assert (got.points_sent, got.points_skipped) == (9, 4)  # delta's, for the other daemon
    assert journal.queued() == [got]
    journal.finish(file_id, FileState.DONE)
    assert journal.latest_by_path()[WEIRD].state == FileState.DONE
    assert journal.previous_done(WEIRD, file_id + 1) == journal.get(file_id)
    assert journal.store_rpi_call('{"a": 1}')
    assert not journal.store_rpi_call('{"a": 1}')
    assert [body for _, body in journal.rpi_calls_since(0)] == ['{"a": 1}']
    journal.close()


def test_writes_are_fenced_by_the_epoch(tmp_path: Path, pg_url: str) -> None:
    config = config_for(tmp_path, pg_url)
    old, new = PgJournal(config), PgJournal(config)
    old.epoch = take_lease(pg_url)
    file_id = old.record_complete("Braze Append/a.csv", "Braze Append", 1, 1).id
    old.checkpoint(file_id, 5, 5, 0, 0)
    old.flush()
    new.epoch = take_lease(pg_url)  # the standby took over
    old.checkpoint(file_id, 9, 9, 0, 0)  # handed to the writer thread, which is refused
    with pytest.raises(LeaseLostError, match="another daemon leads"):
        old.flush()
    with pytest.raises(LeaseLostError):
        old.finish(file_id, FileState.DONE)
    with pytest.raises(LeaseLostError):
        old.record_seen("Braze Append/b.csv", "Braze Append", 1, 1)
    assert new.get(file_id).checkpoint == 5
    assert new.get(file_id).state == "complete"
    new.checkpoint(file_id, 7, 7, 0, 0)
    new.flush()
    assert new.get(file_id).checkpoint == 7
    standby = PgJournal(config)  # no lease: reads, RPI calls and retries only
    with pytest.raises(LeaseLostError, match="does not hold the lease"):
        standby.checkpoint(file_id, 8, 8, 0, 0)
    for journal in (old, new, standby):
        journal.close()


def test_rejects_from_two_daemons_are_kept_once_each(tmp_path: Path, pg_url: str) -> None:
    config = config_for(tmp_path, pg_url)
    old, new = PgJournal(config), PgJournal(config)
    old.epoch = take_lease(pg_url)
    file_id = old.record_complete("Braze Append/a.csv", "Braze Append", 1, 1).id
    old.store_rejects(file_id, [(2, ["x", "y"], "bad email"), (5, ["z"], "no id")])
    new.epoch = take_lease(pg_url)
    with pytest.raises(LeaseLostError):
        old.store_rejects(file_id, [(9, ["late"], "from the old leader")])
    new.store_rejects(file_id, [(5, ["z"], "no id"), (7, ["w", ""], "bad date")])
    assert new.rejects_of(file_id) == [
        (2, ["x", "y"], "bad email"), (5, ["z"], "no id"), (7, ["w", ""], "bad date"),
    ]  # fmt: skip
    new.epoch = take_lease(pg_url)  # a lease taken again: the rows' connection follows it
    new.store_rejects(file_id, [(8, ["v"], "no id")])
    assert [line for line, _, _ in new.rejects_of(file_id)] == [2, 5, 7, 8]
    old.close()
    new.close()


async def test_rejects_a_failed_store_left_are_stored_before_the_next_checkpoint(
    tmp_path: Path, pg_url: str
) -> None:
    """The database fails while the state writer stores a checkpoint's rejected rows: that
    checkpoint is not written, and the next stores those rows before it counts them."""
    journal = PgJournal(config_for(tmp_path, pg_url))
    journal.epoch = take_lease(pg_url)
    record = journal.record_complete("Braze Append/a.csv", "Braze Append", 1, 1)
    writer, writes = StateWriter(), StateWrites()
    settlement = Settlement(record, journal, writer, writes, Metrics(), "Braze Append")
    settlement.open_rejects(tmp_path / "rejects", "a.csv", ["external_id"])
    store, checkpoint = journal.store_rejects, journal.checkpoint
    failures = [JournalError("journal write failed (the database went away)")]
    counted: list[tuple[list[int], int]] = []  # rows stored, rows the checkpoint counts

    def flaky(file_id: int, rows: Sequence[tuple[int, list[str], str]]) -> None:
        if failures:
            raise failures.pop()
        store(file_id, rows)

    def spy(file_id: int, at: int, *counts: Any) -> None:
        counted.append(([line for line, _, _ in journal.rejects_of(file_id)], counts[1]))
        checkpoint(file_id, at, *counts)

    setattr(journal, "store_rejects", flaky)  # noqa: B010
    setattr(journal, "checkpoint", spy)  # noqa: B010
    settlement.reject(2, [""], "no id")
    settlement.settle([0])
    assert not await settlement.write_last()
    assert not writes.writable
    # The loop turn's checkpoint, handed over behind it, stores the row first: it runs before
    # the next reject (on main it counted the row unstored, or stored the next reject with
    # it when that was appended to the list it read in time: the test failed 1 run in 4).
    await writer.write(lambda: None)
    assert counted == [([2], 1)]  # (and none of the failed store's job)
    settlement.reject(3, [""], "no id")
    settlement.settle([1])
    assert await settlement.write_last()
    assert writes.writable
    journal.flush()
    assert journal.get(record.id).rows_rejected == 2
    assert counted[-1] == ([2, 3], 2)
    assert all(len(lines) >= count for lines, count in counted)
    await settlement.close()
    await writer.close()
    journal.close()


def test_a_password_is_refused_in_the_url_and_read_from_the_credential_file(
    tmp_path: Path, pg_url: str
) -> None:
    with pytest.raises(ConfigError, match="password_file") as caught:
        config_for(tmp_path, pg_url.replace("postgres@", "postgres:hunter2@"))
    assert "hunter2" not in str(caught.value)
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "pg").write_text("s3cret\n")
    path = write_config(
        tmp_path / "c.yaml",
        {"journal": {"url": pg_url, "password_file": "pg"}, "braze": {"dry_run": False}},
    )
    env = {"BRAZE_API_KEY": API_KEY, "CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    config = load_config(path, env=env)
    assert config.journal_password is not None
    assert config.journal_password.reveal() == "s3cret"
    assert "s3cret" not in repr(config)


async def test_the_standby_takes_the_lease_once_the_leader_stops_renewing(
    tmp_path: Path, pg_url: str
) -> None:
    config = config_for(tmp_path, pg_url, lease_s=1.5)
    PgJournal(config).close()  # the schema
    roles: dict[str, list[Role]] = {"a": [], "b": []}
    a = LeaseKeeper(config, roles["a"].append)
    b = LeaseKeeper(config, roles["b"].append)
    task_a = asyncio.create_task(a.run())
    for _ in range(50):
        if a.may_send():
            break
        await asyncio.sleep(0.05)
    task_b = asyncio.create_task(b.run())
    await asyncio.sleep(3)  # two lease lengths: a keeps it by renewing
    assert (roles["a"], roles["b"]) == ([Role.LEADER], [])
    assert a.may_send()
    assert not b.may_send()
    task_a.cancel()  # a stops renewing (as if killed)
    stopped = time.monotonic()
    while not b.may_send():
        await asyncio.sleep(0.05)
        assert time.monotonic() - stopped < 1.5 + 2, "the standby did not take over in time"
    assert not a.may_send()  # a's own deadline passed before b could take it
    assert b.lease is not None
    assert a.lease is not None
    assert b.lease.epoch == a.lease.epoch + 1
    task_b.cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)
    await b.release()
    await a.release()


class Recording:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def post(self, body: bytes, source: str) -> Reply:
        self.bodies.append(body)
        return Reply(201, {}, b"{}")

    async def close(self) -> None:
        pass

    def finish(self, source: str) -> None:
        pass


async def test_the_fence_refuses_a_request_past_the_deadline_whatever_the_keeper_did(
    tmp_path: Path, pg_url: str
) -> None:
    """The check before every request: a leader frozen past 0.8 of its lease (its keeper has
    not run since) sends nothing, by its own monotonic clock alone."""
    config = config_for(tmp_path, pg_url, lease_s=10)
    PgJournal(config).close()
    now = [1000.0]
    keeper = LeaseKeeper(config, lambda role: None, clock=lambda: now[0])
    inner = Recording()
    fenced = FencedTransport(inner, keeper.may_send)
    with pytest.raises(TransportError, match="no longer holds the lease"):
        await fenced.post(b"standby", "f")  # no lease yet
    task = asyncio.create_task(keeper.run())
    while keeper.lease is None:
        await asyncio.sleep(0.01)
    task.cancel()  # frozen: no renewal from here on
    await asyncio.gather(task, return_exceptions=True)
    await fenced.post(b"a", "f")
    now[0] += 7.99
    await fenced.post(b"b", "f")
    now[0] += 0.01  # 0.8 of the lease since the acquisition began
    with pytest.raises(TransportError):
        await fenced.post(b"c", "f")
    assert inner.bodies == [b"a", b"b"]
    await keeper.release()


async def test_a_lease_lost_between_the_fence_and_the_write_sends_no_byte() -> None:
    """The fence's check comes loop turns before aiohttp writes the request (a connection is
    taken first): a leader paused in between wakes past its deadline. Braze's transport asks
    again just before the first byte, so the fake Braze sees no request at all."""
    fake = FakeBraze()
    await fake.start()
    answers = iter([True, False, True, True])  # the fence: yes; the write: no; then both yes
    inner = HttpTransport(fake.url, Secret(API_KEY), 5, 4)
    fenced = FencedTransport(inner, lambda: next(answers))
    body = b'{"attributes": [{"external_id": "u1", "first_name": "A"}]}'
    try:
        with pytest.raises(TransportError, match="no longer holds the lease") as refused:
            await fenced.post(body, "f")
        assert not refused.value.reached
        assert fake.starts == []
        assert (await fenced.post(body, "f")).status == 201  # the same pool sends again
        assert fake.users() == ["u1"]
    finally:
        await fenced.close()
        await fake.stop()


async def test_a_lease_keeper_that_fails_is_logged_and_stops_the_daemon(
    daemon: InProcess,  # noqa: F811
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in the keeper's loop would leave the lease unrenewed and the leader sending
    nothing, silently: the daemon says so and stops (exit 1), for systemd to restart it."""
    daemon.changes["journal"] = {"url": pg_url}
    daemon.changes["ha"] = {"lease_seconds": 2}
    await daemon.start()  # (the watcher runs once the lease is held)
    assert daemon.daemon is not None
    pair = daemon.daemon.pair
    assert isinstance(pair, PairState)

    async def broken(step: object, began: float) -> bool:
        raise RuntimeError("a bug in the keeper")

    setattr(pair.keeper, "_attempt", broken)  # noqa: B010 - its next renewal fails so
    assert daemon.task is not None
    assert await asyncio.wait_for(daemon.task, 15) == 1
    assert "task lease failed" in caplog.text
    assert "a bug in the keeper" in caplog.text
