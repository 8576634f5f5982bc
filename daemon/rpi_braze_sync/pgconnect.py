"""Connecting to the PostgreSQL journal: the options every connection gets, and the URL as
the log may show it.

The password comes from journal.password_file (a Secret, handed to libpq as a keyword, never
put into a string that is logged) or from libpq's own PGPASSWORD and ~/.pgpass. A database
that stops answering must not hold the daemon long: connecting gives up after a few seconds,
and a connection whose packets go unacknowledged is dropped by the kernel (tcp_user_timeout).
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import psycopg

from .config import LoadedConfig
from .errors import JournalError

CONNECT_TIMEOUT_S = 3  # libpq's own minimum is 2
Conn = psycopg.Connection[tuple[Any, ...]]
AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]


def connect_options(config: LoadedConfig, role: str) -> dict[str, Any]:
    """Keyword arguments for psycopg's connect, beside the URL. `role`: what this connection
    is for (journal, lease, status), shown in pg_stat_activity."""
    lease_ms = int(config.settings.ha.lease_seconds * 1000)
    options: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": f"rpi-braze-sync {role} {socket.gethostname()}"[:63],
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        # Unacknowledged data for a third of the lease: the connection is dead, not slow.
        "tcp_user_timeout": max(1000, lease_ms // 3),
        "autocommit": True,
        # No statement may hold the daemon (journal calls run on its event loop) past a
        # third of the lease, be it waiting for a lock or for a server that stalls.
        "options": f"-c lock_timeout={max(500, lease_ms // 3)} "
        f"-c statement_timeout={max(1000, lease_ms // 3)}",
    }
    if config.journal_password is not None:
        options["password"] = config.journal_password.reveal()
    return options


def shown_url(url: str) -> str:
    """host:port/database of the URL, for messages (the URL holds no password: settings.py
    refuses one, but the user name stays out of logs too)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    return f"{host}:{port}{parts.path or '/'}"


def connect(config: LoadedConfig, role: str) -> Conn:
    url = config.journal_url
    assert url is not None
    try:
        return psycopg.connect(url, **connect_options(config, role))
    except psycopg.Error as exc:
        raise JournalError(
            f"cannot connect to the journal at {shown_url(url)}: {why(exc)}"
        ) from None


async def connect_async(config: LoadedConfig, role: str) -> AsyncConn:
    url = config.journal_url
    assert url is not None
    try:
        return await psycopg.AsyncConnection.connect(url, **connect_options(config, role))
    except psycopg.Error as exc:
        raise JournalError(
            f"cannot connect to the journal at {shown_url(url)}: {why(exc)}"
        ) from None


def why(exc: psycopg.Error) -> str:
    """libpq's message on one line (it names host and user, never the password)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
