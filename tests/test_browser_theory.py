"""Theory in a real browser: `streamlit run app.py` driven by Playwright through the system's
Chromium (never a downloaded one). `?tab=Spectrum` opens the Spectrum view, Compute draws a
histogram per scheme; the default view draws the prediction dashed on the depth chart.
Full-page screenshots go to `artifacts/`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
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

BUTTON = ".st-key-spectrum-compute button"
SPECTRUM = ".st-key-spectrum-figure .js-plotly-plot"
DEPTH_CHART = ".st-key-fig_var .js-plotly-plot"
# Per trace of a chart: its type, name and line dash (plotly keeps what it was given).
TRACES_JS = """sel => Array.from(document.querySelector(sel).data,
    t => ({type: t.type || 'scatter', name: t.name, dash: (t.line || {}).dash || null}))"""
LEGEND_JS = (
    "Array.from(document.querySelectorAll('.st-key-fig_var .legendtext'), e => e.textContent)"
)
SCHEMES = [
    {"name": "PyTorch default", "preset": "pytorch_default"},
    {"name": "Kaiming normal", "preset": "kaiming_normal"},
]


def small_experiment(seed: int) -> dict[str, Any]:
    """The default page's two schemes on a small tanh mlp; `seed` makes each run its own."""
    model = {"name": "mlp", "depth": 6, "width": 32, "activation": "tanh"}
    return {"model": model, "input": {"batch_size": 16}, "seeds": [seed], "schemes": SCHEMES}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`streamlit run app.py` on a free port; always terminated. Its log: artifacts/."""
    with streamlit_server("streamlit_theory.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with system_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    with new_page(browser) as page:
        yield page


# ---------------------------------------------------------------- helpers


def traces(page: Any, selector: str) -> list[dict[str, Any]]:
    return page.evaluate(TRACES_JS, selector)


def screenshot(page: Any, name: str) -> Path:
    """The whole page: streamlit scrolls inside its main section, so grow the viewport to it."""
    height = page.evaluate(
        "Math.max(...Array.from(document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stSidebarContent]'), e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1600, "height": max(1000, int(height) + 40)})
    page.wait_for_timeout(500)  # let plotly re-lay out to the new size
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


# ---------------------------------------------------------------- tests


def test_the_address_opens_the_spectrum_and_compute_draws_it(page: Any, server: str) -> None:
    page.goto(f"{server}/?experiment={encode(small_experiment(seed=21))}&tab=Spectrum")
    button = page.get_by_role("button", name="Compute spectrum")
    button.wait_for()
    wait_idle(page)
    assert page.get_by_role("tab", name="Spectrum").get_attribute("aria-selected") == "true"
    assert page.locator(SPECTRUM).count() == 0, "nothing computed before the click"
    button.click()
    page.locator(SPECTRUM).wait_for()
    wait_idle(page)
    bars = traces(page, SPECTRUM)
    assert [t["name"] for t in bars] == ["PyTorch default", "Kaiming normal"]
    assert {t["type"] for t in bars} == {"bar"}
    assert page.locator(SPECTRUM).bounding_box()["width"] > 600, "drawn at full width"
    assert page.locator(BUTTON).count() == 0, "the button goes once the spectrum is there"
    assert page.get_by_text("exact (SVD)").count() == 2, "the table says how, per scheme"
    assert page.locator(EXCEPTION).count() == 0 and page.locator(ERROR_BOX).count() == 0
    screenshot(page, "spectrum.png")


def test_the_depth_chart_carries_the_prediction_dashed(page: Any, server: str) -> None:
    page.goto(f"{server}/?experiment={encode(small_experiment(seed=22))}")
    page.locator(DEPTH_CHART).wait_for()
    wait_idle(page)
    found = traces(page, DEPTH_CHART)
    dashed = [t["name"] for t in found if t["dash"] == "dash"]
    assert dashed == ["PyTorch default (mean-field)", "Kaiming normal (mean-field)"]
    legend = page.evaluate(LEGEND_JS)
    assert legend == ["PyTorch default", "Kaiming normal"], "no legend rows for the dashes"
    assert page.get_by_text("mean field: ", exact=False).count() == 2
    assert page.locator(EXCEPTION).count() == 0
    screenshot(page, "variance_theory.png")
