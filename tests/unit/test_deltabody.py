"""deltabody: an attributes object as delta sees it (paths, data points) and rebuilt without
the values Braze holds; with delta.compare, the whole round of a row."""

from __future__ import annotations

from typing import Any

import orjson

from rpi_braze_sync.delta import Send, build_record, compare, held_whole
from rpi_braze_sync.deltabody import parse, rebuild, whole_fp

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
