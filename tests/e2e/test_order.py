"""Upsert and append files of one RPI workflow landing together: the append file's rows reach
Braze only after the upsert file created their users (Braze ignores them otherwise)."""

from __future__ import annotations

import asyncio
import os

from tests.e2e.conftest import APPEND, UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze

USERS = 200


def upsert_text(first: int, count: int) -> str:
    return "".join(f"u{i},First{i}\n" for i in range(first, first + count))


def append_text() -> str:
    return "external_id,output_name\n" + "".join(f"u{i},Loyalty\n" for i in range(USERS))


def flags(fake: FakeBraze) -> list[bool]:
    return [o["_update_existing_only"] for o in fake.objects()]


async def test_an_append_file_waits_for_an_upsert_file_still_being_written(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    upsert = daemon.export_path(UPSERT, "Spring", "wf-1", "upsert.txt")
    with upsert.open("w") as handle:
        handle.write("external_id,first_name\n" + upsert_text(0, 50))
        handle.flush()
        await asyncio.sleep(0.6)  # seen now, still being written
        append = daemon.export_path(APPEND, "Spring", "wf-1", "append.txt")
        append.write_text(append_text())  # complete long before the upsert file is
        for first in range(50, USERS, 50):
            await asyncio.sleep(0.7)  # under the settle time: the upsert is not complete
            handle.write(upsert_text(first, 50))
            handle.flush()
    await wait_until(lambda: len(fake_braze.objects()) == 2 * USERS, what="both files")
    assert await daemon.stop() == 0
    assert fake_braze.ignored_updates == []  # every append row found its user
    assert flags(fake_braze) == [False] * USERS + [True] * USERS
    log = daemon.log_text()
    assert f"waits for the upsert file {UPSERT}/Spring/wf-1/upsert.txt (still being written)" in log
    assert log.count("waits for the upsert file") == 1  # said once, not at every re-check


async def test_files_found_together_go_upsert_first_whatever_their_order_on_disk(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    assert await daemon.stop() == 0  # the first start is done: what comes now is news
    pairs = 3
    for n in range(pairs):
        upsert = daemon.export_path(UPSERT, f"Offer {n}", "wf", "upsert.txt")
        upsert.write_text("external_id,first_name\n" + upsert_text(n * USERS, USERS))
        append = daemon.export_path(APPEND, f"Offer {n}", "wf", "append.txt")
        append.write_text(
            "external_id,output_name\n"
            + "".join(f"u{i},Loyalty\n" for i in range(n * USERS, (n + 1) * USERS))
        )
        # The append file looks older: by modification time alone it would go first.
        stamp = upsert.stat().st_mtime_ns
        os.utime(append, ns=(stamp - 10**9, stamp - 10**9))
    await daemon.start()  # its first scan finds all six at once
    await wait_until(lambda: len(fake_braze.objects()) == 2 * pairs * USERS, what="all files")
    assert await daemon.stop() == 0
    assert fake_braze.ignored_updates == []
    by_user: dict[str, list[tuple[bool, int]]] = {}
    for position, obj in enumerate(fake_braze.objects()):
        by_user.setdefault(obj["external_id"], []).append((obj["_update_existing_only"], position))
    assert all(upsert < append for (_, upsert), (_, append) in by_user.values())
