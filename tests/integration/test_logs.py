"""The daemon's logging set-up, in a process of its own as the daemon runs it: watchdog's
duplicate-watch warning is not shown, other library warnings still are."""

from __future__ import annotations

import subprocess
import sys

# watchdog's own code path: a second callback under the same id for one watch, which its
# inotify thread does when a new folder's watch races with the recursive walk.
DUPLICATE_WATCH = """
import sys, tempfile, warnings
from watchdog.observers.inotify_c import InotifyConstants, InotifyFD
if sys.argv[1] == "daemon":
    from rpi_braze_sync.logs import configure_logging
    configure_logging(json_lines=False)
inotify = InotifyFD.get_instance()
folder = tempfile.mkdtemp().encode()
for _ in range(2):
    inotify.add_callback(folder, InotifyConstants.IN_CREATE, lambda event: None, "the-id")
warnings.warn("another library's warning", RuntimeWarning)
"""


def run(mode: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", DUPLICATE_WATCH, mode],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stderr


def test_watchdogs_duplicate_watch_warning_is_not_logged() -> None:
    assert "Callback with id 'the-id' already exists" in run("bare")  # the warning is real
    logged = run("daemon")
    assert "Callback with id" not in logged
    assert "another library's warning" in logged  # other warnings still reach the log
