"""Per-layer health flags and one-sentence verdicts, computed from the `layers` results table.

Pure pandas/numpy (no torch, no plotly, no streamlit) so the app, the CLI report and notebooks
all share one judgement of what a scheme did to the network.

Judgements are relative: activation variance against the input's (layer 1's for token ids,
whose variance means nothing), gradient variance against the output's (the probe's cotangent
is standard normal). Verdicts average the variance over seeds before fitting a trend, give the
seeds' spread, and call a trend only when it stands out of that spread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Thresholds on the median (over seeds) variance of one layer's output, relative to the input's.
VANISHING_VAR = 1e-6
EXPLODING_VAR = 1e6
# The same for gradients, relative to the output gradient's variance (1).
VANISHING_GRAD = 1e-6
EXPLODING_GRAD = 1e6
# More than half of a layer's units zero for every sample: the layer passes little on.
DEAD_UNITS = 0.5
# A fitted per-layer variance factor within [1/1.05, 1.05] counts as "flat".
FLAT_FACTOR = 1.05
SATURATED_SHARE = 0.3  # say so when at least this share of bounded outputs sits at a bound
# The residual stream counts as flat while it changes by less than 5% over all its blocks.
FLAT_STREAM = 0.05

STATUSES = ("ok", "non-finite", "zero by design", "dead", "vanishing", "exploding",
            "vanishing gradients", "exploding gradients")  # fmt: skip
# Row selectors for depth plots and verdicts: the `role` column's values, or "all".
ROLES = ("weight", "norm", "activation", "block", "other", "all")

_HEALTH_COLUMNS = ["act_var", "grad_var", "frac_zero", "frac_dead", "frac_saturated"]


def thresholds(input_var: float | None = 1.0) -> list[str]:
    """The health statuses' rules in words, for the page and the report."""
    base = "the input's variance" if input_var else "layer 1's variance (token input)"
    return [
        "non-finite: any inf or NaN in the output, in any seed",
        "zero by design: the scheme set this layer's weights (or what feeds it) to exactly 0",
        f"dead: more than {DEAD_UNITS:.0%} of its units are zero for every sample",
        f"vanishing / exploding: variance below {VANISHING_VAR:g}× or above "
        f"{EXPLODING_VAR:g}× {base}",
        f"vanishing / exploding gradients: gradient variance below {VANISHING_GRAD:g} or above "
        f"{EXPLODING_GRAD:g} (the output's gradient has variance 1)",
        "all figures are medians over seeds",
    ]


def scheme_order(frame: pd.DataFrame) -> list[str]:
    """Schemes in the order they first appear (the experiment's order, not alphabetical)."""
    return [str(s) for s in pd.unique(frame["scheme"])]


def with_depth(layers: pd.DataFrame, role: str = "weight") -> pd.DataFrame:
    """Rows of `role` ("all" keeps every observed row) with a 1-based `depth` column.

    Depth is the position among the selected rows of one (scheme, seed) in execution order, so
    "layer 3" means the third layer with weights, not the third observed row.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    rows = layers if role == "all" else layers[layers["role"] == role]
    rank = {scheme: i for i, scheme in enumerate(scheme_order(rows))}
    rows = rows.assign(_rank=rows["scheme"].map(rank))
    rows = rows.sort_values(["_rank", "seed", "order"], kind="stable").drop(columns="_rank")
    return rows.assign(depth=rows.groupby(["scheme", "seed"], sort=False).cumcount() + 1)


def numbered(table: pd.DataFrame, role: str) -> pd.DataFrame:
    """The health table as the page shows it: `depth` numbered as the verdicts number it (the
    n-th row of `role` per scheme, 1-based; blank for rows of other roles) in place of
    `order`, and the status next to the layer it judges."""
    picked = table["role"] == role if role != "all" else pd.Series(True, index=table.index)
    count = picked.groupby(table["scheme"], sort=False).cumsum()
    depth = [str(int(n)) if p else "" for n, p in zip(count, picked, strict=True)]
    out = table.drop(columns="order").assign(depth=depth)
    first = ["scheme", "depth", "layer", "status"]
    return out[[*first, *[c for c in out.columns if c not in first]]]


def default_role(layers: pd.DataFrame) -> str:
    """What a model's depth is best read on: its blocks (the residual stream) when it has
    any, else its layers with weights."""
    return "block" if (layers["role"] == "block").any() else "weight"


def _num(column: pd.Series) -> np.ndarray:
    """A numeric column as a float array (nullable dtypes' NA becomes NaN)."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


# ---------------------------------------------------------------- per-layer health


def layer_health(
    layers: pd.DataFrame, input_var: float | None = 1.0, params: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (scheme, observed row): statistics' median over seeds and a `status`.

    `nonfinite` is the maximum over seeds, not the median: one seed blowing up is a finding.
    `params` (the params table) tells which layers the scheme zeroed on purpose.
    Status precedence follows STATUSES after "ok".
    """
    columns = [c for c in _HEALTH_COLUMNS if c in layers]
    numeric = {c: _num(layers[c]) for c in [*columns, "nonfinite"]}
    labels = ["type", "role"] if "role" in layers else ["type"]
    aggs = {c: (c, "first") for c in labels}
    aggs |= {c: (c, "median") for c in columns}
    aggs |= {"nonfinite": ("nonfinite", "max"), "seeds": ("seed", "nunique")}
    # A variance that overflowed to inf in any seed is non-finite too (as in `verdicts`).
    overflow = ~np.isfinite(numeric["act_var"]) & ~np.isnan(numeric["act_var"])
    numeric["nonfinite"] = np.maximum(np.nan_to_num(numeric["nonfinite"]), overflow.astype(float))
    grouped = layers.assign(**numeric).groupby(["scheme", "order", "layer"], sort=False)
    table = grouped.agg(**aggs).reset_index()
    rank = table["scheme"].map({s: i for i, s in enumerate(scheme_order(layers))})
    table = table.iloc[np.lexsort((table["order"].to_numpy(), rank.to_numpy()))]
    # A count reads better as an integer; a missing count is taken as "none seen".
    table = table.assign(nonfinite=table["nonfinite"].fillna(0).astype(int)).reset_index(drop=True)
    reference = _reference(table, input_var)
    return table.assign(status=_status(table, reference, _by_design(table, params)))


def _reference(table: pd.DataFrame, input_var: float | None) -> np.ndarray:
    """Per row, the variance it is judged against: the input's, or its scheme's layer 1."""
    if input_var:
        return np.full(len(table), float(input_var))
    weights = table[table["role"] == "weight"] if "role" in table else table
    first = weights.groupby("scheme", sort=False)["act_var"].first()
    return table["scheme"].map(first).to_numpy(dtype=float, na_value=np.nan)


def zeroed_layers(params: pd.DataFrame | None) -> set[tuple[str, str]]:
    """(scheme, layer) pairs whose weight the scheme made exactly zero in every seed."""
    if params is None or params.empty:
        return set()
    weights = params[params["param"].str.rsplit(".", n=1).str[-1].str.contains("weight")]
    zero = (_num(weights["std"]) == 0) & (_num(weights["mean"]) == 0)
    grouped = weights.assign(_zero=zero).groupby(["scheme", "layer"], sort=False)["_zero"].all()
    return {key for key, is_zero in grouped.items() if is_zero}


def _by_design(table: pd.DataFrame, params: pd.DataFrame | None) -> np.ndarray:
    """Rows that are zero because the scheme zeroed a layer: that layer, and the all-zero
    outputs right after it (its activation, a norm) before the next layer with weights."""
    zeroed = zeroed_layers(params)
    out = np.zeros(len(table), dtype=bool)
    if not zeroed:
        return out
    previous, scheme = False, None
    for i, row in enumerate(table.itertuples(index=False)):
        previous = previous and row.scheme == scheme
        own = (row.scheme, row.layer) in zeroed
        follows = previous and row.role != "weight" and row.frac_zero == 1.0
        out[i] = previous = own or follows
        scheme = row.scheme
    return out


def _status(table: pd.DataFrame, reference: np.ndarray, by_design: np.ndarray) -> np.ndarray:
    """The first matching status per row, in order of severity."""
    var = _num(table["act_var"]) / reference
    grad = _num(table["grad_var"])
    dead = _num(table["frac_dead"]) if "frac_dead" in table else _num(table["frac_zero"])
    conditions = [
        (np.nan_to_num(_num(table["nonfinite"])) > 0) | ~np.isfinite(_num(table["act_var"])),
        by_design,
        dead > DEAD_UNITS,
        var < VANISHING_VAR,
        var > EXPLODING_VAR,
        grad < VANISHING_GRAD,
        grad > EXPLODING_GRAD,
    ]
    return np.select(conditions, list(STATUSES[1:]), default="ok")


# ---------------------------------------------------------------- verdicts


def verdicts(
    layers: pd.DataFrame, input_var: float | None = 1.0, role: str | None = None
) -> dict[str, str]:
    """One sentence per scheme on how the signal moves with depth.

    On the layers with weights (or, for models with blocks, on the residual stream: `role`
    "block", the default there): the variance is averaged over seeds per depth, then fitted —
    log-linearly for layers (a factor per layer), linearly for blocks (an increment per block,
    the pre-LN residual stream's law). Exact zeros and non-finite values (in any seed) are
    reported at the first layer where they happen, with the trend up to that layer.
    """
    if input_var is not None and not (np.isfinite(input_var) and input_var >= 0):
        raise ValueError(f"input_var must be >= 0 and finite; got {input_var!r}")
    if input_var == 0:
        said = ("the input is constant (variance 0): every sample gives the same outputs, so "
                "nothing here is the scheme's doing; give the input a spread")  # fmt: skip
        return {scheme: said for scheme in scheme_order(layers)}
    role = role or (default_role(layers) if len(layers) else "weight")
    out = {}
    for scheme in scheme_order(layers):
        rows = layers[layers["scheme"] == scheme]
        story = _saturation(rows)
        sentence = _verdict(_profile(rows, role), input_var, role) + _gradients(rows)
        out[scheme] = f"{story}; {sentence}" if story else sentence
    return out


def _profile(rows: pd.DataFrame, role: str) -> pd.DataFrame:
    """Per (seed, depth) of `role`'s rows: name, variance, and whether it is non-finite."""
    rows = with_depth(rows, role)
    var = _num(rows["act_var"])
    bad = (np.nan_to_num(_num(rows["nonfinite"])) > 0) | ~np.isfinite(var)
    return pd.DataFrame({"seed": rows["seed"].to_numpy(), "depth": rows["depth"].to_numpy(),
                         "layer": rows["layer"].to_numpy(), "var": var, "bad": bad})  # fmt: skip


def _verdict(profile: pd.DataFrame, input_var: float | None, role: str) -> str:
    """The sentence for one scheme's profile."""
    noun = "blocks" if role == "block" else "layers with weights"
    if profile.empty:
        return f"no {noun} to judge"
    per_depth = profile.groupby("depth", sort=True).agg(
        layer=("layer", "first"), var=("var", "mean"), bad=("bad", "any")
    )
    events = np.flatnonzero(per_depth["bad"].to_numpy() | (per_depth["var"].to_numpy() == 0))
    if events.size:
        return _event(per_depth, profile, events[0], role)
    if role == "block":
        return _stream(per_depth, profile)
    return _layers_trend(per_depth, profile, input_var)


def _event(per_depth: pd.DataFrame, profile: pd.DataFrame, first: int, role: str) -> str:
    row = per_depth.iloc[first]
    what = "become non-finite" if row["bad"] else "vanish to exact zeros"
    noun = "block" if role == "block" else "layer"
    healthy = profile[profile["depth"] < per_depth.index[first]]
    fit = _fit(healthy, log=role != "block")
    after = f", after {_words(fit, role, gerund=True)}" if fit is not None else ""
    return f"activations {what} at {noun} {per_depth.index[first]} ({row['layer']}){after}"


def _layers_trend(per_depth: pd.DataFrame, profile: pd.DataFrame, input_var: float | None) -> str:
    last = per_depth.iloc[-1]
    # Token ids have no meaningful variance: compare with the first layer (the embedding).
    base, whose = (
        (input_var, "the input's") if input_var else (per_depth.iloc[0]["var"], "layer 1's")
    )
    ratio = f"{_fmt(last['var'] / base)}× {whose}"
    fit = _fit(profile, log=True)
    if fit is None:
        return f"one layer with weights ({last['layer']}): its activation variance is {ratio}"
    where = f"at layer {per_depth.index[-1]} ({last['layer']})"
    return f"activations {_words(fit, 'weight')}; {where} their variance is {ratio}"


def _stream(per_depth: pd.DataFrame, profile: pd.DataFrame) -> str:
    first, last = per_depth.iloc[0], per_depth.iloc[-1]
    span = f"{_fmt(first['var'])} at {first['layer']} → {_fmt(last['var'])} at {last['layer']}"
    fit = _fit(profile, log=False)
    if fit is None:
        return f"one block ({last['layer']}): its output variance is {_fmt(last['var'])}"
    # Relative to where the stream starts, so schemes of different scales compare: GPT-2's
    # scaled projections add a fraction of what the unscaled ones add, block after block.
    share = f", {abs(fit.slope) / first['var']:.2g}× {first['layer']}'s variance per block"
    share = share if fit.significant and first["var"] > 0 else ""
    return f"the residual stream {_words(fit, 'block')}{share}: {span}"


# ---------------------------------------------------------------- fitting a trend over seeds


class Fit:
    """A trend fitted to the seeds' mean, the per-seed slopes, and whether it stands out."""

    def __init__(self, slope: float, seeds: list[float], tolerance: float, log: bool) -> None:
        self.slope, self.seeds, self.log = slope, seeds, log
        self.flat = abs(slope) <= tolerance
        agree = [abs(s) > tolerance and np.sign(s) == np.sign(slope) for s in seeds or [slope]]
        self.significant = not self.flat and all(agree)


def _slope(depth: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(depth, y, 1)[0])


def _fit(profile: pd.DataFrame, log: bool) -> Fit | None:
    """Slope of (log) variance against depth on the seeds' mean variance; None below 2 depths.

    A trend is called only when every seed shows it beyond the flat tolerance, on the same
    side: with few seeds a finite-width network's factor scatters (an 8×256 Kaiming MLP reads
    ×0.91 to ×1.10 per layer seed by seed, ×1.00 over 16 seeds)."""
    ok = profile[np.isfinite(profile["var"]) & ((profile["var"] > 0) | (not log))]
    mean = ok.groupby("depth", sort=True)["var"].mean()
    if len(mean) < 2:
        return None
    transform = np.log if log else (lambda v: v)
    slope = _slope(mean.index.to_numpy(float), transform(mean.to_numpy()))
    seeds = [_slope(g["depth"].to_numpy(float), transform(g["var"].to_numpy()))
             for _, g in ok.groupby("seed") if g["depth"].nunique() >= 2]  # fmt: skip
    tolerance = np.log(FLAT_FACTOR) if log else FLAT_STREAM * mean.iloc[0] / (len(mean) - 1)
    return Fit(slope, seeds, float(tolerance), log)


def _words(fit: Fit, role: str, gerund: bool = False) -> str:
    """'shrink ×0.5 per layer (seeds 0.49–0.51)', 'grows +0.012 per block (linear)', ..."""
    if fit.log:
        return _factor_words(fit, gerund)
    return _increment_words(fit, gerund)


def _factor_words(fit: Fit, gerund: bool) -> str:
    factor = float(np.exp(fit.slope))
    ing = "ing" if gerund else ""
    spread = _spread([float(np.exp(s)) for s in fit.seeds], "{:.2f}" if fit.flat else "{:.3g}")
    if fit.flat:
        # Two decimals: near 1 the interesting digits are the second and third.
        return f"{'staying' if gerund else 'stay'} flat (×{factor:.2f} per layer{spread})"
    if not fit.significant:
        return (f"show{ing} no trend the seeds agree on (×{_fmt(factor)} per layer{spread}; "
                "more seeds would tell)")  # fmt: skip
    verb = "shrink" if factor < 1 else "grow"
    return f"{verb}{ing} ×{_fmt(factor)} per layer" + (f" ({spread[2:]})" if spread else "")


def _increment_words(fit: Fit, gerund: bool) -> str:
    step = f"{fit.slope:+.3g} per block"
    spread = _spread(fit.seeds, "{:+.3g}")
    if fit.significant:
        verb = "grow" if fit.slope > 0 else "shrink"
        verb = f"{verb}ing" if gerund else f"{verb}s"
        return f"{verb} {step} (linear{spread})"
    if fit.flat:
        return f"{'staying' if gerund else 'stays'} flat ({step}{spread})"
    return f"{'showing' if gerund else 'shows'} no trend the seeds agree on ({step}{spread})"


def _spread(values: list[float], pattern: str) -> str:
    """', seeds 0.97–1.01' for two or more seeds, else nothing."""
    if len(values) < 2:
        return ""
    return f", seeds {pattern.format(min(values))}–{pattern.format(max(values))}"


# ---------------------------------------------------------------- what variance alone hides


def _saturation(rows: pd.DataFrame) -> str:
    """Saturated bounded units are the story: their variance is flat because they are stuck."""
    saturated = _num(rows["frac_saturated"])
    saturated = saturated[np.isfinite(saturated)]
    if not saturated.size or np.median(saturated) < SATURATED_SHARE:
        return ""
    return (f"saturated: {np.median(saturated):.0%} of bounded activations sit at their bounds, "
            "where gradients vanish, whatever the variance says")  # fmt: skip


def _gradients(rows: pd.DataFrame) -> str:
    """How gradients move toward the input, when they are measured."""
    grads = with_depth(rows, "weight")
    grad = _num(grads["grad_var"])
    profile = pd.DataFrame({"seed": grads["seed"].to_numpy(), "depth": grads["depth"].to_numpy(),
                            "var": grad})  # fmt: skip
    profile = profile[np.isfinite(profile["var"]) & (profile["var"] > 0)]
    fit = _fit(profile, log=True)
    if fit is None or not fit.significant:
        return ""
    toward_input = float(np.exp(-fit.slope))  # depth runs input → output; gradients run back
    if 1 / FLAT_FACTOR <= toward_input <= FLAT_FACTOR:
        return ""
    verb = "shrink" if toward_input < 1 else "grow"
    return f"; gradients {verb} ×{_fmt(toward_input)} per layer toward the input"


def _fmt(x: float) -> str:
    """3 significant digits; scientific notation for tiny and huge numbers (via the g format)."""
    return f"{x:.3g}"
