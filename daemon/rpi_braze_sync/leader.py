"""The lease keeper of an active/standby pair (journal.url): who may send, kept in PostgreSQL.

One task (owned by app.Daemon) on its own async connection: a standby asks for the lease
every third of it; the leader renews it every third, each attempt bounded so that a database
that hangs cannot hold it past its sending deadline (lease.py decides). `may_send` is checked
before every request to Braze (FencedTransport): a leader that could not renew in time, or
that wakes from a pause past its deadline, sends nothing more, whatever its other tasks think.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

import psycopg

from .braze import NOT_ALLOWED, HttpTransport, Reply, Transport
from .config import LoadedConfig
from .errors import JournalError, TransportError
from .lease import Lease, Role, Step, attempt_timeout_s, next_step, wait_s
from .pgconnect import AsyncConn, connect_async, shown_url, why

log = logging.getLogger(__name__)

_ACQUIRE = """
UPDATE ha_lease SET epoch = epoch + 1, holder = %(me)s, acquired_at = clock_timestamp(),
    expires_at = clock_timestamp() + %(lease_s)s * interval '1 second'
WHERE id = 1 AND expires_at < clock_timestamp() RETURNING epoch
"""
_RENEW = """
UPDATE ha_lease SET expires_at = clock_timestamp() + %(lease_s)s * interval '1 second'
WHERE id = 1 AND epoch = %(epoch)s AND holder = %(me)s RETURNING epoch
"""
# A clean stop hands over at once: the standby need not wait for the expiry.
_RELEASE = "UPDATE ha_lease SET expires_at = '-infinity' WHERE id = 1 AND epoch = %(epoch)s"
_HOLDER = "SELECT holder, epoch, expires_at > clock_timestamp() FROM ha_lease WHERE id = 1"


class LeaseKeeper:
    def __init__(
        self,
        config: LoadedConfig,
        on_role: Callable[[Role], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self.lease_s = config.settings.ha.lease_seconds
        self.me = f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(3)}"
        self.where = shown_url(config.journal_url or "")
        self.lease: Lease | None = None
        self.problem: str | None = None  # the database cannot be reached: for /readyz
        self.other: str | None = None  # who leads, as last seen by a standby
        self._on_role = on_role
        self._clock = clock
        self._conn: AsyncConn | None = None

    @property
    def role(self) -> Role:
        return Role.STANDBY if self.lease is None else Role.LEADER

    def may_send(self) -> bool:
        """Before every request: the lease is held and its sending deadline not passed."""
        lease = self.lease
        return lease is not None and lease.may_send(self._clock())

    async def run(self) -> None:
        failed = False
        while True:
            now = self._clock()
            step = next_step(self.lease, now)
            if step is Step.RESIGN:
                self._resign("could not renew the lease in time")
            elif step in (Step.ACQUIRE, Step.RENEW):
                failed = not await self._attempt(step, now)
            await asyncio.sleep(wait_s(self.lease, self._clock(), self.lease_s, failed))

    async def _attempt(self, step: Step, began: float) -> bool:
        timeout = attempt_timeout_s(self.lease, began, self.lease_s)
        try:
            async with asyncio.timeout(timeout):
                conn = await self._connection()
                if step is Step.ACQUIRE:
                    await self._acquire(conn, began)
                else:
                    await self._renew(conn, began)
        except (TimeoutError, JournalError, psycopg.Error) as exc:
            await self._drop_connection()
            self._database_failed(exc, timeout)
            return False
        if self.problem is not None:
            log.info("the journal database at %s answers again", self.where)
            self.problem = None
        return True

    async def _acquire(self, conn: AsyncConn, began: float) -> None:
        args = {"me": self.me, "lease_s": self.lease_s}
        row = await (await conn.execute(_ACQUIRE, args)).fetchone()
        if row is None:
            holder = await (await conn.execute(_HOLDER)).fetchone()
            if holder is not None:
                self.other = f"{holder[0]} (epoch {holder[1]})"
            return
        self.lease = Lease(int(row[0]), began, self.lease_s)
        self.other = None
        log.info("leader now: holds the lease (epoch %d, %g s)", self.lease.epoch, self.lease_s)
        self._on_role(Role.LEADER)

    async def _renew(self, conn: AsyncConn, began: float) -> None:
        lease = self.lease
        assert lease is not None
        args = {"me": self.me, "lease_s": self.lease_s, "epoch": lease.epoch}
        row = await (await conn.execute(_RENEW, args)).fetchone()
        if row is None:
            self._resign(f"another daemon took the lease (it was epoch {lease.epoch})")
        elif self.lease is lease:
            self.lease = lease.renewed(began)

    def _resign(self, why_text: str) -> None:
        if self.lease is None:
            return
        log.error("standby now: %s; nothing more is sent from here", why_text)
        self.lease = None
        self._on_role(Role.STANDBY)

    def _database_failed(self, exc: BaseException, timeout: float) -> None:
        if isinstance(exc, TimeoutError):
            text = f"no answer within {timeout:.1f} s"
        elif isinstance(exc, psycopg.Error):
            text = why(exc)
        else:
            text = str(exc)
        problem = f"the journal database at {self.where} cannot be reached ({text})"
        if self.problem is None:
            held = "; sending stops before the lease can expire" if self.lease else ""
            log.error("%s%s", problem, held)
        self.problem = problem

    async def _connection(self) -> AsyncConn:
        if self._conn is None or self._conn.closed:
            self._conn = await connect_async(self._config, "lease")
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def release(self) -> None:
        """At a clean stop: give the lease up at once (best effort: else it expires)."""
        lease, self.lease = self.lease, None
        if lease is not None:
            with contextlib.suppress(TimeoutError, JournalError, psycopg.Error):
                async with asyncio.timeout(2):
                    conn = await self._connection()
                    await conn.execute(_RELEASE, {"epoch": lease.epoch})
                    log.info("lease released (epoch %d): the standby may take over", lease.epoch)
        await self._drop_connection()


class FencedTransport:
    """A transport that sends only while the lease is held: checked before every request, and
    by Braze's transport again just before the request's first byte is written."""

    def __init__(self, inner: Transport, may_send: Callable[[], bool]) -> None:
        self.inner = inner
        self._may_send = may_send
        if isinstance(inner, HttpTransport):
            inner.may_send = may_send

    async def post(self, body: bytes, source: str) -> Reply:
        if not self._may_send():
            raise TransportError("connection", False, NOT_ALLOWED)
        return await self.inner.post(body, source)

    async def close(self) -> None:
        await self.inner.close()

    def finish(self, source: str) -> None:
        self.inner.finish(source)
