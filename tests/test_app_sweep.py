"""The Sweep view, headless (AppTest): a grid over the page's experiment runs from its button
in a process pool and shows its figures, with the same table `run_sweep` gives in the library;
grids over the page's cap or the sweep's budget are refused before anything runs; a bad value
is an error under its box naming the axis, with the typed text kept; the settings survive a
closed tab. Also the library's additions the view runs on: stop, isolated, max_cells.

Models are tiny (mlp depth 2-3 × width 8, batch 8, one seed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import open_tab
from streamlit.testing.v1 import AppTest
from test_plots_sweep import synthetic

from initlab import sweep as sweep_mod
from initlab.csvout import csv_text
from initlab.plots_sweep import phase_diagram, sweep_figures
from initlab.sweep import Sweep, run_sweep
from initlab.ui import sweep_job, sweep_view
from initlab.ui.sweep_axes import axis_spec, offered
from initlab.ui.text import plain
from initlab.ui.urlstate import encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
STD = "schemes.0.rules.0.weight.std"
DEPTH = "model.depth"
WAIT_S = 180  # a cold pool (its server imports torch) on two slow, busy cores
EXPERIMENT = {
    "model": {"name": "mlp", "depth": 3, "width": 8, "activation": "tanh", "bias": True},
    "input": {"batch_size": 8},
    "seeds": [0],
    "schemes": [
        {
            "name": "gauss",
            "rules": [
                {
                    "layers": "Linear",
                    "weight": {"method": "normal", "std": 0.3},
                    "bias": {"method": "normal", "std": 0.1},
                }
            ],
        }
    ],
}

pytestmark = pytest.mark.usefixtures("empty_app_caches", "one_thread")


# ---------------------------------------------------------------- helpers


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def sweep_page(axes: list[str] | None = None, **values: str) -> AppTest:
    """The page on EXPERIMENT (from its link), the Sweep tab open, `axes` picked and typed."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["experiment"] = encode(EXPERIMENT)
    if axes is not None:
        at.session_state[sweep_view.AXES] = axes
    for path, text in values.items():
        at.session_state[sweep_view.VALUES + path.replace("__", ".")] = text
    ok(at.run())
    return open_tab(at, "Sweep")


def grid(**values: str) -> dict[str, str]:
    return {k.replace(".", "__"): v for k, v in values.items()}


def run_grid(at: AppTest) -> sweep_job.Job:
    """Press Run and wait (bounded) until the job has ended; the page drawn after it."""
    ok(at.button(key=sweep_view.RUN).click().run())
    job = at.session_state[sweep_job.JOB]
    deadline = time.monotonic() + WAIT_S
    while job.running:
        assert time.monotonic() < deadline, f"the sweep did not end in {WAIT_S} s"
        time.sleep(0.2)
    ok(at.run())
    return job


def errors(at: AppTest) -> list[str]:
    return [plain(e.value) for e in at.error]


def chart_titles(at: AppTest) -> dict[str, str]:
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        out[chart.proto.id.rsplit("-", 1)[-1]] = spec["layout"]["title"]["text"]
    return out


def text_box(at: AppTest, path: str) -> Any:
    return at.text_input(key=sweep_view.VALUES + path)


# ---------------------------------------------------------------- running a grid


def test_a_two_by_two_grid_runs_in_a_pool_and_matches_the_library() -> None:
    at = sweep_page([DEPTH, STD], **grid(**{DEPTH: "2, 3", STD: "0.2, 0.6"}))
    assert not errors(at), errors(at)
    assert "at most 64 cells" in plain(at.caption[0].value), "the page states its cap"
    assert any("2 × 2 = 4 cells" in plain(c.value) for c in at.caption)
    assert "Run the sweep" in at.info[0].value, "nothing runs before Run is pressed"
    job = run_grid(at)
    assert job.error is None, job.error
    assert at.session_state[sweep_job.RUNS] == 1
    results = at.session_state[sweep_job.DONE][job.key]
    assert results.ran == 4 and not results.stopped and results.failed.empty
    # The library's sweep of the same file, in this process: the same table, number for number
    library = run_sweep(Sweep.from_dict(json.loads(job.key)), executor="sequential").table
    pd.testing.assert_frame_equal(results.table, library, check_exact=True)
    assert csv_text(results.table) == csv_text(library)
    assert sorted(library[STD].unique()) == [0.2, 0.6]
    titles = chart_titles(at)
    assert titles[sweep_view.FIGURE_KEYS["phase"]].startswith("Phase diagram"), titles
    assert titles[sweep_view.FIGURE_KEYS["failure"]].startswith("Depth at failure"), titles
    assert sweep_view.FIGURE_KEYS["coordinates"] not in titles, "width is not an axis"
    assert at.button(key=sweep_view.RUN).label == "Run the sweep again"
    downloads = [d.proto.label for d in at.get("download_button")]
    assert "Download sweep.csv" in downloads and "Download sweep.json" in downloads


def test_the_phase_diagram_is_over_sigma_w2_with_the_critical_line() -> None:
    """What the view draws for that grid: σ_w² = std² × fan-in (8) on x, the depth on y, the
    mean-field line of a tanh MLP on top (recomputed from the library's table)."""
    exp = Sweep.from_dict(
        {"base": EXPERIMENT, "axes": {DEPTH: [2, 3], STD: [0.2, 0.6]}}
    )  # the view's own base: the page's experiment with every default filled in
    table = run_sweep(exp, executor="sequential").table
    figs = sweep_figures(table, [DEPTH, STD], exp.base, "gauss")
    phase = figs["phase"]
    assert phase.layout.xaxis.title.text == "sigma_w2" and phase.layout.yaxis.title.text == DEPTH
    heat = phase.data[0]
    assert list(heat.x) == pytest.approx([0.2**2 * 8, 0.6**2 * 8], rel=1e-9)
    assert [t.name for t in phase.data[1:]] == ["mean field: χ₁ = 1"]


# ---------------------------------------------------------------- refusals


def test_a_grid_over_the_cap_is_refused_naming_the_cap_and_offered_to_the_cli() -> None:
    depths = ", ".join(str(d) for d in range(2, 10))
    at = sweep_page([DEPTH, STD], **grid(**{DEPTH: depths, STD: "linspace(0.1, 0.9, 9)"}))
    found = errors(at)
    assert len(found) == 1 and "8 × 9 = 72 cells; a sweep has at most 64" in found[0], found
    assert at.button(key=sweep_view.RUN).disabled
    assert any(sweep_view.COMMAND in c.value for c in at.code)
    downloads = [d.proto.label for d in at.get("download_button")]
    assert downloads == ["Download sweep.json"]


def test_a_grid_over_the_budget_is_refused_before_running(monkeypatch) -> None:
    monkeypatch.setenv(sweep_mod.SWEEP_TIME_ENV, "0.0001")
    at = sweep_page([DEPTH, STD], **grid(**{DEPTH: "2, 3", STD: "0.2, 0.6"}))
    assert any(e.startswith("sweep too slow") for e in errors(at)), errors(at)
    assert at.button(key=sweep_view.RUN).disabled
    assert sweep_job.JOB not in at.session_state


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2, x3", "axes.model.depth: 'x3' is not a number"),
        ("0, 2", "model.depth=0"),  # the library's own check of a cell, naming its axis
        ("logspace(0, 1)", "axes.model.depth.logspace: must be [start, stop, count]"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_axis_and_the_text_is_kept(text, words) -> None:
    at = sweep_page([DEPTH, STD], **grid(**{DEPTH: text, STD: "0.2, 0.6"}))
    found = errors(at)
    assert len(found) == 1 and words in found[0], found
    assert "model.depth" in found[0]
    assert at.button(key=sweep_view.RUN).disabled
    assert text_box(at, DEPTH).value == text
    ok(at.run())  # another rerun: still what was typed
    assert text_box(at, DEPTH).value == text


def test_typed_values_survive_a_closed_tab() -> None:
    at = sweep_page()  # typed in the box (a value set from outside AppTest would come back)
    assert at.multiselect(key=sweep_view.AXES).value == [DEPTH, "model.width"]
    assert text_box(at, DEPTH).value == "1, 3, 6", "half, the page's depth and twice it"
    ok(at.multiselect(key=sweep_view.AXES).unselect("model.width").run())
    ok(text_box(at, DEPTH).set_value("2, 5").run())
    open_tab(at, "Health")
    open_tab(at, "Sweep")
    assert text_box(at, DEPTH).value == "2, 5"
    assert at.multiselect(key=sweep_view.AXES).value == [DEPTH]


# ---------------------------------------------------------------- the view's pieces


def test_the_offered_axes_are_the_experiments_depth_width_rule_scales_and_seeds() -> None:
    base = Sweep.from_dict({"base": EXPERIMENT, "axes": {"seeds": [0]}}).base
    paths = [a.path for a in offered(base)]
    assert paths == [DEPTH, "model.width", STD, "schemes.0.rules.0.bias.std", "seeds"]
    assert offered(base)[0].default == "1, 3, 6"


def test_typed_text_becomes_the_sweep_files_axis() -> None:
    assert axis_spec(DEPTH, "10, 20 50") == [10, 20, 50]
    assert axis_spec(STD, "logspace(-2, 0, 5)") == {"logspace": [-2, 0, 5]}
    assert axis_spec(STD, "linspace 0.1, 1, 4") == {"linspace": [0.1, 1, 4]}
    with pytest.raises(ValueError, match=r"^axes\.model\.depth: no values"):
        axis_spec(DEPTH, " ")


def test_stop_ends_a_sweep_after_the_cell_that_finished() -> None:
    sweep = Sweep.from_dict({"base": EXPERIMENT, "axes": {DEPTH: [2, 3, 4]}})
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # no before the first cell, yes after it

    res = run_sweep(sweep, executor="sequential", stop=stop)
    assert res.stopped and res.ran == 1 and res.table["cell"].unique().tolist() == [0]
    done = run_sweep(sweep, executor="sequential", stop=lambda: False)
    assert not done.stopped and done.ran == 3


def test_isolated_never_runs_a_cell_here(monkeypatch) -> None:
    sweep = Sweep.from_dict({"base": EXPERIMENT, "axes": {DEPTH: [2]}})

    def here(jobs: list) -> None:
        raise AssertionError("a cell ran in this process")

    monkeypatch.setattr(sweep_mod, "_sequential", here)
    res = run_sweep(sweep, executor="pool", workers=1, isolated=True)
    assert res.ran == 1 and res.failed.empty and res.table["cell"].tolist()[0] == 0
    with pytest.raises(ValueError, match="executor: sequential runs in this process"):
        run_sweep(sweep, executor="sequential", isolated=True)


def test_max_cells_refuses_before_building_the_cells() -> None:
    with pytest.raises(ValueError, match=r"^axes: 3 × 2 = 6 cells; a sweep has at most 5$"):
        Sweep.from_dict({"base": EXPERIMENT, "axes": {DEPTH: [0, 2, 3], STD: [1, 2]}}, None, 5)


def test_depths_that_double_are_rows_of_one_height_with_a_tick_each() -> None:
    fig = phase_diagram(synthetic(depths=(5, 10, 20, 40)), "sigma_w2", "model.depth")
    assert fig.layout.yaxis.type == "log" and list(fig.layout.yaxis.tickvals) == [5, 10, 20, 40]
    assert fig.layout.xaxis.type == "linear", "two values: no reason for a log axis"
    even = phase_diagram(synthetic(depths=(2, 4, 6, 8)), "sigma_w2", "model.depth")
    assert even.layout.yaxis.type == "linear" and even.layout.yaxis.tickvals is None
