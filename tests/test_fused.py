"""The fused reductions (initlab.fused) against the torch path they stand in for, and against
numpy float64: the same counts, min/max and bins exactly, moments to float32's rounding, and
whole experiments equal with the fused path on and off."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import torch

import initlab
from initlab import fused, stats
from initlab.units import dead_fraction

pytestmark = pytest.mark.skipif(fused.numba is None, reason="numba is not installed")

SHAPES = {"rows": ((64, 48), 1), "conv": ((8, 6, 7, 5), 1), "tokens": ((4, 9, 24), 2)}
KINDS = [
    "normal",
    "relu",
    "tanh",
    "constant",
    "zeros",
    "alternating",
    "large",
    "tiny",
    "subnormal",
    "dead units",
    "inf",
    "nan",
]
REL = 1e-6  # float32 rounding of the torch path's sums (the fused float64 sums are exacter)


def make(kind: str, shape: tuple[int, ...], dim: int, seed: int = 0) -> torch.Tensor:
    """`kind` data of `shape`, drawn in float64 and rounded once to float32."""
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = {
        "normal": z,
        "relu": z.clamp(min=0),
        "tanh": torch.tanh(2 * z),
        "constant": torch.full(shape, -0.3, dtype=torch.float64),
        "zeros": torch.zeros(shape, dtype=torch.float64),
        "alternating": torch.where(z > 0, 1.0, -1.0) * 0.89,
        "large": z * 1e30,
        "tiny": z * 1e-30,
        "subnormal": z * 1e-41,
        "dead units": z.clamp(min=0).index_fill(dim, torch.tensor([0, 2]), 0.0),
        "inf": z.flatten().index_fill(0, torch.tensor([3]), math.inf).reshape(shape),
        "nan": z.flatten().index_fill(0, torch.tensor([5]), math.nan).reshape(shape),
    }[kind]
    return x.to(torch.float32).contiguous()


def torch_path(x: torch.Tensor, bounds: tuple | None, dim: int | None) -> tuple:
    with fused.disabled():
        summary, dead = stats.summarize_units(x, bounds, dim)
        return summary, dead, stats.histogram(x, stats.BINS, summary)


def close(a: float, b: float, scale: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= REL * scale


@pytest.mark.parametrize("layout", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_fused_summary_equals_the_torch_path(kind: str, layout: str) -> None:
    shape, dim = SHAPES[layout]
    x = make(kind, shape, dim)
    bounds = (-1.0, 1.0) if kind == "tanh" else None
    summary, dead = stats.summarize_units(x, bounds, dim)
    plain, plain_dead, _ = torch_path(x, bounds, dim)
    exact = (summary.frac_zero, summary.nonfinite, summary.low, summary.high, dead)
    plain_exact = (plain.frac_zero, plain.nonfinite, plain.low, plain.high, plain_dead)
    assert np.array_equal(exact, plain_exact, equal_nan=True)
    assert np.array_equal(summary.frac_saturated, plain.frac_saturated, equal_nan=True)
    spread = abs(plain.mean) + plain.std
    assert close(summary.mean, plain.mean, spread)
    assert close(summary.std, plain.std, plain.std)
    assert close(summary.var, plain.var, plain.var)


@pytest.mark.parametrize("layout", SHAPES)
@pytest.mark.parametrize("kind", ["normal", "relu", "large", "tiny", "subnormal", "dead units"])
def test_fused_moments_match_numpy_float64(kind: str, layout: str) -> None:
    shape, dim = SHAPES[layout]
    x = make(kind, shape, dim)
    summary, dead = stats.summarize_units(x, None, dim)
    a = x.numpy().astype(np.float64)
    mean, var = a.mean(), ((a - a.mean()) ** 2).mean()
    assert abs(summary.mean - mean) <= 1e-12 * (abs(mean) + math.sqrt(var))
    assert summary.var == pytest.approx(var, rel=1e-12)
    dead_units = (np.moveaxis(a, dim, 0).reshape(shape[dim], -1) == 0).all(axis=1)
    assert dead == (dead_units.mean() if (a == 0).any() else 0.0)
    assert dead == dead_fraction(x, dim) or not (a == 0).any()


@pytest.mark.parametrize("kind", KINDS[:9])
@pytest.mark.parametrize("window", [(0.0, 1.0), (-3.0, 2.5), (1e-38, 2e-38), (-1e36, 1e36)])
def test_fused_bins_are_the_torch_paths_bins(kind: str, window: tuple[float, float]) -> None:
    """Same (lo, hi), same counts: outliers in the edge bins; float32 and float64 indices."""
    x = make(kind, (4096,), 0) * 1.5
    lo, hi = window
    index = stats._index_parameters(x.dtype, lo, hi, stats.BINS)
    counts = fused.bin_counts(x, stats.BINS, index)
    expected = sum(
        torch.bincount(i, minlength=stats.BINS) for i in stats._bin_indices(x, index, 64)
    )
    assert counts.tolist() == expected.tolist()
    assert counts.sum() == x.numel()


def test_both_index_precisions_are_covered() -> None:
    assert stats._index_parameters(torch.float32, 0.0, 1.0, 64)[0] == "float32"
    index = stats._index_parameters(torch.float32, 1e-38, 2e-38, 64)
    assert index[0] == "float64"
    assert math.prod(index[4]) == math.ldexp(1.0, -index[1])  # the factors are 2**-k


@pytest.mark.parametrize("kind", ["normal", "relu", "tanh", "alternating", "large", "tiny"])
def test_fused_histogram_equals_the_torch_path(kind: str) -> None:
    x = make(kind, (256, 512), 1)
    summary = stats.summarize(x)
    with fused.disabled():
        plain = stats.histogram(x, stats.BINS, summary)
    assert stats.histogram(x, stats.BINS, summary) == plain


def test_ineligible_tensors_take_the_torch_path() -> None:
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    assert fused.reduce(x, None, 1) is not None
    for other in (x.t(), x.double(), x.half(), x[:0]):
        assert fused.reduce(other, None, 1) is None
        assert fused.bin_counts(other, 64, ("float32", 1.0, 0.0)) is None


def test_one_element() -> None:
    x = torch.tensor([[2.5]])
    summary, dead = stats.summarize_units(x, None, 1)
    assert (summary.mean, summary.var, summary.frac_zero, dead) == (2.5, 0.0, 0.0, 0.0)
    assert stats.summarize_units(torch.zeros(1, 1), None, 1)[1] == 1.0


def test_disabled_is_per_thread() -> None:
    seen = []
    with fused.disabled():
        assert not fused.enabled()
        worker = threading.Thread(target=lambda: seen.append(fused.enabled()))
        worker.start()
        worker.join()
    assert seen == [True] and fused.enabled()


def test_the_environment_variable_turns_it_off_for_the_process() -> None:
    code = "from initlab import fused; print(fused.enabled())"
    for value, expected in (("0", "False"), ("1", "True")):
        env = {**os.environ, fused.ENV: value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == expected, out.stderr


EXPERIMENTS = {
    "mlp": {"name": "mlp", "depth": 6, "width": 64, "activation": "tanh"},
    "lenet": {"name": "lenet"},
    "transformer": {"name": "transformer"},
}


@pytest.mark.parametrize("model", EXPERIMENTS)
def test_runs_equal_with_the_fused_path_on_and_off(model: str) -> None:
    exp = initlab.Experiment.from_dict(
        {
            "model": EXPERIMENTS[model],
            "input": {"batch_size": 16},
            "schemes": [{"name": "default", "preset": "pytorch_default"}],
        }
    )
    on = initlab.run(exp)
    with fused.disabled():
        off = initlab.run(exp)
    means = {"layers": ("act_mean", "act_std"), "params": ("mean", "std")}
    for name, (mean, std) in means.items():
        a, b = getattr(on, name), getattr(off, name)
        # A mean near zero is held to float32 rounding of its spread, not of itself.
        assert close_to(a[mean], b[mean], b[mean].abs() + b[std])
        rest = [c for c in a.columns if c != mean]
        pd.testing.assert_frame_equal(a[rest], b[rest], check_exact=False, rtol=1e-6, atol=0)
    a, b = on.histograms, off.histograms
    assert a["count"].tolist() == b["count"].tolist()
    width = (b["bin_right"] - b["bin_left"]) * exp.bins  # each edge to rounding of its range
    assert close_to(a["bin_left"], b["bin_left"], width)
    assert close_to(a["bin_right"], b["bin_right"], width)
    pd.testing.assert_frame_equal(a[["kind", "name"]], b[["kind", "name"]])


def close_to(a: pd.Series, b: pd.Series, scale: pd.Series) -> bool:
    both_nan = a.isna() & b.isna()
    return bool(((a - b).abs() <= REL * scale.abs() + 0.0).where(~both_nan, True).all())


def lane_order_sums(a: np.ndarray, width: int) -> tuple[float, float]:
    """The kernels' summation order, recomputed in numpy float64: each lane (column) summed
    row by row, then the lanes in order (np.add.accumulate adds strictly left to right)."""
    d = a.astype(np.float64).reshape(-1, width)
    lanes, squares = np.add.accumulate(d, axis=0)[-1], np.add.accumulate(d * d, axis=0)[-1]
    return float(np.add.accumulate(lanes)[-1]), float(np.add.accumulate(squares)[-1])


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 8, 9, 13])
@pytest.mark.parametrize("width", [3, 8, 17])
def test_rows_kernel_sums_in_lane_order_for_any_row_count(rows: int, width: int) -> None:
    """Rows taken four at a time and the rows left over add in the same order, bit for bit;
    counts, min and max are exact."""
    g = torch.Generator().manual_seed(rows * 100 + width)
    x = torch.randn(rows, width, generator=g).clamp(min=0) * 0.7
    r = fused.reduce(x, (0.0, 1.0), 1)
    a = x.numpy()
    assert (r.total, r.squares) == lane_order_sums(a, width)
    assert (r.low, r.high) == (float(a.min()), float(a.max()))
    assert r.zeros == int((a == 0).sum())
    assert r.saturated == int(((a <= np.float32(0.01)) | (a >= np.float32(0.99))).sum())
    assert r.dead_units == int((a == 0).all(axis=0).sum())


@pytest.mark.parametrize("inner", [1, 5, 8, 9, 16, 31, 40, 100])
def test_blocks_kernel_sums_the_whole_tensor_in_lanes(inner: int) -> None:
    """outer × units × inner, whatever `inner`: the flat tensor's whole chunks of LANES go to
    lanes 0, 1, ... in order, its rest to lanes 0, 1, ...; dead units exact."""
    x = torch.randn(3, 4, inner, generator=torch.Generator().manual_seed(inner)).clamp(min=0)
    x[:, 1:3] = 0.0  # units 1 and 2 dead
    x[:, 3, :] = 0.0
    x[2, 3, -1] = 0.5  # unit 3 alive only in the last element of its last block
    r = fused.reduce(x, None, 1)
    flat, lanes = x.numpy().astype(np.float64).reshape(-1), fused.LANES
    s, q = np.zeros(lanes), np.zeros(lanes)
    for i, v in enumerate(flat):
        s[i % lanes] += v
        q[i % lanes] += v * v
    assert (r.total, r.squares) == (
        float(np.add.accumulate(s)[-1]),
        float(np.add.accumulate(q)[-1]),
    )
    a = x.numpy()
    assert r.dead_units == int((a == 0).all(axis=(0, 2)).sum()) == 2
    assert r.zeros == int((a == 0).sum())


def test_a_nan_makes_its_unit_alive() -> None:
    """The dead-unit scan stops at the first nonzero, and NaN is not zero (as `x == 0`)."""
    x = torch.zeros(2, 3, 5)
    x[1, 2, 4] = float("nan")
    assert fused.reduce(x, None, 1).dead_units == 2


@pytest.mark.parametrize("size", [1, 3, 4, 2047, 2048, 2049, 10_001])
def test_bins_kernel_counts_every_element_once_across_blocks(size: int) -> None:
    """The index blocks of 2048 and the 4 sub-histograms lose or double no element."""
    x = torch.randn(size, generator=torch.Generator().manual_seed(size))
    index = stats._index_parameters(x.dtype, -1.0, 1.0, 7)
    expected = sum(torch.bincount(i, minlength=7) for i in stats._bin_indices(x, index, 7))
    assert fused.bin_counts(x, 7, index).tolist() == expected.tolist()


def test_bins_beyond_the_kernels_indices_take_the_torch_path() -> None:
    x = torch.ones(4)
    assert fused.bin_counts(x, fused.INDEX_LIMIT + 1, ("float32", 1.0, 0.0)) is None
    assert fused.bin_counts(x, 64, ("float32", 1.0, 0.0)).tolist()[1] == 4


def same(a: tuple, b: tuple) -> bool:
    """Equal element by element, NaN equal to NaN."""
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def steps(x: torch.Tensor, bounds: tuple | None, dim: int | None, bins: int) -> tuple:
    """`summary_and_counts` step by step on the same fused path: the reductions, the summary,
    then `histogram` on that summary (what the one compiled call replaces)."""
    summary, dead = stats.summarize_units(x, bounds, dim)
    edges, counts = stats.histogram(x, bins, summary)
    return summary, dead, edges, counts


@pytest.mark.parametrize("kind", [*KINDS, "cancelling"])
@pytest.mark.parametrize("layout", [*SHAPES, "flat"])
@pytest.mark.parametrize("bins", [1, 7, 64])
def test_one_call_equals_the_steps_bit_for_bit(kind: str, layout: str, bins: int) -> None:
    """The one compiled call gives the summary, dead fraction, span and counts of the separate
    steps exactly, including where it hands back early (inf/NaN, cancellation)."""
    shape, dim = SHAPES.get(layout, ((301,), None))
    x = (
        make("normal", shape, dim or 0) + 1e4
        if kind == "cancelling"
        else make(kind, shape, dim or 0)
    )
    bounds = (-1.0, 1.0) if kind == "tanh" else None
    summary, dead, span, counts = stats.summary_and_counts(x, bounds, dim, bins)
    want = steps(x, bounds, dim, bins)
    assert same(tuple(summary), tuple(want[0]))
    assert same((dead,), (want[1],))
    assert stats.edges(span, bins).tolist() == want[2]
    assert np.asarray(counts, np.float64).tolist() == want[3]


def reference_span(mean: float, std: float, low: float, high: float, bins: int) -> tuple:
    """The histogram range in plain Python (math.ulp, builtin max/min): the compiled oracle."""
    big = sys.float_info.max
    lo, hi = low, high
    if math.isfinite(std):
        lo, hi = max(lo, mean - 6.0 * std), min(hi, mean + 6.0 * std)
    if not hi > lo:
        centre = lo if math.isfinite(lo) else 0.0
        half = max(abs(centre), 1.0) * 0.5
        lo, hi = centre - half, centre + half
    lo, hi = max(lo, -big), min(hi, big)
    half = bins * 4 * math.ulp(max(abs(lo), abs(hi)))
    if hi / 2 - lo / 2 >= half:
        return lo, hi
    centre = lo / 2 + hi / 2
    return max(centre - half, -big), min(centre + half, big)


def test_compiled_scalar_arithmetic_is_pythons() -> None:
    """ulp, the histogram span and the float32 index rule, compiled, against plain Python on
    ordinary, constant, huge, tiny, subnormal and infinite inputs."""
    rng = np.random.default_rng(0)
    values = [0.0, 1.0, -1.0, 5e-324, 2.2e-308, 1.7e308, -1.7e308, 3e-320, 0.1, 1e300]
    values += (rng.normal(size=200) * 10.0 ** rng.integers(-300, 300, size=200)).tolist()
    for v in values:
        assert fused.ulp(v) == math.ulp(v)
    cases = [(0.0, 1.0, -3.0, 10.0), (2.0, 0.0, 2.0, 2.0), (0.0, 0.0, 0.0, 0.0)]
    cases += [
        (1e300, 1e299, -1.7e308, 1.7e308),
        (1.0, math.inf, 0.0, 3.0),
        (1e-320, 0.0, 1e-320, 1e-320),
    ]
    cases += [(1.0, 1e-17, 1.0, 1.0 + 2.2e-16), (-5.0, 2.0, -math.inf, math.inf)]
    for mean, std, low, high in cases:
        for bins in (1, 7, 64, 1000):
            assert fused.histogram_span(mean, std, low, high, bins) == reference_span(
                mean, std, low, high, bins
            )
    for lo, hi in [(-1.0, 1.0), (1e-38, 2e-38), (0.0, 1e30), (1e4, 1e4 + 1e-3), (-3e38, 3e38)]:
        scale = 64 / (hi - lo)
        ok = 2.0**-100 <= scale <= 2.0**100 and max(abs(lo), abs(hi)) * scale <= 2.0**16
        got = fused.float32_index(lo, hi, 64)
        assert got == (scale, lo * scale) if ok else all(math.isnan(g) for g in got)


@pytest.mark.parametrize("layout", [*SHAPES, "flat"])
def test_mean_dominated_data_stays_fused_and_exact(layout: str, monkeypatch) -> None:
    """Where E[x²] − mean² cancels (mean 1e4, std 0.5: var / E[x²] ≈ 2.5e-9), the fused path's
    second, shifted pass gives the float64 two-pass moments of numpy, without the torch path
    (its summary is made to fail here)."""
    shape, dim = SHAPES.get(layout, ((10_007,), None))
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.5 + 1e4).float()
    monkeypatch.setattr(stats, "_torch_summary", lambda *a: pytest.fail("took the torch path"))
    a = x.numpy().astype(np.float64)
    mean = a.mean()
    var = ((a - mean) ** 2).mean()
    for summary in (
        stats.summarize_units(x, None, dim)[0],
        stats.summary_and_counts(x, None, dim)[0],
    ):
        assert abs(summary.mean - mean) <= 1e-13 * abs(mean)
        assert abs(summary.var - var) <= 1e-9 * var  # E[x²] − mean² loses ~9 digits here
