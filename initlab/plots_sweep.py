"""Figures of a sweep's table (initlab.sweep): the phase diagram, the coordinate check and
depth-at-failure curves, and the sweep's standalone HTML report.

No torch and no streamlit here. The mean-field critical line is computed by Gauss–Hermite
quadrature: for σ_w², σ_b² the length map's fixed point q* = σ_w² E[φ(√q* z)²] + σ_b², then
χ₁ = σ_w² E[φ'(√q* z)²] (Poole et al. 2016, Schoenholz et al. 2017); the line is χ₁ = 1.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from initlab.meanfield import ACTIVATIONS, chi, fixed_point
from initlab.plots import _empty, _style, _text, scheme_colors

RATIOS = {
    "gradient_ratio": "gradient ratio (first layer's gradient variance / last layer's)",
    "variance_ratio": "variance ratio (last layer's activation variance / first layer's)",
}
FAILURE_LIMIT = 100.0  # a ratio beyond 100× either way: the signal exploded or vanished
MAX_LINES = 6  # layers drawn in a coordinate check
ArrayFn = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------- mean field


def chi1(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """χ₁ at the length map's fixed point q*, reached from q = 1 (`initlab.meanfield`); inf
    where the map grows without bound."""
    act = ACTIVATIONS[activation]
    q = fixed_point(act, sigma_w2, sigma_b2, 1.0)
    return chi(act, q, sigma_w2) if math.isfinite(q) else math.inf


def critical_sigma_w2(activation: str, sigma_b2: float) -> float | None:
    """The smallest σ_w² in [10⁻², 10²] where χ₁ reaches 1 at this σ_b² (a scan on a log
    grid, then bisection); None where it does not, or for an activation not known here."""
    if activation not in ACTIVATIONS:
        return None
    grid = np.geomspace(1e-2, 1e2, 25)
    above = [chi1(activation, float(s), sigma_b2) >= 1.0 for s in grid]
    if True not in above or above[0]:
        return None
    i = above.index(True)
    lo, hi = math.log(grid[i - 1]), math.log(grid[i])
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if chi1(activation, math.exp(mid), sigma_b2) < 1.0 else (lo, mid)
    return math.exp(0.5 * (lo + hi))


# ---------------------------------------------------------------- per-cell ratios


def cell_ratios(table: pd.DataFrame, role: str = "weight") -> pd.DataFrame:
    """One row per (cell, scheme, seed): every column constant within it (the axes, σ_w², σ_b²)
    plus `variance_ratio` and `gradient_ratio` over the rows of `role` in execution order."""
    rows = table[table["role"] == role].sort_values(["cell", "scheme", "seed", "order"])
    groups = rows.groupby(["cell", "scheme", "seed"], sort=False)
    first, last = groups.first(), groups.last()
    out = first.drop(columns=[c for c in _LAYER_ONLY if c in first.columns])
    return out.assign(
        variance_ratio=last["act_var"] / first["act_var"],
        gradient_ratio=first["grad_var"] / last["grad_var"],
        layers=groups.size(),
    ).reset_index()


_LAYER_ONLY = ["order", "layer", "type", "role", "act_mean", "act_var", "act_std", "frac_zero",
               "frac_dead", "frac_saturated", "nonfinite", "grad_var"]  # fmt: skip


def _log_mean(ratios: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """The geometric mean over seeds (a ratio's log is what the colour shows); NaN where
    any seed's ratio is not a finite positive number."""
    logs = np.log10(ratios[value].where(ratios[value] > 0))
    logs = logs.where(np.isfinite(logs))
    frame = ratios[keys].assign(log=logs)
    return frame.groupby(keys, sort=True)["log"].agg(lambda s: s.mean(skipna=False)).reset_index()


def _first_values(
    ratios: pd.DataFrame, keep: list[str], axes: list[str]
) -> tuple[pd.DataFrame, str]:
    """Rows at the first value of every other axis that varies, and the words that say so."""
    fixed = []
    for axis in axes:
        if axis not in keep and ratios[axis].nunique() > 1:
            value = ratios[axis].iloc[0]
            ratios = ratios[ratios[axis] == value]
            fixed.append(f"{axis}={value}")
    return ratios, (" at " + ", ".join(fixed)) if fixed else ""


# ---------------------------------------------------------------- figures


def phase_diagram(
    table: pd.DataFrame,
    x: str,
    y: str,
    value: str = "gradient_ratio",
    scheme: str | None = None,
    activation: str | None = None,
    axes: list[str] | None = None,
) -> go.Figure:
    """A heatmap of a cell's ratio (geometric mean over seeds, log colour) over columns `x`
    and `y` for one scheme (default the first); with `activation` (the model's, an MLP's) and
    σ_w² (`sigma_w2`) on one axis, the mean-field critical line χ₁ = 1 on top."""
    if value not in RATIOS:
        raise ValueError(f"value: must be one of {', '.join(RATIOS)}; got {value!r}")
    ratios = cell_ratios(table)
    scheme = scheme if scheme is not None else (ratios["scheme"].iloc[0] if len(ratios) else "")
    ratios = ratios[ratios["scheme"] == scheme]
    ratios, where = _first_values(ratios, [x, y], axes or [])
    title = f"Phase diagram: {RATIOS[value].split(' (')[0]}, {_text(scheme)}{_text(where)}"
    grid = _log_mean(ratios, [y, x], value).pivot(index=y, columns=x, values="log")
    if grid.empty or not np.isfinite(grid.to_numpy(dtype=float)).any():
        return _empty(title, "no finite positive ratios to draw")
    fig = go.Figure(_heatmap(grid, value))
    _critical_line(fig, ratios, x, y, activation)
    fig.update_xaxes(title=_text(x), **_axis_ticks(grid.columns))
    fig.update_yaxes(title=_text(y), **_axis_ticks(grid.index))
    fig.update_layout(height=480, legend={"orientation": "h", "y": -0.2})
    return _style(fig, title)


def _heatmap(grid: pd.DataFrame, value: str) -> go.Heatmap:
    z = grid.to_numpy(dtype=float)
    span = max(1.0, float(np.nanmax(np.abs(z))))
    ticks = list(range(-math.ceil(span), math.ceil(span) + 1))
    step = max(1, len(ticks) // 8)
    return go.Heatmap(
        x=grid.columns.to_numpy(), y=grid.index.to_numpy(), z=z, zmid=0, zmin=-span, zmax=span,
        colorscale="RdBu_r", customdata=10.0**z,
        hovertemplate="%{x}, %{y}: %{customdata:.3g}<extra></extra>",
        colorbar={"title": {"text": value.replace("_", " ")}, "tickvals": ticks[::step],
                  "ticktext": [f"10^{t}" for t in ticks[::step]]},
    )  # fmt: skip


def _scale(values: pd.Index) -> str:
    """Log axes for positive values spanning more than two decades, or spaced evenly in log
    far more than in value (depths 5, 10, 20, 40: a row each, of one height)."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").sort_values()
    if not (v.notna().all() and (v > 0).all()):
        return "linear"
    if v.max() / v.min() > 100:
        return "log"
    return "log" if len(v) > 2 and _spread(np.log(v)) < 0.5 * _spread(v) else "linear"


def _axis_ticks(values: pd.Index) -> dict[str, Any]:
    """The axis type; on a log axis of a few values, a tick at each (plotly's own log ticks
    between decades read 2, 3, 4 for 20, 30, 40)."""
    scale = _scale(values)
    if scale != "log" or len(values) > 12:
        return {"type": scale}
    ticks = [float(v) for v in values]
    return {"type": scale, "tickvals": ticks, "ticktext": [f"{t:.3g}" for t in ticks]}


def _spread(v: pd.Series) -> float:
    """How unevenly sorted values are spaced: the steps' coefficient of variation."""
    steps = np.diff(v.to_numpy(dtype=float))
    return float(np.std(steps) / np.mean(steps)) if np.mean(steps) > 0 else 0.0


def _critical_line(
    fig: go.Figure, ratios: pd.DataFrame, x: str, y: str, activation: str | None
) -> None:
    """χ₁ = 1 over the other axis: a curve when it is σ_b², else a line at σ_b²'s one value."""
    if activation not in ACTIVATIONS or "sigma_w2" not in (x, y):
        return
    other = y if x == "sigma_w2" else x
    if other != "sigma_b2" and ratios["sigma_b2"].nunique() != 1:
        return  # σ_b² varies along an axis not drawn: no single line to show
    spans = sorted(ratios[other].unique())
    bias = spans if other == "sigma_b2" else [ratios["sigma_b2"].iloc[0]] * len(spans)
    crit = [critical_sigma_w2(activation, float(b)) for b in bias]
    points = [(c, o) for c, o in zip(crit, spans, strict=True) if c is not None]
    if not points:
        return
    cs, os_ = zip(*points, strict=True)
    xs, ys = (cs, os_) if x == "sigma_w2" else (os_, cs)
    fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="lines", name="mean field: χ₁ = 1",
                             line={"color": "black", "dash": "dash", "width": 2}))  # fmt: skip


def coordinate_check(
    table: pd.DataFrame,
    width: str = "model.width",
    role: str = "weight",
    axes: list[str] | None = None,
) -> go.Figure:
    """Activation size (RMS, mean over seeds) against `width`, a line per layer (up to six,
    evenly picked), a panel per scheme: μP's coordinate check, where a flat line is a layer
    whose activations keep their size as the network widens."""
    rows = table[table["role"] == role]
    rows, where = _first_values(rows, [width], axes or [])
    rows = rows.assign(rms=np.sqrt(rows["act_mean"] ** 2 + rows["act_var"]))
    title = f"Coordinate check: activation size against {_text(width)}{_text(where)}"
    if rows.empty:
        return _empty(title, f"no rows of role {role!r}")
    schemes = list(dict.fromkeys(rows["scheme"]))
    fig = make_subplots(rows=1, cols=len(schemes), subplot_titles=[_text(s) for s in schemes])
    for col, scheme in enumerate(schemes, start=1):
        _coordinate_lines(fig, rows[rows["scheme"] == scheme], width, col)
    fig.update_xaxes(type="log", title=_text(width))
    fig.update_yaxes(type="log")
    fig.update_yaxes(title="activation RMS", col=1)
    fig.update_layout(height=420)
    return _style(fig, title)


def _coordinate_lines(fig: go.Figure, rows: pd.DataFrame, width: str, col: int) -> None:
    names = list(dict.fromkeys(rows.sort_values("order")["layer"]))
    picked = [names[round(i)] for i in np.linspace(0, len(names) - 1, min(MAX_LINES, len(names)))]
    colors = scheme_colors(list(dict.fromkeys(picked)))
    for layer in dict.fromkeys(picked):
        part = rows[rows["layer"] == layer].groupby(width, sort=True)["rms"].mean()
        fig.add_trace(go.Scatter(x=part.index, y=part.to_numpy(), name=_text(layer),
                                 legendgroup=layer, showlegend=col == 1, mode="lines+markers",
                                 line={"color": colors[layer]}), row=1, col=col)  # fmt: skip


def depth_at_failure(
    table: pd.DataFrame,
    depth: str = "model.depth",
    over: str | None = None,
    value: str = "gradient_ratio",
    limit: float = FAILURE_LIMIT,
    axes: list[str] | None = None,
) -> pd.DataFrame:
    """Per (scheme, `over` value): the smallest depth whose ratio (geometric mean over seeds)
    is beyond `limit` either way or not finite; NaN where no depth of the grid failed."""
    ratios = cell_ratios(table)
    ratios, _ = _first_values(ratios, [depth, *([over] if over else [])], axes or [])
    keys = ["scheme", *([over] if over else []), depth]
    logs = _log_mean(ratios, keys, value)
    logs = logs.assign(failed=~(logs["log"].abs() <= math.log10(limit)))
    failed = logs[logs["failed"]].groupby(keys[:-1], sort=False)[depth].min()
    every = logs.groupby(keys[:-1], sort=False)[depth].max()
    return every.rename("deepest").to_frame().assign(failed_at=failed).reset_index()


def depth_at_failure_figure(
    table: pd.DataFrame,
    depth: str = "model.depth",
    over: str | None = None,
    value: str = "gradient_ratio",
    limit: float = FAILURE_LIMIT,
    axes: list[str] | None = None,
) -> go.Figure:
    """depth_at_failure as a line per scheme over `over` (or a point per scheme); an open
    marker at the deepest depth where none failed."""
    curves = depth_at_failure(table, depth, over, value, limit, axes)
    title = f"Depth at failure: {value.replace('_', ' ')} beyond {limit:g}× either way"
    if curves.empty:
        return _empty(title, "no cells to judge")
    colors = scheme_colors(list(dict.fromkeys(curves["scheme"])))
    fig = go.Figure()
    for scheme, part in curves.groupby("scheme", sort=False):
        x = part[over] if over else [_text(scheme)] * len(part)
        survived = part["failed_at"].isna()
        y = part["failed_at"].where(~survived, part["deepest"])
        symbols = ["circle-open" if s else "circle" for s in survived]
        fig.add_trace(go.Scatter(x=list(x), y=list(y), name=_text(scheme), mode="lines+markers",
                                 marker={"symbol": symbols, "size": 10},
                                 line={"color": colors[scheme]}))  # fmt: skip
    fig.update_xaxes(title=_text(over or "scheme"))
    fig.update_yaxes(title=f"{_text(depth)} at failure (open: none failed up to it)")
    fig.update_layout(height=420)
    return _style(fig, title)


# ---------------------------------------------------------------- the report


def _varying(table: pd.DataFrame, axes: list[str]) -> list[str]:
    numeric = [a for a in axes if pd.api.types.is_numeric_dtype(table[a])]
    return [a for a in numeric if table[a].nunique() > 1]


def report_figures(table: pd.DataFrame, axes: list[str], base: dict[str, Any]) -> list[go.Figure]:
    """The figures a sweep's axes allow: the phase diagram over σ_w² (when it varies) or the
    first varying axis against the depth or the next one, the coordinate check over a width
    axis, depth at failure over a depth axis."""
    varying = _varying(table, axes)
    model = base.get("model", {})
    activation = model.get("activation") if model.get("name") == "mlp" else None
    pool = (["sigma_w2"] if table["sigma_w2"].nunique() > 1 else []) + varying
    x = pool[0] if pool else None
    rest = [a for a in pool[1:] if not (x == "sigma_w2" and a.endswith(".std"))]
    y = "model.depth" if "model.depth" in rest else (rest[0] if rest else None)
    figs = []
    if x and y:
        figs.append(phase_diagram(table, x, y, activation=activation, axes=axes))
    if "model.width" in varying:
        figs.append(coordinate_check(table, axes=axes))
    if "model.depth" in varying:
        over = next((a for a in pool if a != "model.depth" and a in (x, y)), None)
        figs.append(depth_at_failure_figure(table, over=over, axes=axes))
    return figs


# ---------------------------------------------------------------- the page's figures

RULE_SLOT = re.compile(r"^schemes\.(\d+)\.rules\.\d+\.(weight|bias)\.[a-z_]+$")


def axis_column(path: str, base: dict[str, Any], scheme: str) -> str:
    """The table column that shows axis `path` for `scheme`: σ_w² for a parameter of one of
    that scheme's weight rules (std, gain: what the mean field reads), σ_b² for one of its
    bias rules, else the axis itself."""
    found = RULE_SLOT.match(path)
    schemes = base.get("schemes", [])
    if found is None or int(found[1]) >= len(schemes):
        return path
    if schemes[int(found[1])].get("name") != scheme:
        return path
    return "sigma_w2" if found[2] == "weight" else "sigma_b2"


def phase_axes(
    table: pd.DataFrame, axes: list[str], base: dict[str, Any], scheme: str
) -> tuple[str, str] | None:
    """The phase diagram's (x, y) for `scheme` over the first two axes that vary (the seeds
    are averaged, not drawn): depth on y when it is one of them, σ_w² on x; None with fewer
    than two, or when both show as one column (a weight rule's std and its gain). Otherwise
    the axes' order."""
    varying = [a for a in _varying(table, axes) if a != "seeds"][:2]
    columns = [axis_column(a, base, scheme) for a in varying]
    if len(columns) < 2 or columns[0] == columns[1]:
        return None
    x, y = sorted(columns, key=lambda c: (c == "model.depth", c != "sigma_w2"))
    return x, y


def sweep_figures(
    table: pd.DataFrame,
    axes: list[str],
    base: dict[str, Any],
    scheme: str | None = None,
    value: str = "gradient_ratio",
) -> dict[str, go.Figure]:
    """The figures of a sweep over `axes`, by name: `phase`, the phase diagram of one scheme
    (default the first) over two axes (the mean-field line on an MLP); `coordinates`, the
    coordinate check, when the width varies; `failure`, depth at failure, when the depth does.
    An axis not drawn is held at its first value; the seeds are averaged."""
    scheme = scheme if scheme is not None else str(table["scheme"].iloc[0])
    model = base.get("model", {})
    activation = model.get("activation") if model.get("name") == "mlp" else None
    pair = phase_axes(table, axes, base, scheme)
    drawn = {a for a in axes if axis_column(a, base, scheme) in (pair or ())}
    held = [a for a in axes if a not in drawn and a != "seeds"]
    figs = {}
    if pair is not None:
        figs["phase"] = phase_diagram(table, *pair, value, scheme, activation, held)
    varying = _varying(table, axes)
    if "model.width" in varying:
        figs["coordinates"] = coordinate_check(table, axes=[a for a in held if a != "model.width"])
    if "model.depth" in varying:
        over = pair[0] if pair is not None and pair[1] == "model.depth" else None
        figs["failure"] = depth_at_failure_figure(table, over=over, value=value, axes=held)
    return figs


def report_html(
    table: pd.DataFrame, failed: pd.DataFrame, sweep: dict[str, Any], axes: list[str]
) -> str:
    """The sweep's report as one HTML page (plotly.js embedded once; every text escaped)."""
    figs = report_figures(table, axes, sweep.get("base", {})) if len(table) else []
    charts = [f.to_html(full_html=False, include_plotlyjs=i == 0) for i, f in enumerate(figs)]
    cells = table["cell"].nunique() if len(table) else 0
    parts = [
        "<h1>initlab sweep</h1>",
        f"<p>{cells} cells finished, {len(failed)} failed; axes: "
        f"{html.escape(', '.join(axes))}</p>",
        *charts,
        *(["<h2>Failed cells</h2>", failed.to_html(index=False)] if len(failed) else []),
        "<h2>Sweep</h2>",
        f"<pre>{html.escape(json.dumps(sweep, indent=2))}</pre>",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>initlab sweep</title></head>"
        f"<body style='font-family: sans-serif; max-width: 1100px; margin: 2em auto'>"
        f"{''.join(parts)}</body></html>"
    )
