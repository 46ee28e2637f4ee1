"""What the real-browser tests share: `streamlit run app.py` on a free port of 127.0.0.1, the
system's Chromium (never a downloaded one) and waiting for a script run to end."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks.first_chart import free_port, healthy, server_command, stop

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    *("--no-sandbox", "--disable-gpu", "--disable-background-networking"),
    *("--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"),
]
STARTUP_S = 60
TIMEOUT_MS = 180_000  # two slow cores: a cold first run (torch warm-up included) can take a minute
EXCEPTION = '[data-testid="stException"]'
ERROR_BOX = '[data-testid="stAlertContentError"]'
RUNNING = '[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"]'


@contextmanager
def streamlit_server(log_name: str) -> Iterator[str]:
    """The app's URL while it serves; always terminated. Its log: artifacts/<log_name>."""
    ARTIFACTS.mkdir(exist_ok=True)
    port, log_path = free_port(), ARTIFACTS / log_name
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            server_command(port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + STARTUP_S
            while not healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text()[-3000:]
                    pytest.fail(f"streamlit did not come up on {url} within {STARTUP_S} s:\n{tail}")
                time.sleep(0.5)
            yield url
        finally:
            stop(process)


@contextmanager
def system_chromium() -> Iterator[Any]:
    """Playwright's handle on /usr/bin/chromium: missing, it skips (and fails under CI)."""
    if not Path(CHROMIUM).exists():
        reason = (
            f"{CHROMIUM} is missing: install the system's Chromium (`apt-get install chromium`); "
            "these tests never download a browser"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run the browser tests, not skip them
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def new_page(browser: Any, timeout_ms: int = TIMEOUT_MS) -> Iterator[Any]:
    """A fresh context (no shared session or storage) and its page, at 1600 × 1000."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        yield page
    finally:
        context.close()


def wait_idle(page: Any) -> None:
    """Until the script run has finished (the status widget shows a running icon meanwhile)."""
    page.wait_for_timeout(300)
    page.wait_for_selector(RUNNING, state="detached")
