"""LSUV, layer-sequential unit-variance initialization (Mishkin & Matas 2015, Algorithm 1).

Each layer a rule gives the method `lsuv` is first drawn orthonormal (Saxe et al. 2013); then,
layer by layer in the order the forward pass reaches them, its weight is divided by the square
root of the variance of its output on a data batch, until |Var − 1| < tol or `max_iter`
rescalings. Iteration 0 is the variance right after the orthonormal draw; every iteration is
one forward pass, stopped as soon as the layer's output is seen (later layers do not matter yet).

What the forward passes see, and why:
- eval mode, restored afterwards: dropout would draw from the global RNG (not reproducible,
  and not the generator's) and BatchNorm would update its running statistics;
- the variance is torch's (unbiased) over every element of the output, in float64;
- a layer whose output has variance 0 or not finite cannot be rescaled: its iterations stop.

The functions below use nothing but torch, so the exported code copies them verbatim and
gives the same tensors bit for bit (`initlab.codegen`).
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

LSUV_COLUMNS = ["layer", "param", "iteration", "variance", "converged"]


class _Seen(Exception):
    """Raised once the layer's output is seen: the rest of the pass is not needed."""


def _forward_order(
    model: nn.Module,
    modules: list[nn.Module],
    batch: torch.Tensor,
) -> list[int]:
    """Indices into `modules` in the order one forward pass first calls them."""
    order: list[int] = []

    def seen(i: int):
        return lambda module, args, output: order.append(i) if i not in order else None

    handles = [m.register_forward_hook(seen(i)) for i, m in enumerate(modules)]
    try:
        model(batch)
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in range(len(modules)) if i not in order]
    if missing:
        name = type(modules[missing[0]]).__name__
        raise ValueError(f"lsuv: a {name} layer is never called by the forward pass")
    return order


def _output_variance(model: nn.Module, module: nn.Module, batch: torch.Tensor) -> float:
    """The variance of `module`'s output on `batch` (the pass stops right after it)."""
    found: list[float] = []

    def hook(layer: nn.Module, args: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor):
            name = type(layer).__name__
            kind = type(output).__name__
            raise ValueError(f"lsuv: a {name} layer returns {kind}, not one tensor")
        found.append(output.detach().to(torch.float64).var().item())
        raise _Seen

    handle = module.register_forward_hook(hook)
    try:
        model(batch)
    except _Seen:
        pass
    finally:
        handle.remove()
    return found[0]


def _rescale(
    model: nn.Module,
    module: nn.Module,
    weight: torch.Tensor,
    batch: torch.Tensor,
    tol: float,
    max_iter: int,
) -> list[tuple[int, float]]:
    """Divide `weight` by √Var(output) until |Var − 1| < tol; log (iteration, var)."""
    log = []
    for iteration in range(max_iter + 1):
        var = _output_variance(model, module, batch)
        log.append((iteration, var))
        if abs(var - 1.0) < tol or iteration == max_iter or not 0.0 < var < math.inf:
            break
        weight.div_(math.sqrt(var))
    return log


@torch.no_grad()
def lsuv_rescale(
    model: nn.Module, layers: list[tuple], batch: torch.Tensor
) -> list[tuple[int, int, float]]:
    """LSUV over `layers`, (module, weight, tol, max_iter) each, on `batch`, in
    forward order. The log: (index into `layers`, iteration, variance) per pass."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        order = _forward_order(model, [layer[0] for layer in layers], batch)
        log = []
        for i in order:
            module, weight, tol, max_iter = layers[i]
            rows = _rescale(model, module, weight, batch, tol, max_iter)
            log += [(i, *row) for row in rows]
    finally:
        for m, training in modes:
            m.training = training
    return log


def log_table(params: list[str], layers: list[tuple], log: list[tuple]) -> pd.DataFrame:
    """The log as a table: a row per forward pass; `converged` once |Var − 1| < tol."""
    index = [row[0] for row in log]
    variance = [row[2] for row in log]
    tol = [layers[i][2] for i in index]
    return pd.DataFrame(
        {
            "layer": [params[i].rpartition(".")[0] for i in index],
            "param": [params[i] for i in index],
            "iteration": pd.array([row[1] for row in log], dtype="int64"),
            "variance": pd.array(variance, dtype="float64"),
            "converged": [abs(v - 1.0) < t for v, t in zip(variance, tol, strict=True)],
        },
        columns=LSUV_COLUMNS,
    )
