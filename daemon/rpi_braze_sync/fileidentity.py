"""Pure: what to do with a file version seen under a path sent before (the journal's rule of
version identity): send it as the record stands, skip it as sent already, continue it from an
earlier checkpoint, or send it again from its first row.

The facts come from the journal (this record, the newest version of the path that was done)
and from a read of the file (its size, its hash, the hash of its first bytes). Gathering them
is I/O and stays with the caller (pipeline.py); `earlier_version` and `needs_prefix_hash` say
which of them the decision needs, so that the caller reads no more than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .journal import FileRecord

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Version:
    """A version of the path the journal knows: the one being sent, or one sent before."""

    id: int
    sha256: str | None  # None: this record's content was never read
    size: int
    checkpoint: int  # the settled prefix
    ahead: Ranges = ()  # records settled beyond it


def version_of(record: FileRecord) -> Version:
    return Version(record.id, record.sha256, record.size, record.checkpoint, tuple(record.ahead))


@dataclass(frozen=True)
class Seen:
    """This record, and what a read of its file found now."""

    record: Version
    retry: bool  # `rpi-braze-sync retry`: the operator wants the whole file again
    sha256: str
    size: int


class VersionAction(Enum):
    AS_RECORDED = "as_recorded"  # from the record's own checkpoint (0 for a new version)
    SKIP = "skip"  # the same content as a version sent before: done without a request
    CONTINUE = "continue"  # the earlier content followed by more rows: from its checkpoint
    RESEND = "resend"  # new content under the path: from the first row


@dataclass(frozen=True)
class VersionDecision:
    action: VersionAction
    earlier: Version | None = None  # the version compared with (SKIP, CONTINUE, RESEND)
    start: int = 0  # CONTINUE and RESEND: the checkpoint to send from
    ahead: Ranges = ()  # CONTINUE: the records the earlier version settled beyond it


def needs_previous(seen: Seen) -> bool:
    """Whether the decision needs the newest DONE version of the path (a journal read)."""
    return not seen.retry and seen.record.sha256 is None


def earlier_version(seen: Seen, previous_done: Version | None) -> Version | None:
    """The version this one is compared with, or None when there is none to compare with.

    A record whose content was read (its send began) is compared with itself: the file may
    have changed while the daemon was down. A new record is compared with the newest version
    of its path that was done. A retry is compared with nothing: it is sent whole.
    """
    if seen.retry:
        return None
    recorded = seen.record
    if recorded.sha256 is not None:
        return recorded if recorded.sha256 != seen.sha256 else None
    return previous_done


def needs_prefix_hash(seen: Seen, earlier: Version | None) -> bool:
    """Whether the decision needs the hash of the file's first `earlier.size` bytes: only a
    file that changed and grew can be the earlier content followed by more rows."""
    return earlier is not None and earlier.sha256 != seen.sha256 and seen.size > earlier.size


def decide(
    seen: Seen, earlier: Version | None, prefix_sha256: str | None = None
) -> VersionDecision:
    """`earlier` from earlier_version; `prefix_sha256` the hash of the file's first
    `earlier.size` bytes when needs_prefix_hash (else unused)."""
    if earlier is None:
        return VersionDecision(VersionAction.AS_RECORDED)
    if earlier.sha256 == seen.sha256:
        return VersionDecision(VersionAction.SKIP, earlier)
    grew = (
        seen.size > earlier.size and earlier.sha256 is not None and prefix_sha256 == earlier.sha256
    )
    if grew:
        # The same rows as before, then more: what was settled of them is settled still.
        return VersionDecision(VersionAction.CONTINUE, earlier, earlier.checkpoint, earlier.ahead)
    return VersionDecision(VersionAction.RESEND, earlier)
