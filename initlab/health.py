"""Per-layer health flags and one-sentence verdicts, computed from the `layers` results table.

Pure pandas/numpy (no torch, no plotly, no streamlit) so the app, the CLI report and notebooks
all share one judgement of what a scheme did to the network.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Thresholds on the median (over seeds) activation variance of one layer's output. The input is
# usually unit-variance, so these are "the signal is gone" / "float32 is running out of room".
VANISHING_VAR = 1e-6
EXPLODING_VAR = 1e6
# More than 90% exact zeros: the layer passes (almost) nothing on, e.g. ReLUs fed negative inputs.
DEAD_FRAC_ZERO = 0.9
# A fitted per-layer variance factor within [1/1.05, 1.05] counts as "flat".
FLAT_FACTOR = 1.05

STATUSES = ("ok", "vanishing", "exploding", "non-finite", "dead")
# Row selectors for depth plots and verdicts: the `role` column's values, or "all".
ROLES = ("weight", "norm", "activation", "other", "all")

_HEALTH_COLUMNS = ["act_var", "grad_var", "frac_zero", "frac_saturated"]


def scheme_order(frame: pd.DataFrame) -> list[str]:
    """Schemes in the order they first appear (the experiment's order, not alphabetical)."""
    return [str(s) for s in pd.unique(frame["scheme"])]


def with_depth(layers: pd.DataFrame, role: str = "weight") -> pd.DataFrame:
    """Rows of `role` ("all" keeps every leaf call) with a 1-based `depth` column.

    Depth is the position among the selected rows of one (scheme, seed) in execution order, so
    "layer 3" means the third layer with weights, not the third leaf call.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    rows = layers if role == "all" else layers[layers["role"] == role]
    rank = {scheme: i for i, scheme in enumerate(scheme_order(rows))}
    rows = rows.assign(_rank=rows["scheme"].map(rank))
    rows = rows.sort_values(["_rank", "seed", "order"], kind="stable").drop(columns="_rank")
    return rows.assign(depth=rows.groupby(["scheme", "seed"], sort=False).cumcount() + 1)


def _num(column: pd.Series) -> np.ndarray:
    """A numeric column as a float array (nullable dtypes' NA becomes NaN)."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def layer_health(layers: pd.DataFrame) -> pd.DataFrame:
    """One row per (scheme, layer call): statistics' median over seeds and a `status`.

    `nonfinite` is the maximum over seeds, not the median: one seed blowing up is a finding.
    Status precedence: non-finite > dead > vanishing > exploding > ok (see module constants).
    """
    numeric = {c: _num(layers[c]) for c in [*_HEALTH_COLUMNS, "nonfinite"]}
    labels = ["type", "role"] if "role" in layers else ["type"]
    aggs = {c: (c, "first") for c in labels}
    aggs |= {c: (c, "median") for c in _HEALTH_COLUMNS}
    aggs |= {"nonfinite": ("nonfinite", "max"), "seeds": ("seed", "nunique")}
    # A variance that overflowed to inf in any seed is non-finite too (as in `verdicts`).
    overflow = ~np.isfinite(numeric["act_var"]) & ~np.isnan(numeric["act_var"])
    numeric["nonfinite"] = np.maximum(np.nan_to_num(numeric["nonfinite"]), overflow.astype(float))
    grouped = layers.assign(**numeric).groupby(["scheme", "order", "layer"], sort=False)
    table = grouped.agg(**aggs).reset_index()
    rank = table["scheme"].map({s: i for i, s in enumerate(scheme_order(layers))})
    table = table.iloc[np.lexsort((table["order"].to_numpy(), rank.to_numpy()))]
    # A count reads better as an integer; a missing count is taken as "none seen".
    table = table.assign(nonfinite=table["nonfinite"].fillna(0).astype(int))
    return table.assign(status=_status(table)).reset_index(drop=True)


def _status(table: pd.DataFrame) -> np.ndarray:
    """The first matching status per row, in order of severity."""
    var = _num(table["act_var"])
    conditions = [
        (np.nan_to_num(_num(table["nonfinite"])) > 0) | ~np.isfinite(var),
        _num(table["frac_zero"]) > DEAD_FRAC_ZERO,
        var < VANISHING_VAR,
        var > EXPLODING_VAR,
    ]
    return np.select(conditions, ["non-finite", "dead", "vanishing", "exploding"], default="ok")


def verdicts(layers: pd.DataFrame, input_var: float | None = 1.0) -> dict[str, str]:
    """One sentence per scheme on how the activation variance of the layers with weights moves.

    The per-layer factor is exp(slope) of a least-squares fit of log(variance) against depth,
    on the median over seeds. Exact zeros and non-finite values (in any seed) are reported at
    the first layer where they happen, with the trend up to that layer.
    """
    if input_var is not None and not (np.isfinite(input_var) and input_var > 0):
        raise ValueError(f"input_var must be positive and finite; got {input_var!r}")
    profile = _weight_profile(layers)
    return {
        scheme: _verdict(profile[profile["scheme"] == scheme], input_var)
        + _more(layers[layers["scheme"] == scheme], profile[profile["scheme"] == scheme])
        for scheme in scheme_order(layers)
    }


SATURATED_SHARE = 0.3  # say so when at least this share of bounded outputs sits at a bound


def _more(layers: pd.DataFrame, profile: pd.DataFrame) -> str:
    """What activation variance alone hides: saturation, and how gradients move."""
    clauses = []
    saturated = _num(layers["frac_saturated"])
    saturated = saturated[np.isfinite(saturated)]
    if saturated.size and np.median(saturated) >= SATURATED_SHARE:
        clauses.append(f"{np.median(saturated):.0%} of bounded activations are saturated")
    grads = _grad_profile(layers)
    factor = _fit_factor(grads) if len(grads) >= 2 else None
    if factor is not None and not (1 / FLAT_FACTOR <= 1 / factor <= FLAT_FACTOR):
        clauses.append(f"gradients {_trend(1 / factor)} toward the input")
    return "".join(f"; {c}" for c in clauses)


def _grad_profile(layers: pd.DataFrame) -> pd.DataFrame:
    """Median gradient variance per depth of the layers with weights (finite, positive)."""
    rows = with_depth(layers, "weight")
    grad = pd.Series(_num(rows["grad_var"]), index=rows.index)
    med = rows.assign(var=grad).groupby("depth", sort=True)["var"].median().reset_index()
    return med[np.isfinite(med["var"]) & (med["var"] > 0)]


def _weight_profile(layers: pd.DataFrame) -> pd.DataFrame:
    """Per (scheme, depth) of the layers with weights: name, median variance, any seed bad."""
    rows = with_depth(layers, "weight")
    var = _num(rows["act_var"])
    bad = (np.nan_to_num(_num(rows["nonfinite"])) > 0) | ~np.isfinite(var)
    grouped = rows.assign(_var=var, _bad=bad).groupby(["scheme", "depth"], sort=False)
    profile = grouped.agg(layer=("layer", "first"), var=("_var", "median"), bad=("_bad", "any"))
    return profile.reset_index().sort_values("depth", kind="stable")


def _verdict(profile: pd.DataFrame, input_var: float | None) -> str:
    """The sentence for one scheme's weight-layer profile (rows in depth order)."""
    if profile.empty:
        return "no layers with weights to judge"
    bad = profile["bad"].to_numpy(dtype=bool)
    events = np.flatnonzero(bad | (profile["var"].to_numpy() == 0))
    healthy = profile.iloc[: events[0]] if events.size else profile
    factor = _fit_factor(healthy)
    if events.size:
        row = profile.iloc[events[0]]
        what = "become non-finite" if bad[events[0]] else "vanish to exact zeros"
        after = f", after {_trend(factor, gerund=True)}" if factor is not None else ""
        return f"activations {what} at layer {row['depth']} ({row['layer']}){after}"
    last = profile.iloc[-1]
    # Token ids have no meaningful variance: compare with the first layer (the embedding).
    base, whose = (input_var, "the input's") if input_var else (profile.iloc[0]["var"], "layer 1's")
    ratio = f"{_fmt(last['var'] / base)}× {whose}"
    if factor is None:
        return f"one layer with weights ({last['layer']}): its activation variance is {ratio}"
    where = f"at layer {last['depth']} ({last['layer']})"
    return f"activations {_trend(factor)}; {where} their variance is {ratio}"


def _fit_factor(profile: pd.DataFrame) -> float | None:
    """exp(slope) of log(variance) against depth; None when fewer than two layers to fit."""
    if len(profile) < 2:
        return None
    slope = np.polyfit(profile["depth"].to_numpy(float), np.log(profile["var"].to_numpy()), 1)[0]
    return float(np.exp(slope))


def _trend(factor: float, gerund: bool = False) -> str:
    """'shrink ×0.5 per layer' / 'growing ×2 per layer' / 'stay flat (×1.01 per layer)'."""
    if 1 / FLAT_FACTOR <= factor <= FLAT_FACTOR:
        # Two decimals: near 1 the interesting digits are the second and third.
        return f"{'staying' if gerund else 'stay'} flat (×{factor:.2f} per layer)"
    verb = "shrink" if factor < 1 else "grow"
    return f"{verb}{'ing' if gerund else ''} ×{_fmt(factor)} per layer"


def _fmt(x: float) -> str:
    """3 significant digits; scientific notation for tiny and huge numbers (via the g format)."""
    return f"{x:.3g}"
