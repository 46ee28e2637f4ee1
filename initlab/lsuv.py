"""LSUV, layer-sequential unit-variance initialization (Mishkin & Matas 2015, Algorithm 1).

Each layer a rule gives the method `lsuv` is first drawn orthonormal (Saxe et al. 2013); then,
layer by layer in the order the forward pass reaches them, its weight is divided by the square
root of the variance of its output on a data batch, until |Var − 1| < tol or `max_iter`
rescalings. Iteration 0 is the variance right after the orthonormal draw; every iteration is
one forward pass, stopped as soon as the layer's output is seen (later layers do not matter yet).

What the forward passes see, and why:
- the model in the mode it is in (a fresh model trains: BatchNorm normalizes by the batch, as
  the probe and the first training step then see it), with dropout off (its masks would come
  from the global RNG) and every buffer restored afterwards (BatchNorm's running statistics);
- the variance is torch's (unbiased) over every element of the output, in float64;
- a layer whose output has variance 0 or not finite cannot be rescaled: its iterations stop.
A forward pass is stopped once the layer's output is seen, which assumes the forward has no
side effects beyond buffers (no state carried from one call to the next).

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
            name, kind = type(layer).__name__, type(output).__name__
            raise TypeError(f"lsuv: a {name} layer returns {kind}, not a tensor")
        found.append(output.detach().to(torch.float64).var().item())
        raise _Seen

    handle = module.register_forward_hook(hook)
    try:
        model(batch)
    except _Seen:
        pass
    finally:
        handle.remove()
    if not found:  # the forward took another way once an earlier layer was rescaled
        raise ValueError(f"lsuv: a {type(module).__name__} layer was not reached")
    return found[0]


def _quiet(model: nn.Module) -> list[tuple]:
    """Dropout off for the passes; what to restore: (module, training, MHA dropout)."""
    saved = [(m, m.training, getattr(m, "dropout", None)) for m in model.modules()]
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0  # applied inside one fused function, whatever the mode
    return saved


def _restore(saved: list[tuple], buffers: list[tuple]) -> None:
    for m, training, dropout in saved:
        m.training = training
        if isinstance(m, nn.MultiheadAttention):
            m.dropout = dropout
    for buffer, value in buffers:
        buffer.copy_(value)


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
    buffers = [(b, b.clone()) for b in model.buffers()]
    saved = _quiet(model)
    try:
        order = _forward_order(model, [layer[0] for layer in layers], batch)
        log = []
        for i in order:
            module, weight, tol, max_iter = layers[i]
            rows = _rescale(model, module, weight, batch, tol, max_iter)
            log += [(i, *row) for row in rows]
    finally:
        _restore(saved, buffers)
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


# ---------------------------------------------------------------- before anything is drawn


def check_batch(model: nn.Module, layers: list[tuple[str, nn.Module]], batch: object) -> None:
    """Raise ValueError unless `batch` is a finite tensor the model takes, on which every
    (param name, module) of `layers` is called and returns a tensor of 2 elements or more.

    One forward pass as LSUV's (dropout off, buffers restored), before any tensor is drawn,
    so a refused batch leaves the model as it was."""
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"batch: must be a torch.Tensor; got {type(batch).__name__}")
    if batch.is_floating_point() and not bool(torch.isfinite(batch).all()):
        raise ValueError("batch: holds NaN or infinite values; LSUV needs finite variances")
    outputs = _outputs(model, [m for _, m in layers], batch)
    for (param, module), out in zip(layers, outputs, strict=True):
        problem = _output_problem(module, out)
        if problem:
            raise ValueError(f"{param}: {problem}")


def _outputs(model: nn.Module, modules: list[nn.Module], batch: torch.Tensor) -> list:
    """Each module's first output on `batch` (None if never called), by one pass."""
    found: dict[int, object] = {}
    hooks = [
        m.register_forward_hook(lambda m, a, out, i=i: found.setdefault(i, out))
        for i, m in enumerate(modules)
    ]
    buffers, saved = [(b, b.clone()) for b in model.buffers()], _quiet(model)
    try:
        with torch.no_grad():
            model(batch)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        head = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shape = f"{list(batch.shape)} ({batch.dtype})"
        raise ValueError(f"batch: the model fails on a batch of shape {shape}: {head}") from None
    finally:
        for h in hooks:
            h.remove()
        _restore(saved, buffers)
    return [found.get(i) for i in range(len(modules))]


def _output_problem(module: nn.Module, out: object) -> str | None:
    kind = type(module).__name__
    if out is None:
        return (
            f"its {kind} is never called as a module by the forward pass (MultiheadAttention "
            "uses its out_proj inside one fused function), so LSUV cannot see its output; give "
            'it another method by an earlier rule (e.g. {"layers": "Linear", "name": '
            '"*out_proj", "weight": "orthogonal"})'
        )
    if not isinstance(out, torch.Tensor):
        return f"its {kind} returns {type(out).__name__}, not a tensor, so LSUV cannot use it"
    if out.numel() < 2:
        return f"its {kind}'s output has {out.numel()} element on this batch; LSUV needs 2 or more"
    return None
