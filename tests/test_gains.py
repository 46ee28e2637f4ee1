"""Gains: torch's names against calculate_gain and a hand table; the Monte Carlo estimator
against known answers (relu, identity) and against numerical integration (gelu, silu, elu, mish).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from initlab.gains import (
    ESTIMATED,
    GAIN_NAMES,
    TORCH_GAINS,
    estimated_gain,
    parse_gain,
    resolve_gain,
)

# torch.nn.init.calculate_gain's documented table, written out independently
TORCH_TABLE = {
    "linear": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0,
    "conv_transpose3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5 / 3,
    "relu": math.sqrt(2),
    "leaky_relu": math.sqrt(2 / (1 + 0.01**2)),
    "selu": 3 / 4,
}
MC_REL = 0.002  # 2**22 samples: standard error of the estimate is ~0.05%, so 0.2% is ~4 SE


def test_the_twelve_torch_names_are_known():
    assert set(TORCH_GAINS) == set(TORCH_TABLE)
    assert len(TORCH_GAINS) == 12
    assert list(GAIN_NAMES) == [*TORCH_GAINS, *ESTIMATED]
    assert set(ESTIMATED) == {"gelu", "silu", "elu", "mish"}


@pytest.mark.parametrize("name", list(TORCH_TABLE))
def test_resolve_gain_matches_calculate_gain(name):
    got = resolve_gain(parse_gain(name))
    assert got == torch.nn.init.calculate_gain(name)
    assert got == pytest.approx(TORCH_TABLE[name], rel=1e-12)


@pytest.mark.parametrize(
    ("text", "slope"),
    [
        ("leaky_relu", 0.01),
        ("leaky_relu(0.2)", 0.2),
        ("leaky_relu:0.2", 0.2),
        (" Leaky_ReLU( 0.2 ) ", 0.2),
        ("leaky_relu(0)", 0.0),
        ("leaky_relu(1e-1)", 0.1),
    ],
)
def test_leaky_relu_slope(text, slope):
    got = resolve_gain(parse_gain(text))
    assert got == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", slope), rel=1e-12)
    assert got == pytest.approx(math.sqrt(2 / (1 + slope**2)), rel=1e-12)


def test_parse_gain_canonical_forms():
    assert parse_gain(" TANH ") == "tanh"
    assert parse_gain("leaky_relu:0.2") == "leaky_relu(0.2)"
    assert parse_gain(2) == 2.0 and isinstance(parse_gain(2), float)
    assert resolve_gain(parse_gain(0.5)) == 0.5


@pytest.mark.parametrize(
    "value",
    ["tan", "", "relu6", "leaky_relu()", "leaky_relu(abc)", "leaky_relu(1e999)", None, True,
     False, [1], {"gain": 1}, math.nan, math.inf, -math.inf],
)  # fmt: skip
def test_parse_gain_refuses(value):
    with pytest.raises((ValueError, TypeError)):
        parse_gain(value)


# ---------------------------------------------------------------- the Monte Carlo estimator


def test_estimator_definition_reproduces_relu_and_identity():
    # The same definition torch uses for relu: 1/sqrt(E[relu(z)^2]) = 1/sqrt(1/2) = sqrt(2).
    assert estimated_gain("relu") == pytest.approx(math.sqrt(2), rel=MC_REL)
    assert estimated_gain("linear") == pytest.approx(1.0, rel=MC_REL)


# numpy/scipy versions, independent of torch's implementations
ACTIVATIONS = {
    "gelu": lambda z: z * special.ndtr(z),  # exact gelu, torch's default (approximate='none')
    "silu": lambda z: z * special.expit(z),
    "elu": lambda z: z if z > 0 else math.expm1(z),
    "mish": lambda z: z * math.tanh(np.logaddexp(0.0, z)),
}


def quad_gain(f) -> float:
    """1/sqrt(E[f(z)^2]) for z ~ N(0, 1) by adaptive quadrature; |z| > 12 adds < 1e-28."""
    integrand = lambda z: f(z) ** 2 * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    left, _ = integrate.quad(integrand, -12, 0, epsabs=1e-13, epsrel=1e-12, limit=200)
    right, _ = integrate.quad(integrand, 0, 12, epsabs=1e-13, epsrel=1e-12, limit=200)
    return 1 / math.sqrt(left + right)


def test_quadrature_oracle_is_sound():
    # The oracle itself: relu and identity have closed forms.
    assert quad_gain(lambda z: max(z, 0.0)) == pytest.approx(math.sqrt(2), rel=1e-9)
    assert quad_gain(lambda z: z) == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("name", sorted(ESTIMATED))
def test_estimated_gain_matches_quadrature(name):
    assert set(ACTIVATIONS) == set(ESTIMATED)
    want = quad_gain(ACTIVATIONS[name])
    assert estimated_gain(name) == pytest.approx(want, rel=MC_REL)
    assert resolve_gain(parse_gain(name)) == estimated_gain(name)


def test_torch_activations_match_the_oracles():
    # guards the oracle table against drifting from what torch actually computes
    z = np.linspace(-6, 6, 241)
    for name, fn in ESTIMATED.items():
        ours = np.array([ACTIVATIONS[name](float(v)) for v in z])
        theirs = fn(torch.from_numpy(z)).numpy()
        np.testing.assert_allclose(theirs, ours, rtol=1e-9, atol=1e-12, err_msg=name)


def test_estimates_are_deterministic():
    first = {name: estimated_gain(name) for name in ESTIMATED}
    assert {name: estimated_gain(name) for name in ESTIMATED} == first
    estimated_gain.cache_clear()
    assert {name: estimated_gain(name) for name in ESTIMATED} == first


def test_estimate_depends_only_on_its_seed():
    a = estimated_gain("silu", samples=2**14, seed=3)
    torch.manual_seed(123)  # the global RNG must play no part
    estimated_gain.cache_clear()
    assert estimated_gain("silu", samples=2**14, seed=3) == a
    assert estimated_gain("silu", samples=2**14, seed=4) != a
