"""The status page's document (statusdoc.py), assembled from its inputs (statusinputs.py):
the file being sent, the files waiting and why, those needing attention with the command
that retries them, the recent files and the rate history; the daemon's checks come from
statuschecks.py. No I/O and no clock: `now` is given. File names and counts only.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from .config import BASE_ENV
from .fileorder import APPEND, UPSERT, FileInfo, blocking_upsert, queue_key
from .filestates import FileState
from .logs import display_name, iso_utc
from .progress import ProgressSnapshot, format_duration, plural
from .ratehistory import HISTORY_STEP_S, HISTORY_STEPS
from .statuschecks import daemon_state
from .statusdoc import (
    SCHEMA_VERSION,
    Attention,
    AttentionList,
    RateHistory,
    RatePoint,
    RecentFile,
    RecentPage,
    Sending,
    StatusDocument,
    Waiting,
    Waitlist,
)
from .statusinputs import (
    PAGE_SIZE,
    RECENT_S,
    WAITING_SHOWN,
    ActiveFile,
    JournalView,
    Live,
    Setup,
    time_text,
    where,
)

if TYPE_CHECKING:
    from .journal import FileRecord


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
        **where(active.record, setup),
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
        started_at=time_text(active.record.started_at),
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
    it back (the same words as the log's); then the files still being written."""
    records = [r for r in view.queued if r.id != active_id]
    infos = {r.id: _info(r, setup) for r in view.unfinished + records}
    records.sort(key=lambda r: queue_key(infos[r.id]))
    writing = [r for r in view.unfinished if r.state == FileState.SEEN]
    shown: list[Waiting] = []
    for position, record in enumerate([*records, *writing][:WAITING_SHOWN], 1):
        info = infos[record.id]
        reason = display_name(record.reason) if record.reason else None
        if record.state == FileState.SEEN:
            reason = reason or (
                f"still being written: it joins the queue once unchanged for"
                f" {format_duration(setup.settle_s)} (watch.settle_seconds)"
            )
        elif info.mode == APPEND:
            reason = _append_held(info, view, setup, infos, now) or reason
        shown.append(
            Waiting(
                **where(record, setup),
                position=position,
                mode=info.mode,
                state=record.state,
                completed_at=time_text(record.completed_at),
                reason=reason,
            )
        )
    return Waitlist(total=len(records) + len(writing), files=shown)


def _append_held(
    append: FileInfo, view: JournalView, setup: Setup, infos: dict[int, FileInfo], now: float
) -> str | None:
    """What holds an append file back: an upsert file seen no later, or the delay after
    the last upsert file sent."""
    unfinished = {r.id: r for r in view.unfinished}
    upserts = [infos[i] for i in unfinished if i != append.id and infos[i].mode == UPSERT]
    blocker = blocking_upsert(append, upserts)
    if blocker is not None:
        state = unfinished[blocker.id].state
        doing = {FileState.SEEN: "still being written", FileState.SENDING: "being sent"}.get(
            state, "queued"
        )
        return (
            f"waits for the upsert file {display_name(blocker.rel_path)} ({doing}), seen no"
            " later than it: Braze ignores update-only rows for users it does not have yet"
        )
    ready_at = (view.last_upsert_sent_at or 0.0) + setup.append_delay_s
    if view.last_upsert_sent_at is not None and now < ready_at:
        return (
            f"waits {format_duration(ready_at - now)} more after the last upsert file sent"
            " (braze.append_delay_seconds): Braze may take a moment to create its users"
        )
    return None


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
        # The file being sent's, so far (live); the others' as checkpointed or recorded.
        points = view.points.get(r.id)
        if active is not None and active.record.id == r.id and active.points is not None:
            points = active.points
        files.append(
            RecentFile(
                **where(r, setup),
                state=r.state,
                rows_total=r.rows_total,
                rows_sent=r.rows_sent,
                rows_rejected=r.rows_rejected,
                fields_dropped=r.fields_dropped,
                data_points_sent=points[0] if points else None,
                data_points_skipped=points[1] if points else None,
                first_seen_at=iso_utc(r.first_seen_at),
                started_at=time_text(r.started_at),
                finished_at=time_text(r.finished_at),
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
    """One line that works pasted into any shell, from any folder."""
    words = [setup.program, "retry", "--config", setup.config_path]
    if not setup.state_directory_in_yaml:
        words += ["--state-directory", setup.state_directory]
    if dry_run:
        words.append("--dry-run")
    command = shlex.join([*map(display_name, words), display_name(rel_path)])
    if setup.export_folder is None:
        return command
    # An assignment before the command (quoted whole, it would be taken for a command).
    return f"{BASE_ENV}={shlex.quote(display_name(setup.export_folder))} {command}"


def attention(view: JournalView, setup: Setup, dry_run: bool) -> AttentionList:
    files = []
    for r in view.attention:
        failed = r.state == FileState.FAILED
        rows = plural(r.rows_rejected, "row")
        reason = (
            r.reason
            if failed and r.reason
            else f"{r.rows_rejected:,} {rows} rejected by the mapping or by Braze"
        )
        rejects = f"{setup.state_directory}/rejects/{r.rel_path}.rejects.csv"
        files.append(
            Attention(
                **where(r, setup),
                state=r.state,
                problem="failed" if failed else "partly rejected",
                reason=display_name(reason),
                rows_sent=r.rows_sent,
                rows_rejected=r.rows_rejected,
                finished_at=time_text(r.finished_at),
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
