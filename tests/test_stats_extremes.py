"""stats at the edges of floating point: every finite tensor gets exact moments and a finite
histogram, at any scale float32 and float64 can hold; and the CLI end to end on the deep MLPs
whose activations square out of float32's range.

The oracle is exact rational arithmetic: every float is an integer times 2**-1074, so sums and
sums of squares of those integers give the mean and variance with no rounding at all, and a
tolerance measures initlab's error alone.

Tolerances. float32 input: 1e-5 relative on var and std. The fast path's E[x²] − mean² carries
the float32 cascade sums' rounding (~1e-7 at any length), times at most 2·E[x²]/var ≤ 4, as it
runs only while |mean| ≤ std; the exact fallback is good to ~1e-15. float64 input: 1e-10
(the float64 dot product's ~n·2**-53 with room for the same factor). A mean near zero is held
to the same relative tolerance of std + |mean|. Constants are exact.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from initlab import stats
from initlab.cli import main
from initlab.health import layer_health, verdicts
from initlab.stats import BINS, histogram, summarize

FRACTION_BITS = 1074  # 2**-1074 is float64's smallest subnormal: every float is k·2**-1074
FLOAT64_TOO_BIG = Fraction(2**1024)  # anything at or above rounds to inf
F32_SCALES = [1e-40, 1e-35, 1e-30, 1e-20, 1e-10, 1.0, 1e10, 1e20, 1e30, 1e35]
F64_SCALES = [1e-310, 1e-300, 1e-150, 1e-20, 1.0, 1e20, 1e150, 1e300]
KINDS = ["normal", "large mean", "relu", "constant", "zeros", "single"]
N = 2048
REL = {torch.float32: 1e-5, torch.float64: 1e-10}


def make(kind: str, scale: float, dtype: torch.dtype, n: int = N, seed: int = 0) -> torch.Tensor:
    """`kind` data of magnitude `scale`, drawn in float64 and rounded once to `dtype`."""
    z = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    data = {
        "normal": z * scale,
        "large mean": (1000.0 + z) * scale,  # var/E[x²] ≈ 1e-6: the cancelling case
        "relu": (z * scale).clamp(min=0.0),  # half exact zeros
        "constant": torch.full((n,), -1.5 * scale, dtype=torch.float64),
        "zeros": torch.zeros(n, dtype=torch.float64),
        "single": z[:1] * scale,
    }[kind]
    return data.to(dtype)


def _fixed(value: float) -> int:
    num, den = value.as_integer_ratio()
    return num * ((1 << FRACTION_BITS) // den)


def exact_moments(x: torch.Tensor) -> tuple[Fraction, Fraction, Fraction]:
    """Mean, population variance and std (to ~2**-64 relative) of x's values, exactly."""
    ints = [_fixed(v) for v in x.reshape(-1).double().tolist()]
    n, s = len(ints), sum(ints)
    spread = n * sum(i * i for i in ints) - s * s  # n² · var, in units of 2**-2·1074
    std = Fraction(math.isqrt(spread << 128), (n << FRACTION_BITS) << 64)
    return Fraction(s, n << FRACTION_BITS), Fraction(spread, (n * n) << 2 * FRACTION_BITS), std


def assert_close(value: float, exact: Fraction, rel: float, scale: Fraction | None = None):
    """`value` within rel·|exact| (rel·scale when given) plus float64's rounding granularity;
    a number too large for a float64 must be inf (1e300² is)."""
    if exact >= FLOAT64_TOO_BIG:
        assert value == math.inf
        return
    assert math.isfinite(value), value
    bound = rel * (abs(exact) if scale is None else scale) + Fraction(2) ** -FRACTION_BITS
    assert abs(Fraction(value) - exact) <= bound, (value, float(exact))


def check_summary(x: torch.Tensor) -> None:
    s = summarize(x)
    mean, var, std = exact_moments(x)
    rel = REL[x.dtype]
    assert s.nonfinite == 0
    assert s.frac_zero == float((x == 0).sum()) / x.numel()
    assert s.low == float(x.min()) and s.high == float(x.max())
    assert_close(s.mean, mean, rel, scale=std + abs(mean))
    assert_close(s.var, var, rel)
    assert_close(s.std, std, rel)
    if x.min() == x.max():  # constant, zeros, single element: exact
        assert (s.mean, s.var, s.std) == (float(x[0]), 0.0, 0.0)
    if std > 0 and float(std) > 0:
        assert s.std > 0  # never an underflowed 0 for a spread that a float can hold


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", F32_SCALES)
def test_float32_moments_are_exact_at_every_scale(kind, scale):
    check_summary(make(kind, scale, torch.float32))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", F64_SCALES)
def test_float64_moments_are_exact_at_every_scale(kind, scale):
    check_summary(make(kind, scale, torch.float64))


def test_float64_variance_beyond_float64_is_inf_and_std_still_exact():
    x = make("normal", 1e300, torch.float64)
    s = summarize(x)
    assert s.var == math.inf and s.nonfinite == 0  # 1e600 has no float64; the truth rounds up
    assert_close(s.std, exact_moments(x)[2], 1e-10)  # torch's own std overflows to inf here
    assert float(x.std(correction=0)) == math.inf
    tiny = summarize(make("normal", 1e-300, torch.float64))
    assert tiny.var == 0.0 and tiny.std == pytest.approx(1e-300, rel=0.1)  # 1e-600 rounds to 0


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e30, 1e35])
@pytest.mark.parametrize("kind", ["normal", "large mean", "relu"])
def test_fallbacks_over_several_chunks(monkeypatch, kind, scale):
    monkeypatch.setattr(stats, "CHUNK", 500)  # 2048 elements: four chunks and a partial one
    check_summary(make(kind, scale, torch.float32))
    check_histogram(make(kind, scale, torch.float32))


@pytest.mark.parametrize("n", [131072, 4194304])
def test_float32_variance_of_alternating_values_is_exact(n):
    # var/E[x²] ≈ 0.0101: once on the fast path, where a float32 dot's accumulation error in
    # E[x²] (4e-5 over 2**17 elements) was amplified 100× to a relative error of 4.7e-3.
    a, b = np.float32(0.89), np.float32(1.09)
    x = torch.tensor([a, b]).repeat(n // 2)
    exact = ((Fraction(float(a)) - Fraction(float(b))) / 2) ** 2  # n even: mean is (a + b) / 2
    s = summarize(x)
    assert abs(Fraction(s.var) - exact) / exact < Fraction(1, 10**5)
    assert s.std == pytest.approx(math.sqrt(exact), rel=1e-5)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 3.0, 9.0, 30.0, 100.0])
def test_float32_variance_at_any_mean_to_std_ratio(ratio):
    # Both sides of the fast path's E[x²]/var ≤ 2 (|mean| ≤ std) and far into the fallback.
    z = torch.randn(1 << 20, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = (ratio + z).float()
    s, oracle = summarize(x), np.var(x.double().numpy())
    assert abs(s.var - oracle) / oracle < 1e-5
    assert s.mean == pytest.approx(float(x.double().mean()), rel=1e-6)


@pytest.mark.parametrize("kind", ["relu", "normal", "gradient"])
def test_common_float32_data_stays_on_the_fast_path(monkeypatch, kind):
    def fallback(*args):
        raise AssertionError("exact fallback taken")

    monkeypatch.setattr(stats, "_exact_moments", fallback)
    z = torch.randn(256, 512, generator=torch.Generator().manual_seed(3))
    x = {"relu": z.relu(), "normal": z, "gradient": 1e-4 * z + 1e-5}[kind]
    s, oracle = summarize(x), np.var(x.double().numpy())
    assert abs(s.var - oracle) / oracle < 1e-5


def test_float32_sum_overflow_alone_is_not_nonfinite():
    x = torch.full((4096,), 3e38)  # every element finite; their float32 sum is not
    x[0] = 1e38
    s = summarize(x)
    assert s.nonfinite == 0 and math.isfinite(s.mean) and math.isfinite(s.var)
    mean, var, _ = exact_moments(x)
    assert_close(s.mean, mean, 1e-12)
    assert_close(s.var, var, 1e-9)


def test_real_inf_and_nan_keep_torchs_moments():
    x = torch.tensor([1e30, float("inf"), 2.0, 0.0])
    s = summarize(x)
    assert s.nonfinite == 1 and s.frac_zero == 0.25
    var, mean = torch.var_mean(x, correction=0)
    assert math.isnan(s.mean) and math.isnan(float(mean))  # what torch says: NaN, not finite
    assert math.isnan(s.var) and math.isnan(float(var))
    y = torch.tensor([1e-30, float("nan")], dtype=torch.float64)
    assert summarize(y).nonfinite == 1 and math.isnan(summarize(y).mean)


# ---------------------------------------------------------------- histograms


EDGE_SLACK = 0.01  # of a bin: initlab's float32 bin index is exact to 0.4% of a bin


def assert_counts_match(x: torch.Tensor, edges: list[float], counts: list[float]) -> None:
    """Every element is counted in its bin, except that one within EDGE_SLACK of an edge may
    be counted on either side. The position in bins is computed in float64 on values and edges
    divided by a power of two (exact), so that hi − lo cannot overflow. With such slack, the
    counts are right iff for every edge j the elements counted below j number at least those
    surely below it and at most those possibly below it."""
    k = math.frexp(max(abs(edges[0]), abs(edges[-1])))[1]
    lo, hi = math.ldexp(edges[0], -k), math.ldexp(edges[-1], -k)
    bins = len(counts)
    position = (np.ldexp(x.double().numpy(), -k) - lo) * (bins / (hi - lo))
    surely = np.clip(np.floor(position + EDGE_SLACK), 0, bins - 1)
    possibly = np.clip(np.floor(position - EDGE_SLACK), 0, bins - 1)
    below = np.cumsum(counts)[:-1]
    for j, counted in enumerate(below, start=1):
        assert (surely < j).sum() <= counted <= (possibly < j).sum(), (j, counted)


def assert_robust_range(x: torch.Tensor, edges: list[float]) -> None:
    """The edges span [min, max] cut to mean ± 6 std (exact moments), to 1e-4 of that width;
    wider only where a constant gets its unit window or a range of a few ulps is widened."""
    low, high = Fraction(float(x.min())), Fraction(float(x.max()))
    mean, _, std = exact_moments(x)
    lo, hi = max(low, mean - 6 * std), min(high, mean + 6 * std)
    first, last = Fraction(edges[0]), Fraction(edges[-1])
    slack = (hi - lo) / 10_000
    assert first <= lo + slack and last >= hi - slack, (edges[0], edges[-1], float(lo), float(hi))
    few_ulps = 16 * len(edges) * Fraction(math.ulp(max(abs(edges[0]), abs(edges[-1]))))
    if low < high:
        assert last - first <= max(hi - lo + 2 * slack, few_ulps)


def check_histogram(x: torch.Tensor, bins: int = BINS) -> None:
    for edges, counts in (histogram(x, bins), histogram(x, bins, summarize(x))):
        assert len(edges) == bins + 1 and len(counts) == bins
        assert all(math.isfinite(e) for e in edges)
        assert all(a < b for a, b in itertools.pairwise(edges))
        assert min(counts) >= 0 and sum(counts) == x.numel()
        assert_robust_range(x, edges)
        assert_counts_match(x, edges, counts)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", F32_SCALES)
def test_float32_histogram_at_every_scale(kind, scale):
    check_histogram(make(kind, scale, torch.float32))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", F64_SCALES)
def test_float64_histogram_at_every_scale(kind, scale):
    check_histogram(make(kind, scale, torch.float64))


F32_MAX, F64_MAX = torch.finfo(torch.float32).max, torch.finfo(torch.float64).max


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([-F32_MAX, F32_MAX, 0.0, 1.0, -1.0], torch.float32),  # hi − lo beyond float32
        ([-F64_MAX, F64_MAX, 0.0, 1e300], torch.float64),  # hi − lo beyond float64
        ([F64_MAX] * 3, torch.float64),  # a constant at the top: no room for a unit window
        ([1e-45, 3e-45, 7e-45, 0.0], torch.float32),  # float32 subnormals
        ([5e-324, 1e-323, 2e-323], torch.float64),  # float64 subnormals
        ([1.0, 1.0 + 2**-52, 1.0], torch.float64),  # one ulp apart: the range is widened
        ([0.0] * 99 + [3e38], torch.float32),  # one huge outlier among zeros
    ],
)
def test_histogram_at_the_ends_of_the_range(values, dtype):
    x = torch.tensor(values, dtype=dtype)
    check_histogram(x, 16)
    assert summarize(x).nonfinite == 0


def test_histogram_far_outlier_goes_to_the_top_bin_the_rest_to_the_bottom():
    x = make("normal", 1e-300, torch.float64)
    x[0] = 1e300  # 600 orders of magnitude above the rest: the window is mean ± 6 std
    edges, counts = histogram(x, 32)
    assert edges[-1] < 1e300 and all(math.isfinite(e) for e in edges)
    assert counts[0] == N - 1 and counts[-1] == 1


# ---------------------------------------------------------------- end to end through the CLI


def run_cli(tmp_path: Path, model: dict, scheme: dict) -> dict[str, pd.DataFrame]:
    experiment = {"model": model, "input": {"batch_size": 64}, "seeds": [0], "schemes": [scheme]}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(experiment), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    return {t: pd.read_csv(tmp_path / "out" / f"{t}.csv") for t in ("layers", "params")}


def mlp(depth: int) -> dict:
    return {"name": "mlp", "depth": depth, "width": 256, "activation": "relu"}


def assert_all_finite_and_positive(layers: pd.DataFrame) -> None:
    assert (layers["nonfinite"] == 0).all()
    var = layers["act_var"].to_numpy(dtype=float)
    assert np.isfinite(var).all() and (var > 0).all(), layers[["layer", "act_var"]]
    assert "non-finite" not in set(layer_health(layers)["status"])


@pytest.mark.usefixtures("one_thread")
def test_cli_too_large_explodes_without_going_non_finite(tmp_path, capsys):
    layers = run_cli(tmp_path, mlp(24), {"name": "too large", "preset": "too_large"})["layers"]
    assert_all_finite_and_positive(layers)
    assert layers["act_var"].max() > 1e45  # past float32's 3.4e38: the squares overflowed
    verdict = verdicts(layers, 1.0)["too large"]
    assert verdict.startswith("activations grow ×"), verdict
    assert "non-finite" not in verdict


@pytest.mark.usefixtures("one_thread")
def test_cli_too_small_vanishes_without_exact_zeros(tmp_path, capsys):
    layers = run_cli(tmp_path, mlp(30), {"name": "too small", "preset": "too_small"})["layers"]
    assert_all_finite_and_positive(layers)
    assert layers["act_var"].min() < 1e-45  # below float32's subnormals: the squares underflowed
    verdict = verdicts(layers, 1.0)["too small"]
    assert verdict.startswith("activations shrink ×"), verdict
    assert "exact zeros" not in verdict


@pytest.mark.usefixtures("one_thread")
def test_cli_kaiming_normal_with_huge_a_measures_its_tiny_std(tmp_path, capsys):
    weight = {"method": "kaiming_normal", "a": 1e30}  # gain √(2/(1+a²)): std ≈ 8.8e-32
    scheme = {"name": "huge a", "rules": [{"layers": "Linear", "weight": weight}]}
    params = run_cli(tmp_path, mlp(2), scheme)["params"]
    weights = params[params["param"].str.endswith("weight")]
    assert len(weights) == 2
    assert (weights["std"] > 0).all()
    # 65536 draws: the sample std is within ~0.3% (1/√(2n)) of the expected std
    assert np.allclose(weights["std"], weights["expected_std"], rtol=0.01, atol=0)
