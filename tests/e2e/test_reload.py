"""Reloading the configuration under a running daemon: SIGHUP or an edit of the file."""

from __future__ import annotations

import asyncio
import functools
import signal

import yaml

from tests.e2e.conftest import SCRIPT, UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze


def said_in(said: str, daemon: DaemonProcess) -> bool:
    return said in daemon.log_text()


def rows(prefix: str, count: int) -> str:
    return "external_id,first_name\n" + "".join(f"{prefix}{i},N{i}\n" for i in range(count))


def tag_upsert_rows(daemon: DaemonProcess, tag: str) -> None:
    """The upsert mapping gains a constant attribute: visible in every object sent after."""
    loaded = yaml.safe_load(daemon.config.read_text())
    loaded["channels"][UPSERT]["mapping"]["attributes"]["sync_tag"] = {"value": tag}
    daemon.config.write_text(yaml.safe_dump(loaded, sort_keys=False))


async def test_sighup_applies_to_new_files_while_the_current_one_finishes(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    fake_braze.latency_s = 0.05
    daemon.settings["braze"].update({"batch_size": 1, "rate_limit": {"requests": 25, "seconds": 1}})
    await daemon.start()
    daemon.export_path(UPSERT, "Offer", "wf-1", "first.txt").write_text(rows("a", 60))
    await wait_until(lambda: len(fake_braze.objects()) >= 5, what="the first file to start")
    tag_upsert_rows(daemon, "v2")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: "configuration reloaded" in daemon.log_text(), what="the reload")
    assert len(fake_braze.objects()) < 60  # the reload came while the first file was sending
    daemon.export_path(UPSERT, "Offer", "wf-2", "second.txt").write_text(rows("b", 5))
    await wait_until(lambda: len(fake_braze.objects()) == 65, what="both files", timeout_s=30)
    assert await daemon.stop() == 0
    first = [o for o in fake_braze.objects() if o["external_id"].startswith("a")]
    second = [o for o in fake_braze.objects() if o["external_id"].startswith("b")]
    assert len(first) == 60
    assert all("sync_tag" not in o for o in first)  # finished under the mapping it started with
    assert [o["sync_tag"] for o in second] == ["v2"] * 5
    assert "reload refused" not in daemon.log_text()


async def test_a_broken_reload_is_refused_and_the_old_config_keeps_working(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    await daemon.start()
    good = daemon.config.read_text()
    broken = good.replace("mode: append", "mode: apend")
    assert broken != good
    daemon.config.write_text(broken)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: "reload refused" in daemon.log_text(), what="the refusal")
    assert "channels.'Braze Append'.mode: 'apend' is not one of upsert, append" in daemon.log_text()
    assert await daemon.metric("rpi_braze_sync_config_last_reload_successful") == 0
    assert await daemon.metric("rpi_braze_sync_config_reloads_total", {"outcome": "failed"}) >= 1
    status, _ = await daemon.get("/healthz")
    assert status == 200
    daemon.export_path(UPSERT, "Offer", "wf-1", "f.txt").write_text(rows("c", 3))
    await wait_until(lambda: len(fake_braze.objects()) == 3, what="sending on the old config")

    # Fixing the file is enough: the daemon notices the edit without a signal.
    daemon.config.write_text(good + "\n# fixed\n")
    await wait_until(
        lambda: "configuration reloaded" in daemon.log_text(), timeout_s=10, what="reload"
    )
    assert await daemon.metric("rpi_braze_sync_config_last_reload_successful") == 1
    assert await daemon.stop() == 0


async def test_restart_only_keys_are_kept_and_reported(daemon: DaemonProcess) -> None:
    await daemon.start()
    loaded = yaml.safe_load(daemon.config.read_text())
    loaded["http"]["listen"] = "127.0.0.1:1"
    daemon.config.write_text(yaml.safe_dump(loaded, sort_keys=False))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(
        lambda: "takes effect at the next restart" in daemon.log_text(), what="warning"
    )
    assert "http.listen changed" in daemon.log_text()
    status, _ = await daemon.get("/healthz")  # still served where it was
    assert status == 200
    await asyncio.sleep(0)
    assert await daemon.stop() == 0


async def test_a_refused_key_pauses_sending_until_a_reload_brings_the_right_one(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    key_file = daemon.tmp / "braze-key"
    key_file.write_text("wrong-key\n")
    daemon.settings["braze"].update({"api_key_file": str(key_file), "auth_retry_seconds": 0.5})
    await daemon.start()
    daemon.export_path(UPSERT, "Offer", "wf-1", "f.txt").write_text(rows("k", 10))
    await wait_until(lambda: 401 in fake_braze.statuses, what="a refusal")
    await asyncio.sleep(1.5)  # retried periodically, still refused
    status, text = await daemon.get("/readyz")
    assert status == 503
    assert "Braze refuses the API key or URL (HTTP 401" in text
    assert await daemon.metric("rpi_braze_sync_braze_auth_failing") == 1
    assert fake_braze.statuses.count(401) >= 2
    assert fake_braze.objects() == []
    key_file.write_text(fake_braze.api_key + "\n")  # the operator rotates the key
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: len(fake_braze.objects()) == 10, what="sending to resume")
    await daemon.wait_http("/readyz")
    assert await daemon.metric("rpi_braze_sync_braze_auth_failing") == 0
    assert await daemon.stop() == 0
    assert "wrong-key" not in daemon.log_text()
    assert fake_braze.api_key not in daemon.log_text()


ALIAS_BOMB = "\n# a bomb\nlaughs:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)
DEEP = "\ndeep: " + "[" * 5000 + "]" * 5000 + "\n"


async def test_bombs_are_refused_by_check_and_by_the_reload_which_keeps_going(
    daemon: DaemonProcess, fake_braze: FakeBraze
) -> None:
    """An alias bomb and a 5,000-deep nesting: exit 78 from check, a refused reload (counted)
    from the running daemon, which then applies the next good edit."""
    await daemon.start()
    good = daemon.config.read_text()
    reloads = {"outcome": "failed"}
    for n, (bomb, said) in enumerate(
        [(ALIAS_BOMB, "aliases expand the file to more than 100,000 values"),
         (DEEP, "nested more than 50 levels deep")], start=1,
    ):  # fmt: skip
        bad = daemon.tmp / f"bomb{n}.yaml"
        bad.write_text(good + bomb)
        check = await asyncio.create_subprocess_exec(
            str(SCRIPT), "check", "--config", str(bad), env=daemon.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(check.communicate(), 30)
        assert check.returncode == 78, err
        assert said in err.decode()
        daemon.config.write_text(good + bomb)  # noticed without a signal
        await wait_until(functools.partial(said_in, said, daemon), timeout_s=10, what="refusal")
        assert await daemon.metric("rpi_braze_sync_config_reloads_total", reloads) == n
        assert await daemon.metric("rpi_braze_sync_config_last_reload_successful") == 0
    daemon.config.write_text(good + "\n# fixed\n")
    await wait_until(lambda: "configuration reloaded" in daemon.log_text(), what="the reload")
    assert await daemon.metric("rpi_braze_sync_config_last_reload_successful") == 1
    daemon.export_path(UPSERT, "Offer", "wf-1", "f.txt").write_text(rows("z", 2))
    await wait_until(lambda: len(fake_braze.objects()) == 2, what="sending after it all")
    assert await daemon.stop() == 0
    assert "Traceback" not in daemon.log_text()
