"""deltaflight.InFlight with delta: rows of one user in flight, and records written between a
chunk's lookup and its comparison. A dict plays the store; Braze is a dict of profiles."""

from __future__ import annotations

from rpi_braze_sync.delta import ByValues, Send, build_record, compare, user_key
from rpi_braze_sync.deltaflight import InFlight

NOW = 1_800_000_000
MAX_AGE = 30 * 86400
KEY = user_key("u1")


def country(code: str) -> dict[str, bytes]:
    return {"country": b'"%s"' % code.encode()}


class Pipeline:
    """The order the pipeline must follow, with a store (dict) and a Braze that applies
    what it acknowledges (dict of the user's attributes)."""

    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}
        self.flight = InFlight()
        self.braze: dict[str, bytes] = {}

    def look_up(self) -> tuple[int, bytes | None]:
        token = self.flight.lookup_started()
        return token, self.store.get(KEY)

    def compare(self, token: int, looked_up: bytes | None, fields: dict[str, bytes]) -> ByValues:
        base, busy = self.flight.base(token, KEY, looked_up)
        decision = compare(fields, [], base, NOW, MAX_AGE, "upsert", busy)
        if decision.send is not Send.NOTHING:
            self.flight.sending(KEY)
        return decision

    def acknowledge(
        self, decision: ByValues, fields: dict[str, bytes], compared: bytes | None
    ) -> None:
        for path in fields:
            if path not in decision.skipped_fields:
                self.braze[path] = fields[path]
        assert decision.remember is not None
        record = build_record(decision.remember, self.flight.latest(KEY, compared), NOW)
        if record is not None:
            self.store[KEY] = record
        self.flight.answered(KEY, record)

    def reject(self) -> None:
        self.flight.answered(KEY, None)


def test_a_second_row_of_a_user_in_flight_is_sent_whole() -> None:
    """DE is in flight when FR comes: FR equals the stored value but must still be sent, or
    Braze would end with DE."""
    p = Pipeline()
    token, record = p.look_up()
    first = p.compare(token, record, country("FR"))
    p.flight.lookup_done(token)
    p.acknowledge(first, country("FR"), record)
    token, record = p.look_up()
    to_de = p.compare(token, record, country("DE"))
    back_to_fr = p.compare(token, record, country("FR"))
    p.flight.lookup_done(token)
    assert to_de.send is Send.ALL
    assert back_to_fr.send is Send.ALL  # not skipped although FR is remembered
    p.acknowledge(to_de, country("DE"), record)
    p.acknowledge(back_to_fr, country("FR"), record)
    assert p.braze == country("FR")
    token, record = p.look_up()
    assert p.compare(token, record, country("FR")).send is Send.NOTHING  # remembered right
    p.flight.lookup_done(token)


def test_a_rejected_row_in_flight_does_not_make_the_next_one_skip() -> None:
    p = Pipeline()
    token, record = p.look_up()
    p.acknowledge(p.compare(token, record, country("FR")), country("FR"), record)
    p.flight.lookup_done(token)
    token, record = p.look_up()
    p.compare(token, record, country("DE"))
    again = p.compare(token, record, country("DE"))
    p.flight.lookup_done(token)
    p.reject()  # Braze refused the first DE
    assert again.send is Send.ALL
    p.acknowledge(again, country("DE"), record)
    assert p.braze == country("DE")


def test_a_record_written_after_the_lookup_is_the_one_compared() -> None:
    """Chunk 2 read FR from the store; then chunk 1's DE was acknowledged and written;
    chunk 2's FR must compare with DE and be sent."""
    p = Pipeline()
    token, record = p.look_up()
    p.acknowledge(p.compare(token, record, country("FR")), country("FR"), record)
    p.flight.lookup_done(token)
    chunk1, record1 = p.look_up()
    to_de = p.compare(chunk1, record1, country("DE"))
    p.flight.lookup_done(chunk1)
    chunk2, record2 = p.look_up()  # read ahead: still FR in the store
    p.acknowledge(to_de, country("DE"), record1)  # DE written before chunk 2 is compared
    fr = p.compare(chunk2, record2, country("FR"))
    p.flight.lookup_done(chunk2)
    assert fr.send is Send.ALL
    p.acknowledge(fr, country("FR"), record2)
    assert p.braze == country("FR")
    assert len(p.flight) == 0  # nothing held once every row is answered and chunk compared


def test_what_is_held_stays_bounded() -> None:
    flight = InFlight()
    for n in range(1000):
        key = user_key(f"u{n}")
        token = flight.lookup_started()
        flight.base(token, key, None)
        flight.sending(key)
        flight.lookup_done(token)
        flight.answered(key, b"record")
    assert len(flight) == 0
    token = flight.lookup_started()
    flight.sending(KEY)
    flight.answered(KEY, b"r")
    assert len(flight) == 1  # kept: a lookup that began before the write is outstanding
    assert flight.base(token, KEY, b"old") == (b"r", False)
    flight.lookup_done(token)
    assert len(flight) == 0


def test_a_chunk_is_quiet_only_without_repeats_rows_in_flight_or_writes_since() -> None:
    """The first run's bulk path (deltafile): quiet() must say no whenever base() row by row
    would give another record than the looked-up one, or a busy user."""
    a, b, c = user_key("a"), user_key("b"), user_key("c")
    flight = InFlight()
    token = flight.lookup_started()
    assert flight.quiet(token, [a, b])
    assert not flight.quiet(token, [a, b, a])  # a repeat: its second row is busy
    flight.sending_all([a, b])
    flight.lookup_done(token)
    token = flight.lookup_started()
    assert not flight.quiet(token, [c, a])  # a has a row in flight
    flight.answered_all([(a, b"record-a"), (b, None)])
    assert flight.quiet(token, [c])
    assert not flight.quiet(token, [c, a])  # a's record was written after this lookup began
    assert flight.base(token, a, None) == (b"record-a", False)
    flight.lookup_done(token)
    later = flight.lookup_started()
    assert flight.quiet(later, [a, b, c])  # written before this lookup: the store has it
    flight.lookup_done(later)
    assert len(flight) == 0


def state(flight: InFlight, token: int, keys: list[bytes]) -> list[tuple[bytes | None, bool]]:
    return [flight.base(token, key, b"looked-up") for key in keys] + [(None, len(flight) > 0)]


def test_acknowledged_all_is_answered_row_by_row() -> None:
    """The first run's bulk answer (deltafile) leaves InFlight as answered() one by one would:
    with a lookup outstanding (records kept for it) or not, a busy user among them or not."""
    a, b, c = user_key("a"), user_key("b"), user_key("c")
    for outstanding in (False, True):
        for rows in ([a, b, c], [a, b, c, a]):  # a twice: busy, answered once of two
            bulk, single = InFlight(), InFlight()
            tokens = []
            for flight in (bulk, single):
                flight.sending_all([a, b, c])
                if len(rows) == 4:
                    flight.sending(a)
                tokens.append(flight.lookup_started() if outstanding else None)
            bulk.acknowledged_all([a, b, c], [b"ra", b"rb", b"rc"])
            for key, record in ((a, b"ra"), (b, b"rb"), (c, b"rc")):
                single.answered(key, record)
            probe_b, probe_s = bulk.lookup_started(), single.lookup_started()
            assert state(bulk, probe_b, [a, b, c]) == state(single, probe_s, [a, b, c])
            assert bulk.latest(a, None) == single.latest(a, None)
            assert (bulk._seq, len(bulk)) == (single._seq, len(single))
            kept = outstanding or len(rows) == 4  # for the lookup, or a's row still in flight
            assert bulk.latest(a, None) == (b"ra" if kept else None)
            assert bulk.base(probe_b, a, None)[1] is (len(rows) == 4)
            if outstanding:
                assert tokens[0] is not None
                assert bulk.base(tokens[0], b, None) == (b"rb", False)  # written since it began


def test_acknowledged_all_with_a_user_twice_is_answered_row_by_row() -> None:
    a, b = user_key("a"), user_key("b")
    bulk, single = InFlight(), InFlight()
    for flight in (bulk, single):
        flight.sending_all([a, b])
        flight.sending(a)  # a second row of a, in flight too
        flight.lookup_started()  # outstanding: the records written are kept
    bulk.acknowledged_all([a, b, a], [b"r1", b"rb", b"r2"])
    for key, record in ((a, b"r1"), (b, b"rb"), (a, b"r2")):
        single.answered(key, record)
    assert bulk._rows == single._rows == {}
    assert bulk._written == single._written
    assert bulk.latest(a, None) == b"r2"


def test_acknowledged_all_keeps_records_only_for_the_users_a_lookup_reads() -> None:
    """A lookup that names its users keeps, of the first run's bulk answer, only their records:
    base() and quiet() of that lookup answer as if every record were kept, and a user no
    lookup reads is held no more (a later lookup reads the store)."""
    a, b, c, d = user_key("a"), user_key("b"), user_key("c"), user_key("d")
    named, unnamed = InFlight(), InFlight()
    tokens = []
    for flight in (named, unnamed):
        flight.sending_all([a, b, c])
        tokens.append(flight.lookup_started([b, d] if flight is named else None))
    for flight in (named, unnamed):
        flight.acknowledged_all([a, b, c], [b"ra", b"rb", b"rc"])
    for key in (b, d):
        assert named.base(tokens[0], key, b"old") == unnamed.base(tokens[1], key, b"old")
    assert named.base(tokens[0], b, b"old") == (b"rb", False)  # written since it began
    assert named.quiet(tokens[0], [b, d]) is unnamed.quiet(tokens[1], [b, d]) is False
    assert named._written.keys() == {b}
    assert named.latest(a, b"base") == b"base"  # no row of a in flight: nothing kept
    assert named._seq == unnamed._seq == 3
    named.lookup_done(tokens[0])
    assert len(named) == 0


def test_a_named_lookup_drops_an_older_record_of_a_user_it_does_not_read() -> None:
    """A record kept from an earlier answer (while a lookup read its user) is not left behind
    by a newer one: latest() must never give the older."""
    a, b = user_key("a"), user_key("b")
    flight = InFlight()
    flight.sending_all([a, b])
    first = flight.lookup_started([a])
    flight.acknowledged_all([a], [b"a1"])  # kept: the lookup reads a
    flight.sending(a)  # a's next row, compared with a1 (base of the lookup)
    assert flight.base(first, a, None) == (b"a1", True)
    second = flight.lookup_started([b])
    flight.lookup_done(first)
    assert flight.latest(a, None) == b"a1"  # a's row in flight: its base kept
    flight.acknowledged_all([a, b], [b"a2", b"b1"])
    assert flight.latest(a, b"its base") == b"its base"  # a2 is in the store; a1 not kept
    assert flight.base(second, b, None) == (b"b1", False)
    flight.lookup_done(second)
    assert len(flight) == 0
