"""The status page's reads (statusreads.StatusReads) of the PostgreSQL journal (journal.url):
the SQLite one's bounded queries, on a connection of the page's own, used only in the page's
reading thread. It writes nothing and applies no migration (the daemon's journal does).
"""

from __future__ import annotations

from .config import LoadedConfig
from .filestates import FileState
from .journal import FileRecord
from .pgjournal import PgJournal
from .statusreads import LATEST_ATTEMPT, OpenReads


class PgStatusReads(PgJournal):
    def recent(self, since: float, limit: int, offset: int) -> tuple[list[FileRecord], int]:
        where = f"WHERE state <> %s AND updated_at >= %s AND {LATEST_ATTEMPT}"
        args = (FileState.PREEXISTING, since)
        ((total,),) = self._rows(f"SELECT COUNT(*) FROM files {where}", args)
        page = self._records(f"{where} ORDER BY id DESC LIMIT %s OFFSET %s", (*args, limit, offset))
        return list(page), int(total)

    def attention(self, limit: int) -> tuple[list[FileRecord], int]:
        where = (
            "WHERE (state = %s OR (state = %s AND rows_rejected > 0)) AND NOT EXISTS (SELECT 1"
            " FROM files AS newer WHERE newer.rel_path = files.rel_path AND newer.id > files.id)"
        )
        args = (FileState.FAILED, FileState.DONE)
        ((total,),) = self._rows(f"SELECT COUNT(*) FROM files {where}", args)
        newest = self._records(f"{where} ORDER BY id DESC LIMIT %s", (*args, limit))
        return list(newest), int(total)


def pg_reads(config: LoadedConfig) -> OpenReads:
    def open_reads() -> PgStatusReads:
        return PgStatusReads(config, role="status page", migrate_schema=False)

    return open_reads
