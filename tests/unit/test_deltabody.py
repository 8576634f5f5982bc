"""deltabody: an attributes object as delta sees it (paths, data points) and rebuilt without
the values Braze holds; with delta.compare, the whole round of a row."""

from __future__ import annotations

from typing import Any

import orjson

from rpi_braze_sync.delta import (
    Merge,
    Remember,
    Send,
    build_record,
    compare,
    held_whole,
    pack_raw,
    parse_record,
    refreshed_at,
)
from rpi_braze_sync.deltabody import count_points, expand, parse, rebuild, whole_fp

T0 = 1_800_000_000
MAX_AGE = 30 * 86400


def body(**attributes: Any) -> bytes:
    return orjson.dumps({"external_id": "u1", **attributes, "_update_existing_only": False})


def test_paths_of_every_kind_of_value() -> None:
    parsed = parse(
        orjson.dumps(
            {
                "external_id": "u1",
                "first_name": "Ann",
                "home_city": None,
                "rpi_cdp_attributes": {"income": 5, "since": {"$time": "2024-01-02"}},
                "rpi_offers": {"add": ["Spring", "Summer"], "remove": ["Winter"]},
                "dob": {"$time": "1980-01-02"},
                "_merge_objects": True,
                "_update_existing_only": True,
            }
        )
    )
    assert parsed.fields == {
        "first_name": b'"Ann"',
        "home_city": b"null",
        "rpi_cdp_attributes.income": b"5",
        "rpi_cdp_attributes.since": b'{"$time":"2024-01-02"}',
        "dob": b'{"$time":"1980-01-02"}',
    }
    assert parsed.adds == [("rpi_offers", b'"Spring"'), ("rpi_offers", b'"Summer"')]
    assert parsed.removes == [("rpi_offers", b'"Winter"')]
    assert parsed.mode == "append"
    assert parsed.points == 8  # the identifier and control keys are not data points


def test_a_nested_object_without_merge_is_one_value() -> None:
    parsed = parse(body(prefs={"a": 1, "b": 2}))
    assert parsed.fields == {"prefs": b'{"a":1,"b":2}'}
    assert parsed.mode == "upsert"


def test_rebuild_leaves_out_skipped_values_and_empty_containers() -> None:
    obj = {
        "external_id": "u1",
        "first_name": "Ann",
        "country": "FR",
        "rpi_cdp_attributes": {"income": 5, "education": "x"},
        "rpi_offers": {"add": ["Spring", "Summer"]},
        "rpi_contact_ids": {"add": ["c1"], "remove": ["c0"]},
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    parsed = parse(orjson.dumps(obj))
    out = orjson.loads(
        rebuild(
            parsed,
            ["first_name", "rpi_cdp_attributes.income", "rpi_cdp_attributes.education"],
            [0, 2],
        )
    )
    assert out == {
        "external_id": "u1",
        "country": "FR",
        "rpi_offers": {"add": ["Summer"]},
        "rpi_contact_ids": {"remove": ["c0"]},
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    assert orjson.loads(rebuild(parsed, [], [])) == obj


class User:
    """One user's record through compare, rebuild and build_record, as deltarun does."""

    def __init__(self) -> None:
        self.record: bytes | None = None

    def send(self, data: bytes) -> dict[str, Any] | None:
        whole = whole_fp(data)
        if held_whole(whole, self.record, T0, MAX_AGE) is not None:
            return None
        parsed = parse(data)
        decision = compare(
            parsed.fields, parsed.adds, self.record, T0, MAX_AGE, parsed.mode, False, whole,
            parsed.removes,
        )  # fmt: skip
        if decision.send is Send.NOTHING:
            return None
        sent = data
        if decision.send is Send.SOME:
            sent = rebuild(parsed, decision.skipped_fields, decision.skipped_adds)
        assert decision.remember is not None
        acked = parse(sent)  # deltarun remembers what was sent, over the record
        remember = decision.remember._replace(
            fields=acked.fields, adds=acked.adds, add_fps=None, points=parsed.points
        )
        self.record = build_record(remember, self.record, T0) or self.record
        result: dict[str, Any] = orjson.loads(sent)
        return result


def test_a_row_again_then_changed_then_back() -> None:
    user = User()
    first = body(first_name="Ann", country="FR", rpi_offers={"add": ["Spring"]})
    assert user.send(first) is not None
    assert user.send(first) is None
    changed = body(first_name="Bea", country="FR", rpi_offers={"add": ["Spring"]})
    assert user.send(changed) == {
        "external_id": "u1",
        "first_name": "Bea",
        "_update_existing_only": False,
    }
    assert user.send(changed) is None
    assert user.send(first) == {
        "external_id": "u1",
        "first_name": "Ann",
        "_update_existing_only": False,
    }


def test_a_removed_array_value_added_again_is_sent() -> None:
    user = User()
    user.send(body(rpi_offers={"add": ["Spring"]}))
    assert user.send(body(rpi_offers={"add": ["Spring"]})) is None
    removed = user.send(body(rpi_offers={"remove": ["Spring"]}))
    assert removed is not None
    assert removed["rpi_offers"] == {"remove": ["Spring"]}
    again = user.send(body(rpi_offers={"add": ["Spring"]}))
    assert again is not None
    assert again["rpi_offers"] == {"add": ["Spring"]}


def test_count_points_agrees_with_parse() -> None:
    for data in (
        body(first_name="Ann", rpi_offers={"add": ["A", "B"], "remove": ["C"]}),
        orjson.dumps(
            {
                "external_id": "u1",
                "rpi_cdp_attributes": {"a": 1, "b": {"$time": "2024-01-02"}},
                "prefs": {"$time": "2024-01-02"},
                "_merge_objects": True,
            }
        ),
        body(prefs={"a": 1, "b": 2}),  # not merged: one value
        body(),
    ):
        assert count_points(data) == parse(data).points


def test_a_raw_record_expands_to_the_fingerprints_of_its_object() -> None:
    """A first acknowledgement remembers the object unread; expanded, it compares as the
    record built from the same object would (its time and fingerprint kept)."""
    data = body(first_name="Ann", country="FR", rpi_offers={"add": ["Spring"]})
    whole = whole_fp(data)
    raw = pack_raw(T0 - 5, data, count_points(data), whole)
    assert held_whole(whole, raw, T0, MAX_AGE) == 3  # unchanged: decided unread
    expanded = expand(raw)
    assert expanded is not None
    parsed = parse(data)
    built = build_record(
        Remember(Merge.REBUILD, parsed.fields, parsed.adds, whole, None, (), 3), None, T0 - 5
    )
    assert expanded == built
    assert refreshed_at(expanded) == T0 - 5
    changed = body(first_name="Bea", country="FR", rpi_offers={"add": ["Spring"]})
    parsed = parse(changed)
    decision = compare(parsed.fields, parsed.adds, expanded, T0, MAX_AGE, "upsert")
    assert decision.skipped_fields == ("country",)
    assert decision.skipped_adds == (0,)
    assert expand(expanded) == expanded  # a record of fingerprints stays as it is
    assert expand(None) is None
    assert parse_record(raw) is None  # never compared unexpanded


def test_a_damaged_raw_record_means_nothing_is_known() -> None:
    raw = pack_raw(T0, b'{"external_id":"u1","first', 1, bytes(8))
    assert expand(raw) is None
