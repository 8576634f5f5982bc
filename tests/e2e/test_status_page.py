"""The status page in a real browser (Debian's chromium, driven by Selenium), against the real
daemon and a rate-limited fake Braze: the progress bar grows, a bad file's reason and retry
command appear without a reload, and no row value reaches the page or its JSON. A screenshot
is kept under var/test-artifacts/ (gitignored).

Selenium blocks: every browser call runs in a thread, so the fake Braze (on this test's event
loop) keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.e2e.conftest import ROOT, UPSERT, DaemonProcess, wait_until
from tests.fakebraze import FakeBraze

ARTIFACTS = ROOT / "var" / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SECRET_NAME, SECRET_DOMAIN = "Quillfeather", "zz-private.example"  # row values: never shown
T = TypeVar("T")


def rows_file(path: Path, rows: int, user: str = "u") -> Path:
    lines = ["external_id,first_name,email"]
    lines += [f"{user}{i},{SECRET_NAME}{i},p{i}@{SECRET_DOMAIN}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


class Browser:
    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def script(self, js: str) -> Any:
        return await self.call(self.driver.execute_script, js)

    async def text_of(self, element_id: str) -> str:
        return str(await self.script(f"return document.getElementById('{element_id}').innerText"))

    async def progress(self) -> float:
        element = await self.call(self.driver.find_element, "id", "progress")
        return float(await self.call(element.get_attribute, "value"))

    async def poll(self, check: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            found = await check()
            if found:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.3)


def need_chromium() -> None:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "chromium and chromium-driver (Debian) are needed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; $CI is set, so this cannot be skipped", pytrace=False)
        pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--disable-dev-shm-usage", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(flag)
    # The driver named: Selenium Manager never looks for (or downloads) one.
    service = Service(shutil.which("chromedriver") or CHROMEDRIVER)
    driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=service)
    try:
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)


async def test_progress_grows_and_a_bad_file_appears_without_a_reload(
    daemon: DaemonProcess,
    fake_braze: FakeBraze,
    browser: Browser,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 10 requests a second of 75 rows: 6,000 rows take about 8 s.
    daemon.settings["braze"]["rate_limit"] = {"requests": 10, "seconds": 1}
    daemon.settings["delta"] = {"enabled": True}  # data points: of the file sent, then of done
    await daemon.start()
    rows_file(daemon.export_path(UPSERT, "Spring Offer", "wf-1", "long.txt"), 6000)
    await wait_until(lambda: len(fake_braze.objects()) > 150, what="sending to start")
    # With delta on, acknowledged rows settle once the store has synced their values (a group
    # commit every 0.2 s): the page is opened once some have, so that its first figure is not 0.
    await browser.poll(lambda: _rows_settled(daemon), "the first rows to settle")

    await browser.call(browser.driver.get, f"http://127.0.0.1:{daemon.port}/")
    await browser.script("window.notReloaded = true")
    first = await browser.progress()
    second = await browser.poll(
        lambda: _grown(browser, first), "the progress bar to grow without a reload"
    )
    assert 0 < first < second < 6000
    label = await browser.text_of("progress-label")
    assert label.startswith("Rows acknowledged: "), label
    assert label.endswith(" of 6,000"), label
    assert "long.txt" in await browser.text_of("sending-path")
    progress = await browser.text_of("progress-text")
    assert re.search(r"delta: [1-9][\d,]* data points sent, 0 skipped as unchanged", progress)

    # A file that is not UTF-8 fails whole once its turn comes; a second long file follows it,
    # so that the screenshot shows a failure and a progress bar together.
    bad = daemon.export_path(UPSERT, "Spring Offer", "wf-2", "broken.txt")
    bad.write_bytes(b"external_id,first_name\nu1,\xff\xfe\n")
    await asyncio.sleep(0.05)
    rows_file(daemon.export_path(UPSERT, "Spring Offer", "wf-3", "next.txt"), 3000, user="n")
    waiting = await browser.poll(lambda: _text_with(browser, "waiting", "broken.txt"), "waiting")
    assert "broken.txt" in waiting

    attention = await browser.poll(
        lambda: _text_with(browser, "attention", "not valid utf-8"), "the failure", timeout_s=40
    )
    assert "✗ failed" in attention
    assert "Spring Offer/wf-2/broken.txt" in attention
    command = await browser.script(
        "return [...document.querySelectorAll('#attention code')].map(c => c.textContent)"
    )
    retry = [c for c in command if c.endswith("/wf-2/broken.txt'")]
    assert len(retry) == 1, command
    assert shlex.split(retry[0])[1:3] == ["retry", "--config"], retry
    # Pasted into a shell elsewhere, as a person would: it queues the file again.
    ran = await asyncio.to_thread(
        subprocess.run, ["sh", "-c", retry[0]], cwd="/", capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert "broken.txt: queued again" in ran.stdout, ran.stdout
    assert await browser.script("return window.notReloaded === true")
    await browser.poll(lambda: _text_with(browser, "sending-path", "next.txt"), "the next file")

    # The finished long file keeps its data points (delta's record of it) in the recent list.
    long_row = await browser.poll(lambda: _finished_points(daemon, "long.txt"), "data points")
    sent, skipped = long_row["data_points_sent"], long_row["data_points_skipped"]
    assert sent > 0, long_row
    assert skipped == 0, long_row  # the first run: nothing known yet
    await browser.poll(lambda: _text_with(browser, "recent", f"{sent:,}\t0"), "the row's points")

    html = await browser.call(lambda: browser.driver.page_source)
    _, document = await daemon.get("/status.json")
    for text in (html, document):
        assert "long.txt" in text
        assert SECRET_NAME not in text  # file names and counts only
        assert SECRET_DOMAIN not in text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = await browser.script("return document.body.scrollHeight")
    await browser.call(browser.driver.set_window_size, 1280, int(height) + 40)
    shot = ARTIFACTS / "status-page.png"
    assert await browser.call(browser.driver.save_screenshot, str(shot))
    with capsys.disabled():
        print(f"\nstatus page screenshot: {shot}")


async def _grown(browser: Browser, first: float) -> float | None:
    value = await browser.progress()
    return value if value > first else None


async def _rows_settled(daemon: DaemonProcess) -> int:
    _, body = await daemon.get("/status.json")
    sending = json.loads(body)["sending"]
    return int(sending["rows_settled"]) if sending is not None else 0


async def _finished_points(daemon: DaemonProcess, name: str) -> dict[str, Any] | None:
    _, body = await daemon.get("/status.json")
    for row in json.loads(body)["recent"]["files"]:
        if row["path"].endswith(name) and row["state"] == "done":
            return row if row["data_points_sent"] is not None else None
    return None


async def _text_with(browser: Browser, element_id: str, needle: str) -> str | None:
    text = await browser.text_of(element_id)
    return text if needle in text else None
