"""Figure builders: a tidy results DataFrame in, a plotly Figure out.

No torch and no streamlit here, so the app, the CLI's HTML report and notebooks draw the very
same figures. Every figure colours a scheme with `scheme_colors` and is finished by `_style`.

Layout is computed, not left to plotly's wrapping: a depth chart's legend sits below its x axis
in a bottom margin sized by `legend_layout` (rows of equal-width entries), so however many
schemes and however long their names, the legend never reaches the title, the axis or the plot.
"""

from __future__ import annotations

import html
import math
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from initlab.health import scheme_order, with_depth

# Plotly's own cycle first (so the first ten schemes look like plotly express), then more.
PALETTE: list[str] = [*qualitative.Plotly, *qualitative.Dark24]
HISTOGRAM_KINDS = ("activation", "gradient", "weight")
HISTOGRAM_SCALES = ("shared", "standardized")
MOMENT_COLUMNS = ["scheme", "seed", "kind", "name", "mean", "std"]
_LABELS = {"act_var": "activation variance", "grad_var": "gradient variance"}
_NOTHING_PLOTTABLE = "no finite positive values: every layer is zero or non-finite"

FONT_PX = 13  # the figures' base font size
TICK_FONT_PX = 12
REFERENCE_COLOR = "#888"  # reference lines: the input's variance, chance, the floor, guides
# Chart geometry (pixels). A depth chart is drawn at least DESIGN_WIDTH wide (two charts side by
# side on a 1280 px page); its plot area is PLOT_PX tall whatever the legend needs below it.
DESIGN_WIDTH = 600
MARGIN_L, MARGIN_R, MARGIN_T = 70, 30, 70  # l: room for 10⁻¹⁵ ticks and the y title
PLOT_PX = 300
# plotly.js's horizontal legend of legend groups (a line and its band are one group): an entry
# is its symbol (itemwidth 30 + 2 × itemGap 5) plus its text, then itemGap; a row is
# max(1.3 × font, 16) + 3 tall (tracegroupgap set to 0), the box pads 2 × 5.
LEGEND_SYMBOL_PX, LEGEND_GAP_PX, LEGEND_PAD_PX = 40, 5, 10
LEGEND_ROW_PX = math.ceil(max(1.3 * FONT_PX, 16) + 3)
AXIS_TITLE_PX = 34  # an x axis title's line and its distance from the tick labels
LEGEND_SPACE_PX = 10  # between the x axis title and the legend, and below the legend
NAMED_TICKS = 12  # up to this many depths, the depth axis names each layer
HIST_NOTE_PX = 11  # font of the std note in a histogram cell
NARROW_SHARE = 0.02  # a cell narrower than this share of its row's x range needs a marker


def scheme_colors(schemes: list[str]) -> dict[str, str]:
    """A colour per scheme by position, so one experiment's figures all agree on colours."""
    unique = list(dict.fromkeys(schemes))  # repeated names must not shift later colours
    return {scheme: PALETTE[i % len(PALETTE)] for i, scheme in enumerate(unique)}


def _text(value: object) -> str:
    """Data (a scheme or layer name) as plotly text: plotly renders <b>, <a href=...> and
    entities in trace names, subplot titles and hover labels, so a name from a link is escaped
    to display as it is (plotly turns &lt; &gt; &amp; back into characters)."""
    return html.escape(str(value), quote=False)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# ---------------------------------------------------------------- text and legend geometry


def text_px(text: str, font_px: float = FONT_PX) -> float:
    """A generous estimate of `text`'s rendered width: wider than Inter, Helvetica, Arial and
    DejaVu Sans (a browser's fallbacks) set it, so space computed from it is never too small."""
    width = 0.0
    for char in text:
        if unicodedata.east_asian_width(char) in "WF":
            width += 1.0
        elif char in " .,:;'|!il()[]{}":
            width += 0.4
        elif char.isupper() or char in "mwMW@%&":
            width += 0.8
        else:
            width += 0.62
    return width * font_px


@dataclass(frozen=True)
class LegendLayout:
    """Where a horizontal legend of equal-width entries goes: `per_row` entries of `entry_px`
    text each, in `rows` rows, `height_px` tall in all (plotly's own arithmetic)."""

    entry_px: int
    per_row: int
    rows: int
    height_px: int


def legend_layout(names: list[str], width: int = DESIGN_WIDTH) -> LegendLayout:
    """The legend rows for `names` on a chart `width` px wide (its plot area holds the legend).

    Every entry is as wide as the longest name, so the rows are a grid whose size depends on
    the names only, not on where plotly would have wrapped them one by one.
    """
    if width < MARGIN_L + MARGIN_R + 2 * LEGEND_SYMBOL_PX:
        raise ValueError(f"width must be at least {MARGIN_L + MARGIN_R + 80} px; got {width!r}")
    plot_w = width - MARGIN_L - MARGIN_R
    longest = max((text_px(n) for n in names), default=0.0)
    entry = min(math.ceil(longest), plot_w - LEGEND_SYMBOL_PX - LEGEND_GAP_PX)
    step = LEGEND_SYMBOL_PX + entry + LEGEND_GAP_PX
    # plotly.js starts a new row where one more group would end past the plot's width
    per_row = max(1, min(len(names), plot_w // step))
    rows = math.ceil(len(names) / per_row) if names else 0
    return LegendLayout(entry, per_row, rows, rows * LEGEND_ROW_PX + LEGEND_PAD_PX if rows else 0)


def _style(fig: go.Figure, title: str, bottom: int = 60) -> go.Figure:
    """The one layout patch every figure gets: white, compact, title top left."""
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0, "xanchor": "left"},
        margin={"l": MARGIN_L, "r": MARGIN_R, "t": fig.layout.margin.t or 90, "b": bottom},
        font={"family": "Inter, Helvetica, Arial, sans-serif", "size": FONT_PX},
    )
    return fig


def _place_legend(fig: go.Figure, legend: LegendLayout, axis_px: int) -> go.Figure:
    """A fixed-height chart: plot area, then the x axis, then the legend in the bottom margin.

    The figure's height is set, so the legend's offset below the plot area is exact in pixels:
    it starts under the axis title and ends inside the figure, however many rows it has.
    """
    # + 4: plotly.js rounds the legend's rows up and pushes the margin by the difference
    bottom = axis_px + legend.height_px + 2 * LEGEND_SPACE_PX + 4
    fig.update_layout(
        height=MARGIN_T + PLOT_PX + bottom,
        margin={"t": MARGIN_T, "b": bottom},
        legend={
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": -(axis_px + LEGEND_SPACE_PX) / PLOT_PX,
            "yanchor": "top",
            "entrywidth": legend.entry_px,
            "entrywidthmode": "pixels",
            "tracegroupgap": 0,
            "font": {"size": FONT_PX},
        },
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


def tidy(data: object, table: str = "layers") -> pd.DataFrame:
    """The `table` of whatever holds it, ready to plot: a DataFrame as it is, or the attribute
    of a probe's ProbeResult or a run's Results. A probe of one model has no scheme and seed
    columns; its rows become scheme "model", seed 0."""
    frame = data if isinstance(data, pd.DataFrame) else getattr(data, table, None)
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(
            f"{table}: give a DataFrame, a ProbeResult or Results; got {type(data).__name__}"
        )
    missing = {k: v for k, v in (("scheme", "model"), ("seed", 0)) if k not in frame.columns}
    return frame.assign(**missing) if missing else frame


def _colors_for(frame: pd.DataFrame, colors: dict[str, str] | None) -> dict[str, str]:
    """Default colours from the frame's schemes, overridden by any the caller passes."""
    return {**scheme_colors(scheme_order(frame)), **(colors or {})}


# ---------------------------------------------------------------- variance by depth

# How a title names the rows a depth plot shows.
ROLE_WORDS = {"weight": "layers with weights", "activation": "activations", "norm": "norms",
              "block": "residual stream", "other": "other layers",
              "all": "every observed row"}  # fmt: skip
# What one depth step is called in hover labels, as the verdicts call it ("layer 5 (fc3)").
DEPTH_NOUNS = {"block": "block"}


def variance_by_depth(
    layers: pd.DataFrame,
    value: str = "act_var",
    role: str = "weight",
    title: str | None = None,
    colors: dict[str, str] | None = None,
    input_var: float | None = None,
    width: int = DESIGN_WIDTH,
) -> go.Figure:
    """Median over seeds of `value` against depth, one line per scheme, min–max band, log y.

    `role` picks the rows ("weight": outputs of layers with weights, "activation": after the
    nonlinearity, "block": block outputs, i.e. the residual stream, "all": every observed
    row); depth counts those rows from 1, as the verdicts number layers. Values that a log
    axis cannot show (<= 0, NaN, inf) become gaps. `input_var` (> 0) draws the input's variance
    as a dotted reference line. `width` is the narrowest the chart is drawn: the legend's rows
    are laid out for it.
    """
    layers = tidy(layers)
    label = _LABELS.get(value, value)
    title = title or f"{label.capitalize()} by depth ({ROLE_WORDS.get(role, role)})"
    rows = with_depth(layers, role)
    if rows.empty:
        return _empty(title, f"no layers with role {role!r} to plot")
    summary = _summarise(rows, value)
    if summary[["median", "low", "high"]].isna().all(axis=None):
        return _empty(title, _NOTHING_PLOTTABLE)
    palette, schemes = _colors_for(layers, colors), scheme_order(rows)
    legend = legend_layout(schemes, width)
    fig = go.Figure()
    for scheme in schemes:
        part = summary[summary["scheme"] == scheme]
        _add_band(fig, part, scheme, palette[scheme])
        _add_line(fig, part, scheme, palette[scheme], label, role)
    depths = _depth_names(summary)
    if input_var is not None and np.isfinite(input_var) and input_var > 0:
        _add_reference(fig, float(input_var), len(depths))
    axis = depth_axis(depths, width)
    fig.update_xaxes(title_text=f"depth ({ROLE_WORDS.get(role, role)}, from the input)", **axis)
    fig.update_yaxes(title_text=label, type="log", exponentformat="power")
    return _place_legend(_style(fig, title), legend, _axis_px(axis))


def grad_variance_by_depth(
    layers: pd.DataFrame,
    role: str = "weight",
    colors: dict[str, str] | None = None,
    width: int = DESIGN_WIDTH,
) -> go.Figure:
    """`variance_by_depth` for the gradient w.r.t. each layer's output."""
    layers = tidy(layers)
    title = f"Gradient variance by depth ({ROLE_WORDS.get(role, role)})"
    # All-NaN grad_var is how the engine says it ran no backward pass.
    if not layers.empty and pd.to_numeric(layers["grad_var"], errors="coerce").isna().all():
        return _empty(title, "no gradient statistics: the backward pass is off")
    return variance_by_depth(layers, "grad_var", role, title=title, colors=colors, width=width)


def _depth_names(summary: pd.DataFrame) -> list[str]:
    """The layer name at each depth 1..n (the first scheme's: one model, the same names)."""
    names = summary.groupby("depth", sort=True)["layer"].first()
    top = int(names.index.max())
    return [str(names.get(d, "")) for d in range(1, top + 1)]


def _shorten_start(name: str, most: int) -> str:
    """`name` keeping its end (a dotted path's most specific part), cut with an ellipsis."""
    return name if len(name) <= most else "…" + name[len(name) - most + 1 :]


def depth_axis(names: list[str], width: int = DESIGN_WIDTH) -> dict:
    """x axis settings for depths 1..len(names), `names[d - 1]` being the layer at depth d.

    Up to NAMED_TICKS depths: a tick per depth reading "5" over "fc3", as the verdicts say
    "layer 5 (fc3)"; names too long for their slot are cut (the point's hover has them whole)
    and, if cutting is not enough, set at 45°. More depths: integer ticks only.
    """
    n = len(names)
    span = {"range": [0.5, n + 0.5], "tickfont": {"size": TICK_FONT_PX}, "showgrid": False}
    if n > NAMED_TICKS:
        return span | {
            "tickmode": "linear",
            "tick0": 0,
            "dtick": _integer_step(n),
            "tickformat": "d",
        }
    slot = (width - MARGIN_L - MARGIN_R) / max(n, 1)
    fits = [n_ for n_ in names if text_px(n_, TICK_FONT_PX) <= slot - 6]
    ticks = {"tickmode": "array", "tickvals": list(range(1, n + 1))}
    if len(fits) == n:
        text = [f"{d}<br>{_text(name)}" for d, name in enumerate(names, start=1)]
        return span | ticks | {"ticktext": text, "tickangle": 0}
    short = [_shorten_start(name, 16) for name in names]
    text = [f"{d} · {_text(name)}" for d, name in enumerate(short, start=1)]
    return span | ticks | {"ticktext": text, "tickangle": -45}


def _integer_step(n: int) -> int:
    """1, 2, 5, 10, 20, 50, ...: the first that puts at most 10 ticks on n depths."""
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if n / step <= 10:
                return step
        power *= 10


def _axis_px(axis: dict) -> int:
    """Height of the x axis's tick labels and title below the plot area."""
    line = math.ceil(1.3 * TICK_FONT_PX)
    if axis.get("tickangle") == -45:
        longest = max(text_px(_plain(t), TICK_FONT_PX) for t in axis["ticktext"])
        ticks = math.ceil((longest + line) * math.sqrt(0.5))
    else:
        ticks = line * (2 if "ticktext" in axis else 1)
    return ticks + 6 + AXIS_TITLE_PX


def _plain(text: str) -> str:
    return html.unescape(text)


def _add_reference(fig: go.Figure, input_var: float, depths: int) -> None:
    """The input's variance across the chart, dotted and labelled at its right end."""
    label = f"input variance {_fmt(input_var)}"
    fig.add_trace(reference_line(input_var, label, [0.5, depths + 0.5], "dot", label))


def reference_line(y: float, label: str, x: list[float], dash: str, hover: str) -> go.Scatter:
    """A horizontal reference line from x[0] to x[1], labelled at its right end; a trace (not
    a shape) so that a log axis's range always includes it."""
    return go.Scatter(
        x=x,
        y=[y, y],
        name=label,
        mode="lines+text",
        text=["", label],
        textposition="top left",
        textfont={"size": TICK_FONT_PX, "color": "#666"},
        line={"color": REFERENCE_COLOR, "dash": dash, "width": 1.5},
        showlegend=False,
        hovertemplate=hover + "<extra></extra>",
        cliponaxis=False,
    )


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


def _add_line(
    fig: go.Figure, part: pd.DataFrame, scheme: str, color: str, label: str, role: str
) -> None:
    """The median line; hover names the layer as the verdicts do, its type and the value."""
    hover = part[["layer", "type", "seeds"]].assign(
        layer=part["layer"].map(_text), type=part["type"].map(_text)
    )
    noun = DEPTH_NOUNS.get(role, "layer")
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
            hovertemplate=f"<b>{noun} %{{x}} (%{{customdata[0]}})</b> %{{customdata[1]}}<br>"
            + label
            + " %{y:.3g} (median of %{customdata[2]} seeds)<extra>%{fullData.name}</extra>",
        )
    )


def _add_band(
    fig: go.Figure,
    part: pd.DataFrame,
    scheme: str,
    color: str,
    x: str = "depth",
    group: str | None = None,
) -> None:
    """Min–max over seeds as a translucent band (low edge, then high edge filled down to it),
    along column `x`, in legend group `group` (the scheme's by default)."""
    if part["seeds"].max() < 2:
        return  # one seed: the band would be a line on top of the median
    r, g, b = hex_to_rgb(color)
    edge = {"x": part[x], "mode": "lines", "line": {"width": 0}, "connectgaps": False}
    edge |= {"legendgroup": group or scheme, "showlegend": False, "hoverinfo": "skip"}
    fig.add_trace(go.Scatter(y=part["low"], name=_text(f"{scheme} min"), **edge))
    fill = {"fill": "tonexty", "fillcolor": f"rgba({r}, {g}, {b}, 0.2)"}
    fig.add_trace(go.Scatter(y=part["high"], name=_text(f"{scheme} max"), **fill, **edge))


# ---------------------------------------------------------------- histograms


def _numbers(column: pd.Series) -> np.ndarray:
    """A column as floats (nullable NA and text become NaN)."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def histogram_moments(layers: pd.DataFrame, params: pd.DataFrame | None = None) -> pd.DataFrame:
    """The exact mean and std behind each histogram, as `histogram_grid`'s `moments`.

    Columns scheme, seed, kind, name, mean, std. Activations: act_mean and act_std of the
    layers table; gradients: sqrt(grad_var) with the mean unknown (NaN: the grid takes it
    from the bins); weights: the params table's mean and std. A layer observed again in a run
    is named "layer#2", "layer#3", ... as its histograms are.
    """
    layers = tidy(layers).sort_values(["scheme", "seed", "order"], kind="stable")
    params = None if params is None else tidy(params, "params")
    layer = layers["layer"].astype(str)
    calls = layers.groupby(["scheme", "seed", "layer"], sort=False).cumcount() + 1
    names = layer.where(calls == 1, layer + "#" + calls.astype(str))
    key = {"scheme": layers["scheme"].to_numpy(), "seed": layers["seed"].to_numpy()}
    key["name"] = names.to_numpy()
    grad_var = _numbers(layers["grad_var"])
    parts = [
        pd.DataFrame(
            key
            | {
                "kind": "activation",
                "mean": _numbers(layers["act_mean"]),
                "std": _numbers(layers["act_std"]),
            }
        ),
        pd.DataFrame(
            key
            | {
                "kind": "gradient",
                "mean": np.nan,
                "std": np.sqrt(np.where(grad_var >= 0, grad_var, np.nan)),
            }
        ),
    ]
    if params is not None:
        weights = {"scheme": params["scheme"].to_numpy(), "seed": params["seed"].to_numpy()}
        weights |= {"kind": "weight", "name": params["param"].astype(str).to_numpy()}
        weights |= {"mean": _numbers(params["mean"]), "std": _numbers(params["std"])}
        parts.append(pd.DataFrame(weights))
    return pd.concat(parts, ignore_index=True)[MOMENT_COLUMNS]


@dataclass(frozen=True)
class _Cell:
    """One histogram: its bins (sorted), and the mean and std it is annotated and scaled by
    (`exact`: from the results tables; else estimated from the bins)."""

    left: np.ndarray
    right: np.ndarray
    count: np.ndarray
    mean: float
    std: float
    exact: bool

    @property
    def total(self) -> float:
        return float(self.count.sum())

    def span(self) -> tuple[float, float]:
        """From the first to the last occupied bin."""
        occupied = self.count > 0
        return float(self.left[occupied].min()), float(self.right[occupied].max())


def bin_moments(left: np.ndarray, right: np.ndarray, count: np.ndarray) -> tuple[float, float]:
    """Mean and std of a histogram, values spread evenly in each bin (NaN when it is empty).

    One occupied bin means a constant: the probe's bins run from the tensor's min to its max,
    so any spread occupies at least the first and the last bin.
    """
    total = count.sum()
    if not total > 0:
        return math.nan, math.nan
    centre, width = (left + right) / 2, right - left
    occupied = count > 0
    if occupied.sum() == 1:
        return float(centre[occupied][0]), 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float((count * centre).sum() / total)
        var = float((count * ((centre - mean) ** 2 + width**2 / 12)).sum() / total)
    return mean, math.sqrt(var) if var >= 0 else math.nan


def _cell(bins: pd.DataFrame, exact: tuple[float, float] | None) -> _Cell:
    """A cell's bins and moments: the exact ones unless the bins contradict them.

    Binning can shrink a std (tails beyond 6 std share an edge bin) but not widen it by more
    than a few percent, so bins 1.5× wider than `exact` mean it is another tensor's (a
    broadcast output's per-copy gradient variance, a mismatched name).
    """
    bins = bins.sort_values("bin_left")
    left, right = _numbers(bins["bin_left"]), _numbers(bins["bin_right"])
    count = np.nan_to_num(_numbers(bins["count"]), nan=0.0, posinf=0.0, neginf=0.0)
    b_mean, b_std = bin_moments(left, right, count)
    e_mean, e_std = exact if exact is not None else (math.nan, math.nan)
    trusted = np.isfinite(e_std) and (
        (e_std > 0 and not b_std > 1.5 * e_std) or (e_std == 0 and b_std == 0)
    )
    if not trusted:
        return _Cell(left, right, count, b_mean, b_std, exact=False)
    mean = e_mean if np.isfinite(e_mean) else b_mean
    return _Cell(left, right, count, mean, e_std, exact=True)


def histogram_grid(
    histograms: pd.DataFrame,
    kind: str,
    names: list[str] | None = None,
    seed: int | None = None,
    max_rows: int = 8,
    colors: dict[str, str] | None = None,
    scale: str = "shared",
    moments: pd.DataFrame | None = None,
    order: list[str] | None = None,
) -> go.Figure:
    """Small multiples: a row per layer/parameter name in depth order, a column per scheme.

    Bars are densities (area 1), each cell annotated with its std. `scale` "shared": values,
    one x range per row, to compare the schemes' spreads; "standardized": (value − mean)/std
    per cell on one x range, to compare shapes. `moments` (`histogram_moments`) gives exact
    means and stds; without it they are estimated from the bins. Rows follow `order` or, by
    default, the forward order (the activations' for activations and gradients, the
    parameters' for weights); `names` picks rows (default: up to `max_rows`, evenly spaced
    from first to last). `seed` defaults to the first one.
    """
    if kind not in HISTOGRAM_KINDS:
        raise ValueError(f"kind must be one of {', '.join(HISTOGRAM_KINDS)}; got {kind!r}")
    if scale not in HISTOGRAM_SCALES:
        raise ValueError(f"scale must be one of {', '.join(HISTOGRAM_SCALES)}; got {scale!r}")
    histograms = tidy(histograms, "histograms")
    rows = histograms[histograms["kind"] == kind]
    if rows.empty:
        return _empty(f"{kind.capitalize()} histograms", f"no {kind} histograms in these results")
    seed = rows["seed"].iloc[0] if seed is None else seed
    rows = rows[rows["seed"] == seed]
    units = "" if scale == "shared" else "; x in std units per cell"
    title = f"{kind.capitalize()} histograms (seed {seed}{units})"
    present = set(rows["name"].astype(str))
    ordered = [n for n in depth_order(histograms, kind, order) if n in present]
    shown = _evenly(ordered, max_rows) if names is None else _picked(ordered, names)
    if not shown:
        return _empty(title, f"no {kind} histograms for these names and seed {seed}")
    exact = _moments_for(moments, kind, seed)
    rows = rows[rows["name"].astype(str).isin(shown)]
    cells = {
        (str(name), str(scheme)): _cell(group, exact.get((str(name), str(scheme))))
        for (name, scheme), group in rows.groupby(["name", "scheme"], sort=False)
    }
    fig = _grid(cells, shown, scheme_order(rows), _colors_for(histograms, colors), scale)
    return _style(fig, title, bottom=70)


def depth_order(histograms: pd.DataFrame, kind: str, order: list[str] | None = None) -> list[str]:
    """`kind`'s histogram names, sorted by `order` or by the forward order: the activations'
    (the probe records gradients backwards, output first), the parameters' for weights.
    Names the order lacks follow, as they come."""
    kinds = histograms["kind"]
    own = [str(n) for n in pd.unique(histograms.loc[kinds == kind, "name"])]
    if order is None and kind == "weight":
        return own
    if order is None:
        order = [str(n) for n in pd.unique(histograms.loc[kinds == "activation", "name"])]
        if not order:
            return own[::-1] if kind == "gradient" else own
    rank = {str(n): i for i, n in enumerate(dict.fromkeys(order))}
    return sorted(own, key=lambda n: rank.get(n, len(rank)))


def _evenly(names: list[str], most: int) -> list[str]:
    """Up to `most` names evenly spaced, first and last included: depth at a glance."""
    if len(names) <= most:
        return names
    if most <= 1:
        return names[:most]
    step = (len(names) - 1) / (most - 1)
    return [names[round(i * step)] for i in range(most)]


def _picked(ordered: list[str], names: list[str]) -> list[str]:
    wanted = {str(n) for n in names}
    return [n for n in ordered if n in wanted]


def _moments_for(
    moments: pd.DataFrame | None, kind: str, seed: object
) -> dict[tuple[str, str], tuple[float, float]]:
    """(name, scheme) -> (mean, std) of one kind and seed."""
    if moments is None:
        return {}
    missing = [c for c in MOMENT_COLUMNS if c not in moments.columns]
    if missing:
        raise ValueError(
            f"moments must have columns {', '.join(MOMENT_COLUMNS)}; missing {', '.join(missing)}"
        )
    part = moments[(moments["kind"] == kind) & (moments["seed"] == seed)]
    mean, std = _numbers(part["mean"]), _numbers(part["std"])
    keys = zip(part["name"].astype(str), part["scheme"].astype(str), strict=True)
    return {key: (float(m), float(s)) for key, m, s in zip(keys, mean, std, strict=True)}


def _grid(
    cells: dict[tuple[str, str], _Cell],
    names: list[str],
    schemes: list[str],
    colors: dict[str, str],
    scale: str,
) -> go.Figure:
    """The subplot grid: a bar trace and a std note per (name, scheme) cell that has data."""
    most = max(16, 100 // len(schemes))  # characters a column title has room for
    fig = make_subplots(
        rows=len(names),
        cols=len(schemes),
        shared_xaxes="rows" if scale == "shared" else "all",
        column_titles=[_text(_shorten(s, most)) for s in schemes],
        row_titles=[_text(_shorten_start(n, 18)) for n in names],
        vertical_spacing=min(0.08, 0.3 / len(names)),
    )
    titles = list(fig.layout.annotations)
    for title, full in zip(titles, [*schemes, *names], strict=True):
        title.hovertext = _text(full)  # the whole name, where the title is cut short
    for r, name in enumerate(names, start=1):
        spans = [cells[(name, s)].span() for s in schemes if _drawable(cells.get((name, s)))]
        width = max(hi for _, hi in spans) - min(lo for lo, _ in spans) if spans else 0.0
        for c, scheme in enumerate(schemes, start=1):
            cell = cells.get((name, scheme))
            if cell is not None:
                _draw_cell(fig, cell, (r, c), scheme, colors[scheme], scale, width)
    _label_axes(fig, cells, len(names), scale)
    fig.update_layout(bargap=0, showlegend=False, height=120 + 150 * len(names))
    return fig


def _drawable(cell: _Cell | None) -> bool:
    return cell is not None and cell.total > 0


def _shorten(name: str, most: int) -> str:
    """`name`, cut to `most` characters with an ellipsis: long titles would overlap."""
    return name if len(name) <= most else name[: most - 1] + "…"


def _draw_cell(
    fig: go.Figure,
    cell: _Cell,
    at: tuple[int, int],
    scheme: str,
    color: str,
    scale: str,
    row_width: float,
) -> None:
    """Bars and a note; what cannot be drawn (no values, a constant standardized) is said."""
    row, col = at
    if not cell.total > 0:
        _note(fig, at, "no finite values", centre=True)
        return
    constant = not (np.isfinite(cell.std) and cell.std > 0)
    if scale == "standardized" and constant:
        _note(fig, at, f"{_std_words(cell)}: no spread to standardize", centre=True)
        return
    fig.add_trace(_density_bars(cell, scheme, color, scale == "standardized"), row=row, col=col)
    lo, hi = cell.span()
    narrow = scale == "shared" and hi - lo < NARROW_SHARE * row_width
    if narrow:
        # sub-pixel bars: a marker shows where the values are; its density axis reads nothing
        fig.add_trace(_spike(cell, scheme, color), row=row, col=col)
        fig.update_yaxes(showticklabels=False, row=row, col=col)
    _note(fig, at, _std_words(cell) + (" · too narrow for this x range" if narrow else ""))


def _std_words(cell: _Cell) -> str:
    """'std 0.031', 'std ≈ 0.031' (from the bins), 'constant 0.5 (std 0)'."""
    if np.isfinite(cell.std) and cell.std == 0:
        return f"constant {'' if cell.exact else '≈ '}{_fmt(cell.mean)} (std 0)"
    return f"std {'' if cell.exact else '≈ '}{_fmt(cell.std)}"


def _note(fig: go.Figure, at: tuple[int, int], text: str, centre: bool = False) -> None:
    """A line of text in a cell's corner (or its middle), in the cell's own coordinates."""
    place = {"x": 0.5, "y": 0.5, "xanchor": "center"} if centre else {"x": 0.98, "y": 0.98}
    place = {"xanchor": "right", "yanchor": "top"} | place
    fig.add_annotation(
        text=text,
        xref="x domain",
        yref="y domain",
        showarrow=False,
        font={"size": HIST_NOTE_PX, "color": "#444"},
        bgcolor="rgba(255, 255, 255, 0.7)",
        row=at[0],
        col=at[1],
        **place,
    )


def _finite(values: np.ndarray) -> np.ndarray:
    """Non-finite values as NaN: plotly would send an infinity to the browser as null anyway,
    and a gap is what it is."""
    return np.where(np.isfinite(values), values, np.nan)


def _density_bars(cell: _Cell, scheme: str, color: str, standardized: bool) -> go.Bar:
    """One histogram as bars at the bin centres, as wide as the bins, normalised to area 1;
    standardized: on (value − mean)/std, the density per std unit."""
    shift, unit = (cell.mean, cell.std) if standardized else (0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        low, high = (cell.left - shift) / unit, (cell.right - shift) / unit
        width = high - low
        # A zero-width bin has no density to draw.
        density = np.where(width > 0, cell.count / (cell.total * width), np.nan)
    where = "[%{customdata[0]:.3g}, %{customdata[1]:.3g})"
    if standardized:
        where = "[%{customdata[3]:.3g}, %{customdata[4]:.3g}) std units = " + where
    return go.Bar(
        x=_finite((low + high) / 2),
        y=_finite(density),
        width=_finite(width),
        name=_text(scheme),
        marker={"color": color, "line": {"width": 0}},
        customdata=np.column_stack([cell.left, cell.right, cell.count, low, high]),
        hovertemplate=where + ": %{customdata[2]:.0f} values<br>density %{y:.3g}"
        "<extra>%{fullData.name}</extra>",
    )


def _spike(cell: _Cell, scheme: str, color: str) -> go.Scatter:
    """A 2 px line at the mean, as tall as the bars: a distribution the row's x range shows
    narrower than a pixel stays visible."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        width = cell.right - cell.left
        peak = np.nanmax(np.where(width > 0, cell.count / (cell.total * width), np.nan))
    return go.Scatter(
        x=_finite(np.array([cell.mean, cell.mean])),
        y=_finite(np.array([0.0, peak])),
        name=_text(scheme),
        mode="lines",
        line={"color": color, "width": 2},
        marker={"color": color},
        hoverinfo="skip",
        showlegend=False,
    )


def _label_axes(fig: go.Figure, cells: dict[tuple[str, str], _Cell], rows: int, scale: str) -> None:
    """Axis titles (x under the bottom row, y beside the first column), few y ticks, and for
    standardized cells one x range for all: the occupied std units, within ±6.5."""
    standardized = scale == "standardized"
    x_title = "value (std units)" if standardized else "value"
    fig.update_xaxes(title_text=x_title, title_font_size=TICK_FONT_PX, row=rows)
    fig.update_yaxes(title_text="density", title_font_size=TICK_FONT_PX, col=1)
    fig.update_yaxes(nticks=4, rangemode="tozero")
    if not standardized:
        return
    spans = [
        ((lo - c.mean) / c.std, (hi - c.mean) / c.std)
        for c in cells.values()
        if c.total > 0 and np.isfinite(c.std) and c.std > 0
        for lo, hi in [c.span()]
    ]
    if spans:
        lo = max(min(s[0] for s in spans), -6.5)
        hi = min(max(s[1] for s in spans), 6.5)
        fig.update_xaxes(range=[lo - 0.1, hi + 0.1])
