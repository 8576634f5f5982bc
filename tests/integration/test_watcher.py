"""The watcher in the daemon, with a real observer: a thread of it that dies (an error in
its event handler, or its inotify reader stopped) is noticed and started again, and files
dropped afterwards are still delivered."""

from __future__ import annotations

import pytest
from watchdog.events import FileSystemEvent

from rpi_braze_sync.observer import Forwarder
from rpi_braze_sync.watch import Watcher
from tests.e2e.conftest import wait_until
from tests.fakebraze import FakeBraze
from tests.integration.test_pipeline import InProcess, daemon  # noqa: F401 - the fixture


def observer_of(watcher: Watcher) -> object:
    return watcher.observer.current


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_dead_observer_thread_is_restarted(
    daemon: InProcess,  # noqa: F811
    fake_braze: FakeBraze,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon.changes["watch"]["rescan_interval_seconds"] = 60  # events, not scans, find files
    await daemon.start()
    assert daemon.daemon is not None
    watcher = daemon.daemon.watcher
    assert watcher is not None
    await wait_until(lambda: watcher.observer.alive(), what="the observer")
    first = watcher.observer.current
    assert first is not None

    working = Forwarder.on_any_event
    broke: list[FileSystemEvent] = []

    def broken_once(self: Forwarder, event: FileSystemEvent) -> None:
        if broke:
            return working(self, event)
        broke.append(event)
        raise RuntimeError("a bug in the observer's thread")

    monkeypatch.setattr(Forwarder, "on_any_event", broken_once)
    daemon.drop("trigger.txt", b"external_id\nu0\n")
    await wait_until(lambda: not first.is_alive(), what="the observer's thread to die")
    await wait_until(lambda: watcher.observer.current is not first and watcher.observer.alive())
    restarts = daemon.metrics.registry.get_sample_value
    assert restarts("rpi_braze_sync_observer_restarts_total") == 1

    # Its inotify reader stopped, the observer itself still running: noticed too.
    second = watcher.observer.current
    assert second is not None
    emitter = next(iter(second.emitters))
    emitter.stop()
    emitter.join(5)
    await wait_until(lambda: watcher.observer.current is not second and watcher.observer.alive())
    assert restarts("rpi_braze_sync_observer_restarts_total") == 2

    daemon.drop("after.txt", b"external_id\nu1\n", offer="Other")
    await wait_until(lambda: {"u0", "u1"} <= set(fake_braze.users()), what="both files")
    assert await daemon.stop() == 0
