"""A reload survives whatever loading the file raises, and its metrics say it failed."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from rpi_braze_sync.app import Daemon
from rpi_braze_sync.config import LoadedConfig, load_config
from rpi_braze_sync.metrics import Metrics
from rpi_braze_sync.sqlitejournal import SqliteJournal, journal_path
from tests.e2e.conftest import SHIPPED_CONFIG, UPSERT, wait_until, write_config
from tests.fakebraze import API_KEY, FakeBraze
from tests.integration.test_pipeline import InProcess


@pytest.mark.parametrize(
    "error", [RecursionError("maximum recursion depth exceeded"), MemoryError(), KeyError("x")]
)
def test_a_reload_that_raises_anything_is_counted_failed_and_keeps_the_config(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(SHIPPED_CONFIG, env={}, dry_run=True)

    def load_again() -> LoadedConfig:
        raise error

    metrics = Metrics()
    daemon = Daemon(config, metrics, load_again=load_again)
    assert daemon.reload() is False
    assert daemon.reload() is False
    sample = metrics.registry.get_sample_value
    assert sample("rpi_braze_sync_config_reloads_total", {"outcome": "failed"}) == 2
    assert sample("rpi_braze_sync_config_last_reload_successful") == 0
    assert daemon.config is config
    assert (
        f"configuration reload failed, still running on the previous one: {type(error).__name__}"
        in caplog.text
    )


async def test_each_lead_takes_its_components_off_the_reloader_when_it_ends(tmp_path: Path) -> None:
    """A pair's daemon leads again after a lost lease with new components: the closed ones of
    the earlier lead must not get the next reload (they would act on a stopped watcher)."""
    exports = tmp_path / "exports"
    exports.mkdir()
    config = load_config(
        SHIPPED_CONFIG,
        env={"BASE_OUTPUT_DIRECTORY": str(exports)},
        dry_run=True,
        state_directory=str(tmp_path / "state"),
    )
    daemon = Daemon(config, Metrics(), load_again=lambda: config)
    before = len(daemon.reloader._appliers)
    (tmp_path / "state").mkdir()
    journal = SqliteJournal(journal_path(config.state_directory, config.dry_run))
    try:
        for _lead in range(2):
            async with contextlib.AsyncExitStack() as stack:
                await daemon._open_sending(stack, journal)
                assert len(daemon.reloader._appliers) > before
            assert len(daemon.reloader._appliers) == before
        assert daemon.reload() is True
    finally:
        journal.close()


async def test_a_reload_rotates_the_hook_token(tmp_path: Path, fake_braze: FakeBraze) -> None:
    """The hook's token is asked at each call, as the status page's: a rotated token (a new
    credential, then `systemctl reload`) is the one wanted from then on, without a restart."""
    process = InProcess(tmp_path, fake_braze)
    process.changes["hook"] = {"token_env": "RPI_HOOK_TOKEN"}
    write_config(process.config_path, process.changes)
    env = {"BRAZE_API_KEY": API_KEY, "RPI_HOOK_TOKEN": "hook-token-old-1"}

    def load() -> LoadedConfig:
        return load_config(process.config_path, env=dict(env))

    daemon = Daemon(load(), process.metrics, load)
    task = asyncio.create_task(daemon.run(install_signals=False))
    url = f"http://{process.changes['http']['listen']}/rpi/post-execution"

    async def status_with(token: str, offer: str) -> int:
        call = {"channelName": UPSERT, "offerName": offer, "workflowId": "wf-1"}
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=call, headers=headers) as response,
        ):
            return response.status

    try:
        await wait_until(lambda: daemon.watcher is not None, what="the daemon")
        assert await status_with("hook-token-old-1", "Offer 1") == 202
        env["RPI_HOOK_TOKEN"] = "hook-token-new-2"
        assert daemon.reload()
        assert await status_with("hook-token-old-1", "Offer 2") == 401
        assert await status_with("hook-token-new-2", "Offer 2") == 202  # (a new call)
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
