"""pgcheckpoints.CheckpointWriter (its thread, with a stand-in for the database write): the
caller is told once its values, or newer ones of the file, are written, never before, also
when a write failed first and was tried again."""

from __future__ import annotations

import threading
import time

import pytest

from rpi_braze_sync.errors import JournalError
from rpi_braze_sync.pgcheckpoints import CheckpointWriter, Values


def values(checkpoint: int) -> Values:
    return (checkpoint, None, checkpoint, 0, 0, None, None)


def test_written_is_called_once_the_values_or_newer_ones_are_written() -> None:
    stored: dict[int, int] = {}
    told: list[tuple[str, int | None]] = []  # (who, what was stored then)
    failing = threading.Event()
    failing.set()
    release = threading.Event()

    def write(file_id: int, written: Values) -> None:
        release.wait(10)
        if failing.is_set():
            failing.clear()
            raise JournalError("the database is gone")
        stored[file_id] = written[0]

    writer = CheckpointWriter(write, lambda: None)
    try:
        writer.put(1, values(10), lambda: told.append(("first", stored.get(1))))
        release.set()  # the first write fails; its values and their caller are kept
        with pytest.raises(JournalError):
            writer.drain(timeout_s=10)
        assert told == []
        with pytest.raises(JournalError):  # (while writes fail; the values are kept all the same)
            writer.put(1, values(20), lambda: told.append(("second", stored.get(1))))
        deadline = time.monotonic() + 10
        while not told and time.monotonic() < deadline:  # tried again a second later
            time.sleep(0.05)
        writer.drain(timeout_s=10)
        assert stored == {1: 20}
        assert told == [("first", 20), ("second", 20)]
    finally:
        writer.close()
