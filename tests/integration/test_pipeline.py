"""The daemon in-process (real watcher, real SQLite, real files) against the fake Braze:
files that cannot be used fail whole, with a reason in the journal, and nothing of them is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rpi_braze_sync.app import Daemon
from rpi_braze_sync.batching import Item
from rpi_braze_sync.concurrency import Slot
from rpi_braze_sync.config import LoadedConfig, load_config
from rpi_braze_sync.metrics import Metrics
from rpi_braze_sync.pipeline import FileJob
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from tests.e2e.conftest import UPSERT, free_port, wait_until, write_config
from tests.fakebraze import API_KEY, FakeBraze


class InProcess:
    def __init__(self, tmp: Path, fake: FakeBraze) -> None:
        self.exports = tmp / "exports"
        self.exports.mkdir()
        self.state = tmp / "state"
        self.config_path = tmp / "config.yaml"
        self.fake = fake
        self.metrics = Metrics()
        self.task: asyncio.Task[int] | None = None
        self.daemon: Daemon | None = None
        self.changes: dict[str, Any] = {
            "braze": {"api_url": fake.url, "retry_max_delay_seconds": 0.2},
            "watch": {
                "base_output_directory": str(self.exports),
                "settle_seconds": 0.3,
                "poll_interval_seconds": 0.1,
                "backfill": True,
            },
            "state_directory": str(self.state),
            "http": {"listen": f"127.0.0.1:{free_port()}"},
        }

    async def start(self) -> None:
        write_config(self.config_path, self.changes)

        def load() -> LoadedConfig:
            return load_config(self.config_path, env={"BRAZE_API_KEY": API_KEY})

        self.daemon = Daemon(load(), self.metrics, load)  # reload() reads the file again
        self.task = asyncio.create_task(self.daemon.run(install_signals=False))
        await wait_until(
            lambda: (
                self.daemon is not None
                and self.daemon.watcher is not None
                and self.daemon.watcher.running
            ),
            what="watcher",
        )

    async def stop(self) -> int:
        assert self.daemon is not None
        assert self.task is not None
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 10)

    def drop(self, name: str, data: bytes, offer: str = "Offer", channel: str = UPSERT) -> Path:
        folder = self.exports / channel / offer / "wf-1"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        return folder / name

    def records(self) -> dict[str, Any]:
        journal = SqliteJournal(journal_path(self.state, dry_run=False))
        try:
            return {Path(r.rel_path).name: r for r in journal.all()}
        finally:
            journal.close()

    def finished(self, count: int) -> Callable[[], bool]:
        def check() -> bool:
            done = self.metrics.registry.get_sample_value
            total = sum(
                done("rpi_braze_sync_files_total", {"channel": UPSERT, "outcome": o}) or 0
                for o in ("done", "failed", "vanished")
            )
            return total >= count

        return check


@pytest.fixture
async def daemon(tmp_path: Path, fake_braze: FakeBraze) -> AsyncIterator[InProcess]:
    process = InProcess(tmp_path, fake_braze)
    yield process
    if process.task is not None and not process.task.done():
        await process.stop()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b"external_id,first_name\nu1,Ann\nu2,B\xe9a\n",
            "line 3 (byte 34): not valid utf-8; nothing was sent (set format.fallback_encoding, e.g. cp1252, if the file comes from a Windows tool)",
        ),
        (
            b"external_id,First Name,first_name\nu1,A,B\n",
            "header: columns 'First Name' and 'first_name' both normalise to 'first_name'; nothing was sent",
        ),
        (
            b"id,first_name\nu1,A\n",
            "header: the identifier column 'external_id' is missing from the header; nothing was sent",
        ),
        (b"", "the file is empty: no header row"),
    ],
)
async def test_unusable_files_fail_whole_and_say_why(
    daemon: InProcess, fake_braze: FakeBraze, data: bytes, reason: str
) -> None:
    await daemon.start()
    daemon.drop("bad.txt", data)
    daemon.drop("good.txt", b"external_id,first_name\nu9,Zoe\n", offer="Other")
    await wait_until(daemon.finished(2), what="both files")
    assert await daemon.stop() == 0
    records = daemon.records()
    assert records["bad.txt"].state == "failed"
    assert records["bad.txt"].reason == reason
    assert records["good.txt"].state == "done"
    assert fake_braze.users() == ["u9"]  # the other file is served all the same


async def test_fallback_encoding_reads_the_whole_file(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    daemon.changes["channels"] = {UPSERT: {"format": {"fallback_encoding": "cp1252"}}}
    await daemon.start()
    daemon.drop("cp.txt", "external_id;first_name\r\nu1;Zoë\r\nu2;Renée\r\n".encode("cp1252"))
    await wait_until(daemon.finished(1), what="the file")
    assert await daemon.stop() == 0
    assert [o["first_name"] for o in fake_braze.objects()] == ["Zoë", "Renée"]


async def test_utf16_with_bom_and_tabs(daemon: InProcess, fake_braze: FakeBraze) -> None:
    await daemon.start()
    daemon.drop("u16.txt", "external_id\tfirst_name\r\nu1\tĀnn\r\n".encode("utf-16"))
    await wait_until(daemon.finished(1), what="the file")
    assert await daemon.stop() == 0
    assert fake_braze.objects()[0]["first_name"] == "Ānn"


async def test_a_finished_file_is_not_sent_again_after_restart(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    daemon.drop("once.txt", b"external_id\nu1\nu2\n")
    await wait_until(daemon.finished(1), what="the file")
    assert await daemon.stop() == 0
    daemon.metrics = Metrics()
    await daemon.start()
    await asyncio.sleep(1.0)
    assert await daemon.stop() == 0
    assert fake_braze.users() == ["u1", "u2"]


@pytest.mark.parametrize("delta", [False, True], ids=["delta-off", "delta-on"])
async def test_a_request_that_fails_while_settling_fails_its_try_with_a_logged_error(
    delta: bool,
    daemon: InProcess,
    fake_braze: FakeBraze,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug while settling a reply (once): logged with its traceback, the file's try fails
    instead of waiting for ever for those rows, and the next try sends them (nothing lost).
    With delta on, rows settle in a callback once the store holds them, not in the request."""
    daemon.changes["watch"] |= {"file_attempts": 2, "file_retry_seconds": 0.1}
    daemon.changes["delta"] = {"enabled": delta}
    settle, broke = FileJob._sent, list[int]()

    def breaks_once(job: FileJob, items: list[Item], slot: Slot) -> None:
        if not broke:
            broke.append(len(items))
            raise RuntimeError("settling broke")
        settle(job, items, slot)

    monkeypatch.setattr(FileJob, "_sent", breaks_once)
    await daemon.start()
    daemon.drop("a.txt", b"external_id\n" + b"".join(b"u%d\n" % i for i in range(300)))
    await wait_until(daemon.finished(1), what="the file")
    assert daemon.daemon is not None
    sender = daemon.daemon.sender
    assert sender is not None
    await wait_until(lambda: sender.outstanding == 0, what="every place given back")
    assert await daemon.stop() == 0
    assert broke
    assert daemon.records()["a.txt"].state == "done"
    assert set(fake_braze.users()) == {f"u{i}" for i in range(300)}
    failed = [r for r in caplog.records if r.exc_info and "settling broke" in str(r.exc_info[1])]
    assert failed
    where = "settling rows the delta store holds failed" if delta else "a request of"
    assert where in failed[0].getMessage()
    assert "try 1 of 2 failed: a request failed while being sent or settled" in caplog.text
