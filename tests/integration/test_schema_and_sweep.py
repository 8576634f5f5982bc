"""The shipped JSON Schema matches the code's models; the journal forgets finished files only
after they have been gone from the share for the retention period."""

from __future__ import annotations

import json
from pathlib import Path

from rpi_braze_sync.filestates import FileState
from rpi_braze_sync.settings import json_schema
from rpi_braze_sync.sqlitejournal import SqliteJournal

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_schema_is_generated_from_the_models() -> None:
    shipped = json.loads((ROOT / "config" / "rpi-braze-sync.schema.json").read_text())
    assert shipped == json_schema(), (
        "run: rpi-braze-sync schema > config/rpi-braze-sync.schema.json"
    )


def test_the_shipped_yaml_points_editors_at_the_schema() -> None:
    first = (ROOT / "config" / "rpi-braze-sync.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=rpi-braze-sync.schema.json"


def test_the_schema_knows_the_public_keys() -> None:
    properties = json_schema()["properties"]
    assert isinstance(properties, dict)
    assert {"braze", "watch", "state_directory", "http", "channels"} <= set(properties)


def test_sweep_keeps_records_of_present_files_and_forgets_long_gone_ones(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.sqlite")
    kept = journal.record_complete("C/o/w/kept.txt", "C", 1, 1)
    gone = journal.record_complete("C/o/w/gone.txt", "C", 1, 1)
    back = journal.record_complete("C/o/w/back.txt", "C", 1, 1)
    for record in (kept, gone, back):
        journal.finish(record.id, FileState.DONE)
    assert journal.sweep({"C/o/w/kept.txt"}, retention_s=3600) == 0  # gone ones get a date
    assert journal.get(gone.id).gone_at is not None
    assert journal.get(kept.id).gone_at is None
    assert journal.sweep({"C/o/w/kept.txt", "C/o/w/back.txt"}, retention_s=3600) == 0
    assert journal.get(back.id).gone_at is None  # it came back: the clock stops
    assert journal.sweep({"C/o/w/kept.txt", "C/o/w/back.txt"}, retention_s=-1) == 1
    assert [r.rel_path for r in journal.all()] == ["C/o/w/kept.txt", "C/o/w/back.txt"]
    journal.close()
