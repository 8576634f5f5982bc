"""Delta when its store cannot be written (issue 16), the real pipeline against the fake Braze
with a real store whose writes are made to fail: no row is settled over a stale record. A
write that fails forgets those users (sent whole next time); a store that takes no write at
all holds the file, pauses sending and says why on /readyz, until it can forget them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
import rocksdict as rocks

from rpi_braze_sync import deltarun
from rpi_braze_sync.deltastore import DeltaStore, DeltaStoreError
from tests.e2e.conftest import wait_until, write_config
from tests.fakebraze import FakeBraze
from tests.integration.test_delta_pipeline import rows
from tests.integration.test_pipeline import InProcess

CHANGED = frozenset({1, 4, 7})


class FailingStore(DeltaStore):
    """The real store; `remember` fails while `remembering_fails`, every write and sync while
    `all_fails` (a disk that refuses writes), the fsync while `sync_fails`."""

    remembering_fails: ClassVar[bool] = False
    all_fails: ClassVar[bool] = False
    sync_fails: ClassVar[bool] = False
    forgetting_all_fails: ClassVar[bool] = False

    def forget_all(self) -> None:
        if FailingStore.forgetting_all_fails:
            raise DeltaStoreError("forget_all: IO error: No space left on device")
        super().forget_all()

    def remember(self, records: Sequence[tuple[bytes, bytes]], marked: bool = False) -> None:
        if FailingStore.remembering_fails:
            raise DeltaStoreError("remember: IO error: No space left on device")
        super().remember(records, marked)

    def _write(self, batch: rocks.WriteBatch, options: rocks.WriteOptions | None = None) -> None:
        if FailingStore.all_fails:
            raise DeltaStoreError("write: IO error: No space left on device")
        super()._write(batch, options)

    def sync(self) -> None:
        if FailingStore.all_fails or FailingStore.sync_fails:
            raise DeltaStoreError("sync: IO error: No space left on device")
        super().sync()


@pytest.fixture
async def daemon(
    tmp_path: Path, fake_braze: FakeBraze, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[InProcess]:
    monkeypatch.setattr(deltarun, "DeltaStore", FailingStore)
    monkeypatch.setattr(FailingStore, "remembering_fails", False)
    monkeypatch.setattr(FailingStore, "all_fails", False)
    monkeypatch.setattr(FailingStore, "sync_fails", False)
    monkeypatch.setattr(FailingStore, "forgetting_all_fails", False)
    process = InProcess(tmp_path, fake_braze)
    process.changes["delta"] = {"enabled": True}
    yield process
    FailingStore.remembering_fails = FailingStore.all_fails = FailingStore.sync_fails = False
    FailingStore.forgetting_all_fails = False
    if process.task is not None and not process.task.done():
        await process.stop()


def first_names(fake: FakeBraze) -> dict[str, str]:
    return {user: str(held.get("first_name")) for user, held in fake.attributes.items()}


async def test_a_failed_write_forgets_those_users_so_a_reverted_value_is_sent(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    daemon.drop("v1.txt", rows(10))
    await wait_until(daemon.finished(1), what="v1")
    FailingStore.remembering_fails = True
    daemon.drop("v2.txt", rows(10, CHANGED))
    await wait_until(daemon.finished(2), what="v2, its writes failing")
    assert first_names(fake_braze)["u4"] == "Ann24"
    FailingStore.remembering_fails = False
    sent_before = len(fake_braze.objects())
    # v1 again: every changed value goes back. With the store still holding v1's records
    # (the failed write's rows settled over them), these would be skipped as unchanged.
    daemon.drop("v3.txt", rows(10))
    await wait_until(daemon.finished(3), what="v1 again")
    again = fake_braze.objects()[sent_before:]
    assert sorted(o["external_id"] for o in again) == [f"u{i}" for i in sorted(CHANGED)]
    assert first_names(fake_braze) == {f"u{i}": f"Ann{i}" for i in range(10)}
    # forgotten, they were sent whole (nothing known to compare with)
    assert all("country" in o for o in again)
    assert await daemon.stop() == 0


@pytest.mark.parametrize("failing", ["all_fails", "sync_fails"])
async def test_a_store_that_takes_no_write_holds_the_file_and_says_why(
    daemon: InProcess, fake_braze: FakeBraze, failing: str
) -> None:
    """all_fails: nothing can be written; sync_fails: written, but never on disk (a power cut
    would lose it), so not settled either."""
    await daemon.start()
    assert daemon.daemon is not None
    daemon.daemon.state_writes.retry_s = 0.2  # (the delta store's retry follows it)
    daemon.drop("v1.txt", rows(10))
    await wait_until(daemon.finished(1), what="v1")
    setattr(FailingStore, failing, True)
    daemon.drop("v2.txt", rows(10, CHANGED))
    readiness = daemon.daemon.readiness

    def says_why() -> bool:
        return any("the delta store cannot be written" in p for p in readiness.problems())

    await wait_until(says_why, what="/readyz naming the delta store")
    # Braze acknowledged the changed rows, but the store holds their old values: they are not
    # settled, and the file not done, while the store cannot forget them.
    await wait_until(lambda: len(fake_braze.objects()) == 13, what="v2's changed rows sent")
    record = daemon.records()["v2.txt"]
    assert record.state == "sending"
    assert record.rows_sent == 10 - len(CHANGED)  # the unchanged rows only
    assert not daemon.finished(2)()
    assert daemon.daemon.sender is not None
    assert daemon.daemon.sender._held  # sending paused
    setattr(FailingStore, failing, False)
    await wait_until(daemon.finished(2), what="v2 done once the store takes writes")
    assert not says_why()
    assert not daemon.daemon.sender._held
    assert daemon.records()["v2.txt"].rows_sent == 10
    sent_before = len(fake_braze.objects())
    daemon.drop("v3.txt", rows(10))
    await wait_until(daemon.finished(3), what="v1 again")
    again = fake_braze.objects()[sent_before:]
    assert sorted(o["external_id"] for o in again) == [f"u{i}" for i in sorted(CHANGED)]
    assert first_names(fake_braze) == {f"u{i}": f"Ann{i}" for i in range(10)}
    assert await daemon.stop() == 0


async def test_another_workspace_whose_old_values_cannot_be_forgotten_trusts_none(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    assert daemon.daemon is not None
    daemon.drop("v1.txt", rows(5))
    await wait_until(daemon.finished(1), what="v1")
    FailingStore.forgetting_all_fails = True
    # the same fake under another name: another workspace as far as the daemon can tell
    daemon.changes["braze"]["api_url"] = fake_braze.url.replace("127.0.0.1", "localhost")
    write_config(daemon.config_path, daemon.changes)
    assert daemon.daemon.reload()
    daemon.drop("v2.txt", rows(5))
    await wait_until(daemon.finished(2), what="the same rows, for the other workspace")
    # the first workspace's values are still in the store: none may skip a row here
    assert len(fake_braze.objects()) == 10
    assert await daemon.stop() == 0


async def test_a_graceful_stop_settles_every_row_acknowledged_before_it(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    """Rows wait for the store's sync (group commit) before they settle: a stop syncs at once,
    so its checkpoint covers every row Braze acknowledged, none is sent again after it."""
    fake_braze.latency_s = 0.01
    daemon.changes["braze"].update({"batch_size": 10, "max_in_flight": 2})
    await daemon.start()
    daemon.drop("big.txt", rows(3000))
    await wait_until(lambda: len(fake_braze.objects()) >= 300, what="some rows sent")
    assert await daemon.stop() == 0
    record = daemon.records()["big.txt"]
    assert record.state == "sending"
    assert record.rows_sent == len(fake_braze.objects())
