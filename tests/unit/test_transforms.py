"""The mapping language, table by table: every value transform, then every config error.

Part 1 drives `compile_value(ValueRecipe.of(ValueSpec(...)))` directly: trim, empty handling, case, value
maps, each type, input formats, lengths and the nested `{"$time": ...}` wrapping.
Part 2 feeds YAML text to `parse_settings` and checks each problem's file:line:col, key path
and message, exactly as an operator would read them.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from rpi_braze_sync.config import parse_settings
from rpi_braze_sync.errors import ConfigError
from rpi_braze_sync.parsers import SKIP, FieldValueError
from rpi_braze_sync.settings import (
    AliasSpec,
    ArraySpec,
    ChannelSettings,
    FormatSettings,
    IdentifierSpec,
    MappingSpec,
    NestedSpec,
    RecordCountSpec,
    ValueSpec,
)
from rpi_braze_sync.transforms import ValueRecipe, compile_value

# --- part 1: value transforms -------------------------------------------------------------


def convert(raw: str, nested: bool = False, **spec: Any) -> Any:
    """Compile a column-sourced value with `spec` and apply it to one raw cell."""
    return compile_value(ValueRecipe.of(ValueSpec(column="c", **spec)), nested)(raw)


def same(actual: Any, expected: Any) -> None:
    """Equal and of the same type: True == 1 == 1.0 must not pass for one another."""
    assert actual == expected
    assert type(actual) is type(expected)


GENDER_MESSAGE = "not a gender (M, F, O, N, P, male, female, other)"
COUNTRY_MESSAGE = "not an ISO 3166 country code or name"
NO_REGION = "not a phone number (set phone_region for national numbers)"

CONVERTS = [
    # trim
    pytest.param({}, "  Ada  ", "Ada", id="trim-on-by-default"),
    pytest.param({}, "\tAda Lovelace\n", "Ada Lovelace", id="trim-keeps-inner-spaces"),
    pytest.param({"trim": False}, "  Ada  ", "  Ada  ", id="trim-off-keeps-spaces"),
    pytest.param({"trim": False}, "   ", "   ", id="trim-off-spaces-are-a-value"),
    # empty, default, required
    pytest.param({}, "", SKIP, id="empty-skips-by-default"),
    pytest.param({}, "  \t ", SKIP, id="blank-after-trim-skips"),
    pytest.param({"empty": "null"}, "", None, id="empty-null"),
    pytest.param({"empty": "null"}, "   ", None, id="blank-null"),
    pytest.param({"empty": "null", "type": "date"}, "", None, id="empty-null-before-type"),
    pytest.param({"default": "n/a"}, "", "n/a", id="default-when-empty"),
    pytest.param({"default": "n/a"}, "Lyon", "Lyon", id="default-only-when-empty"),
    pytest.param({"default": 3, "type": "integer"}, " ", 3, id="default-is-typed"),
    pytest.param({"default": False, "type": "boolean"}, "", False, id="default-bool"),
    pytest.param({"default": 1.5, "type": "float"}, "", 1.5, id="default-float"),
    pytest.param({"default": "abc", "case": "upper"}, "", "ABC", id="default-goes-through-case"),
    pytest.param({"default": "x", "empty": "null"}, "", "x", id="default-wins-over-null"),
    pytest.param({"default": "x", "required": True}, "", "x", id="default-satisfies-required"),
    pytest.param({"required": True}, " v ", "v", id="required-and-present"),
    # case
    pytest.param({"case": "lower"}, "MiXeD", "mixed", id="case-lower"),
    pytest.param({"case": "upper"}, "MiXeD", "MIXED", id="case-upper"),
    pytest.param({"case": "upper"}, "straße", "STRASSE", id="case-upper-unicode"),
    pytest.param(
        {"case": "lower", "type": "email"},
        "Ada@Example.COM",
        "ada@example.com",
        id="case-before-type",
    ),
    # values
    pytest.param({"values": {"yes": "Y"}}, "yes", "Y", id="values-replace"),
    pytest.param({"values": {"yes": "Y"}}, "no", "no", id="values-others-unchanged"),
    pytest.param({"values": {"yes": "Y"}}, "  yes ", "Y", id="values-after-trim"),
    pytest.param({"case": "lower", "values": {"yes": "Y"}}, "YES", "Y", id="values-after-case"),
    pytest.param(
        {"values": {"homme": "m"}, "type": "gender"},
        "homme",
        "M",
        id="values-string-result-is-typed",
    ),
    pytest.param({"values": {"un": "1"}, "type": "integer"}, "un", 1, id="values-then-integer"),
    pytest.param({"values": {"one": 1}}, "one", 1, id="values-int-result-as-is"),
    pytest.param(
        {"values": {"oui": True}, "type": "integer"},
        "oui",
        True,
        id="values-bool-result-skips-type",
    ),
    pytest.param({"values": {"x": 2.5}, "type": "date"}, "x", 2.5, id="values-float-result-as-is"),
    pytest.param({"values": {"none": 0}, "type": "integer"}, "7", 7, id="values-unmatched-typed"),
    # string
    pytest.param({}, "héllo wörld ✓ 😀", "héllo wörld ✓ 😀", id="string-unicode"),
    pytest.param({"type": "string"}, "42", "42", id="string-keeps-digits-as-text"),
    # integer
    pytest.param({"type": "integer"}, "42", 42, id="integer"),
    pytest.param({"type": "integer"}, "-7", -7, id="integer-negative"),
    pytest.param({"type": "integer"}, "+7", 7, id="integer-plus-sign"),
    pytest.param({"type": "integer"}, "007", 7, id="integer-leading-zeros"),
    pytest.param(
        {"type": "integer"}, "123456789012345678", 123456789012345678, id="integer-18-digits"
    ),
    # float
    pytest.param({"type": "float"}, "3.14", 3.14, id="float"),
    pytest.param({"type": "float"}, "-0.5", -0.5, id="float-negative"),
    pytest.param({"type": "float"}, "10", 10.0, id="float-from-integer-text"),
    pytest.param({"type": "float"}, "1e3", 1000.0, id="float-exponent"),
    # boolean
    *(
        pytest.param({"type": "boolean"}, raw, True, id=f"boolean-{raw}")
        for raw in ("true", "TRUE", "True", "1", "yes", "Yes", "y", "Y")
    ),
    *(
        pytest.param({"type": "boolean"}, raw, False, id=f"boolean-{raw}")
        for raw in ("false", "FALSE", "0", "no", "NO", "n", "N")
    ),
    # date: strict yyyy-MM-dd, real dates
    pytest.param({"type": "date"}, "2024-01-02", "2024-01-02", id="date"),
    pytest.param({"type": "date"}, "2024-02-29", "2024-02-29", id="date-leap-day"),
    pytest.param({"type": "date"}, " 1999-12-31 ", "1999-12-31", id="date-trimmed"),
    # time: ISO 8601; no zone means UTC, written with Z
    pytest.param(
        {"type": "time"}, "2024-01-02T03:04:05", "2024-01-02T03:04:05Z", id="time-no-zone-is-utc"
    ),
    pytest.param(
        {"type": "time"}, "2024-01-02", "2024-01-02T00:00:00Z", id="time-date-is-midnight"
    ),
    pytest.param({"type": "time"}, "2024-01-02 03:04", "2024-01-02T03:04:00Z", id="time-space"),
    pytest.param({"type": "time"}, "2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z", id="time-z"),
    pytest.param(
        {"type": "time"},
        "2024-01-02T03:04:05+00:00",
        "2024-01-02T03:04:05Z",
        id="time-utc-offset-as-z",
    ),
    pytest.param(
        {"type": "time"},
        "2024-01-02T03:04:05+02:00",
        "2024-01-02T03:04:05+02:00",
        id="time-offset-kept",
    ),
    pytest.param(
        {"type": "time"},
        "2024-01-02T03:04:05.25",
        "2024-01-02T03:04:05.250000Z",
        id="time-fraction",
    ),
    # email
    pytest.param({"type": "email"}, "ada@example.com", "ada@example.com", id="email"),
    pytest.param(
        {"type": "email"},
        "Ada.L+tag@mail.example.org",
        "Ada.L+tag@mail.example.org",
        id="email-unchanged",
    ),
    pytest.param(
        {"type": "email"},
        "a" * 243 + "@example.com",
        "a" * 243 + "@example.com",
        id="email-255-chars",
    ),
    # gender
    *(
        pytest.param({"type": "gender"}, raw, letter, id=f"gender-{raw}")
        for raw, letter in (
            ("m", "M"),
            ("F", "F"),
            ("o", "O"),
            ("N", "N"),
            ("p", "P"),
            ("male", "M"),
            ("Female", "F"),
            ("OTHER", "O"),
        )
    ),
    # country: names, alpha-3 and alpha-2 in any case -> alpha-2
    *(
        pytest.param({"type": "country"}, raw, code, id=f"country-{raw}")
        for raw, code in (
            ("France", "FR"),
            ("france", "FR"),
            ("United Kingdom", "GB"),
            ("Germany", "DE"),
            ("Côte d'Ivoire", "CI"),
            ("DEU", "DE"),
            ("deu", "DE"),
            ("gbr", "GB"),
            ("FR", "FR"),
            ("fr", "FR"),
            ("Fr", "FR"),
            ("us", "US"),
        )
    ),
    # phone -> E.164
    pytest.param(
        {"type": "phone", "phone_region": "FR"},
        "01 23 45 67 89",
        "+33123456789",
        id="phone-national-with-region",
    ),
    pytest.param(
        {"type": "phone", "phone_region": "FR"},
        "06.12.34.56.78",
        "+33612345678",
        id="phone-national-dots",
    ),
    pytest.param(
        {"type": "phone", "phone_region": "FR"},
        "+44 20 7946 0958",
        "+442079460958",
        id="phone-international-other-region",
    ),
    pytest.param(
        {"type": "phone"},
        "+1 202-555-0143",
        "+12025550143",
        id="phone-international-without-region",
    ),
    # input_formats
    pytest.param(
        {"type": "date", "input_formats": ["%d/%m/%Y"]},
        "02/01/2024",
        "2024-01-02",
        id="date-input-format",
    ),
    pytest.param(
        {"type": "date", "input_formats": ["%d/%m/%Y", "%Y%m%d"]},
        "20240102",
        "2024-01-02",
        id="date-second-input-format",
    ),
    pytest.param(
        {"type": "date", "input_formats": ["%d/%m/%Y %H:%M"]},
        "02/01/2024 10:30",
        "2024-01-02",
        id="date-input-format-drops-time",
    ),
    pytest.param(
        {"type": "time", "input_formats": ["%d/%m/%Y %H:%M"]},
        "02/01/2024 10:30",
        "2024-01-02T10:30:00Z",
        id="time-input-format-utc",
    ),
    pytest.param(
        {"type": "time", "input_formats": ["%d/%m/%Y %H:%M %z"]},
        "02/01/2024 10:30 +0200",
        "2024-01-02T10:30:00+02:00",
        id="time-input-format-with-zone",
    ),
    # max_length and the default 255 limit
    pytest.param({"max_length": 5}, "abcde", "abcde", id="max-length-exact"),
    pytest.param(
        {"max_length": 5, "too_long": "truncate"}, "abcdefgh", "abcde", id="max-length-truncate"
    ),
    pytest.param(
        {"max_length": 5, "too_long": "truncate"}, "  abcdefgh  ", "abcde", id="truncate-after-trim"
    ),
    pytest.param(
        {"case": "upper", "max_length": 4, "too_long": "truncate"},
        "straße",
        "STRA",
        id="truncate-after-case",
    ),
    pytest.param(
        {"max_length": 5, "type": "integer"}, "1234567", 1234567, id="max-length-only-for-strings"
    ),
    pytest.param({}, "a" * 255, "a" * 255, id="default-limit-255-fits"),
    pytest.param({}, "é" * 255, "é" * 255, id="default-limit-counts-characters"),
    pytest.param({"too_long": "truncate"}, "a" * 300, "a" * 255, id="truncate-to-default-limit"),
    pytest.param(
        {"max_length": 10, "too_long": "truncate"},
        "a" * 300,
        "a" * 10,
        id="truncate-to-max-length-from-over-255",
    ),
    pytest.param(
        {"too_long": "truncate", "values": {"x": "y" * 300}},
        "x",
        "y" * 255,
        id="truncate-mapped-value",
    ),
]


@pytest.mark.parametrize(("spec", "raw", "expected"), CONVERTS)
def test_compile_value_converts(spec: dict[str, Any], raw: str, expected: Any) -> None:
    same(convert(raw, **spec), expected)


FAILS = [
    # required
    pytest.param({"required": True}, "", "required and empty", id="required-empty"),
    pytest.param({"required": True}, "  \t", "required and empty", id="required-blank"),
    pytest.param(
        {"required": True, "empty": "null"}, "", "required and empty", id="required-wins-over-null"
    ),
    pytest.param(
        {"required": True, "type": "integer"}, " ", "required and empty", id="required-before-type"
    ),
    # trim off: spaces reach the parser
    pytest.param({"trim": False, "type": "integer"}, " 5", "not an integer", id="no-trim-integer"),
    # integer
    *(
        pytest.param({"type": "integer"}, raw, "not an integer", id=f"integer-{raw[:12]}")
        for raw in ("1.5", "abc", "1 000", "1e3", "0x10", "1234567890123456789", "--1")
    ),
    # float
    pytest.param({"type": "float"}, "abc", "not a number", id="float-text"),
    pytest.param({"type": "float"}, "1,5", "not a number", id="float-comma"),
    *(
        pytest.param({"type": "float"}, raw, "not a finite number", id=f"float-{raw}")
        for raw in ("nan", "NaN", "inf", "-Infinity", "1e400")
    ),
    # boolean
    *(
        pytest.param(
            {"type": "boolean"}, raw, "not a boolean (true/false, yes/no, 1/0)", id=f"boolean-{raw}"
        )
        for raw in ("maybe", "2", "t", "oui")
    ),
    # date
    *(
        pytest.param({"type": "date"}, raw, "not a yyyy-MM-dd date", id=f"date-shape-{raw}")
        for raw in ("2024-1-2", "02/01/2024", "20240102", "2024-01-02T00:00:00", "24-01-02")
    ),
    *(
        pytest.param({"type": "date"}, raw, "not a real date", id=f"date-unreal-{raw}")
        for raw in ("2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "0000-01-01")
    ),
    # time
    pytest.param({"type": "time"}, "yesterday", "not an ISO 8601 date-time", id="time-text"),
    pytest.param(
        {"type": "time"}, "2024-02-30T00:00:00", "not an ISO 8601 date-time", id="time-unreal-date"
    ),
    pytest.param(
        {"type": "time"}, "02/01/2024 10:30", "not an ISO 8601 date-time", id="time-not-iso"
    ),
    # email
    *(
        pytest.param({"type": "email"}, raw, "not an email address", id=f"email-{raw}")
        for raw in ("ada", "ada@example", "a b@example.com", "ada@@example.com", "@example.com")
    ),
    pytest.param(
        {"type": "email"},
        "a" * 244 + "@example.com",
        "longer than 255 characters (256)",
        id="email-256-chars",
    ),
    # gender, country
    *(
        pytest.param({"type": "gender"}, raw, GENDER_MESSAGE, id=f"gender-{raw}")
        for raw in ("x", "man", "unknown")
    ),
    *(
        pytest.param({"type": "country"}, raw, COUNTRY_MESSAGE, id=f"country-{raw}")
        for raw in ("Narnia", "XX", "FRAN", "F")
    ),
    # phone
    # the phone_region hint only for a national number (one not starting with "+")
    pytest.param({"type": "phone"}, "01 23 45 67 89", NO_REGION, id="phone-national-no-region"),
    pytest.param({"type": "phone"}, "+abc", "not a phone number", id="phone-plus-text-no-region"),
    pytest.param({"type": "phone"}, "+999 1", "not a phone number", id="phone-plus-no-country"),
    pytest.param(
        {"type": "phone"}, "+1 555", "not a valid phone number", id="phone-plus-invalid-no-region"
    ),
    pytest.param(
        {"type": "phone", "phone_region": "FR"},
        "01 23",
        "not a valid phone number",
        id="phone-too-short",
    ),
    pytest.param(
        {"type": "phone", "phone_region": "FR"},
        "+33 1 23",
        "not a valid phone number",
        id="phone-invalid-international",
    ),
    pytest.param(
        {"type": "phone", "phone_region": "FR"},
        "+1 555 000 0000",
        "not a valid phone number",
        id="phone-invalid-us",
    ),
    pytest.param(
        {"type": "phone", "phone_region": "FR"}, "abc", "not a phone number", id="phone-text"
    ),
    # input_formats
    pytest.param(
        {"type": "date", "input_formats": ["%d/%m/%Y"]},
        "2024-01-02",
        "in none of the formats %d/%m/%Y",
        id="date-format-iso-not-listed",
    ),
    pytest.param(
        {"type": "date", "input_formats": ["%d/%m/%Y"]},
        "31/02/2024",
        "in none of the formats %d/%m/%Y",
        id="date-format-unreal",
    ),
    pytest.param(
        {"type": "date", "input_formats": ["%d/%m/%Y", "%Y%m%d"]},
        "Jan 2",
        "in none of the formats %d/%m/%Y, %Y%m%d",
        id="date-formats-listed",
    ),
    pytest.param(
        {"type": "time", "input_formats": ["%d/%m/%Y %H:%M"]},
        "02/01/2024",
        "in none of the formats %d/%m/%Y %H:%M",
        id="time-format",
    ),
    # lengths: drop (the default) is an error the row mapper turns into a dropped field
    pytest.param({"max_length": 5}, "abcdef", "longer than 5 characters (6)", id="max-length-drop"),
    pytest.param(
        {"max_length": 5, "too_long": "drop"},
        "abcdef",
        "longer than 5 characters (6)",
        id="too-long-drop-explicit",
    ),
    pytest.param(
        {"case": "upper", "max_length": 4},
        "straße",
        "longer than 4 characters (7)",
        id="max-length-after-case",
    ),
    pytest.param(
        {"type": "email", "max_length": 10},
        "ada@example.com",
        "longer than 10 characters (15)",
        id="max-length-email",
    ),
    pytest.param({}, "a" * 256, "longer than 255 characters (256)", id="default-limit-255"),
    pytest.param(
        {"values": {"x": "y" * 256}},
        "x",
        "longer than 255 characters (256)",
        id="default-limit-on-mapped-value",
    ),
]


@pytest.mark.parametrize(("spec", "raw", "message"), FAILS)
def test_compile_value_rejects(spec: dict[str, Any], raw: str, message: str) -> None:
    with pytest.raises(FieldValueError) as info:
        convert(raw, **spec)
    assert str(info.value) == message


NESTED = [
    pytest.param({"type": "date"}, "2024-01-02", {"$time": "2024-01-02"}, id="date-wrapped"),
    pytest.param(
        {"type": "time"},
        "2024-01-02T03:04:05",
        {"$time": "2024-01-02T03:04:05Z"},
        id="time-wrapped",
    ),
    pytest.param(
        {"type": "date", "input_formats": ["%d/%m/%Y"]},
        "02/01/2024",
        {"$time": "2024-01-02"},
        id="formatted-date-wrapped",
    ),
    pytest.param(
        {"type": "time", "input_formats": ["%d/%m/%Y %H:%M"]},
        "02/01/2024 10:30",
        {"$time": "2024-01-02T10:30:00Z"},
        id="formatted-time-wrapped",
    ),
    pytest.param(
        {"type": "date", "values": {"soon": "2030-01-01"}},
        "soon",
        {"$time": "2030-01-01"},
        id="mapped-date-wrapped",
    ),
    pytest.param({"type": "date"}, "", SKIP, id="empty-date-not-wrapped"),
    pytest.param({"type": "string"}, "2024-01-02", "2024-01-02", id="string-not-wrapped"),
    pytest.param({"type": "integer"}, "5", 5, id="integer-not-wrapped"),
    pytest.param({"type": "boolean"}, "yes", True, id="boolean-not-wrapped"),
]


@pytest.mark.parametrize(("spec", "raw", "expected"), NESTED)
def test_compile_value_nested_wraps_times(spec: dict[str, Any], raw: str, expected: Any) -> None:
    same(convert(raw, nested=True, **spec), expected)


@pytest.mark.parametrize("kind", ["date", "time"])
def test_compile_value_top_level_times_are_plain_strings(kind: str) -> None:
    assert isinstance(convert("2024-01-02", type=kind), str)


def test_compile_value_nested_invalid_date_still_fails() -> None:
    with pytest.raises(FieldValueError, match=r"^not a real date$"):
        convert("2024-02-30", nested=True, type="date")


# --- part 2: configuration errors ---------------------------------------------------------

BASE = "channels:\n  C:\n    mode: upsert\n    mapping:\n      identifier:\n        external_id: {column: id}\n"
HEAD = "channels:\n  C:\n    mode: upsert\n    mapping:\n      identifier:\n"
M = "channels.C.mapping"
PATH_NAMES = "channel, offer, workflow_id, file_name, rpi_channel_execution_id"
NESTED_KEY_MESSAGE = "a nested key has no '.', '$' or spaces and at most 255 characters"
NESTED_NULL_MESSAGE = "null in a nested object makes Braze drop every nested update of the request"


def at(text: str, needle: str) -> str:
    """'cfg.yaml:LINE:COL' of the first `needle` in `text`."""
    assert needle in text, needle
    index = text.index(needle)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"cfg.yaml:{line}:{column}"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "cfg.yaml", {})
    return info.value.problems


def allowed(model: type[BaseModel]) -> str:
    return f"unknown key (allowed: {', '.join(model.model_fields)})"


def attr(line: str) -> str:
    """BASE plus one `attributes` entry."""
    return f"{BASE}      attributes:\n        {line}\n"


def with_format(fmt: str) -> str:
    return f"channels:\n  C:\n    mode: upsert\n    format:\n{fmt}    mapping:\n      identifier:\n        external_id: {{column: id}}\n"


# (YAML text, needle where the problem is reported, key path, message)
CONFIG_ERRORS = [
    # exactly one of column, path, value
    pytest.param(
        attr("first_name: {trim: false}"),
        "{trim",
        f"{M}.attributes.first_name",
        "give exactly one of column, path, value",
        id="source-none",
    ),
    pytest.param(
        attr("a: {column: x, value: 1}"),
        "{column: x",
        f"{M}.attributes.a",
        "give exactly one of column, path, value",
        id="source-column-and-value",
    ),
    pytest.param(
        attr("a: {column: x, path: offer}"),
        "{column: x",
        f"{M}.attributes.a",
        "give exactly one of column, path, value",
        id="source-column-and-path",
    ),
    pytest.param(
        attr("a: {path: offer, value: 1}"),
        "{path",
        f"{M}.attributes.a",
        "give exactly one of column, path, value",
        id="source-path-and-value",
    ),
    pytest.param(
        HEAD + "        external_id: {trim: true}\n",
        "{trim",
        f"{M}.identifier.external_id",
        "give exactly one of column, path, value",
        id="source-none-identifier",
    ),
    pytest.param(
        HEAD + "        user_alias: {name: {column: n}, label: {}}\n",
        "{}}",
        f"{M}.identifier.user_alias.label",
        "give exactly one of column, path, value",
        id="source-none-alias-label",
    ),
    pytest.param(
        BASE + "      nested:\n        n:\n          keys:\n            k: {trim: true}\n",
        "{trim",
        f"{M}.nested.n.keys.k",
        "give exactly one of column, path, value",
        id="source-none-nested-key",
    ),
    # path parts
    pytest.param(
        attr("a: {path: workflow}"),
        "workflow}",
        f"{M}.attributes.a.path",
        f"'workflow' is not one of {PATH_NAMES}",
        id="path-unknown",
    ),
    pytest.param(
        attr("a: {path: File_Name}"),
        "File_Name}",
        f"{M}.attributes.a.path",
        f"'File_Name' is not one of {PATH_NAMES}",
        id="path-case-sensitive",
    ),
    pytest.param(
        "watch:\n  path_pattern: '{channel}/exports/{campaign}'\n" + attr("a: {path: offer}"),
        "offer}",
        f"{M}.attributes.a.path",
        "'offer' is not one of channel, campaign, file_name, rpi_channel_execution_id",
        id="path-from-pattern",
    ),
    pytest.param(
        HEAD + "        user_alias: {name: {column: n}, label: {path: offerr}}\n",
        "offerr",
        f"{M}.identifier.user_alias.label.path",
        f"'offerr' is not one of {PATH_NAMES}",
        id="path-alias-label",
    ),
    pytest.param(
        BASE + "      nested:\n        n:\n          keys:\n            k: {path: folder}\n",
        "folder",
        f"{M}.nested.n.keys.k.path",
        f"'folder' is not one of {PATH_NAMES}",
        id="path-nested-key",
    ),
    pytest.param(
        BASE
        + "      arrays:\n        a:\n          add:\n            - {column: x}\n            - {path: nope}\n",
        "nope",
        f"{M}.arrays.a.add[1].path",
        f"'nope' is not one of {PATH_NAMES}",
        id="path-array-list-item",
    ),
    pytest.param(
        BASE + "      arrays:\n        a:\n          add: {path: nope}\n",
        "nope",
        f"{M}.arrays.a.add.path",
        f"'nope' is not one of {PATH_NAMES}",
        id="path-array-single",
    ),
    # constants checked against their type
    pytest.param(
        attr("a: {value: abc, type: integer}"),
        "abc",
        f"{M}.attributes.a.value",
        "'abc' is not an integer",
        id="value-integer",
    ),
    pytest.param(
        attr("a: {value: true, type: integer}"),
        "true",
        f"{M}.attributes.a.value",
        "True is not an integer",
        id="value-bool-as-integer",
    ),
    pytest.param(
        attr("a: {value: abc, type: float}"),
        "abc",
        f"{M}.attributes.a.value",
        "'abc' is not a number",
        id="value-float",
    ),
    pytest.param(
        attr("a: {value: maybe, type: boolean}"),
        "maybe",
        f"{M}.attributes.a.value",
        "'maybe' is not a boolean (true/false, yes/no, 1/0)",
        id="value-boolean",
    ),
    pytest.param(
        attr("a: {value: '2024-02-30', type: date}"),
        "'2024",
        f"{M}.attributes.a.value",
        "'2024-02-30' is not a real date",
        id="value-date-unreal",
    ),
    pytest.param(
        attr("a: {value: 02/01/2024, type: date}"),
        "02/",
        f"{M}.attributes.a.value",
        "'02/01/2024' is not a yyyy-MM-dd date",
        id="value-date-shape",
    ),
    pytest.param(
        attr("a: {value: soon, type: time}"),
        "soon",
        f"{M}.attributes.a.value",
        "'soon' is not an ISO 8601 date-time",
        id="value-time",
    ),
    pytest.param(
        attr("a: {value: ada, type: email}"),
        "ada",
        f"{M}.attributes.a.value",
        "'ada' is not an email address",
        id="value-email",
    ),
    pytest.param(
        attr("a: {value: x, type: gender}"),
        "x,",
        f"{M}.attributes.a.value",
        f"'x' is {GENDER_MESSAGE}",
        id="value-gender",
    ),
    pytest.param(
        attr("a: {value: Narnia, type: country}"),
        "Narnia",
        f"{M}.attributes.a.value",
        f"'Narnia' is {COUNTRY_MESSAGE}",
        id="value-country",
    ),
    pytest.param(
        attr("a: {value: '0123456789', type: phone}"),
        "'0123",
        f"{M}.attributes.a.value",
        f"'0123456789' is {NO_REGION}",
        id="value-phone-no-region",
    ),
    pytest.param(
        attr("a: {value: '0123', type: phone, phone_region: FR}"),
        "'0123",
        f"{M}.attributes.a.value",
        "'0123' is not a valid phone number",
        id="value-phone-invalid",
    ),
    pytest.param(
        attr("a: {value: abcdef, max_length: 3}"),
        "abcdef",
        f"{M}.attributes.a.value",
        "'abcdef' is longer than 3 characters (6)",
        id="value-max-length",
    ),
    pytest.param(
        attr("a: {value: " + "x" * 256 + "}"),
        "xxx",
        f"{M}.attributes.a.value",
        f"'{'x' * 256}' is longer than 255 characters (256)",
        id="value-default-limit",
    ),
    pytest.param(
        attr("a: {value: '', required: true}"),
        "''",
        f"{M}.attributes.a.value",
        "'' is required and empty",
        id="value-required-empty",
    ),
    pytest.param(
        HEAD + "        user_alias: {name: {column: n}, label: {value: x, type: integer}}\n",
        "x,",
        f"{M}.identifier.user_alias.label.value",
        "'x' is not an integer",
        id="value-alias-label",
    ),
    pytest.param(
        BASE
        + "      nested:\n        n:\n          keys:\n            k: {value: '2024-13-01', type: date}\n",
        "'2024",
        f"{M}.nested.n.keys.k.value",
        "'2024-13-01' is not a real date",
        id="value-nested-key",
    ),
    # input_formats and phone_region need their type
    pytest.param(
        attr("a: {column: x, input_formats: ['%d/%m/%Y']}"),
        "{column: x",
        f"{M}.attributes.a",
        "input_formats needs type date or time",
        id="input-formats-string",
    ),
    pytest.param(
        attr("a: {column: x, type: integer, input_formats: ['%Y']}"),
        "{column: x",
        f"{M}.attributes.a",
        "input_formats needs type date or time",
        id="input-formats-integer",
    ),
    pytest.param(
        attr("a: {column: x, phone_region: FR}"),
        "{column: x",
        f"{M}.attributes.a",
        "phone_region needs type phone",
        id="phone-region-string",
    ),
    pytest.param(
        attr("a: {column: x, type: phone, phone_region: fr}"),
        "{column: x",
        f"{M}.attributes.a",
        "phone_region 'fr' is not an ISO alpha-2 code",
        id="phone-region-lowercase",
    ),
    pytest.param(
        attr("a: {column: x, type: phone, phone_region: FRA}"),
        "{column: x",
        f"{M}.attributes.a",
        "phone_region 'FRA' is not an ISO alpha-2 code",
        id="phone-region-alpha-3",
    ),
    # the identifier
    pytest.param(
        HEAD.removesuffix("\n") + " {}\n",
        "{}",
        f"{M}.identifier",
        "give exactly one identifier of external_id, email, phone, user_alias",
        id="identifier-none",
    ),
    pytest.param(
        HEAD + "        external_id: {column: id}\n        email: {column: e}\n",
        "external_id",
        f"{M}.identifier",
        "give exactly one identifier of external_id, email, phone, user_alias"
        " (got external_id, email)",
        id="identifier-two",
    ),
    pytest.param(
        HEAD
        + "        phone: {column: p}\n        user_alias: {name: {column: n}, label: {value: l}}\n        email: {column: e}\n",
        "phone",
        f"{M}.identifier",
        "give exactly one identifier of external_id, email, phone, user_alias"
        " (got email, phone, user_alias)",
        id="identifier-three",
    ),
    pytest.param(
        "channels:\n  C:\n    mode: upsert\n    mapping:\n      attributes: {}\n",
        "mapping",  # a missing key is reported at its parent's key
        f"{M}.identifier",
        "required key is missing",
        id="identifier-missing",
    ),
    pytest.param(
        HEAD + "        user_alias: {name: {column: n}}\n",
        "user_alias",
        f"{M}.identifier.user_alias.label",
        "required key is missing",
        id="alias-label-missing",
    ),
    pytest.param(
        HEAD + "        external_id: {value: x}\n",
        "{value",
        f"{M}.identifier.external_id",
        "the identifier must come from a column",
        id="identifier-constant",
    ),
    pytest.param(
        HEAD + "        email: {path: offer}\n",
        "{path",
        f"{M}.identifier.email",
        "the identifier must come from a column",
        id="identifier-path",
    ),
    pytest.param(
        HEAD + "        phone: {value: '+33123456789', type: phone}\n",
        "{value",
        f"{M}.identifier.phone",
        "the identifier must come from a column",
        id="identifier-phone-constant",
    ),
    pytest.param(
        attr("external_id: {column: x}"),
        "{column: x}",
        f"{M}.attributes.external_id",
        "external_id is the identifier; map it only there",
        id="attribute-is-identifier",
    ),
    pytest.param(
        HEAD + "        email: {column: e}\n      attributes:\n        email: {column: x}\n",
        "{column: x}",
        f"{M}.attributes.email",
        "email is the identifier; map it only there",
        id="attribute-is-email-identifier",
    ),
    pytest.param(
        HEAD + "        phone: {column: p}\n      attributes:\n        phone: {column: x}\n",
        "{column: x}",
        f"{M}.attributes.phone",
        "phone is the identifier; map it only there",
        id="attribute-is-phone-identifier",
    ),
    # one home per attribute
    pytest.param(
        BASE
        + "      attributes:\n        a: {column: x}\n      arrays:\n        a:\n          add: {column: y}\n",
        "identifier",
        M,
        "attribute(s) mapped twice: a",
        id="twice-attribute-array",
    ),
    pytest.param(
        BASE
        + "      attributes:\n        a: {column: x}\n      nested:\n        a: {columns: [y]}\n",
        "identifier",
        M,
        "attribute(s) mapped twice: a",
        id="twice-attribute-nested",
    ),
    pytest.param(
        BASE
        + "      arrays:\n        b: {add: {column: y}}\n      nested:\n        b: {columns: remaining}\n",
        "identifier",
        M,
        "attribute(s) mapped twice: b",
        id="twice-array-nested",
    ),
    pytest.param(
        BASE
        + "      attributes:\n        b: {column: x}\n        a: {column: y}\n      arrays:\n        b: {add: {column: z}}\n      nested:\n        a: {columns: [q]}\n",
        "identifier",
        M,
        "attribute(s) mapped twice: a, b",
        id="twice-sorted-list",
    ),
    pytest.param(
        BASE
        + "      nested:\n        n1: {columns: remaining}\n        n2: {columns: remaining}\n",
        "identifier",
        M,
        "only one nested object can take the remaining columns",
        id="two-remaining",
    ),
    # nested objects
    pytest.param(
        BASE + "      nested:\n        n: {merge: false}\n",
        "{merge",
        f"{M}.nested.n",
        "give columns, keys or both",
        id="nested-empty",
    ),
    *(
        pytest.param(
            BASE
            + f"      nested:\n        n:\n          keys:\n            {yaml_key}: {{column: x}}\n",
            "{column: x}",
            f"{M}.nested.n.keys.{shown}",
            NESTED_KEY_MESSAGE,
            id=f"nested-key-{name}",
        )
        for name, yaml_key, shown in (
            ("dot", "a.b", "'a.b'"),
            ("dollar", "$set", "'$set'"),
            ("space", "'a b'", "'a b'"),
            ("tab", '"a\\tb"', "'a\tb'"),
            ("empty", "''", "''"),
            ("too-long", "k" * 256, "k" * 256),
        )
    ),
    pytest.param(
        BASE
        + "      nested:\n        n:\n          keys:\n            k: {column: x, empty: 'null'}\n",
        "'null'",
        f"{M}.nested.n.keys.k.empty",
        NESTED_NULL_MESSAGE,
        id="nested-key-empty-null",
    ),
    # arrays
    pytest.param(
        BASE + "      arrays:\n        a:\n          warn_if_missing: true\n",
        "warn_if_missing",
        f"{M}.arrays.a",
        "give add, remove or both",
        id="array-no-operation",
    ),
    pytest.param(
        BASE + "      arrays:\n        a: {add: [], remove: []}\n",
        "{add",
        f"{M}.arrays.a",
        "give add, remove or both",
        id="array-empty-operations",
    ),
    # the record count line
    pytest.param(
        with_format("      skip_lines: 1\n      record_count:\n        line: 2\n"),
        "skip_lines",
        "channels.C.format",
        "record_count.line must be one of the skip_lines before the header",
        id="record-count-beyond-skip-lines",
    ),
    pytest.param(
        with_format("      record_count: {line: 1}\n"),
        "record_count",
        "channels.C.format",
        "record_count.line must be one of the skip_lines before the header",
        id="record-count-without-skip-lines",
    ),
    pytest.param(
        with_format("      skip_lines: 1\n      record_count:\n        line: 0\n"),
        "0\n",
        "channels.C.format.record_count.line",
        "must be at least 1; got 0",
        id="record-count-line-zero",
    ),
    pytest.param(
        with_format(
            "      skip_lines: 1\n      record_count:\n        line: 1\n        pattern: 'rows: \\d+'\n"
        ),
        "'rows",
        "channels.C.format.record_count.pattern",
        "the pattern needs a group around the count, e.g. '(\\d+)'",
        id="record-count-pattern-without-group",
    ),
    pytest.param(
        with_format(
            "      skip_lines: 1\n      record_count:\n        line: 1\n        pattern: '(\\d+'\n"
        ),
        "'(",
        "channels.C.format.record_count.pattern",
        "not a regular expression: missing ), unterminated subpattern at position 0",
        id="record-count-pattern-not-regex",
    ),
    # choices and bounds
    pytest.param(
        attr("a: {column: x, type: datetime}"),
        "datetime",
        f"{M}.attributes.a.type",
        "'datetime' is not one of string, integer, float, boolean, date, time, email,"
        " gender, country, phone",
        id="type-unknown",
    ),
    pytest.param(
        attr("a: {column: x, empty: none}"),
        "none",
        f"{M}.attributes.a.empty",
        "'none' is not one of skip, null",
        id="empty-unknown",
    ),
    pytest.param(
        attr("a: {column: x, case: title}"),
        "title",
        f"{M}.attributes.a.case",
        "'title' is not one of lower, upper",
        id="case-unknown",
    ),
    pytest.param(
        attr("a: {column: x, too_long: cut}"),
        "cut",
        f"{M}.attributes.a.too_long",
        "'cut' is not one of drop, truncate",
        id="too-long-unknown",
    ),
    pytest.param(
        attr("a: {column: x, on_invalid: skip}"),
        "skip",
        f"{M}.attributes.a.on_invalid",
        "'skip' is not one of drop, reject",
        id="on-invalid-unknown",
    ),
    pytest.param(
        attr("a: {column: x, max_length: 0}"),
        "0}",
        f"{M}.attributes.a.max_length",
        "must be at least 1; got 0",
        id="max-length-zero",
    ),
    pytest.param(
        attr("a: {column: x, max_length: 256}"),
        "256",
        f"{M}.attributes.a.max_length",
        "must be at most 255; got 256",
        id="max-length-over-255",
    ),
    pytest.param(
        BASE.replace("upsert", "update"),
        "update",
        "channels.C.mode",
        "'update' is not one of upsert, append",
        id="mode-unknown",
    ),
    # unknown keys say what is allowed (reported at the key itself)
    pytest.param(
        attr("a: {column: x, typ: date}"),
        "typ:",
        f"{M}.attributes.a.typ",
        allowed(ValueSpec),
        id="unknown-value-key",
    ),
    pytest.param(
        BASE + "      attribute: {}\n",
        "attribute:",
        f"{M}.attribute",
        allowed(MappingSpec),
        id="unknown-mapping-key",
    ),
    pytest.param(
        BASE + "        uid: {column: x}\n",
        "uid",
        f"{M}.identifier.uid",
        allowed(IdentifierSpec),
        id="unknown-identifier-key",
    ),
    pytest.param(
        HEAD + "        user_alias: {name: {column: n}, label: {value: l}, lbl: 1}\n",
        "lbl",
        f"{M}.identifier.user_alias.lbl",
        allowed(AliasSpec),
        id="unknown-alias-key",
    ),
    pytest.param(
        BASE + "      arrays:\n        a: {add: {column: x}, remove_all: true}\n",
        "remove_all",
        f"{M}.arrays.a.remove_all",
        allowed(ArraySpec),
        id="unknown-array-key",
    ),
    pytest.param(
        BASE + "      nested:\n        n: {columns: remaining, marge: true}\n",
        "marge",
        f"{M}.nested.n.marge",
        allowed(NestedSpec),
        id="unknown-nested-key",
    ),
    pytest.param(
        BASE
        + "      nested:\n        n:\n          keys:\n            k: {column: x, kind: date}\n",
        "kind",
        f"{M}.nested.n.keys.k.kind",
        allowed(ValueSpec),
        id="unknown-nested-value-key",
    ),
    pytest.param(
        with_format("      skiplines: 1\n"),
        "skiplines",
        "channels.C.format.skiplines",
        allowed(FormatSettings),
        id="unknown-format-key",
    ),
    pytest.param(
        with_format("      skip_lines: 1\n      record_count: {line: 1, group: 1}\n"),
        "group",
        "channels.C.format.record_count.group",
        allowed(RecordCountSpec),
        id="unknown-record-count-key",
    ),
    pytest.param(
        BASE + "    formats: {}\n",
        "formats",
        "channels.C.formats",
        allowed(ChannelSettings),
        id="unknown-channel-key",
    ),
    pytest.param(
        BASE
        + "      arrays:\n        a:\n          add:\n            - {column: x, colour: red}\n",
        "colour",
        f"{M}.arrays.a.add[0].colour",
        allowed(ValueSpec),
        id="unknown-array-item-key",
    ),
    pytest.param(
        BASE + "      arrays:\n        a:\n          remove: {column: x, colour: red}\n",
        "colour",
        f"{M}.arrays.a.remove.colour",
        allowed(ValueSpec),
        id="unknown-array-single-key",
    ),
]


@pytest.mark.parametrize(("text", "needle", "key_path", "message"), CONFIG_ERRORS)
def test_config_error(text: str, needle: str, key_path: str, message: str) -> None:
    assert problems_of(text) == [f"{at(text, needle)}: {key_path}: {message}"]


def test_config_error_lists_every_problem_at_once() -> None:
    text = (
        BASE
        + "      attributes:\n        a: {path: nowhere}\n        b: {value: x, type: integer}\n"
        + "      nested:\n        n:\n          keys:\n            a.b: {column: x}\n"
    )
    assert problems_of(text) == [
        f"{at(text, 'nowhere')}: {M}.attributes.a.path: 'nowhere' is not one of {PATH_NAMES}",
        f"{at(text, 'x, type')}: {M}.attributes.b.value: 'x' is not an integer",
        f"{at(text, '{column: x}')}: {M}.nested.n.keys.'a.b': {NESTED_KEY_MESSAGE}",
    ]


def test_config_errors_in_two_channels_are_both_reported() -> None:
    text = (
        attr("a: {path: x}")
        + "  D:\n    mode: append\n    mapping:\n      identifier:\n        email: {value: e}\n"
    )
    assert problems_of(text) == [
        f"{at(text, 'x}')}: {M}.attributes.a.path: 'x' is not one of {PATH_NAMES}",
        f"{at(text, '{value: e}')}: channels.D.mapping.identifier.email: "
        "the identifier must come from a column",
    ]


VALID = [
    pytest.param(BASE, id="minimal"),
    pytest.param(
        attr("a: {column: x, type: date, input_formats: ['%d/%m/%Y']}"), id="date-formats"
    ),
    pytest.param(
        attr("a: {column: x, type: time, input_formats: ['%d/%m/%Y %H:%M']}"), id="time-formats"
    ),
    pytest.param(attr("a: {column: x, type: phone, phone_region: FR}"), id="phone-region"),
    pytest.param(attr("a: {value: '2024-01-02', type: date}"), id="date-constant"),
    pytest.param(attr("a: {path: file_name}"), id="path-file-name"),
    pytest.param(
        HEAD + "        user_alias: {name: {column: n}, label: {path: channel}}\n",
        id="alias-label-from-path",
    ),
    pytest.param(
        BASE + "      nested:\n        n1: {columns: remaining}\n        n2: {columns: [x]}\n"
        "        n3:\n          keys:\n            k_1: {column: y, type: date}\n",
        id="nested-one-remaining",
    ),
    pytest.param(
        with_format("      skip_lines: 2\n      record_count: {line: 2, pattern: 'n=(\\d+)'}\n"),
        id="record-count-within-skip-lines",
    ),
]


@pytest.mark.parametrize("text", VALID)
def test_config_valid_variants_parse(text: str) -> None:
    settings = parse_settings(text, "cfg.yaml", {})
    assert list(settings.channels) == ["C"]


# A field that accepts several forms (one value or a list; text, number or boolean) has one
# problem, at its own key path, without pydantic's names for the forms. When the input has the
# shape of one form, that form's problem is the one reported.
UNION_PROBLEMS = [
    pytest.param(
        BASE + "      arrays:\n        tags:\n          add: {trim: true}\n",
        "{trim",
        f"{M}.arrays.tags.add",
        "give exactly one of column, path, value",
        id="array-add-single-without-source",
    ),
    pytest.param(
        BASE + "      arrays:\n        tags:\n          add:\n            - {trim: true}\n",
        "{trim",
        f"{M}.arrays.tags.add[0]",
        "give exactly one of column, path, value",
        id="array-add-item-without-source",
    ),
    pytest.param(
        BASE + "      arrays:\n        tags:\n          remove:\n            - {column: x}\n"
        "            - {column: y, type: date, input_formats: []}\n"
        "            - {value: x, type: integer}\n",
        "x, type",
        f"{M}.arrays.tags.remove[2].value",
        "'x' is not an integer",
        id="array-remove-item-bad-constant",
    ),
    pytest.param(
        BASE + "      nested:\n        n: {columns: all}\n",
        "all",
        f"{M}.nested.n.columns",
        "expects 'remaining' or a list; got the text 'all'",
        id="nested-columns-neither-remaining-nor-list",
    ),
    pytest.param(
        attr("a: {column: x, values: {a: [1]}}"),
        "[1]",
        f"{M}.attributes.a.values.a",
        "expects text, a number or true/false; got a list",
        id="values-not-scalar",
    ),
    pytest.param(
        attr("a: {column: x, default: [1]}"),
        "[1]",
        f"{M}.attributes.a.default",
        "expects text, a number or true/false; got a list",
        id="default-not-scalar",
    ),
    pytest.param(
        attr("a: {value: {k: v}}"),
        "{k: v}",
        f"{M}.attributes.a.value",
        "expects text, a number or true/false; got a mapping of keys",
        id="value-not-scalar",
    ),
]


@pytest.mark.parametrize(("text", "needle", "key_path", "message"), UNION_PROBLEMS)
def test_config_error_in_union_names_the_key_path_once(
    text: str, needle: str, key_path: str, message: str
) -> None:
    assert problems_of(text) == [f"{at(text, needle)}: {key_path}: {message}"]


def test_config_error_constant_with_input_formats_reads_as_a_sentence() -> None:
    text = attr("a: {value: '2024-01-02', type: date, input_formats: ['%d/%m/%Y']}")
    assert problems_of(text) == [
        f"{at(text, chr(39) + '2024')}: {M}.attributes.a.value: "
        "'2024-01-02' is in none of the formats %d/%m/%Y"
    ]


RESERVED = "is reserved: Braze would read it as an identifier or a flag"
EMAIL_BESIDE_PHONE = "email beside a phone identifier would make Braze identify users by email"
PHONE_ID = "        phone: {column: p}\n"

# Attributes, arrays and nested objects named like an identifier or a special key.
RESERVED_NAMES = [
    pytest.param(
        attr("braze_id: {column: b}"),
        "{column: b}",
        f"{M}.attributes.braze_id",
        f"'braze_id' {RESERVED}",
        id="attribute-braze_id-with-external_id",
    ),
    pytest.param(
        attr("user_alias: {column: b}"),
        "{column: b}",
        f"{M}.attributes.user_alias",
        f"'user_alias' {RESERVED}",
        id="attribute-user_alias-with-external_id",
    ),
    pytest.param(
        HEAD
        + "        user_alias: {name: {column: n}, label: {value: l}}\n      attributes:\n        external_id: {column: b}\n",
        "{column: b}",
        f"{M}.attributes.external_id",
        f"'external_id' {RESERVED}",
        id="attribute-external_id-with-user_alias",
    ),
    pytest.param(
        HEAD + "        email: {column: e}\n      attributes:\n        external_id: {column: b}\n",
        "{column: b}",
        f"{M}.attributes.external_id",
        f"'external_id' {RESERVED}",
        id="attribute-external_id-with-email",
    ),
    pytest.param(
        HEAD + PHONE_ID + "      attributes:\n        email: {column: b}\n",
        "{column: b}",
        f"{M}.attributes.email",
        EMAIL_BESIDE_PHONE,
        id="attribute-email-with-phone",
    ),
    pytest.param(
        attr("push_token_import: {value: true, type: boolean}"),
        "{value",
        f"{M}.attributes.push_token_import",
        f"'push_token_import' {RESERVED}",
        id="attribute-push_token_import",
    ),
    pytest.param(
        attr("_merge_objects: {column: b}"),
        "{column: b}",
        f"{M}.attributes._merge_objects",
        f"'_merge_objects' {RESERVED}",
        id="attribute-_merge_objects",
    ),
    pytest.param(
        attr("_update_existing_only: {value: true, type: boolean}"),
        "{value",
        f"{M}.attributes._update_existing_only",
        f"'_update_existing_only' {RESERVED}",
        id="attribute-_update_existing_only",
    ),
    pytest.param(
        attr("_notes: {column: b}"),
        "{column: b}",
        f"{M}.attributes._notes",
        f"'_notes' {RESERVED}",
        id="attribute-underscore-name",
    ),
    pytest.param(
        BASE + "      arrays:\n        external_id:\n          add: {column: b}\n",
        "add",
        f"{M}.arrays.external_id",
        "external_id is the identifier; map it only there",
        id="array-named-like-identifier",
    ),
    pytest.param(
        BASE + "      arrays:\n        braze_id: {add: {column: b}}\n",
        "{add",
        f"{M}.arrays.braze_id",
        f"'braze_id' {RESERVED}",
        id="array-braze_id",
    ),
    pytest.param(
        HEAD + PHONE_ID + "      arrays:\n        email: {add: {column: b}}\n",
        "{add",
        f"{M}.arrays.email",
        EMAIL_BESIDE_PHONE,
        id="array-email-with-phone",
    ),
    pytest.param(
        BASE + "      nested:\n        external_id: {columns: [b]}\n",
        "{columns",
        f"{M}.nested.external_id",
        "external_id is the identifier; map it only there",
        id="nested-named-like-identifier",
    ),
    pytest.param(
        HEAD + PHONE_ID + "      nested:\n        phone: {columns: remaining}\n",
        "{columns",
        f"{M}.nested.phone",
        "phone is the identifier; map it only there",
        id="nested-named-like-phone-identifier",
    ),
    pytest.param(
        BASE + "      nested:\n        user_alias: {columns: remaining}\n",
        "{columns",
        f"{M}.nested.user_alias",
        f"'user_alias' {RESERVED}",
        id="nested-user_alias",
    ),
]


@pytest.mark.parametrize(("text", "needle", "key_path", "message"), RESERVED_NAMES)
def test_config_error_names_braze_reserves(
    text: str, needle: str, key_path: str, message: str
) -> None:
    assert problems_of(text) == [f"{at(text, needle)}: {key_path}: {message}"]


ALLOWED_BESIDE = [
    pytest.param(attr("email: {column: e}\n        phone: {column: p}"), id="external_id"),
    pytest.param(
        HEAD + "        email: {column: e}\n      attributes:\n        phone: {column: p}\n",
        id="phone-beside-email-identifier",
    ),
    pytest.param(
        HEAD + "        user_alias: {name: {column: n}, label: {value: l}}\n"
        "      attributes:\n        email: {column: e}\n        phone: {column: p}\n",
        id="email-and-phone-beside-user_alias",
    ),
]


@pytest.mark.parametrize("text", ALLOWED_BESIDE)
def test_email_and_phone_attributes_beside_a_primary_or_email_identifier(text: str) -> None:
    # With a primary identifier (or email), Braze reads email and phone as profile fields.
    settings = parse_settings(text, "cfg.yaml", {})
    assert list(settings.channels) == ["C"]


@pytest.mark.parametrize("source", ["{value: everyone}", "{path: offer}"], ids=["constant", "path"])
def test_config_error_alias_name_must_come_from_a_column(source: str) -> None:
    text = HEAD + f"        user_alias: {{name: {source}, label: {{value: rpi}}}}\n"
    assert problems_of(text) == [
        f"{at(text, source)}: {M}.identifier.user_alias.name: "
        "the alias name must come from a column"
    ]


MERGE_MIXED = "nested objects must agree on merge (_merge_objects applies to the whole row)"


@pytest.mark.parametrize(
    "nested",
    [
        "        a: {columns: [x]}\n        b: {columns: [y], merge: false}\n",
        "        a: {columns: remaining, merge: false}\n        b: {columns: [y], merge: true}\n",
    ],
    ids=["default-true-and-false", "false-and-true"],
)
def test_config_error_nested_objects_must_agree_on_merge(nested: str) -> None:
    text = BASE + "      nested:\n" + nested
    assert problems_of(text) == [f"{at(text, 'identifier')}: {M}: {MERGE_MIXED}"]


@pytest.mark.parametrize("merge", ["true", "false"])
def test_nested_objects_agreeing_on_merge_parse(merge: str) -> None:
    text = (
        BASE + "      nested:\n"
        f"        a: {{columns: [x], merge: {merge}}}\n        b: {{columns: [y], merge: {merge}}}\n"
    )
    settings = parse_settings(text, "cfg.yaml", {})
    assert {n.merge for n in settings.channels["C"].mapping.nested.values()} == {merge == "true"}
