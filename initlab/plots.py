"""Figure builders: a tidy results DataFrame in, a plotly Figure out.

No torch and no streamlit here, so the app, the CLI's HTML report and notebooks draw the very
same figures. Every figure colours a scheme with `scheme_colors` and is finished by `_style`.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from initlab.health import scheme_order, with_depth

# Plotly's own cycle first (so the first ten schemes look like plotly express), then more.
PALETTE: list[str] = [*qualitative.Plotly, *qualitative.Dark24]
HISTOGRAM_KINDS = ("activation", "gradient", "weight")
_LABELS = {"act_var": "activation variance", "grad_var": "gradient variance"}
_NOTHING_PLOTTABLE = "no finite positive values: every layer is zero or non-finite"


def scheme_colors(schemes: list[str]) -> dict[str, str]:
    """A colour per scheme by position, so one experiment's figures all agree on colours."""
    unique = list(dict.fromkeys(schemes))  # repeated names must not shift later colours
    return {scheme: PALETTE[i % len(PALETTE)] for i, scheme in enumerate(unique)}


def _text(value: object) -> str:
    """Data (a scheme or layer name) as plotly text: plotly renders <b>, <a href=...> and
    entities in trace names, subplot titles and hover labels, so a name from a link is escaped
    to display as it is (plotly turns &lt; &gt; &amp; back into characters)."""
    return html.escape(str(value), quote=False)


def _style(fig: go.Figure, title: str) -> go.Figure:
    """The one layout patch every figure gets: white, compact, legend on top."""
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0, "xanchor": "left"},
        margin={"l": 60, "r": 30, "t": 90, "b": 50},
        # below the x axis: a legend that wraps (long or many names) grows down, pushing the
        # margin, where on top it grew into the title
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.28, "yanchor": "top"},
        font={"family": "Inter, Helvetica, Arial, sans-serif", "size": 13},
    )
    return fig


def _empty(title: str, reason: str) -> go.Figure:
    """A figure that says why there is nothing to draw, instead of raising or staying blank."""
    fig = go.Figure()
    fig.add_annotation(
        text=reason, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font_size=15
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, title)


def _colors_for(frame: pd.DataFrame, colors: dict[str, str] | None) -> dict[str, str]:
    """Default colours from the frame's schemes, overridden by any the caller passes."""
    return {**scheme_colors(scheme_order(frame)), **(colors or {})}


# How a title names the rows a depth plot shows.
ROLE_WORDS = {"weight": "layers with weights", "activation": "activations", "norm": "norms",
              "block": "residual stream", "other": "other layers",
              "all": "every observed row"}  # fmt: skip


def variance_by_depth(
    layers: pd.DataFrame,
    value: str = "act_var",
    role: str = "weight",
    title: str | None = None,
    colors: dict[str, str] | None = None,
) -> go.Figure:
    """Median over seeds of `value` against depth, one line per scheme, min–max band, log y.

    `role` picks the rows ("weight": outputs of layers with weights, "activation": after the
    nonlinearity, "block": block outputs, i.e. the residual stream, "all": every observed
    row); depth counts those rows from 1. Values that a log
    axis cannot show (<= 0, NaN, inf) become gaps.
    """
    label = _LABELS.get(value, value)
    title = title or f"{label.capitalize()} by depth ({ROLE_WORDS.get(role, role)})"
    rows = with_depth(layers, role)
    if rows.empty:
        return _empty(title, f"no layers with role {role!r} to plot")
    summary = _summarise(rows, value)
    if summary[["median", "low", "high"]].isna().all(axis=None):
        return _empty(title, _NOTHING_PLOTTABLE)
    palette = _colors_for(layers, colors)
    fig = go.Figure()
    for scheme in scheme_order(rows):
        part = summary[summary["scheme"] == scheme]
        _add_band(fig, part, scheme, palette[scheme])
        _add_line(fig, part, scheme, palette[scheme], label)
    fig.update_xaxes(title_text="depth")
    fig.update_yaxes(title_text=label, type="log", exponentformat="power")
    return _style(fig, title)


def grad_variance_by_depth(
    layers: pd.DataFrame, role: str = "weight", colors: dict[str, str] | None = None
) -> go.Figure:
    """`variance_by_depth` for the gradient w.r.t. each layer's output."""
    title = f"Gradient variance by depth ({ROLE_WORDS.get(role, role)})"
    # All-NaN grad_var is how the engine says it ran no backward pass.
    if not layers.empty and pd.to_numeric(layers["grad_var"], errors="coerce").isna().all():
        return _empty(title, "no gradient statistics: the backward pass is off")
    return variance_by_depth(layers, "grad_var", role, title=title, colors=colors)


def _summarise(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per (scheme, depth): layer, type, seed count, median, and min/max of plottable values."""
    raw = pd.to_numeric(rows[value], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    plottable = np.where(np.isfinite(raw) & (raw > 0), raw, np.nan)
    grouped = rows.assign(_raw=raw, _ok=plottable).groupby(["scheme", "depth"], sort=False)
    summary = grouped.agg(
        layer=("layer", "first"),
        type=("type", "first"),
        seeds=("seed", "nunique"),
        median=("_raw", "median"),  # of raw values: a median of 0 or inf is itself a gap
        low=("_ok", "min"),
        high=("_ok", "max"),
    ).reset_index()
    median = summary["median"]
    summary["median"] = median.where(np.isfinite(median) & (median > 0))
    return summary.sort_values("depth", kind="stable")


def _add_line(fig: go.Figure, part: pd.DataFrame, scheme: str, color: str, label: str) -> None:
    """The median line; hover names the layer, its type and the value."""
    hover = part[["layer", "type", "seeds"]].assign(
        layer=part["layer"].map(_text), type=part["type"].map(_text)
    )
    fig.add_trace(
        go.Scatter(
            x=part["depth"],
            y=part["median"],
            name=_text(scheme),
            legendgroup=scheme,
            showlegend=True,  # plotly hides a lone trace's legend; the scheme must stay named
            mode="lines+markers",
            line={"color": color},
            marker={"size": 5},
            connectgaps=False,
            customdata=hover.to_numpy(dtype=object),
            hovertemplate="<b>%{customdata[0]}</b> (%{customdata[1]})<br>depth %{x}<br>"
            + label
            + " %{y:.3g} (median of %{customdata[2]} seeds)<extra>%{fullData.name}</extra>",
        )
    )


def _add_band(fig: go.Figure, part: pd.DataFrame, scheme: str, color: str) -> None:
    """Min–max over seeds as a translucent band (low edge, then high edge filled down to it)."""
    if part["seeds"].max() < 2:
        return  # one seed: the band would be a line on top of the median
    r, g, b = hex_to_rgb(color)
    edge = {"x": part["depth"], "mode": "lines", "line": {"width": 0}, "connectgaps": False}
    edge |= {"legendgroup": scheme, "showlegend": False, "hoverinfo": "skip"}
    fig.add_trace(go.Scatter(y=part["low"], name=_text(f"{scheme} min"), **edge))
    fill = {"fill": "tonexty", "fillcolor": f"rgba({r}, {g}, {b}, 0.2)"}
    fig.add_trace(go.Scatter(y=part["high"], name=_text(f"{scheme} max"), **fill, **edge))


def histogram_grid(
    histograms: pd.DataFrame,
    kind: str,
    names: list[str] | None = None,
    seed: int | None = None,
    max_rows: int = 8,
    colors: dict[str, str] | None = None,
) -> go.Figure:
    """Small multiples: a row per layer/parameter name, a column per scheme, density bars.

    Bars are densities (area 1) because each scheme has its own bin range; a row shares its x
    axis so the schemes' spreads compare at a glance. `seed` defaults to the first one.
    """
    if kind not in HISTOGRAM_KINDS:
        raise ValueError(f"kind must be one of {', '.join(HISTOGRAM_KINDS)}; got {kind!r}")
    rows = histograms[histograms["kind"] == kind]
    if rows.empty:
        return _empty(f"{kind.capitalize()} histograms", f"no {kind} histograms in these results")
    seed = rows["seed"].iloc[0] if seed is None else seed
    rows = rows[rows["seed"] == seed]
    title = f"{kind.capitalize()} histograms (seed {seed})"
    present = [str(n) for n in pd.unique(rows["name"])]
    shown = present[:max_rows] if names is None else [n for n in names if n in set(present)]
    if not shown:
        return _empty(title, f"no {kind} histograms for these names and seed {seed}")
    fig = _grid(rows, shown, scheme_order(rows), _colors_for(histograms, colors))
    return _style(fig, title)


def _grid(rows: pd.DataFrame, names: list[str], schemes: list[str], colors: dict) -> go.Figure:
    """The subplot grid, one bar trace per (name, scheme) cell that has data."""
    most = max(16, 100 // len(schemes))  # characters a column title has room for
    fig = make_subplots(
        rows=len(names),
        cols=len(schemes),
        shared_xaxes="rows",
        column_titles=[_text(_shorten(s, most)) for s in schemes],
        row_titles=[_text(n) for n in names],
        vertical_spacing=min(0.08, 0.3 / len(names)),
    )
    for title, scheme in zip(fig.layout.annotations, schemes, strict=False):
        title.hovertext = _text(scheme)  # the whole name, where the title is cut short
    for r, name in enumerate(names, start=1):
        for c, scheme in enumerate(schemes, start=1):
            cell = rows[(rows["name"] == name) & (rows["scheme"] == scheme)]
            if not cell.empty:
                fig.add_trace(_density_bars(cell, scheme, colors[scheme]), row=r, col=c)
    fig.update_layout(bargap=0, showlegend=False, height=120 + 150 * len(names))
    return fig


def _shorten(name: str, most: int) -> str:
    """`name`, cut to `most` characters with an ellipsis: long titles would overlap."""
    return name if len(name) <= most else name[: most - 1] + "…"


def _density_bars(cell: pd.DataFrame, scheme: str, color: str) -> go.Bar:
    """One histogram as bars at the bin centres, as wide as the bins, normalised to area 1."""
    cell = cell.sort_values("bin_left")
    left, right = cell["bin_left"].to_numpy(float), cell["bin_right"].to_numpy(float)
    count = cell["count"].to_numpy(float)
    width, total = right - left, np.nansum(count)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A zero-width bin has no density to draw; an empty histogram draws flat zeros.
        density = np.where(width > 0, count / (total * width), np.nan) if total > 0 else 0 * count
    return go.Bar(
        x=(left + right) / 2,
        y=density,
        width=width,
        name=_text(scheme),
        marker={"color": color, "line": {"width": 0}},
        customdata=np.column_stack([left, right, count]),
        hovertemplate="[%{customdata[0]:.3g}, %{customdata[1]:.3g}): %{customdata[2]:.0f}"
        " values<br>density %{y:.3g}<extra>%{fullData.name}</extra>",
    )
