"""Delta in the daemon (issue 16), in-process against the fake Braze: a file sent again sends
nothing, a change sends only the changed values, what Braze rejects is never remembered, and
append rows are remembered only for users an acknowledged upsert created."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rpi_braze_sync.metrics import Metrics
from tests.e2e.conftest import APPEND, UPSERT, wait_until, write_config
from tests.fakebraze import FakeBraze
from tests.integration.test_pipeline import InProcess

HEADER = "external_id,first_name,country,income\n"


def rows(n: int, changed: frozenset[int] = frozenset(), name: str = "Ann") -> bytes:
    lines = [f"u{i},{name + '2' if i in changed else name}{i},FR,{1000 + i}\n" for i in range(n)]
    return (HEADER + "".join(lines)).encode()


def points(metrics: Metrics, outcome: str, channel: str = UPSERT) -> float:
    value = metrics.registry.get_sample_value(
        "rpi_braze_sync_data_points_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


def finished_in(daemon: InProcess, channel: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        done = daemon.metrics.registry.get_sample_value
        labels = {"channel": channel, "outcome": "done"}
        return (done("rpi_braze_sync_files_total", labels) or 0) >= count

    return check


def sent_for(fake: FakeBraze, start: int) -> list[dict[str, Any]]:
    return fake.objects()[start:]


@pytest.fixture
async def daemon(tmp_path: Path, fake_braze: FakeBraze) -> AsyncIterator[InProcess]:
    process = InProcess(tmp_path, fake_braze)
    process.changes["delta"] = {"enabled": True}
    yield process
    if process.task is not None and not process.task.done():
        await process.stop()


async def test_again_sends_nothing_and_a_change_only_the_changed_fields(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    daemon.drop("run1.txt", rows(40))
    await wait_until(daemon.finished(1), what="the first file")
    first = fake_braze.objects()
    assert len(first) == 40
    # first_name, country, income (nested) and the offer from the path: 4 points a row
    assert points(daemon.metrics, "sent") == 160
    assert points(daemon.metrics, "skipped") == 0

    daemon.drop("run2.txt", rows(40))
    await wait_until(daemon.finished(2), what="the same rows again")
    assert len(fake_braze.objects()) == 40  # nothing sent
    assert points(daemon.metrics, "skipped") == 160

    changed = frozenset({3, 17, 29, 31})  # 10 %
    daemon.drop("run3.txt", rows(40, changed))
    await wait_until(daemon.finished(3), what="the changed rows")
    sent = sent_for(fake_braze, 40)
    assert sorted(o["external_id"] for o in sent) == [f"u{i}" for i in sorted(changed, key=str)]
    for obj in sent:
        i = int(obj["external_id"][1:])
        data = {k: v for k, v in obj.items() if not k.startswith("_") and k != "external_id"}
        assert data == {"first_name": f"Ann2{i}"}  # only the changed value
    assert points(daemon.metrics, "sent") == 164
    assert points(daemon.metrics, "skipped") == 160 + 156
    assert await daemon.stop() == 0


async def test_values_braze_rejected_are_not_remembered(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    fake_braze.minor_errors = {"u1": "invalid_value"}
    await daemon.start()
    daemon.drop("run1.txt", rows(3))
    await wait_until(daemon.finished(1), what="the first file")
    fake_braze.minor_errors = {}
    daemon.drop("run2.txt", rows(3))
    await wait_until(daemon.finished(2), what="the second file")
    assert [o["external_id"] for o in fake_braze.objects()[3:]] == ["u1"]
    assert await daemon.stop() == 0


async def test_append_rows_are_remembered_only_for_users_an_upsert_created(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    # u0 and u1 are unknown to Braze: it ignores update-only rows for them
    daemon.drop("a1.txt", rows(2), channel=APPEND)
    await wait_until(finished_in(daemon, APPEND, 1), what="the append file")
    assert fake_braze.profiles == set()  # ignored by Braze, with a 201
    daemon.drop("u1.txt", rows(1, name="Bea"))  # an upsert creates u0 only
    await wait_until(daemon.finished(1), what="the upsert file")
    before = len(fake_braze.objects())
    daemon.drop("a2.txt", rows(2), channel=APPEND)
    await wait_until(finished_in(daemon, APPEND, 2), what="the append file again")
    # u1: never remembered, sent again; u0: its first_name changed back to Ann0
    again = fake_braze.objects()[before:]
    assert sorted(o["external_id"] for o in again) == ["u0", "u1"]
    daemon.drop("a3.txt", rows(2), channel=APPEND)
    await wait_until(finished_in(daemon, APPEND, 3), what="the append file a third time")
    assert [o["external_id"] for o in fake_braze.objects()[before + 2 :]] == ["u1"]
    assert await daemon.stop() == 0


async def test_another_braze_workspace_by_reload_starts_with_nothing_remembered(
    daemon: InProcess, fake_braze: FakeBraze, caplog: pytest.LogCaptureFixture
) -> None:
    await daemon.start()
    daemon.drop("run1.txt", rows(3))
    await wait_until(daemon.finished(1), what="the first file")
    # the same fake under another name: another workspace as far as the daemon can tell
    daemon.changes["braze"]["api_url"] = fake_braze.url.replace("127.0.0.1", "localhost")
    write_config(daemon.config_path, daemon.changes)
    assert daemon.daemon is not None
    assert daemon.daemon.reload()
    assert "the Braze workspace (api_url or API key) changed" in caplog.text
    daemon.drop("run2.txt", rows(3))
    await wait_until(daemon.finished(2), what="the same rows, for the other workspace")
    assert len(fake_braze.objects()) == 6  # sent again, whole
    assert await daemon.stop() == 0
    # and the next start keeps that workspace's values
    daemon.metrics = Metrics()
    await daemon.start()
    daemon.drop("run3.txt", rows(3))
    await wait_until(daemon.finished(1), what="the rows again")
    assert len(fake_braze.objects()) == 6
    assert await daemon.stop() == 0


async def test_delta_in_a_dry_run_is_said_to_be_unused(
    tmp_path: Path, fake_braze: FakeBraze, caplog: pytest.LogCaptureFixture
) -> None:
    """A dry run acknowledges nothing, so delta remembers nothing there: an operator who turns
    it on in `make run` is told, at the start and at a reload, rather than seeing it do
    nothing."""
    caplog.set_level(logging.INFO)
    daemon = InProcess(tmp_path, fake_braze)
    daemon.changes["delta"] = {"enabled": True}
    daemon.changes["braze"] |= {"dry_run": True}
    await daemon.start()
    try:
        assert "delta: turned on, but not used in a dry run" in caplog.text
        assert not (daemon.state / "delta").exists()
        caplog.clear()
        assert daemon.daemon is not None
        assert daemon.daemon.reload()
        assert "delta: turned on, but not used in a dry run" in caplog.text
    finally:
        assert await daemon.stop() == 0


async def test_a_reload_turns_delta_on_for_the_next_files_and_off_again(
    tmp_path: Path, fake_braze: FakeBraze, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    daemon = InProcess(tmp_path, fake_braze)  # delta off at the start: no store opened
    await daemon.start()
    try:
        assert daemon.daemon is not None
        daemon.drop("run1.txt", rows(5))
        await wait_until(daemon.finished(1), what="the first file, delta off")
        assert not (daemon.state / "delta").exists()
        daemon.changes["channels"] = {UPSERT: {"delta": True}}  # one channel's own switch
        write_config(daemon.config_path, daemon.changes)
        assert daemon.daemon.reload()
        assert "delta: turned on by the reload" in caplog.text
        assert daemon.daemon.delta is not None
        assert daemon.daemon.readiness.delta_writes is daemon.daemon.delta.writes
        daemon.drop("run2.txt", rows(5))
        await wait_until(daemon.finished(2), what="the rows again, delta on: remembered")
        assert len(fake_braze.objects()) == 10  # nothing remembered yet: sent
        assert points(daemon.metrics, "sent") == 20
        daemon.drop("run3.txt", rows(5))
        await wait_until(daemon.finished(3), what="the rows a third time")
        assert len(fake_braze.objects()) == 10  # unchanged: nothing sent
        assert points(daemon.metrics, "skipped") == 20
        daemon.changes["channels"] = {UPSERT: {"delta": False}}
        write_config(daemon.config_path, daemon.changes)
        assert daemon.daemon.reload()
        daemon.drop("run4.txt", rows(5))
        await wait_until(daemon.finished(4), what="the rows once delta is off again")
        assert len(fake_braze.objects()) == 15  # sent whole, delta no longer used
        assert points(daemon.metrics, "skipped") == 20
    finally:
        assert await daemon.stop() == 0


async def test_fields_dropped_from_rows_left_unsent_are_listed_once(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    """A row delta leaves unsent settles at once, as sent: its dropped fields are listed
    beside the file as for a row sent, once each."""
    data = (
        b"external_id,first_name,country,email\n"
        b"u0,Ann,FR,ann@example.com\n"
        b'u1,Bob,Narnia,"not, an email"\n'
        b"u2,Cy,FR,cy@example.com\n"
        b"u3,Di,Atlantis,di@example.com\n"
    )
    await daemon.start()
    daemon.drop("run1.txt", data)
    await wait_until(daemon.finished(1), what="the first file")
    daemon.drop("run2.txt", data)
    await wait_until(daemon.finished(2), what="the same rows again")
    assert len(fake_braze.objects()) == 4  # the second file sent nothing
    assert await daemon.stop() == 0
    folder = daemon.state / "rejects" / UPSERT / "Offer" / "wf-1"
    for name in ("run1.txt", "run2.txt"):
        assert (folder / f"{name}.dropped.csv").read_bytes().splitlines() == [
            b"_line,field,value,reason",
            b'3,email,"not, an email",not an email address',
            b"3,country,Narnia,not an ISO 3166 country code or name",
            b"5,country,Atlantis,not an ISO 3166 country code or name",
        ]


async def test_rows_braze_acknowledges_during_a_graceful_stop_are_remembered(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    """Requests in flight at a stop are answered while the sender drains: their rows are
    checkpointed, so their values must be in the store by then. Otherwise the store keeps the
    older values, and a later export going back to them is skipped while Braze holds the new
    ones (the model: every profile ends with the last export's values)."""
    await daemon.start()
    daemon.drop("run0.txt", rows(300, name="Bob"))
    await wait_until(daemon.finished(1), what="the first export")
    fake_braze.latency_s = 0.5
    daemon.drop("run1.txt", rows(300, name="Ann"))
    await wait_until(lambda: fake_braze.in_flight_requests > 0, what="requests in flight")
    assert await daemon.stop() == 0  # answered during the drain, then checkpointed
    fake_braze.latency_s = 0.0
    await daemon.start()  # run1 goes on from its checkpoint
    await wait_until(daemon.finished(2), what="the second export, after the restart")
    assert {fake_braze.attributes[f"u{i}"]["first_name"] for i in range(300)} == {
        f"Ann{i}" for i in range(300)
    }
    daemon.drop("run2.txt", rows(300, name="Bob"))
    await wait_until(daemon.finished(3), what="the third export")
    held = {f"u{i}": fake_braze.attributes[f"u{i}"]["first_name"] for i in range(300)}
    assert held == {f"u{i}": f"Bob{i}" for i in range(300)}
    assert await daemon.stop() == 0


async def test_rows_answered_after_a_change_of_workspace_are_not_remembered_for_the_new_one(
    daemon: InProcess, fake_braze: FakeBraze
) -> None:
    """A reload names another Braze workspace while requests to the old one are in flight:
    their answers come after the store was emptied for the new workspace, which never got
    those values (nor those the old store let the rows leave out): nothing is remembered of
    them, so the next export sends every row whole."""
    await daemon.start()
    daemon.drop("run0.txt", rows(300, name="Bob"))
    await wait_until(daemon.finished(1), what="the first export")
    fake_braze.latency_s = 0.5
    daemon.drop("run1.txt", rows(300, name="Ann"))  # first_name only: the rest is held
    await wait_until(lambda: fake_braze.in_flight_requests > 0, what="requests in flight")
    daemon.changes["braze"]["api_url"] = fake_braze.url.replace("127.0.0.1", "localhost")
    write_config(daemon.config_path, daemon.changes)
    assert daemon.daemon is not None
    assert daemon.daemon.reload()
    await wait_until(daemon.finished(2), what="the second export")
    fake_braze.latency_s = 0.0
    before = len(fake_braze.objects())
    daemon.drop("run2.txt", rows(300, name="Ann"))
    await wait_until(daemon.finished(3), what="the same rows, for the new workspace")
    sent = sent_for(fake_braze, before)
    assert sorted(o["external_id"] for o in sent) == sorted(f"u{i}" for i in range(300))
    assert all("country" in o for o in sent)  # whole: the new workspace holds nothing yet
    assert await daemon.stop() == 0


def done_line(caplog: pytest.LogCaptureFixture, file: int) -> str:
    """The done line of the file-th file done (1 is the first)."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done: ")]
    assert len(lines) >= file, lines
    return lines[file - 1]


@pytest.mark.parametrize("mapping_process", [True, False])
async def test_rows_unchanged_since_their_source_row_are_not_mapped_again(
    daemon: InProcess,
    fake_braze: FakeBraze,
    caplog: pytest.LogCaptureFixture,
    mapping_process: bool,
) -> None:
    """The prefilter (deltaprefilter.py): a row whose source row is the one its user's record
    was built from is skipped before it is mapped; a changed row, a row of a file whose
    columns moved and a row of an edited mapping are mapped and compared as before."""
    caplog.set_level(logging.INFO)
    daemon.changes["performance"] = {"mapping_process": mapping_process}
    await daemon.start()
    daemon.drop("run1.txt", rows(40))
    await wait_until(daemon.finished(1), what="the first file")
    assert "not even mapped" not in done_line(caplog, 1)

    daemon.drop("run2.txt", rows(40))
    await wait_until(daemon.finished(2), what="the same rows again")
    assert len(fake_braze.objects()) == 40  # nothing sent
    assert "(40 rows unchanged, not sent; 40 not even mapped)" in done_line(caplog, 2)
    assert points(daemon.metrics, "skipped") == 160  # as many as when they were compared

    changed = frozenset({3, 17, 29, 31})
    daemon.drop("run3.txt", rows(40, changed))
    await wait_until(daemon.finished(3), what="the changed rows")
    sent = sent_for(fake_braze, 40)
    assert sorted(o["external_id"] for o in sent) == [f"u{i}" for i in sorted(changed, key=str)]
    assert all(
        {k for k in o if not k.startswith("_")} == {"external_id", "first_name"} for o in sent
    )
    assert "(36 rows unchanged, not sent; 36 not even mapped)" in done_line(caplog, 3)
    assert points(daemon.metrics, "skipped") == 160 + 156

    # the same values, the columns in another order: mapped again (and found unchanged)
    moved = b"first_name,external_id,country,income\n" + b"".join(
        b"%s,%s,FR,%d\n" % (b"Ann2%d" % i if i in changed else b"Ann%d" % i, b"u%d" % i, 1000 + i)
        for i in range(40)
    )
    daemon.drop("run4.txt", moved)
    await wait_until(daemon.finished(4), what="the columns moved")
    assert len(fake_braze.objects()) == 44
    assert "(40 rows unchanged, not sent)" in done_line(caplog, 4)

    # an edited mapping: every row mapped again, and sent where its object changed
    assert daemon.daemon is not None
    first_name = {"column": "first_name", "case": "upper"}
    daemon.changes["channels"] = {UPSERT: {"mapping": {"attributes": {"first_name": first_name}}}}
    write_config(daemon.config_path, daemon.changes)
    assert daemon.daemon.reload()
    daemon.drop("run5.txt", rows(40, changed))
    await wait_until(daemon.finished(5), what="the rows of an edited mapping")
    again = sent_for(fake_braze, 44)
    assert sorted(o["first_name"] for o in again) == sorted(
        f"ANN2{i}" if i in changed else f"ANN{i}" for i in range(40)
    )
    assert "not even mapped" not in done_line(caplog, 5)
    assert await daemon.stop() == 0


async def test_a_row_that_dropped_a_field_is_mapped_again_and_its_drop_listed_again(
    daemon: InProcess, fake_braze: FakeBraze, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = (
        b"external_id,first_name,country,email\n"
        b"u0,Ann,FR,ann@example.com\n"
        b'u1,Bob,FR,"not, an email"\n'
        b"u2,Cy,FR,cy@example.com\n"
    )
    await daemon.start()
    daemon.drop("run1.txt", data)
    await wait_until(daemon.finished(1), what="the first file")
    daemon.drop("run2.txt", data)
    await wait_until(daemon.finished(2), what="the same rows again")
    assert len(fake_braze.objects()) == 3
    # u0 and u2 skipped unmapped; u1 mapped, compared (unchanged) and its drop listed again
    assert "(3 rows unchanged, not sent; 2 not even mapped)" in done_line(caplog, 2)
    folder = daemon.state / "rejects" / UPSERT / "Offer" / "wf-1"
    for name in ("run1.txt", "run2.txt"):
        assert (folder / f"{name}.dropped.csv").read_bytes().splitlines() == [
            b"_line,field,value,reason",
            b'3,email,"not, an email",not an email address',
        ]
    assert await daemon.stop() == 0


async def test_rows_skipped_before_a_change_of_workspace_are_sent_to_the_new_one(
    daemon: InProcess, fake_braze: FakeBraze, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefilter decided a chunk's rows unchanged against the old workspace's values, then
    a reload named another before the chunk was taken: the file is read again (a try that
    failed) and every row reaches the new workspace, which holds nothing."""
    from rpi_braze_sync.deltaskip import ChunkSkip

    # one try: reading the file again after a change of workspace is not a failed try
    daemon.changes["watch"] |= {"file_attempts": 1}
    await daemon.start()
    daemon.drop("run0.txt", rows(1200))
    await wait_until(daemon.finished(1), what="the first export")
    before = len(fake_braze.objects())
    daemon.changes["braze"]["api_url"] = fake_braze.url.replace("127.0.0.1", "localhost")
    write_config(daemon.config_path, daemon.changes)
    decide = ChunkSkip.decide

    async def decide_then_reload(skip: ChunkSkip, keys: Any) -> bytes:
        mask = await decide(skip, keys)
        if b"\0" in mask:  # skipped rows: the workspace changes before the chunk is taken
            monkeypatch.setattr(ChunkSkip, "decide", decide)
            assert daemon.daemon is not None
            assert daemon.daemon.reload()
        return mask

    monkeypatch.setattr(ChunkSkip, "decide", decide_then_reload)
    daemon.drop("run1.txt", rows(1200))  # unchanged: skipped, unmapped, for the old workspace
    await wait_until(daemon.finished(2), what="the same rows, for the new workspace")
    sent = sent_for(fake_braze, before)
    assert sorted({o["external_id"] for o in sent}) == sorted(f"u{i}" for i in range(1200))
    assert all("country" in o for o in sent)  # whole: the new workspace holds nothing yet
    assert await daemon.stop() == 0
