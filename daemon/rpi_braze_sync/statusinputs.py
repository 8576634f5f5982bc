"""What the status page (statuspage.py) is built from: the daemon's state now (Live, gathered
on the event loop), what the journal says (JournalView, read in a thread by statusreads.py)
and what it needs of the configuration (Setup); and the parts of a file every list shows.
No I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .logs import display_name, iso_utc

if TYPE_CHECKING:
    from .journal import FileRecord
    from .ratehistory import Interval

RECENT_S = 24 * 3600.0
PAGE_SIZE = 50
WAITING_SHOWN = 50
ATTENTION_SHOWN = 20
ExportValues = Callable[[str], Mapping[str, str] | None]  # rel_path -> its path's named parts
Points = tuple[int, int]  # delta's data points: sent, skipped


@dataclass(frozen=True)
class ActiveFile:
    record: FileRecord
    reading: bool  # still inspected (hashed, counted): no row has gone yet
    rows_total: int | None
    settled: int
    sent: int
    rejected: int
    dropped: int
    rows_per_s: float | None
    points: Points | None = None  # a delta channel's, so far


@dataclass(frozen=True)
class Live:
    """The daemon's state now; times are epoch seconds."""

    now: float
    version: str
    role: str | None
    dry_run: bool
    problems: list[str]
    braze_failing_s: float
    auth_failing: bool
    auth_message: str
    last_success_at: float | None
    share_available: bool
    reloads_applied: int
    reloads_failed: int
    last_reload_ok: bool
    active: ActiveFile | None
    history: list[Interval | None]  # HISTORY_STEPS of HISTORY_STEP_S, oldest first


@dataclass(frozen=True)
class Setup:
    """What the page needs of the configuration."""

    config_path: str  # absolute
    state_directory: str  # absolute
    state_directory_in_yaml: bool  # else `retry` needs --state-directory
    program: str  # how a shell runs this daemon's command
    export_folder: str | None  # absolute, when `retry` needs it as $BASE_OUTPUT_DIRECTORY
    modes: Mapping[str, str]  # channel -> upsert or append
    append_delay_s: float
    settle_s: float
    export_values: ExportValues


@dataclass(frozen=True)
class JournalView:
    queued: list[FileRecord]  # complete or sending, in the journal's order
    unfinished: list[FileRecord]  # seen, complete or sending, of the configured channels
    last_upsert_sent_at: float | None
    recent: list[FileRecord]  # one page, newest first
    recent_total: int
    page: int
    attention: list[FileRecord]
    attention_total: int
    # record id -> delta's data points of a finished file of `recent` (deltastats.py)
    points: Mapping[int, Points] = field(default_factory=dict)

    @classmethod
    def empty(cls, page: int) -> JournalView:
        return cls([], [], None, [], 0, page, [], 0)


def time_text(epoch_s: float | None) -> str | None:
    return iso_utc(epoch_s) if epoch_s is not None else None


def where(record: FileRecord, setup: Setup) -> dict[str, Any]:
    """A file's id, path, channel, offer and workflow id, each on one line."""
    values = setup.export_values(record.rel_path) or {}
    offer, workflow = values.get("offer"), values.get("workflow_id")
    return {
        "id": record.id,
        "path": display_name(record.rel_path),
        "channel": display_name(record.channel) if record.channel is not None else None,
        "offer": display_name(offer) if offer is not None else None,
        "workflow_id": display_name(workflow) if workflow is not None else None,
    }
