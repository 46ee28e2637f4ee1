"""Derived views of one run's results, cached on (run key, view options).

A rerun that only changes the display (another tab's control, a layer picked) rebuilds only the
view that changed; figures, verdicts and the health table of a run are computed once. The run's
key is its experiment JSON, so the (unhashed) tables passed along are always that run's.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from initlab import plots
from initlab.gotchas import same_tensors
from initlab.health import layer_health, verdicts

ENTRIES = 64


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def verdict_lines(
    key: str, input_var: float | None, role: str, _layers: pd.DataFrame
) -> dict[str, str]:
    return verdicts(_layers, input_var=input_var, role=role)


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def variance_figures(
    key: str, role: str, _layers: pd.DataFrame, _colors: dict[str, str]
) -> tuple[go.Figure, go.Figure]:
    return (
        plots.variance_by_depth(_layers, role=role, colors=_colors),
        plots.grad_variance_by_depth(_layers, role=role, colors=_colors),
    )


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def histogram_figure(
    key: str, kind: str, names: tuple[str, ...], _hists: pd.DataFrame, _colors: dict[str, str]
) -> go.Figure:
    return plots.histogram_grid(_hists, kind, names=list(names) or None, colors=_colors)


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def health_table(
    key: str, input_var: float | None, _layers: pd.DataFrame, _params: pd.DataFrame
) -> pd.DataFrame:
    return layer_health(_layers, input_var=input_var, params=_params)


@st.cache_data(max_entries=ENTRIES, show_spinner=False)
def identical_schemes(key: str, _params: pd.DataFrame) -> dict[str, str]:
    return same_tensors(_params)
