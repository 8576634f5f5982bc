"""Property tests of the row mapper: whatever a file holds, map_row never raises, and what it
produces is either a Rejection with a reason or an attributes object Braze accepts.

The Braze rules checked are those of /work/shared/reference/braze-users-track.md sections 4-6.
"""

from __future__ import annotations

import datetime
import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpi_braze_sync import columnar, columncache
from rpi_braze_sync.chunks import Drop
from rpi_braze_sync.config import compile_channels, load_config, parse_settings
from rpi_braze_sync.errors import ConfigError
from rpi_braze_sync.identifiers import MAX_EXTERNAL_ID_BYTES
from rpi_braze_sync.mapper import FileMapper
from rpi_braze_sync.mapper import bind as bind_mapping
from rpi_braze_sync.mapping import Mapped, MappingPlan, Rejection, normalise_column
from tests.examples import examples
from tests.oracle import map_row_oracle

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rpi-braze-sync.yaml"
PRIMARY = ("external_id", "user_alias", "braze_id")
GENDERS = {"M", "F", "O", "N", "P"}
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
FORBIDDEN_IN_KEY = re.compile(r"[.$\s]")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # never in an identifier sent
MAX_STRING = 255

# A mapping that exercises most of the language: alias identifier, append mode, every type,
# every transform, path parts and constants, array lists, three kinds of nested objects.
ALIAS_YAML = """
channels:
  C:
    mode: append
    mapping:
      identifier:
        user_alias:
          name: {column: alias, case: lower}
          label: {path: channel}
      attributes:
        email: {column: e-mail, type: email}
        phone: {column: Phone Number, type: phone, phone_region: FR}
        dob: {column: Birth Date, type: date, input_formats: ['%d/%m/%Y', '%Y-%m-%d']}
        gender: {column: sex, type: gender, case: lower, values: {homme: M, femme: F}}
        country: {column: pays, type: country}
        score: {column: score, type: integer, on_invalid: reject}
        ratio: {column: ratio, type: float}
        vip: {column: vip, type: boolean, default: false}
        last_seen: {column: seen, type: time}
        nickname: {column: nick, trim: false, max_length: 20, too_long: truncate}
        code: {column: code, case: upper, max_length: 10}
        home_city: {column: city, empty: 'null'}
        tier: {column: tier, values: {'1': gold, '2': 3, '3': true}}
        source: {path: offer}
        campaign: {value: spring}
        started: {value: '2024-01-02', type: date}
      arrays:
        tags:
          add: [{column: tag1}, {column: tag2, case: lower}]
          remove: {column: untag, values: {all: everything}}
        workflows:
          add: {path: workflow_id}
      nested:
        profile:
          keys:
            birthday: {column: Birth Date, type: date, input_formats: ['%d/%m/%Y']}
            seen_at: {column: seen, type: time}
            level: {column: level, type: integer}
            note: {column: note, trim: false}
            region: {value: emea}
            since: {value: '2020-05-01', type: date}
            file: {path: file_name}
        extra:
          columns: remaining
        picked:
          columns: [pick_a, pick b]
"""

# Email identifier (upsert), a phone attribute, nested keys of every type.
EMAIL_YAML = """
channels:
  C:
    mode: upsert
    mapping:
      identifier:
        email: {column: Email Address, type: email, case: lower}
      attributes:
        phone: {column: mobile, type: phone, phone_region: GB}
        first_name: {column: first name, max_length: 50, too_long: truncate}
        country: {column: c, type: country, required: true}
        dob: {column: birth, type: date}
        gender: {column: g, type: gender, on_invalid: reject}
        opted: {column: opt, type: boolean, empty: 'null'}
      arrays:
        lists:
          remove: {column: unsub}
      nested:
        prefs:
          keys:
            newsletter: {column: news, type: boolean}
            since: {column: since, type: time}
            score: {column: score, type: float}
            born: {column: birth, type: date}
            label: {value: web}
            channel: {path: channel}
        extra:
          columns: remaining
"""

# Phone identifier (append) with a small nested column list.
PHONE_YAML = """
channels:
  C:
    mode: append
    mapping:
      identifier:
        phone: {column: tel, type: phone, phone_region: US}
      attributes:
        home_city: {column: city, case: upper}
        last_name: {column: name}
      nested:
        n:
          columns: [a, b]
"""


# An external_id mapping (the column-wise fast path's kind) with most of the language.
WIDE_YAML = """
channels:
  C:
    mode: upsert
    mapping:
      identifier:
        external_id: {column: id}
      attributes:
        email: {column: mail, type: email}
        dob: {column: birth, type: date}
        country: {column: pays, type: country}
        gender: {column: sex, type: gender}
        score: {column: score, type: integer}
        ratio: {column: ratio, type: float, on_invalid: reject}
        vip: {column: vip, type: boolean, empty: 'null'}
        seen: {column: seen, type: time}
        code: {column: code, case: upper, max_length: 10}
        home_city: {column: city}
        phone: {column: tel, type: phone, phone_region: FR}
        campaign: {value: spring}
        source: {path: offer}
      arrays:
        tags:
          add: {column: tag}
        lists:
          remove: {column: unsub, values: {all: everything}}
        offers:
          add: {path: offer}
      nested:
        prefs:
          keys:
            news: {column: news, type: boolean}
            since: {column: since, type: time}
            label: {value: web}
        extra:
          columns: remaining
"""


def compile_yaml(text: str) -> MappingPlan:
    return compile_channels(parse_settings(text, "cfg.yaml", {}))["C"].plan.mapping


SHIPPED_MAPPING = (
    load_config(SHIPPED, env={}, dry_run=True).channels["Braze Onboarding and Upsert"].plan.mapping
)
ALIAS_MAPPING = compile_yaml(ALIAS_YAML)
EMAIL_MAPPING = compile_yaml(EMAIL_YAML)
PHONE_MAPPING = compile_yaml(PHONE_YAML)
WIDE_MAPPING = compile_yaml(WIDE_YAML)

# --- what Braze accepts -------------------------------------------------------------------


def check_time(where: str, value: Any) -> None:
    assert isinstance(value, str), where
    datetime.datetime.fromisoformat(value)  # raises if Braze could not read it either


def check_scalar(where: str, value: Any) -> None:
    assert value is not None, f"{where}: null"
    assert isinstance(value, str | bool | int | float), f"{where}: {value!r}"
    if isinstance(value, str):
        assert len(value) <= MAX_STRING, f"{where}: {len(value)} characters"
    if isinstance(value, float):
        assert math.isfinite(value), where


def check_nested_value(where: str, value: Any) -> None:
    if isinstance(value, dict):
        if "$time" in value:
            assert list(value) == ["$time"], where
            check_time(where, value["$time"])
        else:
            check_nested(where, value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_nested_value(f"{where}[{i}]", item)
    else:
        check_scalar(where, value)


def check_nested(where: str, obj: Any) -> None:
    assert isinstance(obj, dict), where
    assert obj, f"{where}: an empty nested object is sent"
    for key, value in obj.items():
        assert isinstance(key, str), where
        assert 1 <= len(key) <= MAX_STRING, f"{where}: key of {len(key)} characters"
        assert not FORBIDDEN_IN_KEY.search(key), f"{where}: key {key!r}"
        check_nested_value(f"{where}.{key}", value)


def check_result(
    mapping: MappingPlan, result: Mapped | Rejection, line_no: int
) -> Mapped | Rejection:
    """Assert `result` is a reasoned Rejection or a Braze-valid attributes object."""
    if isinstance(result, Rejection):
        assert result.line_no == line_no
        assert isinstance(result.reason, str)
        assert result.reason.strip()
        return result
    assert isinstance(result, Mapped), result
    attrs = result.attributes
    assert isinstance(result.user, str)
    assert result.user

    # exactly one primary identifier, else email or phone
    primaries = [k for k in PRIMARY if k in attrs]
    assert len(primaries) <= 1, primaries
    if not primaries:
        assert attrs.get("email") or attrs.get("phone"), attrs
    kind = mapping.identifier_kind
    assert kind in attrs
    if kind != "external_id":
        assert "external_id" not in attrs  # Braze would identify the user by it instead
    if kind == "phone":
        assert "email" not in attrs  # email wins over phone as the identifier
    if "external_id" in attrs:
        external_id = attrs["external_id"]
        assert isinstance(external_id, str)
        assert external_id
        assert len(external_id.encode("utf-8")) <= MAX_EXTERNAL_ID_BYTES
    if "user_alias" in attrs:
        alias = attrs["user_alias"]
        assert set(alias) == {"alias_name", "alias_label"}
        for part in alias.values():
            # An identifier is not a string attribute: no 255-character limit (the reference
            # documents none for an alias; external_id has its 987 bytes, checked above).
            assert isinstance(part, str)
            assert part
    if kind in ("email", "phone"):
        assert isinstance(attrs[kind], str)
        assert attrs[kind]
    identifiers = attrs["user_alias"].values() if kind == "user_alias" else [attrs[kind]]
    for identifier in identifiers:
        assert not CONTROL.search(identifier), repr(identifier)

    # special keys
    assert isinstance(attrs["_update_existing_only"], bool)
    assert attrs["_update_existing_only"] is (mapping.mode == "append")
    if "_merge_objects" in attrs:
        assert attrs["_merge_objects"] is True
    # _merge_objects only on a row that carries a nested object asking for it
    merges_sent = {merge for name, _, _, merge in mapping.nested if name in attrs}
    assert ("_merge_objects" in attrs) == (True in merges_sent), (merges_sent, attrs)

    # every value, by where it comes from
    field_rules = {rule.name: rule for rule in mapping.fields}
    array_names = {name for name, _, _, _ in mapping.arrays}
    nested_names = {name for name, _, _, _ in mapping.nested}
    for name, value in attrs.items():
        if name in ("external_id", "user_alias", "_update_existing_only", "_merge_objects"):
            continue  # identifiers are checked above
        if name in array_names:
            assert isinstance(value, dict), name
            assert value
            assert set(value) <= {"add", "remove"}, name
            for op, items in value.items():
                assert isinstance(items, list), name
                assert items, name
                for i, item in enumerate(items):
                    check_scalar(f"{name}.{op}[{i}]", item)
        elif name in nested_names:
            check_nested(name, value)
        elif value is None:
            # null clears a field: only where the mapping asks for it
            rule = field_rules.get(name)
            assert rule is not None, name
            assert rule.recipe.empty == "null", name
        else:
            check_scalar(name, value)

    # standard profile fields
    if attrs.get("dob") is not None:
        assert isinstance(attrs["dob"], str)
        assert DATE.fullmatch(attrs["dob"]), attrs["dob"]
        datetime.date.fromisoformat(attrs["dob"])
    if attrs.get("gender") is not None:
        assert attrs["gender"] in GENDERS
    if attrs.get("country") is not None:
        assert isinstance(attrs["country"], str)
        assert re.fullmatch(r"[A-Z]{2}", attrs["country"]), attrs["country"]
    phone_rule = mapping.identifier[0] if kind == "phone" else field_rules.get("phone")
    phone_typed = phone_rule is not None and phone_rule.recipe.type == "phone"
    if attrs.get("phone") is not None and phone_typed:
        assert E164.fullmatch(attrs["phone"]), attrs["phone"]

    orjson.dumps(attrs)  # raises on anything JSON cannot carry

    # every dropped field has a reason, and is not sent
    for drop in result.drops or []:
        assert isinstance(drop, Drop)
        assert drop.line_no == line_no
        assert drop.field
        assert isinstance(drop.reason, str)
        assert drop.reason.strip()
        if drop.field in field_rules:
            assert drop.field not in attrs
    return result


# --- strategies ---------------------------------------------------------------------------

ZONES = [
    None,
    datetime.UTC,
    datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
    datetime.timezone(-datetime.timedelta(hours=8)),
]

short_text = st.text(max_size=30)
# Long strings around the 255-character limit, built by repetition: cheap to generate.
long_text = st.builds(
    lambda unit, size: (unit * 320)[:size],
    st.text(min_size=1, max_size=8),
    st.integers(min_value=240, max_value=320),
)
wide_text = st.builds(  # 2 to 4 UTF-8 bytes a character: 987 bytes come before 255 characters
    lambda unit, size: (unit * 300)[:size],
    st.text(alphabet="😀𝔘é漢", min_size=1, max_size=4),
    st.integers(min_value=200, max_value=300),
)
spaces = st.sampled_from(["", " ", "   ", "\t", "\u00a0", "\u3000"])
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats().map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.sampled_from(["1e400", "nan", "-0", "00", "1_000", "0x10", "١٢٣", "１２"]),
)
iso_dates = st.dates().map(datetime.date.isoformat)
dmy_dates = st.dates().map(lambda d: f"{d.day:02d}/{d.month:02d}/{d.year:04d}")
bad_dates = st.sampled_from(
    ["2024-02-30", "2023-02-29", "2023-13-01", "0000-01-01", "2024-1-2", "31/02/2024", "9999-99-99"]
)
datetimes = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
    st.datetimes(),
    st.sampled_from(ZONES),
)
emails = st.one_of(
    st.emails(),
    st.sampled_from(["ada@example.com", "ADA@EXAMPLE.COM", "ada", "a b@x.io", "ada@@x.io"]),
)
phones = st.one_of(
    st.sampled_from(
        [
            "01 23 45 67 89",
            "+33 1 23 45 67 89",
            "+1 202-555-0143",
            "(202) 555-0143",
            "020 7946 0958",
            "+44 20 7946 0958",
            "0123",
            "+999 1",
            "phone",
            "1" * 300,
            "+33123456789",  # E.164 already: sent as written, column-wise too
            "+12025550143",
            "+4915123456789",
            "+3312345678",  # a digit short
            "+330123456789",  # a national prefix after the country code
            "+１２０２５５５０１４３",  # not ASCII digits
        ]
    ),
    st.from_regex(r"\+?[0-9 ().-]{1,25}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
)
countries = st.sampled_from(
    ["France", "fr", "FRA", "Germany", "united states", "Côte d'Ivoire", "Narnia", "XX", "  gb "]
)
genders = st.sampled_from(
    ["M", "f", "male", "Female", "MALE", "fEMALE", "other", "x", "N", "P", "o", "homme"]
)
booleans = st.sampled_from(["true", "FALSE", "yes", "Yes", "TRUE", "n", "N", "1", "0", "maybe"])
# Cells of a real export (tests/benchmarks/run.py's messy data set): codes with leading zeros,
# ranges, numbers in exponent form or with a decimal comma, text with commas, quotes, line ends.
messy = st.sampled_from(
    ["007", "0012345", "<25k", "25k-50k", ">100k", "1e3", "2.5E2", "1,5", "12.50", "-3",
     'said "call me", at 3h', "first line\nsecond line", "Washington, D.C.", "Saint-\u00c9tienne",
     "15/03/2024", "2024-02-30", "U1@Example.COM", "u1(at)example.com", "01 23 45 67 89"]
)  # fmt: skip

ANY_CELL = st.one_of(
    short_text,
    spaces,
    long_text,
    wide_text,
    numbers,
    iso_dates,
    dmy_dates,
    bad_dates,
    datetimes,
    emails,
    phones,
    countries,
    genders,
    booleans,
    messy,
    short_text.map(lambda s: f"  {s}  "),
)
valid_emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[A-Za-z0-9._+-]{1,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9-]{1,15}", fullmatch=True),
    st.sampled_from(["com", "fr", "co.uk", "io"]),
)
valid_us_phones = st.builds(
    "{} 555-{:04d}".format,
    st.sampled_from(["(202)", "+1 202", "202", "+1 (415)"]),
    st.integers(min_value=100, max_value=199),
)
TYPED_CELLS = {
    "id": st.one_of(st.text(min_size=1, max_size=40), st.uuids().map(str)),
    "email_id": st.one_of(valid_emails, valid_emails, emails),
    "phone_id": st.one_of(valid_us_phones, valid_us_phones, phones),
    "text": short_text,
    "email": emails,
    "phone": phones,
    "date": st.one_of(iso_dates, bad_dates),
    "dmy": st.one_of(dmy_dates, iso_dates, bad_dates),
    "time": datetimes,
    "gender": genders,
    "country": countries,
    "integer": numbers,
    "float": numbers,
    "boolean": booleans,
}


def cell(kind: str) -> st.SearchStrategy[str]:
    """Mostly (4 in 5) a plausible value for the column, else anything at all."""
    return st.integers(min_value=0, max_value=4).flatmap(
        lambda n: ANY_CELL if n == 0 else TYPED_CELLS[kind]
    )


# header name -> kind of value; `required` columns are always in the header
SHIPPED_COLUMNS = {
    "external_id": "id",
    "first_name": "text",
    "last_name": "text",
    "email": "email",
    "country": "country",
    "dob": "date",
    "gender": "gender",
    "home_city": "text",
    "phone": "phone",
    "output_name": "text",
    "RPContactID": "integer",
    "ChannelExecutionID": "integer",
}
ALIAS_COLUMNS = {
    "alias": "id",
    "e-mail": "email",
    "Phone Number": "phone",
    "Birth Date": "dmy",
    "sex": "gender",
    "pays": "country",
    "score": "integer",
    "ratio": "float",
    "vip": "boolean",
    "seen": "time",
    "nick": "text",
    "code": "text",
    "city": "text",
    "tier": "text",
    "tag1": "text",
    "tag2": "text",
    "untag": "text",
    "level": "integer",
    "note": "text",
    "pick_a": "integer",
    "pick b": "date",
}
EMAIL_COLUMNS = {
    "Email Address": "email_id",
    "mobile": "phone",
    "first name": "text",
    "c": "country",
    "birth": "date",
    "g": "gender",
    "opt": "boolean",
    "unsub": "text",
    "news": "boolean",
    "since": "time",
    "score": "float",
}
PHONE_COLUMNS = {"tel": "phone_id", "city": "text", "name": "text", "a": "integer", "b": "date"}
WIDE_COLUMNS = {
    "id": "id",
    "mail": "email",
    "birth": "date",
    "pays": "country",
    "sex": "gender",
    "score": "integer",
    "ratio": "float",
    "vip": "boolean",
    "seen": "time",
    "code": "text",
    "city": "text",
    "tel": "phone",
    "tag": "text",
    "unsub": "text",
    "news": "boolean",
    "since": "time",
}

CASES = [
    pytest.param(SHIPPED_MAPPING, SHIPPED_COLUMNS, {"external_id"}, id="shipped-upsert"),
    pytest.param(ALIAS_MAPPING, ALIAS_COLUMNS, {"alias"}, id="alias-many-types"),
    pytest.param(EMAIL_MAPPING, EMAIL_COLUMNS, {"Email Address", "c"}, id="email-identifier"),
    pytest.param(PHONE_MAPPING, PHONE_COLUMNS, {"tel"}, id="phone-identifier"),
    pytest.param(WIDE_MAPPING, WIDE_COLUMNS, {"id"}, id="external-id-many-types"),
]

extra_names = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["_internal", " _hidden", "Score (%)", "é", "1.5", "a$b", "Customer Tier"]),
)
path_part = st.one_of(
    st.sampled_from(["Braze Onboarding", "Spring Offer", "WF-42", "export.csv"]),
    st.text(max_size=20),
)


@st.composite
def header_and_rows(
    draw: st.DrawFn, columns: dict[str, str], required: set[str], max_rows: int = 3
) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """A header (some known columns, spelled variously, plus extras) and rows for it."""
    chosen = [c for c in columns if c in required or draw(st.booleans())]
    spelled = [draw(st.sampled_from([c, c.upper(), c.replace("_", " "), f" {c} "])) for c in chosen]
    kinds = dict(zip(spelled, (columns[c] for c in chosen), strict=True))
    seen = {normalise_column(c) for c in columns}
    for name in draw(st.lists(extra_names, max_size=6)):
        key = normalise_column(name)
        if key not in seen:  # two columns normalising alike fail the whole file (HeaderError)
            seen.add(key)
            kinds[name] = "extra"
    header = draw(st.permutations(list(kinds)))
    rows = []
    for _ in range(draw(st.integers(min_value=1, max_value=max_rows))):
        row = [draw(ANY_CELL if kinds[h] == "extra" else cell(kinds[h])) for h in header]
        delta = draw(st.sampled_from([0] * 12 + [-1, 1, 3]))  # mostly the right width
        row = row[: len(row) + delta] if delta < 0 else row + [""] * delta
        rows.append(row)
    path_values = {
        "channel": draw(path_part),
        "offer": draw(path_part),
        "workflow_id": draw(path_part),
        "file_name": draw(path_part),
    }
    return header, rows, path_values


PROPERTY_SETTINGS = settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize(("mapping", "columns", "required"), CASES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_map_row_never_raises_and_yields_braze_valid_objects(
    mapping: MappingPlan, columns: dict[str, str], required: set[str], data: st.DataObject
) -> None:
    header, rows, path_values = data.draw(header_and_rows(columns, required))
    mapper = bind_mapping(mapping, header, path_values)  # unique names: no HeaderError
    for line_no, row in enumerate(rows, start=2):
        check_result(mapping, mapper.map_row(row, line_no), line_no)


@pytest.mark.parametrize(("mapping", "columns", "required"), CASES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_the_row_function_equals_the_oracle(
    mapping: MappingPlan, columns: dict[str, str], required: set[str], data: st.DataObject
) -> None:
    # rowcode.py writes the plan out as straight-line code; the oracle (tests/oracle.py)
    # walks it generically: both must give the same object, drops and rejections, key order
    # included.
    header, rows, path_values = data.draw(header_and_rows(columns, required))
    mapper = bind_mapping(mapping, header, path_values)
    for line_no, row in enumerate(rows, start=2):
        compiled, oracle = mapper.map_row(row, line_no), map_row_oracle(mapper.plan, row, line_no)
        assert compiled == oracle, mapper.map_row.__doc__
        if isinstance(compiled, Mapped) and isinstance(oracle, Mapped):
            assert list(compiled.attributes) == list(oracle.attributes)


@pytest.mark.parametrize(("mapping", "columns", "required"), CASES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_column_wise_bodies_and_drops_are_the_oracles_byte_for_byte(
    mapping: MappingPlan, columns: dict[str, str], required: set[str], data: st.DataObject
) -> None:
    # columnar.py maps a chunk column by column, dropping bad values cell by cell, and leaves
    # to the row function (None) the rows it cannot take; map_rows, what sending, preview and
    # check run, puts both together. Every body must be exactly what orjson makes of the
    # oracle's object, with the oracle's drops, and every rejection the oracle's.
    header, rows, path_values = data.draw(header_and_rows(columns, required, max_rows=12))
    if data.draw(st.booleans()):  # a chunk where a column is the same or clean in every row
        column = data.draw(st.integers(min_value=0, max_value=len(header) - 1))
        value = data.draw(TYPED_CELLS[columns.get(header[column].strip(), "text")]
                          if header[column].strip() in columns else short_text)  # fmt: skip
        for row in rows:
            if len(row) > column:
                row[column] = value
    mapper = bind_mapping(mapping, header, path_values)
    assert_chunk_mapped_as_the_oracle(mapper, rows, list(range(2, len(rows) + 2)))


def assert_chunk_mapped_as_the_oracle(
    mapper: FileMapper, rows: list[list[str]], line_numbers: list[int]
) -> None:
    # (None only for a header whose keys collide: see the test below for the usual ones)
    if mapper.map_chunk is not None:
        bodies, users, drops = mapper.map_chunk(rows, line_numbers)
    else:
        bodies, users, drops = [None] * len(rows), [""] * len(rows), {}
    assert len(bodies) == len(rows)
    assert set(drops) <= {i for i, body in enumerate(bodies) if body is not None}
    whole = mapper.map_rows(rows, line_numbers)
    expected_drops = []
    for i, (row, line_no) in enumerate(zip(rows, line_numbers, strict=True)):
        expected = map_row_oracle(mapper.plan, row, line_no)
        if isinstance(expected, Rejection):
            assert bodies[i] is None, (row, expected)
            assert whole.bodies[i] is None
            assert whole.reasons[i] == expected.reason
            continue
        assert whole.bodies[i] == orjson.dumps(expected.attributes), mapper.map_row.__doc__
        assert whole.users[i] == expected.user
        expected_drops += expected.drops or []
        if bodies[i] is None:
            continue
        assert bodies[i] == orjson.dumps(expected.attributes), mapper.map_row.__doc__
        assert users[i] == expected.user
        assert drops.get(i, []) == (expected.drops or [])
    assert whole.drops == expected_drops
    assert set(whole.reasons) == {i for i, b in enumerate(whole.bodies) if b is None}


@pytest.mark.parametrize(("mapping", "columns", "required"), CASES)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_column_wise_bodies_stay_the_oracles_chunk_after_chunk(
    mapping: MappingPlan, columns: dict[str, str], required: set[str], data: st.DataObject
) -> None:
    # The column-wise encoder remembers, per column and file, the JSON of the cells it has
    # seen (columncache.py): chunks whose cells were all seen, or some, or whose cache filled
    # up (a few entries here) must still be mapped as the oracle maps them, each bad cell
    # dropped or rejecting its row again.
    header, rows, path_values = data.draw(header_and_rows(columns, required, max_rows=12))
    full = [i for i, row in enumerate(rows) if len(row) == len(header)]
    shuffled = [row[:] for row in rows]  # the same texts in other rows
    for column in range(len(header)):
        order = data.draw(st.permutations(full))
        for i, j in zip(full, order, strict=True):
            shuffled[i][column] = rows[j][column]
    kinds = [TYPED_CELLS[columns[h.strip()]] if h.strip() in columns else ANY_CELL for h in header]
    fresh = [[data.draw(cell) for cell in kinds] for _ in range(data.draw(st.integers(1, 12)))]
    mixed = [data.draw(st.sampled_from([rows[i % len(rows)], fresh[i % len(fresh)]]))
             for i in range(12)]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columnar, "CACHE_ENTRIES", data.draw(st.sampled_from([1, 3, 8, 1024])))
        patch.setattr(columncache, "_MIN_ENTRIES", 1)  # small caches, as in a wide file
        mapper = bind_mapping(mapping, header, path_values)
    start = 2
    for chunk in (rows, shuffled, rows[::-1], mixed, fresh, rows):
        line_numbers = list(range(start, start + len(chunk)))
        assert_chunk_mapped_as_the_oracle(mapper, chunk, line_numbers)
        start += len(chunk)


def test_column_wise_mapping_drops_bad_cells_and_leaves_the_rows_it_cannot_take() -> None:
    header = list(SHIPPED_COLUMNS)
    clean = ["u-1", "Ada", "Lovelace", "ada@example.com", "France", "1815-12-10", "f", "London",
             "+44 20 7946 0958", "Spring", "42", "7"]  # fmt: skip
    mapper = bind(SHIPPED_MAPPING, header)
    assert mapper.map_chunk is not None
    rows = [clean, [*clean[:5], "1815-02-30", *clean[6:]], ["", *clean[1:]], clean[:-1], clean]
    bodies, users, drops = mapper.map_chunk(rows, [2, 3, 4, 5, 6])
    # The invalid date is dropped here, cell by cell; an empty id and a short row are left.
    assert [body is not None for body in bodies] == [True, True, False, False, True]
    expected = mapper.map_row(clean, 2)
    assert isinstance(expected, Mapped)
    assert bodies[0] == bodies[4] == orjson.dumps(expected.attributes)
    assert users[0] == users[1] == "u-1"
    without_dob = mapper.map_row(rows[1], 3)
    assert isinstance(without_dob, Mapped)
    assert "dob" not in without_dob.attributes
    assert bodies[1] == orjson.dumps(without_dob.attributes)
    assert drops == {1: [Drop(3, "dob", "1815-02-30", "not a real date")]}
    assert without_dob.drops == drops[1]


@pytest.mark.parametrize(("mapping", "columns", "required"), CASES)
def test_every_test_mapping_has_a_column_wise_path(
    mapping: MappingPlan, columns: dict[str, str], required: set[str]
) -> None:
    # Every identifier kind (the others than a plain external_id are identified row by row,
    # then mapped column-wise), arrays with several values, nested objects.
    mapper = bind(mapping, list(columns))
    assert mapper.map_chunk is not None


@pytest.mark.parametrize(("mapping", "columns", "required"), CASES)
@settings(PROPERTY_SETTINGS, max_examples=examples(50))
@given(data=st.data())
def test_map_row_rejects_every_row_of_the_wrong_width(
    mapping: MappingPlan, columns: dict[str, str], required: set[str], data: st.DataObject
) -> None:
    header = list(columns)
    mapper = bind_mapping(mapping, header, {"channel": "ch", "offer": "of", "workflow_id": "1"})
    width = data.draw(
        st.integers(min_value=0, max_value=len(header) + 5).filter(lambda n: n != len(header))
    )
    row = data.draw(st.lists(ANY_CELL, min_size=width, max_size=width))
    result = mapper.map_row(row, 9)
    assert result == Rejection(9, f"the row has {width} fields where the header has {len(header)}")


# --- anchors: known rows, known objects (so the properties above are not vacuous) ----------


def bind(mapping: MappingPlan, header: list[str]) -> FileMapper:
    return bind_mapping(
        mapping, header, {"channel": "Braze Onboarding", "offer": "Spring", "workflow_id": "42"}
    )


def test_shipped_mapping_good_row() -> None:
    header = [*SHIPPED_COLUMNS, "Loyalty Points", "Member Since", "_rpi_internal"]
    row = [
        "u-1",
        " Ada ",
        "Lovelace",
        "ada@example.com",
        "France",
        "1815-12-10",
        "female",
        "London",
        "+44 20 7946 0958",
        "Audience A",
        "77",
        "88",
        "120",
        "2020-05-01",
        "x",
    ]
    result = check_result(SHIPPED_MAPPING, bind(SHIPPED_MAPPING, header).map_row(row, 2), 2)
    assert result == Mapped(
        "u-1",
        {
            "external_id": "u-1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "country": "FR",
            "dob": "1815-12-10",
            "gender": "F",
            "home_city": "London",
            "phone": "+442079460958",
            "rpi_audience_outputs": {"add": ["Audience A"]},
            "rpi_offers": {"add": ["Spring"]},
            "rpi_contact_ids": {"add": ["77"]},
            "rpi_channel_exec_ids": {"add": ["88"]},
            "rpi_cdp_attributes": {"loyalty_points": 120, "member_since": {"$time": "2020-05-01"}},
            "_merge_objects": True,
            "_update_existing_only": False,
        },
        None,
    )


def test_shipped_mapping_drops_bad_values_with_reasons() -> None:
    header = list(SHIPPED_COLUMNS)
    row = ["u-2", "x" * 256, "", "not-an-email", "Narnia", "2023-02-29", "x", "", "", "", "", ""]
    result = check_result(SHIPPED_MAPPING, bind(SHIPPED_MAPPING, header).map_row(row, 5), 5)
    assert isinstance(result, Mapped)
    assert result.attributes == {
        "external_id": "u-2",
        "rpi_offers": {"add": ["Spring"]},
        "_update_existing_only": False,
    }
    assert result.drops == [
        Drop(5, "first_name", "x" * 256, "longer than 255 characters (256)"),
        Drop(5, "email", "not-an-email", "not an email address"),
        Drop(5, "country", "Narnia", "not an ISO 3166 country code or name"),
        Drop(5, "dob", "2023-02-29", "not a real date"),
        Drop(5, "gender", "x", "not a gender (M, F, O, N, P, male, female, other)"),
    ]


@pytest.mark.parametrize(
    ("external_id", "reason"),
    [
        pytest.param("", "external_id is empty", id="empty"),
        pytest.param("   ", "external_id is empty", id="blank"),
        pytest.param(  # no 255-character limit: 987 bytes are the only limit
            "x" * (MAX_EXTERNAL_ID_BYTES + 1),
            f"external_id is longer than {MAX_EXTERNAL_ID_BYTES} bytes",
            id="too-many-ascii-bytes",
        ),
        pytest.param(
            "😀" * 247,
            f"external_id is longer than {MAX_EXTERNAL_ID_BYTES} bytes",
            id="too-many-bytes",
        ),
    ],
)
def test_shipped_mapping_rejects_bad_external_ids(external_id: str, reason: str) -> None:
    result = bind(SHIPPED_MAPPING, ["external_id"]).map_row([external_id], 3)
    assert check_result(SHIPPED_MAPPING, result, 3) == Rejection(3, reason)


def test_shipped_append_mapping_updates_existing_users_only() -> None:
    append = load_config(SHIPPED, env={}, dry_run=True).channels["Braze Append"].plan.mapping
    mapper = bind(append, ["external_id", "output_name"])
    result = check_result(append, mapper.map_row(["u-3", "Audience B"], 2), 2)
    assert result == Mapped(
        "u-3",
        {
            "external_id": "u-3",
            "rpi_audience_outputs": {"add": ["Audience B"]},
            "rpi_offers": {"add": ["Spring"]},
            "_update_existing_only": True,
        },
        None,
    )


def test_alias_mapping_good_row() -> None:
    values = {
        "alias": "ADA-1",
        "e-mail": "ada@example.com",
        "Phone Number": "01 23 45 67 89",
        "Birth Date": "10/12/1815",
        "sex": "Homme",
        "pays": "deu",
        "score": "42",
        "ratio": "0.5",
        "vip": "",
        "seen": "2024-01-02T03:04:05",
        "nick": " a very long nickname indeed ",
        "code": "abc",
        "city": "",
        "tier": "2",
        "tag1": "Red",
        "tag2": "BLUE",
        "untag": "all",
        "level": "3",
        "note": " hi ",
        "pick_a": "7",
        "pick b": "2024-02-29",
        "Favourite Colour": "green",
    }
    mapper = bind(ALIAS_MAPPING, list(values))
    result = check_result(ALIAS_MAPPING, mapper.map_row(list(values.values()), 2), 2)
    assert result == Mapped(
        "user_alias\0Braze Onboarding\0ada-1",
        {
            "user_alias": {"alias_name": "ada-1", "alias_label": "Braze Onboarding"},
            "email": "ada@example.com",
            "phone": "+33123456789",
            "dob": "1815-12-10",
            "gender": "M",
            "country": "DE",
            "score": 42,
            "ratio": 0.5,
            "vip": False,
            "last_seen": "2024-01-02T03:04:05Z",
            "nickname": " a very long nicknam",
            "code": "ABC",
            "home_city": None,
            "tier": 3,
            "source": "Spring",
            "campaign": "spring",
            "started": "2024-01-02",
            "tags": {"add": ["Red", "blue"], "remove": ["everything"]},
            "workflows": {"add": ["42"]},
            "profile": {
                "birthday": {"$time": "1815-12-10"},
                "seen_at": {"$time": "2024-01-02T03:04:05Z"},
                "level": 3,
                "note": " hi ",
                "region": "emea",
                "since": {"$time": "2020-05-01"},
            },
            "extra": {"favourite_colour": "green"},
            "picked": {"pick_a": 7, "pick_b": {"$time": "2024-02-29"}},
            "_merge_objects": True,
            "_update_existing_only": True,
        },
        None,
    )


def test_alias_mapping_rejects_an_invalid_score() -> None:
    mapper = bind(ALIAS_MAPPING, ["alias", "score"])
    assert check_result(ALIAS_MAPPING, mapper.map_row(["a", "4.5"], 7), 7) == Rejection(
        7, "score: '4.5' is not an integer"
    )


def test_email_mapping_good_row() -> None:
    header = ["Email Address", "c", "mobile", "news", "since", "Shoe Size"]
    row = ["Ada@Example.com", "United Kingdom", "020 7946 0958", "yes", "2024-01-02", "38.5"]
    mapper = bind(EMAIL_MAPPING, header)
    result = check_result(EMAIL_MAPPING, mapper.map_row(row, 2), 2)
    assert result == Mapped(
        "email\0ada@example.com",
        {
            "email": "ada@example.com",
            "phone": "+442079460958",
            "country": "GB",
            "prefs": {
                "newsletter": True,
                "since": {"$time": "2024-01-02T00:00:00Z"},
                "label": "web",
                "channel": "Braze Onboarding",
            },
            "extra": {"shoe_size": 38.5},
            "_merge_objects": True,
            "_update_existing_only": False,
        },
        None,
    )


def test_phone_mapping_good_row() -> None:
    mapper = bind(PHONE_MAPPING, ["tel", "a", "b"])
    result = check_result(PHONE_MAPPING, mapper.map_row(["(202) 555-0143", "5", "x"], 2), 2)
    assert result == Mapped(
        "phone\0+12025550143",
        {
            "phone": "+12025550143",
            "n": {"a": 5, "b": "x"},
            "_merge_objects": True,
            "_update_existing_only": True,
        },
        None,
    )


INVALID_OBJECTS = [
    pytest.param(
        {"external_id": "u", "user_alias": {"alias_name": "a", "alias_label": "b"}},
        id="two-primary-identifiers",
    ),
    pytest.param({"external_id": ""}, id="empty-external-id"),
    pytest.param({"external_id": "😀" * 247}, id="external-id-too-many-bytes"),
    pytest.param({"external_id": "u", "first_name": "x" * 256}, id="string-too-long"),
    pytest.param(
        {"external_id": "u", "rpi_offers": {"add": ["x" * 256]}}, id="array-item-too-long"
    ),
    pytest.param({"external_id": "u", "rpi_offers": {"add": [None]}}, id="array-item-null"),
    pytest.param({"external_id": "u", "rpi_cdp_attributes": {"k": None}}, id="nested-null"),
    pytest.param({"external_id": "u", "rpi_cdp_attributes": {"a.b": 1}}, id="nested-key-dot"),
    pytest.param({"external_id": "u", "rpi_cdp_attributes": {"$a": 1}}, id="nested-key-dollar"),
    pytest.param({"external_id": "u", "rpi_cdp_attributes": {"a b": 1}}, id="nested-key-space"),
    pytest.param({"external_id": "u", "rpi_cdp_attributes": {"k" * 256: 1}}, id="nested-key-long"),
    pytest.param(
        {"external_id": "u", "rpi_cdp_attributes": {"k": "x" * 256}}, id="nested-string-too-long"
    ),
    pytest.param(
        {"external_id": "u", "rpi_cdp_attributes": {"k": {"$time": "2024-02-30"}}},
        id="nested-bad-time",
    ),
    pytest.param({"external_id": "u", "dob": "2024-02-30"}, id="dob-unreal"),
    pytest.param({"external_id": "u", "dob": "10/12/1815"}, id="dob-shape"),
    pytest.param({"external_id": "u", "gender": "X"}, id="gender"),
    pytest.param({"external_id": "u", "country": "France"}, id="country-name"),
    pytest.param({"external_id": "u", "country": "fr"}, id="country-lower"),
    pytest.param({"external_id": "u", "first_name": None}, id="null-where-not-asked"),
    pytest.param({"external_id": "u", "first_name": float("nan")}, id="nan"),
    pytest.param({"external_id": "u", "first_name": b"bytes"}, id="not-json"),
]


@pytest.mark.parametrize("bad", INVALID_OBJECTS)
def test_the_checker_catches_invalid_objects(bad: dict[str, Any]) -> None:
    """The properties above rest on check_result: it must refuse what Braze would refuse."""
    attributes = {**bad, "_update_existing_only": False}
    with pytest.raises((AssertionError, ValueError, TypeError, orjson.JSONEncodeError)):
        check_result(SHIPPED_MAPPING, Mapped("u", attributes, None), 2)


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(Rejection(2, ""), id="rejection-without-reason"),
        pytest.param(Rejection(3, "why"), id="rejection-wrong-line"),
        pytest.param(
            Mapped("u", {"external_id": "u", "_update_existing_only": "false"}),
            id="update-existing-only-not-bool",
        ),
        pytest.param(
            Mapped("u", {"external_id": "u", "_update_existing_only": True}),
            id="update-existing-only-wrong-mode",
        ),
        pytest.param(
            Mapped(
                "u", {"external_id": "u", "_update_existing_only": False}, [Drop(2, "dob", "x", "")]
            ),
            id="drop-without-reason",
        ),
        pytest.param(
            Mapped(
                "u",
                {"external_id": "u", "dob": "2024-01-02", "_update_existing_only": False},
                [Drop(2, "dob", "x", "bad")],
            ),
            id="dropped-field-still-sent",
        ),
        pytest.param(
            Mapped("u", {"first_name": "Ada", "_update_existing_only": False}), id="no-identifier"
        ),
        pytest.param(
            Mapped(
                "u", {"external_id": "u", "_merge_objects": True, "_update_existing_only": False}
            ),
            id="merge-objects-without-a-nested-object",
        ),
        pytest.param(
            Mapped(
                "u",
                {
                    "external_id": "u",
                    "rpi_cdp_attributes": {"k": 1},
                    "_update_existing_only": False,
                },
            ),
            id="nested-object-without-merge-objects",
        ),
    ],
)
def test_the_checker_catches_invalid_results(result: Mapped | Rejection) -> None:
    with pytest.raises(AssertionError):
        check_result(SHIPPED_MAPPING, result, 2)


# --- fixed bugs: names Braze reads as identifiers, over-long keys, _merge_objects per row ----


def config_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_yaml(text)
    return info.value.problems


def at(text: str, needle: str) -> str:
    """'cfg.yaml:LINE:COL' of the first `needle` in `text`."""
    index = text.index(needle)
    line = text.count("\n", 0, index) + 1
    return f"cfg.yaml:{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


HEAD = "channels:\n  C:\n    mode: upsert\n    mapping:\n      identifier:\n"
EXTERNAL_ID = HEAD + "        external_id: {column: id}\n"


def test_remaining_column_with_a_very_long_name_is_left_out_with_a_warning() -> None:
    long_name = "Very Long Column " * 20  # 340 characters, normalised to 339
    longest = "k" * 255  # a nested key may have 255 characters
    mapper = bind(SHIPPED_MAPPING, ["external_id", long_name, longest, "Tier"])
    assert mapper.warnings == [
        "rpi_audience_outputs: the column 'output_name' is missing; "
        "rpi_audience_outputs is not sent",
        "rpi_cdp_attributes: columns with names over 255 characters are not sent: "
        f"{'very_long_column_' * 2}very_l...",  # the first 40 characters
    ]
    result = check_result(SHIPPED_MAPPING, mapper.map_row(["u-1", "v", "w", "gold"], 2), 2)
    assert result == Mapped(
        "u-1",
        {
            "external_id": "u-1",
            "rpi_offers": {"add": ["Spring"]},
            "rpi_cdp_attributes": {longest: "w", "tier": "gold"},
            "_merge_objects": True,
            "_update_existing_only": False,
        },
        None,
    )


@pytest.mark.parametrize(
    ("section", "needle", "message"),
    [
        pytest.param(
            "      arrays:\n        external_id:\n          add: {column: x}\n",
            "add",
            "arrays.external_id: external_id is the identifier; map it only there",
            id="array",
        ),
        pytest.param(
            "      nested:\n        external_id: {columns: [x]}\n",
            "{columns",
            "nested.external_id: external_id is the identifier; map it only there",
            id="nested",
        ),
    ],
)
def test_an_array_or_nested_object_named_like_the_identifier_is_a_config_error(
    section: str, needle: str, message: str
) -> None:
    # Before: map_row raised AttributeError (array) or replaced the id (nested object).
    text = EXTERNAL_ID + section
    assert config_problems(text) == [f"{at(text, needle)}: channels.C.mapping.{message}"]


def test_nested_objects_disagreeing_on_merge_are_a_config_error() -> None:
    # Before: a row whose only nested object said merge: false was sent with _merge_objects.
    text = (
        EXTERNAL_ID + "      nested:\n"
        "        prefs:\n          keys:\n            news: {column: news, type: boolean}\n"
        "          merge: false\n"
        "        extra: {columns: remaining}\n"
    )
    assert config_problems(text) == [
        f"{at(text, 'identifier')}: channels.C.mapping: nested objects must agree on merge "
        "(_merge_objects applies to the whole row)"
    ]


def merge_mapping(merge: str) -> MappingPlan:
    return compile_yaml(
        EXTERNAL_ID + "      attributes:\n        first_name: {column: name}\n"
        "      nested:\n"
        f"        prefs:\n          keys:\n            news: {{column: news, type: boolean}}\n"
        f"          merge: {merge}\n"
        f"        extra: {{columns: remaining, merge: {merge}}}\n"
    )


@pytest.mark.parametrize(
    ("merge", "row", "sent"),
    [
        ("true", ["u-1", "Ada", "", ""], {"first_name": "Ada"}),
        ("true", ["u-1", "Ada", "yes", ""], {"first_name": "Ada", "prefs": {"news": True},
                                              "_merge_objects": True}),
        ("true", ["u-1", "", "", "3"], {"extra": {"tier": 3}, "_merge_objects": True}),
        ("false", ["u-1", "Ada", "", ""], {"first_name": "Ada"}),
        ("false", ["u-1", "Ada", "no", "3"], {"first_name": "Ada", "prefs": {"news": False},
                                              "extra": {"tier": 3}}),
    ],
    ids=["merge-no-nested", "merge-prefs", "merge-remaining", "replace-no-nested", "replace-both"],
)  # fmt: skip
def test_merge_objects_is_sent_only_on_rows_carrying_a_nested_object(
    merge: str, row: list[str], sent: dict[str, Any]
) -> None:
    mapping = merge_mapping(merge)
    result = bind(mapping, ["id", "name", "news", "tier"]).map_row(row, 2)
    expected = {"external_id": "u-1", **sent, "_update_existing_only": False}
    assert check_result(mapping, result, 2) == Mapped("u-1", expected, None)


def test_email_beside_a_phone_identifier_is_a_config_error() -> None:
    # Before: the email attribute was sent and Braze identified the user by it (email wins).
    text = (
        HEAD + "        phone: {column: tel, type: phone, phone_region: US}\n"
        "      attributes:\n        email: {column: mail, type: email}\n"
    )
    assert config_problems(text) == [
        f"{at(text, '{column: mail')}: channels.C.mapping.attributes.email: "
        "email beside a phone identifier would make Braze identify users by email"
    ]


@pytest.mark.parametrize("size", [256, MAX_EXTERNAL_ID_BYTES])
def test_shipped_mapping_sends_a_long_external_id(size: int) -> None:
    result = bind(SHIPPED_MAPPING, ["external_id"]).map_row(["x" * size], 3)
    assert check_result(SHIPPED_MAPPING, result, 3) == Mapped(
        "x" * size,
        {
            "external_id": "x" * size,
            "rpi_offers": {"add": ["Spring"]},
            "_update_existing_only": False,
        },
        None,
    )
