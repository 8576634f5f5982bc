"""Log lines name files as they are, escaped: a line end in a file name cannot forge a line,
and a name that is not UTF-8 neither breaks a JSON line nor raises."""

from __future__ import annotations

import logging
import os

import orjson
import pytest

from rpi_braze_sync.logs import (
    JsonFormatter,
    TextFormatter,
    display_name,
    export_logger,
    undisplay_name,
)

ODD_NAME = os.fsdecode(b"RPI_\xff\xfe_\n" + b"ERROR rpi_braze_sync.app: forged.txt")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("RPI_Export_1.txt", "RPI_Export_1.txt"),
        ("Offre spéciale", "Offre spéciale"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("bell\x07 esc\x1b[31m del\x7f", "bell\\x07 esc\\x1b[31m del\\x7f"),
        (os.fsdecode(b"caf\xe9.txt"), "caf\\xe9.txt"),
        ("line\u2028sep\x85", "line\\u2028sep\\x85"),
    ],
)
def test_display_name(text: str, shown: str) -> None:
    assert display_name(text) == shown


@pytest.mark.parametrize("text", [ODD_NAME, "a\nb\rc\td", "bell\x07 esc\x1b", "line\u2028sep"])
def test_a_shown_name_leads_back_to_the_name(text: str) -> None:
    """What `status` shows, pasted into `retry`, names the file (C1 controls aside: \\x85
    is read as the byte 0x85 that was not UTF-8, the likelier of the two)."""
    assert undisplay_name(display_name(text)) == text


def record(
    message: str, *args: object, export: dict[str, object] | None = None
) -> logging.LogRecord:
    entry = logging.LogRecord(
        "rpi_braze_sync.watch", logging.INFO, __file__, 1, message, args, None
    )
    if export is not None:
        entry.export = export
    return entry


def test_text_lines_stay_one_line_per_record() -> None:
    formatter = TextFormatter(with_time=False)
    line = formatter.format(record("ignoring %s: a symlink", ODD_NAME))
    assert "\n" not in line
    assert line == (
        "INFO rpi_braze_sync.watch: ignoring RPI_\\xff\\xfe_\\nERROR rpi_braze_sync.app:"
        " forged.txt: a symlink"
    )
    values = {"channel": "C", "offer": "O", "workflow_id": "1", "file_name": ODD_NAME}
    logger = export_logger(logging.getLogger("x"), values)
    assert logger.extra is not None
    prefixed = formatter.format(record("done", export=dict(logger.extra)))
    assert "\n" not in prefixed
    assert "file_name='RPI_\\xff\\xfe_\\nERROR" in prefixed


def test_json_lines_hold_a_name_that_is_not_utf8() -> None:
    line = JsonFormatter().format(
        record("sending %s", ODD_NAME, export={"file_name": ODD_NAME, "offer": "O"})
    )
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["message"] == "sending RPI_\\xff\\xfe_\\nERROR rpi_braze_sync.app: forged.txt"
    assert entry["file_name"].startswith("RPI_\\xff\\xfe_\\n")
