"""Reductions of one tensor to a handful of numbers and a fixed-bin histogram.

Built for the probe's hot path, where it runs on every layer output and gradient:
- contiguous CPU float32 tensors take one fused pass for the moments and counts and one for
  the bins (`initlab.fused`); everything else takes the torch path below, with the same
  results to float64 rounding and bin counts computed by the same arithmetic;
- the variance is E[x²] − mean² from float64 sums of x and x·x, chunk by chunk (torch's
  `var_mean` is a serial Welford loop that costs more than the layer's own matmul on a CPU);
  the square of a float32 is exact in float64 and never leaves its range, so float32 data
  needs no rescaling;
- that fast path is taken only where it is exact: when E[x²] − mean² would cancel
  (|mean| > std), or float64 data squares out of range (1e±300), the moments come from an
  exact two-pass fallback in float64, rescaled by a power of two for float64 data;
- float64 input is reduced in float64 (a float32 copy would turn 1e300 into inf, 1e-300 into 0);
- the histogram is bin indices + `bincount` (2.5× faster than `torch.histc` on a CPU), computed
  in float32 when that is exact to 0.4% of a bin, in rescaled float64 otherwise;
- anything that needs a temporary works in chunks of CHUNK elements, so the probe's extra
  memory stays a few MB however large the activation is;
- the torch path reads everything back with one `.tolist()` (one device sync).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from initlab import fused
from initlab.units import dead_fraction

BINS = 64
CHUNK = 1 << 20  # elements per temporary (4 MB of float32, 8 MB of float64)
CANCELLATION = fused.CANCELLATION  # E[x²] − mean² only while E[x²]/var ≤ 2 (see there)
# The fast path needs E[x²] this many times above float64's smallest normal number: each
# product that underflows loses at most half a subnormal ulp, so underflow adds a relative
# error below 2**-48.
UNDERFLOW_MARGIN = 2.0**24
FLOAT_MAX = sys.float_info.max
FLOAT64_TINY = sys.float_info.min  # the smallest normal float64


class Summary(NamedTuple):
    """The statistics of one tensor (over all its elements; variance with correction 0).

    A named tuple, not a dataclass: the probe makes one per output and gradient, and a frozen
    dataclass's construction cost several times as much.

    Every field is a Python float (float64). For float64 data beyond 1e±154 the variance itself
    may round to inf or 0 while the std is still exact (1e300² does not fit in a float64).
    """

    mean: float
    var: float
    std: float
    frac_zero: float
    frac_saturated: float
    nonfinite: int
    low: float = math.nan  # min and max, for the histogram's range
    high: float = math.nan


def _flat(x: torch.Tensor) -> torch.Tensor:
    """`x` flat, in the dtype it is reduced in: float64 and wide integers in float64 (range,
    and integers exact up to 2**53), everything else in float32."""
    x = x.detach().reshape(-1)
    if x.dtype in (torch.float64, torch.int64, torch.int32):
        return x.to(torch.float64)
    return x.float()


def _chunks(x: torch.Tensor) -> Iterator[torch.Tensor]:
    flat = x.reshape(-1)
    for start in range(0, flat.numel(), CHUNK):
        yield flat[start : start + CHUNK]


def _chunk_sum(terms: list[torch.Tensor]) -> torch.Tensor:
    """Sum of per-chunk 0-d results; in float64 when there are several, because a float32
    running total of counts is exact only below 2**24."""
    return terms[0] if len(terms) == 1 else torch.stack(terms).double().sum()


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    """Count of non-zero elements. |sign(x)| summed in chunks (exact below 2**24 per chunk) is
    the fastest way on a CPU: count_nonzero is ~100× slower on ReLU outputs."""
    return _chunk_sum([c.sign().abs_().sum() for c in _chunks(x)])


def _sum(x: torch.Tensor) -> torch.Tensor:
    """Σx in float64, chunk by chunk: torch's cascade summation, exact to ~1e-16 relative."""
    return _chunk_sum([c.sum(dtype=torch.float64) for c in _chunks(x)])


def _sum_of_squares(x: torch.Tensor) -> torch.Tensor:
    """Σx² in float64 as a float64 dot per chunk (one chunk-sized float64 temporary): the square
    of a float32 is exact in float64 and cannot over- or underflow there, and the sums are good
    to ~n·2**-53, so float32 data never needs rescaling and the sums agree with the fused
    path's (initlab.fused) to float64 rounding, which keeps histogram edges identical to many
    more digits than a bin's width."""
    terms = []
    for c in _chunks(x):
        d = c.double() if c.dtype != torch.float64 else c
        terms.append(torch.dot(d, d))
    return _chunk_sum(terms)


def _saturated(x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    margin = 0.01 * (bounds[1] - bounds[0])
    lo, hi = bounds[0] + margin, bounds[1] - margin
    return _chunk_sum([((c <= lo) | (c >= hi)).sum() for c in _chunks(x)])


def summarize(x: torch.Tensor, bounds: tuple[float, float] | None = None) -> Summary:
    """Mean, variance, std, fraction of exact zeros, fraction saturated, non-finite count.

    `bounds` are a bounded activation's (low, high); an output within 1% of the range from a
    bound counts as saturated. Without bounds, frac_saturated is NaN.
    """
    return summarize_units(x, bounds, None)[0]


def variance(x: torch.Tensor) -> float:
    """`summarize(x).var`, in one compiled call on the fused path."""
    var = fused.variance(x)
    return summarize(x).var if var is None else var


@torch.no_grad()  # the torch path's ops are not part of any graph (the probe calls it in hooks)
def _torch_summary(x: torch.Tensor, bounds: tuple[float, float] | None) -> Summary:
    """`summarize` by torch ops: any dtype and device, inf and NaN, any cancellation."""
    x = _flat(x)
    n = x.numel()
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    parts = [_sum(x), _sum_of_squares(x), n - _nonzero(x), *torch.aminmax(x)]
    if bounds is not None:
        parts.append(_saturated(x, bounds))
    values = torch.stack([p.double() for p in parts]).tolist()
    total, squares, zeros, low, high = values[:5]
    # A finite sum or sum of squares proves every element finite (inf and NaN propagate);
    # both infinite may be overflow alone (1e20² in float32), so count.
    all_finite = math.isfinite(squares) or math.isfinite(total)
    nonfinite, zeros = (0, zeros) if all_finite else _count_nonfinite(x)
    if nonfinite:
        mean, var = _nonfinite_moments(x)
        std = math.sqrt(var) if var >= 0 else math.nan
    else:
        mean, var, std = _finite_moments(x, total / n, squares / n, low, high)
    saturated = values[5] / n if bounds is not None else math.nan
    return Summary(mean, var, std, zeros / n, saturated, nonfinite, low, high)


def summarize_units(
    x: torch.Tensor, bounds: tuple[float, float] | None, dim: int | None
) -> tuple[Summary, float]:
    """`summarize(x, bounds)` and `dead_fraction(x, dim)` (0.0 when nothing is zero), in one
    fused pass over `x` where it can (`initlab.fused`), else by the torch path."""
    a = fused.view(x)
    r = fused.reduce_array(a, tuple(x.shape), bounds, dim) if a is not None else None
    return _units_summary(x, r, bounds, dim, a)


def _units_summary(
    x: torch.Tensor,
    r: fused.Reduced | None,
    bounds: tuple[float, float] | None,
    dim: int | None,
    a: np.ndarray | None = None,
) -> tuple[Summary, float]:
    """`summarize_units` from the fused reductions `r` of `x` (read as `a`, `fused.view(x)`),
    or by the torch path where they are None or cannot give an exact summary."""
    summary = _fused_summary(r, a, bounds) if r is not None and a is not None else None
    if summary is None:
        summary = _torch_summary(x, bounds)
        dead = dead_fraction(x, dim) if summary.frac_zero else 0.0
        return summary, dead
    return summary, _dead(r, x, dim)


def _dead(r: fused.Reduced, x: torch.Tensor, dim: int | None) -> float:
    """The fraction of units along `dim` that are zero everywhere (NaN without units; 0.0
    when nothing is zero)."""
    return (r.dead_units / x.shape[dim] if dim is not None else math.nan) if r.zeros else 0.0


# What a histogram's edges are made from: its range (lo, hi), or None for a tensor with no finite
# value (its edges are all zero). `edges` makes them, so a caller can make them later, together.
Span = tuple[float, float] | None


def summary_and_counts(
    x: torch.Tensor, bounds: tuple[float, float] | None, dim: int | None, bins: int = BINS
) -> tuple[Summary, float, Span, np.ndarray]:
    """`summarize_units(x, bounds, dim)`, and `histogram(x, bins, summary)` as its span and
    counts (int64 or float64): `edges(span, bins)` and the counts as floats are what
    `histogram` gives. On the fused path one compiled call does both passes and the
    arithmetic between them (`fused.summary_and_bins`; the probe calls this for every output
    and gradient), and only what it leaves undone takes the steps below."""
    fused.check_bins(bins)
    a = fused.view(x)
    if a is None:
        summary, dead = _units_summary(x, None, bounds, dim)
        return summary, dead, *_span_and_counts(x, bins, summary)
    done = fused.summary_and_bins(a, tuple(x.shape), bounds, dim, bins)
    r, n = done.reduced, a.size
    if done.status == fused.REDUCED:
        summary, dead = _units_summary(x, r, bounds, dim, a)  # inf/NaN: the torch path's
    else:
        summary, dead = _summary_of(r, n, done.mean, done.var, bounds), _dead(r, x, dim)
    if done.status == fused.BINNED:
        return summary, dead, done.span, done.counts
    if done.status == fused.SPANNED:  # float64 indices, or bins past the kernel's int32 ones
        index = _index_parameters(torch.float32, *done.span, bins)
        counts = fused.bin_counts_array(a, bins, index)
        if counts is not None:
            return summary, dead, done.span, counts
    return summary, dead, *_span_and_counts(x, bins, summary)  # inf/NaN: the finite values


def edges(span: Span, bins: int) -> np.ndarray:
    """A histogram's bins + 1 float64 edges from its span (see `summary_and_counts`)."""
    return np.zeros(bins + 1) if span is None else _edge_array(*span, bins)


def edge_rows(spans: Sequence[Span], bins: int) -> np.ndarray:
    """`edges` of many spans as one (len(spans), bins + 1) array, the same values: the common
    spans in one vectorized `_linear_edges` (one call per span cost more than the probe's
    Python per tensor), the rest (no finite value, steps beyond float64's range) one by one."""
    lo = np.array([s[0] if s is not None else 0.0 for s in spans], dtype=np.float64)
    hi = np.array([s[1] if s is not None else 0.0 for s in spans], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        common = np.isfinite(hi - lo) & ((hi - lo) / bins >= sys.float_info.min)
    rows = np.zeros((len(spans), bins + 1))
    rows[common] = _linear_edges(lo[common], hi[common], bins)
    for i in np.flatnonzero(~common):
        rows[i] = edges(spans[i], bins)
    return rows


def _linear_edges(lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Per row, bins + 1 evenly spaced edges from lo to hi by torch.linspace's formula: step
    (hi − lo) / bins, the first half lo + step·i, the second hi − step·(bins − i), so both
    ends are exact."""
    step = ((hi - lo) / bins)[:, None]
    i = np.arange(bins + 1, dtype=np.float64)
    first = (i < (bins + 1) // 2)[None, :]
    with np.errstate(over="ignore"):  # the half np.where drops may overflow near ±FLOAT_MAX
        return np.where(first, lo[:, None] + step * i, hi[:, None] - step * (bins - i))


def _fused_summary(
    r: fused.Reduced, a: np.ndarray, bounds: tuple[float, float] | None
) -> Summary | None:
    """The Summary from the fused sums of `a` (a second, exact pass where E[x²] − mean²
    cancels: `fused.moments`); None (the torch path decides) for a tensor with inf or NaN."""
    mean, var = fused.moments(a, r.total, r.squares, r.low, r.high)
    return None if math.isnan(mean) else _summary_of(r, a.size, mean, var, bounds)


def _summary_of(
    r: fused.Reduced, n: int, mean: float, var: float, bounds: tuple[float, float] | None
) -> Summary:
    saturated = r.saturated / n if bounds is not None else math.nan
    return Summary(mean, var, math.sqrt(var), r.zeros / n, saturated, 0, r.low, r.high)


def _finite_moments(
    x: torch.Tensor, mean: float, ex2: float, low: float, high: float
) -> tuple[float, float, float]:
    """Mean, variance and std of an all-finite `x`: from the float64 sums where they are exact
    enough, otherwise (cancelling, or float64 data whose squares left the range) the exact
    fallback."""
    if low == high:  # a constant: exact, where sum/n could round
        return low, 0.0, 0.0
    var = ex2 - mean * mean
    if _in_range(ex2) and var >= CANCELLATION * ex2:  # the common case
        return mean, var, math.sqrt(var)
    # The fast mean is a good shift unless the float64 sum overflowed (float64 data only).
    shift = mean if math.isfinite(mean) else None
    return _exact_moments(x, max(abs(low), abs(high)), shift)


def _in_range(ex2: float) -> bool:
    """Whether a float64 E[x²] is neither overflowed nor too close to underflow to trust."""
    return FLOAT64_TINY * UNDERFLOW_MARGIN <= ex2 < math.inf


def _exact_moments(
    x: torch.Tensor, magnitude: float, shift: float | None
) -> tuple[float, float, float]:
    """Mean and variance in float64 by the corrected two-pass formula on d = x − shift:
    var = (Σd² − (Σd)²/n) / n is exact for any shift and accurate for one near the mean, so
    the fast path's mean saves the first pass. float64 data is first divided by 2**k > max |x|,
    so that neither sums nor squares overflow, and a square that underflows is below 2**-1022
    of the largest; float32 data needs no scaling, float64 has the range for its squares."""
    k = math.frexp(magnitude)[1] if x.dtype == torch.float64 else 0
    n = x.numel()
    if shift is None:
        shift = math.ldexp(float(_chunk_sum([_scaled(c, -k).sum() for c in _chunks(x)])) / n, k)
    shift_k = math.ldexp(shift, -k)
    sums = [(d.sum(), torch.dot(d, d)) for d in _deviation_chunks(x, -k, shift_k)]
    d1, d2 = (float(_chunk_sum(list(s))) for s in zip(*sums, strict=True))
    var = max(d2 - d1 * d1 / n, 0.0) / n
    # Scaled, |mean| and std are below 1, but may round up to it: 2**1024 overflows
    return _ldexp(shift_k + d1 / n, k), _ldexp(var, 2 * k), _ldexp(math.sqrt(var), k)


def _deviation_chunks(x: torch.Tensor, e: int, shift: float) -> Iterator[torch.Tensor]:
    """x·2**e − shift, one chunk-sized float64 temporary at a time."""
    for c in _chunks(x):
        yield _scaled(c, e).sub_(shift)


def _scaled(c: torch.Tensor, e: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """c·2**e as a new `dtype` temporary. Multiplying by a power of two is exact; it takes
    several factors to reach 2**±1074 (float64 subnormals) or 2**±149 (float32 ones) where a
    single 2**e would overflow the dtype."""
    # 2**±126 (±1022) are the widest powers of two that are normal numbers of the dtype.
    factors = _pow2_factors(e, math.frexp(torch.finfo(dtype).max)[1] - 2)
    same = c.dtype == dtype and bool(factors)
    out = torch.mul(c, factors.pop()) if same else c.to(dtype, copy=True)
    for factor in factors:
        out.mul_(factor)
    return out


def _pow2_factors(e: int, limit: int) -> list[float]:
    """Powers of two, each within 2**±limit, whose product is 2**e."""
    if e == 0:
        return []
    count = -(-abs(e) // limit)  # ceiling division
    step, extra = divmod(e, count)
    return [math.ldexp(1.0, step + 1)] * extra + [math.ldexp(1.0, step)] * (count - extra)


def _ldexp(value: float, e: int) -> float:
    """value·2**e, inf when that overflows a float64 (math.ldexp raises instead)."""
    try:
        return math.ldexp(value, e)
    except OverflowError:
        return math.copysign(math.inf, value)


def _count_nonfinite(x: torch.Tensor) -> tuple[int, int]:
    """Non-finite and zero counts, exactly: only reached when neither the sum nor the sum of
    squares is finite (otherwise there is no inf or NaN), where |sign(x)| would count NaN
    wrong."""
    finite = _chunk_sum([torch.isfinite(c).sum() for c in _chunks(x)])
    zeros = _chunk_sum([(c == 0).sum() for c in _chunks(x)])
    return int(x.numel() - finite), int(zeros)


def _nonfinite_moments(x: torch.Tensor) -> tuple[float, float]:
    """With inf/NaN present the moments are what torch says (inf or NaN), not E[x²] − mean²."""
    var, m = torch.var_mean(x, correction=0)
    return float(m), float(var)


def histogram_range(summary: Summary, bins: int = BINS) -> tuple[float, float]:
    """A robust range for the histogram: mean ± 6 std, cut to [min, max]; finite, and wide
    enough for `bins` strictly increasing edges (`fused.histogram_span`)."""
    return fused.histogram_span(summary.mean, summary.std, summary.low, summary.high, bins)


def _bin_counts(x: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """Counts per bin of finite `x`; values outside [lo, hi] land in the edge bins."""
    index = _index_parameters(x.dtype, lo, hi, bins)
    counts = fused.bin_counts(x, bins, index)
    if counts is not None:
        return torch.from_numpy(counts)
    counts = torch.zeros(bins, dtype=torch.int64, device=x.device)
    for chunk in _bin_indices(x, index, bins):
        counts += torch.bincount(chunk, minlength=bins)
    return counts


def _index_parameters(dtype: torch.dtype, lo: float, hi: float, bins: int) -> tuple:
    """How bin indices are computed: ("float32", scale, lo·scale) where float32 is exact enough
    (the common case, and the fastest), else ("float64", k, lo / 2**k, bins / (hi − lo) · 2**k,
    the powers of two `_scaled` multiplies by) on x / 2**k, with 2**k > max(|lo|, |hi|), where
    neither hi − lo nor bins / (hi − lo) can over- or underflow."""
    if dtype == torch.float32:
        scale, offset = fused.float32_index(lo, hi, bins)
        if not math.isnan(scale):
            return "float32", scale, offset
    k = math.frexp(max(abs(lo), abs(hi)))[1]
    lo_k, hi_k = math.ldexp(lo, -k), math.ldexp(hi, -k)
    factors = _pow2_factors(-k, math.frexp(FLOAT_MAX)[1] - 2)  # as `_scaled` for float64
    return "float64", k, lo_k, bins / (hi_k - lo_k), factors


def _bin_indices(x: torch.Tensor, index: tuple, bins: int) -> Iterator[torch.Tensor]:
    """Bin index per element, chunk by chunk, as `index` says. An outlier whose index
    overflows becomes ±inf, which the clamp sends to an edge bin."""
    if index[0] == "float32":
        _, scale, offset = index
        for c in _chunks(x):
            # One temporary, then in place: (c - lo) * scale, cut to [0, bins - 1], truncated.
            yield torch.mul(c, scale).sub_(offset).clamp_(0, bins - 1).to(torch.int32)
        return
    _, k, lo_k, scale_k, _ = index
    for c in _chunks(x):
        yield _scaled(c, -k).sub_(lo_k).mul_(scale_k).clamp_(0, bins - 1).to(torch.int32)


def _edge_array(lo: float, hi: float, bins: int) -> np.ndarray:
    """bins + 1 evenly spaced float64 edges from lo to hi (`_linear_edges`), spaced on
    lo / 2**k .. hi / 2**k where the step (hi − lo) / bins would overflow (±1e308) or
    underflow (subnormals)."""
    if math.isfinite(hi - lo) and (hi - lo) / bins >= sys.float_info.min:  # the common case
        return _linear_edges(np.array([lo]), np.array([hi]), bins)[0]
    k = math.frexp(max(abs(lo), abs(hi)))[1]
    scaled = _linear_edges(np.array([math.ldexp(lo, -k)]), np.array([math.ldexp(hi, -k)]), bins)
    return np.ldexp(scaled[0], k)


def histogram(
    x: torch.Tensor, bins: int = BINS, summary: Summary | None = None
) -> tuple[list[float], list[float]]:
    """Bin edges (bins + 1) and counts of the finite values of `x`; outliers in the edge bins.

    Pass the tensor's `summary` when it is already computed, to save the reductions.
    """
    bin_edges, counts = _histogram_arrays(x, bins, summary)
    return bin_edges.tolist(), counts.tolist()


def _histogram_arrays(
    x: torch.Tensor, bins: int, summary: Summary | None
) -> tuple[np.ndarray, np.ndarray]:
    """`histogram` as float64 arrays."""
    span, counts = _span_and_counts(x, bins, summary)
    return edges(span, bins), counts


@torch.no_grad()
def _span_and_counts(
    x: torch.Tensor, bins: int, summary: Summary | None
) -> tuple[Span, np.ndarray]:
    """`histogram`'s span and float64 counts."""
    fused.check_bins(bins)
    x = _flat(x)
    if summary is None and x.numel():  # its non-finite count says whether to filter
        summary = summarize(x)
    if summary is None or summary.nonfinite:
        x = x[torch.isfinite(x)]
        if x.numel() == 0:
            return None, np.zeros(bins)
        summary = summarize(x)
    lo, hi = histogram_range(summary, bins)
    counts = _bin_counts(x, lo, hi, bins)
    # float64 counts are exact (below 2**53)
    return (lo, hi), counts.cpu().numpy().astype(np.float64)
