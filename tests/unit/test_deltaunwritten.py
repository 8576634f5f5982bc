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
