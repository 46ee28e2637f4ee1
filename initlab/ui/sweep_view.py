"""The Sweep view: a small grid over the experiment on the page, run from the page.

The base is the page's experiment (without its training section: a sweep runs each cell's
probe). The user picks up to three axes among the useful paths this experiment has and types
their values; each axis is checked by `initlab.sweep` on its own (its error under its box,
the typed text kept), then the grid as a whole against the page's cap of 64 cells and the
sweep's time budget, all before Run can be pressed. Larger grids are the command line's: the
view shows its command and offers the sweep file for the current settings.

Running: the cells go to a local process pool (never this process, whose sessions are threads
sharing PyTorch's settings), from a background thread, because the pool's first start and a
deep model's cells take seconds (`sweep_job`). A fragment redraws the progress (cells done /
total) and a Stop button every second or two; the figures come when it ends. What was typed
lives in session state (it survives a closed tab); the last few sweeps' results too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import streamlit as st

from initlab.csvout import csv_text
from initlab.experiment import Experiment
from initlab.plots_sweep import RATIOS, cell_ratios, sweep_figures
from initlab.sweep import Sweep, SweepResults, axis_values, canonical, sweep_time_budget
from initlab.ui import sweep_job
from initlab.ui.sweep_axes import FORMS, Axis, axis_spec, offered
from initlab.ui.sweep_job import PAGE_CELLS
from initlab.ui.text import describe, md
from initlab.ui.widgets import seed_value, typed

if TYPE_CHECKING:  # the tab table's View; results_panel imports this module
    from initlab.ui.results_panel import View

AXES = "sweep.axes"  # the paths picked, in order (the first varies slowest)
VALUES = "sweep.values."  # + path: the values typed for that axis
RUN = "sweep.run"
STOP = "sweep.stop"
PHASE_SCHEME = "sweep.phase_scheme"
RATIO = "sweep.ratio"
FIGURE_KEYS = {
    "phase": "sweep.fig_phase",
    "coordinates": "sweep.fig_coordinates",
    "failure": "sweep.fig_failure",
}
MAX_AXES = 3
POLL_S = 1.5  # how often the progress redraws while a sweep runs
COMMAND = "python -m initlab sweep sweep.json --out results/"
INTRO = (
    f"A grid over this experiment: every cell runs its probe for every scheme. Pick up to "
    f"{MAX_AXES} axes (the first varies slowest) and type their values. This page runs at "
    f"most {PAGE_CELLS} cells; larger grids run from the command line (below)."
)


def sweep_tab(view: View) -> None:
    base = sweep_base(view.exp)
    offers = {axis.path: axis for axis in offered(base)}
    sweep_job.harvest()
    st.caption(INTRO)
    chosen = axes_ui(offers)
    if not chosen:
        st.info("Pick an axis to sweep.")
        return
    specs = values_ui(base, [offers[p] for p in chosen])
    sweep = {"base": base, "axes": specs}
    key = canonical(sweep)
    button, summary = st.columns([1, 3], vertical_alignment="center")
    with summary:  # the grid's size, or why it can't run, beside the button
        problem = None if len(specs) < len(chosen) else grid_ui(sweep)
    ready = len(specs) == len(chosen) and problem is None
    with button:
        running = controls_ui(sweep, key, ready)
    if running:
        live_ui(key)
    job = sweep_job.job()
    if not (running and job is not None and job.key == key):
        done_ui(key, base, chosen)
    if len(specs) == len(chosen):
        command_ui(sweep, expanded=problem is not None)


def sweep_base(exp: Experiment) -> dict[str, Any]:
    """The page's experiment as a sweep's base: a sweep runs probes, not trainings."""
    base = exp.to_dict()
    base.pop("training", None)
    return base


# ---------------------------------------------------------------- the settings


def axes_ui(offers: dict[str, Axis]) -> list[str]:
    """The axes picked; one this experiment no longer has (another model) is let go."""
    start = [p for p in offers if p != "seeds"][:2]
    seed_value(AXES, start)
    kept = [p for p in st.session_state[AXES] if p in offers][:MAX_AXES]
    if kept != st.session_state[AXES]:
        st.session_state[AXES] = typed()[AXES] = kept
    picked = st.multiselect(
        "Axes",
        list(offers),
        key=AXES,
        format_func=lambda p: offers[p].label if p in offers else p,
        max_selections=MAX_AXES,
        help="the paths into this experiment a sweep file would name; a scheme's std or "
        "gain shows as its σ_w² (σ_b² for a bias) in the phase diagram",
    )
    return list(picked)


def values_ui(base: dict[str, Any], axes: list[Axis]) -> dict[str, Any]:
    """A box per axis, its error under it; the axes whose values are good, as a file's."""
    specs = {}
    for axis, column in zip(axes, st.columns(len(axes)), strict=True):
        with column:
            key = VALUES + axis.path
            seed_value(key, axis.default)
            text = st.text_input(md(axis.label), key=key, help=f"{axis.path}: {FORMS}")
            try:
                spec = axis_spec(axis.path, text)
            except ValueError as exc:
                st.error(md(describe(exc)))
                continue
            error = axis_error(base, axis.path, spec)
            if error is not None:
                st.error(md(error))
                continue
            specs[axis.path] = spec
            st.caption(md(f"{len(axis_values(axis.path, spec))} values: {_shown(axis, spec)}"))
    return specs


def _shown(axis: Axis, spec: Any) -> str:
    values = axis_values(axis.path, spec)
    text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:8])
    return text + (", …" if len(values) > 8 else "")


def axis_error(base: dict[str, Any], path: str, spec: Any) -> str | None:
    """The axis checked alone over the base (its cells built and estimated): what is wrong
    with its values. An axis longer than the page's cap is the grid's to refuse."""
    if len(axis_values(path, spec)) > PAGE_CELLS:
        return None
    return checked(canonical({"base": base, "axes": {path: spec}}), _budget())[0]


def grid_ui(sweep: dict[str, Any]) -> str | None:
    """The grid's size and the guard's estimate, or why it can't run here (shown)."""
    problem, cells, seconds = checked(canonical(sweep), _budget())
    if problem is not None:
        over = "cells; a sweep has at most" in problem
        st.error(md(problem + (f" on this page. {CLI_NOTE}" if over else "")))
        return problem
    sizes = " × ".join(str(len(axis_values(p, s))) for p, s in sweep["axes"].items())
    schemes = len(sweep["base"]["schemes"])
    st.caption(
        md(
            f"{sizes} = {cells} cells, {schemes} scheme(s) each; the guard estimates about "
            f"{seconds:.2g} s of compute, on {sweep_job.workers()} worker process(es)."
        )
    )
    return None


CLI_NOTE = "Larger grids run from the command line: the command and the sweep file are below."


def _budget() -> str:
    """The sweep's budget as the checks' cache sees it (a changed variable checks again)."""
    try:
        return repr(sweep_time_budget())
    except ValueError as exc:
        return str(exc)


@st.cache_data(max_entries=256, show_spinner=False)
def checked(sweep_json: str, budget: str) -> tuple[str | None, int, float]:
    """(the refusal, or None; cells; estimated seconds) of a sweep on this page."""
    try:
        sweep = Sweep.from_dict(json.loads(sweep_json), allow_custom=False, max_cells=PAGE_CELLS)
    except Exception as exc:  # a ValueError names the axis or the cell; anything else too
        return describe(exc), 0, 0.0
    return None, len(sweep.cells), sweep.seconds


# ---------------------------------------------------------------- running


def controls_ui(sweep: dict[str, Any], key: str, ready: bool) -> bool:
    """The Run button; True while a sweep (these settings' or earlier ones') runs."""
    job = sweep_job.job()
    busy = job is not None and job.running and job.key == key
    st.button(
        "Run the sweep again" if sweep_job.cached(key) is not None else "Run the sweep",
        key=RUN,
        type="primary",
        disabled=not ready or busy,
        on_click=sweep_job.start,  # a callback: the job exists before this run draws
        args=(sweep, key),
    )
    job = sweep_job.job()
    return job is not None and job.running


@st.fragment(run_every=POLL_S)
def live_ui(key: str) -> None:
    """The running sweep's cells done / total and its Stop button."""
    job = sweep_job.job()
    if job is None or not job.running:
        st.rerun()  # it has ended: the whole view draws its figures, or its error
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.progress(job.done / job.total if job.total else 0.0, text=md(progress_text(job)))
    right.button("Stop", key=STOP, on_click=job.stop.set, width="stretch")
    if job.key != key:
        st.caption("That is the sweep of earlier settings; Run runs these and stops it.")


def progress_text(job: sweep_job.Job) -> str:
    if not job.total:
        return "Sweep: checking the grid"
    if not job.done:
        return f"Sweep: 0 / {job.total} cells done (starting the worker processes)"
    left = f", about {job.left:.0f} s left" if job.left is not None and job.done < job.total else ""
    return f"Sweep: {job.done} / {job.total} cells done{left}"


# ---------------------------------------------------------------- the results


def done_ui(key: str, base: dict[str, Any], axes: list[str]) -> None:
    """These settings' results, their failure, or what to press."""
    results = sweep_job.cached(key)
    job = sweep_job.job()
    if results is not None:
        results_ui(key, results, base, axes)
    elif job is not None and job.key == key and job.error is not None:
        st.error(md(job.error))
    else:
        st.info("Press **Run the sweep** to run every cell of this grid.")


def results_ui(key: str, results: SweepResults, base: dict[str, Any], axes: list[str]) -> None:
    table = results.table
    cells = table["cell"].nunique() if len(table) else 0
    stopped = " (stopped before the end)" if results.stopped else ""
    st.caption(md(f"{cells} cells finished, {len(results.failed)} failed{stopped}."))
    if len(results.failed):
        st.dataframe(results.failed, hide_index=True, key="sweep.failed_table")
    if not len(table):
        return
    scheme, value = figure_settings(table, base, axes)
    figs = cached_figures(key + scheme + value + str(len(table)), table, axes, base, scheme, value)
    if "phase" not in figs:
        st.caption("The phase diagram needs two axes that vary, besides the seeds.")
    for name, fig in figs.items():
        st.plotly_chart(fig, key=FIGURE_KEYS[name])
        if name in CAPTIONS:
            st.caption(md(CAPTIONS[name]))
    table_ui(table)


CAPTIONS = {
    "phase": "Each cell's colour: the ratio on a log scale (red: the first layer's gradient, or "
    "the last layer's output, is the larger; white: kept). sigma_w2 is σ_w², a weight's "
    "variance × its fan-in as the scheme set it, and sigma_b2 a bias's variance; the dashed "
    "line, on an MLP, is where the mean field puts the edge of chaos (χ₁ = 1). Axes not "
    "drawn are held at their first value; seeds are averaged (geometric mean).",
    "failure": "The shallowest depth of the grid whose ratio is beyond 100× either way; an open "
    "marker: no depth of the grid failed.",
}


def figure_settings(table: Any, base: dict[str, Any], axes: list[str]) -> tuple[str, str]:
    """The phase diagram's scheme (the one whose rule is swept, unless picked) and ratio."""
    schemes = list(dict.fromkeys(table["scheme"]))
    owners = [int(p.split(".")[1]) for p in axes if p.startswith("schemes.")]
    names = [base["schemes"][i]["name"] for i in owners if i < len(base["schemes"])]
    start = next((n for n in names if n in schemes), schemes[0])
    ratios = list(RATIOS) if base.get("backward", True) else ["variance_ratio"]
    left, right = st.columns(2)
    scheme = left.selectbox(
        "Phase diagram of",
        schemes,
        index=schemes.index(start),
        key=PHASE_SCHEME,
        disabled=len(schemes) == 1,
    )
    value = right.segmented_control(
        "Colour",
        ratios,
        default=ratios[0],
        key=RATIO,
        required=True,
        format_func=lambda r: RATIOS[r].split(" (")[0],
        help="; ".join(RATIOS[r] for r in ratios),
    )
    return scheme or start, value or ratios[0]


@st.cache_data(max_entries=16, show_spinner=False)
def cached_figures(
    signature: str,
    _table: Any,
    axes: list[str],
    _base: dict[str, Any],
    scheme: str,
    value: str,
) -> dict[str, go.Figure]:
    """A finished sweep's figures, built once per (sweep, scheme, ratio): the signature."""
    return sweep_figures(_table, axes, _base, scheme, value)


def table_ui(table: Any) -> None:
    with st.expander("Per cell: the ratios the figures draw"):
        st.dataframe(cell_ratios(table), hide_index=True, key="sweep.ratios_table", height=300)
    st.download_button(
        "Download sweep.csv",
        csv_text(table),
        file_name="sweep.csv",
        mime="text/csv",
        key="sweep.dl_table",
        on_click="ignore",
        help="one row per (cell, scheme, seed, layer): the axes, the probe's columns, σ_w², σ_b²",
    )


# ---------------------------------------------------------------- the command line


def command_ui(sweep: dict[str, Any], expanded: bool) -> None:
    """This grid as a sweep file and the command that runs it (any size, on a pool or Ray)."""
    with st.expander("Run it from the command line", expanded=expanded):
        st.code(COMMAND, language="bash")
        st.caption(
            "Any size of grid, resumed from its folder; `--workers N` for the pool, "
            "`--ray auto` on a Ray cluster."
        )
        st.download_button(
            "Download sweep.json",
            json.dumps(sweep, indent=2) + "\n",
            file_name="sweep.json",
            mime="application/json",
            key="sweep.dl_sweep",
            on_click="ignore",
        )
