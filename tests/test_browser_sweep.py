"""The Sweep view in a real browser: `streamlit run app.py` driven by Playwright through the
system's Chromium (never a downloaded one). A tiny grid runs from the Run button in the
server's process pool and the phase diagram is drawn. Its screenshot goes to `artifacts/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.first_chart import free_port, healthy
from initlab.ui.urlstate import encode

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STARTUP_S = 60
TIMEOUT_MS = 240_000  # the server's first pool imports torch, on two slow, busy cores
EXCEPTION = '[data-testid="stException"]'
ERROR_BOX = '[data-testid="stAlertContentError"]'
RUNNING = '[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"]'
PHASE = ".st-key-sweep-fig_phase .js-plotly-plot"
# A tanh MLP of depth 3, width 8: the view starts with depth × width, 3 × 3 values each
TINY = {
    "model": {"name": "mlp", "depth": 3, "width": 8, "activation": "tanh", "bias": True},
    "input": {"batch_size": 8},
    "seeds": [0],
    "schemes": [{"name": "Kaiming normal", "preset": "kaiming_normal"}],
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`streamlit run app.py` on a free port; always terminated. Its log: artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = ARTIFACTS / "streamlit_sweep.log"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        # edits to the sources during a test run must not rerun or prompt the page
        "--server.fileWatcherType",
        "none",
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STARTUP_S
            while not healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"streamlit did not come up on {url} within {STARTUP_S} s:\n"
                        + log_path.read_text()[-3000:]
                    )
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = (
            f"{CHROMIUM} is missing: install the system's Chromium (`apt-get install "
            "chromium`); these tests never download a browser"
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


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


def wait_idle(page: Any) -> None:
    """Until the script run has finished (the status widget shows a running icon meanwhile)."""
    page.wait_for_timeout(300)
    page.wait_for_selector(RUNNING, state="detached")


# ---------------------------------------------------------------- the test


def test_a_tiny_grid_runs_from_the_sweep_tab_and_draws_the_phase_diagram(
    page: Any, server: str
) -> None:
    page.goto(f"{server}/?tab=Sweep&experiment={encode(TINY)}")
    run = page.locator(".st-key-sweep-run button")
    run.wait_for()
    wait_idle(page)
    assert page.get_by_text("3 × 3 = 9 cells", exact=False).count() == 1
    assert run.is_enabled()
    run.click()
    page.wait_for_selector(PHASE)
    wait_idle(page)
    assert page.locator(EXCEPTION).count() == 0 and page.locator(ERROR_BOX).count() == 0
    traces = page.evaluate(f"Array.from(document.querySelector('{PHASE}').data, t => t.type)")
    assert traces[0] == "heatmap", traces
    assert page.get_by_text("9 cells finished, 0 failed", exact=False).count() == 1
    page.screenshot(path=str(ARTIFACTS / "sweep.png"), full_page=True)
