"""The reader splits a line without a quote at the delimiter itself and hands csv only the
lines with one (or every line, in a file quoted all over): the records, their line numbers and
the rows cut off at the end must be exactly what csv.reader makes of the whole file."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpi_braze_sync import reader as reader_module
from rpi_braze_sync.inspection import inspect_file
from rpi_braze_sync.plan import ReadFormat
from rpi_braze_sync.reader import ExportReader
from rpi_braze_sync.settings import FormatSettings
from tests.examples import examples

Records = list[tuple[int, list[str]]]  # (line where the record starts, cells)


def csv_records(text: str, delimiter: str) -> tuple[list[str], Records, list[int]]:
    """csv.reader over the whole text, as the reader ran before it split lines itself; and
    the record csv ended at the end of the text inside a quoted field, if any."""
    ended = []

    def lines() -> Iterator[str]:
        yield from io.StringIO(text, newline="")
        ended.append(True)

    rows = csv.reader(lines(), delimiter=delimiter, strict=False)
    header = next(rows)
    records, unclosed, line_no = [], [], rows.line_num + 1
    for cells in rows:
        if cells:
            records.append((line_no, cells))
            if ended:
                unclosed.append(line_no)
        line_no = rows.line_num + 1
    return header, records, unclosed


def read(path: Path, fmt: FormatSettings, batch: int) -> tuple[list[str], Records, list[int]]:
    """Every record through take_batch, `batch` at a time; the rows cut off at the end."""
    with ExportReader(path, inspect_file(path, fmt), ReadFormat.of(fmt)) as reader:
        records: Records = []
        unclosed = []
        while True:
            taken = reader.take_batch(batch)
            records += zip(taken.line_numbers, taken.rows, strict=True)
            unclosed += [taken.line_numbers[i] for i, _ in taken.unread]
            if taken.at_end:
                return reader.header, records, unclosed


CELL = st.lists(
    st.sampled_from(["a", "b", ",", ";", '"', "\n", "\r\n", "\r", " ", "é", "\x00"]), max_size=6
).map("".join)
LINE = st.lists(st.sampled_from(["a", ",", '"', " ", "é", ";", '""']), max_size=8).map("".join)


@settings(max_examples=examples(200), deadline=None)
@given(
    rows=st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=30),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    line_end=st.sampled_from(["\n", "\r\n"]),
    delimiter=st.sampled_from([",", ";"]),
    stray=st.lists(st.tuples(st.integers(0, 40), LINE), max_size=4),
    blank_every=st.integers(0, 5),
    end=st.sampled_from(["", "\n", '"open\n']),
    batch=st.integers(1, 7),
    csv_batches=st.integers(1, 3),
)
def test_records_are_those_csv_makes_of_the_file(
    rows: list[list[str]],
    quoting: Literal[0, 1],  # csv.QUOTE_MINIMAL, csv.QUOTE_ALL
    line_end: str,
    delimiter: str,
    stray: list[tuple[int, str]],
    blank_every: int,
    end: str,
    batch: int,
    csv_batches: int,
) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=line_end)
    writer.writerow(["h1", "h2"])
    lines = []
    for i, row in enumerate(rows):
        row_text = io.StringIO(newline="")
        csv.writer(
            row_text, delimiter=delimiter, quoting=quoting, lineterminator=line_end
        ).writerow(row)
        lines.append(row_text.getvalue())
        if blank_every and i % blank_every == 0:
            lines.append(line_end)
    for at, line in stray:  # lines no csv.writer makes: stray and unbalanced quotes
        lines.insert(min(at, len(lines)), line + line_end)
    text = out.getvalue() + "".join(lines) + end
    mp = pytest.MonkeyPatch()
    mp.setattr(reader_module, "CSV_BATCHES", csv_batches)  # back to splitting soon
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "export.txt"
            path.write_text(text, encoding="utf-8", newline="")
            header, records, unclosed = read(path, FormatSettings(delimiter=delimiter), batch)
    finally:
        mp.undo()
    assert (header, records, unclosed) == csv_records(text, delimiter)


def test_a_file_quoted_all_over_is_read_by_csv_then_split_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quotes on most lines of a batch: csv reads the next CSV_BATCHES batches itself
    (cheaper than a line at a time); then the reader splits lines again, where it can."""
    monkeypatch.setattr(reader_module, "CSV_BATCHES", 2)
    quoted = "".join(f'"{i}","x, {i}"\n' for i in range(10))
    plain = "".join(f"{i},y{i}\n" for i in range(10, 20))
    path = tmp_path / "export.txt"
    path.write_text("id,v\n" + quoted + plain, encoding="utf-8")
    fmt = FormatSettings()
    with ExportReader(path, inspect_file(path, fmt), ReadFormat.of(fmt)) as reader:
        csv_batches_left, cells, at_end = [], [], False
        while not at_end:
            taken = reader.take_batch(3)
            csv_batches_left.append(reader._csv_batches)  # (how the next batch is read)
            cells += taken.rows
            at_end = taken.at_end
    expected = [[str(i), f"x, {i}"] for i in range(10)] + [[str(i), f"y{i}"] for i in range(10, 20)]
    assert cells == expected
    # Rows 0-2 split, all quoted: csv reads 3-5 and 6-8; 9-11 split again (one quoted of
    # three), and so on.
    assert csv_batches_left == [2, 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("delimiter", ["\t", "|"])
def test_other_delimiters_are_split_like_csv(tmp_path: Path, delimiter: str) -> None:
    text = f'a{delimiter}b\n1{delimiter}2, 3\n\n"x{delimiter}y"{delimiter}4\n5{delimiter}\n'
    path = tmp_path / "export.txt"
    path.write_text(text, encoding="utf-8")
    assert read(path, FormatSettings(), 2) == csv_records(text, delimiter)
    _, records, _ = read(path, FormatSettings(), 2)
    assert records[0] == (2, ["1", "2, 3"])
