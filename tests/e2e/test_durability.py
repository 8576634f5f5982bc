"""Kills, restarts, files that change under the daemon, a share that disappears: nothing is
lost, nothing finished is sent again, and the operator is told."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest

from rpi_braze_sync.journal import FileRecord
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from tests.e2e.conftest import UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze

BATCH = 10
IN_FLIGHT = 4  # requests; so at most BATCH * IN_FLIGHT rows are unacknowledged at a kill


def numbered(start: int, count: int) -> str:
    return "".join(f"u{i},Name{i}\n" for i in range(start, start + count))


def slow_daemon(daemon: DaemonProcess, fake: FakeBraze, latency_s: float = 0.02) -> None:
    fake.latency_s = latency_s
    daemon.settings["braze"].update({"batch_size": BATCH, "max_in_flight": IN_FLIGHT})


def records(daemon: DaemonProcess) -> dict[str, FileRecord]:
    journal = SqliteJournal(journal_path(daemon.state, dry_run=False))
    try:
        return {Path(r.rel_path).name: r for r in journal.all()}
    finally:
        journal.close()


def first_record(daemon: DaemonProcess, name: str) -> FileRecord | None:
    journal = SqliteJournal(journal_path(daemon.state, dry_run=False))
    try:
        return next((r for r in journal.all() if Path(r.rel_path).name == name), None)
    finally:
        journal.close()


def state_of(daemon: DaemonProcess, name: str) -> str | None:
    record = records(daemon).get(name)
    return record.state if record else None


@pytest.mark.parametrize("mapping_process", [False, True], ids=["in-process", "mapping-process"])
async def test_sigkill_mid_file_then_restart_delivers_every_row(
    daemon: DaemonProcess, fake_braze: FakeBraze, mapping_process: bool
) -> None:
    slow_daemon(daemon, fake_braze)
    daemon.settings["performance"] = {"mapping_process": mapping_process}
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "big.txt").write_text(
        "external_id,first_name\n" + numbered(0, 3000)
    )
    await wait_until(lambda: len(fake_braze.objects()) >= 1000, what="a third of the file")
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    assert state_of(daemon, "big.txt") == "sending"
    await daemon.start()
    await wait_until(lambda: state_of(daemon, "big.txt") == "done", timeout_s=30, what="done")
    counts = Counter(fake_braze.users())
    assert set(counts) == {f"u{i}" for i in range(3000)}  # none missing
    duplicates = sum(counts.values()) - 3000
    assert duplicates <= BATCH * IN_FLIGHT
    assert "from row" in daemon.log_text()  # it said where it resumed
    # Restarted once more: the finished file is not sent again.
    assert await daemon.stop() == 0
    sent = len(fake_braze.objects())
    await daemon.start()
    await asyncio.sleep(2)
    assert await daemon.stop() == 0
    assert len(fake_braze.objects()) == sent


@pytest.mark.parametrize("delta", [False, True], ids=["delta-off", "delta-on"])
async def test_after_sigkill_only_rows_in_flight_go_again_and_few_are_in_flight(
    daemon: DaemonProcess, fake_braze: FakeBraze, delta: bool
) -> None:
    """The default configuration against a Braze that slows under load (2 workers of 10 ms
    behind 20 ms: 200 requests/s). Concurrency stays near what that rate needs, and a kill
    resends at most the rows that were in flight, whatever was acknowledged out of order.
    With delta, a request's place is given back once the store holds its rows' values,
    before their sync and checkpoint: after the kill those rows are read again and skipped
    (the store's WAL was written), so the bound holds without waiting for the checkpoint."""
    fake_braze.latency_s = 0.02
    fake_braze.slow_under_load(workers=2, service_s=0.01)
    rows = 45_000
    daemon.settings["delta"] = {"enabled": delta}
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "big.txt").write_text(
        "external_id,first_name\n" + numbered(0, rows)
    )
    await wait_until(lambda: len(fake_braze.objects()) >= rows // 3, what="a third of the file")
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    await daemon.start()
    await wait_until(lambda: state_of(daemon, "big.txt") == "done", timeout_s=60, what="done")
    assert await daemon.stop() == 0
    counts = Counter(fake_braze.users())
    assert set(counts) == {f"u{i}" for i in range(rows)}  # none lost
    duplicates = sum(counts.values()) - rows
    # Issue 12's target is on the rows a kill resends: at most 2,500.
    assert duplicates <= 2500
    # A request is outstanding for the daemon until its answer is checkpointed, and nearly
    # all of that time it is inside Braze: the peak Braze saw is what the daemon allowed.
    assert duplicates <= fake_braze.peak_rows
    # Concurrency does not climb with latency: the limit is 1.5 x 200/s x the shortest round
    # trip + 2 requests (about 825 rows at 30 ms), not the ceiling (15,000; 13,000 were in
    # flight before issue 12). The shortest round trip is measured, so a starved machine
    # (load 12 on 2 cores) stretches it: 105 ms gives 34 requests, 2,550 rows, seen once.
    assert fake_braze.peak_rows <= 5000
    print(f"peak {fake_braze.peak_rows} rows in flight, {duplicates} sent twice")


async def test_sigterm_finishes_requests_in_flight_and_resumes_without_duplicates(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    slow_daemon(daemon, fake_braze)
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text(
        "external_id,first_name\n" + numbered(0, 2000)
    )
    await wait_until(lambda: len(fake_braze.objects()) >= 500, what="part of the file")
    assert await daemon.stop(signal.SIGTERM) == 0
    assert state_of(daemon, "f.txt") == "sending"
    await daemon.start()
    await wait_until(lambda: state_of(daemon, "f.txt") == "done", timeout_s=30, what="done")
    assert await daemon.stop() == 0
    assert sorted(Counter(fake_braze.users()).values()) == [1] * 2000  # each row exactly once


async def test_a_second_signal_stops_at_once_and_the_journal_still_resumes(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    slow_daemon(daemon, fake_braze, latency_s=0.5)
    daemon.settings["shutdown_grace_seconds"] = 30
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text(
        "external_id,first_name\n" + numbered(0, 300)
    )
    await wait_until(lambda: len(fake_braze.objects()) >= 40, what="some rows")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    daemon.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.proc.wait(), 5) == 0  # well before the 30 s grace
    fake_braze.latency_s = 0
    await daemon.start()
    await wait_until(lambda: state_of(daemon, "f.txt") == "done", timeout_s=30, what="done")
    assert await daemon.stop() == 0
    counts = Counter(fake_braze.users())
    assert set(counts) == {f"u{i}" for i in range(300)}
    assert sum(counts.values()) - 300 <= BATCH * IN_FLIGHT


@pytest.mark.parametrize("mapping_process", [False, True], ids=["in-process", "mapping-process"])
async def test_a_file_deleted_mid_send_is_marked_and_others_go_on(
    daemon: DaemonProcess, fake_braze: FakeBraze, mapping_process: bool
) -> None:
    daemon.settings["performance"] = {"mapping_process": mapping_process}
    slow_daemon(daemon, fake_braze, latency_s=0.05)
    await daemon.start()
    doomed = daemon.export_path(UPSERT, "O", "1", "doomed.txt")
    doomed.write_text("external_id,first_name\n" + numbered(0, 20000))
    await wait_until(lambda: len(fake_braze.objects()) >= 100, what="the send to start")
    doomed.unlink()  # RPI deletes an export when its run is stopped
    await wait_until(lambda: state_of(daemon, "doomed.txt") == "vanished", what="vanished")
    record = records(daemon)["doomed.txt"]
    assert record.reason is not None
    assert record.reason.startswith("the file was deleted while being sent;")
    assert record.rows_sent == len(fake_braze.objects())
    assert record.rows_sent < 20000
    daemon.export_path(UPSERT, "O", "2", "next.txt").write_text("external_id\nz1\n")
    await wait_until(lambda: "z1" in fake_braze.users(), what="the next file")
    assert await daemon.stop() == 0


async def test_a_file_that_shrinks_mid_send_fails_with_what_was_sent(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    slow_daemon(daemon, fake_braze, latency_s=0.05)
    await daemon.start()
    path = daemon.export_path(UPSERT, "O", "1", "shrinks.txt")
    path.write_text("external_id,first_name\n" + numbered(0, 20000))
    await wait_until(lambda: len(fake_braze.objects()) >= 100, what="the send to start")
    with path.open("r+") as handle:
        handle.truncate(1000)

    def first_state() -> str | None:
        record = first_record(daemon, "shrinks.txt")
        return record.state if record else None

    await wait_until(lambda: first_state() == "failed", what="failed")
    record = first_record(daemon, "shrinks.txt")
    assert record is not None
    reason = record.reason or ""
    assert reason.startswith("the file shrank from 317803 to 1000 bytes while being sent;")
    assert f"{record.rows_sent} rows were sent" in reason
    # What is left is new content under that path: a version of its own, sent as such.
    assert await daemon.stop() == 0


async def test_grown_replaced_and_rewritten_files_after_done(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    grows = daemon.export_path(UPSERT, "O", "1", "grows.txt")
    grows.write_text("external_id,first_name\n" + numbered(0, 5))
    same = daemon.export_path(UPSERT, "O", "2", "same.txt")
    same.write_text("external_id,first_name\ns1,S\n")
    replaced = daemon.export_path(UPSERT, "O", "3", "replaced.txt")
    replaced.write_text("external_id,first_name\nr1,Old\n")
    await wait_until(lambda: len(fake_braze.objects()) == 7, what="first versions")

    with grows.open("a") as handle:
        handle.write(numbered(5, 3))  # appended after it was done
    same.write_text("external_id,first_name\ns1,S\n")  # same bytes again, new mtime
    replaced.write_text("external_id,first_name\nr1,New\nr2,New\n")
    await wait_until(lambda: len(fake_braze.objects()) == 7 + 3 + 2, what="second versions")
    await asyncio.sleep(2.5)  # the rewritten-but-same file must still not go
    assert await daemon.stop() == 0
    users = fake_braze.users()
    assert users.count("u0") == 1  # the grown file continued where it stopped
    assert [u for u in users if u in ("u5", "u6", "u7")] == ["u5", "u6", "u7"]
    assert users.count("s1") == 1
    assert [o["first_name"] for o in fake_braze.objects() if o["external_id"].startswith("r")] == [
        "Old",
        "New",
        "New",
    ]
    log = daemon.log_text()
    assert "the file grew after it was sent: continuing from row 6" in log
    assert "same content as the version sent before" in log


async def test_restart_while_the_share_is_missing(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "a.txt").write_text("external_id\na1\n")
    await wait_until(lambda: fake_braze.users() == ["a1"], what="the first file")
    assert await daemon.stop() == 0
    hidden = daemon.exports.with_name("exports-unmounted")
    daemon.exports.rename(hidden)  # the share is gone while the daemon starts
    await daemon.start(wait_ready=False)
    await daemon.wait_http("/healthz")
    status, text = await daemon.get("/readyz")
    assert status == 503
    assert "is not available" in text
    assert await daemon.metric("rpi_braze_sync_share_available") == 0
    await asyncio.sleep(1)
    hidden.rename(daemon.exports)  # back again
    daemon.export_path(UPSERT, "O", "2", "b.txt").write_text("external_id\nb1\n")
    await wait_until(lambda: "b1" in fake_braze.users(), timeout_s=20, what="the file after")
    await daemon.wait_http("/readyz")
    assert await daemon.stop() == 0
    assert fake_braze.users() == ["a1", "b1"]  # a.txt was not forgotten, nor resent


async def test_retry_sends_a_failed_file_again(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    import sys

    await daemon.start()
    bad = daemon.export_path(UPSERT, "O", "1", "bad.txt")
    bad.write_text("id,first_name\nu1,A\n")
    await wait_until(lambda: state_of(daemon, "bad.txt") == "failed", what="failed")
    # The operator fixes the mapping (this template calls the id column "id"), then asks again.
    import yaml

    loaded = yaml.safe_load(daemon.config.read_text())
    loaded["channels"][UPSERT]["mapping"]["identifier"] = {"external_id": {"column": "id"}}
    daemon.config.write_text(yaml.safe_dump(loaded, sort_keys=False))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: "configuration reloaded" in daemon.log_text(), what="reload")
    await asyncio.sleep(2.5)
    assert fake_braze.users() == []  # a failed file is not retried by itself
    retry = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rpi_braze_sync.cli", "retry", "--config", str(daemon.config), str(bad),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=daemon.env(),
    )  # fmt: skip
    out, err = await retry.communicate()
    assert retry.returncode == 0, err
    assert b"queued again" in out
    await wait_until(lambda: fake_braze.users() == ["u1"], what="the retried file")
    assert await daemon.stop() == 0


async def test_a_fixed_rejects_file_dropped_back_is_sent(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "f.txt").write_text(
        "external_id,dob\n,1990-01-01\nu2,1990-01-02\n"
    )
    await wait_until(lambda: fake_braze.users() == ["u2"], what="the good row")
    rejects = daemon.state / "rejects" / UPSERT / "O" / "1" / "f.txt.rejects.csv"
    await wait_until(rejects.exists, what="the rejects file")
    fixed = rejects.read_text().replace("\n,1990-01-01", "\nu1,1990-01-01")
    daemon.export_path(UPSERT, "O", "1", "f.fixed.csv").write_text(fixed)
    await wait_until(lambda: "u1" in fake_braze.users(), what="the fixed row")
    assert await daemon.stop() == 0
    fixed_object = next(o for o in fake_braze.objects() if o["external_id"] == "u1")
    assert fixed_object["dob"] == "1990-01-01"
    assert "rpi_cdp_attributes" not in fixed_object  # _line and _reason are never mapped
