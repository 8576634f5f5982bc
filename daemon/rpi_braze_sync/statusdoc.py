"""Pure: the shape of `GET /status.json` (and of the data the status page shows), as pydantic
models: the single source of config/status.schema.json. Its shape changes only with
`schema_version`.

File names and counts only: no field holds a row's values.
`python -m rpi_braze_sync.statusdoc > config/status.schema.json` writes the schema.
"""

from __future__ import annotations

import sys
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Model):
    """One of the daemon's conditions, in words (the page never says it by colour alone)."""

    ok: bool | None = Field(description="null: does not apply now (a dry run, nothing tried yet)")
    text: str = Field(description="the state in a word or two: yes, no, retrying, dry run…")
    detail: str = Field(description="one sentence: since when, why, what to do")


class DaemonState(_Model):
    version: str
    role: str | None = Field(
        description="the role in a high-availability pair; null where the daemon runs alone"
    )
    dry_run: bool
    ready: bool = Field(description="what /readyz answers: true when `problems` is empty")
    problems: list[str] = Field(description="what keeps the daemon from being ready")
    braze_reachable: Check
    key_accepted: Check
    share_available: Check
    config_reloaded: Check


class DataPoints(_Model):
    data_points_sent: int | None = Field(
        None,
        description="Braze data points sent by delta for the whole file (so far while it is"
        " sent), checkpointed in the journal with its rows (every process's, either daemon's"
        " of a pair); null where delta did not count them (off, a dry run, nothing sent)",
    )
    data_points_skipped: int | None = Field(
        None, description="data points left out as unchanged (delta); null where not counted"
    )


class ExportWhere(_Model):
    id: int = Field(description="the journal record (a file version)")
    path: str = Field(description="relative to the export folder, on one line")
    channel: str | None
    offer: str | None = Field(description="the path's {offer} part, when the pattern has one")
    workflow_id: str | None = Field(description="the path's {workflow_id} part, when there is one")


class Sending(ExportWhere, DataPoints):
    """The file being sent now."""

    phase: Literal["inspecting", "sending"] = Field(
        description="inspecting: hashed and counted before its first row goes"
    )
    rows_total: int | None = Field(description="the file's data rows; null until counted")
    rows_settled: int = Field(description="rows acknowledged by Braze or rejected, from row 1")
    rows_sent: int = Field(description="in this send (a resumed file counts from its resumption)")
    rows_rejected: int
    fields_dropped: int
    percent: float | None = Field(description="rows_settled / rows_total, one decimal")
    rows_per_s: float | None = Field(description="over the last half minute; null at first")
    seconds_left: float | None = Field(description="at that rate; null when nothing moves")
    started_at: str | None
    text: str = Field(description="the progress in words, as the log's progress lines say it")


class Waiting(ExportWhere):
    position: int = Field(
        description="in the queue (the order files became complete); an append file held back"
        " lets the files after it go"
    )
    mode: str = Field(description="upsert or append (its channel's mode)")
    state: str = Field(
        description="complete; sending: interrupted, resumes first; seen: still being written"
        " (listed after the queued files)"
    )
    completed_at: str | None
    reason: str | None = Field(description="why it waits, when it is not simply its turn")


class Waitlist(_Model):
    total: int
    files: list[Waiting] = Field(description="the first ones, in the order they will go")


class Outcome(ExportWhere):
    state: str = Field(description="seen, complete, sending, done, failed or vanished")
    rows_sent: int
    rows_rejected: int
    finished_at: str | None


class RecentFile(Outcome, DataPoints):
    rows_total: int | None
    fields_dropped: int
    first_seen_at: str
    started_at: str | None
    duration_s: float | None = Field(description="from its first row to done, or until now")
    reason: str | None


class RecentPage(_Model):
    """Files seen or finished in the last 24 hours, newest first, a page at a time."""

    since: str
    total: int
    page: int = Field(description="1-based; `?page=N` asks for another")
    pages: int
    page_size: int
    files: list[RecentFile]


class Attention(Outcome):
    """A file whose latest version failed, or was sent with rows rejected."""

    problem: Literal["failed", "partly rejected"]
    reason: str
    retry_command: str = Field(description="sends it again, whole; for a shell on this machine")
    rejects_path: str | None = Field(description="the rejected rows and why; null when none")


class AttentionList(_Model):
    total: int
    files: list[Attention] = Field(description="the newest first")


class RatePoint(_Model):
    at: str = Field(description="the end of the interval")
    rows: int | None = Field(description="rows settled in it; null before the start")
    rows_per_s: float | None = Field(description="rows settled per second; null before the start")


class RateHistory(_Model):
    step_s: int
    points: list[RatePoint] = Field(description="the last hour, oldest first")


class StatusDocument(_Model):
    schema_version: Literal[1]
    generated_at: str
    daemon: DaemonState
    sending: Sending | None
    waiting: Waitlist
    attention: AttentionList
    recent: RecentPage
    rows_per_s: RateHistory


def json_schema() -> dict[str, object]:
    return {
        **StatusDocument.model_json_schema(),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rpi-braze-sync GET /status.json",
    }


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
