"""End to end: the real daemon process, real files dropped into the share, a real fake Braze."""

from __future__ import annotations

import asyncio
import signal

import pytest

from rpi_braze_sync.errors import EXIT_CONFIG
from tests.e2e.conftest import APPEND, UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze

HEADER = (
    "RPContactID,ChannelExecutionID,external_id,first_name,last_name,email,country,dob,gender,"
    "home_city,phone,Output Name,education,income,marital status"
)
HANDMADE = [
    "901,5501,u-ann,Ann,Lee,ann@example.com,France,1990-02-03,female,Paris,+33123456789,Spring Sale,Master,55000,married",
    "902,5501,,Bob,Nobody,bob@example.com,US,1980-01-01,M,Boston,,Spring Sale,,,",
    '903,5501,u-cy,"Cy, ""the"" Second",Doe,not-an-email,Atlantis,1990-02-30,x,"Multi\r\nline",,Spring Sale,PhD,12.5,2020-05-06',
]


def upsert_rows(count: int) -> list[str]:
    return [
        f"{1000 + i},5501,u{i},First{i},Last{i},u{i}@example.com,DE,1985-06-{1 + i % 28:02d},F,Berlin,,"
        f"Spring Sale,School,{i},single"
        for i in range(count)
    ]


async def write_slowly(path_text: str, pieces: list[str], pause_s: float, path: object) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:  # type: ignore[call-overload]  # noqa: ASYNC230
        for piece in pieces:
            handle.write(piece)
            handle.flush()
            await asyncio.sleep(pause_s)


@pytest.mark.parametrize("mapping_process", [False, True], ids=["in-process", "mapping-process"])
async def test_upsert_and_append_exports_reach_braze_exactly(
    daemon: DaemonProcess, fake_braze: FakeBraze, mapping_process: bool
) -> None:
    daemon.settings["performance"] = {"mapping_process": mapping_process}
    await daemon.start()
    upsert = daemon.export_path(UPSERT, "Spring Offer", "wf-17", "RPI_Export_17.txt")
    rows = [*HANDMADE, *upsert_rows(300)]
    text = HEADER + "\r\n" + "\r\n".join(rows) + "\r\n"
    pieces = [text[i : i + len(text) // 6 + 1] for i in range(0, len(text), len(text) // 6 + 1)]
    # Six pieces, 0.6 s apart: longer than the poll interval, shorter than the settle time.
    await write_slowly("", pieces, 0.6, upsert)
    append = daemon.export_path(APPEND, "Spring Offer", "wf-18", "RPI_Export_18.txt")
    append.write_text("external_id,output_name\nu-ann,Loyalty\nu1,Loyalty\n,Loyalty\n")
    sidecar = upsert.with_name("RPI_Export_17.txt_summary.xml")
    sidecar.write_text("<summary/>")

    await wait_until(lambda: len(fake_braze.objects()) >= 302 + 2, what="all objects")
    await asyncio.sleep(0.5)
    assert await daemon.stop() == 0

    objects = fake_braze.objects()
    assert len(objects) == 304  # 302 upsert rows + 2 append rows; every user once
    by_user = {o["external_id"]: o for o in objects if not o["_update_existing_only"]}
    assert by_user["u-ann"] == {
        "external_id": "u-ann",
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "ann@example.com",
        "country": "FR",
        "dob": "1990-02-03",
        "gender": "F",
        "home_city": "Paris",
        "phone": "+33123456789",
        "rpi_audience_outputs": {"add": ["Spring Sale"]},
        "rpi_offers": {"add": ["Spring Offer"]},
        "rpi_contact_ids": {"add": ["901"]},
        "rpi_channel_exec_ids": {"add": ["5501"]},
        "rpi_cdp_attributes": {"education": "Master", "income": 55000, "marital_status": "married"},
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    # Bad optional values are dropped from the row, which is still sent.
    assert by_user["u-cy"] == {
        "external_id": "u-cy",
        "first_name": 'Cy, "the" Second',
        "last_name": "Doe",
        "home_city": "Multi\r\nline",
        "rpi_audience_outputs": {"add": ["Spring Sale"]},
        "rpi_offers": {"add": ["Spring Offer"]},
        "rpi_contact_ids": {"add": ["903"]},
        "rpi_channel_exec_ids": {"add": ["5501"]},
        "rpi_cdp_attributes": {
            "education": "PhD",
            "income": 12.5,
            "marital_status": {"$time": "2020-05-06"},
        },
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    assert by_user["u7"]["rpi_cdp_attributes"] == {
        "education": "School",
        "income": 7,
        "marital_status": "single",
    }
    appended = [o for o in objects if o["_update_existing_only"]]
    assert appended == [
        {
            "external_id": "u-ann",
            "rpi_audience_outputs": {"add": ["Loyalty"]},
            "rpi_offers": {"add": ["Spring Offer"]},
            "_update_existing_only": True,
        },
        {
            "external_id": "u1",
            "rpi_audience_outputs": {"add": ["Loyalty"]},
            "rpi_offers": {"add": ["Spring Offer"]},
            "_update_existing_only": True,
        },
    ]
    # The append file went only after every upsert row was acknowledged.
    flags = [o["_update_existing_only"] for o in objects]
    assert flags == [False] * 302 + [True] * 2
    assert all(len(body["attributes"]) <= 75 for body in fake_braze.requests)

    rejects = (
        daemon.state
        / "rejects"
        / UPSERT
        / "Spring Offer"
        / "wf-17"
        / "RPI_Export_17.txt.rejects.csv"
    )
    lines = rejects.read_text().splitlines()
    assert lines[0] == HEADER + ",_line,_reason"
    assert (
        lines[1]
        == "902,5501,,Bob,Nobody,bob@example.com,US,1980-01-01,M,Boston,,Spring Sale,,,,3,external_id is empty"
    )
    dropped = (rejects.parent / "RPI_Export_17.txt.dropped.csv").read_text().splitlines()
    assert dropped[0] == "_line,field,value,reason"
    assert {line.split(",")[1] for line in dropped[1:]} == {"email", "country", "dob", "gender"}
    assert all(line.startswith("4,") for line in dropped[1:])
    append_rejects = (
        daemon.state
        / "rejects"
        / APPEND
        / "Spring Offer"
        / "wf-18"
        / "RPI_Export_18.txt.rejects.csv"
    )
    assert append_rejects.read_text().splitlines()[1] == ",Loyalty,4,external_id is empty"
    assert "summary" not in daemon.log_text()  # sidecars are not even logged as ignored
    assert fake_braze.api_key not in daemon.log_text()


async def test_first_start_skips_existing_files_then_sends_new_ones(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    old = daemon.export_path(UPSERT, "Old Offer", "wf-1", "old.txt")
    old.write_text("external_id,first_name\nold1,Old\n")
    await daemon.start()
    await asyncio.sleep(2.5)  # longer than the settle time
    assert fake_braze.objects() == []
    new = daemon.export_path(UPSERT, "New Offer", "wf-2", "new.txt")
    new.write_text("external_id,first_name\nnew1,New\n")
    await wait_until(lambda: len(fake_braze.objects()) == 1, what="the new file")
    assert await daemon.stop() == 0

    # Down for a while: a file that arrives meanwhile is sent at the next start, the old
    # one still is not, and the one already done is not sent again.
    later = daemon.export_path(UPSERT, "New Offer", "wf-3", "later.txt")
    later.write_text("external_id,first_name\nlater1,Later\n")
    await daemon.start()
    await wait_until(lambda: len(fake_braze.objects()) == 2, what="the file that came while down")
    await asyncio.sleep(2.5)
    assert await daemon.stop() == 0
    assert [o["external_id"] for o in fake_braze.objects()] == ["new1", "later1"]


async def test_backfill_sends_existing_files(daemon: DaemonProcess, fake_braze: FakeBraze) -> None:
    old = daemon.export_path(UPSERT, "Old Offer", "wf-1", "old.txt.gz")
    import gzip

    old.write_bytes(gzip.compress(b"external_id\tfirst_name\r\nold1\tOld\r\n"))
    daemon.settings["watch"]["backfill"] = True
    await daemon.start()
    await wait_until(lambda: len(fake_braze.objects()) == 1, what="the backfilled file")
    assert await daemon.stop(signal.SIGINT) == 0
    assert fake_braze.objects()[0]["first_name"] == "Old"


@pytest.mark.parametrize("how", ["--dry-run", "braze.dry_run"])
async def test_a_dry_run_then_a_live_run_on_the_same_state_directory(
    daemon: DaemonProcess, fake_braze: FakeBraze, how: str
) -> None:
    """The promised flow: try the share in dry run, read the outbox, go live: the files the
    dry run processed are sent; what was there before the very first start still is not."""
    old = daemon.export_path(UPSERT, "Old Offer", "wf-1", "old.txt")
    old.write_text("external_id,first_name\nold1,Old\n")
    if how == "--dry-run":
        await daemon.start("--dry-run")
    else:
        daemon.settings["braze"]["dry_run"] = True
        await daemon.start()
    export = daemon.export_path(APPEND, "Offer", "wf-9", "RPI_Export_9.txt")
    export.write_text("external_id|output_name\nu1|Audience A\n")
    outbox = daemon.state / "outbox" / APPEND / "Offer" / "wf-9" / "RPI_Export_9.txt.jsonl"
    await wait_until(outbox.exists, what="the outbox file")
    await wait_until(lambda: (daemon.state / "journal-dry-run.sqlite").exists(), what="journal")
    assert await daemon.stop() == 0
    assert outbox.read_text() == (
        '{"attributes":[{"external_id":"u1","rpi_audience_outputs":{"add":["Audience A"]},'
        '"rpi_offers":{"add":["Offer"]},"_update_existing_only":true}]}\n'
    )
    assert fake_braze.requests == []
    assert not (daemon.state / "journal.sqlite").exists()

    daemon.settings["braze"]["dry_run"] = False
    await daemon.start()
    await wait_until(lambda: len(fake_braze.objects()) == 1, what="the live send")
    await asyncio.sleep(2.5)  # longer than the settle time: the old file would have gone
    assert await daemon.stop() == 0
    assert fake_braze.users() == ["u1"]
    assert (
        "first live run on this state directory (a dry run used it first): the 1 files there "
        "before the dry run's first start stay unsent; the 1 others there now" in daemon.log_text()
    )


async def test_a_broken_config_stops_start_up_with_status_78(daemon: DaemonProcess) -> None:
    daemon.settings["channels"] = {
        "Braze Append": {
            "mode": "apend",
            "mapping": {"identifier": {"external_id": {"column": "external_id"}}},
        }
    }
    await daemon.start(wait_ready=False)
    assert daemon.proc is not None
    assert await asyncio.wait_for(daemon.proc.wait(), 15) == EXIT_CONFIG
    log = daemon.log_text()
    assert "channels.'Braze Append'.mode: 'apend' is not one of upsert, append" in log
    assert str(daemon.config) in log
