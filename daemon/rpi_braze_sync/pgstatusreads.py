"""The status page's reads (statusreads.StatusReads) of the PostgreSQL journal (journal.url):
the SQLite one's bounded queries (statusreads.read_recent, read_attention), on a connection
of the page's own, used only in the page's reading thread. It writes nothing and applies no
migration (the daemon's journal does).
"""

from __future__ import annotations

from .config import LoadedConfig
from .journal import FileRecord
from .pgjournal import PgJournal
from .statusreads import OpenReads, read_attention, read_recent


class PgStatusReads(PgJournal):
    def recent(self, since: float, limit: int, offset: int) -> tuple[list[FileRecord], int]:
        return read_recent(self._rows, self._records, "%s", since, limit, offset)

    def attention(self, limit: int) -> tuple[list[FileRecord], int]:
        return read_attention(self._rows, self._records, "%s", limit)


def pg_reads(config: LoadedConfig) -> OpenReads:
    def open_reads() -> PgStatusReads:
        return PgStatusReads(config, role="status page", migrate_schema=False)

    return open_reads
