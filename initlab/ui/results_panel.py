"""The results, schemes side by side, in tabs: variance by depth, distributions, health,
tables, code, experiment. Everything here is display: changing it never reruns the probe."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from initlab import plots
from initlab.codegen import to_code
from initlab.csvout import csv_text
from initlab.experiment import Experiment
from initlab.health import default_role, thresholds
from initlab.ui import views
from initlab.ui.state import load_upload
from initlab.ui.text import md

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


_HEX_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")


def chip(color: str | None) -> str:
    """A dot in the scheme's chart colour, drawn by streamlit's colour directive (no HTML);
    only a plain hex colour goes into it, anything else is a grey dot."""
    if color is None or not _HEX_COLOR.fullmatch(color):
        return ":gray[●]"
    return f':color[●]{{foreground="{color}"}}'


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


def variance_tab(
    key: str, tables: dict[str, pd.DataFrame], colors: dict[str, str], input_var: float | None
) -> None:
    layers = tables["layers"]
    options = role_options(layers)
    if st.session_state.get("view_role") not in (None, *options):
        del st.session_state["view_role"]  # a view the new model lacks (its blocks)
    label = st.segmented_control(
        "Rows", options, key="view_role", default=options[0], required=True
    )
    role = ROLES.get(label or options[0], "weight")
    verdicts_ui(key, layers, colors, input_var, role, tables["params"])
    activations, gradients = views.variance_figures(key, role, layers, colors)
    left, right = st.columns(2)
    left.plotly_chart(activations, key="fig_var")
    right.plotly_chart(gradients, key="fig_grad")


def _default_names(names: list[str], most: int = 4) -> list[str]:
    """Evenly spaced picks, first and last included: depth at a glance."""
    if len(names) <= most:
        return names
    step = (len(names) - 1) / (most - 1)
    return [names[round(i * step)] for i in range(most)]


def distributions_tab(key: str, tables: dict[str, pd.DataFrame], colors: dict[str, str]) -> None:
    hists = tables["histograms"]
    kinds = [k for k in plots.HISTOGRAM_KINDS if (hists["kind"] == k).any()]
    kind = st.segmented_control("Of", kinds, key="hist_kind", default=kinds[0], required=True)
    kind = kind or kinds[0]
    names = list(dict.fromkeys(hists.loc[hists["kind"] == kind, "name"]))
    if kind != "weight":
        weighted = tables["layers"].loc[tables["layers"]["role"] == "weight", "layer"]
        names = [n for n in names if n in set(weighted)] or names
    picked = st.multiselect(
        "Layers", names, default=_default_names(names), key=f"hist_names_{kind}"
    )
    fig = views.histogram_figure(key, kind, tuple(picked), hists, colors)
    st.plotly_chart(fig, key="fig_hist")


NUMBER_COLUMNS = ("act_mean", "act_var", "act_std", "grad_var", "expected_std", "mean", "std",
                  "frac_zero", "frac_dead", "frac_saturated", "gain")  # fmt: skip


def number_formats(frame: pd.DataFrame) -> dict[str, Any]:
    """Three significant digits, so 7e-15 reads as 7e-15, not as 0.000000000000007."""
    return {c: st.column_config.NumberColumn(c, format="%.3g")
            for c in NUMBER_COLUMNS if c in frame.columns}  # fmt: skip


def health_tab(
    key: str, tables: dict[str, pd.DataFrame], colors: dict[str, str], input_var: float | None
) -> None:
    verdicts_ui(key, tables["layers"], colors, input_var, params=tables["params"])
    table = views.health_table(key, input_var, tables["layers"], tables["params"])
    bad = table[table["status"] != "ok"]
    st.caption(f"{len(bad)} of {len(table)} (scheme, layer) rows flagged; median over seeds.")
    with st.expander("What the statuses mean"):
        st.markdown("\n".join(f"- {md(line)}" for line in thresholds(input_var)))
    every = st.toggle("Show every layer, not only the flagged ones", key="health_all")
    shown = table if every or bad.empty else bad
    st.dataframe(
        shown, hide_index=True, key="health_table", height=360, column_config=number_formats(shown)
    )


def tables_tab(tables: dict[str, pd.DataFrame]) -> None:
    for name, caption in (
        ("params", "What each parameter got: expected vs measured std"),
        ("layers", "One row per (scheme, seed, leaf-module call)"),
    ):
        st.subheader(name)
        st.caption(caption)
        st.dataframe(
            tables[name],
            hide_index=True,
            height=300,
            key=f"table_{name}",
            column_config=number_formats(tables[name]),
        )
        st.download_button(
            f"Download {name}.csv",
            csv_text(tables[name]),
            file_name=f"{name}.csv",
            mime="text/csv",
            key=f"dl_{name}",
        )


def code_tab(exp: Experiment) -> None:
    st.caption(
        "Step 1 of the recipe, written for you: paste it into your project and call "
        "`initialize_weights(model, generator)`. It reproduces these tensors bit for bit."
    )
    for i, scheme in enumerate(exp.schemes):
        code = to_code(scheme)
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


def experiment_tab(exp: Experiment, report_html: Callable[[], str] | None) -> None:
    st.download_button(
        "Download experiment.json",
        exp.to_json(),
        file_name="experiment.json",
        mime="application/json",
        key="dl_experiment",
        on_click="ignore",
    )
    if report_html is not None:
        st.download_button(
            "Download report.html",
            report_html,
            file_name="report.html",
            mime="text/html",
            key="dl_report",
            on_click="ignore",
        )
    st.file_uploader(
        "Load an experiment (JSON)",
        type=["json"],
        key="upload",
        on_change=load_upload,
        max_upload_size=1,
    )
    st.code(exp.to_json(), language="json")


def results_ui(
    tables: dict[str, pd.DataFrame], exp: Experiment, colors: dict[str, str], report: Any = None
) -> None:
    input_var = exp.input_variance()
    tabs = st.tabs(["Variance by depth", "Distributions", "Health", "Tables", "Code", "Experiment"])
    key = exp.to_json()  # the run's identity: derived views are cached on it
    with tabs[0]:
        variance_tab(key, tables, colors, input_var)
    with tabs[1]:
        distributions_tab(key, tables, colors)
    with tabs[2]:
        health_tab(key, tables, colors, input_var)
    with tabs[3]:
        tables_tab(tables)
    with tabs[4]:
        code_tab(exp)
    with tabs[5]:
        experiment_tab(exp, report)
