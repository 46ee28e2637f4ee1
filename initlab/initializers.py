"""Initializers that `torch.nn.init` lacks or that need a fix to be reproducible.

Each function is self-contained (only `math`, `torch`, `nn`) because `initlab.codegen` copies
its source verbatim into generated code: the exported `initialize_weights` then runs exactly
these lines, which is what makes the export bit-identical to `apply_scheme`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TRUNC_STD_2SIGMA = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]


def sparse_(tensor, sparsity, std=0.01, generator=None):
    """Martens (2010) sparse init: N(0, std) with ceil(sparsity * rows) zeros per column.

    Unlike `torch.nn.init.sparse_`, whose zero pattern ignores `generator`, every random draw
    here comes from `generator`, so the pattern is reproducible.
    """
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    with torch.no_grad():
        tensor.normal_(0.0, std, generator=generator)
        if num_zeros:
            # A random permutation of the rows of each column: argsort of uniform noise.
            order = torch.rand(rows, cols, generator=generator).argsort(dim=0)
            tensor.scatter_(0, order[:num_zeros].to(tensor.device), 0.0)
    return tensor


def variance_scaling_(
    tensor, scale=1.0, mode="fan_in", distribution="truncated_normal", generator=None
):
    """Keras/JAX variance scaling: std = sqrt(scale / n), n = fan_in, fan_out or their mean.

    `truncated_normal` cuts at two standard deviations and divides by the std of the cut
    normal, so the final std is the target, as in JAX. LeCun normal is scale=1, fan_in.
    """
    receptive = tensor[0][0].numel() if tensor.dim() > 2 else 1
    fan_in, fan_out = tensor.size(1) * receptive, tensor.size(0) * receptive
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / n)
    with torch.no_grad():
        if distribution == "normal":
            return tensor.normal_(0.0, std, generator=generator)
        if distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return tensor.uniform_(-bound, bound, generator=generator)
        std = std / 0.87962566103423978
        return nn.init.trunc_normal_(tensor, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)
