"""Fused reductions for the probe's hot path: one compiled pass over a contiguous CPU float32
tensor for every moment and count of `stats.summarize` and the per-unit dead count of
`units.dead_fraction`, and one more for the histogram's bin counts; `summary_and_bins` makes
both passes and the arithmetic between them (moments, span, bin index) in one compiled call.

Why: the plain torch path launches ~15 kernels per tensor (sum, sum of squares, sign, min/max,
comparisons, the bin indices, bincount), each a pass over memory with its own temporary and
dispatch cost; on a CPU that is most of the probe's time.

Exactness (no fast-math anywhere, so the compiler keeps the written order of every operation):
- sums and sums of squares are accumulated in float64 in independent lanes (per unit for
  (rows, units) layouts, LANES lanes otherwise), then the lanes are summed: the square of a
  float32 is exact in float64, and float64 holds every float32 square, so nothing over- or
  underflows;
- the counts are integers; min and max are exact;
- the bin index is the torch path's own arithmetic, in its own precision and order (float32:
  x·scale − lo·scale, cut to [0, bins − 1], truncated; float64: x·2**-k − lo_k, times scale_k),
  so the counts are identical to `torch.bincount` of the torch path's indices.
Anything else (other dtypes, non-contiguous or non-CPU tensors, numba missing, or turned off
by `INITLAB_FUSED=0` or the thread-local `disabled()`) takes the torch path.

Kernels are single-threaded and release the GIL (`nogil`), so concurrent app sessions, each a
thread, can run them at once; they are compiled once, for explicit signatures, and cached on
disk (`cache=True`).
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch

try:
    import numba
except ImportError:  # the torch path serves every tensor
    numba = None

ENV = "INITLAB_FUSED"  # "0" turns the fused path off for the whole process
_OFF = os.environ.get(ENV) == "0"  # read once: a process-wide setting, not per call
# Independent float64 accumulators of a tensor read as flat chunks: wide enough to keep the
# adders busy and vectorize (8 lanes read a conv output 2–4× slower).
LANES = 32
_local = threading.local()


class Reduced(NamedTuple):
    """One tensor's raw reductions: float64 sums, counts, and the float32 min and max (a named
    tuple: made for every tensor the probe sees, where a frozen dataclass costs 4 µs)."""

    total: float
    squares: float
    zeros: int
    saturated: int
    dead_units: int
    low: float
    high: float


@contextmanager
def disabled() -> Iterator[None]:
    """Within this block, on this thread only, every tensor takes the torch path."""
    previous = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = previous


def enabled() -> bool:
    """Whether the fused kernels may be used here and now."""
    return numba is not None and not _OFF and not getattr(_local, "off", False)


def eligible(x: torch.Tensor) -> bool:
    """A tensor the kernels read in place: contiguous CPU float32, not empty."""
    return (
        x.dtype == torch.float32 and x.is_cpu and x.numel() > 0 and x.is_contiguous() and enabled()
    )


def _array(x: torch.Tensor) -> np.ndarray:
    """The (contiguous) tensor's memory as a flat numpy array (no copy; numpy's reshape of a
    contiguous array is a view, and cheaper than a torch call)."""
    return x.detach().numpy().reshape(-1)


def view(x: torch.Tensor) -> np.ndarray | None:
    """`x`'s memory as a flat numpy array (no copy) when the kernels may read it, else None:
    one view serves both passes (`reduce_array`, `bin_counts_array`)."""
    return _array(x) if eligible(x) else None


def reduce(x: torch.Tensor, bounds: tuple[float, float] | None, dim: int | None) -> Reduced | None:
    """Sums, counts, min and max of `x` in one pass, and how many units along `dim` are zero
    everywhere (0 when `dim` is None); None when `x` is not eligible."""
    a = view(x)
    return None if a is None else reduce_array(a, tuple(x.shape), bounds, dim)


def reduce_array(
    a: np.ndarray, shape: tuple[int, ...], bounds: tuple[float, float] | None, dim: int | None
) -> Reduced:
    """`reduce` on `view(x)`, with `x`'s shape."""
    lo, hi = _saturation_limits(bounds)
    floats, ints = np.empty(4, np.float64), np.empty(3, np.int64)
    _reduce(a, *_mode(shape, dim), lo, hi, floats, ints)
    total, squares, low, high = floats.tolist()
    zeros, saturated, dead = ints.tolist()
    return Reduced(total, squares, zeros, saturated, dead, low, high)


# `summary_and_bins` outcomes: everything done; the reductions only (inf or NaN present: the
# torch path decides the moments); the moments and span but no bins (float64 indices).
BINNED, REDUCED, SPANNED = 0, 1, 2


class Binned(NamedTuple):
    """What `summary_and_bins` computed for one tensor (see its outcomes)."""

    status: int
    reduced: Reduced
    mean: float
    var: float
    span: tuple[float, float]
    counts: np.ndarray


def summary_and_bins(
    a: np.ndarray,
    shape: tuple[int, ...],
    bounds: tuple[float, float] | None,
    dim: int | None,
    bins: int,
) -> Binned:
    """One compiled call for `view(x)`: the reductions of `reduce_array`, the moments
    (`fused_moments`), the histogram's span (`histogram_span`) and, with float32 indices, the
    bin counts of `bin_counts_array`; `status` says how far it got. One call, not five: the
    probe makes it between the model's kernels, where every Python step costs several times
    its warm cost."""
    check_bins(bins)
    lo, hi = _saturation_limits(bounds)
    mode, width, units, inner = _mode(shape, dim)
    floats, ints = np.empty(8, np.float64), np.empty(3, np.int64)
    counts = np.zeros(bins, np.int64)
    status = _summary_and_bins(a, mode, width, units, inner, lo, hi, floats, ints, counts)
    total, squares, low, high, mean, var, span_lo, span_hi = floats.tolist()
    zeros, saturated, dead = ints.tolist()
    reduced = Reduced(total, squares, zeros, saturated, dead, low, high)
    return Binned(status, reduced, mean, var, (span_lo, span_hi), counts)


def _mode(shape: tuple[int, ...], dim: int | None) -> tuple[int, int, int, int]:
    """How `reduce_array` reads a tensor of `shape`: (mode, row width, units, inner), mode 0
    per-unit lanes, 1 lanes on the last dim, 2 flat chunks (`_summary_and_bins`)."""
    _, units, inner = _layout(shape, dim)
    if inner == 1 and units > 1:
        return 0, units, units, inner
    if dim is None and len(shape) > 1 and shape[-1] % LANES == 0:
        return 1, shape[-1], units, inner
    return 2, LANES, units, inner


UNBOUNDED = (np.float32(-np.inf), np.float32(np.inf))


def _saturation_limits(bounds: tuple[float, float] | None) -> tuple[np.float32, np.float32]:
    """The torch path's saturation limits, as float32 like the torch comparison makes them;
    ±inf (never reached by a finite value) without bounds."""
    if bounds is None:
        return UNBOUNDED
    margin = 0.01 * (bounds[1] - bounds[0])
    return np.float32(bounds[0] + margin), np.float32(bounds[1] - margin)


def _layout(shape: tuple[int, ...], dim: int | None) -> tuple[int, int, int]:
    """(outer, units, inner): the flat tensor as outer × units × inner, units along `dim`."""
    if dim is None:
        return 1, 1, math.prod(shape)
    dim %= len(shape)  # a negative axis counts from the end, as in torch
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])


def check_bins(bins: int) -> None:
    """A ValueError unless `bins` is a whole number >= 1: the kernels index counts[bins - 1],
    which must never be out of bounds."""
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins: must be a whole number >= 1; got {bins!r}")


def bin_counts(x: torch.Tensor, bins: int, index: tuple) -> np.ndarray | None:
    """Counts per bin of the finite, eligible `x` with the torch path's bin `index` parameters
    (see `stats._index_parameters`); None when `x` is not eligible, or for float32 indices
    beyond the kernel's int32 ones."""
    a = view(x)
    return None if a is None else bin_counts_array(a, bins, index)


def bin_counts_array(a: np.ndarray, bins: int, index: tuple) -> np.ndarray | None:
    """`bin_counts` on `view(x)`."""
    check_bins(bins)
    if index[0] == "float32" and bins > INDEX_LIMIT:
        return None
    counts = np.zeros(bins, np.int64)
    if index[0] == "float32":
        _bins32(a, np.float32(index[1]), np.float32(index[2]), counts)
    else:
        # the powers of two of `stats._scaled` on float32 input, in the same order
        factors = np.asarray(index[4], np.float64)
        _bins64(a, factors, float(index[2]), float(index[3]), counts)
    return counts


# ---------------------------------------------------------------- the kernels


def _jit(signature: str) -> Callable[[Callable], Callable]:
    """numba's njit for one explicit signature (compiled at import, or loaded from numba's
    disk cache), fast-math off; the plain function where numba is missing."""
    if numba is None:
        return lambda fn: fn
    return numba.njit(signature, cache=True, nogil=True)


# ---------------------------------------------------------------- the scalar arithmetic
# One implementation, compiled, of what both paths compute from a tensor's reductions: the
# statistics module calls these too, so the fused and the torch path cannot drift apart.

ROBUST_STDS = 6.0  # histogram range: mean ± 6 std, cut to [min, max]; outliers go to edge bins
MIN_BIN_ULPS = 4  # a bin is at least 4 ulps of the range's magnitude wide: edges strictly increase
FLOAT_MAX = float(np.finfo(np.float64).max)
SMALLEST_SUBNORMAL = 5e-324
# Bin indices in float32 only while they stay below 2**16: their rounding error is then at most
# 2**16 · 2**-24 ≈ 0.4% of a bin. The scale bins/(hi − lo) must be a normal float32 (no inf).
FLOAT32_INDEX_LIMIT = 2.0**16
FLOAT32_SCALE_RANGE = (2.0**-100, 2.0**100)
# E[x²] − mean² multiplies the sums' relative errors by up to 2·E[x²]/var. Both paths take it
# only while E[x²]/var ≤ 2 (|mean| ≤ std: ReLU outputs, zero-mean pre-activations, gradients)
# and leave anything more cancelling to the torch path's exact two-pass moments: one rule, so
# the two paths' spans, and so their histograms, agree (a looser rule here moved bin counts).
CANCELLATION = 0.5


@_jit("float64(float64)")
def ulp(x):  # pragma: no cover - compiled
    """math.ulp of a finite float: 2**(e − 53) for |x| = m·2**e (0.5 ≤ m < 1), at least the
    smallest subnormal."""
    x = abs(x)
    if x == 0.0:
        return SMALLEST_SUBNORMAL
    e = math.frexp(x)[1]
    return math.ldexp(1.0, e - 53) if e - 53 >= -1074 else SMALLEST_SUBNORMAL


@_jit("UniTuple(float64, 2)(float64, float64, float64, float64, int64)")
def histogram_span(mean, std, low, high, bins):  # pragma: no cover - compiled
    """A robust range for a histogram: mean ± 6 std cut to [min, max]; a unit-wide window
    around a constant; finite, and widened where `bins` bins would be narrower than a few
    ulps (two edges could round to the same float). Python's max(a, b) is b if b > a else a,
    written out so NaN and ties go the same way."""
    lo, hi = low, high
    if math.isfinite(std):  # mean ± 6 std may overflow to ±inf: min/max drop it
        a, b = mean - ROBUST_STDS * std, mean + ROBUST_STDS * std
        lo = a if a > lo else lo
        hi = b if b < hi else hi
    if not hi > lo:
        centre = lo if math.isfinite(lo) else 0.0
        half = abs(centre)
        half = (half if half > 1.0 else 1.0) * 0.5
        lo, hi = centre - half, centre + half
    lo = lo if lo > -FLOAT_MAX else -FLOAT_MAX
    hi = hi if hi < FLOAT_MAX else FLOAT_MAX
    # halves, so hi − lo cannot overflow
    top = abs(hi) if abs(hi) > abs(lo) else abs(lo)
    half = bins * MIN_BIN_ULPS * ulp(top)
    if hi / 2 - lo / 2 >= half:
        return lo, hi
    centre = lo / 2 + hi / 2
    a, b = centre - half, centre + half
    return (a if a > -FLOAT_MAX else -FLOAT_MAX), (b if b < FLOAT_MAX else FLOAT_MAX)


@_jit("UniTuple(float64, 2)(float64, float64, int64)")
def float32_index(lo, hi, bins):  # pragma: no cover - compiled
    """(scale, lo·scale) of the float32 bin index x·scale − lo·scale where float32 is exact
    enough, else (NaN, NaN)."""
    scale = bins / (hi - lo)
    top = abs(hi) if abs(hi) > abs(lo) else abs(lo)
    low_scale, high_scale = FLOAT32_SCALE_RANGE
    if low_scale <= scale <= high_scale and top * scale <= FLOAT32_INDEX_LIMIT:
        return scale, lo * scale
    return math.nan, math.nan


@_jit("UniTuple(float64, 2)(float64, float64, float64, float64, int64)")
def fused_moments(total, squares, low, high, n):  # pragma: no cover - compiled
    """(mean, variance) from the fused float64 sums; (NaN, NaN) where they cannot tell: inf or
    NaN present (a float32 square cannot overflow float64, so a non-finite sum of squares
    means one: the torch path decides), or too cancelling for E[x²] − mean² (`moments` then
    makes the exact pass)."""
    if not math.isfinite(squares):
        return math.nan, math.nan
    mean, ex2 = total / n, squares / n
    var = ex2 - mean * mean
    if low == high:  # a constant: exact, where sum/n could round
        return low, 0.0
    if not var >= CANCELLATION * ex2:
        return math.nan, math.nan
    return mean, var


@_jit("UniTuple(float64, 2)(float32[::1], float64)")
def exact_moments(a, shift):  # pragma: no cover - compiled
    """(mean, variance) by the torch path's corrected two-pass formula on d = x − shift,
    var = (Σd² − (Σd)²/n) / n: exact for any shift and accurate for one near the mean, so
    mean-dominated data (a max-pool of ReLU outputs, a sigmoid's) stays on the fused path."""
    s, q = np.zeros(LANES, np.float64), np.zeros(LANES, np.float64)
    for i in range(a.size):
        d = np.float64(a[i]) - shift
        s[i % LANES] += d
        q[i % LANES] += d * d
    d1, d2, n = s.sum(), q.sum(), a.size
    var = d2 - d1 * d1 / n
    return shift + d1 / n, (var if var > 0.0 else 0.0) / n


@_jit("UniTuple(float64, 2)(float32[::1], float64, float64, float64, float64)")
def moments(a, total, squares, low, high):  # pragma: no cover - compiled
    """(mean, variance) of `a` from its fused sums (`fused_moments`), by `exact_moments` where
    those cancel; (NaN, NaN) only where inf or NaN is present (the torch path decides)."""
    mean, var = fused_moments(total, squares, low, high, a.size)
    if math.isnan(mean) and math.isfinite(squares):
        return exact_moments(a, total / a.size)
    return mean, var


@_jit("void(float64[::1], float64[::1], float32[::1], float32[::1], float64[::1])")
def _finish(s, q, mn, mx, floats):  # pragma: no cover - compiled
    """Lanes summed in order; min and max over the lanes."""
    floats[0] = 0.0
    floats[1] = 0.0
    for j in range(s.size):
        floats[0] += s[j]
        floats[1] += q[j]
    floats[2] = mn.min()
    floats[3] = mx.max()


# Rows taken together by `_accumulate`: each accumulator is loaded and stored once per ROWS
# rows instead of once per element (the additions keep their order: row r, then r + 1, ...).
ROWS = 4
# The per-lane counts are int32 (half the memory traffic of int64), flushed into int64 totals
# at least every COUNT_FLUSH rows, so they cannot overflow.
COUNT_FLUSH = 1 << 30


ACCUMULATE = (
    "void(float32[::1], int64, int64, int64, float32, float32, float64[::1], float64[::1], "
    "float32[::1], float32[::1], int32[::1], int32[::1])"
)


def _accumulator(saturation: bool) -> Callable:
    """`_accumulate`, compiled with or without the saturation count (`saturation` is a
    constant to the compiler): an unbounded tensor's comparisons with ±inf count nothing, and
    cost a quarter of the pass."""

    def accumulate(a, start, rows, width, lo, hi, s, q, mn, mx, z, sat):  # pragma: no cover
        """Adds `rows` rows of `width` lanes, from a[start], into the per-lane accumulators,
        in row order; the lanes are independent, so the loop over them vectorizes."""
        r = 0
        while r + ROWS <= rows:
            b = start + r * width
            r0, r1 = a[b : b + width], a[b + width : b + 2 * width]
            r2, r3 = a[b + 2 * width : b + 3 * width], a[b + 3 * width : b + 4 * width]
            for j in range(width):
                v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
                d0, d1, d2, d3 = np.float64(v0), np.float64(v1), np.float64(v2), np.float64(v3)
                s[j] = s[j] + d0 + d1 + d2 + d3
                q[j] = q[j] + d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3
                # Selects on a loaded value (not min()): no masked stores, no NaN handling (a
                # tensor with NaN leaves the fused path by its sum of squares anyway).
                m = mn[j]
                m = m if m <= v0 else v0
                m = m if m <= v1 else v1
                m = m if m <= v2 else v2
                mn[j] = m if m <= v3 else v3
                m = mx[j]
                m = v0 if v0 > m else m
                m = v1 if v1 > m else m
                m = v2 if v2 > m else m
                mx[j] = v3 if v3 > m else m
                z[j] += np.int32(v0 == 0) + np.int32(v1 == 0) + np.int32(v2 == 0)
                z[j] += np.int32(v3 == 0)
                if saturation:
                    sat[j] += (
                        (np.int32(v0 <= lo) | np.int32(v0 >= hi))
                        + (np.int32(v1 <= lo) | np.int32(v1 >= hi))
                        + (np.int32(v2 <= lo) | np.int32(v2 >= hi))
                        + (np.int32(v3 <= lo) | np.int32(v3 >= hi))
                    )
            r += ROWS
        for rest in range(r, rows):
            row = a[start + rest * width : start + (rest + 1) * width]
            for j in range(width):
                v = row[j]
                d = np.float64(v)
                s[j] += d
                q[j] += d * d
                m = mn[j]
                mn[j] = m if m <= v else v
                m = mx[j]
                mx[j] = v if v > m else m
                z[j] += np.int32(v == 0)
                if saturation:
                    sat[j] += np.int32(v <= lo) | np.int32(v >= hi)

    return _jit(ACCUMULATE)(accumulate)


_accumulate_bounded = _accumulator(True)
_accumulate_free = _accumulator(False)


@_jit(ACCUMULATE)
def _accumulate(a, start, rows, width, lo, hi, s, q, mn, mx, z, sat):  # pragma: no cover
    """The accumulators' update, with the saturation count only where a limit is finite."""
    if lo == -np.inf and hi == np.inf:
        _accumulate_free(a, start, rows, width, lo, hi, s, q, mn, mx, z, sat)
    else:
        _accumulate_bounded(a, start, rows, width, lo, hi, s, q, mn, mx, z, sat)


@_jit("void(float32[::1], int64, float32, float32, float64[::1], int64[::1])")
def _rows(a, width, lo, hi, floats, ints):  # pragma: no cover - compiled
    """`a` as rows of `width` units: per-unit lanes."""
    s = np.zeros(width, np.float64)
    q = np.zeros(width, np.float64)
    mn = np.full(width, np.inf, np.float32)
    mx = np.full(width, -np.inf, np.float32)
    z, sat = np.zeros(width, np.int32), np.zeros(width, np.int32)
    zeros = np.zeros(width, np.int64)
    saturated = 0
    rows = a.size // width
    for first in range(0, rows, COUNT_FLUSH):
        n = min(COUNT_FLUSH, rows - first)
        _accumulate(a, first * width, n, width, lo, hi, s, q, mn, mx, z, sat)
        zeros += z
        saturated += sat.sum()
        z[:] = 0
        sat[:] = 0
    _finish(s, q, mn, mx, floats)
    ints[0] = zeros.sum()
    ints[1] = saturated
    ints[2] = (zeros == rows).sum()


@_jit("int64(float32[::1], int64, int64)")
def _dead_units(a, units, inner):  # pragma: no cover - compiled
    """How many units of `a` (outer × units × inner) are zero everywhere: each block of a unit
    not yet seen alive is scanned up to its first nonzero (NaN counts as nonzero), so a
    live unit usually costs a few reads, and only a dead unit's blocks are read whole."""
    alive = np.zeros(units, np.bool_)
    for block in range(a.size // inner):
        unit = block % units
        if alive[unit]:
            continue
        base = block * inner
        for i in range(inner):
            if a[base + i] != 0:
                alive[unit] = True
                break
    return units - alive.sum()


@_jit("void(float32[::1], int64, int64, float32, float32, float64[::1], int64[::1])")
def _blocks(a, units, inner, lo, hi, floats, ints):  # pragma: no cover - compiled
    """`a` as outer × units × inner: the sums over all of `a` in LANES lanes (its whole chunks
    of LANES as rows of `_accumulate`, then the rest in lanes 0, 1, ...), whatever the blocks,
    so the loop vectorizes even for small `inner`; the dead units by `_dead_units`."""
    s = np.zeros(LANES, np.float64)
    q = np.zeros(LANES, np.float64)
    mn = np.full(LANES, np.inf, np.float32)
    mx = np.full(LANES, -np.inf, np.float32)
    z, sat = np.zeros(LANES, np.int32), np.zeros(LANES, np.int32)
    zeros, saturated = 0, 0
    whole = a.size // LANES
    for first in range(0, whole, COUNT_FLUSH):
        n = min(COUNT_FLUSH, whole - first)
        _accumulate(a, first * LANES, n, LANES, lo, hi, s, q, mn, mx, z, sat)
        zeros += z.sum()
        saturated += sat.sum()
        z[:] = 0
        sat[:] = 0
    for j in range(a.size - whole * LANES):
        v = a[whole * LANES + j]
        d = np.float64(v)
        s[j] += d
        q[j] += d * d
        mn[j] = v if v < mn[j] else mn[j]
        mx[j] = v if v > mx[j] else mx[j]
        zeros += np.int64(v == 0)
        saturated += np.int64(v <= lo) | np.int64(v >= hi)
    _finish(s, q, mn, mx, floats)
    ints[0] = zeros
    ints[1] = saturated
    ints[2] = _dead_units(a, units, inner) if zeros else 0


# Elements whose bin indices are computed (vectorized) before they are counted; the indices
# are unsigned 32-bit, for bins up to INDEX_LIMIT (4 sub-histograms still index in 32 bits).
INDEX_BLOCK = 2048
INDEX_LIMIT = 1 << 30


@_jit("void(uint32[::1], int64, int32[::1], int64)")
def _count4(index, n, sub, bins):  # pragma: no cover - compiled
    """Counts index[:n] into 4 sub-histograms of `bins` in `sub`, in turn (unsigned indices:
    no negative-index wraparound to check)."""
    whole = n - n % 4
    b1, b2, b3 = np.uint32(bins), np.uint32(2 * bins), np.uint32(3 * bins)
    for i in range(0, whole, 4):
        sub[index[i]] += 1
        sub[b1 + index[i + 1]] += 1
        sub[b2 + index[i + 2]] += 1
        sub[b3 + index[i + 3]] += 1
    for i in range(whole, n):
        sub[index[i]] += 1


@_jit("void(float32[::1], float32, float32, int64[::1])")
def _bins32(a, scale, offset, counts):  # pragma: no cover - compiled
    """The torch path's float32 bin index: (x·scale − offset) cut to [0, bins − 1], truncated;
    the indices a block at a time (a loop that vectorizes), counted into 4 int32 sub-histograms
    in turn (consecutive elements in one bin would otherwise wait on each other's increment),
    added into `counts` every COUNT_FLUSH elements, before an int32 could overflow."""
    bins = counts.size
    top = np.float32(bins - 1)
    sub = np.zeros(4 * bins, np.int32)
    index = np.empty(INDEX_BLOCK, np.uint32)
    for first in range(0, a.size, COUNT_FLUSH):
        part = a[first : min(first + COUNT_FLUSH, a.size)]
        for start in range(0, part.size, INDEX_BLOCK):
            block = part[start : start + INDEX_BLOCK]
            for i in range(block.size):
                v = block[i] * scale - offset
                index[i] = np.uint32(min(max(v, np.float32(0)), top))
            _count4(index, block.size, sub, bins)
        for k in range(4):
            counts += sub[k * bins : (k + 1) * bins]
        sub[:] = 0


@_jit("void(float32[::1], int64, int64, int64, int64, float32, float32, float64[::1], int64[::1])")
def _reduce(a, mode, width, units, inner, lo, hi, floats, ints):  # pragma: no cover - compiled
    """`reduce_array`'s pass, as `_mode` says: per-unit lanes, lanes on the last dim (rows that
    vectorize whole; no units), or flat chunks of LANES (`_blocks`)."""
    if mode == 0:
        _rows(a, width, lo, hi, floats, ints)
    elif mode == 1:
        _rows(a, width, lo, hi, floats, ints)
        ints[2] = 0
    else:
        _blocks(a, units, inner, lo, hi, floats, ints)


@_jit(
    "int64(float32[::1], int64, int64, int64, int64, float32, float32, float64[::1], "
    "int64[::1], int64[::1])"
)
def _summary_and_bins(
    a, mode, width, units, inner, lo, hi, floats, ints, counts
):  # pragma: no cover
    """`summary_and_bins` in one compiled call: floats become total, squares, min, max, mean,
    variance and the span; returns BINNED, REDUCED or SPANNED."""
    _reduce(a, mode, width, units, inner, lo, hi, floats, ints)
    mean, var = moments(a, floats[0], floats[1], floats[2], floats[3])
    floats[4], floats[5] = mean, var
    if math.isnan(mean):
        return REDUCED
    bins = counts.size
    span_lo, span_hi = histogram_span(mean, math.sqrt(var), floats[2], floats[3], bins)
    floats[6], floats[7] = span_lo, span_hi
    scale, offset = float32_index(span_lo, span_hi, bins)
    if math.isnan(scale) or bins > INDEX_LIMIT:
        return SPANNED
    _bins32(a, np.float32(scale), np.float32(offset), counts)
    return BINNED


@_jit("float64(float32[::1], int64, int64, int64, int64)")
def _variance(a, mode, width, units, inner):  # pragma: no cover - compiled
    """`a`'s variance, by `_reduce` and `moments` in one call; NaN where inf or NaN is present."""
    floats, ints = np.empty(4, np.float64), np.empty(3, np.int64)
    _reduce(a, mode, width, units, inner, -np.inf, np.inf, floats, ints)
    return moments(a, floats[0], floats[1], floats[2], floats[3])[1]


def variance(x: torch.Tensor) -> float | None:
    """`x`'s variance as `summarize` gives it, in one compiled call (the probe asks it of every
    parameter's gradient, where the rest of a summary cost more than the pass); None when `x`
    is not eligible or holds inf or NaN (the torch path decides)."""
    a = view(x)
    if a is None:
        return None
    var = _variance(a, *_mode(tuple(x.shape), None))
    return None if math.isnan(var) else var


@_jit("void(float32[::1], float64[::1], float64, float64, int64[::1])")
def _bins64(a, factors, lo, scale, counts):  # pragma: no cover - compiled
    """The torch path's float64 bin index: ((x·2**-k) − lo_k)·scale_k, cut, truncated."""
    top = np.float64(counts.size - 1)
    for i in range(a.size):
        v = np.float64(a[i])
        for f in factors:
            v *= f
        v = min(max((v - lo) * scale, 0.0), top)
        counts[int(v)] += 1
