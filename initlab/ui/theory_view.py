"""The mean-field prediction beside the measurement in the Variance by depth view.

A toggle draws each scheme's predicted pre-activation and gradient variance (`initlab.theory`)
dashed in the scheme's colour on both depth charts, and says in one line per scheme which
phase it is in. The prediction and the figures are cached on the run's key like the other
derived views (`initlab.ui.views`): showing it never reruns the probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from initlab.experiment import Experiment
from initlab.plots_theory import add_theory
from initlab.theory import Theory, predict, with_measured
from initlab.ui import keys, views
from initlab.ui.text import chip, md

if TYPE_CHECKING:
    from initlab.ui.results_panel import View

OVERLAY = keys.THEORY_OVERLAY  # the toggle; bound to the address as `theory.overlay=false`
ENTRIES = 64
ROLE = "weight"  # the length map predicts pre-activations: the outputs of layers with weights
DASHED = "Dashed: the mean-field prediction."
OVERLAY_HELP = (
    "The mean-field length map (Poole et al. 2016) and the backward map χ₁ (Schoenholz et al. "
    "2017) for a plain Linear → activation chain: predicted variance of each layer's output "
    "and of its gradient, from the scheme's weight and bias variances alone."
)


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def theory_of(key: str, _exp: Experiment, _layers: pd.DataFrame) -> Theory:
    """The prediction for every scheme of the run, the measured medians beside it."""
    found = predict(_exp)
    return Theory(with_measured(found.layers, _layers), found.schemes)


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def overlay_figures(
    key: str,
    _layers: pd.DataFrame,
    _theory: pd.DataFrame,
    _colors: dict[str, str],
    input_var: float | None,
) -> tuple[go.Figure, go.Figure]:
    """The two depth charts of the layers with weights, each scheme's prediction dashed (the
    gradient chart only where the backward pass ran: else it says so and stays empty)."""
    activations, gradients = views.variance_figures(key, ROLE, _layers, _colors, input_var)
    add_theory(activations, _theory, "act_var", _colors)
    if pd.to_numeric(_layers["grad_var"], errors="coerce").notna().any():
        add_theory(gradients, _theory, "grad_var", _colors)
    return activations, gradients


def overlay_toggle() -> bool:
    return st.toggle(
        "Mean-field prediction", value=True, key=OVERLAY, bind="query-params", help=OVERLAY_HELP
    )


def depth_figures(
    view: View, role: str, overlay: bool
) -> tuple[go.Figure, go.Figure, Theory | None]:
    """The depth charts of `role`'s rows, with the prediction dashed where it is asked for
    and the rows are the ones it predicts; the prediction too (None: not asked for)."""
    layers = view.tables["layers"]
    found = theory_of(view.key, view.exp, layers) if overlay else None
    if found is None or found.layers.empty or role != ROLE:
        plain = views.variance_figures(view.key, role, layers, view.colors, view.input_var)
        return (*plain, found)
    figures = overlay_figures(view.key, layers, found.layers, view.colors, view.input_var)
    return (*figures, found)


def theory_ui(found: Theory | None, role: str, colors: dict[str, str]) -> None:
    """Under the charts: one line saying why there is no prediction (the model's reason, the
    same for every scheme), or which rows it is of, or one line per scheme naming its phase."""
    if found is None:
        return
    reasons = set(found.schemes["reason"])
    if found.layers.empty and len(reasons) == 1:
        st.caption(f"No mean-field prediction: {md(reasons.pop())}.")
    elif role != ROLE:
        st.caption(
            "The mean-field prediction is of the layers with weights (pre-activations): "
            "show those rows to see it beside the measurement."
        )
    else:
        for row in found.schemes.itertuples(index=False):
            verdict = md(row.verdict)
            st.markdown(
                f"{chip(colors.get(row.scheme))} **{md(row.scheme)}**, mean field: {verdict}"
            )


def has_overlay(found: Theory | None, role: str) -> bool:
    """Whether the charts carry dashed predictions (a caption then says what they are)."""
    return found is not None and not found.layers.empty and role == ROLE
