"""The journal's state machine: the transition table, as a table."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpi_braze_sync.filestates import (
    FINAL_STATES,
    STATES,
    TRANSITIONS,
    FileState,
    StateTransitionError,
    check_transition,
    parse_state,
    sources_of,
)
from rpi_braze_sync.sqlitejournal import SqliteJournal

S = FileState
ALLOWED = {
    (None, S.PREEXISTING), (None, S.SEEN), (None, S.COMPLETE),
    (S.SEEN, S.COMPLETE), (S.SEEN, S.VANISHED), (S.SEEN, S.FAILED),
    (S.COMPLETE, S.SENDING), (S.COMPLETE, S.DONE), (S.COMPLETE, S.FAILED),
    (S.COMPLETE, S.VANISHED),
    (S.SENDING, S.SENDING), (S.SENDING, S.DONE), (S.SENDING, S.FAILED), (S.SENDING, S.VANISHED),
}  # fmt: skip


@pytest.mark.parametrize("current", [None, *STATES])
@pytest.mark.parametrize("target", STATES)
def test_every_move_is_allowed_or_refused_as_the_table_says(
    current: FileState | None, target: FileState
) -> None:
    if (current, target) in ALLOWED:
        check_transition(current, target)
    else:
        with pytest.raises(StateTransitionError, match=f"cannot become {target}"):
            check_transition(current, target)


def test_final_states_go_nowhere_and_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(STATES)
    assert all(not TRANSITIONS[state] for state in FINAL_STATES)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (S.SENDING, (S.COMPLETE, S.SENDING)),
        (S.DONE, (S.COMPLETE, S.SENDING)),
        (S.VANISHED, (S.SEEN, S.COMPLETE, S.SENDING)),
        (S.COMPLETE, (S.SEEN,)),
        (S.PREEXISTING, ()),
    ],
)
def test_sources_of(target: FileState, sources: tuple[FileState, ...]) -> None:
    assert sources_of(target) == sources


def test_states_are_stored_and_shown_as_their_text() -> None:
    assert [str(s) for s in STATES] == [
        "preexisting", "seen", "complete", "sending", "done", "failed", "vanished",
    ]  # fmt: skip
    assert f"{S.DONE:<6}|" == "done  |"
    assert parse_state("sending") is S.SENDING
    with pytest.raises(ValueError, match="'sent' is not a file state"):
        parse_state("sent")


def test_the_sqlite_journal_refuses_a_move_the_table_does_not_allow(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    try:
        record = journal.record_complete("c/o/1/a.txt", "c", 1, 1)
        journal.finish(record.id, S.DONE)
        with pytest.raises(StateTransitionError, match="a done record cannot become sending"):
            journal.start(record.id, "sha", 1, 1)
        with pytest.raises(StateTransitionError, match="a done record cannot become failed"):
            journal.finish(record.id, S.FAILED, "late")
        after = journal.get(record.id)
        assert (after.state, after.reason, after.sha256) == (S.DONE, None, None)
        assert type(after.state) is FileState
    finally:
        journal.close()
