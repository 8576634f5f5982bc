"""File-version identity (fileidentity.py), by tables: a file seen again under a path is
skipped, continued from an earlier checkpoint, sent again, or sent as its record stands.

Contents are short byte strings; the helper gathers the facts as pipeline.py does (the
previous version only when asked for, the prefix hash only when asked for), so every case
also checks that no fact is read that the decision does not need.
"""

from __future__ import annotations

import hashlib

import pytest

from rpi_braze_sync.fileidentity import (
    Seen,
    Version,
    VersionAction,
    VersionDecision,
    decide,
    earlier_version,
    needs_prefix_hash,
    needs_previous,
)

AS_RECORDED, SKIP = VersionAction.AS_RECORDED, VersionAction.SKIP
CONTINUE, RESEND = VersionAction.CONTINUE, VersionAction.RESEND
OLD = b"id,name\n1,a\n2,b\n"
GROWN = OLD + b"3,c\n"
OTHER = b"id,name\n1,x\n2,y\n"  # the same size as OLD, other values
SHORTER = b"id,name\n1,a\n"
BIGGER_OTHER = b"id,name\n9,z\n2,b\n3,c\n"  # grew, but its start is not OLD


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def sent(
    content: bytes, id: int = 1, checkpoint: int = 2, ahead: tuple[tuple[int, int], ...] = ()
) -> Version:
    """A version whose content was read (done, or whose send began)."""
    return Version(id, sha(content), len(content), checkpoint, ahead)


NEW = Version(7, None, 0, 0)  # a record never read: what the watcher recorded
RESUMING = Version(7, sha(OLD), len(OLD), 1, ((2, 3),))  # its send began, 1 row + row 3 settled


def run(
    record: Version, now: bytes, previous: Version | None, retry: bool = False
) -> tuple[VersionDecision, bool, bool]:
    """The decision for the file now holding `now`, and whether the journal and the file's
    prefix were read for it."""
    seen = Seen(record, retry, sha(now), len(now))
    asked_previous = needs_previous(seen)
    earlier = earlier_version(seen, previous if asked_previous else None)
    asked_prefix = needs_prefix_hash(seen, earlier)
    prefix = sha(now[: earlier.size]) if asked_prefix and earlier is not None else None
    return decide(seen, earlier, prefix), asked_previous, asked_prefix


DONE_BEFORE = sent(OLD, id=3, checkpoint=2, ahead=())
DONE_WITH_AHEAD = Version(
    3, sha(OLD), len(OLD), 1, ((5, 9),)
)  # (an earlier version that was cut short)


@pytest.mark.parametrize(
    ("record", "now", "previous", "retry", "action", "earlier", "start", "ahead", "reads"),
    [
        # A path seen for the first time: nothing to compare with.
        (NEW, OLD, None, False, AS_RECORDED, None, 0, (), "previous"),
        # The same content as the version done before: not sent again.
        (NEW, OLD, DONE_BEFORE, False, SKIP, DONE_BEFORE, 0, (), "previous"),
        # RPI appended rows after the version was done: from its checkpoint, its ranges kept.
        (NEW, GROWN, DONE_BEFORE, False, CONTINUE, DONE_BEFORE, 2, (), "previous+prefix"),
        (
            NEW,
            GROWN,
            DONE_WITH_AHEAD,
            False,
            CONTINUE,
            DONE_WITH_AHEAD,
            1,
            ((5, 9),),
            "previous+prefix",
        ),
        # Larger, but its start is not the earlier content: new content.
        (
            NEW,
            BIGGER_OTHER,
            DONE_BEFORE,
            False,
            RESEND,
            DONE_BEFORE,
            0,
            (),
            "previous+prefix",
        ),
        # Same size, other values; or shorter: new content, no prefix read.
        (NEW, OTHER, DONE_BEFORE, False, RESEND, DONE_BEFORE, 0, (), "previous"),
        (NEW, SHORTER, DONE_BEFORE, False, RESEND, DONE_BEFORE, 0, (), "previous"),
        # `retry`: the whole file again, whatever was sent before; nothing read.
        (NEW, OLD, DONE_BEFORE, True, AS_RECORDED, None, 0, (), ""),
        (NEW, GROWN, DONE_BEFORE, True, AS_RECORDED, None, 0, (), ""),
        (RESUMING, OTHER, DONE_BEFORE, True, AS_RECORDED, None, 0, (), ""),
        # A send that began (a restart): the same content resumes from the record's own
        # checkpoint; the version done before is not consulted.
        (RESUMING, OLD, DONE_BEFORE, False, AS_RECORDED, None, 0, (), ""),
        (RESUMING, OLD, None, False, AS_RECORDED, None, 0, (), ""),
        # ... the file grew while the daemon was down: from the record's checkpoint and ranges.
        (RESUMING, GROWN, DONE_BEFORE, False, CONTINUE, RESUMING, 1, ((2, 3),), "prefix"),
        # ... the file changed otherwise: from the first row, what was settled forgotten.
        (RESUMING, OTHER, DONE_BEFORE, False, RESEND, RESUMING, 0, (), ""),
        (RESUMING, SHORTER, None, False, RESEND, RESUMING, 0, (), ""),
        (RESUMING, BIGGER_OTHER, None, False, RESEND, RESUMING, 0, (), "prefix"),
    ],
)
def test_decision(
    record: Version,
    now: bytes,
    previous: Version | None,
    retry: bool,
    action: VersionAction,
    earlier: Version | None,
    start: int,
    ahead: tuple[tuple[int, int], ...],
    reads: str,
) -> None:
    decision, asked_previous, asked_prefix = run(record, now, previous, retry)
    assert decision == VersionDecision(action, earlier, start, ahead)
    assert asked_previous == ("previous" in reads)
    assert asked_prefix == ("prefix" in reads)


@pytest.mark.parametrize(
    ("earlier", "prefix", "action"),
    [
        # The prefix hash decides between continuing and sending again, and only for a file
        # that grew: a wrong or missing hash never continues.
        (DONE_BEFORE, sha(OLD), CONTINUE),
        (DONE_BEFORE, sha(OTHER), RESEND),
        (DONE_BEFORE, None, RESEND),
        # An earlier version with no hash (never read) matches nothing, not even None.
        (Version(3, None, len(OLD), 2), None, RESEND),
    ],
)
def test_prefix_hash(earlier: Version, prefix: str | None, action: VersionAction) -> None:
    seen = Seen(NEW, False, sha(GROWN), len(GROWN))
    assert decide(seen, earlier, prefix).action == action


def test_same_hash_is_skipped_whatever_the_sizes_say() -> None:
    """Identity is the content's hash: a size the journal holds differently does not matter."""
    earlier = Version(3, sha(OLD), 1, 2)
    assert decide(Seen(NEW, False, sha(OLD), len(OLD)), earlier).action == SKIP
