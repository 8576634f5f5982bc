"""Delta and kill -9 (issue 16), real daemon processes against the fake Braze: killed mid-file
twice, restarted, the profiles the fake holds equal a model in which every row was applied
(no value skipped wrongly: nothing unacknowledged was remembered)."""

from __future__ import annotations

import signal
from typing import Any

from tests.e2e.conftest import UPSERT, DaemonProcess, wait_until
from tests.e2e.test_durability import records, slow_daemon, state_of
from tests.e2e.test_hostile_share import status_json
from tests.fakebraze import FakeBraze, apply_object

ROWS = 1500
HEADER = "external_id,first_name,country,income\n"


def content(version: int) -> list[tuple[str, str, str, int]]:
    """Version 1; version 2 changes first_name in one row of five and income in one of twenty;
    version 3 is version 1 again (every change reverted)."""
    out = []
    for i in range(ROWS):
        name, income = f"Name{i}", 1000 + i
        if version == 2 and i % 5 == 3:
            name += "b"
        if version == 2 and i % 20 == 7:
            income += 1
        out.append((f"u{i}", name, "FR", income))
    return out


def text(rows: list[tuple[str, str, str, int]]) -> str:
    return HEADER + "".join(f"{u},{n},{c},{i}\n" for u, n, c, i in rows)


def model(versions: list[int]) -> dict[str, dict[str, Any]]:
    """Every row of every version applied in order, nothing skipped."""
    profiles: dict[str, dict[str, Any]] = {}
    for version in versions:
        for user, name, country, income in content(version):
            obj = {
                "external_id": user,
                "first_name": name,
                "country": country,
                "rpi_offers": {"add": ["O"]},
                "rpi_cdp_attributes": {"income": income},
                "_merge_objects": True,
            }
            apply_object(profiles.setdefault(user, {}), obj)
    return profiles


async def send_killing_midway(
    daemon: DaemonProcess, fake: FakeBraze, name: str, version: int, after: int
) -> None:
    """Drop the file, kill -9 once `after` objects of it arrived, restart, wait until done."""
    before = len(fake.objects())
    daemon.export_path(UPSERT, "O", "1", name).write_text(text(content(version)))
    await wait_until(lambda: len(fake.objects()) >= before + after, timeout_s=30, what=name)
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    assert state_of(daemon, name) == "sending"
    await daemon.start()
    await wait_until(lambda: state_of(daemon, name) == "done", timeout_s=60, what=f"{name} done")


async def test_kill_9_mid_file_never_skips_a_value_braze_lacks(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    slow_daemon(daemon, fake_braze)
    daemon.settings["delta"] = {"enabled": True}
    await daemon.start()
    await send_killing_midway(daemon, fake_braze, "v1.txt", 1, after=500)
    sent_v1 = len(fake_braze.objects())
    await send_killing_midway(daemon, fake_braze, "v2.txt", 2, after=40)
    sent_v2 = len(fake_braze.objects()) - sent_v1
    # only the changed rows (and those in flight at the kill) went again
    changed = sum(1 for i in range(ROWS) if i % 5 == 3 or i % 20 == 7)
    assert changed <= sent_v2 <= changed + 40
    daemon.export_path(UPSERT, "O", "1", "v3.txt").write_text(text(content(3)))
    await wait_until(lambda: state_of(daemon, "v3.txt") == "done", timeout_s=60, what="v3")
    assert await daemon.stop() == 0
    held = fake_braze.attributes
    expected = model([1, 2, 1])
    assert set(held) == set(expected)
    wrong = {u: (held[u], expected[u]) for u in expected if held[u] != expected[u]}
    assert not wrong, list(wrong.items())[:5]


def count_points(obj: dict[str, Any]) -> int:
    """Braze's data points of one object: one per attribute, per nested key, per array value
    added or removed (the identifier and the _flags are free)."""
    points = 0
    for name, value in obj.items():
        if name == "external_id" or name.startswith("_"):
            continue
        if isinstance(value, dict) and value and set(value) <= {"add", "remove"}:
            points += sum(len(values) for values in value.values())
        elif isinstance(value, dict):
            points += len(value)
        else:
            points += 1
    return points


def points(objects: list[dict[str, Any]]) -> int:
    return sum(map(count_points, objects))


async def test_kill_9_mid_file_status_counts_both_processes_data_points(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    """The file's data points are checkpointed with its rows: the restarted daemon continues
    from them, and status shows the whole file's, not only the last process's."""
    slow_daemon(daemon, fake_braze)
    daemon.settings["delta"] = {"enabled": True}
    await daemon.start()
    daemon.export_path(UPSERT, "O", "1", "v1.txt").write_text(text(content(1)))
    await wait_until(lambda: len(fake_braze.objects()) >= 500, timeout_s=30, what="500 rows")
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    # The fake records a request's objects after its latency: those the killed process had in
    # flight land after the kill, and belong to it, not to the next process.
    await wait_until(lambda: fake_braze.in_flight_requests == 0, what="the killed requests")
    first = fake_braze.objects()
    per_row = count_points(first[0])  # nothing remembered: every row whole
    assert all(count_points(o) == per_row for o in first)
    killed = records(daemon)["v1.txt"]
    settled = killed.checkpoint + sum(end - start for start, end in killed.ahead)
    assert settled > 0
    assert killed.points_sent is not None
    assert killed.points_sent >= per_row * settled  # counted before their rows settled
    await daemon.start()
    await wait_until(lambda: state_of(daemon, "v1.txt") == "done", timeout_s=60, what="v1 done")
    assert await daemon.stop() == 0
    sent_after = points(fake_braze.objects()[len(first) :])
    shown = status_json(daemon)["v1.txt"]
    sent, skipped = shown["data_points_sent"], shown["data_points_skipped"]
    assert isinstance(sent, int)
    assert isinstance(skipped, int)
    # The rows settled before the kill were counted by the first process, the rest by the
    # second (sent, or skipped where the first had remembered them before its checkpoint).
    assert sent >= per_row * settled + sent_after
    assert sent + skipped >= per_row * ROWS
