"""A reload survives whatever loading the file raises, and its metrics say it failed."""

from __future__ import annotations

import pytest

from rpi_braze_sync.app import Daemon
from rpi_braze_sync.config import LoadedConfig, load_config
from rpi_braze_sync.metrics import Metrics
from tests.e2e.conftest import SHIPPED_CONFIG


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
