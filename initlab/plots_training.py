"""Figures of a short training run: the `training`, `training_layers` and `training_params`
tables in, a plotly Figure out.

No torch and no streamlit, as in `initlab.plots`, whose pieces these figures share: the scheme
colours, the layout patch, the legend below the plot, the min–max band over seeds, the escaping
of names (scheme and layer names are user text; plotly would render their markup).

Every figure survives what a run can leave behind: an empty table ("no training yet"), one seed,
one step, a diverged run whose later rows are missing, and non-finite losses (dropped: a log
axis cannot show them, and the diverged step's loss is non-finite by definition).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from initlab.health import scheme_order
from initlab.plots import (
    DESIGN_WIDTH,
    MARGIN_L,
    NAMED_TICKS,
    ROLE_WORDS,
    TICK_FONT_PX,
    _add_band,
    _axis_px,
    _colors_for,
    _empty,
    _integer_step,
    _numbers,
    _place_legend,
    _plain,
    _shorten_start,
    _style,
    _text,
    legend_layout,
    reference_line,
    text_px,
)

SPLITS = ("train", "heldout")
LAYER_ROLES = ("weight", "norm", "activation", "block", "other")
TRAINING_NEEDS = ("scheme", "seed", "step", "split", "loss", "accuracy")
LAYERS_NEEDS = ("scheme", "seed", "step", "order", "layer", "role", "act_var")
PARAMS_NEEDS = ("scheme", "seed", "step", "param", "ndim", "update_ratio")
NO_TRAINING = "no training yet"
# The train loss is one mini-batch's: smoothed by an EMA whose window is this share of the
# run's steps, and never fewer steps than EMA_MIN_WINDOW (2% of a 50-step run is one step).
EMA_SHARE = 0.02
EMA_MIN_WINDOW = 5
# What a line's hover calls its values, by the split (or the accuracy) it draws.
SERIES_LABELS = {
    "train": "train loss (EMA)",
    "heldout": "held-out loss",
    "accuracy": "held-out accuracy",
}
KEY_COLOR = "#555"  # the legend's line-style keys (train solid, held-out dashed)
PARAM_SCALE = "Viridis"  # parameters coloured by depth, the first dark, the last light


def _require(frame: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    """ValueError naming the table and the columns it lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{table} must have columns {', '.join(columns)}; missing {', '.join(missing)}"
        )


def _ordered(frame: pd.DataFrame, column: str) -> list[str]:
    """Values of `column` in order of first appearance (the user's order, not alphabetical)."""
    return [str(v) for v in pd.unique(frame[column])]


def _on_log(values: np.ndarray) -> np.ndarray:
    """What a log axis can show: finite and > 0; anything else becomes a gap."""
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def _mode(points: int) -> str:
    """A single point drawn as a line would be invisible."""
    return "lines" if points > 1 else "lines+markers"


def _significant(x: float) -> str:
    return f"{x:.4g}"


# ---------------------------------------------------------------- seeds and smoothing


def ema_window(steps: int) -> int:
    """The train curve's EMA window, in steps, for a run of `steps` recorded steps."""
    return max(EMA_MIN_WINDOW, round(EMA_SHARE * steps))


def _smoothed(train: pd.DataFrame, window: int) -> pd.DataFrame:
    """The train loss of each (scheme, seed), smoothed over its own finite values in step order.

    y₀ = x₀, yₜ = (1 − α)·yₜ₋₁ + α·xₜ with α = 2 / (window + 1): its centre of mass lies
    (window − 1)/2 steps back, like a `window`-step moving average, and it starts at the first
    loss (step 0's, before any update) instead of at zero, so it needs no bias correction.
    Non-finite losses are dropped first, so one overflowed batch does not blank the rest.
    """
    loss = _numbers(train["loss"])
    rows = train.assign(value=loss)[np.isfinite(loss)].sort_values("step", kind="stable")
    smooth = rows.groupby(["scheme", "seed"], sort=False)["value"].transform(
        lambda s: s.ewm(span=window, adjust=False).mean()
    )
    return rows.assign(value=smooth)


def _over_seeds(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per `by` group: mean, min and max over seeds of the finite `value`s, and their count."""
    value = _numbers(rows["value"])
    rows = rows.assign(value=np.where(np.isfinite(value), value, np.nan))
    summary = rows.groupby(by, sort=False)["value"].agg(
        mean="mean", low="min", high="max", seeds="count"
    )
    summary = summary.reset_index()
    return summary[summary["seeds"] > 0].sort_values(by[-1], kind="stable")


# ---------------------------------------------------------------- lines with bands


def _band(fig: go.Figure, part: pd.DataFrame, name: str, group: str, color: str) -> None:
    """Min–max over seeds as a translucent band, drawn as in `plots.variance_by_depth`."""
    _add_band(fig, part, name, color, x="step", group=group)


def _series(
    fig: go.Figure, part: pd.DataFrame, scheme: str, color: str, split: str, legend: bool
) -> None:
    """One scheme's band and mean line for one split: train solid, held-out dashed."""
    _band(fig, part, f"{scheme} {split}", scheme, color)
    label = SERIES_LABELS[split]
    fig.add_trace(
        go.Scatter(
            x=part["step"],
            y=part["mean"],
            name=_text(scheme),
            legendgroup=scheme,
            showlegend=legend,
            mode=_mode(len(part)),
            line={"color": color, "dash": "solid" if split == "train" else "dash"},
            marker={"size": 5},
            connectgaps=False,
            meta=split,
            customdata=part["seeds"],
            hovertemplate=f"step %{{x}}<br>{label} %{{y:.4g}} (mean of %{{customdata}} seeds)"
            "<extra>%{fullData.name}</extra>",
        )
    )


def _key(fig: go.Figure, name: str, dash: str) -> None:
    """A legend entry for a line style (not a scheme): what solid and dashed mean."""
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            name=name,
            mode="lines",
            line={"color": KEY_COLOR, "dash": dash},
            legendgroup=f"key {name}",
            showlegend=True,
            hoverinfo="skip",
        )
    )


def _level(fig: go.Figure, y: float, label: str, steps: tuple[float, float]) -> None:
    """A dotted reference (the floor, chance) across the run."""
    fig.add_trace(reference_line(y, label, list(steps), "dot", label))


# ---------------------------------------------------------------- loss and accuracy


def _checked_training(training: pd.DataFrame) -> pd.DataFrame:
    """The training table, its columns and splits checked."""
    _require(training, TRAINING_NEEDS, "training")
    unknown = sorted({str(s) for s in training["split"]} - set(SPLITS))
    if unknown:
        raise ValueError(f"training split must be one of {', '.join(SPLITS)}; got {unknown}")
    return training


def _references(
    floor: float | None, chance: float | None, floor_note: str | None
) -> list[tuple[float, str]]:
    """The reference levels a log axis can show, with their labels."""
    found = []
    if floor is not None and math.isfinite(floor) and floor > 0:
        note = f" ({_text(floor_note)})" if floor_note else ""
        found.append((float(floor), f"best achievable {_significant(floor)}{note}"))
    if chance is not None and math.isfinite(chance) and chance > 0:
        found.append((float(chance), f"chance {_significant(chance)}"))
    return found


def loss_figure(
    training: pd.DataFrame,
    floor: float | None = None,
    chance: float | None = None,
    floor_note: str | None = None,
    colors: dict[str, str] | None = None,
    width: int = DESIGN_WIDTH,
) -> go.Figure:
    """Loss against steps per scheme on a log y axis: train solid (EMA-smoothed, see
    `ema_window`), held-out dashed (as measured); the mean over seeds with a min–max band.

    `floor` (e.g. the task's entropy rate, named by `floor_note`) and `chance` (the loss of
    predicting the label frequencies) draw dotted reference levels. The x axis is linear: a
    log axis would have to drop step 0, the loss before any update, or draw it at step 1 where
    it is not, and the first steps, where schemes differ most, are the ones a short run is for.
    """
    if training.empty:
        return _empty("Loss during training", NO_TRAINING)
    training = _checked_training(training)
    train = training[training["split"] == "train"]
    window = ema_window(train["step"].nunique())
    title = f"Loss during training (train: EMA over {window} steps; held-out: as measured)"
    heldout = training[training["split"] == "heldout"]
    parts = {
        "train": _loss_summary(_smoothed(train, window)),
        "heldout": _loss_summary(heldout.assign(value=heldout["loss"])),
    }
    if all(part["mean"].isna().all() for part in parts.values()):
        return _empty(title, "no finite loss to plot: every recorded loss is non-finite")
    fig, schemes = go.Figure(), scheme_order(training)
    _loss_lines(fig, parts, schemes, _colors_for(training, colors))
    _keys(fig, window)
    for y, label in _references(floor, chance, floor_note):
        _level(fig, y, label, _span(training))
    fig.update_xaxes(title_text="step (updates done)", rangemode="tozero")
    fig.update_yaxes(title_text="loss", type="log", exponentformat="power")
    legend = legend_layout([_text(s) for s in schemes] + _key_names(window), width)
    return _place_legend(_style(fig, title), legend, _axis_px({}))


def _loss_lines(
    fig: go.Figure, parts: dict[str, pd.DataFrame], schemes: list[str], palette: dict[str, str]
) -> None:
    """Each scheme's train and held-out lines; the first one drawn names the scheme."""
    for scheme in schemes:
        drawn = [(split, part[part["scheme"] == scheme]) for split, part in parts.items()]
        drawn = [(split, own) for split, own in drawn if own["mean"].notna().any()]
        for i, (split, own) in enumerate(drawn):
            _series(fig, own, scheme, palette[scheme], split, legend=i == 0)


def _loss_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over seeds per (scheme, step), where a log axis can show them."""
    summary = _over_seeds(rows, ["scheme", "step"])
    for column in ("mean", "low", "high"):
        summary[column] = _on_log(summary[column].to_numpy(dtype=float))
    return summary


def _key_names(window: int) -> list[str]:
    return [f"train (EMA over {window} steps)", "held-out (not smoothed)"]


def _keys(fig: go.Figure, window: int) -> None:
    """Legend entries for the two line styles, after the schemes'."""
    for name, dash in zip(_key_names(window), ("solid", "dash"), strict=True):
        _key(fig, name, dash)


def _span(training: pd.DataFrame) -> tuple[float, float]:
    steps = _numbers(training["step"])
    return float(np.nanmin(steps)), float(np.nanmax(steps))


def accuracy_figure(
    training: pd.DataFrame, colors: dict[str, str] | None = None, width: int = DESIGN_WIDTH
) -> go.Figure | None:
    """Held-out accuracy against steps per scheme (mean over seeds, min–max band), dashed as
    held-out is in `loss_figure`; None when the task defines no accuracy (every held-out
    accuracy is NaN, e.g. a regression). An empty table gives the "no training yet" figure."""
    title = "Held-out accuracy during training (mean over seeds)"
    if training.empty:
        return _empty(title, NO_TRAINING)
    training = _checked_training(training)
    heldout = training[training["split"] == "heldout"]
    accuracy = _numbers(heldout["accuracy"])
    if not np.isfinite(accuracy).any():
        return None
    summary = _over_seeds(heldout.assign(value=accuracy), ["scheme", "step"])
    fig, palette = go.Figure(), _colors_for(training, colors)
    schemes = scheme_order(summary)
    for scheme in schemes:
        own = summary[summary["scheme"] == scheme]
        _series(fig, own, scheme, palette[scheme], "accuracy", legend=True)
    fig.update_xaxes(title_text="step (updates done)", rangemode="tozero")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], tickformat=".0%")
    legend = legend_layout([_text(s) for s in schemes], width)
    return _place_legend(_style(fig, title), legend, _axis_px({}))


# ---------------------------------------------------------------- update-to-weight ratio


def _guide_label(guide: float) -> str:
    """1e-3 -> '~1e-3', 2.5e-3 -> '~2.5e-3'."""
    exponent = math.floor(math.log10(guide))
    return f"~{guide / 10**exponent:.3g}e{exponent}"


def _param_colors(names: list[str]) -> dict[str, str]:
    """A colour per parameter along a sequential scale, in forward order: depth reads as
    colour, and a parameter has the same colour in every scheme's panel."""
    spots = [0.9 * i / (len(names) - 1) if len(names) > 1 else 0.0 for i in range(len(names))]
    return dict(zip(names, sample_colorscale(PARAM_SCALE, spots), strict=True))


def _log_ratios(params: pd.DataFrame) -> pd.DataFrame:
    """Weight matrices only (ndim >= 2: biases and norm gains move differently by design),
    log10 of the finite positive update ratios, averaged over seeds per (scheme, param, step)."""
    weights = params[_numbers(params["ndim"]) >= 2]
    ratio = _on_log(_numbers(weights["update_ratio"]))
    with np.errstate(invalid="ignore"):
        logged = weights.assign(value=np.log10(ratio))
    return _over_seeds(logged, ["scheme", "param", "step"])


def update_ratio_figure(
    params: pd.DataFrame, guide: float = 1e-3, width: int = DESIGN_WIDTH
) -> go.Figure:
    """log10(update std / weight std) against steps, a line per weight matrix, a panel per
    scheme (shared y), the mean of log10 over seeds; a dashed guide at log10(`guide`): a
    ratio near 1e-3 per step is the usual sign of a healthy learning rate (Karpathy)."""
    if not (math.isfinite(guide) and guide > 0):
        raise ValueError(f"guide must be a finite number > 0; got {guide!r}")
    title = "Update-to-weight ratio during training (log10, mean over seeds)"
    if params.empty:
        return _empty(title, NO_TRAINING)
    _require(params, PARAMS_NEEDS, "training_params")
    summary = _log_ratios(params)
    if summary.empty:
        return _empty(title, "no finite update ratios of weight matrices (ndim >= 2) yet")
    schemes = scheme_order(params)
    names = [n for n in _ordered(params, "param") if n in set(summary["param"])]
    fig = make_subplots(
        cols=len(schemes), shared_yaxes=True, subplot_titles=[_text(s) for s in schemes]
    )
    _ratio_lines(fig, summary, schemes, _param_colors(names))
    _guides(fig, math.log10(guide), _guide_label(guide), summary, len(schemes))
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig.update_yaxes(title_text="log10(update std / weight std)", col=1)
    legend = legend_layout([_text(n) for n in names], width)
    return _place_legend(_style(fig, title), legend, _axis_px({}))


def _ratio_lines(
    fig: go.Figure, summary: pd.DataFrame, schemes: list[str], colors: dict[str, str]
) -> None:
    """A line per (scheme, param); each param named once in the legend, its panels grouped."""
    named: set[str] = set()
    for col, scheme in enumerate(schemes, start=1):
        for param, color in colors.items():
            part = summary[(summary["scheme"] == scheme) & (summary["param"] == param)]
            if part.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=part["step"],
                    y=part["mean"],
                    name=_text(param),
                    legendgroup=param,
                    showlegend=param not in named,
                    mode=_mode(len(part)),
                    line={"color": color},
                    customdata=part["seeds"],
                    hovertemplate="step %{x}<br>log10 ratio %{y:.3g} (mean of %{customdata} "
                    f"seeds)<extra>{_text(scheme)}: %{{fullData.name}}</extra>",
                ),
                row=1,
                col=col,
            )
            named.add(param)


def _guides(fig: go.Figure, y: float, label: str, summary: pd.DataFrame, panels: int) -> None:
    """The dashed guide in every panel, as a trace so each panel's y range includes it."""
    steps = [float(summary["step"].min()), float(summary["step"].max())]
    for col in range(1, panels + 1):
        fig.add_trace(reference_line(y, label, steps, "dash", f"guide {label}"), row=1, col=col)


# ---------------------------------------------------------------- activations over training


def _heat_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (scheme, depth, step): the layer's name and log10 of the mean over seeds of its
    finite act_var (a mean <= 0 is a gap). Depth counts the selected rows of one (scheme,
    seed, step) in forward order from 1, so a layer called twice has two depths."""
    rows = rows.sort_values("order", kind="stable")
    depth = rows.groupby(["scheme", "seed", "step"], sort=False).cumcount() + 1
    value = _numbers(rows["act_var"])
    rows = rows.assign(depth=depth, value=np.where(np.isfinite(value), value, np.nan))
    cells = rows.groupby(["scheme", "depth", "step"], sort=False).agg(
        layer=("layer", "first"), mean=("value", "mean"), seeds=("value", "count")
    )
    cells = cells.reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        return cells.assign(z=np.log10(_on_log(cells["mean"].to_numpy(dtype=float))))


def _depth_ticks(names: list[str]) -> dict:
    """y axis ticks for depths 1..n: named as `plots.depth_axis` names them ("5 · fc3") up to
    NAMED_TICKS depths, integer ticks beyond."""
    n = len(names)
    if n > NAMED_TICKS:
        return {"tickmode": "linear", "tick0": 0, "dtick": _integer_step(n), "tickformat": "d"}
    text = [f"{d} · {_text(_shorten_start(name, 16))}" for d, name in enumerate(names, start=1)]
    return {"tickmode": "array", "tickvals": list(range(1, n + 1)), "ticktext": text}


def activation_heatmap(layers: pd.DataFrame, role: str | None = "weight") -> go.Figure:
    """log10 of the activation variance (mean over seeds) at each depth and record step, a
    panel per scheme on one shared colour scale. `role` keeps one kind of row ("weight":
    outputs of layers with weights, ...); None keeps every row. Depth runs down the y axis,
    record steps across (as categories, in increasing order)."""
    if role is not None and role not in LAYER_ROLES:
        raise ValueError(f"role must be None or one of {', '.join(LAYER_ROLES)}; got {role!r}")
    words = ROLE_WORDS["all" if role is None else role]
    title = f"Activation variance during training ({words}, log10, mean over seeds)"
    if layers.empty:
        return _empty(title, NO_TRAINING)
    _require(layers, LAYERS_NEEDS, "training_layers")
    rows = layers if role is None else layers[layers["role"] == role]
    if rows.empty:
        return _empty(title, f"no layers with role {role!r} to plot")
    cells = _heat_cells(rows)
    if cells["z"].isna().all():
        return _empty(title, "no finite positive activation variance to plot")
    schemes = scheme_order(rows)
    steps = [str(s) for s in sorted(pd.unique(cells["step"]))]
    fig = make_subplots(
        cols=len(schemes), shared_yaxes=True, subplot_titles=[_text(s) for s in schemes]
    )
    _heatmaps(fig, cells, schemes, steps)
    left = _heat_axes(fig, cells, steps, words)
    return _style(fig, title, bottom=70).update_layout(margin_l=left)


def _heat_axes(fig: go.Figure, cells: pd.DataFrame, steps: list[str], words: str) -> int:
    """Depth down the y axis (the input at the top, as a model prints), steps across as
    categories; returns the left margin the named depth ticks and the y title need."""
    names = cells.groupby("depth", sort=True)["layer"].first().astype(str).tolist()
    ticks = _depth_ticks(names)
    fig.update_yaxes(autorange="reversed", **ticks)
    fig.update_yaxes(title_text=f"depth ({words}, from the input)", col=1)
    fig.update_xaxes(title_text="step", type="category", categoryorder="array", categoryarray=steps)
    longest = max((text_px(_plain(t), TICK_FONT_PX) for t in ticks.get("ticktext", [])), default=0)
    return max(MARGIN_L, 40 + math.ceil(longest))


def _heatmaps(fig: go.Figure, cells: pd.DataFrame, schemes: list[str], steps: list[str]) -> None:
    """One heatmap per scheme on the same zmin/zmax; only the last one draws the colour bar."""
    low, high = float(cells["z"].min()), float(cells["z"].max())
    if low == high:  # one value: give the colour scale some extent
        low, high = low - 0.5, high + 0.5
    depths = int(cells["depth"].max())
    for col, scheme in enumerate(schemes, start=1):
        own = cells[cells["scheme"] == scheme].assign(step=lambda c: c["step"].astype(str))
        grid = own.pivot(index="depth", columns="step", values="z")
        grid = grid.reindex(index=range(1, depths + 1), columns=steps)
        layer = own.pivot(index="depth", columns="step", values="layer")
        layer = layer.reindex(index=range(1, depths + 1), columns=steps).map(_cell_name)
        heat = go.Heatmap(
            z=grid.to_numpy(dtype=float),
            x=steps,
            y=list(range(1, depths + 1)),
            zmin=low,
            zmax=high,
            colorscale="Viridis",
            showscale=col == len(schemes),
            colorbar={"title": {"text": "log10 act var"}},
            name=_text(scheme),
            customdata=layer.to_numpy(dtype=object),
            hovertemplate="step %{x}<br>depth %{y} (%{customdata})<br>log10 act var %{z:.3g}"
            "<extra>%{fullData.name}</extra>",
        )
        fig.add_trace(heat, row=1, col=col)


def _cell_name(name: object) -> str:
    return "" if pd.isna(name) else _text(name)
