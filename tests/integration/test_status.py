"""`status` and `retry` as an operator runs them (the console script, as a process): the
journal the configuration uses, both journals when both exist, the JSON document, filters,
ISO 8601 times and the exit statuses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from rpi_braze_sync.filestates import FileState
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from tests.e2e.conftest import UPSERT, write_config

SCRIPT = Path(sys.executable).parent / "rpi-braze-sync"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def setup(tmp: Path, dry_run_in_yaml: bool) -> tuple[Path, Path, Path]:
    """A configuration, its state directory and export folder (one export on the share)."""
    state, exports = tmp / "state", tmp / "exports"
    export = exports / UPSERT / "Spring" / "42" / "f.txt"
    export.parent.mkdir(parents=True)
    export.write_text("external_id\nu1\n")
    config = write_config(
        tmp / "c.yaml",
        {
            "braze": {"dry_run": dry_run_in_yaml},
            "state_directory": str(state),
            "watch": {"base_output_directory": str(exports)},
        },
    )
    return config, state, export


def add_record(state: Path, dry_run: bool, rel: str, state_name: FileState, total: int) -> None:
    journal = SqliteJournal(journal_path(state, dry_run))
    record = journal.record_complete(rel, UPSERT, 10, 1)
    journal.start(record.id, "0" * 64, 10, 1, total)
    journal.checkpoint(record.id, total // 4, total // 4 - 1, 1, 0)
    journal.finish(
        record.id, state_name, "line 3: not valid utf-8" if state_name == FileState.FAILED else None
    )
    journal.close()


REL = f"{UPSERT}/Spring/42/f.txt"


def test_status_and_retry_use_the_dry_run_journal_when_the_yaml_says_dry_run(
    tmp_path: Path,
) -> None:
    """Issue 12: `braze.dry_run: true` in the YAML selects the dry run's journal."""
    config, state, export = setup(tmp_path, dry_run_in_yaml=True)
    journal = SqliteJournal(journal_path(state, dry_run=True))
    record = journal.record_complete(REL, UPSERT, 10, 1)
    journal.finish(record.id, FileState.FAILED, "line 3: not valid utf-8")
    journal.close()
    shown = cli("status", "--config", str(config))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert REL in shown.stdout
    assert "reason: line 3: not valid utf-8" in shown.stdout
    assert "\n1 file: 1 failed; 0 rows sent" in shown.stdout
    queued = cli("retry", "--config", str(config), str(export))
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert "queued again" in queued.stdout
    assert not journal_path(state, dry_run=False).exists()  # the live journal was not made


def test_dry_run_flag_overrides_a_live_yaml(tmp_path: Path) -> None:
    config, state, _ = setup(tmp_path, dry_run_in_yaml=False)
    add_record(state, True, REL, FileState.DONE, 400)
    missing = cli("status", "--config", str(config))
    assert missing.returncode == 66
    assert "no live journal" in missing.stderr
    assert "the dry-run journal exists: add --dry-run" in missing.stderr
    shown = cli("status", "--config", str(config), "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert REL in shown.stdout


def document(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_both_journals_are_shown_the_one_in_use_first(tmp_path: Path) -> None:
    config, state, _ = setup(tmp_path, dry_run_in_yaml=False)
    add_record(state, False, REL, FileState.FAILED, 400)
    add_record(state, True, f"{UPSERT}/Spring/42/g.txt", FileState.DONE, 80)
    text = cli("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    live = text.stdout.index(f"live journal {journal_path(state, False)} (this configuration's)")
    dry = text.stdout.index(f"dry-run journal {journal_path(state, True)} (not this config")
    assert live < dry
    assert "f.txt" in text.stdout[live:dry]
    assert "g.txt" in text.stdout[dry:]
    doc = document(cli("status", "--config", str(config), "--json"))
    assert doc["schema_version"] == 1
    assert [(j["mode"], j["in_use"]) for j in doc["journals"]] == [
        ("live", True),
        ("dry-run", False),
    ]
    failed = doc["journals"][0]["files"][0]
    assert failed["path"] == REL
    assert (failed["state"], failed["rows_total"], failed["rows_settled"]) == (
        FileState.FAILED,
        400,
        100,
    )
    assert failed["percent"] == 25.0
    assert doc["journals"][1]["files"][0]["percent"] == 100.0
    for key in ("first_seen_at", "completed_at", "started_at", "finished_at", "updated_at"):
        assert ISO_UTC.match(failed[key]), (key, failed[key])
    assert failed["gone_at"] is None
    assert doc["journals"][0]["totals"] == {
        "files": 1,
        "by_state": {FileState.FAILED: 1},
        "rows_sent": 99,
        "rows_rejected": 1,
        "fields_dropped": 0,
    }


def test_status_table_has_totals_percentages_and_iso_times(tmp_path: Path) -> None:
    config, state, _ = setup(tmp_path, dry_run_in_yaml=False)
    add_record(state, False, REL, FileState.FAILED, 400)
    add_record(state, False, f"{UPSERT}/Spring/42/g.txt", FileState.DONE, 80)
    text = cli("status", "--config", str(config)).stdout
    failed_line = next(line for line in text.splitlines() if line.endswith("f.txt"))
    assert re.match(
        r"^failed\s+400\s+25%\s+99\s+1\s+0\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s", failed_line
    )
    assert "2 files: 1 done, 1 failed; 118 rows sent, 2 rejected, 0 fields dropped" in text


def test_state_filter(tmp_path: Path) -> None:
    config, state, _ = setup(tmp_path, dry_run_in_yaml=False)
    add_record(state, False, REL, FileState.FAILED, 400)
    add_record(state, False, f"{UPSERT}/Spring/42/g.txt", FileState.DONE, 80)
    doc = document(cli("status", "--config", str(config), "--json", "--state", "failed"))
    assert [f["path"] for f in doc["journals"][0]["files"]] == [REL]
    both = document(
        cli("status", "--config", str(config), "--json", "--state", "failed", "--state", "done")
    )
    assert len(both["journals"][0]["files"]) == 2
    wrong = cli("status", "--config", str(config), "--state", "finished")
    assert wrong.returncode == 64
    assert "invalid choice: 'finished'" in wrong.stderr


def test_missing_journal_exits_66_and_json_errors_are_json(tmp_path: Path) -> None:
    config, _, _ = setup(tmp_path, dry_run_in_yaml=False)
    text = cli("status", "--config", str(config))
    assert text.returncode == 66
    assert "no live journal at" in text.stderr
    as_json = cli("status", "--config", str(config), "--json")
    assert as_json.returncode == 66
    error = json.loads(as_json.stdout)["error"]
    assert error["exit_status"] == 66
    assert "no live journal at" in error["message"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("braze: [\n")
    bad_config = cli("status", "--config", str(broken), "--json")
    assert bad_config.returncode == 78
    assert json.loads(bad_config.stdout)["error"]["problems"][0].startswith("configuration error:")


def test_retry_of_unknown_or_missing_files(tmp_path: Path) -> None:
    config, state, export = setup(tmp_path, dry_run_in_yaml=False)
    add_record(state, False, f"{UPSERT}/Spring/42/other.txt", FileState.DONE, 10)
    unknown = cli("retry", "--config", str(config), str(export))
    assert unknown.returncode == 64
    assert "not in the journal" in unknown.stderr
    gone = cli("retry", "--config", str(config), str(export.parent / "nothing.txt"))
    assert gone.returncode == 66
    outside = cli("retry", "--config", str(config), str(tmp_path / "elsewhere.txt"))
    assert outside.returncode == 64
    assert "not under the export folder" in outside.stderr


def test_retry_takes_the_path_as_the_shell_completed_it_or_as_status_shows_it(
    tmp_path: Path,
) -> None:
    """A path relative to the current folder (as the shell completes it), and a name that is
    not UTF-8 as `status` and the status page's command show it (\\xff), both find the file."""
    config, state, export = setup(tmp_path, dry_run_in_yaml=False)
    odd_name = os.fsdecode(b"odd\xff.txt")
    (export.parent / odd_name).write_text("external_id\nu1\n")
    for rel in (REL, f"{UPSERT}/Spring/42/{odd_name}"):
        add_record(state, False, rel, FileState.FAILED, 10)
    from_cwd = subprocess.run(
        [str(SCRIPT), "retry", "--config", str(config), str(export.relative_to(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert from_cwd.returncode == 0, from_cwd.stderr
    assert "queued again" in from_cwd.stdout
    shown = f"{UPSERT}/Spring/42/odd\\xff.txt"
    assert shown in cli("status", "--config", str(config)).stdout
    displayed = cli("retry", "--config", str(config), shown)
    assert displayed.returncode == 0, displayed.stderr
    assert "queued again" in displayed.stdout


def test_a_retried_file_is_listed_once_with_its_latest_attempt(tmp_path: Path) -> None:
    config, state, export = setup(tmp_path, dry_run_in_yaml=False)
    add_record(state, False, REL, FileState.FAILED, 400)
    add_record(state, False, f"{UPSERT}/Spring/42/g.txt", FileState.DONE, 80)
    assert cli("retry", "--config", str(config), str(export)).returncode == 0
    journal = SqliteJournal(journal_path(state, dry_run=False))
    retried = journal.latest(REL)
    assert retried is not None
    assert retried.retry
    journal.finish(retried.id, FileState.FAILED, "line 9: not valid utf-8")
    journal.close()
    doc = document(cli("status", "--config", str(config), "--json"))
    files = doc["journals"][0]["files"]
    assert [(f["path"], f["id"], f["retry"]) for f in files] == [
        (f"{UPSERT}/Spring/42/g.txt", 2, False),
        (REL, retried.id, True),
    ]
    assert doc["journals"][0]["totals"]["files"] == 2
    shown = cli("status", "--config", str(config))
    assert shown.stdout.count(REL) == 1
    assert "line 3: not valid utf-8" not in shown.stdout  # the first attempt's reason
    assert "\n2 files: 1 done, 1 failed;" in shown.stdout
