"""The status page's pure parts: the rate history, the daemon's checks in words, why a file
waits, the retry command a person copies."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rpi_braze_sync.filestates import FileState
from rpi_braze_sync.journal import FileRecord
from rpi_braze_sync.ratehistory import HISTORY_STEPS, Samples
from rpi_braze_sync.statuschecks import daemon_state
from rpi_braze_sync.statusinputs import JournalView, Live, Setup
from rpi_braze_sync.statuspage import retry_command, waiting
from rpi_braze_sync.statusweb import program

NOW = 1_800_000_000.0


def record(
    file_id: int, rel_path: str, channel: str, state: str = "complete", **kw: object
) -> FileRecord:
    fields: dict[str, object] = {
        "id": file_id, "rel_path": rel_path, "channel": channel, "size": 1, "mtime_ns": file_id,
        "sha256": None, "state": state, "checkpoint": 0, "rows_sent": 0, "rows_rejected": 0,
        "fields_dropped": 0, "reason": None, "first_seen_at": NOW - 100 + file_id,
        "completed_at": NOW - 50 + file_id, "started_at": None, "finished_at": None,
        "updated_at": NOW, "gone_at": None, "rpi_call": None, "retry": 0, "rows_total": None,
        "settled_ahead": None,
    }  # fmt: skip
    fields.update(kw)
    return FileRecord(**fields)  # type: ignore[arg-type]


SETUP = Setup(
    config_path="/etc/rpi-braze-sync/rpi-braze-sync.yaml",
    state_directory="/var/lib/rpi-braze-sync",
    state_directory_in_yaml=True,
    program="rpi-braze-sync",
    export_folder=None,
    modes={"up": "upsert", "app": "append"},
    append_delay_s=10.0,
    settle_s=10.0,
    export_values=lambda rel: None,
)
LIVE = Live(
    now=NOW, version="1.0", role=None, dry_run=False, problems=[], braze_failing_s=0.0,
    auth_failing=False, auth_message="", last_success_at=NOW - 3, share_available=True,
    reloads_applied=0, reloads_failed=0, last_reload_ok=True, active=None, history=[],
)  # fmt: skip


def test_history_counts_rows_per_minute_and_nothing_before_the_first_sample() -> None:
    samples = Samples()
    for step in range(0, 91):  # 180 s at 10 rows/s, sampled every 2 s
        samples.add(1000.0 + 2 * step, 20 * step, None, 0)
    points = samples.history(1180.0)
    assert len(points) == HISTORY_STEPS
    assert all(p is None for p in points[:-3])
    assert [(p.rows, p.rows_per_s) for p in points[-3:] if p] == [(600, 10.0)] * 3


def test_one_row_a_minute_is_a_rate_above_zero() -> None:
    samples = Samples()
    samples.add(1000.0, 0, None, 0)
    samples.add(1060.0, 1, None, 0)
    last = samples.history(1060.0)[-1]
    assert last is not None
    assert (last.rows, last.rows_per_s) == (1, 0.02)


def test_a_files_rate_comes_from_its_own_samples_only() -> None:
    samples = Samples()
    samples.add(100.0, 0, 7, 500)
    assert samples.file_rate(100.5, 8, 10) is None  # another file: no rate yet
    samples.add(102.0, 0, 8, 0)
    assert samples.file_rate(110.0, 8, 800) == pytest.approx(100.0)
    assert samples.file_rate(200.0, 8, 800) is None  # nothing in the last half minute


def test_checks_in_words() -> None:
    state = daemon_state(LIVE)
    assert (state.braze_reachable.text, state.key_accepted.text) == ("yes", "yes")
    down = daemon_state(replace(LIVE, braze_failing_s=90.0, problems=["Braze has not answered"]))
    assert (down.ready, down.braze_reachable.ok, down.braze_reachable.text) == (False, False, "no")
    assert "1 min 30 s" in down.braze_reachable.detail
    blip = daemon_state(replace(LIVE, braze_failing_s=5.0))
    assert (blip.braze_reachable.ok, blip.braze_reachable.text) == (True, "retrying")
    refused = daemon_state(replace(LIVE, auth_failing=True, auth_message="401 Unauthorized"))
    assert (refused.key_accepted.ok, refused.key_accepted.text) == (False, "no")
    assert refused.key_accepted.detail.endswith("401 Unauthorized")
    # Refused from the start: Braze answered, so it is reachable (not "not tried yet").
    first = daemon_state(replace(LIVE, auth_failing=True, last_success_at=None))
    assert (first.braze_reachable.ok, first.braze_reachable.text) == (True, "yes")
    assert "refuses the key or URL" in first.braze_reachable.detail
    bad_reload = daemon_state(replace(LIVE, reloads_failed=1, last_reload_ok=False))
    assert bad_reload.config_reloaded.text == "refused"
    fresh = daemon_state(replace(LIVE, last_success_at=None))
    assert (fresh.key_accepted.ok, fresh.key_accepted.text) == (None, "not tried yet")


def view(
    queued: list[FileRecord], unfinished: list[FileRecord], last_sent: float | None
) -> JournalView:
    return JournalView(queued, unfinished, last_sent, [], 0, 1, [], 0)


def test_why_an_append_file_waits() -> None:
    writing = record(1, "up/o/1/a.txt", "up", state=FileState.SEEN)
    append = record(2, "app/o/2/b.txt", "app")
    upsert = record(3, "up/o/3/c.txt", "up")
    held = waiting(view([append, upsert], [writing, append, upsert], None), SETUP, NOW, None)
    paths = ["app/o/2/b.txt", "up/o/3/c.txt", "up/o/1/a.txt"]
    assert ([w.path for w in held.files], held.total) == (paths, 3)
    assert held.files[0].reason is not None
    assert held.files[0].reason.startswith("waits for the upsert file up/o/1/a.txt (still being")
    assert held.files[1].reason is None
    assert (held.files[2].state, held.files[2].reason) == (
        "seen",
        "still being written: it joins the queue once unchanged for 10 s (watch.settle_seconds)",
    )
    unreadable = replace(writing, reason="cannot be opened: Permission denied (waiting)")
    assert waiting(view([], [unreadable], None), SETUP, NOW, None).files[0].reason == (
        "cannot be opened: Permission denied (waiting)"
    )
    delayed = waiting(view([append], [], NOW - 4), SETUP, NOW, None)
    assert delayed.files[0].reason is not None
    assert delayed.files[0].reason.startswith("waits 6.0 s more after the last upsert file sent")
    assert waiting(view([append], [], NOW - 11), SETUP, NOW, None).files[0].reason is None
    active = waiting(view([append, upsert], [], None), SETUP, NOW, active_id=2)
    assert (active.total, [w.position for w in active.files]) == (1, [1])


def test_the_retry_command_survives_a_shell() -> None:
    rel = "up/o'brien/1/my file $(x).txt"
    command = retry_command(rel, SETUP, dry_run=False)
    assert shlex.split(command) == ["rpi-braze-sync", "retry", "--config", SETUP.config_path, rel]
    outside = replace(SETUP, state_directory_in_yaml=False)
    assert shlex.split(retry_command(rel, outside, dry_run=True))[4:] == [
        "--state-directory", "/var/lib/rpi-braze-sync", "--dry-run", rel,
    ]  # fmt: skip
    assert "\\n" in retry_command("up/o/1/a\nb.txt", SETUP, False)  # one line, always


def test_the_retry_command_runs_as_written_from_any_folder(tmp_path: Path) -> None:
    """Started by a path (make run) with the export folder from the environment: the command
    names both, and a shell passes them on as they are."""
    program = tmp_path / "bin dir" / "rpi-braze-sync"
    program.parent.mkdir()
    program.write_text('#!/bin/sh\nprintf "%s\\n" "$BASE_OUTPUT_DIRECTORY" "$@"\n')
    program.chmod(0o755)
    folder, rel = "/srv/o'dd exports", "up/o/1/my file $(x).txt"
    setup = replace(SETUP, program=str(program), export_folder=folder)
    command = retry_command(rel, setup, dry_run=False)
    ran = subprocess.run(["sh", "-c", command], cwd="/", capture_output=True, text=True, check=True)
    assert ran.stdout.splitlines() == [folder, "retry", "--config", SETUP.config_path, rel]


def test_the_command_by_name_when_path_finds_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "rpi-braze-sync"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "run"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert program() == str(script)  # not on PATH: its path
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert program() == "rpi-braze-sync"
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/site-packages/rpi_braze_sync/__main__.py"])
    assert program() == "rpi-braze-sync"  # python -m: the name the package installs
