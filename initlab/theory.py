"""Mean-field theory beside the measurement: the length map and χ₁ of a Linear → activation chain.

For a chain of fully connected layers h^l = W^l φ(h^{l-1}) + b^l with i.i.d. zero-mean weights
(Var W = σ_w²/fan_in) and biases (Var b = σ_b²), wide layers make each pre-activation Gaussian
with second moment q^l (Poole et al. 2016, Schoenholz et al. 2017):

    q^1 = σ_w² E[x²] + σ_b²                    (x: the experiment's input)
    q^l = σ_w² E[φ(√q^{l-1} z)²] + σ_b²        z ~ N(0, 1)
    χ^l = σ_w² E[φ'(√q^l z)²]                  (the backward map, per layer)

The probe's backward starts from a standard-normal cotangent at the model's output, φ(h^L), so
the gradient w.r.t. the last pre-activation has second moment G^L = E[φ'(√q^L z)²], and below it
G^l = σ_w²^{(l+1)} (fan_out/fan_in)^{(l+1)} E[φ'(√q^l z)²] G^{l+1} (an output layer without an
activation, `head`, has G^L = 1). The fixed point q* of the map, χ₁ = σ_w² E[φ'(√q* z)²] and
the depth scale ξ = 1/|ln χ₁| (-1/ln χ₁ in the ordered phase) name the phase: ordered
(χ₁ < 1), critical (|χ₁ - 1| < CRITICAL_TOL), chaotic (χ₁ > 1).

What the probe measures: `act_var` of a Linear row is the variance over all elements of the
pre-activation (batch × units, correction 0), i.e. its second moment minus the squared grand
mean. With zero-mean weights every unit's mean is zero in expectation over the weights, so the
grand mean is O(√(q/N)) and `act_var` = q (1 - O(1/N)): the prediction and the measurement agree
in expectation, not per draw. The same holds for `grad_var` (the cotangent is zero-mean).

Gaussian expectations are computed by Gauss–Legendre quadrature on panels of z ≥ 0 and z ≤ 0,
split at the kink at 0 (relu, leaky_relu, selu) and at |√q z| = 1, 4, 16, 48, where the
activations bend. Plain Gauss–Hermite (hermegauss) is exact for polynomials but not for a
steep tanh: with 200 nodes its error in E[tanh'(√q z)²] is 0.1% at q = 10 and 58% at q = 100,
while the panels agree with scipy's quad to ~1e-14 at every q from 1e-4 to 1e6.

Which weights count as i.i.d. zero-mean (`WEIGHT_RULES`): normal with mean 0, uniform and
trunc_normal symmetric about 0, the xavier / kaiming / lecun / variance_scaling families,
`default` (kaiming_uniform(a=√5)), zeros and constant 0. orthogonal and sparse are not i.i.d.:
the length map and χ₁ use only second moments, which an orthogonal (or sparse) matrix shares
with an i.i.d. one of the same variance, so they are treated by their variance (and say so);
their Jacobian spectra differ (`initlab.spectrum`). Anything else (ones, eye, dirac, a nonzero
mean) has no prediction and the reason says which parameter.

Tables (`Theory`):
- `layers` — one row per (scheme, depth): `scheme, depth, layer, activation, fan_in, fan_out,
  sigma_w2, sigma_b2, q` (predicted pre-activation variance, what `act_var` of the Linear row
  measures), `chi` (σ_w² E[φ'(√q z)²] at that layer), `grad_var` (predicted gradient variance
  w.r.t. the Linear's output, what its `grad_var` measures); with results also
  `act_var_measured, grad_var_measured` (medians over seeds).
- `schemes` — one row per scheme: `scheme, sigma_w2, sigma_b2, q_star, chi1, phase,
  depth_scale, verdict, reason` (`reason`: why there is no prediction, empty when there is one;
  the fixed point uses the deepest hidden layer's σ_w², σ_b² and activation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from torch import nn

from initlab.csvout import write_tables
from initlab.health import with_depth
from initlab.meanfield import (
    ACTIVATIONS,
    GELU_TANH,
    Activation,
    chi,
    depth_scale,
    derivative_moment,
    fixed_point,
    leaky,
    phase,
    second_moment,
)
from initlab.outline import meta_model
from initlab.schemes import Scheme, Target, params_table, targets

if TYPE_CHECKING:  # types only: experiment.run may one day call into this module
    from initlab.experiment import Experiment, Results

LAYER_COLUMNS = [
    *("scheme", "depth", "layer", "activation", "fan_in", "fan_out"),
    *("sigma_w2", "sigma_b2", "q", "chi", "grad_var"),
]
MEASURED_COLUMNS = ["act_var_measured", "grad_var_measured"]
SCHEME_COLUMNS = [
    *("scheme", "sigma_w2", "sigma_b2", "q_star", "chi1", "phase", "depth_scale"),
    *("verdict", "reason"),
]


ACTIVATION_TYPES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.SELU: "selu",
    nn.SiLU: "silu",
    nn.Identity: "identity",
}


def activation_of(module: nn.Module) -> Activation | None:
    """The float64 twin of an activation module, or None if it is not one initlab knows."""
    if isinstance(module, nn.LeakyReLU):
        slope = module.negative_slope
        return ACTIVATIONS["leaky_relu"] if slope == 0.01 else leaky(slope)
    if isinstance(module, nn.GELU):
        return GELU_TANH if module.approximate == "tanh" else ACTIVATIONS["gelu"]
    name = ACTIVATION_TYPES.get(type(module))
    return ACTIVATIONS[name] if name else None


# ---------------------------------------------------------------- the chain of a model

NORM_TYPES = (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d)
# Weight methods whose elements are i.i.d. with mean 0, given their parameters.
ZERO_MEAN_IID: dict[str, Callable[[dict], bool]] = {
    "default": lambda p: True,  # kaiming_uniform(a=√5); biases U(±1/√fan_in)
    "zeros": lambda p: True,
    "constant": lambda p: p["val"] == 0,
    "normal": lambda p: p["mean"] == 0,
    "uniform": lambda p: p["a"] == -p["b"],
    "trunc_normal": lambda p: p["mean"] == 0 and p["a"] == -p["b"],
    **{m: (lambda p: True) for m in ("xavier_uniform", "xavier_normal", "kaiming_uniform")},
    **{m: (lambda p: True) for m in ("kaiming_normal", "lecun_normal", "lecun_uniform")},
    "variance_scaling": lambda p: True,
}
BY_VARIANCE = ("orthogonal", "sparse")  # not i.i.d.: the maps see only their variance


@dataclass(frozen=True)
class Layer:
    """One Linear of the chain with the scheme's σ_w², σ_b² and the activation after it
    (None: an output layer, `head`)."""

    name: str
    fan_in: int
    fan_out: int
    activation: Activation | None
    sigma_w2: float = math.nan
    sigma_b2: float = 0.0


def linear_chain(model: nn.Module) -> list[Layer] | str:
    """The model's Linear → activation chain (σ's not yet filled in), or why it is not one.

    A chain is an nn.Sequential whose children are Linear layers, each followed by at most one
    activation initlab knows; a Linear followed directly by a Linear has the identity between.
    """
    if not isinstance(model, nn.Sequential):
        return (
            f"{type(model).__name__} is not an nn.Sequential of Linear and activation modules: "
            "the mean-field prediction covers plain Linear → activation chains only"
        )
    found: list[tuple[str, nn.Linear, list[Activation]]] = []
    for name, module in model.named_children():
        act = activation_of(module)
        if isinstance(module, nn.Linear):
            found.append((name, module, []))
        elif act is None or not found or found[-1][2]:
            return _not_a_chain(name, module)
        else:
            found[-1][2].append(act)
    if not found:
        return "the model has no Linear layer"
    identity = ACTIVATIONS["identity"]
    last = len(found) - 1
    return [
        Layer(n, m.in_features, m.out_features, a[0] if a else (None if i == last else identity))
        for i, (n, m, a) in enumerate(found)
    ]


def _not_a_chain(name: str, module: nn.Module) -> str:
    kind = type(module).__name__
    if isinstance(module, NORM_TYPES):
        return (
            f"{name} ({kind}) normalizes the pre-activations, which the length map of a plain "
            "Linear → activation chain does not describe"
        )
    return (
        f"{name} ({kind}) is neither a Linear nor an activation after one: the mean-field "
        "prediction covers plain Linear → activation chains only"
    )


def _method_problem(target: Target) -> str | None:
    """Why this parameter's method has no mean-field variance, or None."""
    spec = target.spec
    if spec.counted:
        return f"{target.param}: its scale is not resolved for the model"
    if spec.method in BY_VARIANCE:
        return None
    rule = ZERO_MEAN_IID.get(spec.method)
    if rule is None:
        return f"{target.param}: {spec.label()} is not i.i.d. with mean 0"
    if not rule(spec.kwargs):
        return f"{target.param}: {spec.label()} has a nonzero mean"
    return None


def with_sigmas(chain: list[Layer], model: nn.Module, scheme: Scheme) -> tuple[list[Layer], str]:
    """The chain with each layer's σ_w² = Var(W)·fan_in and σ_b² = Var(b) under `scheme`, and
    a note on methods treated by their variance; raises ValueError with the reason if a
    parameter has no mean-field variance."""
    found = {t.param: t for t in targets(model, scheme)}
    table = params_table(list(found.values()))
    stds = dict(zip(table["param"], table["expected_std"], strict=True))
    out, by_variance = [], set()
    for layer in chain:
        sig = {}
        for kind in ("weight", "bias"):
            target = found.get(f"{layer.name}.{kind}")
            if target is None:  # no bias
                continue
            problem = _method_problem(target)
            if problem or not math.isfinite(stds[target.param]):
                raise ValueError(problem or f"{target.param}: its variance is not known")
            sig[kind] = stds[target.param] ** 2
            if target.spec.method in BY_VARIANCE:
                by_variance.add(target.spec.method)
        sigma_w2 = sig["weight"] * layer.fan_in
        out.append(replace(layer, sigma_w2=sigma_w2, sigma_b2=sig.get("bias", 0.0)))
    note = f"{' and '.join(sorted(by_variance))} weights treated by their variance"
    return out, note if by_variance else ""


# ---------------------------------------------------------------- predictions


def input_second_moment(exp: Experiment) -> float | str:
    """E[x²] of the experiment's random input, or why there is none (token ids)."""
    spec = exp.input
    if spec.distribution == "tokens" or exp.input_variance() is None:
        return "the input is token ids: the length map needs a real-valued input"
    if spec.distribution == "uniform":
        return (spec.low**2 + spec.low * spec.high + spec.high**2) / 3
    return spec.mean**2 + spec.std**2


def forward(chain: list[Layer], x2: float) -> list[float]:
    """q^l per layer from the input's E[x²]: q^1 = σ_w² E[x²] + σ_b², then the length map."""
    qs: list[float] = []
    moment = x2  # E[φ(h^{l-1})²], the second moment each Linear receives
    for layer in chain:
        q = layer.sigma_w2 * moment + layer.sigma_b2
        qs.append(q)
        act = layer.activation or ACTIVATIONS["identity"]
        moment = second_moment(act, q) if math.isfinite(q) else math.inf
    return qs


def backward(chain: list[Layer], qs: list[float]) -> list[float]:
    """Predicted second moment of the gradient w.r.t. each Linear's output, from a
    standard-normal cotangent at the model's output."""
    grads = [0.0] * len(chain)
    upstream = 1.0  # E[(∂/∂ output)²] of the layer above: the cotangent's, at the top
    for i in range(len(chain) - 1, -1, -1):
        act = chain[i].activation
        grads[i] = upstream * (derivative_moment(act, qs[i]) if act else 1.0)
        upstream = grads[i] * chain[i].sigma_w2 * chain[i].fan_out / chain[i].fan_in
    return grads


def layer_rows(scheme: str, chain: list[Layer], x2: float) -> pd.DataFrame:
    """The `layers` rows of one scheme."""
    qs = forward(chain, x2)
    grads = backward(chain, qs)
    acts = [layer.activation or ACTIVATIONS["identity"] for layer in chain]
    rows = {
        "scheme": scheme,
        "depth": range(1, len(chain) + 1),
        "layer": [layer.name for layer in chain],
        "activation": [layer.activation.name if layer.activation else "none" for layer in chain],
        "fan_in": [layer.fan_in for layer in chain],
        "fan_out": [layer.fan_out for layer in chain],
        "sigma_w2": [layer.sigma_w2 for layer in chain],
        "sigma_b2": [layer.sigma_b2 for layer in chain],
        "q": qs,
        "chi": [chi(a, q, layer.sigma_w2) for a, q, layer in zip(acts, qs, chain, strict=True)],
        "grad_var": grads,
    }
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


XI_INFINITE = 1e9  # layers: a depth scale beyond any network is printed as ∞


def scheme_row(scheme: str, chain: list[Layer], q1: float, note: str = "") -> dict:
    """q*, χ₁, phase and ξ of the deepest hidden layer's map, with a one-line verdict."""
    hidden = [layer for layer in chain if layer.activation is not None] or chain
    layer = hidden[-1]
    act = layer.activation or ACTIVATIONS["identity"]
    q_star = fixed_point(act, layer.sigma_w2, layer.sigma_b2, q1)
    at = q_star if math.isfinite(q_star) else forward(chain, q1)[-1]
    chi1 = chi(act, at, layer.sigma_w2) if math.isfinite(at) else math.nan
    notes = [n for n in (note, _uneven(chain)) if n]
    row = {"scheme": scheme, "sigma_w2": layer.sigma_w2, "sigma_b2": layer.sigma_b2}
    row |= {"q_star": q_star, "chi1": chi1, "phase": phase(chi1) if math.isfinite(chi1) else ""}
    row |= {"depth_scale": depth_scale(chi1) if math.isfinite(chi1) else math.nan}
    return row | {"verdict": verdict(row, notes), "reason": ""}


def _uneven(chain: list[Layer]) -> str:
    hidden = {(x.sigma_w2, x.sigma_b2) for x in chain if x.activation is not None}
    return "layers differ: the fixed point is the deepest hidden layer's" if len(hidden) > 1 else ""


def verdict(row: dict, notes: list[str] = ()) -> str:
    """One line naming the phase, q* and ξ."""
    chi1, q_star, xi = row["chi1"], row["q_star"], row["depth_scale"]
    if not math.isfinite(chi1):
        return "no prediction: the length map does not settle"
    where = (
        "q* = ∞ (the length map grows without bound)"
        if math.isinf(q_star)
        else (f"q* = {q_star:.3g}")
    )
    grows = {"ordered": "shrink", "chaotic": "grow"}.get(row["phase"])
    shown = "∞" if xi > XI_INFINITE else f"{xi:.3g}"  # χ₁ = 1 within float rounding
    depth = f"gradients {grows} e-fold every ξ = {xi:.3g} layers" if grows else f"ξ = {shown}"
    text = f"{row['phase']} (χ₁ = {chi1:.4g}): {where}; {depth}"
    return "; ".join([text, *notes])


@dataclass
class Theory:
    """The theory tables (columns in the module docstring)."""

    layers: pd.DataFrame
    schemes: pd.DataFrame

    def write_csv(self, folder: str | Path) -> list[Path]:
        """theory.csv (per scheme and layer) and theory_schemes.csv (per scheme)."""
        return write_tables(folder, {"theory": self.layers, "theory_schemes": self.schemes})


def predict(exp: Experiment, results: Results | None = None) -> Theory:
    """The mean-field prediction for every scheme of `exp`; with `results`, the measured
    act_var and grad_var of each Linear row (medians over seeds) beside it.

    A scheme or model the theory does not cover gets a `schemes` row whose `reason` says why
    in one line, and no `layers` rows.
    """
    model = meta_model(exp.model, allow_custom=True)  # validation checked the permission
    chain, x2 = linear_chain(model), input_second_moment(exp)
    frames, rows = [], []
    for scheme in exp.schemes:
        reason = chain if isinstance(chain, str) else x2 if isinstance(x2, str) else ""
        if not reason:
            try:
                filled, note = with_sigmas(chain, model, scheme)
            except ValueError as exc:
                reason = str(exc)
        if reason:
            rows.append(_no_prediction(scheme.name, reason))
            continue
        frames.append(layer_rows(scheme.name, filled, x2))
        rows.append(scheme_row(scheme.name, filled, frames[-1]["q"].iloc[0], note))
    layers = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LAYER_COLUMNS)
    if results is not None:
        layers = with_measured(layers, results.layers)
    return Theory(layers, pd.DataFrame(rows, columns=SCHEME_COLUMNS))


def _no_prediction(scheme: str, reason: str) -> dict:
    row = dict.fromkeys(SCHEME_COLUMNS, math.nan)
    return row | {
        "scheme": scheme,
        "phase": "",
        "verdict": f"no prediction: {reason}",
        "reason": reason,
    }


def with_measured(layers: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """`layers` with the probe's median act_var and grad_var over seeds at each depth (the
    n-th layer with weights, as the depth figures count)."""
    rows = with_depth(measured, "weight")
    medians = rows.groupby(["scheme", "depth"], sort=False)[["act_var", "grad_var"]].median()
    medians = medians.rename(
        columns=dict(zip(["act_var", "grad_var"], MEASURED_COLUMNS, strict=True))
    )
    return layers.merge(medians.reset_index(), on=["scheme", "depth"], how="left")
