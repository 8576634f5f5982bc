"""deltabody: an attributes object as delta sees it (paths, data points, its summary) and
rebuilt without the values Braze holds; with delta.compare_row, the whole round of a row."""

from __future__ import annotations

from typing import Any

import orjson

from rpi_braze_sync import deltarecord
from rpi_braze_sync.delta import (
    Merge,
    Remember,
    Send,
    build_record,
    compare,
    compare_row,
    held_whole,
    parse_record,
    summary_of,
)
from rpi_braze_sync.deltabody import arrays_only, parse, rebuild, summary, whole_fp

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
    numbers = [
        parsed.paths.index(p)
        for p in ("first_name", "rpi_cdp_attributes.income", "rpi_cdp_attributes.education")
    ]
    out = orjson.loads(rebuild(parsed.obj, numbers, [0, 2]))
    assert out == {
        "external_id": "u1",
        "country": "FR",
        "rpi_offers": {"add": ["Summer"]},
        "rpi_contact_ids": {"remove": ["c0"]},
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    assert orjson.loads(rebuild(parsed.obj, [], [])) == obj


class User:
    """One user's record through summary, compare_row, rebuild and build_record, as
    deltafile does."""

    def __init__(self) -> None:
        self.record: bytes | None = None

    def send(self, data: bytes, now: int = T0) -> dict[str, Any] | None:
        row = summary(data)
        if held_whole(row, self.record, now, MAX_AGE) is not None:
            return None
        mode = parse(data).mode
        decision = compare_row(row, self.record, now, MAX_AGE, mode)
        if decision.send is Send.NOTHING:
            return None
        sent = data
        if decision.send is Send.SOME:
            sent = rebuild(orjson.loads(data), decision.skipped_fields, decision.skipped_adds)
        if decision.remember is not None:  # Braze acknowledged
            self.record = build_record(decision.remember, self.record, now) or self.record
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


def test_a_new_array_value_alone_is_sent_without_comparing_fields() -> None:
    """Real exports add each run's channel execution id: the fields are unchanged (their
    fingerprint, `static`, matches), so only the new id is sent."""
    user = User()
    attributes: dict[str, Any] = {
        "first_name": "Ann",
        "rpi_cdp_attributes": {"income": 5, "education": "x"},
        "rpi_offers": {"add": ["Spring"]},
        "_merge_objects": True,
    }
    run1 = body(**attributes, rpi_channel_exec_ids={"add": ["5501"]})
    assert user.send(run1) is not None
    run2 = body(**attributes, rpi_channel_exec_ids={"add": ["5502"]})
    static = slice(deltarecord.STATIC_AT, deltarecord.HEADER_BYTES)
    assert summary(run1)[static] == summary(run2)[static]  # the same fields: the same `static`
    assert user.send(run2) == {
        "external_id": "u1",
        "rpi_channel_exec_ids": {"add": ["5502"]},
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    assert user.send(run2) is None  # remembered
    assert user.send(run1) is None  # 5501 is still remembered too
    changed = body(**{**attributes, "first_name": "Bea"}, rpi_channel_exec_ids={"add": ["5503"]})
    assert user.send(changed) == {
        "external_id": "u1",
        "first_name": "Bea",
        "rpi_channel_exec_ids": {"add": ["5503"]},
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    record = parse_record(user.record)
    assert record is not None
    assert record.refreshed_at == T0  # merged: the fields' time kept


def test_a_first_summary_is_its_own_record_once_timed() -> None:
    """The first run's usual row: the summary made in the mapping process, timed, is the
    record build_record would write; a row with removes or repeated adds is built."""
    data = body(first_name="Ann", country="FR", rpi_offers={"add": ["Spring", "Summer"]})
    row = summary(data)
    assert row[1] & deltarecord.PLAIN
    timed = deltarecord.timed(row, T0)
    assert timed == build_record(Remember(Merge.REBUILD, row), None, T0)
    assert deltarecord.refreshed_at(timed) == T0
    assert held_whole(row, timed, T0, MAX_AGE) == 4
    for other in (
        body(rpi_offers={"add": [str(n) for n in range(17)]}),  # more than MAX_ADDS
        body(rpi_offers={"add": ["Spring"], "remove": ["Winter"]}),
    ):
        row = summary(other)
        assert not row[1] & deltarecord.PLAIN
        record = build_record(Remember(Merge.REBUILD, row), None, T0)
        assert parse_record(record) is not None
        assert compare_row(row, record, T0, MAX_AGE, "upsert").send is not Send.ALL


def test_summary_agrees_with_parse_and_compare_by_values() -> None:
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
        parsed = parse(data)
        row = summary(data)
        assert deltarecord.points_of(row) == parsed.points
        whole = whole_fp(data)
        assert row == summary_of(parsed.fields, parsed.adds, parsed.removes, whole)
        record = build_record(Remember(Merge.REBUILD, row), None, T0)
        again = compare(parsed.fields, parsed.adds, record, T0, MAX_AGE, "upsert", whole=whole)
        assert again.send is Send.NOTHING


def test_a_row_whose_paths_collide_is_never_remembered() -> None:
    paths = ["a", "a"]  # the same path twice collides with itself
    row = deltarecord.summarize(paths, [b"1", b"2"], [], [], bytes(8))
    assert row[1] & deltarecord.COLLIDES
    assert deltarecord.points_of(row) == 2
    assert build_record(Remember(Merge.REBUILD, row), None, T0) is None
    assert compare_row(row, None, T0, MAX_AGE, "upsert").remember is None


def test_arrays_only_is_rebuild_with_every_field_skipped() -> None:
    data = body(
        first_name="Ann",
        rpi_cdp_attributes={"income": 5},
        rpi_offers={"add": ["Spring", "Summer"], "remove": ["Winter"]},
        rpi_channel_exec_ids={"add": ["5502"]},
        dob={"$time": "1980-01-02"},
        _merge_objects=True,
    )
    parsed = parse(data)
    every_field = range(len(parsed.paths))
    for skipped_adds in ([], [0], [0, 1, 2]):
        assert arrays_only(parsed.obj, skipped_adds) == rebuild(
            parsed.obj, every_field, skipped_adds
        )
