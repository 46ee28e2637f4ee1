"""The probe: one forward (and backward) pass with hooks that reduce every leaf-module call's
output and gradient to statistics the moment they appear.

A "leaf call" is a module call during which no other module was called: plain leaves
(Linear, ReLU), and also modules that compute with their children's weights without calling
them (MultiheadAttention). Works on any `nn.Module`; hooks are removed, train/eval mode,
buffers (BatchNorm running stats) and `.grad` are restored even when the forward raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from initlab.layers import role_of, saturation_bounds
from initlab.stats import BINS, histogram, summarize

LAYER_COLUMNS = ["order", "layer", "type", "role", "act_mean", "act_var", "act_std", "frac_zero",
                 "frac_saturated", "nonfinite", "grad_var"]  # fmt: skip
HIST_COLUMNS = ["kind", "name", "bin_left", "bin_right", "count"]


class ProbeError(RuntimeError, ValueError):
    """The model's forward pass raised; the message names the layer that broke.

    Also a ValueError: a model that breaks on the experiment's input (a wrong input.shape, a
    token id beyond the vocabulary) is a bad experiment, answered like any other."""


@dataclass
class ProbeResult:
    """What one probe measured: a row per leaf call, binned histograms, weight-gradient variance."""

    layers: pd.DataFrame
    histograms: pd.DataFrame
    param_grad_var: dict[str, float] = field(default_factory=dict)


def first_tensor(value: Any) -> torch.Tensor | None:
    """The primary floating-point tensor in a module output (tuple, list, dict, dataclass)."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() or value.is_complex() else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = [getattr(value, f.name) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        value = list(value.values())
    elif hasattr(value, "to_tuple"):  # Hugging Face ModelOutput
        value = value.to_tuple()
    if isinstance(value, list | tuple):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


class _Recorder:
    """Hook callbacks: a call stack to tell leaf calls from containers, and the rows."""

    def __init__(self, names: dict[int, str], backward: bool, bins: int) -> None:
        self.names, self.backward, self.bins = names, backward, bins
        self.stack: list[list[Any]] = []  # [module, a child was called]
        self.rows: list[dict[str, Any]] = []
        self.hists: list[tuple[str, str, list[float], list[float]]] = []
        self.calls: dict[str, int] = {}

    def pre(self, module: nn.Module, args: Any) -> None:
        if self.stack:
            self.stack[-1][1] = True
        self.stack.append([module, False])

    def post(self, module: nn.Module, args: Any, output: Any) -> None:
        _, had_child = self.stack.pop()
        tensor = None if had_child else first_tensor(output)
        if tensor is not None:
            self._record(module, tensor)

    @torch.no_grad()  # statistics are not part of the graph; skip autograd's bookkeeping
    def _record(self, module: nn.Module, tensor: torch.Tensor) -> None:
        index, name = len(self.rows), self.names.get(id(module)) or type(module).__name__
        s = summarize(tensor, saturation_bounds(module))
        self.rows.append({
            "order": index, "layer": name, "type": type(module).__name__, "role": role_of(module),
            "act_mean": s.mean, "act_var": s.var, "act_std": s.std, "frac_zero": s.frac_zero,
            "frac_saturated": s.frac_saturated, "nonfinite": s.nonfinite, "grad_var": float("nan"),
        })  # fmt: skip
        # A module called again gets "name#2", ... so each call's histogram stays separate.
        calls = self.calls[name] = self.calls.get(name, 0) + 1
        label = name if calls == 1 else f"{name}#{calls}"
        self.hists.append(("activation", label, *histogram(tensor, self.bins, s)))
        if self.backward and tensor.requires_grad:
            tensor.register_hook(lambda grad, i=index, n=label: self._on_grad(i, n, grad))

    @torch.no_grad()
    def _on_grad(self, index: int, name: str, grad: torch.Tensor) -> None:
        s = summarize(grad)
        self.rows[index]["grad_var"] = s.var
        self.hists.append(("gradient", name, *histogram(grad, self.bins, s)))

    def histograms(self) -> pd.DataFrame:
        rows = [
            {"kind": kind, "name": name, "bin_left": edges[i], "bin_right": edges[i + 1],
             "count": count}
            for kind, name, edges, counts in self.hists
            for i, count in enumerate(counts)
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=HIST_COLUMNS)


@contextmanager
def hooked(model: nn.Module, recorder: _Recorder) -> Iterator[None]:
    """Attach the recorder to every module; always detach, and name the layer that broke."""
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(recorder.pre))
        handles.append(module.register_forward_hook(recorder.post))
    try:
        yield
    except Exception as exc:
        if not recorder.stack:
            raise
        broken = recorder.stack[-1][0]
        name = recorder.names.get(id(broken)) or "the model itself"
        raise ProbeError(
            f"forward pass failed in layer '{name}' ({type(broken).__name__}): {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def preserved(model: nn.Module, train: bool) -> Iterator[None]:
    """Set train/eval mode for the probe; restore modes, buffers and .grad afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, p.grad) for p in model.parameters()]
    for p, _ in grads:
        p.grad = None
    model.train(train)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for p, grad in grads:
            p.grad = grad


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def _backward(output: Any, generator: torch.Generator | None) -> None:
    """Backward from a standard-normal cotangent, so the output gradient has variance 1."""
    out = first_tensor(output)
    if out is None or not out.requires_grad:
        return
    # Drawn on the CPU from `generator`, so every device gives the same numbers.
    cotangent = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    out.backward(cotangent.to(out.device))


def probe(
    model: nn.Module,
    inputs: Any,
    backward: bool = True,
    generator: torch.Generator | None = None,
    bins: int = BINS,
    train: bool = True,
) -> ProbeResult:
    """Run `model` on `inputs` (a tensor, a tuple of positional tensors, or a dict of keyword
    tensors) and measure every leaf call; with `backward`, also the gradients."""
    names = {id(m): name for name, m in model.named_modules()}
    recorder = _Recorder(names, backward, bins)
    grad_var: dict[str, float] = {}
    with preserved(model, train):
        with hooked(model, recorder), torch.set_grad_enabled(backward):
            output = _call(model, inputs)
            if backward:
                _backward(output, generator)
        del output  # nothing of the pass outlives the statistics
        grad_var = _param_grad_var(model) if backward else {}
    layers = pd.DataFrame(recorder.rows, columns=LAYER_COLUMNS)
    return ProbeResult(layers, recorder.histograms(), grad_var)


def _param_grad_var(model: nn.Module) -> dict[str, float]:
    return {
        name: summarize(p.grad).var if p.grad is not None else float("nan")
        for name, p in model.named_parameters()
    }
