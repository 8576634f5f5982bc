"""delta: the comparison of a row with what Braze holds from us, for every kind of value."""

from __future__ import annotations

import itertools

import orjson
import pytest
import xxhash

from rpi_braze_sync import delta
from rpi_braze_sync.delta import (
    MAX_ADDS,
    ByValues,
    Merge,
    Send,
    build_record,
    compare,
    parse_record,
)

DAY = 86400
MAX_AGE = 30 * DAY
T0 = 1_800_000_000


def enc(value: object) -> bytes:
    return orjson.dumps(value)


def row(**values: object) -> dict[str, bytes]:
    """Fields as the mapping sends them; `__` stands for the dot of a nested path."""
    return {path.replace("__", "."): enc(value) for path, value in values.items()}


def sent_fields(fields: dict[str, bytes], decision: ByValues) -> list[str]:
    if decision.send is Send.NOTHING:
        return []
    return [p for p in fields if p not in decision.skipped_fields]


def sent_adds(adds: list[tuple[str, bytes]], decision: ByValues) -> list[tuple[str, bytes]]:
    if decision.send is Send.NOTHING:
        return []
    return [a for i, a in enumerate(adds) if i not in decision.skipped_adds]


class Profile:
    """One user seen through delta: compare, send, acknowledge, remember, as the pipeline will."""

    def __init__(self, mode: delta.Mode = "upsert") -> None:
        self.record: bytes | None = None
        self.mode = mode

    def send(
        self, fields: dict[str, bytes], adds: list[tuple[str, bytes]] | None = None, now: int = T0
    ) -> ByValues:
        adds = adds or []
        decision = compare(fields, adds, self.record, now, MAX_AGE, self.mode)
        if decision.remember is not None:  # Braze acknowledged
            written = build_record(decision.remember, self.record, now)
            if written is not None:
                self.record = written
        return decision


# --- standard fields ----------------------------------------------------------------------


def test_a_user_never_seen_is_sent_whole_and_remembered() -> None:
    p = Profile()
    fields = row(first_name="Ann", country="FR", income=55000)
    first = p.send(fields)
    assert first.send is Send.ALL
    assert (first.points_sent, first.points_skipped) == (3, 0)
    assert first.remember is not None
    assert first.remember.merge is Merge.REBUILD
    again = p.send(fields, now=T0 + DAY)
    assert again.send is Send.NOTHING
    assert again.skipped_fields == ("first_name", "country", "income")
    assert (again.points_sent, again.points_skipped) == (0, 3)
    assert again.remember is None  # nothing sent, nothing to write


def test_only_the_changed_standard_field_is_sent() -> None:
    p = Profile()
    p.send(row(first_name="Ann", country="FR", income=55000))
    changed = row(first_name="Ann", country="DE", income=55000)
    decision = p.send(changed, now=T0 + 60)
    assert decision.send is Send.SOME
    assert sent_fields(changed, decision) == ["country"]
    assert (decision.points_sent, decision.points_skipped) == (1, 2)
    assert p.send(changed, now=T0 + 120).send is Send.NOTHING
    back = p.send(row(first_name="Ann", country="FR", income=55000), now=T0 + 180)
    assert sent_fields(row(first_name="Ann", country="FR", income=55000), back) == ["country"]


def test_values_are_compared_by_their_exact_encoding() -> None:
    p = Profile()
    p.send({"income": b"55000", "vip": b"true"})
    decision = p.send({"income": b"55000.0", "vip": b'"true"'})
    assert sent_fields({"income": b"", "vip": b""}, decision) == ["income", "vip"]


def test_field_order_does_not_matter() -> None:
    p = Profile()
    p.send(row(a=1, b=2, c=3))
    assert p.send({"c": enc(3), "a": enc(1), "b": enc(2)}).send is Send.NOTHING
    decision = p.send({"c": enc(3), "b": enc(9), "a": enc(1)})
    assert decision.skipped_fields == ("c", "a")


# --- a field that goes empty --------------------------------------------------------------


def test_a_field_left_empty_is_not_sent_and_stays_remembered() -> None:
    """The mapping skips an empty cell (empty: skip, the default), so Braze keeps the old
    value: nothing to send, and the old value is still what Braze holds."""
    p = Profile()
    p.send(row(first_name="Ann", home_city="Paris"))
    emptied = row(first_name="Ann")
    assert p.send(emptied).send is Send.NOTHING
    decision = p.send(row(first_name="Bea"))  # sent, and Paris stays remembered
    assert decision.send is Send.ALL
    assert p.send(row(first_name="Bea", home_city="Paris")).send is Send.NOTHING


def test_empty_null_clears_the_attribute_and_is_remembered_as_null() -> None:
    p = Profile()
    p.send(row(first_name="Ann", home_city="Paris"))
    cleared = {"first_name": enc("Ann"), "home_city": b"null"}
    decision = p.send(cleared)
    assert sent_fields(cleared, decision) == ["home_city"]
    assert p.send(cleared).send is Send.NOTHING
    again = p.send(row(first_name="Ann", home_city="Paris"))
    assert sent_fields(row(first_name="Ann", home_city="Paris"), again) == ["home_city"]


# --- nested keys --------------------------------------------------------------------------


def test_nested_keys_are_compared_one_by_one_at_their_full_path() -> None:
    p = Profile()
    p.send(row(rpi_cdp_attributes__income=55000, rpi_cdp_attributes__education="Master"))
    changed = row(rpi_cdp_attributes__income=56000, rpi_cdp_attributes__education="Master")
    decision = p.send(changed)
    assert sent_fields(changed, decision) == ["rpi_cdp_attributes.income"]
    # the same key name elsewhere is another attribute
    other = row(rpi_cdp_attributes__income=56000, other__income=55000)
    assert sent_fields(other, p.send(other)) == ["other.income"]


def test_a_nested_key_that_disappears_is_not_sent_and_stays_remembered() -> None:
    """With _merge_objects Braze keeps a key the object no longer carries."""
    p = Profile()
    p.send(row(rpi_cdp_attributes__income=55000, rpi_cdp_attributes__marital="married"))
    without = row(rpi_cdp_attributes__income=55000)
    assert p.send(without).send is Send.NOTHING
    changed = row(rpi_cdp_attributes__income=60000)
    assert sent_fields(changed, p.send(changed)) == ["rpi_cdp_attributes.income"]
    back = row(rpi_cdp_attributes__income=60000, rpi_cdp_attributes__marital="married")
    assert p.send(back).send is Send.NOTHING  # still held by Braze, still remembered
    other = row(rpi_cdp_attributes__income=60000, rpi_cdp_attributes__marital="single")
    assert sent_fields(other, p.send(other)) == ["rpi_cdp_attributes.marital"]


def test_a_whole_nested_object_without_merge_is_one_value() -> None:
    """Without _merge_objects Braze replaces the object: the caller passes it as one field,
    so a key that disappears changes the value and the whole object is sent."""
    p = Profile()
    p.send({"prefs": enc({"a": 1, "b": 2})})
    assert p.send({"prefs": enc({"a": 1, "b": 2})}).send is Send.NOTHING
    assert p.send({"prefs": enc({"a": 1})}).send is Send.ALL


# --- $time values -------------------------------------------------------------------------


def test_time_values_compare_by_their_encoding() -> None:
    p = Profile()
    fields = {"rpi_cdp_attributes.since": enc({"$time": "2024-01-02"}), "dob": enc("1980-05-06")}
    p.send(fields)
    assert p.send(dict(fields)).send is Send.NOTHING
    moved = {**fields, "rpi_cdp_attributes.since": enc({"$time": "2024-01-03"})}
    assert sent_fields(moved, p.send(moved)) == ["rpi_cdp_attributes.since"]
    # the same day written as another text is another encoding: sent (never wrongly skipped)
    rewritten = {**moved, "rpi_cdp_attributes.since": enc({"$time": "2024-01-03T00:00:00Z"})}
    assert sent_fields(rewritten, p.send(rewritten)) == ["rpi_cdp_attributes.since"]


# --- arrays -------------------------------------------------------------------------------


def test_an_array_value_added_before_is_skipped_and_a_new_one_sent() -> None:
    p = Profile()
    fields = row(first_name="Ann")
    run1 = [("rpi_offers", enc("Spring")), ("rpi_channel_exec_ids", enc("5501"))]
    assert p.send(fields, run1).send is Send.ALL
    assert p.send(fields, run1).send is Send.NOTHING  # the same file again
    run2 = [("rpi_offers", enc("Spring")), ("rpi_channel_exec_ids", enc("5502"))]
    decision = p.send(fields, run2)
    assert decision.send is Send.SOME
    assert sent_adds(run2, decision) == [("rpi_channel_exec_ids", enc("5502"))]
    assert decision.skipped_fields == ("first_name",)
    assert (decision.points_sent, decision.points_skipped) == (1, 2)
    assert p.send(fields, [("rpi_channel_exec_ids", enc("5501"))]).send is Send.NOTHING


def test_the_same_value_in_another_array_is_another_value() -> None:
    p = Profile()
    p.send({}, [("rpi_offers", enc("X"))])
    decision = p.send({}, [("rpi_audience_outputs", enc("X"))])
    assert decision.send is Send.ALL


def test_array_values_kept_are_the_most_recently_seen() -> None:
    """A value seen run after run stays remembered; ids that never recur age out."""
    p = Profile()
    offer = ("rpi_offers", enc("Spring"))
    for run in range(MAX_ADDS * 2):
        adds = [offer, ("rpi_channel_exec_ids", enc(run))]
        decision = p.send({}, adds)
        assert sent_adds(adds, decision) == (adds if run == 0 else adds[1:])
    record = parse_record(p.record or b"")
    assert record is not None
    assert len(record.adds) == 8 * MAX_ADDS
    assert p.send({}, [("rpi_channel_exec_ids", enc(MAX_ADDS * 2 - 1))]).send is Send.NOTHING
    assert p.send({}, [("rpi_channel_exec_ids", enc(0))]).send is Send.ALL  # aged out


# --- max age, append, busy, unreadable ------------------------------------------------------


def test_values_older_than_max_age_are_sent_again_and_refreshed() -> None:
    p = Profile()
    fields = row(first_name="Ann", country="FR")
    p.send(fields)
    assert p.send(fields, now=T0 + MAX_AGE).send is Send.NOTHING
    # a change on day 10 does not make the record younger: it is refreshed on day 30 whole
    p.send(row(first_name="Ann", country="DE"), now=T0 + 10 * DAY)
    late = p.send(row(first_name="Ann", country="DE"), now=T0 + MAX_AGE + 1)
    assert late.send is Send.ALL
    assert late.remember is not None
    assert late.remember.merge is Merge.REBUILD
    assert p.send(row(first_name="Ann", country="DE"), now=T0 + MAX_AGE + 2).send is Send.NOTHING


def test_append_rows_are_remembered_only_for_users_an_upsert_created() -> None:
    fields = row(first_name="Ann")
    stranger = Profile(mode="append")
    first = stranger.send(fields)
    assert first.send is Send.ALL
    assert first.remember is None
    assert stranger.send(fields).send is Send.ALL  # Braze may have ignored it: never skipped
    known = Profile()
    known.send(fields)
    known.mode = "append"
    changed = row(first_name="Bea")
    assert known.send(changed).send is Send.ALL
    assert known.send(changed).send is Send.NOTHING
    # an append never refreshes an old record: after max age, sent and not remembered
    old = known.send(changed, now=T0 + MAX_AGE + 1)
    assert old.send is Send.ALL
    assert old.remember is None


def test_a_busy_user_is_sent_whole_and_merged_into_the_latest_record() -> None:
    p = Profile()
    p.send(row(a=1, b=2))
    before = p.record
    decision = compare(row(a=1, b=2), [], before, T0, MAX_AGE, "upsert", busy=True)
    assert decision.send is Send.ALL
    assert decision.remember is not None
    assert decision.remember.merge is Merge.INTO_LATEST
    # meanwhile another row of the user set c: the merge keeps it
    newer = build_record(
        compare(row(a=1, c=3), [], before, T0, MAX_AGE, "upsert").remember,  # type: ignore[arg-type]
        before,
        T0,
    )
    merged = build_record(decision.remember, newer, T0)
    p.record = merged
    assert p.send(row(a=1, b=2, c=3)).send is Send.NOTHING


def test_a_merge_without_a_record_writes_nothing() -> None:
    """The store was forgotten between comparison and answer: the skipped values are unproven."""
    p = Profile()
    p.send(row(a=1))
    decision = compare(row(a=2, b=1), [], p.record, T0, MAX_AGE, "upsert")
    assert decision.remember is not None
    assert build_record(decision.remember, None, T0) is None


@pytest.mark.parametrize(
    "record", [b"", b"\x02" + bytes(20), b"\x01\x00" + bytes(8), b"\x01" + bytes(30)]
)
def test_an_unreadable_record_means_nothing_is_known(record: bytes) -> None:
    decision = compare(row(a=1), [], record, T0, MAX_AGE, "upsert")
    assert decision.send is Send.ALL


def test_a_row_with_only_its_identifier() -> None:
    """Upsert creates the profile: sent while unknown, then nothing to say."""
    p = Profile()
    assert p.send({}).send is Send.ALL
    assert p.send({}).send is Send.NOTHING


def test_colliding_path_fingerprints_send_whole_and_remember_nothing() -> None:
    seen: dict[bytes, str] = {}
    for n in itertools.count():
        path = f"rpi_cdp_attributes.c{n}"
        fp = xxhash.xxh3_64_digest(path.encode())[:4]
        if fp in seen:
            a, b = seen[fp], path
            break
        seen[fp] = path
    fields = {a: b"1", b: b"2"}
    p = Profile()
    first = p.send(fields)
    assert first.send is Send.ALL
    assert p.record is None
    p.send({a: b"1"})
    assert compare(fields, [], p.record, T0, MAX_AGE, "upsert").remember is None
