"""A queue that makes no progress while Braze answers is reported: /readyz says so and the
age of the oldest unfinished file grows; once the file moves again, the daemon is ready."""

from __future__ import annotations

import os
import signal

import pytest

from rpi_braze_sync import readiness
from tests.e2e.conftest import wait_until
from tests.fakebraze import FakeBraze
from tests.integration.test_pipeline import InProcess, daemon  # noqa: F401 - the fixture


async def test_a_stuck_file_makes_the_daemon_not_ready(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readiness, "STALLED_AFTER_S", 1.5)  # (300 s in production)
    daemon.changes["performance"] = {"mapping_process": True}
    await daemon.start()
    assert daemon.daemon is not None
    owner = daemon.daemon
    daemon.drop("first.txt", b"external_id\nu0\n")
    await wait_until(lambda: "u0" in fake_braze.users(), what="the first file")
    queue = owner.queue
    assert queue is not None
    assert owner.mapping_process is not None
    pid = owner.mapping_process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the process reading the files hangs, as on a dead mount
    try:
        rows = b"external_id\n" + b"".join(b"s%d\n" % i for i in range(20))
        daemon.drop("stuck.txt", rows, offer="Other")
        await wait_until(lambda: queue.active is not None, what="the second file to start")
        await wait_until(
            lambda: any("no queued file has moved" in p for p in owner.readiness.problems()),
            timeout_s=20,
            what="the stall reported by /readyz",
        )
        assert not fake_braze.users()[1:]
        queue.refresh_from_journal()
        gauge = daemon.metrics.registry.get_sample_value
        assert (gauge("rpi_braze_sync_oldest_unfinished_file_age_seconds") or 0) >= 1.5
    finally:
        os.kill(pid, signal.SIGCONT)
    await wait_until(lambda: len(fake_braze.users()) == 21, what="the second file, going again")
    await wait_until(lambda: not owner.readiness.problems(), what="ready again")
    queue.refresh_from_journal()
    assert (
        daemon.metrics.registry.get_sample_value(
            "rpi_braze_sync_oldest_unfinished_file_age_seconds"
        )
        == 0
    )
    assert await daemon.stop() == 0
