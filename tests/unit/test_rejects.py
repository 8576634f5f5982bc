"""The rejects file lines up with its header whatever the width of a rejected row: a row
with too few or too many fields keeps `_line` and `_reason` under their own names, so a
spreadsheet (or the file dropped back) never reads a line number as a value."""

from __future__ import annotations

import csv
from pathlib import Path

from rpi_braze_sync.rejects import RejectsWriter

HEADER = ["external_id", "first_name"]
ROWS = [(2, ["f6", "A", "extra"], "too many"), (3, ["f7"], "too few"), (4, ["f8", "B"], "ok")]


def read(path: Path) -> list[dict[str | None, str | list[str]]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def expected() -> list[dict[str | None, str | list[str]]]:
    return [
        {"external_id": "f6", "first_name": "A", "_line": "2", "_reason": "too many",
         None: ["extra"]},
        {"external_id": "f7", "first_name": "", "_line": "3", "_reason": "too few"},
        {"external_id": "f8", "first_name": "B", "_line": "4", "_reason": "ok"},
    ]  # fmt: skip


def test_rows_of_any_width_keep_line_and_reason_in_their_columns(tmp_path: Path) -> None:
    writer = RejectsWriter(tmp_path, "up/o/1/f.txt", HEADER, fresh=True)
    for line_no, cells, reason in ROWS:
        writer.reject(line_no, cells, reason)
    writer.close()
    assert read(writer.rejects_path) == expected()


def test_the_rewritten_file_lines_up_too(tmp_path: Path) -> None:
    writer = RejectsWriter(tmp_path, "up/o/1/f.txt", HEADER, fresh=False)
    writer.rewrite(list(reversed(ROWS)))
    writer.close()
    assert read(writer.rejects_path) == expected()
