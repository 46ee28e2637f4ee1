"""stats.summarize and stats.histogram against numpy, on ordinary and awkward tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from initlab import stats
from initlab.stats import BINS, histogram, summarize


def rand(*shape: int, seed: int = 0, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale + shift


@pytest.mark.parametrize(
    ("shape", "scale", "shift"),
    [((1000,), 1.0, 0.0), ((32, 17, 5), 3.0, 2.5), ((64, 64), 1e-3, -1e-2), ((7,), 50.0, 0.0)],
)
def test_summarize_matches_numpy_float64(shape, scale, shift):
    x = rand(*shape, scale=scale, shift=shift)
    x[0] = 0.0  # at least one exact zero
    s = summarize(x)
    a = x.numpy().astype(np.float64)
    std = a.std(ddof=0)
    assert s.mean == pytest.approx(a.mean(), rel=1e-5, abs=1e-6 * std)
    assert s.var == pytest.approx(a.var(ddof=0), rel=1e-5)
    assert s.std == pytest.approx(std, rel=1e-5)
    assert s.frac_zero == pytest.approx(np.mean(a == 0.0), abs=1e-12)
    assert s.frac_zero > 0
    assert math.isnan(s.frac_saturated)
    assert s.nonfinite == 0


def test_summarize_uses_population_variance_not_sample():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    s = summarize(x)
    assert s.var == pytest.approx(1.25, rel=1e-7)  # ddof=0; ddof=1 would give 1.6667
    assert s.std == pytest.approx(math.sqrt(1.25), rel=1e-7)
    assert s.mean == pytest.approx(2.5, rel=1e-7)


def test_summarize_saturation_with_bounds():
    x = torch.tensor([-1.0, -0.985, -0.975, 0.0, 0.5, 0.975, 0.985, 1.0])
    s = summarize(x, (-1.0, 1.0))  # within 1% of the range (0.02) of a bound
    assert s.frac_saturated == pytest.approx(4 / 8)
    s01 = summarize(torch.tensor([0.0, 0.005, 0.02, 0.5, 0.995, 1.0]), (0.0, 1.0))
    assert s01.frac_saturated == pytest.approx(4 / 6)


def test_summarize_constant_tensor():
    s = summarize(torch.full((10, 10), 3.5))
    assert s.mean == pytest.approx(3.5)
    assert s.var == 0.0
    assert s.std == 0.0
    assert s.frac_zero == 0.0
    assert s.nonfinite == 0
    z = summarize(torch.zeros(5))
    assert z.frac_zero == 1.0 and z.var == 0.0


def test_summarize_empty_tensor():
    s = summarize(torch.empty(0, 4))
    assert math.isnan(s.mean) and math.isnan(s.var) and math.isnan(s.std)
    assert math.isnan(s.frac_zero) and math.isnan(s.frac_saturated)
    assert s.nonfinite == 0


def test_summarize_counts_nan_and_inf():
    x = torch.tensor([0.0, 1.0, float("nan"), float("inf"), -float("inf"), 2.0])
    s = summarize(x)
    assert s.nonfinite == 3
    assert s.frac_zero == pytest.approx(1 / 6)
    assert math.isnan(s.mean) or math.isinf(s.mean)  # not silently finite


def test_summarize_integer_and_float64_inputs():
    ints = torch.arange(10)
    s = summarize(ints)
    assert s.mean == pytest.approx(4.5)
    assert s.var == pytest.approx(np.var(np.arange(10)))
    d = rand(500).double() * 2
    assert summarize(d).var == pytest.approx(float(d.var(unbiased=False)), rel=1e-5)


def test_summarize_wide_integers_exactly():
    x = torch.tensor([2**40, 2**40 + 1, 2**40 + 2])  # int64 beyond float32's 2**24
    s = summarize(x)
    assert s.mean == 2**40 + 1
    assert s.var == pytest.approx(2 / 3, rel=1e-12)


@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_summarize_reduces_float64_in_float64(scale):
    d = rand(4000, seed=4).double() * scale  # as float32: var 0 or inf
    a = d.numpy()
    s = summarize(d)
    assert s.var == pytest.approx(a.var(), rel=1e-10)
    assert s.std == pytest.approx(a.std(), rel=1e-10)
    assert s.mean == pytest.approx(a.mean(), rel=1e-10, abs=1e-10 * a.std())


@pytest.mark.parametrize(("shift", "scale"), [(1e4, 3e-3), (1.0, 1e-6), (10.0, 1.0)])
def test_summarize_large_mean_small_spread(shift, scale):
    # E[x²] − mean² would cancel 4 to 15 digits here: the exact fallback must take over
    x = rand(4096, seed=5, scale=scale, shift=shift)
    a = x.numpy().astype(np.float64)
    assert summarize(x).var == pytest.approx(a.var(), rel=1e-9)


def test_summarize_long_tensor_keeps_float32_precision():
    # one float32 dot product over 4M elements is off by ~6e-5; blocked, ~1e-7
    x = rand(1 << 22, seed=6)
    for t in (x, x.relu()):
        a = t.numpy().astype(np.float64)
        assert summarize(t).var == pytest.approx(a.var(), rel=2e-6)
        assert summarize(t).frac_zero == np.mean(a == 0.0)


def np_histogram(x: torch.Tensor, edges: list[float]) -> np.ndarray:
    a = x.numpy().astype(np.float64)
    a = a[np.isfinite(a)]
    return np.histogram(np.clip(a, edges[0], edges[-1]), bins=np.asarray(edges))[0]


@pytest.mark.parametrize("bins", [4, 16, BINS])
def test_histogram_matches_numpy_and_covers_the_range(bins):
    x = rand(5000, seed=3, scale=2.0, shift=1.0)
    edges, counts = histogram(x, bins)
    assert len(edges) == bins + 1 and len(counts) == bins
    a = x.numpy().astype(np.float64)
    # range: [min, max] cut to mean ± 6 std; normal data never reaches ±6 std here
    assert edges[0] == pytest.approx(a.min(), rel=1e-6)
    assert edges[-1] == pytest.approx(a.max(), rel=1e-6)
    assert np.allclose(np.diff(edges), (edges[-1] - edges[0]) / bins, rtol=1e-6)
    assert sum(counts) == x.numel()
    expected = np_histogram(x, edges)
    # histc and numpy can disagree about a value within rounding of an edge
    assert np.abs(np.asarray(counts) - expected).max() <= 2


def test_histogram_outliers_go_to_edge_bins():
    x = rand(2000, seed=1)
    x[0], x[1] = 1e4, -1e4
    edges, counts = histogram(x, 32)
    a = x.numpy().astype(np.float64)
    mean, std = a.mean(), a.std()
    assert edges[-1] == pytest.approx(mean + 6 * std, rel=1e-5)
    assert edges[0] == pytest.approx(mean - 6 * std, rel=1e-5)
    assert sum(counts) == 2000
    assert counts[0] >= 1 and counts[-1] >= 1


def test_histogram_constant_tensor_gets_a_unit_window():
    edges, counts = histogram(torch.full((100,), 5.0), 8)
    assert edges[0] < 5.0 < edges[-1]
    assert edges[-1] - edges[0] == pytest.approx(5.0)  # max(|5|, 1) wide
    assert sum(counts) == 100
    edges0, counts0 = histogram(torch.zeros(10), 8)
    assert edges0[0] == pytest.approx(-0.5) and edges0[-1] == pytest.approx(0.5)
    assert sum(counts0) == 10


def test_histogram_empty_and_all_nonfinite():
    for x in (torch.empty(0), torch.tensor([float("nan"), float("inf")])):
        edges, counts = histogram(x, 10)
        assert len(edges) == 11 and len(counts) == 10
        assert sum(counts) == 0


def test_histogram_ignores_nonfinite_values():
    x = rand(1000, seed=2)
    x[:5] = float("nan")
    x[5:8] = float("inf")
    x[8] = -float("inf")
    edges, counts = histogram(x, 16)
    assert sum(counts) == 1000 - 9
    assert all(math.isfinite(e) for e in edges)
    assert np.abs(np.asarray(counts) - np_histogram(x, edges)).max() <= 2


@pytest.mark.parametrize("bad", [0, 1, 7])
def test_histogram_without_a_summary_is_the_histogram_of_the_finite_values(bad: int) -> None:
    """Without a summary, the histogram is that of the finite values with their own summary
    (whether or not any value is inf or NaN), its counts Python floats that sum to them."""
    x = rand(4096, seed=bad)
    x[:bad] = float("nan")
    x[bad : 2 * bad] = -float("inf")
    finite = x[torch.isfinite(x)]
    edges, counts = histogram(x, 32)
    assert (edges, counts) == histogram(finite, 32, summarize(finite))
    assert all(type(c) is float for c in counts) and sum(counts) == finite.numel()
    assert np.abs(np.asarray(counts) - np_histogram(finite, edges)).max() <= 2  # edge rounding


def test_edge_rows_are_each_spans_edges() -> None:
    """The vectorized edges equal the one-by-one ones, for common, empty and extreme spans."""
    spans = [(-1.0, 2.5), None, (-1.5e308, 1.7e308), (0.0, 2e-322), (3.0, 3.0 + 1e-12), (-7, 7)]
    rows = stats.edge_rows(spans, 9)
    assert rows.shape == (6, 10)
    for row, span in zip(rows, spans, strict=True):
        assert np.array_equal(row, stats.edges(span, 9))


@pytest.mark.parametrize("seed", range(5))
def test_edges_are_linspace_to_float64_rounding(seed: int) -> None:
    """Exact ends, strictly increasing, and within a few ulps of torch.linspace's values."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        lo = float(rng.normal() * 10.0 ** rng.integers(-6, 6))
        hi = lo + float(abs(rng.normal()) * 10.0 ** rng.integers(-6, 6))
        bins = int(rng.integers(1, 120))
        got = stats.edges((lo, hi), bins)
        want = torch.linspace(lo, hi, bins + 1, dtype=torch.float64).numpy()
        assert got[0] == lo and got[-1] == hi and bool(np.all(np.diff(got) > 0))
        assert np.max(np.abs(got - want)) <= 4 * np.spacing(max(abs(lo), abs(hi)))
