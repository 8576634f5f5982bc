"""The command line around delta (issue 16): `forget` clears what is sent again (it refuses
while a daemon holds the store, exit 75, and changes nothing then); `preview --explain` marks
what delta would leave out, reading the store beside a running daemon."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from rpi_braze_sync import delta
from rpi_braze_sync.cli import main
from rpi_braze_sync.deltastore import DeltaStore
from rpi_braze_sync.errors import EXIT_USAGE
from rpi_braze_sync.metrics import Metrics
from tests.e2e.conftest import UPSERT, wait_until, write_config
from tests.fakebraze import API_KEY, FakeBraze
from tests.integration.test_delta_pipeline import finished_in, rows
from tests.integration.test_pipeline import InProcess


@pytest.fixture
async def daemon(tmp_path: Path, fake_braze: FakeBraze) -> AsyncIterator[InProcess]:
    process = InProcess(tmp_path, fake_braze)
    process.changes["delta"] = {"enabled": True}
    yield process
    if process.task is not None and not process.task.done():
        await process.stop()


def forget(daemon: InProcess, *args: str) -> int:
    return main(["forget", "--config", str(daemon.config_path), *args])


async def send_again(daemon: InProcess, fake: FakeBraze, name: str) -> list[str]:
    before = len(fake.objects())
    daemon.metrics = Metrics()
    await daemon.start()
    daemon.drop(name, rows(4))
    await wait_until(daemon.finished(1), what=name)
    assert await daemon.stop() == 0
    return sorted(o["external_id"] for o in fake.objects()[before:])


async def test_forget_users_then_all(
    daemon: InProcess, fake_braze: FakeBraze, capsys: pytest.CaptureFixture[str]
) -> None:
    await daemon.start()
    daemon.drop("run1.txt", rows(4))
    await wait_until(daemon.finished(1), what="the first file")
    assert forget(daemon, "--all") == 75  # the running daemon holds the store
    assert "stop it first" in capsys.readouterr().err
    assert await daemon.stop() == 0

    assert forget(daemon, "--user", "u1", "u3", "nobody") == 0
    assert "forgot the values of 2 of 3 users" in capsys.readouterr().out
    assert await send_again(daemon, fake_braze, "run2.txt") == ["u1", "u3"]

    assert forget(daemon, "--all") == 0
    assert await send_again(daemon, fake_braze, "run3.txt") == ["u0", "u1", "u2", "u3"]


# A channel per identifier kind: (identifier, its column, the column's values in the file).
OTHER_KINDS = {
    "By Email": ({"email": {"column": "email"}}, "email", ["a@example.com", "b@example.com"]),
    "By Phone": ({"phone": {"column": "phone"}}, "phone", ["+33612345678", "+33687654321"]),
    "By Alias": (
        {"user_alias": {"name": {"column": "n"}, "label": {"value": "crm:x"}}},
        "n",
        ["n1", "n2"],
    ),
}


def drop_other_kinds(daemon: InProcess, name: str) -> None:
    for channel, (_, column, values) in OTHER_KINDS.items():
        lines = "".join(f"{value},Ann\n" for value in values)
        daemon.drop(name, f"{column},first_name\n{lines}".encode(), channel=channel)


async def send_other_kinds(daemon: InProcess, name: str) -> None:
    daemon.metrics = Metrics()
    await daemon.start()
    drop_other_kinds(daemon, name)
    for channel in OTHER_KINDS:
        await wait_until(finished_in(daemon, channel, 1), what=f"{name} of {channel}")
    assert await daemon.stop() == 0


async def test_forget_users_of_other_identifiers(
    daemon: InProcess, fake_braze: FakeBraze, capsys: pytest.CaptureFixture[str]
) -> None:
    """Email, phone and alias users are stored under their kind and values (NUL-separated,
    identifiers.identity), which argv cannot spell: --email, --phone and --alias name them;
    --user stays an external_id as it is, ':' and all."""
    first_name = {"first_name": {"column": "first_name"}}
    daemon.changes["channels"] = {
        channel: {"mode": "upsert", "mapping": {"identifier": identifier, "attributes": first_name}}
        for channel, (identifier, _, _) in OTHER_KINDS.items()
    }
    await send_other_kinds(daemon, "run1.txt")
    sent = len(fake_braze.objects())
    assert sent == 6

    assert forget(daemon, "--all", "--email", "a@example.com") == EXIT_USAGE
    assert "not with --all" in capsys.readouterr().err
    named = ["--email", "a@example.com", "--phone", "+33612345678", "--alias", "crm:x", "n2"]
    assert forget(daemon, *named, "--user", "email:b@example.com", "b@example.com") == 0
    assert "forgot the values of 3 of 5 users" in capsys.readouterr().out

    await send_other_kinds(daemon, "run2.txt")
    again = fake_braze.objects()[sent:]
    kinds = ("email", "phone", "user_alias")
    users = sorted(({k: o[k] for k in kinds if k in o} for o in again), key=repr)
    assert users == [
        {"email": "a@example.com"},
        {"phone": "+33612345678"},
        {"user_alias": {"alias_name": "n2", "alias_label": "crm:x"}},
    ]
    assert all(o["first_name"] == "Ann" for o in again)


async def test_forget_older_than(daemon: InProcess, fake_braze: FakeBraze) -> None:
    await daemon.start()
    daemon.drop("run1.txt", rows(4))
    await wait_until(daemon.finished(1), what="the first file")
    assert await daemon.stop() == 0
    # u2 was last sent 10 days ago: its record's time moved back, as a clock would have
    store = DeltaStore.open_existing(daemon.state)
    assert store is not None
    key = delta.user_key("u2")
    (record,) = store.lookup([key])
    assert record is not None
    old = int(time.time()) - 10 * 86400
    store.remember([(key, record[:2] + old.to_bytes(4, "little") + record[6:])])
    store.close()
    assert forget(daemon, "--older-than", "11") == 0
    assert await send_again(daemon, fake_braze, "run2.txt") == []
    assert forget(daemon, "--older-than", "9") == 0
    assert await send_again(daemon, fake_braze, "run3.txt") == ["u2"]


async def test_forget_without_a_store_says_so(
    tmp_path: Path, fake_braze: FakeBraze, capsys: pytest.CaptureFixture[str]
) -> None:
    process = InProcess(tmp_path, fake_braze)
    write_config(process.config_path, process.changes)
    assert forget(process, "--all") == 0
    assert "nothing remembered" in capsys.readouterr().out


async def test_preview_explain_marks_what_delta_would_skip(
    daemon: InProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRAZE_API_KEY", API_KEY)  # the workspace is checked
    await daemon.start()
    daemon.drop("run1.txt", rows(3))
    await wait_until(daemon.finished(1), what="the first file")
    changed = tmp_path / "elsewhere" / UPSERT / "Offer" / "wf-1" / "run2.txt"  # not watched
    changed.parent.mkdir(parents=True)
    changed.write_bytes(rows(3, frozenset({1})))
    args = ["preview", "--config", str(daemon.config_path), "--explain"]
    code = main([*args, str(changed)])
    assert code == 0  # beside the running daemon: the store read-only
    out = capsys.readouterr().out
    assert "delta: values remembered in" in out
    lines = [line.strip() for line in out.splitlines() if "-> delta:" in line]
    assert lines == [
        "-> delta: not sent: Braze holds all 4 values from us",
        '-> delta: skips country, rpi_cdp_attributes.income, rpi_offers add "Offer" (held by'
        " Braze); sends 1",
        "-> delta: not sent: Braze holds all 4 values from us",
    ]
    assert await daemon.stop() == 0


async def test_status_shows_data_points_per_file_and_for_30_days(
    daemon: InProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    await daemon.start()
    daemon.drop("run1.txt", rows(4))
    await wait_until(daemon.finished(1), what="the first file")
    daemon.drop("run2.txt", rows(4, frozenset({2})))
    await wait_until(daemon.finished(2), what="the second file")
    assert await daemon.stop() == 0
    capsys.readouterr()
    assert main(["status", "--config", str(daemon.config_path), "--json"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    files = {Path(f["path"]).name: f for f in document["journals"][0]["files"]}
    assert (files["run1.txt"]["data_points_sent"], files["run1.txt"]["data_points_skipped"]) == (
        16,
        0,
    )
    assert (files["run2.txt"]["data_points_sent"], files["run2.txt"]["data_points_skipped"]) == (
        1,
        15,
    )
    assert document["delta_last_30_days"] == {"data_points_sent": 17, "data_points_skipped": 15}
    assert main(["status", "--config", str(daemon.config_path)]) == 0
    text = capsys.readouterr().out
    assert "delta: 1 data points sent, 15 skipped" in text
    assert "delta, last 30 days: 17 data points sent, 15 skipped" in text
