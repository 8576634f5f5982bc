"""What the daemon, `status` and `retry` need from a journal, whatever keeps it (SQLite:
sqlitejournal.py; PostgreSQL beside it): one record per file version, its state (filestates.py),
its checkpoint and its outcome, and the RPI calls kept across restarts.

A journal is called from more than one thread: the daemon's writes (the watcher's and one
file's send) from the state writer's (statewriter.py), in the order durability needs; reads
from the event loop too. An implementation serialises its own connection. Every method
raises JournalError when its store cannot be read or written, and StateTransitionError for a
move filestates.TRANSITIONS does not allow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import orjson

from .filestates import FileState

FileVersion = tuple[str, str | None, int, int]  # rel_path, channel, size, mtime_ns


@dataclass(frozen=True)
class FileRecord:
    id: int
    rel_path: str
    channel: str | None
    size: int
    mtime_ns: int
    sha256: str | None
    state: FileState
    checkpoint: int
    rows_sent: int
    rows_rejected: int
    fields_dropped: int
    reason: str | None
    first_seen_at: float
    completed_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float
    gone_at: float | None
    rpi_call: str | None
    retry: int  # 1: asked for by `rpi-braze-sync retry`: sent whole, whatever was sent before
    rows_total: int | None  # data records in the version being sent, counted when inspected
    settled_ahead: str | None  # JSON [[start, end], ...]: records settled beyond the checkpoint
    # Delta's data points of this send so far (every process's: a restart continues from
    # them), written with each checkpoint; None where delta did not send it.
    points_sent: int | None = None
    points_skipped: int | None = None

    @property
    def ahead(self) -> list[tuple[int, int]]:
        """The ranges [start, end) of records settled beyond the checkpoint."""
        if not self.settled_ahead:
            return []
        return [(int(start), int(end)) for start, end in orjson.loads(self.settled_ahead)]


def ranges_json(ranges: Sequence[tuple[int, int]]) -> str | None:
    """FileRecord.settled_ahead's text for `ranges` (None when there are none)."""
    return orjson.dumps(ranges).decode() if ranges else None


class JournalReader(Protocol):
    """What `status` reads (a journal opened read-only, maybe under a running daemon)."""

    def all(self) -> list[FileRecord]:
        """Every record, oldest first."""
        ...

    def latest(self, rel_path: str) -> FileRecord | None:
        """The newest record of this path."""
        ...

    def close(self) -> None: ...


class Journal(JournalReader, Protocol):
    """A journal the daemon (and `retry`) writes. Times are epoch seconds (time.time())."""

    # --- first start ---------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        """Whether mark_initialized ran (the state directory's first start happened)."""
        ...

    def preexisting(self) -> list[FileVersion]:
        """The files recorded as pre-existing at the first start, in their order."""
        ...

    def mark_initialized(self, preexisting: list[FileVersion]) -> None:
        """Record these as PREEXISTING and the journal as initialized, in one transaction."""
        ...

    # --- reading -------------------------------------------------------------------------
    def get(self, file_id: int) -> FileRecord:
        """The record; JournalError when there is none."""
        ...

    def latest_by_path(self) -> dict[str, FileRecord]:
        """The newest record of every path."""
        ...

    def queued(self, after_id: int = 0) -> list[FileRecord]:
        """Records in QUEUED_STATES with id > after_id, by completed_at then id."""
        ...

    def unfinished(self, channels: Sequence[str]) -> list[FileRecord]:
        """Records of these channels in UNFINISHED_STATES, by id."""
        ...

    def last_sent_at(self, channels: Sequence[str]) -> float | None:
        """The latest finished_at of a DONE record of these channels with rows_sent > 0."""
        ...

    def seen_id(self, rel_path: str) -> int | None:
        """The newest SEEN record of this path."""
        ...

    def previous_done(self, rel_path: str, before_id: int) -> FileRecord | None:
        """The newest DONE record of this path with a sha256, id < before_id."""
        ...

    # --- the watcher (the state writer's thread: listener.py) -----------------------------
    def record_seen(
        self, rel_path: str, channel: str, size: int, mtime_ns: int, seen_at: float | None = None
    ) -> int:
        """A new SEEN record; its id."""
        ...

    def record_complete(
        self,
        rel_path: str,
        channel: str,
        size: int,
        mtime_ns: int,
        rpi_call: str | None = None,
        completed_at: float | None = None,
    ) -> FileRecord:
        """The path's SEEN record (or a new one) becomes COMPLETE with this size and mtime."""
        ...

    def note(self, file_id: int, reason: str | None) -> None:
        """Set `reason` (why the file waits; None clears it) without changing the state."""
        ...

    def sweep(self, present: set[str], retention_s: float) -> int:
        """Final records: set gone_at when their path left the share (clear it when back),
        delete those gone for retention_s. Returns how many were deleted."""
        ...

    # --- one file's send (the state writer's thread) -------------------------------------
    # False: checkpoint() only hands its values to a thread of the journal's own and never
    # waits (PostgreSQL: pgcheckpoints.py), so the loop may call it itself when nothing
    # handed to the state writer before it is still to be written (settlement.py).
    checkpoint_blocks: bool

    def start(
        self, file_id: int, sha256: str, size: int, mtime_ns: int, rows_total: int | None = None
    ) -> None:
        """COMPLETE or SENDING -> SENDING, with the content read; started_at kept if set."""
        ...

    def restart_from(
        self, file_id: int, checkpoint: int, ahead: Sequence[tuple[int, int]] = ()
    ) -> None:
        """Send from `checkpoint` (0: from scratch), counts back to 0, `ahead` kept settled."""
        ...

    def checkpoint(
        self,
        file_id: int,
        checkpoint: int,
        sent: int,
        rejected: int,
        dropped: int,
        ahead: Sequence[tuple[int, int]] = (),
        points: tuple[int, int] | None = None,
        written: Callable[[], None] | None = None,
    ) -> None:
        """The settled prefix, the ranges settled beyond it and the counts (with delta's
        data points sent and skipped), in one write; `written` is called (from any thread)
        once they, or newer values of the file, are in the journal (SQLite: before this
        returns; PostgreSQL: once its checkpoint thread wrote them)."""
        ...

    def finish(self, file_id: int, state: FileState, reason: str | None = None) -> None:
        """Move to a final state (TRANSITIONS says from which), with finished_at."""
        ...

    # --- `retry` -------------------------------------------------------------------------
    def request_retry(self, record: FileRecord, size: int, mtime_ns: int) -> FileRecord:
        """A new COMPLETE record of record's path with retry = 1: sent whole."""
        ...

    # --- RPI's post-execution calls (rpicalls.py) -----------------------------------------
    def store_rpi_call(self, body: str) -> bool:
        """Keep a call (its JSON text); False when the same text is kept already."""
        ...

    def rpi_calls_since(self, since: float) -> list[tuple[float, str]]:
        """(received_at, body) of calls received at or after `since`, oldest first; older
        ones are deleted."""
        ...

    def prune_rpi_calls(self, before: float, keep: int) -> None:
        """Delete calls received before `before`, and all but the newest `keep`."""
        ...

    # --- the state directory's health -----------------------------------------------------
    def note_writable(self) -> None:
        """A real, small write: raises JournalError while the journal cannot take one."""
        ...


@runtime_checkable
class SharedRejects(Protocol):
    """A journal shared by a pair (pgjournal.py) keeps every rejected row too, so that the
    rejects file of whichever daemon finishes a file lists the rows both rejected. Called in
    the state writer's thread (settlement.py), a row stored before the checkpoint that counts
    it; raises JournalError (LeaseLostError) as the other writes."""

    def store_rejects(self, file_id: int, rows: Sequence[tuple[int, list[str], str]]) -> None:
        """(line number, cells, reason) of rows rejected; one rejected again is kept once."""
        ...

    def rejects_of(self, file_id: int) -> list[tuple[int, list[str], str]]:
        """Every row of the file rejected, by either daemon, in line order."""
        ...
