"""deltacolumns: a chunk's summaries made from what its bodies were made of (the values
converted, or their JSON remembered from an earlier chunk: columncache.py) are the bytes
deltabody.summary makes of each body, parsed: on every test mapping, whatever the rows hold
(the executors' Hypothesis strategies: messy cells, wrong widths, rejected rows); and they are
made from the columns, not by parsing, wherever the chunk allows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpi_braze_sync import deltaassembly, deltarecord
from rpi_braze_sync.deltabody import summary
from rpi_braze_sync.deltacolumns import Recorded, from_columns, summaries
from rpi_braze_sync.deltaprefilter import keepable, with_raw
from rpi_braze_sync.deltarecord import COLLIDES, NO_RAW, RAW_AT, WHOLE_AT
from rpi_braze_sync.mapper import FileMapper
from rpi_braze_sync.mapper import bind as bind_mapping
from rpi_braze_sync.mapping import MappingPlan
from tests.unit.test_property import (
    CASES,
    PROPERTY_SETTINGS,
    SHIPPED_COLUMNS,
    SHIPPED_MAPPING,
    TYPED_CELLS,
    WIDE_COLUMNS,
    WIDE_MAPPING,
    compile_yaml,
    header_and_rows,
    short_text,
)

# Nested objects replaced whole (merge: false), a `$time` beside plain values in one column
# (`values` gives a date or a text), an array with two values added and one removed.
REPLACED = compile_yaml("""
channels:
  C:
    mode: upsert
    mapping:
      identifier:
        external_id: {column: id}
      attributes:
        seen: {column: seen, type: time}
        code: {column: code, values: {'1': 2, '2': true}}
        city: {column: city, empty: 'null'}
      arrays:
        tags:
          add: [{column: tag}, {column: code}]
          remove: {column: untag}
      nested:
        prefs:
          merge: false
          keys:
            news: {column: news, type: boolean}
            since: {column: since, type: time}
            label: {value: web}
        extra:
          merge: false
          columns: remaining
""")
REPLACED_COLUMNS = {
    "id": "id", "seen": "time", "code": "text", "city": "text", "tag": "text", "untag": "text",
    "news": "boolean", "since": "time",
}  # fmt: skip
ALL_CASES = [
    *CASES,
    pytest.param(REPLACED, REPLACED_COLUMNS, {"id"}, id="replaced-nested-objects"),
]


PLAUSIBLE = {"email": "a@b.co", "country": "FR", "date": "1990-01-02", "gender": "f",
             "phone": "+33612345678", "integer": "42", "time": "2024-01-01T00:00:00Z",
             "boolean": "yes"}  # fmt: skip


def column_summaries(mapper: FileMapper, rows: list[list[str]]) -> list[bytes | None]:
    """The summaries deltacolumns makes of the chunk, None where it leaves a row to parsing."""
    recorded: list[Recorded] = []
    assert mapper.map_chunk is not None
    bodies, _, _ = mapper.map_chunk(rows, list(range(2, len(rows) + 2)), recorded)
    return from_columns(recorded[0], bodies) if recorded else [None] * len(rows)


@pytest.mark.parametrize(("mapping", "columns", "required"), ALL_CASES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_summaries_from_the_columns_are_those_of_the_parsed_bodies(
    mapping: MappingPlan, columns: dict[str, str], required: set[str], data: st.DataObject
) -> None:
    header, rows, path_values = data.draw(header_and_rows(columns, required, max_rows=12))
    if data.draw(st.booleans()):  # a chunk where a column is the same in every row
        column = data.draw(st.integers(min_value=0, max_value=len(header) - 1))
        name = header[column].strip()
        value = data.draw(TYPED_CELLS[columns[name]] if name in columns else short_text)
        for row in rows:
            if len(row) > column:
                row[column] = value
    mapper = bind_mapping(mapping, header, path_values)
    mapped = mapper.map_rows(rows, list(range(2, len(rows) + 2)), delta=True)
    assert mapped.summaries is not None
    assert len(mapped.summaries) == len(rows)
    for body, found in zip(mapped.bodies, mapped.summaries, strict=True):
        assert found == (None if body is None else summary(body)), body
    # Given each row's raw fingerprint, a summary names its source row where it may.
    raws = [NO_RAW if i % 3 == 2 else (i + 1).to_bytes(8, "big") for i in range(len(rows))]
    named = mapper.map_rows(rows, list(range(2, len(rows) + 2)), True, raws).summaries
    assert named == [
        s if s is None or i in mapped.dropped or not keepable(s) else with_raw(s, raws[i])
        for i, s in enumerate(mapped.summaries)
    ]
    if mapper.map_chunk is not None:  # again: the cells' JSON remembered, before any parsing
        for i, found in enumerate(column_summaries(mapper, rows)):
            assert found is None or found == mapped.summaries[i]


@pytest.mark.parametrize(
    ("mapping", "columns"),
    [(SHIPPED_MAPPING, SHIPPED_COLUMNS), (REPLACED, REPLACED_COLUMNS)],
    ids=["shipped-upsert", "replaced-nested-objects"],
)
def test_a_clean_chunk_is_summarised_from_its_columns(
    mapping: MappingPlan, columns: dict[str, str]
) -> None:
    # Without parsing: a row left to deltabody.summary here would be the cost this removes.
    header = list(columns)
    rows = [[PLAUSIBLE.get(kind, f"{name}-{i % 3}") for name, kind in columns.items()]
            for i in range(20)]  # fmt: skip
    for i, row in enumerate(rows):
        row[0] = f"u-{i}"
    mapper = bind_mapping(mapping, header, {"offer": "Spring", "workflow_id": "7"})
    bodies = mapper.map_rows(rows, list(range(2, 22))).bodies
    assert None not in bodies
    expected = [summary(b) for b in bodies if b is not None]
    mapper = bind_mapping(mapping, header, {"offer": "Spring", "workflow_id": "7"})
    assert column_summaries(mapper, rows) == expected  # from the values converted
    assert column_summaries(mapper, rows) == expected  # from their JSON remembered


def test_a_wide_chunk_with_rows_left_to_the_row_function() -> None:
    # A short row and a row with an empty identifier are mapped row by row: their summaries
    # are parsed, the others' still made from the columns.
    header = list(WIDE_COLUMNS)
    good = ["u-1", "a@b.co", "1990-01-02", "FR", "f", "3", "0.5", "true", "2024-01-01T00:00:00Z",
            "x", "Paris", "+33612345678", "t", "", "yes", "2024-02-02T00:00:00Z"]  # fmt: skip
    rows = [good, good[:-1], ["", *good[1:]], *([f"u-{i}", *good[1:]] for i in range(3))]
    mapper = bind_mapping(WIDE_MAPPING, header, {"offer": "O"})
    found = column_summaries(mapper, rows)
    mapped = mapper.map_rows(rows, list(range(2, len(rows) + 2)), delta=True)
    assert [f is not None for f in found] == [True, False, False, True, True, True]
    assert mapped.summaries == [None if b is None else summary(b) for b in mapped.bodies]


def test_bodies_alone_are_parsed() -> None:
    body = b'{"external_id":"u","a":1,"n":{"k":"v"},"t":{"add":["x"]},"_merge_objects":true}'
    assert summaries([body, body]) == [summary(body)] * 2
    assert summaries([]) == []


def _colliding_email_and_dob(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> tuple[list[str], list[list[str]]]:
    """Two paths sharing one 4-byte fingerprint (1 in 4 billion a pair), forced; the shipped
    mapping's header and `n` plausible rows."""
    monkeypatch.setattr(deltarecord, "_path_fps", {"email": b"same", "dob": b"same"})
    monkeypatch.setattr(deltarecord, "_shapes", {})
    monkeypatch.setattr(deltaassembly, "_heads", {})
    rows = [[PLAUSIBLE.get(kind, f"{name}-{i % 3}") for name, kind in SHIPPED_COLUMNS.items()]
            for i in range(n)]  # fmt: skip
    return list(SHIPPED_COLUMNS), rows


def test_rows_of_several_patterns_and_paths_that_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rows lacking different fields are summarised by pattern; the rows holding both colliding
    # paths are made alone, sent whole (COLLIDES), and the others of their chunk as usual.
    header, rows = _colliding_email_and_dob(monkeypatch, 12)
    for i, row in enumerate(rows):
        row[0] = f"u-{i}"
        row[header.index("email" if i % 3 else "dob")] = "" if i % 2 else row[3]
    mapper = bind_mapping(SHIPPED_MAPPING, header, {"offer": "Spring", "workflow_id": "7"})
    bodies = mapper.map_rows(rows, list(range(2, 14))).bodies
    found = column_summaries(mapper, rows)
    assert found == [None if b is None else summary(b) for b in bodies]
    assert {s[1] & COLLIDES for s in found if s is not None} == {0, COLLIDES}


@pytest.mark.parametrize("all_collide", [False, True])
def test_rows_whose_paths_collide_never_name_their_source_row(
    monkeypatch: pytest.MonkeyPatch, all_collide: bool
) -> None:
    """Beside rows that dropped a field, rows of the wrong width and rejected rows, cold and
    from remembered parts: a colliding row is sent whole, so it must never be skipped unmapped
    (found missing by review: no test passed raws with colliding paths)."""
    header, rows = _colliding_email_and_dob(monkeypatch, 24)
    for i, row in enumerate(rows):
        row[0] = f"u-{i}" if i % 11 else ""  # rejected rows
        if not all_collide:
            row[header.index("email" if i % 3 else "dob")] = "" if i % 2 else row[3]
        if i % 5 == 0:
            row[header.index("dob")] = "2024-02-30"  # dropped
        if i % 7 == 0:
            row.append("x")  # wrong width: the row function's
    raws = [(i + 1).to_bytes(8, "big") for i in range(len(rows))]
    mapper = bind_mapping(SHIPPED_MAPPING, header, {"offer": "Spring", "workflow_id": "7"})
    for _ in range(2):  # cold, then remembered parts
        mapped = mapper.map_rows(rows, list(range(2, len(rows) + 2)), True, raws)
        expected = [None if b is None else summary(b) for b in mapped.bodies]
        expected = [
            s if s is None or i in mapped.dropped or not keepable(s) else with_raw(s, raws[i])
            for i, s in enumerate(expected)
        ]
        assert mapped.summaries == expected
        assert COLLIDES in {s[1] & COLLIDES for s in mapped.summaries if s is not None}
        named = [s for s in mapped.summaries if s is not None and s[RAW_AT:WHOLE_AT] != NO_RAW]
        assert bool(named) == (not all_collide)
        for i, s in enumerate(mapped.summaries):
            if s is not None and (s[1] & COLLIDES or i in mapped.dropped):
                assert s[RAW_AT:WHOLE_AT] == NO_RAW
