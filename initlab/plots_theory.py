"""Figures of the theory beside the measurement: the `theory` and `spectrum` tables in, a plotly
Figure out.

No torch and no streamlit, as in `initlab.plots`, whose pieces these figures share: the scheme
colours, the layout patch, the escaping of names (scheme names are user text; plotly would
render their markup) and the depth chart itself, onto which the predictions are drawn dashed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from initlab.health import scheme_order
from initlab.plots import (
    DESIGN_WIDTH,
    _colors_for,
    _empty,
    _fmt,
    _style,
    _text,
    tidy,
    variance_by_depth,
)

# The measured column of the probe's layers table -> the predicted column of theory's layers.
PREDICTED = {"act_var": "q", "grad_var": "grad_var"}
SPECTRUM_BINS = 40
# Below this share of its Jacobian's largest singular value, a singular value is rounding of
# an exact 0 (a ReLU network's Jacobian is rank-deficient: dead units): counted, not drawn.
# numpy.linalg.matrix_rank's tolerance, max(M, N)·eps, at the exact path's 1024 × 1024.
ZERO_RTOL = 1024 * float(np.finfo(np.float64).eps)
DASHED_PX, DASHED_OPACITY = 5, 0.45  # the measured lines are 2 px, opaque


def add_theory(
    fig: go.Figure,
    theory_layers: pd.DataFrame,
    value: str = "act_var",
    colors: dict[str, str] | None = None,
) -> go.Figure:
    """`fig` (a variance-by-depth chart of the Linear rows) with each scheme's mean-field
    prediction of `value` as a dashed line in the scheme's colour, in its legend group."""
    if value not in PREDICTED:
        raise ValueError(f"value: one of {', '.join(PREDICTED)}; got {value!r}")
    if theory_layers.empty:
        return fig
    palette = _colors_for(theory_layers, colors)
    for scheme in scheme_order(theory_layers):
        part = theory_layers[theory_layers["scheme"] == scheme].sort_values("depth")
        y = pd.to_numeric(part[PREDICTED[value]], errors="coerce").to_numpy(dtype=float)
        fig.add_trace(_dashed(part["depth"], np.where(y > 0, y, np.nan), scheme, palette[scheme]))
    return fig


def _dashed(depth: pd.Series, y: np.ndarray, scheme: str, color: str) -> go.Scatter:
    return go.Scatter(
        x=depth,
        y=y,
        name=_text(f"{scheme} (mean-field)"),
        legendgroup=scheme,
        showlegend=False,  # the legend's rows are laid out for the schemes: one entry each
        mode="lines",
        # Wider than the measured line and translucent: where the two agree (the point of the
        # overlay) the dashes still show, as beads along the measured line, in its colour.
        line={"color": color, "dash": "dash", "width": DASHED_PX},
        opacity=DASHED_OPACITY,
        hovertemplate="layer %{x}: predicted %{y:.3g}<extra>%{fullData.name}</extra>",
    )


def variance_with_theory(
    layers: pd.DataFrame,
    theory_layers: pd.DataFrame,
    value: str = "act_var",
    colors: dict[str, str] | None = None,
    width: int = DESIGN_WIDTH,
) -> go.Figure:
    """`initlab.plots.variance_by_depth` of the layers with weights, the prediction dashed."""
    layers = tidy(layers)
    colors = _colors_for(layers, colors)  # the measured and the predicted lines must agree
    fig = variance_by_depth(layers, value, "weight", colors=colors, width=width)
    return add_theory(fig, theory_layers, value, colors)


# ---------------------------------------------------------------- spectrum


def spectrum_histograms(
    values: pd.DataFrame,
    summary: pd.DataFrame,
    colors: dict[str, str] | None = None,
    bins: int = SPECTRUM_BINS,
) -> go.Figure:
    """One histogram of log10 of the Jacobian's singular values per scheme, side by side (all
    seeds and inputs), titled with the measured and predicted var(λ)/mean(λ)²; values that
    are numerically 0 (ZERO_RTOL) are counted under the axis, not drawn."""
    title = "Singular values of the input-output Jacobian"
    if values.empty:
        return _empty(title, "no spectrum: nothing was measured")
    schemes = scheme_order(values)
    palette = _colors_for(values, colors)
    drawn = _nonzero(values)
    edges = _log_edges(values.loc[drawn, "singular_value"], bins)
    titles = [_cell_title(summary[summary["scheme"] == s], s) for s in schemes]
    fig = make_subplots(rows=1, cols=len(schemes), subplot_titles=titles, shared_yaxes=True)
    for col, scheme in enumerate(schemes, start=1):
        mine = values["scheme"] == scheme
        fig.add_trace(_bars(values[mine & drawn], edges, scheme, palette[scheme]), row=1, col=col)
        fig.update_xaxes(title_text=_axis_title(mine, drawn), row=1, col=col)
    fig.update_yaxes(title_text="count", row=1, col=1)
    fig.update_layout(showlegend=False, bargap=0, height=380)
    return _style(fig, title)


def _nonzero(values: pd.DataFrame) -> pd.Series:
    """Whether each singular value is above rounding of 0 relative to its Jacobian's largest."""
    s = pd.to_numeric(values["singular_value"], errors="coerce")
    top = s.groupby([values["scheme"], values["seed"], values["input"]]).transform("max")
    return ~(s <= top * ZERO_RTOL)  # NaN stays in: _logs drops it, as it drops inf


def _axis_title(mine: pd.Series, drawn: pd.Series) -> str:
    zeros = int((mine & ~drawn).sum())
    if not zeros:
        return "log₁₀ singular value"
    return f"log₁₀ singular value<br>{zeros} of {int(mine.sum())} numerically 0, not drawn"


def _log_edges(s: pd.Series, bins: int) -> np.ndarray:
    """Shared bin edges over log10 s (zeros and non-finite values left out)."""
    logs = _logs(s)
    low, high = (logs.min(), logs.max()) if logs.size else (-1.0, 1.0)
    if high - low < 1e-9:  # an isometry: every value the same
        low, high = low - 0.05, high + 0.05
    return np.linspace(low, high, bins + 1)


def _logs(s: pd.Series) -> np.ndarray:
    raw = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return np.log10(raw[np.isfinite(raw) & (raw > 0)])


def _bars(part: pd.DataFrame, edges: np.ndarray, scheme: str, color: str) -> go.Bar:
    counts, _ = np.histogram(_logs(part["singular_value"]), edges)
    label = " (estimate: largest and smallest only)" if part["estimate"].any() else ""
    return go.Bar(
        x=(edges[:-1] + edges[1:]) / 2,
        y=counts,
        width=np.diff(edges),
        name=_text(scheme + label),
        marker={"color": color},
        hovertemplate="log₁₀ s %{x:.2f}: %{y}<extra>%{fullData.name}</extra>",
    )


def _cell_title(rows: pd.DataFrame, scheme: str) -> str:
    """The scheme, then measured (mean over seeds and inputs) and predicted var(λ)/mean(λ)²."""
    measured = pd.to_numeric(rows["norm_var"], errors="coerce").mean()
    predicted = pd.to_numeric(rows["predicted_norm_var"], errors="coerce").mean()
    estimate = " (estimate)" if rows["estimate"].any() else ""
    line = f"var(λ)/mean(λ)² = {_fmt(measured)}{estimate}"
    if math.isfinite(predicted):
        line += f", predicted {_fmt(predicted)}"
    return f"{_text(scheme)}<br>{line}"
