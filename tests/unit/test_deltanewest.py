"""deltanewest: the re-export's row (only its last array value added is new) decided, cut down
and remembered in bytes, equal to the general path (compare_row, arrays_only/rebuild,
build_record) byte for byte, on objects shaped like the mappings': fields, $time values,
nested objects merged or not, several arrays with several values, append mode."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from rpi_braze_sync.delta import Merge, Mode, Remember, Send, build_record, compare_row
from rpi_braze_sync.deltabody import arrays_only, parse, rebuild, summary
from rpi_braze_sync.deltanewest import newest_add_body, newest_add_only, newest_add_record
from rpi_braze_sync.deltarecord import HEADER_BYTES, STATIC_AT, header
from tests.examples import examples

T0 = 1_800_000_000
MAX_AGE = 30 * 86400
FIELDS = ("first_name", "last_name", "email", "dob", "home_city", "phone")
ARRAYS = ("rpi_audience_outputs", "rpi_offers", "rpi_contact_ids", "rpi_channel_exec_ids")
NESTED = ("tier", "score", "status", "since")

TRICKY = ['{"add":["a"]}', "a,b", "]}", ',"', "\\", "é", '"_merge_objects":true']
scalars = st.one_of(
    st.sampled_from(["", "Ann", "Paris", 'é"\\,', *TRICKY]),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.builds(lambda d: {"$time": f"2024-01-0{d}"}, st.integers(1, 3)),
)
added = st.lists(st.sampled_from(["a", "b", "c", "5501", "5502", 7, 1.5, *TRICKY]), max_size=3)


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    """An object in the mapping's order: identifier, fields, arrays, nested, control keys."""
    obj: dict[str, Any] = {"external_id": "u1"}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True)):
        obj[name] = draw(scalars)
    for name in draw(st.lists(st.sampled_from(ARRAYS), unique=True, max_size=4)):
        ops: dict[str, Any] = {"add": draw(added)}
        if draw(st.integers(0, 5)) == 0:
            ops["remove"] = draw(added)
        obj[name] = ops
    nested = {key: draw(scalars) for key in draw(st.lists(st.sampled_from(NESTED), unique=True))}
    if nested:
        obj["rpi_cdp_attributes"] = nested
    if draw(st.booleans()):
        obj["_merge_objects"] = True
    obj["_update_existing_only"] = draw(st.booleans())
    if draw(st.integers(0, 7)) == 0:  # another order: the fast path may give up, never differ
        keys = draw(st.permutations(list(obj)[1:]))
        obj = {"external_id": "u1", **{key: obj[key] for key in keys}}
    return obj


def new_execution_id(obj: dict[str, Any], value: str | int) -> dict[str, Any]:
    """The object again, its last array value added replaced by `value`."""
    out = orjson.loads(orjson.dumps(obj))
    for ops in reversed([v for v in out.values() if isinstance(v, dict) and v.get("add")]):
        if isinstance(ops["add"], list):
            ops["add"][-1] = value
            break
    return dict(out)


def remembered(objs: list[dict[str, Any]]) -> bytes | None:
    """The user's record after these rows, each acknowledged (the general path)."""
    record = None
    for i, obj in enumerate(objs):
        row = summary(orjson.dumps(obj))
        mode: Mode = parse(orjson.dumps(obj)).mode if record is not None else "upsert"
        decision = compare_row(row, record, T0 + i, MAX_AGE, mode)
        if decision.remember is not None:
            record = build_record(decision.remember, record, T0 + i) or record
    return record


def check(obj: dict[str, Any], record: bytes | None, latest: bytes | None) -> bool:
    """The fast path where it answers equals the general one; whether it answered."""
    body = orjson.dumps(obj)
    row = summary(body)
    found = header(record)
    if found is None or found[9] != row[STATIC_AT:HEADER_BYTES] or found[8] == row[22:STATIC_AT]:
        return False  # the caller (DeltaFile.filter) takes another path
    assert record is not None
    mode = parse(body).mode
    decision = compare_row(row, record, T0 + 9, MAX_AGE, mode, found=found)
    skipped = newest_add_only(row, record, found)
    if skipped is None:
        return False
    n, m = len(parse(body).paths), len(parse(body).adds)
    assert decision.send is Send.SOME
    assert decision.skipped_fields == tuple(range(n))
    assert decision.skipped_adds == tuple(range(m - 1))
    assert decision.points_skipped == skipped
    assert decision.remember == Remember(Merge.INTO_LATEST, row)
    fast_body = newest_add_body(orjson.loads(body))
    general_body = arrays_only(orjson.loads(body), decision.skipped_adds)
    assert general_body == rebuild(orjson.loads(body), decision.skipped_fields, range(m - 1))
    assert fast_body in (None, general_body)
    for base in (record, latest):
        fast = newest_add_record(row, base)
        general = build_record(Remember(Merge.INTO_LATEST, row), base, T0 + 9)
        assert fast is None or fast == general
        assert build_record(Remember(Merge.NEWEST_ADD, row), base, T0 + 9) == general
    return None not in (fast_body, newest_add_record(row, record))


@settings(max_examples=examples(600), deadline=None)
@given(
    st.lists(objects(), min_size=1, max_size=4),
    st.sampled_from(["5503", "b", "a", "new", 5503, "x,y", "]}"]),
    st.lists(objects(), max_size=2),
)
def test_the_fast_path_is_the_general_path(
    before: list[dict[str, Any]], value: str | int, others: list[dict[str, Any]]
) -> None:
    obj = new_execution_id(before[-1], value)
    record = remembered(before)
    latest = remembered([*before, *others])  # written by other rows of the user meanwhile
    check(obj, record, latest)
    for other in others:  # any row over the record: never a different answer
        check(other, record, latest)


def test_the_daily_re_export_takes_the_fast_path() -> None:
    """The shipped mapping's row, run after run with a new execution id: each time the fast
    path answers (so the equality above is not vacuous), up to MAX_ADDS values kept."""
    obj: dict[str, Any] = {
        "external_id": "u1",
        "first_name": "Ann",
        "dob": {"$time": "1980-01-02"},
        "rpi_audience_outputs": {"add": ["Spring Sale"]},
        "rpi_contact_ids": {"add": ["100001", "100002"]},
        "rpi_channel_exec_ids": {"add": ["5501"]},
        "rpi_cdp_attributes": {"tier": "Master", "score": 7},
        "_merge_objects": True,
        "_update_existing_only": False,
    }
    history = [obj]
    for run in range(20):
        obj = new_execution_id(obj, str(5502 + run) if run % 2 else 5502 + run)
        record = remembered(history)
        assert check(obj, record, record)
        history.append(obj)
    assert orjson.loads(newest_add_body(obj) or b"") == {
        "external_id": "u1",
        "rpi_channel_exec_ids": {"add": ["5521"]},
        "_merge_objects": True,
        "_update_existing_only": False,
    }


def test_a_row_with_nothing_held_is_not_cut_down() -> None:
    """Only one value added and no field: nothing is skipped, so the row is sent as the
    mapping made it (compare_row: Send.ALL), never rebuilt."""
    first = {"external_id": "u1", "rpi_offers": {"add": ["a"], "remove": []}}
    record = remembered([first])
    found = header(record)
    assert record is not None
    assert found is not None
    row = summary(orjson.dumps(new_execution_id(first, "b")))
    assert newest_add_only(row, record, found) is None
