"""With delta off, the daemon does not load delta's store, file or write modules (lead.py
opens them only when a channel uses delta): their code is memory the daemon would carry for
nothing. The command line is imported as the daemon's `run` imports it, in a fresh process."""

from __future__ import annotations

import subprocess
import sys

DELTA_ONLY = (
    "deltarun",
    "deltastore",
    "deltafile",
    "deltawrites",
    "deltaflight",
    "deltaview",
    "deltaskip",
    "deltasent",
)


def test_the_daemon_imports_no_delta_store_module_until_delta_is_used() -> None:
    code = (
        "import sys, rpi_braze_sync.cli, rpi_braze_sync.app, rpi_braze_sync.lead;"
        f"print(' '.join(m for m in {DELTA_ONLY!r} if 'rpi_braze_sync.' + m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
