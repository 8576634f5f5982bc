"""Pure: the states of a file version in the journal and the moves allowed between them.

Every journal (SQLite, PostgreSQL) stores a state as its value (the text `status` shows and
`status --state` takes); a write that would make a move the table does not allow is refused.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import RpiBrazeSyncError


class FileState(StrEnum):
    PREEXISTING = "preexisting"  # on the share before the very first start; never sent
    SEEN = "seen"  # found, still being written (or not yet settled)
    COMPLETE = "complete"  # settled on disk, queued to send
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"
    VANISHED = "vanished"


_S = FileState
STATES = tuple(FileState)  # in lifecycle order
QUEUED_STATES = (_S.COMPLETE, _S.SENDING)  # a restart resumes these
FINAL_STATES = (_S.PREEXISTING, _S.DONE, _S.FAILED, _S.VANISHED)  # only a new record leaves them
UNFINISHED_STATES = (_S.SEEN, *QUEUED_STATES)  # an append file waits for upserts in these

# The state a new record starts in, and where each state may go. A final state goes nowhere:
# a file sent again (a new version, `retry`) is a new record.
INITIAL: frozenset[FileState] = frozenset({_S.PREEXISTING, _S.SEEN, _S.COMPLETE})
TRANSITIONS: dict[FileState, frozenset[FileState]] = {
    _S.SEEN: frozenset({_S.COMPLETE, _S.VANISHED, _S.FAILED}),
    # COMPLETE -> DONE: the same content as a version sent before, not sent again.
    _S.COMPLETE: frozenset({_S.SENDING, _S.DONE, _S.FAILED, _S.VANISHED}),
    # SENDING -> SENDING: a send resumed after a restart or a share that dropped.
    _S.SENDING: frozenset({_S.SENDING, _S.DONE, _S.FAILED, _S.VANISHED}),
    _S.PREEXISTING: frozenset(),
    _S.DONE: frozenset(),
    _S.FAILED: frozenset(),
    _S.VANISHED: frozenset(),
}


class StateTransitionError(RpiBrazeSyncError):
    """A journal write that would move a file version where TRANSITIONS does not allow: a
    bug, not a state directory problem (the file is not retried for it)."""


def sources_of(target: FileState) -> tuple[FileState, ...]:
    """The states a record may be in to move to `target` (a journal's UPDATE ... WHERE)."""
    return tuple(s for s in FileState if target in TRANSITIONS[s])


def check_transition(current: FileState | None, target: FileState) -> None:
    """Raise StateTransitionError unless `current` may move to `target` (None: a new record)."""
    allowed = INITIAL if current is None else TRANSITIONS[current]
    if target not in allowed:
        where = "a new record" if current is None else f"a {current} record"
        raise StateTransitionError(f"{where} cannot become {target}")


def parse_state(text: str) -> FileState:
    """A state as stored or typed (`status --state`); ValueError names the known ones."""
    try:
        return FileState(text)
    except ValueError:
        known = ", ".join(STATES)
        raise ValueError(f"{text!r} is not a file state ({known})") from None
