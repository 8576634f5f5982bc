"""GET / (the status page) and GET /status.json, on the daemon's HTTP listener (server.py).

Both answer loopback callers only, unless `status_page.token_env` or `status_page.token_file`
gives a token: then a bearer token or `?token=` is needed (compared in constant time), from
anywhere. The page is one HTML template (web/status.html) with its style and script put in
at start: no other asset, nothing from outside. Its script renders the document embedded in
it, then fetches /status.json every few seconds.

Serving never stalls sending: the journal is read off the event loop (statusreads.py). The
sampler (rows settled, every SAMPLE_S) is a task of the HTTP app's cleanup context: it
starts and stops with the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from . import package_version
from .config import BASE_ENV, LoadedConfig
from .deltastats import Follower
from .errors import JournalError
from .logs import log_if_failed
from .metrics import Metrics
from .ratehistory import Samples
from .server import authorised
from .sqlitejournal import journal_path
from .statusinputs import RECENT_S, ActiveFile, JournalView, Live, Setup
from .statuspage import build
from .statusreads import OpenReads, PageReader, sqlite_reads

if TYPE_CHECKING:
    from .delivery import Sender
    from .filequeue import FileQueue
    from .readiness import Readiness
    from .watch import Watcher
    from .watchrules import ExportPath

log = logging.getLogger(__name__)
SAMPLE_S = 2.0
Role = Callable[[], str | None]


class StatusSource(Protocol):
    """What the page reads of the daemon (app.Daemon)."""

    @property
    def config(self) -> LoadedConfig: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def sender(self) -> Sender | None: ...
    @property
    def watcher(self) -> Watcher | None: ...
    @property
    def queue(self) -> FileQueue | None: ...
    @property
    def readiness(self) -> Readiness: ...
    def export_of(self, rel_path: str) -> ExportPath | None: ...


def _inline_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


class Template:
    """web/status.html with web/status.css and web/status.js put in; the document goes in
    per request, as JSON in a script element of its own (data, never run)."""

    def __init__(self) -> None:
        web_dir = files("rpi_braze_sync") / "web"
        style = web_dir.joinpath("status.css").read_text(encoding="utf-8")
        script = web_dir.joinpath("status.js").read_text(encoding="utf-8")
        html = web_dir.joinpath("status.html").read_text(encoding="utf-8")
        self._head, _, self._tail = (
            html.replace("{{style}}", style).replace("{{script}}", script).partition("{{data}}")
        )
        # Only this style and this script may run: a file name that reached the page could
        # not add one of its own (the script only ever sets text, never markup).
        self.csp = (
            f"default-src 'none'; script-src {_inline_hash(script)}; style-src"
            f" {_inline_hash(style)}; connect-src 'self'; img-src 'self' data:;"
            " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )

    def render(self, document_json: str) -> str:
        # "<" never appears raw inside the data element: "</script>" in a file name cannot
        # end it early.
        return self._head + document_json.replace("<", "\\u003c") + self._tail


def default_reads(config: LoadedConfig) -> OpenReads:
    """The journal the daemon writes: PostgreSQL when journal.url is set, else SQLite."""
    if config.journal_url is not None:
        from .pgstatusreads import pg_reads  # psycopg only when the journal is there

        return pg_reads(config)
    return sqlite_reads(journal_path(config.state_directory, config.dry_run))


def program(name: str = "rpi-braze-sync") -> str:
    """The command's name when this daemon's PATH finds it (a package, pipx, an activated
    venv), else the path it was started by (`make run`: .venv/bin/rpi-braze-sync)."""
    started = Path(sys.argv[0])
    found = shutil.which(name)
    if started.name != name or (found is not None and Path(found).samefile(started)):
        return name
    return str(started.absolute())


def points(config: LoadedConfig) -> Follower | None:
    """Delta's data points of finished files (none in a dry run: nothing is acknowledged,
    and its journal's record ids are not the live one's). Kept as long as the recent list
    shows a file, and an hour more to spare."""
    if config.dry_run:
        return None
    return Follower(config.state_directory, RECENT_S + 3600)


class StatusPage:
    def __init__(
        self, daemon: StatusSource, role: Role | None = None, reads: OpenReads | None = None
    ) -> None:
        self.daemon = daemon
        self.role = role
        self.template = Template()
        self.reader = PageReader(reads or default_reads(daemon.config), points(daemon.config))
        self._read_error: str | None = None  # logged once until it changes
        self.samples = Samples()
        self._setup_for: LoadedConfig | None = None
        self._setup: Setup | None = None

    # --- access ----------------------------------------------------------------------------

    def refusal(self, request: web.Request) -> web.Response | None:
        token = self.daemon.config.status_page_token  # a reload may change it
        if authorised(request, token):
            return None
        if token is None:
            return web.Response(
                status=403,
                text="the status page answers loopback callers only; set status_page.token_env"
                " or status_page.token_file to open it to others\n",
            )
        return web.Response(
            status=401,
            text="a token is needed: Authorization: Bearer <token>, or ?token=<token>\n",
            headers={"WWW-Authenticate": 'Bearer realm="rpi-braze-sync"'},
        )

    # --- the document -------------------------------------------------------------------------

    def setup(self) -> Setup:
        config = self.daemon.config
        if self._setup is None or self._setup_for is not config:
            channels = config.channels
            self._setup_for = config
            in_yaml = config.settings.state_directory
            # `retry` finds the export folder as the daemon did only if the YAML names it
            # absolute and the environment does not override it.
            folder_in_yaml = Path(config.settings.watch.base_output_directory).is_absolute()
            folder_in_yaml = folder_in_yaml and BASE_ENV not in os.environ
            self._setup = Setup(
                config_path=str(config.path.absolute()),
                state_directory=str(config.state_directory),
                # Relative, it would be taken from the folder `retry` is run in.
                state_directory_in_yaml=in_yaml is not None
                and Path(in_yaml).is_absolute()
                and Path(in_yaml) == config.state_directory,
                program=program(),
                export_folder=None if folder_in_yaml else str(config.base_output_directory),
                modes={name: c.settings.mode for name, c in channels.items()},
                append_delay_s=config.settings.braze.append_delay_seconds,
                settle_s=config.settings.watch.settle_seconds,
                export_values=lambda rel: e.values if (e := self.daemon.export_of(rel)) else None,
            )
        return self._setup

    def _active(self, now_mono: float) -> ActiveFile | None:
        queue = self.daemon.queue
        job = queue.active if queue is not None else None
        if job is None:
            return None
        tally = job.settlement
        settled = tally.settled_rows
        return ActiveFile(
            record=job.record,
            reading=job.report.meter is None,
            rows_total=tally.rows_total,
            settled=settled,
            sent=tally.sent,
            rejected=tally.rejected,
            dropped=tally.dropped,
            rows_per_s=self.samples.file_rate(now_mono, job.record.id, settled),
            points=(job.delta.points_sent, job.delta.points_skipped) if job.delta else None,
        )

    def live(self) -> Live:
        daemon, now_mono = self.daemon, time.monotonic()
        registry = daemon.metrics.registry
        sender, watcher = daemon.sender, daemon.watcher
        last_success = registry.get_sample_value("rpi_braze_sync_last_success_timestamp_seconds")
        reloads = {
            outcome: registry.get_sample_value(
                "rpi_braze_sync_config_reloads_total", {"outcome": outcome}
            )
            or 0
            for outcome in ("applied", "failed")
        }
        last_ok = registry.get_sample_value("rpi_braze_sync_config_last_reload_successful")
        return Live(
            now=time.time(),
            version=package_version(),
            role=self.role() if self.role is not None else None,
            dry_run=daemon.config.dry_run,
            problems=daemon.readiness.problems(),
            braze_failing_s=sender.failing_for_s() if sender is not None else 0.0,
            auth_failing=sender.auth_failing if sender is not None else False,
            auth_message=sender.auth_message if sender is not None else "",
            last_success_at=last_success or None,
            share_available=watcher.share_available if watcher is not None else True,
            reloads_applied=int(reloads["applied"]),
            reloads_failed=int(reloads["failed"]),
            last_reload_ok=last_ok != 0,
            active=self._active(now_mono),
            history=self.samples.history(now_mono),
        )

    async def document_json(self, request: web.Request) -> str:
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        setup = self.setup()
        channels = tuple(sorted(setup.modes))
        upserts = tuple(n for n in channels if setup.modes[n] == "upsert")
        try:
            view = await self.reader.view(page, channels, upserts)
        except JournalError as exc:
            if str(exc) != self._read_error:
                log.warning("status page: %s; showing no files until it can", exc)
            self._read_error = str(exc)
            view = JournalView.empty(page)
        else:
            self._read_error = None
        return build(self.live(), view, setup).model_dump_json()

    # --- the sampler ---------------------------------------------------------------------------

    def _rows_settled(self) -> int:
        total = 0.0
        for family in self.daemon.metrics.rows.collect():
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
        return int(total)

    async def sample_every(self, interval_s: float = SAMPLE_S) -> None:
        while True:
            queue = self.daemon.queue
            job = queue.active if queue is not None else None
            self.samples.add(
                time.monotonic(),
                self._rows_settled(),
                job.record.id if job is not None else None,
                job.settlement.settled_rows if job is not None else 0,
            )
            await asyncio.sleep(interval_s)

    async def running(self, _: web.Application) -> AsyncIterator[None]:
        sampler = asyncio.create_task(self.sample_every(), name="status-samples")
        # A failure is logged when it happens (the page's rates stop; the daemon goes on),
        # and does not fail the server's cleanup at the stop.
        sampler.add_done_callback(log_if_failed(log))
        try:
            yield
        finally:
            sampler.cancel()
            await asyncio.wait([sampler])
            await asyncio.to_thread(self.reader.close)


HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def add_status_page(
    app: web.Application,
    daemon: StatusSource,
    role: Role | None = None,
    reads: OpenReads | None = None,
) -> StatusPage:
    """GET / and GET /status.json on `app`. `role`: the high-availability role, when there
    is one; `reads`: how to read the journal, when it is not the SQLite one."""
    status = StatusPage(daemon, role, reads)

    async def page(request: web.Request) -> web.Response:
        refused = status.refusal(request)
        if refused is not None:
            return refused
        html = status.template.render(await status.document_json(request))
        headers = {**HEADERS, "Content-Security-Policy": status.template.csp}
        return web.Response(text=html, content_type="text/html", headers=headers)

    async def status_json(request: web.Request) -> web.Response:
        refused = status.refusal(request)
        if refused is not None:
            return refused
        body = await status.document_json(request)
        return web.Response(text=body, content_type="application/json", headers=HEADERS)

    app.router.add_get("/", page)
    app.router.add_get("/status.json", status_json)
    app.cleanup_ctx.append(status.running)
    return status
