from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from rpi_braze_sync.jsonpieces import (
    encode,
    encode_recorded,
    encode_strings,
    joined,
    quoted_strings,
)
from rpi_braze_sync.parsers import SKIP

QUOTY = st.text(alphabet='",\\ab', max_size=6)


def test_a_cell_ending_in_a_quote_and_comma_stays_one_string() -> None:
    # b'\\",' then the next item's quote reads as the separator b'","' in the joined array.
    assert encode_strings(['",', ""]) == [b'\\",', b""]
    assert encode_strings(["a", '",', "b"]) == [b"a", b'\\",', b"b"]


@given(st.lists(QUOTY, min_size=1, max_size=5))
def test_each_string_is_its_own_json_text(values: list[str]) -> None:
    encoded = encode_strings(values)
    assert [orjson.loads(b'"' + e + b'"') for e in encoded] == values


def test_a_first_string_of_a_comma_is_not_read_as_a_separator() -> None:
    # '[","]': from the array's first quote, '","' is the string itself.
    assert quoted_strings([",", "a"]) == [b'","', b'"a"']
    assert quoted_strings(["", ",", ""]) == [b'""', b'","', b'""']


@given(st.lists(st.text(alphabet='",\\a\x00\n', max_size=6), min_size=1, max_size=5))
def test_quoted_strings_are_each_value_as_orjson_writes_it(values: list[str]) -> None:
    # Delta fingerprints these bytes: they must be exactly the value's own encoding.
    assert quoted_strings(values) == [orjson.dumps(v) for v in values]


MIXED = st.lists(
    st.one_of(
        st.just(SKIP),
        QUOTY,
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
)


@given(MIXED, st.booleans())
def test_recorded_pieces_are_encodes_and_their_texts_each_value(
    values: list[Any], suffixed: bool
) -> None:
    suffix = b"]}" if suffixed else b""
    pieces, texts, gaps = encode_recorded(b',"k":', values, False, suffix)
    assert joined(pieces) == joined(encode(b',"k":', values, False, suffix))
    if texts is not None:
        assert texts == [b"" if v is SKIP else orjson.dumps(v) for v in values]
        assert gaps or SKIP not in values  # (a gap never unsaid: its field would be counted)
