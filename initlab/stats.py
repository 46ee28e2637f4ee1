"""Reductions of one tensor to a handful of numbers and a fixed-bin histogram.

Everything is computed in float32 in a few passes and read back with one `.tolist()` (one device
sync), so the probe can call this on every layer output without holding the tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BINS = 64
ROBUST_STDS = 6.0  # histogram range: mean ± 6 std, cut to [min, max]; outliers go to edge bins


@dataclass(frozen=True)
class Summary:
    """The statistics of one tensor (over all its elements; variance with correction 0)."""

    mean: float
    var: float
    std: float
    frac_zero: float
    frac_saturated: float
    nonfinite: int


def summarize(x: torch.Tensor, bounds: tuple[float, float] | None = None) -> Summary:
    """Mean, variance, std, fraction of exact zeros, fraction saturated, non-finite count.

    `bounds` are a bounded activation's (low, high); an output within 1% of the range from a
    bound counts as saturated. Without bounds, frac_saturated is NaN.
    """
    x = x.detach().float()
    n = x.numel()
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    var, mean = torch.var_mean(x, correction=0)
    parts = [mean, var, (x == 0).sum(), n - torch.isfinite(x).sum()]
    if bounds is not None:
        margin = 0.01 * (bounds[1] - bounds[0])
        parts.append(((x <= bounds[0] + margin) | (x >= bounds[1] - margin)).sum())
    values = torch.stack([p.float() for p in parts]).tolist()
    saturated = values[4] / n if bounds is not None else math.nan
    return Summary(values[0], values[1], math.sqrt(values[1]) if values[1] >= 0 else math.nan,
                   values[2] / n, saturated, int(values[3]))  # fmt: skip


def histogram_range(x: torch.Tensor, mean: float, std: float) -> tuple[float, float]:
    """A robust range for the histogram of finite values: mean ± 6 std, cut to [min, max]."""
    lo, hi = (float(v) for v in torch.aminmax(x))
    if math.isfinite(std):
        lo, hi = max(lo, mean - ROBUST_STDS * std), min(hi, mean + ROBUST_STDS * std)
    if not hi > lo:  # a constant tensor: a unit-wide window around its value
        half = max(abs(lo), 1.0) * 0.5
        lo, hi = lo - half, lo + half
    return lo, hi


def histogram(x: torch.Tensor, bins: int = BINS) -> tuple[list[float], list[float]]:
    """Bin edges (bins + 1) and counts of the finite values of `x`; outliers in the edge bins."""
    x = x.detach().float().flatten()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        x = x[finite]
    if x.numel() == 0:
        return [0.0] * (bins + 1), [0.0] * bins
    var, mean = torch.var_mean(x, correction=0)
    lo, hi = histogram_range(x, float(mean), math.sqrt(max(float(var), 0.0)))
    counts = torch.histc(x.clamp(lo, hi), bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return edges.tolist(), counts.tolist()
