"""deltaprefilter: which rows are skipped before they are mapped. The rule: a row is skipped
only where DeltaFile.filter, comparing the mapped row, would leave it unsent (checked beside
each case with delta.compare_row); everything else is mapped."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rpi_braze_sync.chunks import ChunkData, KeysData
from rpi_braze_sync.codec import (
    FRAME_LENGTH,
    Chunk,
    Keys,
    MapRows,
    Message,
    NextKeys,
    decode,
    encode,
)
from rpi_braze_sync.config import load_config
from rpi_braze_sync.delta import Merge, Remember, Send, build_record, compare_row, summary_of
from rpi_braze_sync.deltaflight import InFlight
from rpi_braze_sync.deltaprefilter import (
    MAP,
    decide,
    keepable,
    plan_seed,
    raw_fps,
    skip_points,
    with_raw,
)
from rpi_braze_sync.deltarecord import NO_RAW, RAW_AT, WHOLE_AT, user_key
from rpi_braze_sync.plan import ChannelPlan, ReadFormat

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "rpi-braze-sync.yaml"
CHANNELS = load_config(SHIPPED, env={}, dry_run=True, secrets=False).channels
PLAN = CHANNELS["Braze Onboarding and Upsert"].plan.mapping
NOW = 1_800_000_000
MAX_AGE = 30 * 86400
SEED = 12345
FIELDS = {"first_name": b'"Ann"', "country": b'"FR"'}
ADDS = [("rpi_offers", b'"Spring"')]


def row(packed: str = "u1\x1fAnn\x1fFR", removes: bool = False, dropped: bool = False) -> bytes:
    """A mapped row's summary as the mapping process hands it (chunkreader._mapped)."""
    summary = summary_of(FIELDS, ADDS, [("rpi_offers", b'"Old"')] if removes else [])
    if dropped or not keepable(summary):
        return summary
    return with_raw(summary, raw_fps([packed], SEED)[0])


def record_of(summary: bytes, at: int = NOW - 60) -> bytes:
    """The record acknowledged for that row, the first time (nothing known)."""
    decision = compare_row(summary, None, at, MAX_AGE, "upsert")
    assert decision.remember is not None
    record = build_record(decision.remember, None, at)
    assert record is not None
    return record


def raw_of(packed: str = "u1\x1fAnn\x1fFR") -> bytes:
    return raw_fps([packed], SEED)[0]


CASES = {
    # name: (record, the row's raw fingerprint now, busy, skipped?)
    "fresh, the same source row": (record_of(row()), raw_of(), False, True),
    "nothing known": (None, raw_of(), False, False),
    "stale": (record_of(row(), at=NOW - MAX_AGE - 1), raw_of(), False, False),
    "another source row": (record_of(row()), raw_of("u1\x1fAnn\x1fDE"), False, False),
    "its user in flight": (record_of(row()), raw_of(), True, False),
    "the row removes array values": (record_of(row(removes=True)), raw_of(), False, False),
    "the row dropped a field": (record_of(row(dropped=True)), raw_of(), False, False),
    "no raw fingerprint now": (record_of(row()), NO_RAW, False, False),
    "an older record version": (b"\x03" + record_of(row())[1:], raw_of(), False, False),
}


@pytest.mark.parametrize("case", CASES)
def test_skip_decision(case: str) -> None:
    record, raw, busy, skipped = CASES[case]
    points = skip_points(record, raw, busy, NOW, MAX_AGE)
    assert (points != MAP) is skipped
    if skipped:  # what the full comparison of the same row, mapped again, says
        decision = compare_row(row(), record, NOW, MAX_AGE, "upsert", busy=busy)
        assert decision.send is Send.NOTHING
        assert points == decision.points_skipped == 3


def test_the_quiet_chunk_is_decided_as_any_other() -> None:
    """decide() without hazards (base None) gives what it gives row by row with them."""
    cases = [case for case in CASES.values() if not case[2]]
    keys = [user_key(f"u{i}") for i in range(len(cases))]
    raws = [raw for _, raw, _, _ in cases]
    records = [record for record, _, _, _ in cases]

    def base(k: bytes, looked_up: bytes | None) -> tuple[bytes | None, bool]:
        return looked_up, False

    quiet = decide(keys, raws, records, None, {}, NOW, MAX_AGE)
    assert quiet == decide(keys, raws, records, base, {}, NOW, MAX_AGE)
    assert quiet.skipped == [i for i, case in enumerate(cases) if case[3]]
    assert quiet.mapped == [k for i, k in enumerate(keys) if not cases[i][3]]


def test_a_record_merged_from_a_later_row_carries_that_row() -> None:
    """INTO_LATEST: the record names the row it was last built from, whose object it holds."""
    first = row("u1\x1fBob\x1fFR")
    later = row()
    merged = build_record(Remember(Merge.INTO_LATEST, later), record_of(first), NOW - 5)
    assert merged is not None
    assert skip_points(merged, raw_of(), False, NOW, MAX_AGE) == 3
    assert skip_points(merged, raw_of("u1\x1fBob\x1fFR"), False, NOW, MAX_AGE) == MAP


def test_a_record_written_since_the_lookup_is_the_one_decided_on() -> None:
    """deltaflight's hazard: the chunk's lookup read the old record; a row of the user was
    acknowledged since, with other values: decided on the newer one, as filter would."""
    key = user_key("u1")
    old, newer = record_of(row()), record_of(row("u1\x1fAnn\x1fDE"), at=NOW - 1)
    flight = InFlight()
    flight.sending(key)
    token = flight.lookup_started()
    flight.answered(key, newer)  # acknowledged between the lookup and the decision

    def base(k: bytes, looked_up: bytes | None) -> tuple[bytes | None, bool]:
        return flight.base(token, k, looked_up)

    decided = decide([key], [raw_of()], [old], base, {}, NOW, MAX_AGE)
    assert decided.mask == b"\x01"
    decided = decide([key], [raw_of("u1\x1fAnn\x1fDE")], [old], base, {}, NOW, MAX_AGE)
    assert decided.mask == b"\x00"
    flight.lookup_done(token)


def test_a_later_row_of_a_user_with_a_row_to_compare_is_mapped_too() -> None:
    """A row of the same user earlier in the chunk, or pending from an earlier chunk, is
    mapped: the later one must be compared after it (sent whole if it is in flight)."""
    u1, u2, u3 = user_key("u1"), user_key("u2"), user_key("u3")
    held = record_of(row())
    records = [held, held, held, held]
    raws = [raw_of("changed"), raw_of(), raw_of(), raw_of()]

    def base(k: bytes, looked_up: bytes | None) -> tuple[bytes | None, bool]:
        return looked_up, False

    decided = decide([u1, u1, u2, u3], raws, records, base, {u3: 1}, NOW, MAX_AGE)
    assert decided.mask == b"\x01\x01\x00\x01"
    assert decided.skipped == [2]
    assert decided.points == 3
    assert decided.mapped == [u1, u1, u3]


def test_the_seed_changes_with_the_plan_the_header_and_the_path_values_used() -> None:
    plan = ChannelPlan(ReadFormat(), PLAN)
    header = ["external_id", "first_name", "country"]
    values = {"offer": "Spring", "file_name": "a.txt"}
    seed = plan_seed(plan, header, values, frozenset({"offer"}))
    assert seed == plan_seed(plan, header, {**values, "file_name": "b.txt"}, frozenset({"offer"}))
    assert seed != plan_seed(plan, header, {**values, "offer": "Fall"}, frozenset({"offer"}))
    assert seed != plan_seed(plan, header[::-1], values, frozenset({"offer"}))
    assert seed != plan_seed(plan, header, values, frozenset({"offer"}), "0.2.0")  # upgraded
    edited = ChannelPlan(ReadFormat(), replace(PLAN, mode="append"))
    assert seed != plan_seed(edited, header, values, frozenset({"offer"}))
    assert seed != plan_seed(ChannelPlan(ReadFormat(quote_char="'"), PLAN), header, values,
                             frozenset({"offer"}))  # fmt: skip


def test_the_seed_is_the_same_in_every_process() -> None:
    """No hash()-ordered set in what is fingerprinted (used_columns is a frozenset)."""
    code = (
        "from tests.unit.test_deltaprefilter import PLAN, ChannelPlan, ReadFormat, plan_seed\n"
        "print(plan_seed(ChannelPlan(ReadFormat(), PLAN), ['a'], {}, frozenset()))\n"
    )
    seeds = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(n)},
        ).stdout
        for n in (1, 2, 3)
    }
    assert len(seeds) == 1
    assert seeds != {""}


def test_raw_fingerprints() -> None:
    a, b, listed = raw_fps(["x\x1fy", "x\x1fz", ["x\x1f", "y"]], SEED)
    assert a != b
    assert NO_RAW not in (a, b)
    assert listed == NO_RAW  # a cell held the separator: no exact packed form
    assert raw_fps(["x\x1fy"], SEED + 1)[0] != a
    summary = row()
    assert summary[RAW_AT:WHOLE_AT] == raw_of()
    assert with_raw(summary, NO_RAW)[:RAW_AT] == summary[:RAW_AT]


def crossed(message: Message) -> Message:
    return decode(encode(message)[FRAME_LENGTH.size :])


def test_the_two_phases_messages_cross_as_they_are() -> None:
    keys = KeysData([4, 5], [user_key("u1"), user_key("u2")], [raw_of(), NO_RAW], True)
    assert crossed(Keys(keys)) == Keys(keys)
    assert crossed(NextKeys()) == NextKeys()
    assert crossed(MapRows(b"\x01\x00")) == MapRows(b"\x01\x00")
    chunk = ChunkData([5], [7], ["u2"], [b"{}"], ["u2"], [], {}, False, 0.5, 6, [b"s"], [4])
    assert crossed(Chunk(chunk)) == Chunk(chunk)


def test_the_version_in_the_seed_names_every_library_the_mapping_uses() -> None:
    """A library's upgrade can change a mapped value (phonenumbers' metadata, pycountry's
    names, orjson's numbers): the raw fingerprints must change with it, or the row is skipped
    while the full comparison would send it. Every distribution the mapping process loads is
    named, with its version, in what the daemon hands it as `version` (FileRequest)."""
    from importlib.metadata import files as distribution_files
    from importlib.metadata import version

    from rpi_braze_sync import countries, mapping_version, package_version

    code = (
        "import sys, importlib.metadata as md\n"
        "before = set(sys.modules)\n"
        "import rpi_braze_sync.mapchild, rpi_braze_sync.chunkreader\n"
        "names = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "found = md.packages_distributions()\n"
        "print(' '.join(sorted({d for n in names for d in found.get(n, [])})))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "phonenumbers" in loaded
    # pycountry's table is read as a data file, not imported (countries.py): named all the same
    assert "pycountry" not in loaded
    shipped = [Path(str(f.locate())).resolve() for f in distribution_files("pycountry") or []]
    assert countries.table_path().resolve() in shipped
    loaded.append("pycountry")
    named = mapping_version()
    assert f"rpi-braze-sync {package_version()}" in named
    for dist in loaded:
        assert f"{dist} {version(dist)}" in named
    assert sys.version.split()[0] in named  # the standard library's (unicodedata, datetime)
