"""Reductions of one tensor to a handful of numbers and a fixed-bin histogram.

Everything is computed in float32 with vectorized passes (a two-pass variance: torch's
`var_mean` uses a serial Welford loop that costs more than the layer's own matmul on a CPU)
and read back with one `.tolist()` (one device sync), so the probe can call this on every
layer output without holding on to the tensor.
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
    low: float = math.nan  # min and max, for the histogram's range
    high: float = math.nan


def summarize(x: torch.Tensor, bounds: tuple[float, float] | None = None) -> Summary:
    """Mean, variance, std, fraction of exact zeros, fraction saturated, non-finite count.

    `bounds` are a bounded activation's (low, high); an output within 1% of the range from a
    bound counts as saturated. Without bounds, frac_saturated is NaN.
    """
    x = x.detach().float()
    n = x.numel()
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    mean = x.mean()
    parts = [mean, (x - mean).square().mean(), n - torch.count_nonzero(x), *torch.aminmax(x)]
    if bounds is not None:
        margin = 0.01 * (bounds[1] - bounds[0])
        parts.append(((x <= bounds[0] + margin) | (x >= bounds[1] - margin)).sum())
    values = torch.stack([p.float() for p in parts]).tolist()
    nonfinite = 0 if math.isfinite(values[1]) else _count_nonfinite(x)
    saturated = values[5] / n if bounds is not None else math.nan
    std = math.sqrt(values[1]) if values[1] >= 0 else math.nan
    return Summary(values[0], values[1], std, values[2] / n, saturated, nonfinite, *values[3:5])


def _count_nonfinite(x: torch.Tensor) -> int:
    # Only reached when the variance is not finite: a finite sum of squares means no inf/NaN.
    return int(x.numel() - torch.isfinite(x).sum())


def histogram_range(summary: Summary) -> tuple[float, float]:
    """A robust range for the histogram: mean ± 6 std, cut to [min, max]."""
    lo, hi = summary.low, summary.high
    if math.isfinite(summary.std):
        lo = max(lo, summary.mean - ROBUST_STDS * summary.std)
        hi = min(hi, summary.mean + ROBUST_STDS * summary.std)
    if not hi > lo:  # a constant tensor: a unit-wide window around its value
        half = max(abs(lo), 1.0) * 0.5 if math.isfinite(lo) else 0.5
        lo, hi = (
            (lo if math.isfinite(lo) else 0.0) - half,
            (lo if math.isfinite(lo) else 0.0) + half,
        )
    return lo, hi


def histogram(
    x: torch.Tensor, bins: int = BINS, summary: Summary | None = None
) -> tuple[list[float], list[float]]:
    """Bin edges (bins + 1) and counts of the finite values of `x`; outliers in the edge bins.

    Pass the tensor's `summary` when it is already computed, to save the reductions.
    """
    x = x.detach().float().flatten()
    if summary is None or summary.nonfinite:
        if summary is not None or not bool(torch.isfinite(x).all()):
            x = x[torch.isfinite(x)]
        if x.numel() == 0:
            return [0.0] * (bins + 1), [0.0] * bins
        summary = summarize(x)
    lo, hi = histogram_range(summary)
    if lo > summary.low or hi < summary.high:  # the range was cut: fold outliers into edges
        x = x.clamp(lo, hi)
    counts = torch.histc(x, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return edges.tolist(), counts.tolist()
