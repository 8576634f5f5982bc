"""`status` and the journal `status` and `retry` use: the one the configuration selects
(`braze.dry_run`, or `--dry-run`), and the other one too when it exists.

The JSON document (`status --json`) is described in the README; its shape changes only with
`schema_version`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import deltastats
from .config import LoadedConfig, load_config
from .deltastats import FilePoints, by_file, recent_totals
from .errors import InputMissingError, RpiBrazeSyncError, error_lines, exit_status
from .filestates import FileState
from .journal import FileRecord, Journal
from .logs import display_name, iso_utc
from .progress import plural
from .sqlitejournal import SqliteJournal, journal_path

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class JournalChoice:
    path: Path
    dry_run: bool
    in_use: bool  # the one the configuration (or --dry-run) selects
    url: str | None = None  # journal.url: the pair's PostgreSQL journal, not `path`

    @property
    def shown(self) -> str:
        if self.url is None:
            return str(self.path)
        from .pgconnect import shown_url

        return f"postgresql://{shown_url(self.url)}"


def open_journal(config: LoadedConfig, choice: JournalChoice, read_only: bool = False) -> Journal:
    """The journal `choice` names: SQLite, or the pair's PostgreSQL journal (either machine
    reads it, and queues retries in it, whichever daemon leads)."""
    if choice.url is None:
        return SqliteJournal(choice.path, read_only=read_only)
    from .pgjournal import PgJournal  # psycopg only where journal.url asks for it

    role = "status" if read_only else "retry"
    return PgJournal(config, role, migrate_schema=False)


def load_for_journal(args: argparse.Namespace) -> LoadedConfig:
    """The configuration as it stands in the file (braze.dry_run counts), without secrets:
    only the journal is read, so a live configuration needs no API key here."""
    return load_config(args.config, state_directory=args.state_directory, secrets=False)


def journal_in_use(config: LoadedConfig, dry_run_flag: bool) -> JournalChoice:
    """The journal the daemon writes with this configuration; `--dry-run` only overrides."""
    dry_run = dry_run_flag or config.dry_run
    return JournalChoice(journal_path(config.state_directory, dry_run), dry_run, True)


def existing_journals(config: LoadedConfig, dry_run_flag: bool) -> list[JournalChoice]:
    """The journal in use first, then the other mode's when it exists; InputMissingError
    when the one in use does not exist."""
    if config.journal_url is not None and not dry_run_flag:
        url = config.journal_url
        return [JournalChoice(config.state_directory / "journal.postgresql", False, True, url)]
    chosen = journal_in_use(config, dry_run_flag)
    other_dry_run = not chosen.dry_run
    other = JournalChoice(journal_path(config.state_directory, other_dry_run), other_dry_run, False)
    if not chosen.path.exists():
        hint = ""
        if other.path.exists():
            hint = f"; the {_mode(other)} journal exists: " + (
                "add --dry-run" if other.dry_run else "this configuration is a dry run"
            )
        raise InputMissingError(
            f"no {_mode(chosen)} journal at {chosen.path}: the daemon has not run in that mode"
            f" with this state directory{hint}"
        )
    return [chosen, other] if other.path.exists() else [chosen]


def _mode(choice: JournalChoice) -> str:
    return "dry-run" if choice.dry_run else "live"


def _time(epoch_s: float | None) -> str | None:
    return iso_utc(epoch_s) if epoch_s is not None else None


def percent_settled(record: FileRecord) -> float | None:
    """Share of the file's rows acknowledged or rejected; None when its size is unknown."""
    if record.state == FileState.DONE:
        return 100.0
    if not record.rows_total:
        return None
    return round(100 * min(record.checkpoint, record.rows_total) / record.rows_total, 1)


def file_entry(record: FileRecord, points: FilePoints | None = None) -> dict[str, Any]:
    """`points`: delta's data points of the file (deltastats.py), when delta sent it."""
    return {
        "id": record.id,
        "path": display_name(record.rel_path),  # one line; bytes not UTF-8 as \xNN
        "channel": record.channel,
        "state": record.state,
        "rows_total": record.rows_total,
        "rows_settled": record.checkpoint,
        "rows_sent": record.rows_sent,
        "rows_rejected": record.rows_rejected,
        "fields_dropped": record.fields_dropped,
        "data_points_sent": points.sent if points is not None else None,
        "data_points_skipped": points.skipped if points is not None else None,
        "percent": percent_settled(record),
        "reason": display_name(record.reason) if record.reason is not None else None,
        "retry": bool(record.retry),
        "first_seen_at": _time(record.first_seen_at),
        "completed_at": _time(record.completed_at),
        "started_at": _time(record.started_at),
        "finished_at": _time(record.finished_at),
        "updated_at": _time(record.updated_at),
        "gone_at": _time(record.gone_at),
    }


def totals(records: list[FileRecord]) -> dict[str, Any]:
    by_state: dict[str, int] = {}
    for record in records:
        state = str(record.state)  # (orjson takes only str keys, not a str Enum)
        by_state[state] = by_state.get(state, 0) + 1
    return {
        "files": len(records),
        "by_state": by_state,
        "rows_sent": sum(r.rows_sent for r in records),
        "rows_rejected": sum(r.rows_rejected for r in records),
        "fields_dropped": sum(r.fields_dropped for r in records),
    }


def latest_attempts(records: list[FileRecord]) -> list[FileRecord]:
    """One record per file version: a version `retry` queued again (a new record, retry=1,
    after the file's previous record) stands for the attempts before it, which are left out:
    an operator asks how the file stands now, and its rows would be counted twice. The status
    page's bounded reads apply the same rule in SQL (statusreads.LATEST_ATTEMPT)."""
    kept: list[FileRecord | None] = []
    last_of: dict[str, int] = {}  # rel_path -> position in `kept` of its latest record
    for record in sorted(records, key=lambda r: r.id):
        before = last_of.get(record.rel_path)
        if record.retry and before is not None:
            kept[before] = None
        last_of[record.rel_path] = len(kept)
        kept.append(record)
    return [r for r in kept if r is not None]


def read_journal(
    config: LoadedConfig, choice: JournalChoice, states: list[str] | None
) -> list[FileRecord]:
    journal = open_journal(config, choice, read_only=True)
    try:
        records = latest_attempts(journal.all())
    finally:
        journal.close()
    return [r for r in records if states is None or r.state in states]


PointsByFile = dict[tuple[int, str], FilePoints]


def _points_of(choice: JournalChoice, points: PointsByFile) -> PointsByFile:
    return {} if choice.dry_run else points  # delta is off in a dry run


def points_of(record: FileRecord, known: PointsByFile) -> FilePoints | None:
    """A file's data points: the journal's (checkpointed with its rows: every process's, and
    either daemon's of a pair), else files.jsonl's (written by an earlier version)."""
    if record.points_sent is not None:
        at = record.finished_at if record.finished_at is not None else record.updated_at
        skipped = record.points_skipped or 0
        return FilePoints(record.id, record.rel_path, record.channel or "", record.points_sent,
                          skipped, at)  # fmt: skip
    return known.get((record.id, record.rel_path))


def build_document(
    config: LoadedConfig,
    journals: list[tuple[JournalChoice, list[FileRecord]]],
    delta: list[FilePoints] | None = None,
) -> dict[str, Any]:
    entries = delta or []
    points = by_file(entries)
    sent, skipped = recent_totals(entries, time.time())
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso_utc(time.time()),
        "config": str(config.path),
        "state_directory": str(config.state_directory),
        "journals": [
            {
                "mode": _mode(choice),
                "path": choice.shown,
                "in_use": choice.in_use,
                "totals": totals(records),
                "files": [file_entry(r, points_of(r, _points_of(choice, points))) for r in records],
            }
            for choice, records in journals
        ],
        "delta_last_30_days": {"data_points_sent": sent, "data_points_skipped": skipped},
    }


def render_text(
    journals: list[tuple[JournalChoice, list[FileRecord]]], delta: list[FilePoints] | None = None
) -> str:
    out: list[str] = []
    all_points = by_file(delta or [])
    for choice, records in journals:
        points = _points_of(choice, all_points)
        used = "this configuration's" if choice.in_use else "not this configuration's"
        out.append(f"{_mode(choice)} journal {choice.shown} ({used})")
        out.append(
            f"{'STATE':<11} {'ROWS':>10} {'DONE':>6} {'SENT':>10} {'REJECTED':>9} {'DROPPED':>8}"
            f"  {'UPDATED (UTC)':<20}  FILE"
        )
        for r in records:
            share = percent_settled(r)
            rows = f"{r.rows_total:,}" if r.rows_total is not None else "-"
            done = f"{share:.0f}%" if share is not None else "-"
            updated = iso_utc(r.updated_at)[:19] + "Z"
            out.append(
                f"{r.state:<11} {rows:>10} {done:>6} {r.rows_sent:>10,} {r.rows_rejected:>9,}"
                f" {r.fields_dropped:>8,}  {updated:<20}  {display_name(r.rel_path)}"
            )
            if r.reason:
                out.append(f"{'':<11} reason: {display_name(r.reason)}")
            saved = points_of(r, points)
            if saved is not None:
                out.append(
                    f"{'':<11} delta: {saved.sent:,} data points sent, {saved.skipped:,} skipped"
                )
        total = totals(records)
        states = ", ".join(f"{n} {s}" for s, n in sorted(total["by_state"].items()))
        files = plural(total["files"], "file")
        out.append(
            f"{total['files']} {files}{': ' + states if states else ''}; {total['rows_sent']:,}"
            f" rows sent, {total['rows_rejected']:,} rejected, {total['fields_dropped']:,}"
            " fields dropped"
        )
        out.append("")
    if delta:
        sent, skipped = recent_totals(delta, time.time())
        out.append(f"delta, last 30 days: {sent:,} data points sent, {skipped:,} skipped\n")
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        config = load_for_journal(args)
        chosen = existing_journals(config, args.dry_run)
        journals = [(choice, read_journal(config, choice, args.state)) for choice in chosen]
        delta = deltastats.read(config.state_directory)
    except RpiBrazeSyncError as exc:
        if not args.json:
            raise
        lines = error_lines(exc)
        error = {"message": "; ".join(lines), "problems": lines, "exit_status": exit_status(exc)}
        sys.stdout.write(orjson.dumps({"error": error}).decode() + "\n")
        return exit_status(exc)
    if args.json:
        document = build_document(config, journals, delta)
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_text(journals, delta))
    return 0
