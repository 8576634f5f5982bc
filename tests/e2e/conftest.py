"""Run the real daemon as a process against a real fake Braze, in temporary folders."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fakebraze import API_KEY, FakeBraze

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "config" / "rpi-braze-sync.yaml"
SCRIPT = Path(sys.executable).parent / "rpi-braze-sync"  # the console script an operator runs
UPSERT = "Braze Onboarding and Upsert"
APPEND = "Braze Append"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, changes: dict[str, Any]) -> Path:
    """The shipped configuration with some keys changed (nested dicts are merged)."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())

    def merge(target: dict[str, Any], update: dict[str, Any]) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                merge(target[key], value)
            else:
                target[key] = value

    merge(config, changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class DaemonProcess:
    def __init__(self, tmp: Path, fake: FakeBraze) -> None:
        self.tmp = tmp
        self.fake = fake
        self.exports = tmp / "exports"
        self.state = tmp / "state"
        self.exports.mkdir(exist_ok=True)
        self.port = free_port()
        self.config = tmp / "config.yaml"
        self.log = tmp / "daemon.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.extra_env: dict[str, str] = {}
        self.own_session = False  # True: a process group of its own, as a terminal gives
        self.preexec: Callable[[], None] | None = None  # run in the child before exec
        self.settings: dict[str, Any] = {
            "braze": {
                "api_url": fake.url,
                "retry_max_delay_seconds": 0.5,
                "append_delay_seconds": 0.5,
            },
            "watch": {
                "base_output_directory": str(self.exports),
                "settle_seconds": 1.5,
                "poll_interval_seconds": 0.2,
                "rescan_interval_seconds": 2,
            },
            "state_directory": str(self.state),
            "http": {"listen": f"127.0.0.1:{self.port}"},
            "shutdown_grace_seconds": 5,
        }

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("BRAZE_API_URL", "BASE_OUTPUT_DIRECTORY")
        }
        env["BRAZE_API_KEY"] = API_KEY
        env.update(self.extra_env)
        return env

    async def start(self, *extra: str, wait_ready: bool = True) -> None:
        write_config(self.config, self.settings)
        log = open(self.log, "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), "run", "--config", str(self.config), *extra,
            stdout=log, stderr=log, env=self.env(), start_new_session=self.own_session,
            preexec_fn=self.preexec,
        )  # fmt: skip
        log.close()
        if wait_ready:
            await self.wait_http("/readyz")

    async def post(
        self, path: str, body: object, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=body, headers=headers) as response,
        ):
            return response.status, await response.text()

    async def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()

    async def wait_http(self, path: str, timeout_s: float = 15) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                status, text = await self.get(path)
                if status == 200:
                    return text
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path} not ready in {timeout_s}s:\n{self.log_text()}")

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        _, text = await self.get("/metrics")
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        )
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def export_path(self, channel: str, offer: str, workflow: str, name: str) -> Path:
        folder = self.exports / channel / offer / workflow
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name


async def wait_until(check: Callable[[], bool], timeout_s: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def daemon(tmp_path: Path, fake_braze: FakeBraze) -> AsyncIterator[DaemonProcess]:
    process = DaemonProcess(tmp_path, fake_braze)
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.returncode is None:
            process.proc.send_signal(signal.SIGKILL)
            await process.proc.wait()
