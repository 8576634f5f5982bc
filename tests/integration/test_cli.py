"""The command line as an operator uses it: preview, check and status, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rpi_braze_sync.errors import EXIT_CONFIG
from tests.e2e.conftest import APPEND, SHIPPED_CONFIG, UPSERT, write_config


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpi_braze_sync.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def export(tmp: Path, channel: str, text: str) -> Path:
    folder = tmp / channel / "Spring Offer" / "wf-3"
    folder.mkdir(parents=True)
    path = folder / "RPI_Export_3.txt"
    path.write_text(text)
    return path


def test_preview_prints_objects_and_reasons_without_network_or_state(tmp_path: Path) -> None:
    path = export(
        tmp_path,
        UPSERT,
        "external_id,dob,gender,Output Name,score\nu1,1990-01-31,male,Spring,7\n,1990-01-01,F,Spring,1\nu3,1990-13-01,F,Spring,\n",
    )
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = cli("preview", "--config", str(SHIPPED_CONFIG), str(path), cwd=workdir)
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects == [
        {
            "external_id": "u1",
            "dob": "1990-01-31",
            "gender": "M",
            "rpi_audience_outputs": {"add": ["Spring"]},
            "rpi_offers": {"add": ["Spring Offer"]},
            "rpi_cdp_attributes": {"score": 7},
            "_merge_objects": True,
            "_update_existing_only": False,
        },
        {
            "external_id": "u3",
            "gender": "F",
            "rpi_audience_outputs": {"add": ["Spring"]},
            "rpi_offers": {"add": ["Spring Offer"]},
            "_update_existing_only": False,
        },
    ]
    assert "line 3: rejected: external_id is empty" in result.stderr
    assert "line 4: dropped dob='1990-13-01': not a real date" in result.stderr
    assert "2 objects, 1 rows rejected, 1 fields dropped" in result.stderr
    assert list(workdir.iterdir()) == []  # no state written


def test_preview_explain_shows_rows_beside_objects_and_counts_reasons(tmp_path: Path) -> None:
    rows = "".join(f"u{i},{'bad' if i % 3 == 0 else '1990-01-01'},Spring\n" for i in range(1, 10))
    path = export(tmp_path, UPSERT, "external_id,dob,Output Name\n" + rows + ",1990-01-01,Spring\n")
    result = cli(
        "preview", "--config", str(SHIPPED_CONFIG), "--explain", "--sample", "2", str(path)
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        "line 2:\n  external_id = 'u1'\n  dob         = '1990-01-01'\n  Output Name = 'Spring'\n  -> {"
        in out
    )
    assert "line 3:" in out
    assert "line 4:" not in out  # only the sample is shown
    assert "9 objects, 1 rows rejected, 3 fields dropped" in out
    assert "  rejected 1 x external_id is empty" in out
    assert "  dropped 3 x dob: not a yyyy-MM-dd date" in out


def test_preview_of_a_file_outside_the_layout_needs_a_channel(tmp_path: Path) -> None:
    path = tmp_path / "loose.csv"
    path.write_text("external_id,output_name\nu1,A\n")
    refused = cli("preview", "--config", str(SHIPPED_CONFIG), str(path))
    assert refused.returncode == EXIT_CONFIG
    assert "use --channel" in refused.stderr
    chosen = cli("preview", "--config", str(SHIPPED_CONFIG), "--channel", APPEND, str(path))
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["_update_existing_only"] is True


def test_check_validates_config_and_exports(tmp_path: Path) -> None:
    good = export(tmp_path, APPEND, "external_id,output_name\nu1,A\n,B\n")
    ok = cli("check", "--config", str(SHIPPED_CONFIG), str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 of the first 1000 rows would be rejected" in ok.stdout
    bad_header = tmp_path / "x" / APPEND / "o" / "w" / "f.txt"
    bad_header.parent.mkdir(parents=True)
    bad_header.write_text("id,output_name\n1,A\n")
    failed = cli("check", "--config", str(SHIPPED_CONFIG), str(bad_header))
    assert failed.returncode == EXIT_CONFIG
    assert "the identifier column 'external_id' is missing" in failed.stdout


def test_check_reports_every_config_error_with_its_line(tmp_path: Path) -> None:
    text = SHIPPED_CONFIG.read_text()
    text = text.replace("  settle_seconds: 10", "  settle_seconds: soon\n  settle_minutes: 1")
    text = text.replace("    mode: append", "    mode: apend")
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    lines = text.splitlines()
    settle_line = next(i for i, line in enumerate(lines, 1) if "settle_seconds: soon" in line)
    mode_line = next(i for i, line in enumerate(lines, 1) if "mode: apend" in line)
    result = cli("check", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    problems = result.stderr.splitlines()
    assert (
        f"configuration error: {config}:{settle_line}:19: watch.settle_seconds: Input should be a valid number, unable to parse string as a number"
        in problems
    )
    assert (
        f"configuration error: {config}:{settle_line + 1}:3: watch.settle_minutes: unknown key (allowed: base_output_directory, settle_seconds, observer, backfill, poll_interval_seconds, rescan_interval_seconds, path_pattern, archive_directory)"
        in problems
    )
    assert (
        f"configuration error: {config}:{mode_line}:11: channels.'Braze Append'.mode: 'apend' is not one of upsert, append"
        in problems
    )


def test_status_lists_files_by_state(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", {"state_directory": str(tmp_path / "state")})
    empty = cli("status", "--config", str(config))
    assert empty.returncode == 0
    assert "no journal" in empty.stdout
    from rpi_braze_sync.journal import FAILED, Journal, journal_path

    journal = Journal(journal_path(tmp_path / "state", dry_run=False))
    record = journal.record_complete(f"{UPSERT}/o/w/f.txt", UPSERT, 10, 1)
    journal.finish(record.id, FAILED, "line 3: not valid utf-8")
    journal.close()
    table = cli("status", "--config", str(config))
    assert table.returncode == 0, table.stderr
    assert "failed" in table.stdout
    assert "reason: line 3: not valid utf-8" in table.stdout
    as_json = cli("status", "--config", str(config), "--json")
    row = json.loads(as_json.stdout)
    assert (row["state"], row["rel_path"]) == ("failed", f"{UPSERT}/o/w/f.txt")
