"""Derived views of one run's results, cached on (run key, view options).

A rerun that only changes the display (another tab's control, a layer picked) rebuilds only the
view that changed; figures, verdicts and the health table of a run are computed once. The run's
key is its experiment JSON, so the (unhashed) tables passed along are always that run's.
"""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from initlab import plots
from initlab.codegen import to_code
from initlab.gotchas import same_tensors
from initlab.health import default_role, layer_health, numbered, verdicts
from initlab.schemes import Scheme
from initlab.ui.runner import meta_model_cached

ENTRIES = 64


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def verdict_lines(
    key: str, input_var: float | None, role: str, _layers: pd.DataFrame
) -> dict[str, str]:
    return verdicts(_layers, input_var=input_var, role=role)


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def variance_figures(
    key: str, role: str, _layers: pd.DataFrame, _colors: dict[str, str], input_var: float | None
) -> tuple[go.Figure, go.Figure]:
    return (
        plots.variance_by_depth(_layers, role=role, colors=_colors, input_var=input_var),
        plots.grad_variance_by_depth(_layers, role=role, colors=_colors),
    )


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def histogram_figure(
    key: str,
    kind: str,
    names: tuple[str, ...],
    scale: str,
    _hists: pd.DataFrame,
    _tables: dict[str, pd.DataFrame],
    _colors: dict[str, str],
) -> go.Figure:
    moments = plots.histogram_moments(_tables["layers"], _tables["params"])
    return plots.histogram_grid(
        _hists, kind, names=list(names) or None, colors=_colors, scale=scale, moments=moments
    )


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def health_table(
    key: str, input_var: float | None, _layers: pd.DataFrame, _params: pd.DataFrame
) -> pd.DataFrame:
    """The health table numbered as the verdicts number depth."""
    table = layer_health(_layers, input_var=input_var, params=_params)
    return numbered(table, default_role(_layers))


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def scheme_code(model_json: str, scheme_json: str) -> str:
    """A scheme as code for this model: only its rules that match a layer of the model."""
    scheme = Scheme.from_dict(json.loads(scheme_json), "scheme")
    return to_code(scheme, model=meta_model_cached(model_json))


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def identical_schemes(key: str, _params: pd.DataFrame) -> dict[str, str]:
    return same_tensors(_params)
