"""The first-start rule, once per state directory: the files on the share when a state
directory is first used are history, never sent (unless watch.backfill); what comes after is
news. A state directory holds up to two journals, live and dry run; the second to start takes
the first one's history, so the files a dry run processed are still sent by the first live run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from .journal import FileVersion, Journal
from .sqlitejournal import SqliteJournal, journal_path

log = logging.getLogger(__name__)


def first_start_history(path: Path) -> list[FileVersion] | None:
    """What the journal at `path` recorded as pre-existing at its first start; None when it
    does not exist or never started."""
    if not path.is_file():
        return None
    journal = SqliteJournal(path, read_only=True)
    try:
        return journal.preexisting() if journal.initialized else None
    finally:
        journal.close()


def start_journal(
    journal: Journal,
    snapshot: Mapping[str, tuple[int, int]],
    *,
    dry_run: bool,
    backfill: bool,
    channel_of: Callable[[str], str | None],
    base: Path,
    state_directory: Path,
) -> bool:
    """Initialise a journal at its first start; True when `snapshot` (the share now) is
    history, False when its files are to be sent."""
    if backfill:
        journal.mark_initialized([])
        log.info("first start with watch.backfill: the %d files there will be sent", len(snapshot))
        return False
    this, other = ("dry run", "live run") if dry_run else ("live run", "dry run")
    history = first_start_history(journal_path(state_directory, not dry_run))
    if history is not None:
        journal.mark_initialized(history)
        known = {rel for rel, _, _, _ in history}
        log.info(
            "first %s on this state directory (a %s used it first): the %d files there "
            "before the %s's first start stay unsent; the %d others there now, those the %s "
            "processed included, will be sent",
            this, other, len(history), other, len(set(snapshot) - known), other,
        )  # fmt: skip
        return False
    journal.mark_initialized(
        [(rel, channel_of(rel), size, mtime) for rel, (size, mtime) in snapshot.items()]
    )
    log.info(
        "first start: %d files already in %s recorded as pre-existing and not sent "
        "(set watch.backfill: true to send them)",
        len(snapshot),
        base,
    )
    return True
