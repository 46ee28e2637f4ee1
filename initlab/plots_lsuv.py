"""The LSUV log as a figure: each layer's output variance, pass by pass, until it reaches 1.

The `lsuv` results table in (scheme, seed, layer, param, iteration, variance, converged), a
plotly Figure out; no torch and no streamlit, as in `initlab.plots`, whose colours, escaping
and layout patch it shares.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from initlab.health import scheme_order
from initlab.plots import _colors_for, _empty, _style, _text

TITLE = "LSUV: output variance by pass"
HOVER = "layer %{customdata}, pass %{x}: variance %{y:.4g}<extra>%{fullData.name}</extra>"


def lsuv_log(log: pd.DataFrame, colors: dict[str, str] | None = None) -> go.Figure:
    """A line per layer (first seed of each scheme, in the scheme's colour) from the variance
    after the orthonormal draw (pass 0) to where it stopped; the target 1 dotted."""
    if log.empty:
        return _empty(TITLE, "no scheme uses lsuv")
    palette = _colors_for(log, colors)
    fig = go.Figure()
    for scheme in scheme_order(log):
        rows = log[log["scheme"] == scheme]
        rows = rows[rows["seed"] == rows["seed"].iloc[0]]
        for k, (layer, part) in enumerate(rows.groupby("layer", sort=False)):
            fig.add_trace(_layer_line(part, str(scheme), str(layer), palette[scheme], k == 0))
    passes = int(log["iteration"].max())
    fig.add_hline(y=1.0, line={"dash": "dot", "color": "#888", "width": 1})
    fig.update_xaxes(
        title="pass (0: after the orthonormal draw)", dtick=1, range=[-0.2, passes + 0.2]
    )
    fig.update_yaxes(title="output variance", type="log")
    fig.update_layout(height=360, showlegend=True)
    return _style(fig, TITLE)


def _layer_line(part: pd.DataFrame, scheme: str, layer: str, color: str, first: bool) -> go.Scatter:
    return go.Scatter(
        x=part["iteration"],
        y=part["variance"].where(part["variance"] > 0),  # a zero cannot sit on a log axis
        name=_text(scheme),
        legendgroup=_text(scheme),
        showlegend=first,  # one legend entry per scheme, not per layer
        mode="lines+markers",
        line={"color": color, "width": 1.2},
        marker={"size": 5},
        customdata=[_text(layer)] * len(part),
        hovertemplate=HOVER,
    )


def lsuv_summary(log: pd.DataFrame) -> pd.DataFrame:
    """Per scheme and layer (first seed): the passes LSUV took, the variance after the
    orthonormal draw, the variance it ended at, and whether that is within tol."""
    first = log[log["seed"] == log.groupby("scheme")["seed"].transform("first")]
    grouped = first.groupby(["scheme", "layer"], sort=False)
    return pd.DataFrame(
        {
            "passes": grouped["iteration"].max() + 1,
            "variance_first": grouped["variance"].first(),
            "variance_last": grouped["variance"].last(),
            "converged": grouped["converged"].last(),
        }
    ).reset_index()
