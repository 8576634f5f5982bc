import orjson
from hypothesis import given
from hypothesis import strategies as st

from rpi_braze_sync.jsonpieces import encode_strings

QUOTY = st.text(alphabet='",\\ab', max_size=6)


def test_a_cell_ending_in_a_quote_and_comma_stays_one_string() -> None:
    # b'\\",' then the next item's quote reads as the separator b'","' in the joined array.
    assert encode_strings(['",', ""]) == [b'\\",', b""]
    assert encode_strings(["a", '",', "b"]) == [b"a", b'\\",', b"b"]


@given(st.lists(QUOTY, min_size=1, max_size=5))
def test_each_string_is_its_own_json_text(values: list[str]) -> None:
    encoded = encode_strings(values)
    assert [orjson.loads(b'"' + e + b'"') for e in encoded] == values
