"""The method registry against independent oracles.

Every expected std is recomputed here from the shape (never read back from `expected_std`),
distribution shapes are checked with a KS test, wrappers are compared bit for bit with
`torch.nn.init`, and every table iterates the registry so a new method without a test fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from initlab.gains import estimated_gain
from initlab.methods import METHODS, MethodSpec, parse_method_spec, truncated_normal_std

Shape = tuple[int, ...]
LINEAR = (256, 512)
CONV = (64, 32, 3, 3)
VECTOR = (20000,)  # 1-D: large enough that 3% is > 4 standard errors of the sample std
SHAPES = (LINEAR, (512, 256), CONV, VECTOR)
# The smallest tensor above has 18432 elements: the relative standard error of a sample std is
# about 1/sqrt(2n) = 0.5% (normal; less for uniform, ~0.6% for sparse), so 3% is ~5 SE.
REL = 0.03
GELU = estimated_gain("gelu")  # validated against numerical integration in test_gains.py
TRUNC_2SIGMA = stats.truncnorm(-2, 2).std()  # std of N(0, 1) cut at ±2


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fan_in(shape: Shape) -> int:
    return shape[1] * math.prod(shape[2:])


def fan_out(shape: Shape) -> int:
    return shape[0] * math.prod(shape[2:])


def bernoulli_std(ones: int, numel: int) -> float:
    p = ones / numel
    return math.sqrt(p * (1 - p))


def trunc_std(mean: float, std: float, a: float, b: float) -> float:
    return stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std).std()


def spec(d: dict[str, Any] | str) -> MethodSpec:
    return parse_method_spec(d, "w")


def initialized(s: MethodSpec, shape: Shape, seed: int = 0) -> torch.Tensor:
    """A NaN-filled tensor run through the spec's Call: NaNs left over mean unwritten elements."""
    t = torch.full(shape, math.nan)
    call = s.call(shape)
    assert call is not None
    call.run(t, gen(seed))
    return t


def case_id(d: dict[str, Any]) -> str:
    return ",".join(f"{v}" for v in d.values())


# ---------------------------------------------------------------- std against closed forms

# (spec, closed-form std from the shape or None for 'default', deterministic?)
STD_CASES: list[tuple[dict[str, Any], Callable[[Shape], float] | None, bool]] = [
    ({"method": "default"}, None, True),
    ({"method": "uniform", "a": -0.3, "b": 0.5}, lambda s: 0.8 / math.sqrt(12), False),
    ({"method": "uniform"}, lambda s: 1 / math.sqrt(12), False),
    ({"method": "normal", "mean": 0.5, "std": 0.02}, lambda s: 0.02, False),
    ({"method": "trunc_normal"}, lambda s: trunc_std(0, 1, -2, 2), False),
    ({"method": "trunc_normal", "mean": 0.1, "std": 0.5, "a": -0.5, "b": 1.5},
     lambda s: trunc_std(0.1, 0.5, -0.5, 1.5), False),
    ({"method": "constant", "val": 0.3}, lambda s: 0.0, True),
    ({"method": "ones"}, lambda s: 0.0, True),
    ({"method": "zeros"}, lambda s: 0.0, True),
    ({"method": "eye"}, lambda s: bernoulli_std(min(s), math.prod(s)), True),
    ({"method": "dirac", "groups": 1},
     lambda s: bernoulli_std(min(s[0], s[1]), math.prod(s)), True),
    ({"method": "dirac", "groups": 2},
     lambda s: bernoulli_std(2 * min(s[0] // 2, s[1]), math.prod(s)), True),
    ({"method": "xavier_uniform", "gain": "tanh"},
     lambda s: 5 / 3 * math.sqrt(2 / (fan_in(s) + fan_out(s))), False),
    ({"method": "xavier_normal", "gain": 0.5},
     lambda s: 0.5 * math.sqrt(2 / (fan_in(s) + fan_out(s))), False),
    ({"method": "xavier_normal"}, lambda s: math.sqrt(2 / (fan_in(s) + fan_out(s))), False),
    ({"method": "kaiming_uniform", "nonlinearity": "relu"},
     lambda s: math.sqrt(2) / math.sqrt(fan_in(s)), False),
    ({"method": "kaiming_uniform"},  # torch's defaults: leaky_relu with a=0, i.e. relu's gain
     lambda s: math.sqrt(2) / math.sqrt(fan_in(s)), False),
    ({"method": "kaiming_normal", "nonlinearity": "leaky_relu", "a": 0.2, "mode": "fan_out"},
     lambda s: math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(fan_out(s)), False),
    ({"method": "kaiming_normal", "nonlinearity": "tanh"},
     lambda s: 5 / 3 / math.sqrt(fan_in(s)), False),
    ({"method": "kaiming_normal", "nonlinearity": "gelu"},
     lambda s: GELU / math.sqrt(fan_in(s)), False),
    ({"method": "kaiming_uniform", "nonlinearity": "gelu", "mode": "fan_out"},
     lambda s: GELU / math.sqrt(fan_out(s)), False),
    ({"method": "orthogonal", "gain": 2.0},
     lambda s: 2 * math.sqrt(min(s[0], math.prod(s[1:])) / math.prod(s)), False),
    ({"method": "orthogonal", "gain": "relu"},
     lambda s: math.sqrt(2) * math.sqrt(min(s[0], math.prod(s[1:])) / math.prod(s)), False),
    ({"method": "sparse", "sparsity": 0.25, "std": 0.05},
     lambda s: 0.05 * math.sqrt(1 - math.ceil(0.25 * s[0]) / s[0]), False),
    ({"method": "sparse"}, lambda s: 0.01 * math.sqrt(1 - math.ceil(0.1 * s[0]) / s[0]), False),
    ({"method": "lecun_normal"}, lambda s: 1 / math.sqrt(fan_in(s)), False),
    ({"method": "lecun_uniform"}, lambda s: 1 / math.sqrt(fan_in(s)), False),
    ({"method": "variance_scaling"}, lambda s: math.sqrt(1 / fan_in(s)), False),
    ({"method": "variance_scaling", "mode": "fan_out", "distribution": "normal"},
     lambda s: math.sqrt(1 / fan_out(s)), False),
    ({"method": "variance_scaling", "mode": "fan_avg", "distribution": "uniform"},
     lambda s: math.sqrt(2 / (fan_in(s) + fan_out(s))), False),
]  # fmt: skip

STD_PARAMS = [
    pytest.param(d, closed, exact, shape, id=f"{case_id(d)}-{'x'.join(map(str, shape))}")
    for d, closed, exact in STD_CASES
    for shape in SHAPES
    if METHODS[d["method"]].accepts_rank(len(shape))
]


# lsuv's std comes from the data (tests/test_lsuv.py); its orthonormal draw is a torch case.
DATA = {name for name, method in METHODS.items() if method.data_dependent}


def test_every_method_has_a_closed_form_case():
    assert {d["method"] for d, _, _ in STD_CASES} == set(METHODS) - DATA


def test_every_method_is_checked_on_every_rank_it_accepts():
    checked = {(p.values[0]["method"], len(p.values[3])) for p in STD_PARAMS}
    for name, method in METHODS.items():
        if name in DATA:
            continue
        ranks = {len(shape) for shape in SHAPES if method.accepts_rank(len(shape))}
        assert ranks, f"{name}: no test shape has a rank it accepts"
        assert {(name, r) for r in ranks} <= checked


@pytest.mark.parametrize(("d", "closed", "exact", "shape"), STD_PARAMS)
def test_empirical_std_matches_closed_form(d, closed, exact, shape):
    s = spec(d)
    if closed is None:  # 'default' keeps the module's own values: nothing to run
        assert s.call(shape) is None
        return
    t = initialized(s, shape)
    assert torch.isfinite(t).all(), "some elements were not written"
    got = t.double().std(correction=0).item()
    want = closed(shape)
    # Deterministic methods are exact up to float32 rounding; random ones are within ~5 SE.
    assert got == pytest.approx(want, rel=1e-6 if exact else REL, abs=1e-12)


@pytest.mark.parametrize(("d", "closed", "exact", "shape"), STD_PARAMS)
def test_expected_std_matches_closed_form(d, closed, exact, shape):
    s = spec(d)
    if closed is None:
        assert math.isnan(s.expected_std(shape))
        return
    assert s.expected_std(shape) == pytest.approx(closed(shape), rel=1e-9, abs=1e-15)


def test_orthogonal_std_is_nearly_exact():
    # sum of squares of a (semi-)orthogonal matrix is gain² · min(rows, cols), whatever the seed
    for shape in (LINEAR, (512, 256), CONV):
        t = initialized(spec({"method": "orthogonal", "gain": 2.0}), shape)
        rms = t.double().pow(2).mean().sqrt().item()
        want = 2 * math.sqrt(min(shape[0], math.prod(shape[1:])) / math.prod(shape))
        assert rms == pytest.approx(want, rel=1e-5)


def test_scale_multiplies_expected_std_by_its_absolute_value():
    s = spec({"method": "normal", "std": 0.2, "scale": -0.5})
    assert s.scale == -0.5
    assert s.expected_std(LINEAR) == pytest.approx(0.1, rel=1e-12)


def test_variance_scaling_factor_is_the_keras_scale():
    # Keras's `scale` is `factor` here: the spec-level `scale` multiplies every method's result.
    s = spec({"method": "variance_scaling", "factor": 2.0, "distribution": "normal"})
    want = math.sqrt(2.0 / fan_in(LINEAR))  # Keras/JAX: std = sqrt(scale / n), not scale/sqrt(n)
    assert s.expected_std(LINEAR) == pytest.approx(want, rel=1e-9)
    assert s.kwargs["factor"] == 2.0 and s.scale == 1.0
    both = spec({"method": "variance_scaling", "factor": 2.0, "scale": 0.5})
    assert both.expected_std(LINEAR) == pytest.approx(0.5 * want, rel=1e-9)


TRUNC_CASES = [
    (0.0, 1.0, -2.0, 2.0),
    (0.5, 2.0, -1.0, 4.0),
    (0.0, 0.02, -0.04, 0.04),
    (1.0, 1.0, -1.0, 1.5),  # mean outside the lower half
    (0.0, 1.0, 1.0, 3.0),  # one-sided
    (0.0, 1.0, 3.0, 5.0),
    (0.0, 1.0, 7.0, 9.0),  # far tail: erf would cancel here
    (0.0, 1.0, 8.0, 9.0),
    (0.0, 1.0, -9.0, -8.0),
]  # fmt: skip


@pytest.mark.parametrize(("mean", "std", "a", "b"), TRUNC_CASES)
def test_truncated_normal_std_matches_scipy(mean, std, a, b):
    assert truncated_normal_std(mean, std, a, b) == pytest.approx(
        trunc_std(mean, std, a, b), rel=1e-6
    )


# ---------------------------------------------------------------- distribution shape (KS)


def normal(std: float, mean: float = 0.0):
    return stats.norm(loc=mean, scale=std)


def symmetric_uniform(std: float):
    bound = math.sqrt(3) * std
    return stats.uniform(loc=-bound, scale=2 * bound)


def cut_at_two_sigma(std: float):
    """N(0, s) cut at ±2s, with s chosen so the final std is `std` (Keras/JAX truncated_normal)."""
    return stats.truncnorm(-2, 2, scale=std / TRUNC_2SIGMA)


KS_CASES: list[tuple[dict[str, Any], Callable[[Shape], Any]]] = [
    ({"method": "normal", "mean": 0.5, "std": 2.0}, lambda s: normal(2.0, 0.5)),
    ({"method": "uniform", "a": -1.0, "b": 3.0}, lambda s: stats.uniform(-1.0, 4.0)),
    ({"method": "trunc_normal"}, lambda s: stats.truncnorm(-2, 2)),
    ({"method": "trunc_normal", "mean": 0.5, "std": 1.0, "a": -1.0, "b": 1.5},
     lambda s: stats.truncnorm(-1.5, 1.0, loc=0.5, scale=1.0)),
    ({"method": "xavier_normal", "gain": "tanh"},
     lambda s: normal(5 / 3 * math.sqrt(2 / (fan_in(s) + fan_out(s))))),
    ({"method": "xavier_uniform", "gain": 2.0},
     lambda s: symmetric_uniform(2 * math.sqrt(2 / (fan_in(s) + fan_out(s))))),
    ({"method": "kaiming_normal", "nonlinearity": "relu"},
     lambda s: normal(math.sqrt(2 / fan_in(s)))),
    ({"method": "kaiming_uniform", "nonlinearity": "leaky_relu", "a": 0.1, "mode": "fan_out"},
     lambda s: symmetric_uniform(math.sqrt(2 / (1 + 0.1**2)) / math.sqrt(fan_out(s)))),
    ({"method": "kaiming_normal", "nonlinearity": "gelu"},
     lambda s: normal(GELU / math.sqrt(fan_in(s)))),
    ({"method": "kaiming_uniform", "nonlinearity": "gelu"},
     lambda s: symmetric_uniform(GELU / math.sqrt(fan_in(s)))),
    ({"method": "lecun_normal"}, lambda s: cut_at_two_sigma(1 / math.sqrt(fan_in(s)))),
    ({"method": "lecun_uniform"}, lambda s: symmetric_uniform(1 / math.sqrt(fan_in(s)))),
    ({"method": "variance_scaling"}, lambda s: cut_at_two_sigma(math.sqrt(1 / fan_in(s)))),
    ({"method": "variance_scaling", "mode": "fan_out", "distribution": "normal"},
     lambda s: normal(math.sqrt(1 / fan_out(s)))),
    ({"method": "variance_scaling", "mode": "fan_avg", "distribution": "uniform"},
     lambda s: symmetric_uniform(math.sqrt(2 / (fan_in(s) + fan_out(s))))),
]  # fmt: skip


def random_methods() -> set[str]:
    out = set()
    for name, method in METHODS.items():
        shape = next(s for s in (LINEAR, CONV) if method.accepts_rank(len(s)))
        call = spec(name).call(shape)
        if call is not None and call.random:
            out.add(name)
    return out


def test_every_random_method_has_a_distribution_test():
    # orthogonal and sparse are not i.i.d. draws; they have exact structural tests below.
    # lsuv draws orthogonal_ first.
    assert {d["method"] for d, _ in KS_CASES} == random_methods() - {"orthogonal", "sparse", "lsuv"}


def test_ks_cases_cover_gelu_and_every_variance_scaling_distribution():
    given = [d for d, _ in KS_CASES]
    kaiming_gelu = {d["method"] for d in given if d.get("nonlinearity") == "gelu"}
    assert kaiming_gelu == {"kaiming_normal", "kaiming_uniform"}
    distributions = {
        d.get("distribution", "truncated_normal")
        for d in given
        if d["method"] == "variance_scaling"
    }
    assert distributions == {"truncated_normal", "normal", "uniform"}


@pytest.mark.parametrize("shape", [LINEAR, CONV], ids=["linear", "conv"])
@pytest.mark.parametrize(("d", "dist"), KS_CASES, ids=[case_id(d) for d, _ in KS_CASES])
def test_distribution_shape_ks(d, dist, shape):
    t = initialized(spec(d), shape, seed=1234)
    result = stats.kstest(t.flatten().double().numpy(), dist(shape).cdf)
    assert result.pvalue > 1e-3, f"KS statistic {result.statistic:.4g}"


# ---------------------------------------------------------------- exact values


@pytest.mark.parametrize(("d", "value"), [
    ({"method": "constant", "val": 0.3}, 0.3),
    ({"method": "constant", "val": -2}, -2.0),
    ({"method": "constant"}, 0.0),
    ({"method": "ones"}, 1.0),
    ({"method": "zeros"}, 0.0),
])  # fmt: skip
def test_constant_values(d, value):
    for shape in [(), (7,), (5, 3), CONV]:
        t = torch.randn(shape)
        spec(d).call(shape).run(t, gen())
        assert torch.equal(t, torch.full(shape, value))


@pytest.mark.parametrize("shape", [(5, 7), (7, 5), (6, 6)])
def test_eye_is_identity(shape):
    t = torch.randn(shape)
    spec("eye").call(shape).run(t, gen())
    assert torch.equal(t, torch.eye(*shape))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("shape", [(6, 4, 3), (6, 4, 3, 3), (4, 6, 3, 5), (8, 4, 3, 3, 3)])
def test_dirac_equals_torch(shape, groups):
    t = torch.randn(shape)
    spec({"method": "dirac", "groups": groups}).call(shape).run(t, gen())
    assert torch.equal(t, nn.init.dirac_(torch.empty(shape), groups=groups))


@pytest.mark.parametrize("groups", [1, 2])
def test_dirac_convolution_keeps_its_input(groups):
    channels = 4
    w = torch.empty(channels, channels // groups, 3, 3)
    spec({"method": "dirac", "groups": groups}).call(w.shape).run(w, gen())
    x = torch.randn(2, channels, 9, 9, generator=gen(1))
    assert torch.equal(F.conv2d(x, w, padding=1, groups=groups), x)


@pytest.mark.parametrize("gain", [1.0, 2.0, "relu", "tanh"])
@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (50, 50), (16, 8, 3, 3), (8, 32, 3)])
def test_orthogonal_is_orthogonal(shape, gain):
    t = torch.empty(shape)
    spec({"method": "orthogonal", "gain": gain}).call(shape).run(t, gen())
    w = t.reshape(shape[0], -1).double()
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    g = {"relu": math.sqrt(2), "tanh": 5 / 3}.get(gain, gain)
    eye = torch.eye(small.shape[0], dtype=torch.float64)
    assert (small - g**2 * eye).abs().max().item() < 1e-5


@pytest.mark.parametrize(("rows", "cols", "sparsity"), [
    (100, 300, 0.1), (64, 32, 0.25), (15, 7, 0.1), (10, 40, 0.95), (30, 5, 0.0),
])  # fmt: skip
def test_sparse_zeros_per_column(rows, cols, sparsity):
    t = torch.empty(rows, cols)
    spec({"method": "sparse", "sparsity": sparsity, "std": 0.5}).call(t.shape).run(t, gen(3))
    want = math.ceil(sparsity * rows)
    assert ((t == 0).sum(dim=0) == want).all()


def test_sparse_nonzeros_are_normal_with_std():
    t = torch.empty(400, 300)
    spec({"method": "sparse", "sparsity": 0.3, "std": 0.05}).call(t.shape).run(t, gen(5))
    nonzero = t[t != 0].double().numpy()
    assert nonzero.size == (400 - 120) * 300
    assert stats.kstest(nonzero, normal(0.05).cdf).pvalue > 1e-3


def test_sparse_zero_pattern_follows_the_generator():
    # torch.nn.init.sparse_ draws its zero pattern from the global RNG; ours must not.
    s = spec({"method": "sparse", "sparsity": 0.5})
    a, b, c = torch.empty(20, 30), torch.empty(20, 30), torch.empty(20, 30)
    torch.manual_seed(1)
    s.call(a.shape).run(a, gen(7))
    torch.manual_seed(2)  # a different global state must not matter
    s.call(b.shape).run(b, gen(7))
    s.call(c.shape).run(c, gen(8))
    assert torch.equal(a == 0, b == 0)
    assert torch.equal(a, b)
    assert not torch.equal(a == 0, c == 0)


# ---------------------------------------------------------------- bit-for-bit with torch


def _kaiming_gelu(kind: str, mode: str) -> Callable[[torch.Tensor, torch.Generator], Any]:
    """Torch rejects gelu: the same He formula with the estimated gain, drawn by torch."""

    def run(t: torch.Tensor, g: torch.Generator) -> Any:
        std = GELU / math.sqrt(fan_in(t.shape) if mode == "fan_in" else fan_out(t.shape))
        if kind == "normal":
            return nn.init.normal_(t, 0.0, std, generator=g)
        bound = math.sqrt(3.0) * std
        return nn.init.uniform_(t, -bound, bound, generator=g)

    return run


TORCH_CASES: list[tuple[dict[str, Any], Callable[[torch.Tensor, torch.Generator], Any]]] = [
    ({"method": "lsuv"}, lambda t, g: nn.init.orthogonal_(t, generator=g)),  # before rescaling
    ({"method": "uniform", "a": -1.0, "b": 2.0},
     lambda t, g: nn.init.uniform_(t, -1.0, 2.0, generator=g)),
    ({"method": "normal", "mean": 0.5, "std": 0.02},
     lambda t, g: nn.init.normal_(t, 0.5, 0.02, generator=g)),
    ({"method": "trunc_normal", "std": 0.02, "a": -0.04, "b": 0.04},
     lambda t, g: nn.init.trunc_normal_(t, 0.0, 0.02, -0.04, 0.04, generator=g)),
    ({"method": "constant", "val": 0.7}, lambda t, g: nn.init.constant_(t, 0.7)),
    ({"method": "ones"}, lambda t, g: nn.init.ones_(t)),
    ({"method": "zeros"}, lambda t, g: nn.init.zeros_(t)),
    ({"method": "eye"}, lambda t, g: nn.init.eye_(t)),
    ({"method": "dirac", "groups": 2}, lambda t, g: nn.init.dirac_(t, groups=2)),
    ({"method": "xavier_normal", "gain": "tanh"},
     lambda t, g: nn.init.xavier_normal_(t, gain=5 / 3, generator=g)),
    ({"method": "xavier_normal"}, lambda t, g: nn.init.xavier_normal_(t, generator=g)),
    ({"method": "xavier_uniform", "gain": "relu"},
     lambda t, g: nn.init.xavier_uniform_(t, gain=math.sqrt(2), generator=g)),
    ({"method": "xavier_uniform", "gain": "leaky_relu(0.2)"},
     lambda t, g: nn.init.xavier_uniform_(t, gain=math.sqrt(2 / 1.04), generator=g)),
    ({"method": "kaiming_normal", "nonlinearity": "relu"},
     lambda t, g: nn.init.kaiming_normal_(t, nonlinearity="relu", generator=g)),
    ({"method": "kaiming_uniform", "nonlinearity": "relu", "mode": "fan_out"},
     lambda t, g: nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu", generator=g)),
    ({"method": "kaiming_uniform"}, lambda t, g: nn.init.kaiming_uniform_(t, generator=g)),
    ({"method": "kaiming_normal", "a": 0.2, "mode": "fan_out"},
     lambda t, g: nn.init.kaiming_normal_(t, a=0.2, mode="fan_out", generator=g)),
    ({"method": "kaiming_normal", "nonlinearity": "selu"},
     lambda t, g: nn.init.kaiming_normal_(t, nonlinearity="selu", generator=g)),
    ({"method": "kaiming_normal", "nonlinearity": "gelu"}, _kaiming_gelu("normal", "fan_in")),
    ({"method": "kaiming_uniform", "nonlinearity": "gelu", "mode": "fan_out"},
     _kaiming_gelu("uniform", "fan_out")),
    ({"method": "orthogonal", "gain": 2.0},
     lambda t, g: nn.init.orthogonal_(t, gain=2.0, generator=g)),
    ({"method": "orthogonal", "gain": "relu"},
     lambda t, g: nn.init.orthogonal_(t, gain=math.sqrt(2), generator=g)),
]  # fmt: skip

TORCH_PARAMS = [
    pytest.param(d, fn, shape, id=f"{case_id(d)}-{'x'.join(map(str, shape))}")
    for d, fn in TORCH_CASES
    for shape in ((96, 160), CONV)
    if METHODS[d["method"]].accepts_rank(len(shape))
]


def test_every_torch_wrapper_has_a_bitwise_case():
    wrappers = set()
    for name, method in METHODS.items():
        shape = next(s for s in (LINEAR, CONV) if method.accepts_rank(len(s)))
        call = spec(name).call(shape)
        if call is not None and call.fn.startswith("nn.init."):
            wrappers.add(name)
    assert {d["method"] for d, _ in TORCH_CASES} == wrappers


@pytest.mark.parametrize(("d", "torch_fn", "shape"), TORCH_PARAMS)
def test_bitwise_equal_to_torch(d, torch_fn, shape):
    ours = initialized(spec(d), shape, seed=42)
    theirs = torch.empty(shape)
    torch_fn(theirs, gen(42))
    assert torch.equal(ours, theirs)


# initlab's own initializers, against the torch primitive each distribution is drawn with
OWN_CASES = [
    ({"method": "lecun_uniform"},
     lambda t, g, n: nn.init.uniform_(t, -math.sqrt(3 / n), math.sqrt(3 / n), generator=g)),
    ({"method": "variance_scaling", "distribution": "normal", "mode": "fan_out"},
     lambda t, g, n: nn.init.normal_(t, 0.0, math.sqrt(1 / n), generator=g)),
    ({"method": "lecun_normal"},
     lambda t, g, n: nn.init.trunc_normal_(
         t, 0.0, s := math.sqrt(1 / n) / TRUNC_2SIGMA, -2 * s, 2 * s, generator=g)),
]  # fmt: skip


@pytest.mark.parametrize(("d", "torch_fn"), OWN_CASES, ids=[case_id(d) for d, _ in OWN_CASES])
def test_own_initializers_match_torch_primitives(d, torch_fn):
    ours = initialized(spec(d), CONV, seed=9)
    theirs = torch.empty(CONV)
    n = fan_out(CONV) if d.get("mode") == "fan_out" else fan_in(CONV)
    torch_fn(theirs, gen(9), n)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


# ---------------------------------------------------------------- reproducibility


def _repro_shape(name: str) -> Shape:
    return next(s for s in ((32, 48), (8, 6, 3, 3)) if METHODS[name].accepts_rank(len(s)))


REPRO_SPECS = [{"method": name} for name in METHODS] + [
    {"method": "kaiming_normal", "nonlinearity": "gelu"},
    {"method": "kaiming_uniform", "nonlinearity": "gelu"},
    {"method": "variance_scaling", "distribution": "normal"},
    {"method": "variance_scaling", "distribution": "uniform"},
]


@pytest.mark.parametrize("d", REPRO_SPECS, ids=case_id)
def test_same_seed_same_tensor_different_seed_different(d):
    s = spec(d)
    shape = _repro_shape(d["method"])
    call = s.call(shape)
    if call is None:
        assert d["method"] == "default"
        return
    a, b, c = (initialized(s, shape, seed) for seed in (0, 0, 1))
    assert torch.equal(a, b)
    if call.random:
        assert not torch.equal(a, c)
    else:
        assert torch.equal(a, c)


def test_only_the_deterministic_methods_ignore_the_generator():
    deterministic = set(METHODS) - random_methods() - {"default"}
    assert deterministic == {"constant", "ones", "zeros", "eye", "dirac"}


def test_call_run_works_without_a_generator():
    t = torch.empty(20, 30)
    spec("sparse").call(t.shape).run(t, None)
    assert ((t == 0).sum(dim=0) == 2).all()


# ---------------------------------------------------------------- tensor ranks

RANK_PARAMS = [
    pytest.param(name, rank, id=f"{name}-{rank}d") for name in METHODS for rank in range(6)
]
FAN_HINT = "for biases and norms use zeros"


@pytest.mark.parametrize(("name", "rank"), RANK_PARAMS)
def test_rank_is_accepted_and_works_or_refused_with_reason(name, rank):
    shape = (4,) * rank
    s = spec(name)
    method = METHODS[name]
    problem = s.rank_problem(shape)
    call = s.call(shape)
    if method.accepts_rank(rank):
        assert problem is None
        if call is not None:
            t = torch.full(shape, math.nan)
            call.run(t, gen())
            assert t.shape == shape and torch.isfinite(t).all()
        return
    assert problem is not None and problem.startswith(f"{name} needs a ")
    assert method.rank_hint in problem
    if method.uses_fans:
        assert FAN_HINT in problem
    # ... and the refusal is real: the underlying function fails on that tensor too.
    with pytest.raises((ValueError, RuntimeError, IndexError)):
        call.run(torch.zeros(shape), gen())


def test_rank_messages_read_as_documented():
    assert spec("eye").rank_problem(CONV) == "eye needs a 2-D tensor; for convolutions use dirac"
    assert "eye" in spec("dirac").rank_problem(LINEAR)
    assert "dirac" in spec("eye").rank_problem((4, 4, 3))
    for name, method in METHODS.items():
        if method.uses_fans:
            assert "zeros" in spec(name).rank_problem((10,)), name


def test_torch_refuses_what_sparse_refuses():
    for shape in [(), (4,), (4, 4, 4)]:
        assert spec("sparse").rank_problem(shape) is not None
        with pytest.raises((ValueError, RuntimeError)):
            nn.init.sparse_(torch.zeros(shape), 0.1, generator=gen())


def test_dirac_groups_must_divide_out_channels():
    s = spec({"method": "dirac", "groups": 3})
    problem = s.rank_problem((4, 4, 3, 3))
    assert problem is not None and "groups=3" in problem and "divisible" in problem
    assert s.rank_problem((6, 4, 3, 3)) is None
    with pytest.raises(ValueError):
        nn.init.dirac_(torch.zeros(4, 4, 3, 3), groups=3)


# ---------------------------------------------------------------- validation

INVALID = [
    ({"method": "normal", "std": -1}, "w.std: must be a number >= 0; got -1"),
    ({"method": "sparse", "sparsity": 1}, "w.sparsity: must be a number >= 0 and < 1; got 1"),
    ({"method": "sparse", "sparsity": -0.1}, "w.sparsity: "),
    ({"method": "sparse", "std": -0.5}, "w.std: "),
    ({"method": "uniform", "a": 2.0, "b": 1.0}, "w: a must be smaller than b; got a=2.0, b=1.0"),
    ({"method": "uniform", "a": 1.0, "b": 1.0}, "w: a must be smaller than b"),
    ({"method": "trunc_normal", "a": 1.0, "b": 1.0}, "w: a must be smaller than b"),
    ({"method": "trunc_normal", "a": 3.0, "b": -3.0}, "w: a must be smaller than b"),
    ({"method": "trunc_normal", "std": 0}, "w.std: must be a number > 0; got 0"),
    ({"method": "kaiming_normal", "mode": "fan_avg"}, "w.mode: must be one of 'fan_in', "),
    ({"method": "variance_scaling", "mode": "fan_sum"}, "w.mode: must be one of "),
    ({"method": "variance_scaling", "distribution": "cauchy"}, "w.distribution: "),
    ({"method": "kaiming_uniform", "nonlinearity": "swish"}, "w.nonlinearity: must be one of "),
    ({"method": "kaiming_uniform", "a": -0.1}, "w.a: must be a number >= 0"),
    ({"method": "xavier_normal", "gain": "tan"}, "w.gain: must be a number >= 0 or a "),
    ({"method": "xavier_normal", "gain": None}, "w.gain: "),
    ({"method": "xavier_uniform", "gain": True}, "w.gain: "),
    ({"method": "orthogonal", "gain": [1]}, "w.gain: "),
    ({"method": "orthogonal", "gain": "leaky_relu(1e999)"}, "w.gain: "),
    ({"method": "xavier_normal", "gain": math.nan}, "w.gain: "),
    ({"method": "xavier_normal", "gain": math.inf}, "w.gain: "),
    ({"method": "normal", "std": math.nan}, "w.std: "),
    ({"method": "normal", "mean": -math.inf}, "w.mean: "),
    ({"method": "normal", "std": True}, "w.std: "),
    ({"method": "normal", "std": "0.1"}, "w.std: "),
    ({"method": "uniform", "b": math.inf}, "w.b: "),
    ({"method": "constant", "val": math.nan}, "w.val: "),
    ({"method": "dirac", "groups": 0}, "w.groups: must be a whole number >= 1"),
    ({"method": "dirac", "groups": 1.5}, "w.groups: "),
    ({"method": "normal", "scale": math.nan}, "w.scale: "),
    ({"method": "normal", "sd": 0.1}, "w: unknown parameter 'sd' for method 'normal'; "
                                      "allowed: mean, std"),
    ({"method": "ones", "val": 1}, "w: unknown parameter 'val' for method 'ones'; "
                                   "allowed: no parameters"),
    ({"std": 0.1}, "w.method: missing"),
    (3, "w: must be a method name or an object with 'method'"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_specs_are_refused_naming_the_field(value, message):
    with pytest.raises(ValueError) as info:
        spec(value)
    assert str(info.value).startswith(message)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^w\.method: unknown method 'xavier'") as info:
        spec({"method": "xavier", "gain": 1.0})
    listed = str(info.value).split("choose one of: ")[1].split(", ")
    assert listed == list(METHODS)


@pytest.mark.parametrize("name", ["xavier_normal_", "kaiming_uniform_", "zeros_", " eye "])
def test_trailing_underscore_names_are_accepted(name):
    s = spec({"method": name})
    assert s.method == name.strip().removesuffix("_")
    assert s == spec(name)


def test_default_and_missing_specs_keep_pytorch_default():
    for value in (None, "default", {"method": "default"}):
        s = spec(value)
        assert s.method == "default" and s.call(LINEAR) is None


def test_defaults_are_filled_and_numbers_normalised():
    s = spec({"method": "normal", "std": 1})
    assert s.kwargs == {"mean": 0.0, "std": 1.0}
    assert isinstance(s.kwargs["std"], float)
    assert spec({"method": "xavier_normal", "gain": " Tanh "}).kwargs == {"gain": "tanh"}


@pytest.mark.parametrize("name", ["xavier_normal", "xavier_uniform", "orthogonal"])
def test_a_validated_gain_initializes_and_has_nonnegative_std(name):
    try:
        s = spec({"method": name, "gain": -1.0})
    except ValueError as error:  # refusing negative gains is a fine fix too
        assert str(error).startswith("w.gain: ")
        return
    t = initialized(s, (8, 16))
    assert torch.isfinite(t).all()
    assert s.expected_std((8, 16)) >= 0
