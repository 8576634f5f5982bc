"""Hostile cell values: value checks take time in proportion to the text (lengths are checked
before any pattern, and no pattern backtracks), and an identifier with a control character
rejects its row, by the row function and by the column-wise path alike.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from rpi_braze_sync.config import compile_channels, parse_settings
from rpi_braze_sync.mapper import bind
from rpi_braze_sync.mapping import Mapped, MappingPlan, Rejection
from rpi_braze_sync.parsers import (
    FieldValueError,
    formats_parser,
    infer_value,
    parse_date,
    parse_email,
    parse_float,
    parse_integer,
    parse_time,
    phone_parser,
)
from tests.oracle import map_row_oracle

CELL = 100_000  # characters: a 100 KB cell held a file for minutes before

# Texts that make a backtracking pattern try every split: runs of what a pattern almost takes.
ADVERSARIAL = {
    "email, dotted domain": "a@" + "a." * (CELL // 2) + " ",
    "email, dots only": "a@" + "." * CELL + "@",
    "email, no at": "a" * CELL,
    "email, at the end": "a" * CELL + "@",
    "number, long fraction": "1." + "0" * CELL + "x",
    "number, digits": "1" * CELL,
    "date-time tail": "2024-01-02T" + "0" * CELL,
    "date run": "2024-01-02" * (CELL // 10),
    "phone, digits": "+" + "3" * CELL,
    "spaces inside": "a" + " " * CELL + "b",
}
PARSERS = {
    "email": parse_email,
    "date": parse_date,
    "time": parse_time,
    "integer": parse_integer,
    "float": parse_float,
    "phone": phone_parser("FR"),
    "formats": formats_parser(["%d/%m/%Y %H:%M", "%Y%m%d"], as_time=True),
    "inferred": infer_value,
}

WIDE = """
channels:
  C:
    mode: upsert
    mapping:
      identifier:
        external_id: {column: id}
      attributes:
        email: {column: mail, type: email}
        dob: {column: birth, type: date}
        seen: {column: seen, type: time}
        score: {column: score, type: integer}
        ratio: {column: ratio, type: float}
        phone: {column: tel, type: phone, phone_region: FR}
      nested:
        extra:
          columns: remaining
"""
HEADER = ["id", "mail", "birth", "seen", "score", "ratio", "tel", "other"]


def compile_yaml(text: str) -> MappingPlan:
    return compile_channels(parse_settings(text, "cfg.yaml", {}))["C"].plan.mapping


def test_every_check_takes_linear_time_on_adversarial_text() -> None:
    """A generous bound, not a timing: linear work over these 1 MB of text is milliseconds;
    the email pattern of 0.1.0 alone took 25 s on the first text (quadratic)."""
    started = time.perf_counter()
    outcomes: dict[tuple[str, str], Any] = {}
    for text_name, text in ADVERSARIAL.items():
        for parser_name, parse in PARSERS.items():
            try:
                outcomes[text_name, parser_name] = parse(text)
            except FieldValueError as exc:
                outcomes[text_name, parser_name] = str(exc)
    took = time.perf_counter() - started
    assert took < 2.0, f"{took:.1f} s for {len(outcomes)} checks"
    # Not a vacuous pass: every one of these was refused, with a reason.
    assert all(isinstance(v, str) for v in outcomes.values()), outcomes
    assert outcomes["email, dotted domain", "email"] == f"longer than 255 characters ({CELL + 3})"


def test_whole_rows_of_adversarial_cells_map_in_linear_time() -> None:
    """The same texts in every column, through the row function and the column-wise path."""
    mapper = bind(compile_yaml(WIDE), HEADER, {})
    assert mapper.map_chunk is not None
    rows = [[f"u{i}", *[text] * (len(HEADER) - 1)] for i, text in enumerate(ADVERSARIAL.values())]
    started = time.perf_counter()
    results = [mapper.map_row(row, n) for n, row in enumerate(rows, 2)]
    bodies, _, drops = mapper.map_chunk(rows, range(2, len(rows) + 2))
    took = time.perf_counter() - started
    assert took < 2.0, f"{took:.1f} s"
    for i, result in enumerate(results):  # each bad value dropped with its reason, row sent
        assert isinstance(result, Mapped), result
        assert result.drops is not None
        assert {d.field for d in result.drops} >= {"email", "dob", "seen", "score", "ratio"}
        # column-wise alike, cell by cell: the same body and the same drops
        assert bodies[i] == orjson.dumps(result.attributes)
        assert drops[i] == result.drops


@pytest.mark.parametrize(
    "user",
    ["u\x001", "\x00", "u\t1", "u\n1", "u\r1", "u\x1b[31m", "u\x7f", "u\x85x", "u\x9f"],
)
def test_an_identifier_with_a_control_character_rejects_its_row(user: str) -> None:
    mapper = bind(compile_yaml(WIDE), HEADER, {})
    row = [user, "a@b.co", "2001-02-03", "", "1", "", "", "x"]
    result = mapper.map_row(row, 7)
    assert isinstance(result, Rejection), result
    assert result == map_row_oracle(mapper.plan, row, 7)
    assert result.reason.startswith("external_id holds a control character (U+")
    assert mapper.map_chunk is not None
    clean = ["u2", *row[1:]]
    bodies, _, _ = mapper.map_chunk([row, clean], [7, 3])
    assert bodies[0] is None  # left to the row function, which rejects it
    expected = mapper.map_row(clean, 3)
    assert isinstance(expected, Mapped)
    assert bodies[1] == orjson.dumps(expected.attributes)


def test_printable_identifiers_that_are_not_ascii_still_go() -> None:
    mapper = bind(compile_yaml(WIDE), HEADER, {})
    for user in ["u 1", "ü-é", "u\u00a01", "日本"]:  # a no-break space is not a control
        row = [user, "", "", "", "", "", "", ""]
        result = mapper.map_row(row, 2)
        assert isinstance(result, Mapped), (user, result)
        assert result.user == user.strip()


@pytest.mark.parametrize(
    ("identifier", "field"),
    [
        ("email: {column: id, type: email}", "email"),
        ("phone: {column: id, type: phone, phone_region: FR}", "phone"),
        ("user_alias: {name: {column: id}, label: {value: crm}}", "user_alias.alias_name"),
        ("external_id: {column: id, case: lower}", "external_id"),  # not the inlined kind
    ],
)
def test_every_identifier_kind_rejects_a_control_character(identifier: str, field: str) -> None:
    mapping = compile_yaml(
        f"""
channels:
  C:
    mode: upsert
    mapping:
      identifier:
        {identifier}
"""
    )
    mapper = bind(mapping, ["id"], {})
    value = {"email": "ab\x00c@example.com", "phone": "+3361234\x005678"}.get(field, "ab\x00c")
    result = mapper.map_row([value], 4)
    assert isinstance(result, Rejection), result
    assert result == map_row_oracle(mapper.plan, [value], 4)
    if field != "phone":  # a phone with a NUL is not a phone number at all
        assert result.reason == f"{field} holds a control character (U+0000 at character 3)"
