"""Two real daemons, one share, one PostgreSQL journal (issue 17): kill -9 of the leader,
SIGSTOP past its lease, the database stopped and started, the old leader restarted. Each
daemon sends to a fake Braze of its own, so every request is known by who sent it; rows lost
and rows sent twice are counted across both."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests.e2e.conftest import UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze
from tests.pg import Cluster, Database

LEASE_S = 2.0
BATCH = 10
IN_FLIGHT = 4  # requests: at most BATCH * IN_FLIGHT rows unacknowledged at any moment
ROWS = 2000
BAD_EVERY = 97  # these rows have no external_id: rejected
PASSWORD = "pg-secret-4711"  # journal.password_file's (trust ignores it): never in a log


def numbered(count: int) -> str:
    return "external_id,first_name\n" + "".join(
        f"{'' if i % BAD_EVERY == 0 else f'u{i}'},Name{i}\n" for i in range(count)
    )


GOOD = {f"u{i}" for i in range(ROWS) if i % BAD_EVERY}
BAD_LINES = {i + 2 for i in range(ROWS) if i % BAD_EVERY == 0}  # line 1 is the header


async def readyz(daemon: DaemonProcess) -> str:
    timeout = aiohttp.ClientTimeout(total=1)
    url = f"http://127.0.0.1:{daemon.port}/readyz"
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        return await response.text()


class Pair:
    def __init__(self, tmp: Path, url: str) -> None:
        self.url = url
        self.fakes = [FakeBraze(latency_s=0.02), FakeBraze(latency_s=0.02)]
        self.daemons: list[DaemonProcess] = []
        self.exports = tmp / "exports"

    async def start(self, tmp: Path) -> None:
        for name, fake in zip("ab", self.fakes, strict=True):
            await fake.start()
            (tmp / name).mkdir()
            daemon = DaemonProcess(tmp / name, fake)
            daemon.exports = self.exports
            daemon.settings["watch"]["base_output_directory"] = str(self.exports)
            daemon.settings["braze"].update({"batch_size": BATCH, "max_in_flight": IN_FLIGHT})
            creds = tmp / name / "credentials"
            creds.mkdir()
            (creds / "pg").write_text(PASSWORD + "\n")
            daemon.extra_env["CREDENTIALS_DIRECTORY"] = str(creds)
            daemon.settings["journal"] = {"url": self.url, "password_file": "pg"}
            daemon.settings["ha"] = {"lease_seconds": LEASE_S}
            self.daemons.append(daemon)
        self.exports.mkdir(exist_ok=True)
        for daemon in self.daemons:
            await daemon.start()

    async def leader(self, timeout_s: float = 15) -> DaemonProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for daemon in self.daemons:
                if daemon.proc is not None and daemon.proc.returncode is None:
                    try:  # (a daemon paused by SIGSTOP does not answer)
                        text = await readyz(daemon)
                    except (OSError, TimeoutError):
                        continue
                    if "role: leader" in text:
                        return daemon
            await asyncio.sleep(0.1)
        raise AssertionError("no leader: " + " | ".join(d.log_text()[-2000:] for d in self.daemons))

    def other(self, daemon: DaemonProcess) -> DaemonProcess:
        return self.daemons[1 - self.daemons.index(daemon)]

    def users(self) -> Counter[str]:
        return Counter(u for fake in self.fakes for u in fake.users())

    def state(self, name: str) -> str | None:
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT state FROM files WHERE rel_path = convert_to(%s, 'UTF8')"
                " ORDER BY id DESC LIMIT 1",
                (f"{UPSERT}/O/1/{name}",),
            ).fetchall()
        return rows[0][0] if rows else None

    async def close(self) -> None:
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.returncode is None:
                with_stopped = daemon.proc
                with_stopped.send_signal(signal.SIGKILL)
                await with_stopped.wait()
        for fake in self.fakes:
            await fake.stop()


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str) -> AsyncIterator[Pair]:
    made = Pair(tmp_path, pg_url)
    try:
        await made.start(tmp_path)
        yield made
    finally:
        await made.close()


def assert_delivered(pair: Pair, in_flight_rows: int) -> int:
    counts = pair.users()
    assert set(counts) == GOOD  # rows lost: 0
    twice = sum(counts.values()) - len(GOOD)
    assert twice <= in_flight_rows
    return twice


def rejected_lines(daemon: DaemonProcess) -> set[int]:
    path = daemon.state / "rejects" / UPSERT / "O" / "1" / "big.txt.rejects.csv"
    lines = path.read_text().splitlines()[1:]
    return {int(line.split(",")[-2]) for line in lines}


async def test_kill_9_of_the_leader_mid_file_then_the_old_leader_restarted(pair: Pair) -> None:
    leader = await pair.leader()
    standby = pair.other(leader)
    assert await standby.metric("rpi_braze_sync_leader") == 0
    assert await leader.metric("rpi_braze_sync_leader") == 1
    assert "role: standby" in await standby.wait_http("/readyz")
    leader.export_path(UPSERT, "O", "1", "big.txt").write_text(numbered(ROWS))
    first = pair.fakes[pair.daemons.index(leader)]
    await wait_until(lambda: len(first.users()) >= ROWS // 3, what="a third of the file")
    assert await leader.stop(signal.SIGKILL) == -signal.SIGKILL
    killed = time.monotonic()
    assert await pair.leader() is standby
    assert time.monotonic() - killed <= LEASE_S + 3  # the lease plus a few seconds
    await wait_until(lambda: pair.state("big.txt") == "done", timeout_s=40, what="done")
    twice = assert_delivered(pair, BATCH * IN_FLIGHT)
    assert "from row" in standby.log_text()  # resumed from the checkpoint
    # Both daemons rejected some rows; the finishing daemon's rejects file holds them all.
    assert rejected_lines(standby) == BAD_LINES
    # The old leader, restarted after the file is done: nothing is sent again.
    sent = sum(pair.users().values())
    await leader.start()
    await asyncio.sleep(LEASE_S * 2)
    assert sum(pair.users().values()) == sent
    for daemon in pair.daemons:
        assert PASSWORD not in daemon.log_text()
        assert PASSWORD not in daemon.config.read_text()
    print(f"sent twice: {twice} rows")


async def test_a_leader_paused_past_its_lease_sends_nothing_after_waking(pair: Pair) -> None:
    leader = await pair.leader()
    standby = pair.other(leader)
    first = pair.fakes[pair.daemons.index(leader)]
    leader.export_path(UPSERT, "O", "1", "big.txt").write_text(numbered(ROWS))
    await wait_until(lambda: len(first.users()) >= ROWS // 4, what="a quarter of the file")
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGSTOP)
    await asyncio.sleep(LEASE_S * 2)
    assert await pair.leader() is standby
    woken_at = time.monotonic()
    requests_before = len(first.starts)
    leader.proc.send_signal(signal.SIGCONT)
    await wait_until(lambda: pair.state("big.txt") == "done", timeout_s=40, what="done")
    await asyncio.sleep(1)
    after = [t for t in first.starts[requests_before:] if t >= woken_at]
    assert after == [], f"{len(after)} requests after waking:\n{leader.log_text()[-3000:]}"
    assert_delivered(pair, BATCH * IN_FLIGHT)
    assert "standby now" in leader.log_text()
    assert leader.proc.returncode is None  # it waits as standby, it did not exit
    assert "role: standby" in await leader.wait_http("/readyz")


async def test_the_database_stopped_and_started_again(tmp_path: Path) -> None:
    cluster = Cluster()
    cluster.start()
    database = Database(cluster.url)
    made = Pair(tmp_path, database.url)
    try:
        await made.start(tmp_path)
        leader = await made.leader()
        first = made.fakes[made.daemons.index(leader)]
        leader.export_path(UPSERT, "O", "1", "big.txt").write_text(numbered(ROWS))
        await wait_until(lambda: len(first.users()) >= ROWS // 4, what="a quarter of the file")
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(LEASE_S)  # past the sending deadline (0.8 of the lease)
        count = sum(len(f.starts) for f in made.fakes)
        await asyncio.sleep(LEASE_S)
        assert sum(len(f.starts) for f in made.fakes) == count  # nothing sent meanwhile
        status, text = await leader.get("/readyz")
        assert status == 503
        assert "cannot be reached" in text
        assert "cannot be reached" in leader.log_text()
        await asyncio.to_thread(cluster.start)
        await wait_until(lambda: made.state("big.txt") == "done", timeout_s=60, what="done")
        # Sent twice: the rows in flight, and those acknowledged while the checkpoint writer
        # (pgcheckpoints.py) had not yet found the database gone: about one more round of
        # requests. Never a whole file.
        assert_delivered(made, 2 * BATCH * IN_FLIGHT)
        assert all(d.proc is not None and d.proc.returncode is None for d in made.daemons)
        for daemon in made.daemons:
            assert "Traceback" not in daemon.log_text()
    finally:
        await made.close()
        await asyncio.to_thread(cluster.remove)


async def test_status_and_retry_from_either_machine(pair: Pair) -> None:
    leader = await pair.leader()
    standby = pair.other(leader)
    path = leader.export_path(UPSERT, "O", "1", "small.txt")
    path.write_text("external_id,first_name\nu1,A\nu2,B\n")
    await wait_until(lambda: pair.state("small.txt") == "done", what="done")
    for daemon, role in ((leader, "leader"), (standby, "standby")):  # the status page
        _, body = await daemon.get("/status.json")
        assert json.loads(body)["daemon"]["role"] == role
        assert "small.txt" in body  # either reads the shared journal
    for daemon in (standby, leader):
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rpi_braze_sync.cli", "status", "--config", str(daemon.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=daemon.env(),
        )  # fmt: skip
        out, err = await status.communicate()
        assert status.returncode == 0, err
        assert b"small.txt" in out
    retry = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rpi_braze_sync.cli", "retry", "--config", str(standby.config), str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=standby.env(),
    )  # fmt: skip
    out, err = await retry.communicate()
    assert retry.returncode == 0, err
    assert b"queued again" in out
    await wait_until(lambda: pair.users()["u1"] == 2, what="the retried file, sent by the leader")
