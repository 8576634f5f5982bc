"""The status page's document (statusdoc.py), assembled from what the daemon knows now (Live,
gathered on the event loop) and what the journal says (JournalView, read in a thread by
statusweb.py). No I/O and no clock: `now` is given. File names and counts only.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .fileorder import APPEND, UPSERT, FileInfo, blocking_upsert, queue_key
from .logs import display_name, iso_utc
from .progress import ProgressSnapshot, format_duration
from .ratehistory import HISTORY_STEP_S, HISTORY_STEPS, Interval
from .readiness import UNREACHABLE_AFTER_S  # as /readyz: shorter blips are "retrying"
from .statusdoc import (
    SCHEMA_VERSION,
    Attention,
    AttentionList,
    Check,
    DaemonState,
    RateHistory,
    RatePoint,
    RecentFile,
    RecentPage,
    Sending,
    StatusDocument,
    Waiting,
    Waitlist,
)

if TYPE_CHECKING:
    from .journal import FileRecord

RECENT_S = 24 * 3600.0
PAGE_SIZE = 50
WAITING_SHOWN = 50
ATTENTION_SHOWN = 20
ExportValues = Callable[[str], Mapping[str, str] | None]  # rel_path -> its path's named parts


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
    points: tuple[int, int] | None = None  # data points sent, skipped: a delta channel's


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
    modes: Mapping[str, str]  # channel -> upsert or append
    append_delay_s: float
    export_values: ExportValues


@dataclass(frozen=True)
class JournalView:
    queued: list[FileRecord]  # complete or sending, in the journal's order
    unfinished_upserts: list[FileRecord]
    last_upsert_sent_at: float | None
    recent: list[FileRecord]  # one page, newest first
    recent_total: int
    page: int
    attention: list[FileRecord]
    attention_total: int


def _time(epoch_s: float | None) -> str | None:
    return iso_utc(epoch_s) if epoch_s is not None else None


def _where(record: FileRecord, setup: Setup) -> dict[str, Any]:
    values = setup.export_values(record.rel_path) or {}
    offer, workflow = values.get("offer"), values.get("workflow_id")
    return {
        "id": record.id,
        "path": display_name(record.rel_path),
        "channel": display_name(record.channel) if record.channel is not None else None,
        "offer": display_name(offer) if offer is not None else None,
        "workflow_id": display_name(workflow) if workflow is not None else None,
    }


def daemon_state(live: Live) -> DaemonState:
    return DaemonState(
        version=live.version,
        role=live.role,
        dry_run=live.dry_run,
        ready=not live.problems,
        problems=live.problems,
        braze_reachable=_reachable(live),
        key_accepted=_key(live),
        share_available=(
            Check(ok=True, text="yes", detail="the export folder can be read")
            if live.share_available
            else Check(ok=False, text="no", detail="the export folder cannot be read: waiting")
        ),
        config_reloaded=_reloaded(live),
    )


def _since(live: Live, epoch_s: float | None) -> str:
    if epoch_s is None:
        return "no request has succeeded yet"
    return f"the last request succeeded {format_duration(live.now - epoch_s)} ago"


def _reachable(live: Live) -> Check:
    if live.dry_run:
        return Check(ok=None, text="dry run", detail="nothing is sent: bodies go to the outbox")
    failing = live.braze_failing_s
    if failing <= 0:
        ok = None if live.last_success_at is None else True
        return Check(
            ok=ok, text="yes" if ok else "not tried yet", detail=_since(live, live.last_success_at)
        )
    text = "retrying" if failing < UNREACHABLE_AFTER_S else "no"
    detail = (
        f"errors or no answer for {format_duration(failing)}; {_since(live, live.last_success_at)}"
    )
    return Check(ok=failing < UNREACHABLE_AFTER_S, text=text, detail=detail)


def _key(live: Live) -> Check:
    if live.dry_run:
        return Check(ok=None, text="dry run", detail="the key is not used in a dry run")
    if live.auth_failing:
        return Check(
            ok=False, text="no", detail=f"Braze refuses the key or URL: {live.auth_message}"
        )
    if live.last_success_at is None:
        return Check(ok=None, text="not tried yet", detail="no request has been sent yet")
    return Check(ok=True, text="yes", detail="Braze accepted the last request")


def _reloaded(live: Live) -> Check:
    counts = f"{live.reloads_applied} applied, {live.reloads_failed} refused since the start"
    if not live.last_reload_ok:
        return Check(
            ok=False,
            text="refused",
            detail=f"the last reload was refused: running on the previous configuration; see"
            f" the log ({counts})",
        )
    if not live.reloads_applied:
        return Check(
            ok=None, text="not reloaded", detail="running on the configuration read at the start"
        )
    return Check(ok=True, text="yes", detail=f"the last reload was applied ({counts})")


def sending(live: Live, setup: Setup) -> Sending | None:
    active = live.active
    if active is None:
        return None
    total, settled = active.rows_total, active.settled
    left: float | None = None
    if total is not None and settled >= total:
        left = 0.0
    elif total is not None and active.rows_per_s:
        left = (total - settled) / active.rows_per_s
    percent = round(100 * min(settled, total) / total, 1) if total else None
    if active.reading:
        text = "reading the file before sending it (hash, row count)"
    else:
        text = ProgressSnapshot(settled, total, active.rows_per_s or 0.0, left).describe()
    return Sending(
        **_where(active.record, setup),
        phase="inspecting" if active.reading else "sending",
        rows_total=total,
        rows_settled=settled,
        rows_sent=active.sent,
        rows_rejected=active.rejected,
        fields_dropped=active.dropped,
        data_points_sent=active.points[0] if active.points else None,
        data_points_skipped=active.points[1] if active.points else None,
        percent=percent,
        rows_per_s=round(active.rows_per_s, 1) if active.rows_per_s is not None else None,
        seconds_left=round(left, 1) if left is not None else None,
        started_at=_time(active.record.started_at),
        text=text,
    )


def _info(record: FileRecord, setup: Setup) -> FileInfo:
    completed = record.completed_at if record.completed_at is not None else record.first_seen_at
    mode = setup.modes.get(record.channel or "", UPSERT)
    return FileInfo(
        record.id, record.rel_path, mode, record.first_seen_at, completed, record.mtime_ns
    )


def waiting(view: JournalView, setup: Setup, now: float, active_id: int | None) -> Waitlist:
    """The queued files in the order fileorder.py sends them, each append file with what holds
    it back (the same words as the log's)."""
    records = [r for r in view.queued if r.id != active_id]
    infos = {r.id: _info(r, setup) for r in records}
    records.sort(key=lambda r: queue_key(infos[r.id]))
    upserts = {r.id: r for r in view.unfinished_upserts}
    upsert_infos = [_info(r, setup) for r in view.unfinished_upserts]
    shown: list[Waiting] = []
    for position, record in enumerate(records[:WAITING_SHOWN], 1):
        info = infos[record.id]
        reason = display_name(record.reason) if record.reason else None
        if info.mode == APPEND:
            others = [u for u in upsert_infos if u.id != info.id]
            blocker = blocking_upsert(info, others)
            ready_at = (view.last_upsert_sent_at or 0.0) + setup.append_delay_s
            if blocker is not None:
                state = upserts[blocker.id].state
                doing = {"seen": "still being written", "sending": "being sent"}.get(
                    state, "queued"
                )
                reason = (
                    f"waits for the upsert file {display_name(blocker.rel_path)} ({doing}), seen"
                    " no later than it: Braze ignores update-only rows for users it does not"
                    " have yet"
                )
            elif view.last_upsert_sent_at is not None and now < ready_at:
                reason = (
                    f"waits {format_duration(ready_at - now)} more after the last upsert file"
                    " sent (braze.append_delay_seconds): Braze may take a moment to create its"
                    " users"
                )
        shown.append(
            Waiting(
                **_where(record, setup),
                position=position,
                mode=info.mode,
                state=record.state,
                completed_at=_time(record.completed_at),
                reason=reason,
            )
        )
    return Waitlist(total=len(records), files=shown)


def _duration(record: FileRecord, now: float) -> float | None:
    if record.started_at is None:
        return None
    end = record.finished_at if record.finished_at is not None else now
    return round(max(0.0, end - record.started_at), 1)


def recent_page(
    view: JournalView, setup: Setup, now: float, active: ActiveFile | None
) -> RecentPage:
    files = []
    for r in view.recent:
        # The journal does not keep data points: known for the file being sent only.
        points = active.points if active is not None and active.record.id == r.id else None
        files.append(
            RecentFile(
                **_where(r, setup),
                state=r.state,
                rows_total=r.rows_total,
                rows_sent=r.rows_sent,
                rows_rejected=r.rows_rejected,
                fields_dropped=r.fields_dropped,
                data_points_sent=points[0] if points else None,
                data_points_skipped=points[1] if points else None,
                first_seen_at=iso_utc(r.first_seen_at),
                started_at=_time(r.started_at),
                finished_at=_time(r.finished_at),
                duration_s=_duration(r, now),
                reason=display_name(r.reason) if r.reason else None,
            )
        )
    return RecentPage(
        since=iso_utc(now - RECENT_S),
        total=view.recent_total,
        page=view.page,
        pages=max(1, -(-view.recent_total // PAGE_SIZE)),
        page_size=PAGE_SIZE,
        files=files,
    )


def retry_command(rel_path: str, setup: Setup, dry_run: bool) -> str:
    words = ["rpi-braze-sync", "retry", "--config", setup.config_path]
    if not setup.state_directory_in_yaml:
        words += ["--state-directory", setup.state_directory]
    if dry_run:
        words.append("--dry-run")
    return shlex.join([*map(display_name, words), display_name(rel_path)])


def attention(view: JournalView, setup: Setup, dry_run: bool) -> AttentionList:
    files = []
    for r in view.attention:
        failed = r.state == "failed"
        rows = "row" if r.rows_rejected == 1 else "rows"
        reason = (
            r.reason
            if failed and r.reason
            else f"{r.rows_rejected:,} {rows} rejected by the mapping or by Braze"
        )
        rejects = f"{setup.state_directory}/rejects/{r.rel_path}.rejects.csv"
        files.append(
            Attention(
                **_where(r, setup),
                state=r.state,
                problem="failed" if failed else "partly rejected",
                reason=display_name(reason),
                rows_sent=r.rows_sent,
                rows_rejected=r.rows_rejected,
                finished_at=_time(r.finished_at),
                retry_command=retry_command(r.rel_path, setup, dry_run),
                rejects_path=display_name(rejects) if r.rows_rejected else None,
            )
        )
    return AttentionList(total=view.attention_total, files=files)


def history(live: Live) -> RateHistory:
    points = [
        RatePoint(
            at=iso_utc(live.now - (HISTORY_STEPS - 1 - k) * HISTORY_STEP_S),
            rows=v.rows if v else None,
            rows_per_s=v.rows_per_s if v else None,
        )
        for k, v in enumerate(live.history)
    ]
    return RateHistory(step_s=HISTORY_STEP_S, points=points)


def build(live: Live, view: JournalView, setup: Setup) -> StatusDocument:
    active_id = live.active.record.id if live.active else None
    return StatusDocument(
        schema_version=SCHEMA_VERSION,
        generated_at=iso_utc(live.now),
        daemon=daemon_state(live),
        sending=sending(live, setup),
        waiting=waiting(view, setup, live.now, active_id),
        attention=attention(view, setup, live.dry_run),
        recent=recent_page(view, setup, live.now, live.active),
        rows_per_s=history(live),
    )
