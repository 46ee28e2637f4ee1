"""Fused reductions for the probe's hot path: one compiled pass over a contiguous CPU float32
tensor for every moment and count of `stats.summarize` and the per-unit dead count of
`units.dead_fraction`, and one more for the histogram's bin counts.

Why: the plain torch path launches ~15 kernels per tensor (sum, sum of squares, sign, min/max,
comparisons, the bin indices, bincount), each a pass over memory with its own temporary and
dispatch cost; on a CPU that is most of the probe's time.

Exactness (no fast-math anywhere, so the compiler keeps the written order of every operation):
- sums and sums of squares are accumulated in float64 in independent lanes (per unit for
  (rows, units) layouts, 8 lanes otherwise), then the lanes are summed: the square of a float32
  is exact in float64, and float64 holds every float32 square, so nothing over- or underflows;
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
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

try:
    import numba
except ImportError:  # the torch path serves every tensor
    numba = None

ENV = "INITLAB_FUSED"  # "0" turns the fused path off for the whole process
_OFF = os.environ.get(ENV) == "0"  # read once: a process-wide setting, not per call
LANES = 8  # independent float64 accumulators per block: keeps the adders busy
_local = threading.local()


@dataclass(frozen=True)
class Reduced:
    """One tensor's raw reductions: float64 sums, counts, and the float32 min and max."""

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
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.numel() > 0
        and x.is_contiguous()
        and enabled()
    )


def _array(x: torch.Tensor) -> np.ndarray:
    """The tensor's memory as a flat numpy array (no copy)."""
    return x.detach().reshape(-1).numpy()


def reduce(x: torch.Tensor, bounds: tuple[float, float] | None, dim: int | None) -> Reduced | None:
    """Sums, counts, min and max of `x` in one pass, and how many units along `dim` are zero
    everywhere (0 when `dim` is None); None when `x` is not eligible."""
    if not eligible(x):
        return None
    lo, hi = _saturation_limits(bounds)
    floats, ints = np.empty(4, np.float64), np.empty(3, np.int64)
    _, units, inner = _layout(tuple(x.shape), dim)
    if inner == 1 and units > 1:
        _rows(_array(x), units, lo, hi, floats, ints)
    elif dim is None and x.dim() > 1 and x.shape[-1] > 1:  # no units: lanes on the last dim
        _rows(_array(x), x.shape[-1], lo, hi, floats, ints)
        ints[2] = 0
    else:
        _blocks(_array(x), units, inner, lo, hi, floats, ints)
    return Reduced(*floats[:2].tolist(), *ints.tolist(), *floats[2:].tolist())


def _saturation_limits(bounds: tuple[float, float] | None) -> tuple[np.float32, np.float32]:
    """The torch path's saturation limits, as float32 like the torch comparison makes them;
    ±inf (never reached by a finite value) without bounds."""
    if bounds is None:
        return np.float32(-np.inf), np.float32(np.inf)
    margin = 0.01 * (bounds[1] - bounds[0])
    return np.float32(bounds[0] + margin), np.float32(bounds[1] - margin)


def _layout(shape: tuple[int, ...], dim: int | None) -> tuple[int, int, int]:
    """(outer, units, inner): the flat tensor as outer × units × inner, units along `dim`."""
    if dim is None:
        return 1, 1, math.prod(shape)
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])


def bin_counts(x: torch.Tensor, bins: int, index: tuple) -> np.ndarray | None:
    """Counts per bin of the finite, eligible `x` with the torch path's bin `index` parameters
    (see `stats._index_parameters`); None when `x` is not eligible."""
    if not eligible(x):
        return None
    counts = np.zeros(bins, np.int64)
    if index[0] == "float32":
        _bins32(_array(x), np.float32(index[1]), np.float32(index[2]), counts)
    else:
        # the powers of two of `stats._scaled` on float32 input, in the same order
        factors = np.asarray(index[4], np.float64)
        _bins64(_array(x), factors, float(index[2]), float(index[3]), counts)
    return counts


# ---------------------------------------------------------------- the kernels


def _jit(signature: str) -> Callable[[Callable], Callable]:
    """numba's njit for one explicit signature (compiled at import, or loaded from numba's
    disk cache), fast-math off; the plain function where numba is missing."""
    if numba is None:
        return lambda fn: fn
    return numba.njit(signature, cache=True, nogil=True)


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


@_jit("void(float32[::1], int64, float32, float32, float64[::1], int64[::1])")
def _rows(a, width, lo, hi, floats, ints):  # pragma: no cover - compiled
    """`a` as rows of `width` units: per-unit lanes (independent, so the loop vectorizes)."""
    s = np.zeros(width, np.float64)
    q = np.zeros(width, np.float64)
    mn = np.full(width, np.inf, np.float32)
    mx = np.full(width, -np.inf, np.float32)
    z = np.zeros(width, np.int64)
    sat = np.zeros(width, np.int64)
    rows = a.size // width
    for r in range(rows):
        row = a[r * width : (r + 1) * width]
        for j in range(width):
            v = row[j]
            d = np.float64(v)
            s[j] += d
            q[j] += d * d
            mn[j] = v if v < mn[j] else mn[j]  # plain selects: faster than min() here
            mx[j] = v if v > mx[j] else mx[j]
            z[j] += np.int64(v == 0)
            sat[j] += np.int64(v <= lo) | np.int64(v >= hi)
    _finish(s, q, mn, mx, floats)
    ints[0] = z.sum()
    ints[1] = sat.sum()
    ints[2] = (z == rows).sum()


@_jit("void(float32[::1], int64, int64, float32, float32, float64[::1], int64[::1])")
def _blocks(a, units, inner, lo, hi, floats, ints):  # pragma: no cover - compiled
    """`a` as outer × units × inner, each contiguous block of `inner` in LANES lanes."""
    s = np.zeros(LANES, np.float64)
    q = np.zeros(LANES, np.float64)
    mn = np.full(LANES, np.inf, np.float32)
    mx = np.full(LANES, -np.inf, np.float32)
    alive = np.zeros(units, np.bool_)
    zeros, sat = 0, 0
    for block in range(a.size // inner):
        base, zb = block * inner, 0
        for start in range(0, inner, LANES):
            for j in range(min(LANES, inner - start)):
                v = a[base + start + j]
                d = np.float64(v)
                s[j] += d
                q[j] += d * d
                mn[j] = v if v < mn[j] else mn[j]
                mx[j] = v if v > mx[j] else mx[j]
                zb += np.int64(v == 0)
                sat += np.int64(v <= lo) | np.int64(v >= hi)
        zeros += zb
        if zb < inner:
            alive[block % units] = True
    _finish(s, q, mn, mx, floats)
    ints[0] = zeros
    ints[1] = sat
    ints[2] = units - alive.sum()


@_jit("void(float32[::1], float32, float32, int64[::1])")
def _bins32(a, scale, offset, counts):  # pragma: no cover - compiled
    """The torch path's float32 bin index: (x·scale − offset) cut to [0, bins − 1], truncated."""
    top = np.float32(counts.size - 1)
    for i in range(a.size):
        v = a[i] * scale - offset
        v = min(max(v, np.float32(0)), top)
        counts[int(v)] += 1


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
