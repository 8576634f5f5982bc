"""The JSON of a column's cells remembered per file (columncache.py): a chunk of known cells
is mapped from the cache alone, a bad cell is dropped again in every chunk with its reason,
and a column of distinct texts stops being looked up. The property tests compare every body
with the oracle's; these pin what the cache itself does."""

from __future__ import annotations

import orjson

from rpi_braze_sync.chunks import Drop
from rpi_braze_sync.columncache import EncodedCells, cells_cache
from rpi_braze_sync.mapping import Mapped
from rpi_braze_sync.parsers import SKIP
from tests.unit.test_property import SHIPPED_MAPPING, bind

HEADER = ["external_id", "gender", "email", "Loyalty Number", "income"]


def test_known_cells_are_looked_up_and_only_the_others_converted() -> None:
    cache = EncodedCells(8, b',"g":')
    assert cache.look_up(["M", "F"]) is None  # nothing known yet: the column form's
    cache.learn(["m", "f", "", "x"], ["M", "F", SKIP, SKIP], bad={"x"})
    assert cache.known == {"m": b',"g":"M"', "f": b',"g":"F"', "": b""}
    assert cache.look_up(["f", "", "m"]) == ([b',"g":"F"', b"", b',"g":"M"'], [])
    # "x" was bad: never remembered, so it is converted (and dropped) again.
    found = cache.look_up(["m", "x", "female"])
    assert found == ([b',"g":"M"', None, None], [1, 2])
    encoded, missing = found
    cache.fill(encoded, missing, [SKIP, "F"])
    assert encoded == [b',"g":"M"', b"", b',"g":"F"']


def test_a_column_of_distinct_texts_turns_its_cache_off() -> None:
    cache = EncodedCells(1024, b',"e":')
    cells = [f"u{i}@example.com" for i in range(500)]
    cache.learn(cells, cells, bad=set())  # 500 new texts in a chunk of 500
    assert not cache.on
    assert cache.look_up(cells) is None
    full = EncodedCells(4, b',"g":')
    full.learn(["a", "b", "c"], ["A", "B", "C"], bad=set())
    full.learn(["d", "e"], ["D", "E"], bad=set())  # more than its room: off
    assert not full.on


def test_chunk_after_chunk_a_bad_cell_is_dropped_each_time_with_its_reason() -> None:
    mapper = bind(SHIPPED_MAPPING, HEADER)
    assert mapper.map_chunk is not None
    rows = [
        ["u1", "male", "a@example.com", "007", "<25k"],
        ["u2", "x", "b@example.com", "0012", "55000"],
        ["u3", "Female", "c@example.com", "", ""],
    ]
    for start in (2, 5, 8):  # the same cells again: from the cache after the first chunk
        lines = [start, start + 1, start + 2]
        bodies, users, drops = mapper.map_chunk(rows, lines)
        assert users == ["u1", "u2", "u3"]
        for row, line, body in zip(rows, lines, bodies, strict=True):
            expected = mapper.map_row(row, line)
            assert isinstance(expected, Mapped)
            assert body == orjson.dumps(expected.attributes)
        assert drops == {
            1: [Drop(start + 1, "gender", "x", "not a gender (M, F, O, N, P, male, female, other)")]
        }
    assert bodies[0] is not None
    nested = orjson.loads(bodies[0])["rpi_cdp_attributes"]
    assert nested == {"loyalty_number": "007", "income": "<25k"}


def test_a_file_too_wide_for_a_useful_cache_gets_none() -> None:
    # Over 256 columns a column gets fewer entries and chunks of a few rows: no cache (10,000
    # columns' worth of small ones held 8 MB and cost time).
    assert cells_cache(255, b',"c":') is None
    assert cells_cache(256, b',"c":') is not None


def test_a_nested_object_over_the_limit_is_found_from_cached_cells_too() -> None:
    # The size bound of a nested object takes a cached column's longest known text instead
    # of a pass over its cells: a remembered 255-character text of control characters (6
    # bytes of JSON each) in 80 columns is still over 100 KB, left to the row function.
    extra = [f"column_{i:02d}" for i in range(80)]
    mapper = bind(SHIPPED_MAPPING, ["external_id", *extra])
    assert mapper.map_chunk is not None
    big, small = ["u1", *["\x01" * 255] * 80], ["u2", *["\x01"] * 80]
    for start in (2, 4, 6):  # the second and third chunk from the cache
        bodies, _, _ = mapper.map_chunk([big, small], [start, start + 1])
        assert bodies[0] is None
        expected = mapper.map_row(small, start + 1)
        assert isinstance(expected, Mapped)
        assert bodies[1] == orjson.dumps(expected.attributes)
        whole = mapper.map_rows([big, small], [start, start + 1])
        oracle = mapper.map_row(big, start)
        assert isinstance(oracle, Mapped)
        assert "rpi_cdp_attributes" not in oracle.attributes
        assert whole.bodies[0] == orjson.dumps(oracle.attributes)
