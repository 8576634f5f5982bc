"""PostgreSQL for tests: a database of its own per test on the machine's server (127.0.0.1:5432,
trust, user postgres; .ci/run starts it), dropped afterwards; and a private throwaway cluster
(initdb + pg_ctl on a free port in a temporary folder) for tests that stop the server.

Without a server, these tests skip on a workstation and fail under $CI.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

SERVER = os.environ.get("RPI_BRAZE_SYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def unavailable(message: str) -> None:
    import pytest  # (here: the benchmarks import this module without the test tools)

    if os.environ.get("CI"):
        pytest.fail(f"{message}; $CI is set, so this cannot be skipped", pytrace=False)
    pytest.skip(message)


def url_of(server: str, database: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + database


class Database:
    """A database created on `server` for one test, dropped by `drop`."""

    def __init__(self, server: str = SERVER) -> None:
        self.server = server
        self.name = f"rbs_test_{os.getpid()}_{secrets.token_hex(4)}"
        try:
            with psycopg.connect(server, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"'.encode())
        except psycopg.OperationalError as exc:
            unavailable(f"no PostgreSQL server at {server} ({' '.join(str(exc).split())})")
        self.url = url_of(server, self.name)

    def drop(self) -> None:
        with psycopg.connect(self.server, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'.encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL server of its own (initdb in a temporary folder, on a free port): stopping
    it affects no one else. `remove` stops it and deletes the folder."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            unavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.bin = Path(found[-1]).parent
        # Not under pytest's tmp_path: as root, initdb runs as postgres, which must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="rbs-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:  # initdb refuses root: the folder belongs to postgres
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\n"
            )

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args], capture_output=True, timeout=60, check=False
        )
        if done.returncode:
            raise AssertionError(f"{tool} failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
