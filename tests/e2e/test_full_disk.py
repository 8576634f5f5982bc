"""A real daemon whose state directory fills up (a small tmpfs), then turns read-only (a
read-only bind mount over its rejects): sending pauses, /readyz says why, nothing is counted
as sent without its checkpoint and rejects, and all of it goes once the disk takes writes.

Needs root (mount); skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze

ROWS = 3_000
BAD_EVERY = 100  # a row without an id: rejected


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "state-disk"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        mount("-t", "tmpfs", "-o", "size=4m,mode=0750", "tmpfs", str(where))
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield where
    finally:
        umount(where)


def fill(disk: Path) -> Path:
    """Take every free block of the tmpfs."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        with contextlib.suppress(OSError):
            out.flush()
    with pytest.raises(OSError, match="No space left") as raised:
        (disk / "probe").write_bytes(b"\0" * 8192)
    assert raised.value.errno == errno.ENOSPC
    return filler


def rows_file(daemon: DaemonProcess, name: str) -> Path:
    lines = ["external_id,first_name"]
    lines += [("" if i % BAD_EVERY == 0 else f"{name}-{i}") + f",N{i}" for i in range(ROWS)]
    path = daemon.export_path(UPSERT, "Offer", "1", name)
    path.write_text("\n".join(lines) + "\n")
    return path


def journal_counts(state: Path) -> dict[str, tuple[str, int, int]]:
    with sqlite3.connect(f"{(state / 'journal.sqlite').as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT rel_path, state, rows_sent, rows_rejected FROM files")
        return {Path(r[0]).name: (r[1], r[2], r[3]) for r in rows}


async def stable(count: object, seconds: float) -> int:
    """The value of `count()` once it has not changed for `seconds`."""
    assert callable(count)
    last = count()
    while True:
        await asyncio.sleep(seconds)
        now = count()
        if now == last:
            return int(now)
        last = now


async def test_a_full_then_read_only_state_directory_pauses_sending_and_loses_nothing(
    daemon: DaemonProcess, fake_braze: FakeBraze, small_disk: Path
) -> None:
    daemon.state = small_disk
    daemon.settings["state_directory"] = str(small_disk)
    fake_braze.latency_s = 0.01
    daemon.settings["braze"].update(
        {"batch_size": 25, "rate_limit": {"requests": 200, "seconds": 1}}
    )
    await daemon.start()
    good = ROWS - ROWS // BAD_EVERY

    # 1. Full: the first checkpoint with rejects cannot be written
    filler = fill(small_disk)
    rows_file(daemon, "full.txt")
    await wait_until(lambda: "sending is paused" in daemon.log_text(), what="the pause")
    status, ready = await daemon.get("/readyz")
    assert status == 503
    assert "cannot be written: " in ready, ready
    assert "sending is paused" in ready, ready
    assert "No space left on device" in ready or "database or disk is full" in ready, ready
    sent_while_full = await stable(lambda: len(fake_braze.objects()), 1.5)
    assert sent_while_full < good  # paused, not finished
    assert journal_counts(small_disk).get("full.txt", ("not recorded yet",))[0] != "done"
    filler.unlink()
    await wait_until(lambda: len(set(fake_braze.users())) == good, timeout_s=40, what="the rest")
    await wait_until(lambda: journal_counts(small_disk)["full.txt"][0] == "done", what="done")
    assert journal_counts(small_disk)["full.txt"] == ("done", good, ROWS // BAD_EVERY)
    await daemon.wait_http("/readyz")

    # 2. Read-only: the rejects of a new file cannot be written
    rejects = small_disk / "rejects"
    rejects.mkdir(exist_ok=True)
    mount("--bind", str(rejects), str(rejects))
    try:
        mount("-o", "remount,bind,ro", str(rejects))
        rows_file(daemon, "read-only.txt")
        await wait_until(
            lambda: "cannot be written: Read-only file system" in daemon.log_text(),
            what="the read-only pause",
        )
        status, ready = await daemon.get("/readyz")
        assert status == 503
        assert "Read-only file system: sending is paused" in ready, ready
        assert journal_counts(small_disk)["read-only.txt"][0] == "sending"
        assert len(set(fake_braze.users())) < 2 * good
    finally:
        umount(rejects)
    await wait_until(lambda: len(set(fake_braze.users())) == 2 * good, timeout_s=40, what="all")
    await wait_until(lambda: journal_counts(small_disk)["read-only.txt"][0] == "done", what="done")
    assert journal_counts(small_disk)["read-only.txt"] == ("done", good, ROWS // BAD_EVERY)
    await daemon.wait_http("/readyz")
    assert await daemon.stop() == 0

    for name in ("full.txt", "read-only.txt"):
        written = (rejects / UPSERT / "Offer" / "1" / f"{name}.rejects.csv").read_text()
        lines = written.splitlines()
        assert lines[0] == "external_id,first_name,_line,_reason"
        assert len(lines) == 1 + ROWS // BAD_EVERY  # each rejected row once, whole
    log = daemon.log_text()
    assert log.count("the state directory takes writes again: sending resumes") >= 2
    assert "Traceback" not in log
