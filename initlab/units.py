"""Per-unit health: a unit (a feature of a Linear output, a channel of a convolution's) is dead
when it is zero for every sample, which element-wise zero counts cannot tell from a ReLU that
is simply off half the time."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

# Modules whose 3-D outputs are (batch, channels, length); other 3-D outputs are read as
# (batch, tokens, features), the transformer layout.
CHANNELS_FIRST = (
    _ConvNd,
    _BatchNorm,
    _InstanceNorm,
    nn.GroupNorm,
    nn.MaxPool1d,
    nn.AvgPool1d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
)


def unit_dim(module: nn.Module | None, tensor: torch.Tensor) -> int | None:
    """Which dimension indexes the units of this output; None when it has no batch of units."""
    if tensor.dim() < 2:
        return None
    if tensor.dim() == 3 and not isinstance(module, CHANNELS_FIRST):
        return 2
    return 1


@torch.no_grad()
def dead_fraction(x: torch.Tensor, dim: int | None) -> float:
    """Fraction of units along `dim` whose output is exactly zero for every sample (and every
    position). Two reductions (max and min over the other dimensions), no full-size temporary."""
    if dim is None or x.numel() == 0:
        return math.nan
    dim %= x.dim()  # a negative axis counts from the end, as in torch
    others = tuple(d for d in range(x.dim()) if d != dim)
    if not others:  # each element is a unit (amax over no dims would reduce over all of them)
        return float((x == 0).sum()) / x.shape[dim]
    zero = (x.amax(dim=others) == 0) & (x.amin(dim=others) == 0)
    return float(zero.sum()) / x.shape[dim]
