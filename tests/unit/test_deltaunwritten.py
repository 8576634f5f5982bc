"""deltaunwritten.Unwritten: a user marked is always 'maybe held'; most others are not."""

from __future__ import annotations

from rpi_braze_sync.deltaunwritten import USELESS_LOOKUPS, Unwritten


def test_every_user_marked_may_be_held_and_most_others_are_not() -> None:
    unwritten = Unwritten(bits=1 << 16)
    marked = [f"user-{i}".encode() for i in range(0, 4000, 2)]
    others = [f"user-{i}".encode() for i in range(1, 4000, 2)]
    assert unwritten.maybe_held(marked + others) == []
    unwritten.mark(marked)
    keys = marked + others
    held = unwritten.maybe_held(keys)
    assert held[: len(marked)] == list(range(len(marked)))
    false_positives = len(held) - len(marked)
    assert 0 < false_positives < len(others) * 0.06  # 2,000 of 65,536 bits set: about 3 %


def test_marking_again_changes_nothing() -> None:
    unwritten = Unwritten(bits=1 << 10)
    unwritten.mark([b"a", b"b"])
    before = unwritten.maybe_held([bytes([i]) for i in range(256)])
    unwritten.mark([b"a"])
    assert unwritten.maybe_held([bytes([i]) for i in range(256)]) == before


def test_held_marking_is_maybe_held_then_mark() -> None:
    keys = [f"user-{i}".encode() for i in range(3000)]
    asked = keys[1000:] + keys[1500:2000]  # (500 users twice: held the second time)
    one, other = Unwritten(bits=1 << 14), Unwritten(bits=1 << 14)
    one.mark(keys[::3])
    other.mark(keys[::3])
    before = one.maybe_held(asked)
    one.mark(asked)
    held = other.held_marking(asked)
    # (a user sharing a bit with one asked before him in the call: held too, as after mark)
    assert set(before) <= set(held)
    assert set(range(2000, 2500)) <= set(held)
    assert len(held) - len(before) - 500 < 2000 * 0.2
    assert other.maybe_held(keys) == one.maybe_held(keys)


def test_spent_once_it_spared_nothing_for_some_lookups_in_a_row() -> None:
    unwritten = Unwritten(bits=1 << 16)
    written = [f"user-{i}".encode() for i in range(100)]
    unwritten.mark(written)
    for _ in range(USELESS_LOOKUPS - 1):
        unwritten.maybe_held(written)
    assert not unwritten.spent
    unwritten.maybe_held([b"someone new", *written])  # spared one lookup: counted afresh
    for _ in range(USELESS_LOOKUPS - 1):
        unwritten.maybe_held(written)
    assert not unwritten.spent
    unwritten.maybe_held(written)
    assert unwritten.spent
