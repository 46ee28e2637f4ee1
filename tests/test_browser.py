"""The dashboard in a real browser: `streamlit run app.py` driven by Playwright through the
system's Chromium (never a downloaded one). Full-page screenshots go to `artifacts/`.

Every test but the first opens its own small experiment through the address, so no test
depends on another's session or on the run cache.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
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

# The payload link (scheme names and rule globs that would be markup) is shared with the
# headless checks; tests/ is on sys.path for test modules (no __init__.py: rootdir imports).
from test_ui_security import NAME_PAYLOADS, payload_experiment

from initlab.ui.urlstate import encode

pytestmark = pytest.mark.browser

CHARTS = ".js-plotly-plot"
# The first chart (variance by depth): per trace its name and y. Plotly keeps y as given,
# which for a streamlit chart is {dtype, bdata} (base64 of the typed array).
TRACES_JS = "Array.from(document.querySelectorAll('.js-plotly-plot')[0].data, " \
            "t => ({name: t.name, y: t.y}))"  # fmt: skip


def small_experiment(seed: int) -> dict[str, Any]:
    """The default page's two schemes on a small mlp; `seed` makes each test's run its own."""
    return {
        "model": {"name": "mlp", "depth": 6, "width": 64},
        "input": {"batch_size": 64},
        "seeds": [seed],
        "schemes": [
            {"name": "PyTorch default", "preset": "pytorch_default"},
            {"name": "Kaiming normal", "preset": "kaiming_normal"},
        ],
    }


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`streamlit run app.py` on a free port; always terminated. Its log: artifacts/."""
    with streamlit_server("streamlit.log") as url:
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


def open_page(page: Any, server: str, experiment: dict[str, Any] | None = None) -> None:
    query = f"/?experiment={encode(experiment)}" if experiment is not None else "/"
    page.goto(server + query)
    page.wait_for_selector(CHARTS)
    wait_idle(page)


def traces(page: Any) -> dict[str, list[float]]:
    """The first chart's traces: name -> y values."""
    return {t["name"]: _values(t["y"]) for t in page.evaluate(TRACES_JS)}


def _values(y: Any) -> list[float]:
    if isinstance(y, dict) and "bdata" in y:
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])).tolist()
    if isinstance(y, dict):  # a typed array serialized as {index: value}
        return [float(y[k]) for k in sorted(y, key=int)]
    return [float(v) for v in y or []]


def wait_traces_change(page: Any, action: Callable[[], None]) -> None:
    """Do `action`, then wait until the first chart's data differ and the run has ended."""
    before = page.evaluate(f"JSON.stringify({TRACES_JS})")
    action()
    page.wait_for_function(f"before => JSON.stringify({TRACES_JS}) !== before", arg=before)
    wait_idle(page)


def choose(page: Any, key: str, option: str) -> None:
    """Pick `option` in the selectbox with widget key `key`: click it, type, click the option."""
    box = page.locator(f".st-key-{key.replace('.', '-')} input[role=combobox]")
    box.wait_for()
    wait_idle(page)
    for attempt in range(3):  # a rerun landing meanwhile closes the list: open it again
        box.click()
        box.fill(option)
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=30_000)
            return
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            wait_idle(page)


def open_rules(page: Any, uid: int) -> None:
    """Unfold a scheme column's rules (folded by default, so the results are on screen)."""
    column = page.locator(f".st-key-column-{uid}")
    column.get_by_text("Rules", exact=True).first.click()
    page.wait_for_timeout(300)
    wait_idle(page)


def type_number(page: Any, key: str, value: str) -> None:
    field = page.locator(f".st-key-{key.replace('.', '-')} input")
    field.fill(value)
    field.press("Enter")


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


def test_default_page_shows_charts_and_no_exception(page: Any, server: str) -> None:
    open_page(page, server)
    assert page.locator(CHARTS).count() >= 2
    assert page.locator(EXCEPTION).count() == 0
    names = traces(page)
    assert {"PyTorch default", "Kaiming normal"} <= set(names)
    assert all(names[n] for n in ("PyTorch default", "Kaiming normal")), "empty traces"
    assert "experiment=" in page.url, "the page keeps the address current"
    assert screenshot(page, "default.png").stat().st_size > 0


def test_distributions_tab_draws_its_histograms(page: Any, server: str) -> None:
    open_page(page, server, small_experiment(seed=13))
    open_tab(page, "Distributions")
    histograms = page.locator(".st-key-fig_hist .js-plotly-plot")
    assert histograms.bounding_box()["width"] > 300, "drawn at full width, not collapsed"
    assert (
        page.evaluate("document.querySelector('.st-key-fig_hist .js-plotly-plot').data.length") > 0
    )
    assert page.locator(EXCEPTION).count() == 0
    screenshot(page, "distributions.png")


def test_changing_a_method_changes_the_chart(page: Any, server: str) -> None:
    open_page(page, server, small_experiment(seed=11))
    before = traces(page)
    open_rules(page, 1)
    # N(0, 1) weights on width 64: the variance grows ×64 per layer
    wait_traces_change(page, lambda: choose(page, "s1.Linear.weight.method", "normal"))
    after = traces(page)
    assert page.locator(EXCEPTION).count() == 0
    assert after["PyTorch default"] == before["PyTorch default"]
    assert after["Kaiming normal"] != before["Kaiming normal"]
    assert after["Kaiming normal"][-1] > 100 * before["Kaiming normal"][-1]
    screenshot(page, "after_change.png")


def test_an_invalid_value_shows_an_error_and_the_charts_stay(page: Any, server: str) -> None:
    open_page(page, server, small_experiment(seed=12))
    open_rules(page, 1)
    choose(page, "s1.Linear.weight.method", "normal")
    page.locator(".st-key-s1-Linear-weight-normal-std input").wait_for()
    wait_idle(page)
    type_number(page, "s1.Linear.weight.normal.std", "-1")
    page.wait_for_selector(ERROR_BOX)
    wait_idle(page)
    assert "std" in page.locator(ERROR_BOX).first.inner_text()
    assert page.locator(EXCEPTION).count() == 0
    assert page.locator(CHARTS).first.is_visible()
    assert page.locator(".st-key-s1-Linear-weight-normal-std input").input_value() == "-1"
    assert "PyTorch default" in traces(page), "the valid column still runs"
    screenshot(page, "invalid_value.png")


TABS = (
    # Spectrum is left out: this page's transformer reads token ids, so it shows one line only
    *("Variance by depth", "Distributions", "Health", "Training", "Sweep"),
    *("Tables", "Code", "Experiment"),
)
# What the payloads would have made if any reached HTML, markdown or plotly unescaped.
INJECTED_JS = """() => ({
  pwned: typeof window.__pwned,
  images: Array.from(document.images, i => i.getAttribute('src') || '')
    .filter(src => src === 'x' || src.includes('127.0.0.1:9')),
  links: Array.from(document.querySelectorAll('a'), a => a.getAttribute('href') || '')
    .filter(href => href.includes('127.0.0.1:9')),
  frames: Array.from(document.querySelectorAll('iframe[srcdoc], iframe'),
    f => f.getAttribute('srcdoc') || f.src).filter(s => s.includes('pwned')),
  handlers: document.querySelectorAll('[onerror], [onload]').length,
  bolds: Array.from(document.querySelectorAll('b, strong'), b => b.textContent)
    .filter(t => t === 'bold'),
})"""
# Displayed text, without the invisible word joiners the escaping puts into bare links.
TEXT_JS = "document.body.innerText.replaceAll('\\u2060', '')"
LEGEND_JS = "Array.from(document.querySelectorAll('.legendtext'), e => e.textContent)"


# What each tab draws last-ish: only the open tab is drawn, so its marker appears once the
# rerun that opened it has drawn it.
TAB_MARKERS = {
    "Variance by depth": ".st-key-fig_var .js-plotly-plot",
    "Distributions": ".st-key-fig_hist .js-plotly-plot",
    "Health": ".st-key-health_all",
    "Training": ".st-key-train_button",
    "Sweep": ".st-key-sweep-run",
    "Tables": ".st-key-dl_layers",
    "Code": ".st-key-dl_code_0",
    "Experiment": ".st-key-dl_experiment",
}


def open_tab(page: Any, tab: str) -> None:
    """Click a results tab and wait until its content is drawn and the run has ended."""
    page.get_by_role("tab", name=tab).click()
    page.locator(TAB_MARKERS[tab]).first.wait_for()
    wait_idle(page)


def visit_tabs(page: Any) -> None:
    """Every results view, each drawn to the end (charts included) before the next."""
    for tab in TABS:
        open_tab(page, tab)
        page.wait_for_timeout(300)


def test_a_link_full_of_markup_shows_it_as_text_and_runs_nothing(page: Any, server: str) -> None:
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if "127.0.0.1:9" in r.url else None)
    page.set_viewport_size({"width": 1280, "height": 800})
    open_page(page, server, payload_experiment())
    assert page.locator(EXCEPTION).count() == 0
    assert page.locator(ERROR_BOX).count() == 0, page.locator(ERROR_BOX).all_inner_texts()
    visit_tabs(page)
    injected = page.evaluate(INJECTED_JS)
    assert injected == {"pwned": "undefined", "images": [], "links": [], "frames": [],
                        "handlers": 0, "bolds": []}, injected  # fmt: skip
    assert outside == [], "the page fetched a URL from the link"
    open_tab(page, TABS[0])
    text = page.evaluate(TEXT_JS)  # the verdicts name every scheme
    assert [n for n in NAME_PAYLOADS if n not in text] == [], "each name shown literally"
    assert "<b>bold</b>" in page.evaluate(LEGEND_JS), "the legend names it literally"
    shoot_views(page)
    assert page.evaluate(INJECTED_JS)["pwned"] == "undefined"


def shoot_views(page: Any) -> None:
    """At 1280 × 800: the scheme columns, the variance chart (legend), the code tab."""
    page.evaluate("document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "payload_columns.png"))
    page.locator(".st-key-fig_var").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "payload_chart.png"))
    open_tab(page, "Code")
    page.get_by_role("tab", name="Code").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "payload_code.png"))


LOSS_CHART = ".st-key-fig_train_loss .js-plotly-plot"
LOSS_TITLE_JS = f"document.querySelector('{LOSS_CHART}').layout.title.text"


def test_train_draws_the_loss_chart(page: Any, server: str) -> None:
    open_page(page, server, small_experiment(seed=14) | {"training": {"steps": 20}})
    open_tab(page, "Training")
    assert page.locator(".st-key-fig_train_loss").count() == 0, "nothing trains by itself"
    page.locator(".st-key-train_button button").first.click()
    # the final view: every scheme's verdict at the last step, and no Stop button
    page.wait_for_function(
        "() => document.body.innerText.split('at step 20').length > 2"
        " && !document.querySelector('.st-key-train_stop')"
    )
    page.locator(LOSS_CHART).wait_for()
    wait_idle(page)
    assert "Loss during training" in page.evaluate(LOSS_TITLE_JS)
    assert page.locator(EXCEPTION).count() == 0
    assert page.locator(ERROR_BOX).count() == 0, page.locator(ERROR_BOX).all_inner_texts()
    screenshot(page, "training.png")


def test_the_server_logged_no_uncaught_exception(server: str) -> None:
    log = (ARTIFACTS / "streamlit.log").read_text()
    assert "Uncaught app execution" not in log, log[-3000:]


# ---------------------------------------------------------------- the answer at a glance

LENET = {
    "model": {"name": "lenet"},
    "input": {"batch_size": 32},
    "seeds": [0, 1],
    "schemes": [
        {"name": "PyTorch default", "preset": "pytorch_default"},
        {"name": "The recipe", "preset": "recipe"},
    ],
}
FIRST_CHART = ".st-key-fig_var .js-plotly-plot"


@pytest.mark.parametrize("experiment", [None, LENET], ids=["default page", "lenet"])
def test_the_first_chart_and_the_verdicts_are_above_the_fold(
    page: Any, server: str, experiment: dict[str, Any] | None
) -> None:
    """At 1280 × 800 the verdicts and the variance chart's top edge are on the first screen."""
    page.set_viewport_size({"width": 1280, "height": 800})
    open_page(page, server, experiment)
    top = page.locator(FIRST_CHART).bounding_box()["y"]
    verdicts = page.locator("[data-testid=stMarkdownContainer]", has_text="PyTorch default")
    verdict = verdicts.filter(has_text="per layer").first.bounding_box()
    name = "default" if experiment is None else "lenet"
    page.screenshot(path=str(ARTIFACTS / f"fold_{name}.png"))
    assert top < 800 - 150, f"the first chart starts at y = {top:.0f} px"
    assert verdict is not None and verdict["y"] < top


def _long_names() -> dict[str, Any]:
    """Four schemes with 30-character names: the widest legends the page must lay out."""
    long = [
        "PyTorch default, as it ships with torch",
        "Kaiming normal, fan_in, a = 0, relu gain",
        "Xavier normal with the tanh gain, all layers",
        "Orthogonal, gain one, on every layer",
    ]
    names = [n[:30].rstrip() + "." * (30 - len(n[:30].rstrip())) for n in long]
    presets = ["pytorch_default", "kaiming_normal", "xavier_normal", "orthogonal"]
    schemes = [{"name": n, "preset": p} for n, p in zip(names, presets, strict=True)]
    assert all(len(n) == 30 for n in names)
    return {**small_experiment(seed=21), "schemes": schemes}


BOXES_JS = """sel => Array.from(document.querySelectorAll('.js-plotly-plot'), plot => {
  const box = e => { if (!e) return null; const r = e.getBoundingClientRect();
                     return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  return {legend: box(plot.querySelector('g.legend')),
          titles: Array.from(plot.querySelectorAll(sel), box)};
})"""
TITLES = ".gtitle, .g-xtitle, .g-ytitle, .xtick, .annotation"


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])  # fmt: skip


@pytest.mark.parametrize("width", [1280, 1500])
def test_legends_never_cover_titles(page: Any, server: str, width: int) -> None:
    """Four long-named schemes: no legend box meets a title, an axis title or a tick label."""
    page.set_viewport_size({"width": width, "height": 900})
    open_page(page, server, _long_names())
    charts = page.evaluate(BOXES_JS, TITLES)
    assert len(charts) >= 2
    for chart in charts:
        assert chart["legend"] is not None and chart["titles"]
        hit = [t for t in chart["titles"] if t and t["w"] and _overlap(chart["legend"], t)]
        assert hit == [], (width, chart["legend"], hit)
    page.screenshot(path=str(ARTIFACTS / f"legends_{width}.png"))
