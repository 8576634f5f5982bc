"""GET / and GET /status.json on the daemon's real HTTP server, over real HTTP, from a real
journal (SQLite, and PostgreSQL on a database of the test's own): who may read them (loopback
without a token, the token when one is set, the other routes unchanged), what they say of
queued, failed and recent files, and the schema file in config/.

A caller that is not on loopback cannot be had here without leaving the machine: a test-only
middleware gives a request another address (192.0.2.10, a documentation address) when it
carries X-Test-Remote, and the page's own check does the rest.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest
import yaml
from aiohttp import web

from rpi_braze_sync import deltastats, statusreads
from rpi_braze_sync.app import Daemon
from rpi_braze_sync.config import load_config
from rpi_braze_sync.filestates import FileState
from rpi_braze_sync.journal import Journal
from rpi_braze_sync.pgjournal import PgJournal
from rpi_braze_sync.server import build_app, start_server
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from rpi_braze_sync.statusdoc import StatusDocument, json_schema
from rpi_braze_sync.statusweb import StatusPage, add_status_page
from tests.e2e.conftest import APPEND, ROOT, SHIPPED_CONFIG, UPSERT, free_port, wait_until
from tests.fakebraze import API_KEY, FakeBraze
from tests.integration.test_pipeline import InProcess

TOKEN = "page-token-81f3"
ELSEWHERE = {"X-Test-Remote": "192.0.2.10"}
Get = Callable[..., Awaitable[tuple[int, dict[str, str], str]]]


@web.middleware
async def remote_from_header(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    remote = request.headers.get("X-Test-Remote")
    return await handler(request.clone(remote=remote) if remote else request)


def config_file(tmp: Path, token: bool, journal_url: str | None, live: bool = False) -> Path:
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["watch"]["base_output_directory"] = str(tmp / "exports")
    config["state_directory"] = str(tmp / "state")
    if token:
        config["status_page"] = {"token_env": "STATUS_PAGE_TOKEN"}
    if journal_url:  # a live run (a dry run keeps its SQLite journal)
        config["journal"] = {"url": journal_url}
        config["braze"]["dry_run"] = False
    if live:
        config["braze"]["dry_run"] = False
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def serving(
    tmp: Path, token: bool, journal_url: str | None = None, live: bool = False
) -> AsyncIterator[Get]:
    env = {"STATUS_PAGE_TOKEN": TOKEN, "BRAZE_API_KEY": API_KEY}
    dry_run = not (journal_url or live)
    config = load_config(config_file(tmp, token, journal_url, live), env, dry_run=dry_run)
    daemon = Daemon(config)
    app = build_app(daemon.metrics, daemon.readiness.problems)
    app.middlewares.append(remote_from_header)
    add_status_page(app, daemon)
    port = free_port()
    server = await start_server(app, f"127.0.0.1:{port}")

    async def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as answer,
        ):
            return answer.status, answer.headers, await answer.text()

    try:
        yield get
    finally:
        await server.cleanup()


@pytest.fixture
async def open_page(tmp_path: Path) -> AsyncIterator[Get]:
    async for get in serving(tmp_path, token=False):
        yield get


@pytest.fixture
async def token_page(tmp_path: Path) -> AsyncIterator[Get]:
    async for get in serving(tmp_path, token=True):
        yield get


async def test_without_a_token_loopback_only_and_the_other_routes_unchanged(
    open_page: Get,
) -> None:
    status, headers, html = await open_page("/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'sha256-" in headers["Content-Security-Policy"]
    assert "<h1>rpi-braze-sync</h1>" in html
    assert 'id="progress"' in html
    status, headers, body = await open_page("/status.json")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    StatusDocument.model_validate_json(body)
    for path in ("/", "/status.json"):
        status, _, text = await open_page(path, ELSEWHERE)
        assert status == 403
        assert "loopback" in text
        status, _, _ = await open_page(f"{path}?token=anything", ELSEWHERE)
        assert status == 403
    for path in ("/metrics", "/healthz"):
        assert (await open_page(path, ELSEWHERE))[0] == 200


async def test_with_a_token_it_is_needed_from_anywhere(token_page: Get) -> None:
    for path in ("/", "/status.json"):
        status, headers, _ = await token_page(path)
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert (await token_page(f"{path}?token=wrong"))[0] == 401
        assert (await token_page(path, {"Authorization": "Bearer wrong"}))[0] == 401
        assert (await token_page(path, {"Authorization": f"Bearer {TOKEN}"}))[0] == 200
        assert (await token_page(f"{path}?token={TOKEN}"))[0] == 200
        assert (await token_page(f"{path}?token={TOKEN}", ELSEWHERE))[0] == 200
        assert (await token_page(path, {**ELSEWHERE, "Authorization": f"Bearer {TOKEN}"}))[0] == 200
    for path in ("/metrics", "/healthz"):
        assert (await token_page(path, ELSEWHERE))[0] == 200  # Prometheus scrapes freely
    _, _, html = await token_page(f"/?token={TOKEN}")
    assert TOKEN not in html  # the page's script reads it from the address, never echoed


def fill_journal(journal: Journal) -> int:
    """Queued, failed, partly rejected, retried, changed and 56 done files; returns the one to
    make older."""
    try:
        journal.mark_initialized([])
        now = time.time()
        old = journal.record_complete(f"{UPSERT}/Offer/1/old.txt", UPSERT, 10, 1)
        journal.finish(old.id, FileState.DONE)
        for i in range(55):
            done = journal.record_complete(f"{UPSERT}/Offer/7/f{i}.txt", UPSERT, 10, 1)
            journal.finish(done.id, FileState.DONE)
        rejected = journal.record_complete(f"{UPSERT}/Offer/8/some bad rows.txt", UPSERT, 10, 1)
        journal.start(rejected.id, "x" * 64, 10, 1, 10)
        journal.checkpoint(rejected.id, 10, 8, 2, 0)
        journal.finish(rejected.id, FileState.DONE)
        # Queued again by `retry` twice: one entry, its latest attempt. Changed on the share:
        # each version its own entry.
        again = journal.record_complete(f"{UPSERT}/Offer/13/retried.txt", UPSERT, 10, 1)
        journal.finish(again.id, FileState.FAILED, "Braze answered 401")
        for state in (FileState.FAILED, FileState.DONE):
            again = journal.request_retry(again, 10, 1)
            journal.finish(
                again.id, state, "Braze answered 401" if state is FileState.FAILED else None
            )
        for size in (10, 11):
            changed = journal.record_complete(f"{UPSERT}/Offer/14/changed.txt", UPSERT, size, 1)
            journal.finish(changed.id, FileState.DONE)
        failed = journal.record_complete(f"{UPSERT}/Offer/9/broken.txt", UPSERT, 10, 1)
        why = "header: no external_id column; nothing was sent"
        journal.finish(failed.id, FileState.FAILED, why)
        journal.record_seen(f"{UPSERT}/Offer/10/still writing.txt", UPSERT, 5, 1, seen_at=now - 10)
        journal.record_complete(f"{APPEND}/Offer/11/append.txt", APPEND, 5, 1, completed_at=now - 5)
        journal.record_complete(f"{UPSERT}/Offer/12/next.txt", UPSERT, 5, 1, completed_at=now)
    finally:
        journal.close()
    return old.id


DAY_AGO = "UPDATE files SET finished_at = finished_at - 90000, updated_at = updated_at - 90000"


def sqlite_journal(tmp: Path) -> None:
    old = fill_journal(SqliteJournal(journal_path(tmp / "state", dry_run=True)))
    with sqlite3.connect(journal_path(tmp / "state", dry_run=True)) as db:
        db.execute(f"{DAY_AGO} WHERE id = ?", (old,))


def pg_journal(tmp: Path, url: str) -> None:
    config = load_config(config_file(tmp, False, url), {"BRAZE_API_KEY": API_KEY})
    journal = PgJournal(config)
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute("UPDATE ha_lease SET epoch = epoch + 1 RETURNING epoch").fetchone()
        assert row is not None
        journal.epoch = row[0]  # the lease, as the leader holds it
        old = fill_journal(journal)
        db.execute(f"{DAY_AGO} WHERE id = %s", (old,))


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_what_it_says_of_queued_failed_and_recent_files(
    tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    if url is None:
        sqlite_journal(tmp_path)
    else:
        pg_journal(tmp_path, url)
    async for open_page in serving(tmp_path, token=False, journal_url=url):
        await says_what_the_journal_holds(open_page, tmp_path, dry_run=url is None)


async def says_what_the_journal_holds(open_page: Get, tmp_path: Path, dry_run: bool) -> None:
    _, _, body = await open_page("/status.json")
    doc = json.loads(body)
    waiting = doc["waiting"]["files"]
    names = ["append.txt", "next.txt", "still writing.txt"]  # the one being written last
    assert [w["path"].rsplit("/", 1)[1] for w in waiting] == names
    assert waiting[0]["mode"] == "append"
    assert waiting[0]["reason"].startswith(
        f"waits for the upsert file {UPSERT}/Offer/10/still writing.txt (still being written)"
    )
    assert waiting[1]["reason"] is None
    assert waiting[2]["state"] == "seen"
    assert waiting[2]["reason"].startswith("still being written: it joins the queue once")
    attention = {a["path"].rsplit("/", 1)[1]: a for a in doc["attention"]["files"]}
    assert set(attention) == {"broken.txt", "some bad rows.txt"}
    broken, partly = attention["broken.txt"], attention["some bad rows.txt"]
    assert broken["problem"] == "failed"
    assert broken["reason"] == "header: no external_id column; nothing was sent"
    assert broken["rejects_path"] is None
    state = tmp_path / "state"
    flag = " --dry-run" if dry_run else ""
    assert broken["retry_command"] == (
        f"rpi-braze-sync retry --config {tmp_path / 'config.yaml'}{flag}"
        f" '{UPSERT}/Offer/9/broken.txt'"
    )
    assert partly["problem"] == "partly rejected"
    assert partly["reason"] == "2 rows rejected by the mapping or by Braze"
    assert (
        partly["rejects_path"] == f"{state}/rejects/{UPSERT}/Offer/8/some bad rows.txt.rejects.csv"
    )
    assert partly["offer"] == "Offer"
    assert partly["workflow_id"] == "8"
    recent = doc["recent"]
    # 63 file versions of the last 24 hours (the one finished 25 hours ago is not among them),
    # the retried one once with its latest attempt, the changed one once per version.
    assert (recent["total"], recent["pages"], len(recent["files"])) == (63, 2, 50)
    assert recent["files"][0]["path"].endswith("next.txt")
    _, _, body = await open_page("/status.json?page=2")
    second = json.loads(body)["recent"]
    assert second["page"] == 2
    assert len(second["files"]) == 13
    assert second["files"][-1]["path"].endswith("/f0.txt")
    listed = recent["files"] + second["files"]
    retried = [f for f in listed if f["path"].endswith("/retried.txt")]
    assert [f["state"] for f in retried] == ["done"]  # the attempts before it failed
    assert len([f for f in listed if f["path"].endswith("/changed.txt")]) == 2
    _, _, html = await open_page("/")
    assert "still writing.txt" in html  # the document, embedded in the page


async def test_data_points_of_finished_files_as_delta_records_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From <state>/delta/files.jsonl as the daemon appends it: a line cut short counts once
    it is whole, and a file replaced (as prune does at start) is read again."""
    monkeypatch.setattr(statusreads, "CACHE_S", 0.0)  # every request reads
    journal = SqliteJournal(journal_path(tmp_path / "state", dry_run=False))
    ids = {}
    try:
        journal.mark_initialized([])
        for name in ("a", "b", "c", "plain"):
            record = journal.record_complete(f"{UPSERT}/Offer/1/{name}.txt", UPSERT, 10, 1)
            journal.finish(record.id, FileState.DONE)
            ids[name] = record.id
    finally:
        journal.close()
    jsonl = tmp_path / "state" / "delta" / deltastats.FILE_NAME
    jsonl.parent.mkdir(parents=True)

    def line(name: str, sent: int, skipped: int) -> bytes:
        rel = f"{UPSERT}/Offer/1/{name}.txt"
        entry = deltastats.FilePoints(ids[name], rel, UPSERT, sent, skipped, time.time())
        return orjson.dumps(entry.__dict__) + b"\n"

    async def points(get: Get) -> dict[str, tuple[int | None, int | None]]:
        _, _, body = await get("/status.json")
        files = json.loads(body)["recent"]["files"]
        return {
            f["path"].rsplit("/", 1)[1][:-4]: (f["data_points_sent"], f["data_points_skipped"])
            for f in files
        }

    nothing = (None, None)
    async for get in serving(tmp_path, token=False, live=True):
        assert await points(get) == dict.fromkeys(ids, nothing)  # no delta: null
        half = line("b", 40, 960)
        jsonl.write_bytes(line("a", 1200, 3) + half[:20])
        assert await points(get) == {"a": (1200, 3), "b": nothing, "c": nothing, "plain": nothing}
        with jsonl.open("ab") as file:
            file.write(half[20:] + line("c", 7, 0))
        assert await points(get) == {"a": (1200, 3), "b": (40, 960), "c": (7, 0), "plain": nothing}
        # Replaced by a longer file that no longer has "a" and counts "c" otherwise.
        replacement = tmp_path / "state" / "delta" / "files.tmp"
        replacement.write_bytes(line("b", 40, 960) + line("c", 8, 1) * 3)
        os.replace(replacement, jsonl)
        assert await points(get) == {"a": nothing, "b": (40, 960), "c": (8, 1), "plain": nothing}


def test_the_schema_file_is_the_models_schema() -> None:
    shipped = json.loads((ROOT / "config" / "status.schema.json").read_text())
    assert shipped == json_schema(), (
        "run: python -m rpi_braze_sync.statusdoc > config/status.schema.json"
    )


async def test_a_failed_rate_sampler_is_logged_and_the_daemon_stops_cleanly(
    tmp_path: Path, fake_braze: FakeBraze, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The page's sampler is a helper task: a bug there is logged when it happens, and does
    not fail the server's cleanup at the stop (exit 0)."""

    async def broken(self: StatusPage, interval_s: float = 1.0) -> None:
        raise RuntimeError("a bug in the sampler")

    monkeypatch.setattr(StatusPage, "sample_every", broken)
    process = InProcess(tmp_path, fake_braze)
    await process.start()
    await wait_until(lambda: "a bug in the sampler" in caplog.text, what="the log line")
    assert await process.stop() == 0
    (line,) = [r.getMessage() for r in caplog.records if "helper task" in r.getMessage()]
    assert line.endswith(".<locals>.broken failed")
