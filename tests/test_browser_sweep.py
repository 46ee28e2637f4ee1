"""The Sweep view in a real browser: `streamlit run app.py` driven by Playwright through the
system's Chromium (never a downloaded one). A tiny grid runs from the Run button in the
server's process pool and the phase diagram is drawn. Its screenshot goes to `artifacts/`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import (
    ARTIFACTS,
    ERROR_BOX,
    EXCEPTION,
    new_page,
    streamlit_server,
    system_chromium,
    wait_idle,
)

from initlab.ui.urlstate import encode

pytestmark = pytest.mark.browser

TIMEOUT_MS = 240_000  # the server's first pool imports torch, on two slow, busy cores
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
    with streamlit_server("streamlit_sweep.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with system_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    with new_page(browser, TIMEOUT_MS) as page:
        yield page


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
