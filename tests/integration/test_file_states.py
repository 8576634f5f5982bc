"""The files' state changes (seen, complete, started, sent again from a row, done, failed)
are written by the state writer's thread, not on the event loop, in the order durability
needs: a file's final state after its last checkpoint (statewriter.py)."""

from __future__ import annotations

import threading
from typing import Any

from rpi_braze_sync.journal import Journal
from rpi_braze_sync.pgjournal import PgJournal
from tests.e2e.conftest import UPSERT, wait_until
from tests.fakebraze import FakeBraze
from tests.integration.test_checkpoint import export_text, user
from tests.integration.test_pipeline import InProcess, daemon  # noqa: F401 - the fixture

STATE_CHANGES = ("record_seen", "record_complete", "note", "sweep", "start", "restart_from",
                 "finish")  # fmt: skip
Calls = list[tuple[str, str, tuple[Any, ...]]]  # (method, thread, arguments), in call order


def spy_on(journal: Journal) -> Calls:
    """Every state change and checkpoint of `journal` from now on, with its thread."""
    calls: Calls = []
    for name in (*STATE_CHANGES, "checkpoint"):
        real = getattr(journal, name)

        def spy(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append((_name, threading.current_thread().name, args))
            return _real(*args)

        setattr(journal, name, spy)  # a spy on the real journal
    return calls


def final_after_last_checkpoint(calls: Calls, file_id: int, rows: int) -> None:
    """The file's final state follows every checkpoint of it, the last covering `rows`."""
    mine = [(name, args) for name, _, args in calls if args and args[0] == file_id]
    (finish,) = [i for i, (name, _) in enumerate(mine) if name == "finish"]
    checkpoints = [i for i, (name, _) in enumerate(mine) if name == "checkpoint"]
    assert checkpoints
    assert max(checkpoints) < finish
    assert mine[max(checkpoints)][1][1] == rows


async def test_a_files_state_changes_are_the_state_writers_after_its_checkpoints(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
) -> None:
    """A file sent, then a new version under its path (that grew: sent from its row 301): every
    state change in the state writer's thread, each file's end after its last checkpoint."""
    await daemon.start()
    assert daemon.daemon is not None
    assert daemon.daemon.journal is not None
    calls = spy_on(daemon.daemon.journal)
    daemon.drop("f.txt", export_text(300))
    await wait_until(daemon.finished(1), what="the file")
    daemon.drop("f.txt", export_text(400))
    await wait_until(daemon.finished(2), what="its new version")
    assert await daemon.stop() == 0
    names = {name for name, _, _ in calls}
    assert {"record_complete", "start", "restart_from", "finish", "sweep"} <= names
    assert {thread for _, thread, _ in calls} == {"state-writer_0"}
    record = daemon.records()["f.txt"]  # the new version's, sent from row 301 on
    assert (record.state, record.checkpoint) == ("done", 400)
    first, second = [args[0] for name, _, args in calls if name == "start"]
    assert second == record.id
    final_after_last_checkpoint(calls, first, 300)
    final_after_last_checkpoint(calls, second, 400)
    assert sorted(fake_braze.users()) == sorted(user(i) for i in range(400) if user(i))


async def test_a_file_failed_at_its_end_has_its_last_checkpoint_first(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
) -> None:
    """A file that states more records than it holds fails once all were settled: the
    checkpoint that covers them is written before the failure (on main, after it)."""
    channel = {"format": {"skip_lines": 1, "record_count": {"line": 1}}}
    daemon.changes["channels"] = {UPSERT: channel}
    await daemon.start()
    assert daemon.daemon is not None
    assert daemon.daemon.journal is not None
    calls = spy_on(daemon.daemon.journal)
    daemon.drop("f.txt", b"records: 999\n" + export_text(300))
    await wait_until(daemon.finished(1), what="the file")
    assert await daemon.stop() == 0
    (record,) = daemon.records().values()
    assert record.state == "failed"
    assert record.reason is not None
    assert "states 999 records but holds 300" in record.reason
    assert record.checkpoint == 300
    final_after_last_checkpoint(calls, record.id, 300)
    assert {thread for _, thread, _ in calls} == {"state-writer_0"}


async def test_a_pairs_journal_changes_the_files_states_in_the_state_writer(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
    pg_url: str,
) -> None:
    """PostgreSQL: the same thread; the file's end (which waits for the WAL flush) handed
    over after its checkpoints (which go to a thread of the journal's own: flushed first)."""
    daemon.changes["journal"] = {"url": pg_url}
    await daemon.start()
    journal = daemon.daemon.journal if daemon.daemon is not None else None
    assert isinstance(journal, PgJournal)
    assert journal.epoch is not None
    calls = spy_on(journal)
    daemon.drop("f.txt", export_text(300))
    await wait_until(daemon.finished(1), timeout_s=60, what="the file")
    (record,) = journal.all()
    assert await daemon.stop() == 0
    assert (record.state, record.checkpoint) == ("done", 300)
    assert {"record_complete", "start", "finish"} <= {name for name, _, _ in calls}
    state_changes = {thread for name, thread, _ in calls if name != "checkpoint"}
    assert state_changes == {"state-writer_0"}
    final_after_last_checkpoint(calls, record.id, 300)
