"""The pure mapping: converters, nested typing, and rows mapped with the shipped config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from rpi_braze_sync import parsers as tf
from rpi_braze_sync.chunks import Drop
from rpi_braze_sync.config import load_config
from rpi_braze_sync.mapper import FileMapper
from rpi_braze_sync.mapper import bind as bind_mapping
from rpi_braze_sync.mapping import (
    HeaderError,
    Mapped,
    MappingError,
    Rejection,
    compile_mapping,
    normalise_column,
)
from rpi_braze_sync.settings import MappingSpec
from tests.oracle import map_row_oracle

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rpi-braze-sync.yaml"
UPSERT = "Braze Onboarding and Upsert"
APPEND = "Braze Append"
PATH_VALUES = {
    "channel": UPSERT,
    "offer": "Spring Offer",
    "workflow_id": "42",
    "file_name": "f.txt",
}


NORMALISED = {
    "Output Name": "output_name", "output_name": "output_name", "  RPContactID ": "rpcontactid",
    "Marital Status": "marital_status", "marital-status": "marital_status",
    "E-Mail  Address!": "e_mail_address", "__Private__": "private", "": "",
}  # fmt: skip


@pytest.mark.parametrize(("header", "expected"), NORMALISED.items())
def test_normalise_column(header: str, expected: str) -> None:
    assert normalise_column(header) == expected


GENDER = "not a gender (M, F, O, N, P, male, female, other)"
COUNTRY = "not an ISO 3166 country code or name"
ACCEPTS: dict[Any, dict[str, Any]] = {
    tf.parse_date: {"1990-05-17": "1990-05-17", "2024-02-29": "2024-02-29"},
    tf.parse_gender: {"M": "M", "f": "F", "o": "O", "N": "N", "p": "P", "Male": "M", "FEMALE": "F",
                   "other": "O"},
    tf.parse_country: {"FR": "FR", "fr": "FR", "FRA": "FR", "France": "FR", "germany": "DE",
                    "gbr": "GB", "United Kingdom": "GB", "United States": "US",
                    "South Korea": "KR"},
    tf.parse_email: {"ann@example.com": "ann@example.com", "a.b+c@d.example.fr": "a.b+c@d.example.fr"},
    tf.parse_integer: {"42": 42, "-7": -7},
    tf.parse_float: {"1.5": 1.5, "-2": -2.0},
    tf.parse_boolean: {"true": True, "TRUE": True, "1": True, "Yes": True, "false": False, "0": False,
                    "NO": False},
}  # fmt: skip
REFUSES: dict[Any, dict[str, str]] = {
    tf.parse_date: {"2021-02-30": "not a real date", "2023-02-29": "not a real date",
                 "2021-13-01": "not a real date", "2021-2-3": "not a yyyy-MM-dd date",
                 "20210203": "not a yyyy-MM-dd date", "17/05/1990": "not a yyyy-MM-dd date",
                 "2021-02-03T00:00": "not a yyyy-MM-dd date"},
    tf.parse_gender: {"x": GENDER, "unknown": GENDER, "": GENDER},
    tf.parse_country: {"Atlantis": COUNTRY, "XX": COUNTRY, "Frankreich": COUNTRY, "": COUNTRY},
    tf.parse_email: {"ann.example.com": "not an email address", "ann@example": "not an email address",
                  "ann smith@example.com": "not an email address",
                  "a@@example.com": "not an email address",
                  "a" * 250 + "@b.com": "longer than 255 characters (256)"},
    tf.parse_integer: {"1.5": "not an integer", "abc": "not an integer"},
    tf.parse_float: {"abc": "not a number", "nan": "not a finite number",
                  "-inf": "not a finite number"},
    tf.parse_boolean: {"maybe": "not a boolean (true/false, yes/no, 1/0)"},
}  # fmt: skip


@pytest.mark.parametrize(
    ("convert", "raw", "expected"), [(f, r, e) for f, t in ACCEPTS.items() for r, e in t.items()]
)
def test_converter_accepts(convert: Any, raw: str, expected: Any) -> None:
    result = convert(raw)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("convert", "raw", "reason"), [(f, r, e) for f, t in REFUSES.items() for r, e in t.items()]
)
def test_converter_refuses(convert: Any, raw: str, reason: str) -> None:
    with pytest.raises(tf.FieldValueError) as info:
        convert(raw)
    assert str(info.value) == reason


INFERRED: dict[str, Any] = {
    "0": 0, "42": 42, "-17": -17, "-0": 0, "123456789012345": 123456789012345,
    "1234567890123456": "1234567890123456", "0123": "0123", "+1": "+1",
    "1.5": 1.5, "-12.50": -12.5, "0.25": 0.25, "00.5": "00.5", "1.": "1.", ".5": ".5",
    "1e3": "1e3", "true": True, "TRUE": True, "False": False, "yes": "yes",
    "2024-02-29": {"$time": "2024-02-29"}, "1990-05-17": {"$time": "1990-05-17"},
    "2021-02-30": "2021-02-30", "2021-2-3": "2021-2-3", "Master": "Master", "x" * 255: "x" * 255,
}  # fmt: skip


@pytest.mark.parametrize(("raw", "expected"), INFERRED.items())
def test_infer_value(raw: str, expected: Any) -> None:
    result = tf.infer_value(raw)
    assert result == expected
    assert type(result) is type(expected)


def test_infer_value_refuses_long_text() -> None:
    with pytest.raises(tf.FieldValueError, match=r"^longer than 255 characters \(256\)$"):
        tf.infer_value("x" * 256)


# --- rows mapped with the shipped configuration -----------------------------------------------

HEADER = [
    "external_id", "first_name", "last_name", "email", "country", "dob", "gender", "home_city",
    "phone", "output_name", "RPContactID", "ChannelExecutionID", "education", "income",
    "Marital Status", "Member Since", "VIP", "_rpi_internal",
]  # fmt: skip
ROW = {
    "external_id": "user-1", "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com",
    "country": "France", "dob": "1990-05-17", "gender": "female", "home_city": "Lyon",
    "phone": "+33 6 12 34 56 78", "output_name": "Spring Audience", "RPContactID": "1001",
    "ChannelExecutionID": "77", "education": "Master", "income": "52000",
    "Marital Status": "married", "Member Since": "2020-01-31", "VIP": "TRUE",
    "_rpi_internal": "do not send",
}  # fmt: skip
EXPECTED: dict[str, Any] = {
    "external_id": "user-1", "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com",
    "country": "FR", "dob": "1990-05-17", "gender": "F", "home_city": "Lyon",
    "phone": "+33612345678",
    "rpi_audience_outputs": {"add": ["Spring Audience"]},
    "rpi_offers": {"add": ["Spring Offer"]},
    "rpi_contact_ids": {"add": ["1001"]},
    "rpi_channel_exec_ids": {"add": ["77"]},
    "rpi_cdp_attributes": {
        "education": "Master", "income": 52000, "marital_status": "married",
        "member_since": {"$time": "2020-01-31"}, "vip": True,
    },
    "_merge_objects": True,
    "_update_existing_only": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def channels() -> dict[str, Any]:
    return load_config(SHIPPED, env={}, dry_run=True).channels


def bind(channels: dict[str, Any], header: list[str], channel: str = UPSERT) -> FileMapper:
    return bind_mapping(channels[channel].plan.mapping, header, {**PATH_VALUES, "channel": channel})


def cells(**changes: str) -> list[str]:
    row = {**ROW, **changes}
    return [row[name] for name in HEADER]


@pytest.mark.parametrize(("channel", "update_existing_only"), [(UPSERT, False), (APPEND, True)])
def test_full_row(channels: dict[str, Any], channel: str, update_existing_only: bool) -> None:
    mapper = bind(channels, HEADER, channel)
    assert mapper.warnings == []
    expected = {**EXPECTED, "_update_existing_only": update_existing_only}
    assert mapper.map_row(cells(), 7) == Mapped("user-1", expected, None)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("dob", "2021-02-30", "not a real date"),
        ("dob", "17/05/1990", "not a yyyy-MM-dd date"),
        ("gender", "x", GENDER),
        ("country", "Atlantis", COUNTRY),
        ("email", "ann.example.com", "not an email address"),
        ("first_name", "A" * 256, "longer than 255 characters (256)"),
    ],
)
def test_bad_field_is_dropped_and_row_still_sent(
    channels: dict[str, Any], column: str, value: str, reason: str
) -> None:
    result = bind(channels, HEADER).map_row(cells(**{column: value}), 7)
    expected = {k: v for k, v in EXPECTED.items() if k != column}
    assert result == Mapped("user-1", expected, [Drop(7, column, value, reason)])


@pytest.mark.parametrize(
    ("phone", "country", "sent"),
    [
        ("+33 6 12 34 56 78", "France", "+33612345678"),
        ("06 12 34 56 78", "France", "+33612345678"),  # national: the row's country's
        ("0612345678", "fr", "+33612345678"),
        ("06 12 34 56 78", "FRA", "+33612345678"),
        ("(202) 555-0143", "", "+12025550143"),  # no country: phone_region (US)
        ("2025550143", "Atlantis", "+12025550143"),  # no usable country: phone_region too
        ("+1 202 555 0143", "France", "+12025550143"),  # international: whatever the country
        ("020 7946 0018", "United Kingdom", "+442079460018"),
    ],
)
def test_phone_is_sent_in_e164_read_in_the_rows_country(
    channels: dict[str, Any], phone: str, country: str, sent: str
) -> None:
    result = bind(channels, HEADER).map_row(cells(phone=phone, country=country), 7)
    assert isinstance(result, Mapped)
    assert result.attributes["phone"] == sent


@pytest.mark.parametrize(
    ("phone", "country", "reason"),
    [
        ("2025550143", "France", "not a valid phone number"),  # a US number, read as French
        ("call me", "France", "not a phone number"),
        ("+999 123", "", "not a phone number"),
    ],
)
def test_a_phone_that_cannot_be_read_is_dropped_and_the_row_sent(
    channels: dict[str, Any], phone: str, country: str, reason: str
) -> None:
    result = bind(channels, HEADER).map_row(cells(phone=phone, country=country), 7)
    assert isinstance(result, Mapped)
    assert "phone" not in result.attributes
    assert result.attributes["first_name"] == "Ann"
    assert result.drops is not None
    assert Drop(7, "phone", phone, reason) in result.drops


def test_a_nested_object_over_100_kb_is_dropped_with_its_size_and_the_row_sent(
    channels: dict[str, Any],
) -> None:
    extra = [f"column_{i:03d}" for i in range(420)]
    header = [*HEADER, *extra]
    mapper = bind(channels, header)
    big = cells() + ["x" * 250] * len(extra)  # about 110 KB of JSON in rpi_cdp_attributes
    small = cells() + ["y"] * len(extra)
    over, under = mapper.map_row(big, 7), mapper.map_row(small, 8)
    assert isinstance(over, Mapped)
    assert isinstance(under, Mapped)
    assert "rpi_cdp_attributes" not in over.attributes
    assert "_merge_objects" not in over.attributes  # no nested object left to merge
    assert over.attributes["first_name"] == "Ann"
    assert over.drops is not None
    (drop,) = [d for d in over.drops if d.field == "rpi_cdp_attributes"]
    expected_size = len(orjson.dumps({
        **EXPECTED["rpi_cdp_attributes"], **dict.fromkeys(extra, "x" * 250)
    }))  # fmt: skip
    assert expected_size > 100_000
    assert drop.reason.startswith(
        f"the object is {expected_size} bytes as JSON, over Braze's 100 KB"
    )
    assert len(orjson.dumps(under.attributes["rpi_cdp_attributes"])) < 100_000
    assert over == map_row_oracle(mapper.plan, big, 7)  # the row function agrees
    assert mapper.map_chunk is not None
    bodies, _, _ = mapper.map_chunk([big, small], [7, 8])
    assert bodies[0] is None  # column-wise, the big row is left to the row function
    assert bodies[1] == orjson.dumps(under.attributes)


def test_several_drops_in_one_row(channels: dict[str, Any]) -> None:
    result = bind(channels, HEADER).map_row(
        cells(dob="1990-02-31", gender="?", income="9" * 300), 12
    )
    assert isinstance(result, Mapped)
    assert result.drops == [
        Drop(12, "dob", "1990-02-31", "not a real date"),
        Drop(12, "gender", "?", GENDER),
        Drop(12, "rpi_cdp_attributes.income", "9" * 300, "longer than 255 characters (300)"),
    ]
    assert "dob" not in result.attributes
    assert "gender" not in result.attributes
    assert "income" not in result.attributes["rpi_cdp_attributes"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (cells(external_id=""), "external_id is empty"),
        (cells(external_id="   "), "external_id is empty"),
        (cells()[:-1], "the row has 17 fields where the header has 18"),
        ([*cells(), "extra"], "the row has 19 fields where the header has 18"),
        ([], "the row has 0 fields where the header has 18"),
    ],
)
def test_rejections(channels: dict[str, Any], row: list[str], reason: str) -> None:
    assert bind(channels, HEADER).map_row(row, 5) == Rejection(5, reason)


@pytest.mark.parametrize("user", ["x" * 988, "é" * 494, "x" * 5000])
def test_external_id_over_987_bytes_is_rejected(channels: dict[str, Any], user: str) -> None:
    result = bind(channels, HEADER).map_row(cells(external_id=user), 5)
    assert result == Rejection(5, "external_id is longer than 987 bytes")


@pytest.mark.parametrize("user", ["x" * 255, "é" * 255])
def test_external_id_of_255_characters_is_sent(channels: dict[str, Any], user: str) -> None:
    result = bind(channels, HEADER).map_row(cells(external_id=user), 2)
    assert result == Mapped(user, {**EXPECTED, "external_id": user})


# An identifier has no 255-character limit: only external_id's 987 bytes apply.
@pytest.mark.parametrize("user", ["x" * 256, "x" * 987, "é" * 493 + "x"])
def test_external_id_up_to_987_bytes_is_sent(channels: dict[str, Any], user: str) -> None:
    result = bind(channels, HEADER).map_row(cells(external_id=user), 2)
    assert result == Mapped(user, {**EXPECTED, "external_id": user})


def test_external_id_over_987_bytes_names_the_byte_limit(channels: dict[str, Any]) -> None:
    result = bind(channels, HEADER).map_row(cells(external_id="é" * 494), 5)
    assert result == Rejection(5, "external_id is longer than 987 bytes")


OFFER = {"rpi_offers": {"add": ["Spring Offer"]}}


@pytest.mark.parametrize(
    ("channel", "header", "row", "expected", "warnings"),
    [
        (  # header names are normalised, cells trimmed
            UPSERT, ["External ID", "First Name", "Output Name", "Loyalty Tier"],
            [" user-2 ", " Bo ", " Out ", " 9 "],
            {"external_id": "user-2", "first_name": "Bo", "rpi_audience_outputs": {"add": ["Out"]},
             **OFFER, "rpi_cdp_attributes": {"loyalty_tier": 9}, "_merge_objects": True,
             "_update_existing_only": False},
            [],
        ),
        (  # empty cells set nothing
            UPSERT, HEADER, ["user-3"] + [""] * (len(HEADER) - 1),
            {"external_id": "user-3", **OFFER, "_update_existing_only": False}, [],
        ),
        (  # nothing remains: no nested object, no _merge_objects; "_" columns are not sent
            UPSERT, ["external_id", "email", "output_name", "_rpi_internal"],
            ["user-4", "b@c.de", "Out", "x"],
            {"external_id": "user-4", "email": "b@c.de", "rpi_audience_outputs": {"add": ["Out"]},
             **OFFER, "_update_existing_only": False},
            [],
        ),
        (  # the append template: two columns
            APPEND, ["external_id", "output_name"], ["user-5", "Winback"],
            {"external_id": "user-5", "rpi_audience_outputs": {"add": ["Winback"]}, **OFFER,
             "_update_existing_only": True},
            [],
        ),
        (  # no output_name column: a warning, and no rpi_audience_outputs
            UPSERT, ["external_id", "first_name"], ["user-6", "Cy"],
            {"external_id": "user-6", "first_name": "Cy", **OFFER, "_update_existing_only": False},
            ["rpi_audience_outputs: the column 'output_name' is missing; "
             "rpi_audience_outputs is not sent"],
        ),
    ],
)  # fmt: skip
def test_small_files(
    channels: dict[str, Any],
    channel: str,
    header: list[str],
    row: list[str],
    expected: dict[str, Any],
    warnings: list[str],
) -> None:
    mapper = bind(channels, header, channel)
    assert mapper.warnings == warnings
    assert mapper.map_row(row, 2) == Mapped(row[0].strip(), expected)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["external_id", "Output Name", "output_name"],
         "columns 'Output Name' and 'output_name' both normalise to 'output_name'"),
        (["External-ID", "external id"],
         "columns 'External-ID' and 'external id' both normalise to 'external_id'"),
        (["first_name", "email"], "the identifier column 'external_id' is missing from the header"),
        ([], "the identifier column 'external_id' is missing from the header"),
    ],
)  # fmt: skip
def test_header_errors(channels: dict[str, Any], header: list[str], message: str) -> None:
    with pytest.raises(HeaderError) as info:
        bind(channels, header)
    assert str(info.value) == message


# A "_" column is never mapped, not even by a rule naming it once normalised ('_email' is not
# 'email'); beside an 'email' column it is therefore no duplicate header either.
@pytest.mark.parametrize(
    ("header", "row", "email"),
    [(["external_id", "_email"], ["u7", "x@y.zz"], {}),
     (["external_id", "email", "_email"], ["u8", "a@b.cd", "x@y.zz"], {"email": "a@b.cd"}),
     (["external_id", " _email ", "email"], ["u9", "x@y.zz", "a@b.cd"], {"email": "a@b.cd"})],
)  # fmt: skip
def test_underscore_columns_are_never_mapped(
    channels: dict[str, Any], header: list[str], row: list[str], email: dict[str, str]
) -> None:
    mapper = bind(channels, header)
    assert mapper.warnings == [
        "rpi_audience_outputs: the column 'output_name' is missing; rpi_audience_outputs is not sent"
    ]
    assert mapper.map_row(row, 2) == Mapped(
        row[0], {"external_id": row[0], **email, **OFFER, "_update_existing_only": False}
    )


# --- compile-time checks -----------------------------------------------------------------------

ID = {"external_id": {"column": "external_id"}}
PATTERN = "{channel}/{offer}/{workflow_id}"
# The pattern's parts, then what every file has (rpi_channel_execution_id: from RPI's call).
PATHS = "channel, offer, workflow_id, file_name, rpi_channel_execution_id"


@pytest.mark.parametrize(
    ("spec", "pattern", "message"),
    [
        # a single (non-list) add has no index in its key path; a list item has its index
        ({"identifier": ID, "arrays": {"rpi_offers": {"add": {"path": "campaign"}}}}, PATTERN,
         f"arrays.rpi_offers.add.path: 'campaign' is not one of {PATHS}"),
        ({"identifier": ID,
          "arrays": {"rpi_offers": {"add": [{"column": "x"}, {"path": "campaign"}]}}}, PATTERN,
         f"arrays.rpi_offers.add.1.path: 'campaign' is not one of {PATHS}"),
        ({"identifier": ID, "attributes": {"src": {"path": "workflow"}}}, PATTERN,
         f"attributes.src.path: 'workflow' is not one of {PATHS}"),
        ({"identifier": ID, "attributes": {"wf": {"path": "workflow_id"}}}, "exports/{channel}",
         "attributes.wf.path: 'workflow_id' is not one of channel, file_name, "
         "rpi_channel_execution_id"),
        ({"identifier": {"external_id": {"path": "file_name"}}}, PATTERN,
         "identifier.external_id: the identifier must come from a column"),
        ({"identifier": ID, "attributes": {"g": {"value": "q", "type": "gender"}},
          "arrays": {"a": {"remove": {"path": "x"}}}}, PATTERN,
         f"attributes.g.value: 'q' is {GENDER}; arrays.a.remove.path: 'x' is not one of {PATHS}"),
    ],
)  # fmt: skip
def test_compile_errors(spec: dict[str, Any], pattern: str, message: str) -> None:
    with pytest.raises(MappingError) as info:
        compile_mapping(MappingSpec.model_validate(spec), "upsert", pattern)
    assert str(info.value) == message


def test_compiled_path_and_constant_sources() -> None:
    attributes = {"wf": {"path": "workflow_id", "type": "integer"}, "src": {"value": "rpi"}}
    arrays = {"files": {"add": {"path": "file_name"}}}
    spec = MappingSpec.model_validate(
        {"identifier": ID, "attributes": attributes, "arrays": arrays}
    )
    mapper = bind_mapping(compile_mapping(spec, "append", PATTERN), ["external_id"], PATH_VALUES)
    assert mapper.map_row(["u"], 2) == Mapped(
        "u",
        {"external_id": "u", "wf": 42, "src": "rpi", "files": {"add": ["f.txt"]},
         "_update_existing_only": True},
    )  # fmt: skip


def test_the_path_parts_a_mapping_sends(channels: dict[str, Any]) -> None:
    """Only these are worth a warning when their folder or file name is not UTF-8: the
    shipped mapping sends the offer, and the channel execution id when its column is missing."""
    assert channels[UPSERT].plan.mapping.paths_used() == {"offer", "rpi_channel_execution_id"}
    spec = MappingSpec.model_validate(
        {
            "identifier": {"external_id": {"column": "id"}},
            "attributes": {"source_file": {"path": "file_name"}, "name": {"column": "n"}},
        }
    )
    plan = compile_mapping(spec, "upsert", "{channel}/{offer}/{workflow_id}/{file_name}")
    assert plan.paths_used() == {"file_name"}
