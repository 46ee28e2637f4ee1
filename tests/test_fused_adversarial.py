"""The fused path (`stats.summary_and_counts` with the compiled kernels) against the torch path
(`fused.disabled()`) on hostile input: shapes around the kernels' 32 lanes, units alive in a
single element, negative zeros, values exactly on the saturation limits, float32's extremes,
inf and NaN, huge bin counts, views with storage offsets, tensors that require grad; and the
histogram edges (`stats.edge_rows`) for every kind of span.

Oracles: numpy float64 for the moments (REL of |mean| + std for the mean, REL of the variance
for the variance, the tolerance of tests/test_fused.py); numpy float32 comparisons for the
saturated count (torch compares a float32 tensor with a float32 limit); the definition of a dead
unit recomputed in numpy. Counts, zeros, saturated, dead fractions, min, max and histogram
counts must agree exactly between the two paths. The last tests pin what once disagreed: a
1-D or negative unit axis, zero bins, and moments of cancelling data (both paths now take
E[x²] − mean² under one rule, so their histograms agree).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from initlab import fused, stats

pytestmark = pytest.mark.skipif(fused.numba is None, reason="numba is not installed")

REL = 1e-6
F32 = np.finfo(np.float32)
BIG = sys.float_info.max

Result = tuple[stats.Summary, float, stats.Span, np.ndarray]


def both_paths(
    x: torch.Tensor, bounds: tuple[float, float] | None, dim: int | None, bins: int
) -> tuple[Result, Result]:
    """`summary_and_counts` on the fused path and on the torch path, counts as float64."""
    fast = stats.summary_and_counts(x, bounds, dim, bins)
    with fused.disabled():
        plain = stats.summary_and_counts(x, bounds, dim, bins)
    as_floats = [(*r[:3], np.asarray(r[3], np.float64)) for r in (fast, plain)]
    return as_floats[0], as_floats[1]


def equal(a: float, b: float) -> bool:
    """Equal, NaN equal to NaN (0.0 equal to -0.0)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def saturation_oracle(a: np.ndarray, bounds: tuple[float, float] | None) -> float:
    """The saturated fraction by float32 comparisons with the float32 limits."""
    if bounds is None:
        return math.nan
    margin = 0.01 * (bounds[1] - bounds[0])
    lo, hi = np.float32(bounds[0] + margin), np.float32(bounds[1] - margin)
    return float(((a <= lo) | (a >= hi)).sum()) / a.size


def dead_oracle(a: np.ndarray, dim: int | None) -> float:
    """Units along `dim` zero everywhere, as a fraction; 0.0 when nothing is zero, NaN without
    units (what `summarize_units` promises)."""
    if not (a == 0).any():
        return 0.0
    if dim is None:
        return math.nan
    units = np.moveaxis(a, dim, 0).reshape(a.shape[dim], -1)
    return float((units == 0).all(axis=1).mean())


def assert_agree(x: torch.Tensor, bounds: tuple | None, dim: int | None, bins: int) -> None:
    """Both paths: exact counts, min, max, dead fraction and bins; moments to REL of numpy."""
    (s, dead, span, counts), (p, p_dead, p_span, p_counts) = both_paths(x, bounds, dim, bins)
    for field in ("frac_zero", "frac_saturated", "nonfinite", "low", "high"):
        assert equal(getattr(s, field), getattr(p, field)), field
    assert equal(dead, p_dead)
    assert counts.tolist() == p_counts.tolist()
    assert (span is None) == (p_span is None)
    a = x.detach().numpy().astype(np.float64)
    finite = a[np.isfinite(a)]
    assert counts.sum() == finite.size
    if finite.size < a.size:  # inf/NaN: the torch path's own moments on both paths
        assert equal(s.mean, p.mean) and equal(s.var, p.var)
        return
    a32 = x.detach().numpy()
    assert s.frac_zero == float((a32 == 0).sum()) / a.size
    assert equal(s.frac_saturated, saturation_oracle(a32, bounds))
    assert (s.low, s.high) == (float(a.min()), float(a.max()))
    assert equal(dead, dead_oracle(a32, dim))
    mean, var = a.mean(), ((a - a.mean()) ** 2).mean()
    for summary in (s, p):
        assert abs(summary.mean - mean) <= REL * (abs(mean) + math.sqrt(var))
        assert abs(summary.var - var) <= REL * var


def drawn(shape: tuple[int, ...], seed: int, kind: str = "relu") -> torch.Tensor:
    """float32 data of `shape`: a ReLU output or a normal draw, with a fixed seed."""
    z = np.random.default_rng(seed).normal(size=shape)
    a = np.maximum(z, 0.0) if kind == "relu" else z
    return torch.from_numpy(a.astype(np.float32))


# ---------------------------------------------------------------- layouts around the lanes

INNER = [1, 2, 31, 32, 33, 63, 64, 65]


@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("units", [1, 3, 32, 33])
def test_units_on_the_middle_axis_around_the_lanes(units: int, inner: int) -> None:
    """(outer, units, inner) with dim 1: flat chunks of 32 lanes, a trailing partial chunk, and
    the dead-unit scan; unit 0 dead, the last unit alive only in its very last element."""
    x = drawn((3, units, inner), units * 100 + inner)
    x[:, 0] = 0.0
    if units > 1:
        x[:, -1] = 0.0
        x[-1, -1, -1] = 0.25
    assert_agree(x, (0.0, 1.0), 1, 64)


@pytest.mark.parametrize("units", [2, 31, 32, 33, 65])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 9])
def test_units_on_the_last_axis(rows: int, units: int) -> None:
    """dim is the last axis (per-unit lanes): rows taken 4 at a time and the rest; unit 1 alive
    only in the last row, unit 0 dead."""
    x = drawn((rows, units), rows * 1000 + units)
    x[:, :2] = 0.0
    x[-1, 1] = 1.5
    assert_agree(x, None, 1, 64)


@pytest.mark.parametrize("last", [1, 31, 32, 33, 64, 96])
@pytest.mark.parametrize("dim", [None, 0])
def test_no_units_or_units_on_the_first_axis(last: int, dim: int | None) -> None:
    """dim None reads rows of the last axis only when it is a multiple of 32, flat otherwise;
    dim 0 (the first axis) reads blocks of a whole row: unit 0 alive only in its first
    element, unit 2 only in its last."""
    x = drawn((5, 3, last), last, "normal")
    x[:3] = 0.0
    x[0, 0, 0] = -2.0
    x[2, -1, -1] = 3.0
    x[3, 1, :] = -0.0
    assert_agree(x, (-1.0, 1.0), dim, 64)


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 63, 64, 65, 127, 129, 4097])
def test_flat_sizes_around_multiples_of_the_lanes(n: int) -> None:
    assert_agree(drawn((n,), n, "normal"), (-1.0, 1.0), None, 64)


def test_zero_dimensional_and_one_element_tensors() -> None:
    for value in (0.0, -0.0, 2.5, -F32.max, float(F32.smallest_subnormal)):
        x = torch.tensor(value, dtype=torch.float32)
        assert_agree(x, (0.0, 1.0), None, 7)
        assert_agree(x.reshape(1, 1), None, 1, 7)
        assert_agree(x.reshape(1, 1, 1), None, 1, 1)


def test_empty_tensors_take_the_torch_path_and_agree() -> None:
    for shape, dim in (((0,), None), ((4, 0), 1), ((0, 3), 1), ((2, 0, 5), 1)):
        x = torch.empty(shape)
        (s, dead, span, counts), (p, p_dead, p_span, p_counts) = both_paths(x, None, dim, 8)
        assert tuple(s) == pytest.approx(tuple(p), nan_ok=True)
        assert equal(dead, p_dead) and span == p_span
        assert counts.tolist() == p_counts.tolist() == [0.0] * 8


def test_dead_units_with_one_live_element_anywhere() -> None:
    """Every position of a (2, 4, 37) tensor in turn is the only nonzero: exactly the unit that
    holds it is alive (the scan must reach any block and any offset in it)."""
    for flat in range(2 * 4 * 37):
        x = torch.zeros(2 * 4 * 37)
        x[flat] = 1.0
        x = x.reshape(2, 4, 37)
        (_, dead, _, _), (_, p_dead, _, _) = both_paths(x, None, 1, 4)
        assert dead == p_dead == 0.75


# ---------------------------------------------------------------- values


def test_negative_zero_is_zero_on_both_paths() -> None:
    x = torch.full((4, 3, 33), -0.0)
    x[:, 1, 5] = 0.5
    (s, dead, _, _), (p, p_dead, _, _) = both_paths(x, None, 1, 16)
    assert s.frac_zero == p.frac_zero == 1 - 4 / (4 * 3 * 33)
    assert dead == p_dead == 2 / 3
    assert_agree(x, None, 1, 16)
    assert_agree(torch.full((40,), -0.0), (0.0, 1.0), None, 3)


LIMIT_BOUNDS = [(-1.0, 1.0), (0.0, 1.0), (0.0, 6.0), (0.0, 0.3), (0.1, 0.7), (-3.0, 2.0)]


@pytest.mark.parametrize("bounds", LIMIT_BOUNDS)
def test_values_on_and_next_to_the_saturation_limits(bounds: tuple[float, float]) -> None:
    """Each limit as float32, one float32 step either side, and the bounds themselves; (0, 0.3)
    has a limit that rounds down in float32, where a float64 comparison would differ."""
    margin = 0.01 * (bounds[1] - bounds[0])
    values = []
    for limit in (bounds[0] + margin, bounds[1] - margin):
        f = np.float32(limit)
        values += [f, np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))]
    values += [np.float32(bounds[0]), np.float32(bounds[1]), np.float32(0.0)]
    for n in (len(values), 40 * len(values)):  # a partial chunk of lanes and whole ones
        x = torch.from_numpy(np.resize(np.array(values, np.float32), n))
        assert_agree(x, bounds, None, 64)


def test_bounds_that_are_reversed_infinite_or_beyond_float32() -> None:
    x = drawn((6, 35), 7, "normal") * 3.0
    x[0, :3] = torch.tensor([F32.max, -F32.max, 0.0])
    for bounds in [(1.0, -1.0), (0.0, 0.0), (0.0, math.inf), (-math.inf, math.inf), (-1e39, 1e39)]:
        with np.errstate(over="ignore"):  # 1e39 rounds to inf as a float32 limit: intended
            assert_agree(x, bounds, 1, 64)


@pytest.mark.parametrize(
    "values",
    [
        [F32.max, -F32.max, 0.0, 1.0],
        [F32.max] * 5,
        [float(F32.smallest_subnormal), -float(F32.smallest_subnormal), 0.0],
        [float(F32.smallest_subnormal)] * 70,
        [float(F32.tiny), 1e-40, -1e-41, 0.0],
        [1e30, -1e30, 1e-30],
        [3.0e38, 3.0e38, -1.0],
    ],
)
def test_float32_extremes(values: list[float]) -> None:
    base = torch.tensor(values, dtype=torch.float32)
    for n in (len(values), 33 * len(values)):
        x = base.repeat(n // len(values))
        assert_agree(x, (-1.0, 1.0), None, 64)
        assert_agree(x.reshape(-1, 1).expand(-1, 2).contiguous(), None, 1, 1000)


@pytest.mark.parametrize(
    "fill",
    ["nan in a dead unit", "all nan", "+inf only", "-inf only", "both infs", "inf and nan"],
)
def test_non_finite_values(fill: str) -> None:
    x = torch.zeros(3, 4, 33)
    x[:, 2:] = drawn((3, 2, 33), 3)
    if fill == "nan in a dead unit":
        x[1, 0, 7] = math.nan  # unit 0 is NaN once: alive (NaN is not zero)
    elif fill == "all nan":
        x.fill_(math.nan)
    elif fill == "+inf only":
        x.fill_(math.inf)
    elif fill == "-inf only":
        x.fill_(-math.inf)
    elif fill == "both infs":
        x[:, 0], x[:, 1] = math.inf, -math.inf
    else:
        x[0, 0, 0], x[2, 3, 32] = math.inf, math.nan
    for bins in (1, 64):
        assert_agree(x, (0.0, 1.0), 1, bins)
        assert_agree(x, None, None, bins)


@pytest.mark.parametrize("bins", [1, 2, 3, 1000, 100_000, 200_000])
def test_huge_and_tiny_bin_counts(bins: int) -> None:
    """1 and 2 bins, and counts past the float32 index limit (float64 indices)."""
    x = drawn((64, 50), bins, "normal")
    assert_agree(x, None, 1, bins)
    x[0, 0] = 40.0  # an outlier: mean ± 6 std inside [min, max]
    assert_agree(x, None, 1, bins)


@pytest.mark.parametrize("shift", [0.5, 3.0, 20.0, 1e3, 1e5])
def test_cancelling_data_moments(shift: float) -> None:
    """Large means (|mean| / std up to 1e5): the moments stay within REL of numpy whichever
    path decides them."""
    assert_agree(drawn((32, 129), int(shift), "normal") + shift, None, 1, 64)


# ---------------------------------------------------------------- tensors


def test_views_with_storage_offsets() -> None:
    """Contiguous views that do not start at their storage's start."""
    base = torch.empty(9, 65).normal_(generator=torch.Generator().manual_seed(3))
    base[1:, 3] = 0.0
    for x, dim in ((base[1:], 1), (base[5:], 0), (base[2], None), (base[1:, None], 2)):
        assert x.is_contiguous() and x.storage_offset() > 0
        assert_agree(x, (-1.0, 1.0), dim, 64)


def test_contiguous_with_odd_strides_on_size_one_dims() -> None:
    """Size-1 dimensions may have any stride and still be contiguous."""
    data = drawn((6, 40), 5)
    x = data.as_strided((6, 1, 40), (40, 7, 1))
    assert x.is_contiguous()
    assert_agree(x, None, 2, 64)
    assert_agree(x, None, 1, 64)


def test_tensors_that_require_grad() -> None:
    leaf = drawn((8, 33), 11).requires_grad_()
    assert_agree(leaf, (0.0, 1.0), 1, 64)
    assert_agree(leaf * 2, None, 0, 64)  # a non-leaf with a grad_fn
    assert_agree(torch.nn.Parameter(drawn((40, 3), 12)), None, 1, 64)


# ---------------------------------------------------------------- edges

GUARD_SPANS = [
    None,
    (0.0, 0.0),
    (1.0, 1.0),
    (2.0, 1.0),
    (-1.0, -3.0),
    (-3.0, -2.0),
    (-BIG, BIG),
    (-BIG, -BIG / 2),
    (0.0, BIG),
    (1e300, 1.7e308),
    (1e-310, 2e-310),
    (0.0, 300 * 5e-324),
    (-1e-300, 1e-300),
    (1e4, 1e4 + 1e-9),
    (-0.5, 0.5),
]


@pytest.mark.parametrize("bins", [1, 2, 7, 64, 1000])
def test_edge_rows_equal_edges_span_by_span(bins: int) -> None:
    """The vectorized rows and the one-span edges agree bit for bit on every span, guard cases
    (lo == hi, lo > hi, no span) and float64's extremes included."""
    with np.errstate(over="ignore", invalid="ignore"):
        rows = stats.edge_rows(GUARD_SPANS, bins)
        singles = [stats.edges(span, bins) for span in GUARD_SPANS]
    assert rows.shape == (len(GUARD_SPANS), bins + 1)
    for row, single in zip(rows, singles, strict=True):
        assert np.array_equal(row, single, equal_nan=True)
    assert stats.edge_rows([], bins).shape == (0, bins + 1)
    assert not rows[0].any() and rows[1].tolist() == [0.0] * (bins + 1)


def span_inputs() -> list[tuple[float, float, float, float]]:
    """(mean, std, low, high) of data that span float64 and float32 at their extremes."""
    magnitudes = [0.0, 5e-324, 1e-310, 2.2e-308, 1.4e-45, 1e-30, 0.3, 1.0, 1e4, 1e16]
    magnitudes += [3.4e38, 1e300, BIG]
    cases = []
    for m, spread in ((m, s) for m in magnitudes for s in (0.0, 1e-16, 1e-8, 1.0)):
        for sign in (1.0, -1.0):
            low, high = sorted((sign * m, sign * m * (1.0 + spread)))
            mean = low / 2 + high / 2
            for std in (0.0, (high / 2 - low / 2), 5e-324, math.inf):
                cases.append((mean, std, low, high))
    cases += [(0.0, 1.0, -BIG, BIG), (0.0, math.inf, -BIG, BIG), (1.0, 0.1, -3.0, 40.0)]
    return cases


@pytest.mark.parametrize("bins", [1, 2, 7, 64, 1000, 100_000])
def test_edges_strictly_increase_for_every_histogram_span(bins: int) -> None:
    """Whatever `histogram_span` returns, its edges are finite, strictly increasing, and end
    exactly at the span's ends."""
    spans = sorted({fused.histogram_span(*case, bins) for case in span_inputs()})
    with np.errstate(over="ignore", invalid="ignore"):
        rows = stats.edge_rows(spans, bins)
    for (lo, hi), row in zip(spans, rows, strict=True):
        # compared, not subtracted: the steps of a span across float64 overflow
        assert np.isfinite(row).all() and (row[1:] > row[:-1]).all(), (lo, hi)
        assert (row[0], row[-1]) == (lo, hi)


def test_edges_are_torch_linspace_to_a_few_ulps() -> None:
    """The scalar formula of torch.linspace, not necessarily its vectorized kernel's rounding:
    every edge within 2 ulps of the span's magnitude of torch.linspace's."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        lo = float(rng.normal() * 10.0 ** rng.integers(-30, 30))
        hi = lo + float(abs(rng.normal()) * 10.0 ** rng.integers(-30, 30))
        bins = int(rng.choice([1, 2, 7, 64, 65, 1000]))
        expected = torch.linspace(lo, hi, bins + 1, dtype=torch.float64).numpy()
        got = stats.edges((lo, hi), bins)
        assert (got[0], got[-1]) == (lo, hi)
        assert np.abs(got - expected).max() <= 2 * math.ulp(max(abs(lo), abs(hi)))


# ---------------------------------------------------------------- once disagreements


def test_one_dimensional_tensor_with_units_on_its_only_axis() -> None:
    x = torch.tensor([0.0, 1.0])
    (_, dead, _, _), (_, p_dead, _, _) = both_paths(x, None, 0, 8)
    assert dead == dead_oracle(x.numpy(), 0) == 0.5
    assert p_dead == 0.5


def test_negative_dim_counts_the_same_units_as_its_positive_twin() -> None:
    x = torch.ones(2, 3)
    x[0, 0] = 0.0  # no unit along the last axis is dead
    (_, dead, _, _), (_, p_dead, _, _) = both_paths(x, None, -1, 8)
    assert dead_oracle(x.numpy(), 1) == 0.0
    assert dead == 0.0
    assert p_dead == 0.0


def test_zero_bins_is_refused_on_both_paths() -> None:
    x = drawn((100,), 0, "normal")
    # The torch path first: the fused path once took bins=0 to a kernel writing out of bounds.
    with fused.disabled(), pytest.raises(ValueError, match="bins"):
        stats.summary_and_counts(x, None, None, 0)
    with pytest.raises(ValueError, match="bins"):
        stats.summary_and_counts(x, None, None, 0)


def cancelling(n: int, seed: int) -> torch.Tensor:
    """N(30, 1) with 8 outliers at 30 ± 200: var / E[x²] ≈ 1.4e-3, below the 0.5 under which both
    paths take the exact two-pass moments, and mean ± 6 std inside [min, max], so the span comes
    from the moments (a fused rule of 1e-3 once moved 12 of 64 counts here)."""
    a = np.random.default_rng(seed).normal(size=n) + 30.0
    a[:8] = [230.0, -170.0] * 4
    return torch.from_numpy(a.astype(np.float32))


def test_cancelling_data_bins_the_same_with_float32_indices() -> None:
    x = cancelling(1 << 20, 494)
    (s, _, _, counts), (p, _, _, p_counts) = both_paths(x, None, None, 64)
    assert abs(s.var - p.var) <= REL * p.var  # the moments agree to the tolerance...
    assert counts.tolist() == p_counts.tolist()  # ...and so do the histograms


def test_cancelling_data_bins_the_same_with_float64_indices() -> None:
    x = cancelling(1 << 22, 0)
    (_, _, _, counts), (_, _, _, p_counts) = both_paths(x, None, None, 1_000_000)
    assert counts.tolist() == p_counts.tolist()
