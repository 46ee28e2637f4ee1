"""The results, schemes side by side, in tabs: variance by depth, distributions, health,
tables, code, experiment. Everything here is display: changing it never reruns the probe."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from initlab import plots, plots_lsuv
from initlab.csvout import csv_text
from initlab.experiment import Experiment
from initlab.health import default_role, thresholds
from initlab.schemes import uses_data
from initlab.ui import keys, theory_view, views
from initlab.ui.spectrum_view import spectrum_tab
from initlab.ui.state import load_upload
from initlab.ui.sweep_view import sweep_tab
from initlab.ui.text import chip, md
from initlab.ui.training_panel import training_tab

ROLES = {
    "residual stream (block outputs)": "block",
    "pre-activation (layers with weights)": "weight",
    "post-activation": "activation",
    "every observed row": "all",
}


def role_options(layers: pd.DataFrame) -> list[str]:
    """The views this model has: the residual stream first (and the default) where it has
    blocks, since that is the quantity a residual network's init is judged on."""
    has_blocks = default_role(layers) == "block"
    return [label for label, role in ROLES.items() if role != "block" or has_blocks]


def verdicts_ui(
    key: str,
    layers: pd.DataFrame,
    colors: dict[str, str],
    input_var: float | None,
    role: str | None = None,
    params: pd.DataFrame | None = None,
) -> None:
    """One sentence per scheme: on the residual stream in its view (and by default where the
    model has blocks), else on the layers with weights."""
    role = "block" if role == "block" else ("weight" if role else default_role(layers))
    same = views.identical_schemes(key, params) if params is not None else {}
    for scheme, sentence in views.verdict_lines(key, input_var, role, layers).items():
        twin = (
            f" Its tensors are exactly those of **{md(same[scheme])}**." if scheme in same else ""
        )
        st.markdown(f"{chip(colors.get(scheme))} **{md(scheme)}**: {md(sentence)}{twin}")


@dataclass(frozen=True)
class View:
    """What every tab draws from: one run's tables and the experiment that made them."""

    key: str  # the run's identity (its experiment JSON): derived views are cached on it
    tables: dict[str, pd.DataFrame]
    exp: Experiment
    colors: dict[str, str]
    input_var: float | None
    report: Callable[[], str] | None = None


BAND = (
    "Lines: the median over seeds; band: their min–max (each seed draws new weights and a new "
    "input, so a wide band means this depth's variance depends on the draw). Dotted: the "
    "input's variance."
)


def variance_tab(view: View) -> None:
    layers = view.tables["layers"]
    options = role_options(layers)
    if st.session_state.get(keys.VIEW_ROLE) not in (None, *options):
        del st.session_state[keys.VIEW_ROLE]  # a view the new model lacks (its blocks)
    rows, toggle = st.columns([3, 1], vertical_alignment="center")
    label = rows.segmented_control(
        "Rows",
        options,
        key=keys.VIEW_ROLE,
        default=options[0],
        required=True,
        bind="query-params",
        label_visibility="collapsed",
    )
    with toggle:
        overlay = theory_view.overlay_toggle()
    role = ROLES.get(label or options[0], "weight")
    verdicts_ui(view.key, layers, view.colors, view.input_var, role, view.tables["params"])
    activations, gradients, found = theory_view.depth_figures(view, role, overlay)
    left, right = st.columns(2)
    left.plotly_chart(activations, key="fig_var")
    right.plotly_chart(gradients, key="fig_grad")
    caption = BAND if len(view.exp.seeds) > 1 else BAND.split("; band")[0] + "."
    dashed = theory_view.has_overlay(found, role)
    st.caption(f"{caption} {theory_view.DASHED}" if dashed else caption)
    if overlay:
        theory_view.theory_ui(found, role, view.colors)


def _default_names(names: list[str], most: int = 4) -> list[str]:
    """Evenly spaced picks, first and last included: depth at a glance."""
    if len(names) <= most:
        return names
    step = (len(names) - 1) / (most - 1)
    return [names[round(i * step)] for i in range(most)]


SCALES = {"shared x (spread)": "shared", "standardized (shape)": "standardized"}


def distributions_tab(view: View) -> None:
    hists = view.tables["histograms"]
    kinds = [k for k in plots.HISTOGRAM_KINDS if (hists["kind"] == k).any()]
    left, right = st.columns(2)
    with left:
        kind = st.segmented_control(
            "Of", kinds, key=keys.HIST_KIND, default=kinds[0], required=True, bind="query-params"
        )
    with right:
        scale = st.segmented_control(
            "Scale",
            list(SCALES),
            key=keys.HIST_SCALE,
            default=next(iter(SCALES)),
            required=True,
            bind="query-params",
            help=SCALE_HELP,
        )
    kind = kind or kinds[0]
    names = layer_names(view.tables, kind)
    picked = st.multiselect(
        "Layers",
        names,
        default=_default_names(names),
        key=keys.hist_names(kind, json.dumps(view.exp.model)),
    )
    fig = views.histogram_figure(
        view.key,
        kind,
        tuple(picked),
        SCALES.get(scale or "", "shared"),
        hists,
        view.tables,
        view.colors,
    )
    st.plotly_chart(fig, key="fig_hist")


SCALE_HELP = (
    "shared x: one value axis per row, to compare spread; standardized: each cell as "
    "(value - mean) / std, to compare shape"
)


def layer_names(tables: dict[str, pd.DataFrame], kind: str) -> list[str]:
    """The histogram's names in forward order (a backward pass meets layers last to first);
    activations and gradients of the layers with weights, where the model has them."""
    hists = tables["histograms"]
    names = list(dict.fromkeys(hists.loc[hists["kind"] == kind, "name"]))
    if kind == "weight":
        return names
    layers = tables["layers"]
    forward = list(dict.fromkeys(layers.loc[layers["role"] == "weight", "layer"]))
    return [n for n in forward if n in set(names)] or names


NUMBER_COLUMNS = (
    "act_mean",
    "act_var",
    "act_std",
    "grad_var",
    "expected_std",
    "mean",
    "std",
    "frac_zero",
    "frac_dead",
    "frac_saturated",
    "gain",
)


def number_formats(frame: pd.DataFrame) -> dict[str, Any]:
    """Three significant digits, so 7e-15 reads as 7e-15, not as 0.000000000000007."""
    return {
        c: st.column_config.NumberColumn(c, format="%.3g")
        for c in NUMBER_COLUMNS
        if c in frame.columns
    }


def health_tab(view: View) -> None:
    layers, params = view.tables["layers"], view.tables["params"]
    verdicts_ui(view.key, layers, view.colors, view.input_var, params=params)
    table = views.health_table(view.key, view.input_var, layers, params)
    bad = table[table["status"] != "ok"]
    st.caption(
        f"{len(bad)} of {len(table)} (scheme, layer) rows flagged; median over seeds. "
        f"depth numbers the {ROLE_NOUNS[default_role(layers)]} as the verdicts do."
    )
    with st.expander("What the statuses mean"):
        st.markdown("\n".join(f"- {md(line)}" for line in thresholds(view.input_var)))
    every = st.toggle(
        "Show every layer, not only the flagged ones", key=keys.HEALTH_ALL, bind="query-params"
    )
    shown = table if every or bad.empty else bad
    st.dataframe(
        shown,
        hide_index=True,
        key="health_table",
        height="content",
        column_config=number_formats(shown),
    )


ROLE_NOUNS = {"block": "blocks", "weight": "layers with weights"}


def tables_tab(view: View) -> None:
    shown = [
        ("params", "What each parameter got: expected vs measured std"),
        ("layers", "One row per (scheme, seed, observed output), in execution order"),
    ]
    if not view.tables.get("lsuv", pd.DataFrame()).empty:
        lsuv_chart(view)
        shown.append(("lsuv", LSUV_CAPTION))
    for name, caption in shown:
        st.subheader(name)
        st.caption(caption)
        frame = view.tables[name]
        st.dataframe(
            frame,
            hide_index=True,
            height=300,
            key=f"table_{name}",
            column_config=number_formats(frame),
        )
        st.download_button(
            f"Download {name}.csv",
            csv_text(frame),
            file_name=f"{name}.csv",
            mime="text/csv",
            key=f"dl_{name}",
        )


LSUV_CAPTION = (
    "One row per LSUV forward pass: each layer's output variance on the batch, from the "
    "orthonormal draw (iteration 0) until |variance − 1| < tol"
)


LSUV_CODE = (
    " A scheme with LSUV rescales on data, so its function takes the batch too: "
    "`initialize_weights(model, batch, generator)`; the same batch gives the same tensors."
)


def lsuv_chart(view: View) -> None:
    st.plotly_chart(plots_lsuv.lsuv_log(view.tables["lsuv"], view.colors), key="fig_lsuv")


def code_tab(view: View) -> None:
    st.caption(
        "Step 1 of the recipe, written for you: paste it into your project and call "
        "`initialize_weights(model, generator)`. It reproduces these tensors bit for bit."
        + (LSUV_CODE if any(uses_data(s) for s in view.exp.schemes) else "")
    )
    model_json = json.dumps(view.exp.model, sort_keys=True)
    for i, scheme in enumerate(view.exp.schemes):
        code = views.scheme_code(model_json, json.dumps(scheme.to_dict(), sort_keys=True))
        with st.expander(md(scheme.name), expanded=i == 0):  # a label is markdown
            st.code(code, language="python")
            st.download_button(
                "Download .py",
                code,
                file_name=f"init_{_slug(scheme.name)}.py",
                mime="text/x-python",
                key=f"dl_code_{i}",
                on_click="ignore",
            )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "scheme"


def experiment_tab(view: View) -> None:
    text = view.exp.to_json()
    st.download_button(
        "Download experiment.json",
        text,
        file_name="experiment.json",
        mime="application/json",
        key="dl_experiment",
        on_click="ignore",
    )
    if view.report is not None:
        st.download_button(
            "Download report.html",
            view.report,
            file_name="report.html",
            mime="text/html",
            key="dl_report",
            on_click="ignore",
        )
    st.file_uploader(
        "Load an experiment (JSON)",
        type=["json"],
        key=keys.UPLOAD,
        on_change=load_upload,
        max_upload_size=1,
    )
    st.code(text, language="json")


# The page's views, in tab order: a new view is one entry (title, function of the View).
TABS: tuple[tuple[str, Callable[[View], None]], ...] = (
    ("Variance by depth", variance_tab),
    ("Distributions", distributions_tab),
    ("Health", health_tab),
    ("Spectrum", spectrum_tab),
    ("Training", training_tab),
    ("Sweep", sweep_tab),
    ("Tables", tables_tab),
    ("Code", code_tab),
    ("Experiment", experiment_tab),
)


def results_ui(
    tables: dict[str, pd.DataFrame],
    exp: Experiment,
    colors: dict[str, str],
    report: Callable[[], str] | None = None,
) -> None:
    """The tabs; only the open one is computed and sent (the first chart comes sooner), and
    which one is open is in the address (`?tab=...`)."""
    view = View(exp.to_json(), tables, exp, colors, exp.input_variance(), report)
    containers = st.tabs([title for title, _ in TABS], key=keys.TAB, bind="query-params")
    for (_, draw), tab in zip(TABS, containers, strict=True):
        if tab.open is not False:  # None: state not tracked, every tab is drawn
            with tab:
                draw(view)
