"""Mean-field signal propagation in numpy float64 (Poole et al. 2016; Schoenholz et al. 2017):
the activations and their derivatives, Gaussian expectations, the length map, χ₁, its fixed
point, the phase and the depth scale. No torch: figures (a sweep's critical line) use it too;
`initlab.theory` applies it to a model and its schemes.

Gaussian expectations use Gauss–Legendre panels split at the kink (z = 0) and where √q z
reaches 1, 4, 16 and 48: plain Gauss–Hermite misses a steep tanh' by 58% at q = 100.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

Array = np.ndarray
CRITICAL_TOL = 1e-3  # |χ₁ - 1| below this is the edge of chaos
FIXED_POINT_TOL = 1e-12  # relative change of q that ends the iteration
FIXED_POINT_ITERS = 10_000
Z_MAX = 12.0  # φ(z) is below 1e-31 beyond: the panels stop there
U_BREAKS = (1.0, 4.0, 16.0, 48.0)  # |√q z| where the activations bend: panel edges
NODES_PER_PANEL = 48

SELU_ALPHA = 1.6732632423543772848170429916717  # torch.nn.SELU's constants
SELU_SCALE = 1.0507009873554804934193349852946


# ---------------------------------------------------------------- activations in float64


@dataclass(frozen=True)
class Activation:
    """An activation and its derivative as numpy float64 functions."""

    name: str
    phi: Callable[[Array], Array]
    dphi: Callable[[Array], Array]


def leaky(slope: float) -> Activation:
    return Activation(
        "leaky_relu",
        lambda x: np.where(x > 0, x, slope * x),
        lambda x: np.where(x > 0, 1.0, slope),
    )


def _selu(x: Array) -> Array:
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _dselu(x: Array) -> Array:
    return SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _gelu_tanh(x: Array) -> Array:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _dgelu_tanh(x: Array) -> Array:
    c = math.sqrt(2 / math.pi)
    t = np.tanh(c * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)


def _dgelu(x: Array) -> Array:
    return special.ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _dsilu(x: Array) -> Array:
    s = special.expit(x)
    return s * (1 + x * (1 - s))


# Keyed like initlab.models.ACTIVATIONS (leaky_relu with the zoo's slope 0.01).
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "leaky_relu": leaky(0.01),
    "tanh": Activation("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": Activation(
        "sigmoid", special.expit, lambda x: special.expit(x) * (1 - special.expit(x))
    ),
    "selu": Activation("selu", _selu, _dselu),
    # torch's nn.GELU default: the exact erf form x Φ(x)
    "gelu": Activation("gelu", lambda x: x * special.ndtr(x), _dgelu),
    "silu": Activation("silu", lambda x: x * special.expit(x), _dsilu),
    "identity": Activation("identity", lambda x: x, np.ones_like),
}
GELU_TANH = Activation("gelu_tanh", _gelu_tanh, _dgelu_tanh)


# ---------------------------------------------------------------- Gaussian expectations


@functools.cache
def _legendre() -> tuple[Array, Array]:
    return np.polynomial.legendre.leggauss(NODES_PER_PANEL)


def gaussian_nodes(q: float) -> tuple[Array, Array]:
    """Nodes z and weights w with Σ w f(√q z) ≈ E[f(√q z)], z ~ N(0, 1), for `q` > 0.

    Panels on z ≥ 0 (mirrored to z ≤ 0) end at the kink z = 0 and where √q z reaches each of
    U_BREAKS, so a steep or piecewise activation is smooth on every panel.
    """
    x, w = _legendre()
    root = math.sqrt(q)
    edges = [0.0, *[u / root for u in U_BREAKS if u / root < Z_MAX], Z_MAX]
    panels = list(itertools.pairwise(edges))
    z = np.concatenate([(b - a) / 2 * x + (a + b) / 2 for a, b in panels])
    dz = np.concatenate([(b - a) / 2 * w for a, b in panels])
    density = dz * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return np.concatenate([z, -z]), np.concatenate([density, density])


def gaussian_expectation(f: Callable[[Array], Array], q: float) -> float:
    """E[f(√q z)] for z ~ N(0, 1); at q = 0 simply f(0)."""
    if not math.isfinite(q) or q < 0:
        raise ValueError(f"q: must be a finite number >= 0; got {q!r}")
    if q == 0:
        return float(f(np.zeros(1))[0])
    z, w = gaussian_nodes(q)
    return float(np.sum(w * f(math.sqrt(q) * z)))


ZERO_SIDE = 1e-300  # just off 0: which side of a kink, and φ'(0) itself for a smooth φ


def second_moment(act: Activation, q: float) -> float:
    """E[φ(√q z)²]."""
    return gaussian_expectation(lambda x: act.phi(x) ** 2, q)


def derivative_moment(act: Activation, q: float, power: int = 2) -> float:
    """E[φ'(√q z)^power] (power 2 for χ₁, 4 for the spectrum's second moment); at q = 0 its
    limit q → 0⁺, where √q z falls on either side of 0 half the time: relu gives 1/2, not
    relu'(0)^power = 0 (a convention), and a smooth φ gives φ'(0)^power."""
    if q == 0:
        sides = np.array([ZERO_SIDE, -ZERO_SIDE])
        return float(np.mean(act.dphi(sides) ** power))
    return gaussian_expectation(lambda x: act.dphi(x) ** power, q)


# ---------------------------------------------------------------- the maps


def length_map(act: Activation, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """One step of the length map: q ↦ σ_w² E[φ(√q z)²] + σ_b²."""
    return sigma_w2 * second_moment(act, q) + sigma_b2


def chi(act: Activation, q: float, sigma_w2: float) -> float:
    """σ_w² E[φ'(√q z)²]: how much one layer scales the gradient's second moment at q."""
    return sigma_w2 * derivative_moment(act, q)


def fixed_point(act: Activation, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """q* of the length map reached from `q0` (the input's q^1), by iterating it (at most
    FIXED_POINT_ITERS steps).

    A map that grows without bound (relu with σ_w² > 2) has no fixed point: inf. Where q = 0
    is itself a fixed point (φ(0) = 0, no bias) and the iterates still fall when the steps
    run out, they are creeping into it algebraically (tanh at σ_w² = 1: q ~ 1/(2l)): 0.
    """
    q, falling = q0, False
    for _ in range(FIXED_POINT_ITERS):
        nxt = length_map(act, q, sigma_w2, sigma_b2)
        if not math.isfinite(nxt) or nxt > 1e300:
            return math.inf
        if abs(nxt - q) <= FIXED_POINT_TOL * q or nxt == q:
            return nxt
        q, falling = nxt, nxt < q
    return 0.0 if falling and length_map(act, 0.0, sigma_w2, sigma_b2) == 0 else q


def phase(chi1: float) -> str:
    """ordered (χ₁ < 1), critical (|χ₁ - 1| < CRITICAL_TOL) or chaotic (χ₁ > 1)."""
    if abs(chi1 - 1) < CRITICAL_TOL:
        return "critical"
    return "ordered" if chi1 < 1 else "chaotic"


def depth_scale(chi1: float) -> float:
    """ξ = 1/|ln χ₁|: the number of layers over which the gradient's second moment changes
    e-fold (-1/ln χ₁ in the ordered phase, where it shrinks; 1/ln χ₁ in the chaotic phase,
    where it grows); inf at χ₁ = 1, 0 at χ₁ = 0."""
    if chi1 <= 0:
        return 0.0
    if chi1 == 1:
        return math.inf
    return 1.0 / abs(math.log(chi1))
