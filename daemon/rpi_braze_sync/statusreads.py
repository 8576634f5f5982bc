"""The status page's reads of the journal, off the event loop: one thread of its own with a
read-only connection of its own, bounded queries (one page of recent files, the newest
version of the paths needing attention), and what was read kept for CACHE_S, so that ten
open pages cost one read and a big journal never stalls sending. Delta's data points of the
finished files come from <state>/delta/files.jsonl, read as it grows (deltastats.Follower).

StatusReads is what the page needs of a journal; SqliteStatusReads gives it for the SQLite
journal (another journal gives it beside its own reads).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from .deltastats import Follower
from .filestates import FileState
from .journal import FileRecord
from .sqlitejournal import SqliteJournal
from .statusinputs import ATTENTION_SHOWN, PAGE_SIZE, RECENT_S, JournalView

CACHE_S = 1.0

# status.latest_attempts' rule, in SQL for a bounded page: a record whose next record of the
# same path was queued again by `retry` (retry = 1) is left out, the retry standing for it; a
# file that changed on the share (a new record, retry = 0) keeps its own entry. Two index
# look-ups per record (files_by_path).
LATEST_ATTEMPT = (
    "NOT EXISTS (SELECT 1 FROM files AS later WHERE later.rel_path = files.rel_path"
    " AND later.retry = 1 AND later.id = (SELECT MIN(other.id) FROM files AS other"
    " WHERE other.rel_path = files.rel_path AND other.id > files.id))"
)


class StatusReads(Protocol):
    def queued(self, after_id: int = 0) -> list[FileRecord]: ...
    def unfinished(self, channels: Sequence[str]) -> list[FileRecord]: ...
    def last_sent_at(self, channels: Sequence[str]) -> float | None: ...

    def recent(self, since: float, limit: int, offset: int) -> tuple[list[FileRecord], int]:
        """Records (not PREEXISTING) updated since `since`, newest first, and their number:
        one per file version, with its latest attempt (LATEST_ATTEMPT)."""
        ...

    def attention(self, limit: int) -> tuple[list[FileRecord], int]:
        """The newest record of each path when it is FAILED, or DONE with rows rejected;
        newest first, and their number."""
        ...

    def close(self) -> None: ...


Rows = Callable[[str, tuple[object, ...]], list[Any]]
Records = Callable[[str, tuple[object, ...]], Iterator[FileRecord]]


def read_recent(
    rows: Rows, records: Records, mark: str, since: float, limit: int, offset: int
) -> tuple[list[FileRecord], int]:
    """StatusReads.recent, on either journal: `rows` and `records` are its reads, `mark` its
    driver's placeholder (? for sqlite3, %s for psycopg)."""
    where = f"WHERE state <> {mark} AND updated_at >= {mark} AND {LATEST_ATTEMPT}"
    args = (FileState.PREEXISTING, since)
    ((total,),) = rows(f"SELECT COUNT(*) FROM files {where}", args)
    page = records(f"{where} ORDER BY id DESC LIMIT {mark} OFFSET {mark}", (*args, limit, offset))
    return list(page), int(total)


def read_attention(
    rows: Rows, records: Records, mark: str, limit: int
) -> tuple[list[FileRecord], int]:
    """StatusReads.attention, on either journal (as read_recent)."""
    # The few failed or rejecting versions first (files_by_state), then no newer version
    # of the same path (files_by_path): a few milliseconds with 10,000 files.
    where = (
        f"WHERE (state = {mark} OR (state = {mark} AND rows_rejected > 0)) AND NOT EXISTS"
        " (SELECT 1 FROM files AS newer WHERE newer.rel_path = files.rel_path"
        " AND newer.id > files.id)"
    )
    args = (FileState.FAILED, FileState.DONE)
    ((total,),) = rows(f"SELECT COUNT(*) FROM files {where}", args)
    newest = records(f"{where} ORDER BY id DESC LIMIT {mark}", (*args, limit))
    return list(newest), int(total)


class SqliteStatusReads(SqliteJournal):
    def recent(self, since: float, limit: int, offset: int) -> tuple[list[FileRecord], int]:
        return read_recent(self._read, self._records, "?", since, limit, offset)

    def attention(self, limit: int) -> tuple[list[FileRecord], int]:
        return read_attention(self._read, self._records, "?", limit)


OpenReads = Callable[[], StatusReads | None]  # called in the reading thread; None: not yet


def sqlite_reads(path: Path) -> OpenReads:
    """Opens the SQLite journal read-only once it exists (the daemon creates it just after
    its HTTP server starts)."""

    def open_reads() -> StatusReads | None:
        return SqliteStatusReads(path, read_only=True) if path.exists() else None

    return open_reads


class PageReader:
    """Runs the reads in one thread of its own: the connection is opened and used there."""

    def __init__(self, open_reads: OpenReads, points: Follower | None = None) -> None:
        self._open = open_reads
        self._points = points
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="status-journal")
        self._reads: StatusReads | None = None
        self._cache: dict[tuple[object, ...], tuple[float, JournalView]] = {}

    async def view(
        self, page: int, channels: tuple[str, ...], upserts: tuple[str, ...]
    ) -> JournalView:
        key = (page, channels, upserts)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        loop = asyncio.get_running_loop()
        view = await loop.run_in_executor(self._executor, self._read, page, channels, upserts)
        self._cache = {key: (time.monotonic(), view)}
        return view

    def _read(self, page: int, channels: tuple[str, ...], upserts: tuple[str, ...]) -> JournalView:
        if self._reads is None:
            self._reads = self._open()
            if self._reads is None:
                return JournalView.empty(page)
        reads, now = self._reads, time.time()
        recent, total = reads.recent(now - RECENT_S, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        known = self._points.points(now) if self._points is not None else {}
        points: dict[int, tuple[int, int]] = {}
        for r in recent:  # the journal's (every process's, either daemon's), else files.jsonl's
            if r.points_sent is not None:
                points[r.id] = (r.points_sent, r.points_skipped or 0)
            elif (entry := known.get((r.id, r.rel_path))) is not None:
                points[r.id] = (entry.sent, entry.skipped)
        attention, attention_total = reads.attention(ATTENTION_SHOWN)
        return JournalView(
            queued=reads.queued(),
            unfinished=reads.unfinished(channels) if channels else [],
            last_upsert_sent_at=reads.last_sent_at(upserts) if upserts else None,
            recent=recent,
            recent_total=total,
            page=page,
            attention=attention,
            attention_total=attention_total,
            points=points,
        )

    def close(self) -> None:
        """From a thread other than the loop's (it waits for a read in progress)."""
        reads, self._reads = self._reads, None
        if reads is not None:
            self._executor.submit(reads.close).result()
        self._executor.shutdown(wait=True)
