"""The probe: one forward (and backward) pass with hooks that reduce every observed output and
its gradient to statistics the moment they appear.

Observed are:
- every leaf call: a module call during which no other module was called — plain leaves
  (Linear, ReLU), and modules that compute with their children's weights without calling them
  (MultiheadAttention);
- functional activations called from a module's `forward` (`F.relu(self.conv1(x))`), role
  `activation`, named after the layer whose output they take (`conv1.relu`), else after the
  module that called them (see `initlab.functional`);
- blocks, role `block`: a child of a `Sequential` or `ModuleList` that has children of its own
  and returns the shape it was given — a transformer block `h.N`, a ResNet BasicBlock that does
  not downsample. Its output is the residual stream at that depth.

Dropout is the identity during the probe unless asked for (its noise is not initialization).
Works on any `nn.Module`; hooks are removed, train/eval mode, buffers (BatchNorm running stats)
and `.grad` are restored even when the forward raises.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from initlab.functional import Observer
from initlab.layers import role_of, saturation_bounds
from initlab.stats import BINS, Span, edge_rows, summary_and_counts, variance
from initlab.units import unit_dim

LAYER_COLUMNS = [
    "order",
    "layer",
    "type",
    "role",
    "act_mean",
    "act_var",
    "act_std",
    "frac_zero",
    "frac_dead",
    "frac_saturated",
    "nonfinite",
    "grad_var",
]
HIST_COLUMNS = ["kind", "name", "bin_left", "bin_right", "count"]
# One histogram as it is measured: kind, name, bin edges (bins + 1), counts (bins).
Histogram = tuple[str, str, Sequence[float], Sequence[float]]
# A histogram as the probe measures it: kind, name, span, counts (`span_table` makes the rows).
Spanned = tuple[str, str, Span, np.ndarray]


MAX_NESTING = 16  # levels of tuples / dicts / dataclasses searched for an output tensor


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


def first_tensor(value: Any, depth: int = 0) -> torch.Tensor | None:
    """The primary floating-point tensor in a module output (tuple, list, dict, dataclass),
    looked for at most MAX_NESTING levels deep (an output may even contain itself)."""
    if depth > MAX_NESTING:
        return None
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
            found = first_tensor(item, depth + 1)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class Observed:
    """What a row is about: its name, type, role, the module that produced it (for the unit
    layout), and the saturation bounds of a bounded activation."""

    name: str
    type: str
    role: str
    module: nn.Module | None
    bounds: tuple[float, float] | None


class _Recorder:
    """Hook callbacks: a call stack to tell leaf calls from containers, and the rows."""

    def __init__(self, model: nn.Module, backward: bool, bins: int) -> None:
        self.names = {id(m): name for name, m in model.named_modules()}
        self.leaves = {id(m) for m in model.modules() if next(m.children(), None) is None}
        self.blocks = block_ids(model)
        self.backward, self.bins = backward, bins
        self.stack: list[list[Any]] = []  # [module, a child was called, input shape]
        # The layers table: a tuple per row but for grad_var, which the backward fills in
        # later (one append per row in the hook; columns made once, at the end).
        self.rows: list[tuple[Any, ...]] = []
        self.grad_vars: list[float] = []
        self.modules: list[nn.Module | None] = []  # per row: the module that produced it
        # kind, name, span, counts: the edges are made at the end, in one go (`histograms`)
        self.hists: list[Spanned] = []
        self.calls: dict[str, int] = {}
        # id(output) -> (row index, weak reference): who produced a tensor, to name the
        # functional activation that takes it and to find a broadcast operand's row.
        self.produced: dict[int, tuple[int, weakref.ref]] = {}
        self.copies: dict[int, int] = {}  # row index -> how many copies a broadcast made
        # id(module) -> what its leaf rows are about, worked out on its first call only
        self.plans: dict[int, Observed] = {}

    def pre(self, module: nn.Module, args: Any) -> None:
        if self.stack:
            self.stack[-1][1] = True
        # the input's shape tells a block only: other modules skip the search
        x = first_tensor(args) if id(module) in self.blocks else None
        self.stack.append([module, False, None if x is None else tuple(x.shape)])

    def post(self, module: nn.Module, args: Any, output: Any) -> None:
        _, had_child, in_shape = self.stack.pop()
        tensor = first_tensor(output)
        if tensor is None:
            return
        if not had_child:
            self._record(self._leaf_plan(module), tensor)
        elif id(module) in self.blocks and tuple(tensor.shape) == in_shape:
            name = self.names.get(id(module)) or type(module).__name__
            self._record(Observed(name, type(module).__name__, "block", module, None), tensor)

    def _leaf_plan(self, module: nn.Module) -> Observed:
        """What a leaf call of `module` is about (name, type, role, saturation bounds): the
        same on every call, so worked out once per probe."""
        plan = self.plans.get(id(module))
        if plan is None:
            name = self.names.get(id(module)) or type(module).__name__
            kind, bounds = type(module).__name__, saturation_bounds(module)
            plan = self.plans[id(module)] = Observed(name, kind, role_of(module), module, bounds)
        return plan

    def in_leaf(self) -> bool:
        return bool(self.stack) and id(self.stack[-1][0]) in self.leaves

    def on_activation(self, fname: str, bounds: Any, out: torch.Tensor, first: Any) -> None:
        """A functional activation: named after its input's producer, else its caller."""
        source = self._row_of(first)
        base = self.rows[source][1] if source is not None else self._caller()
        module = self.modules[source] if source is not None else None
        name = f"{base}.{fname}" if base else fname
        self._record(Observed(name, fname, "activation", module, bounds), out)

    def on_broadcast(self, operand: torch.Tensor, copies: int) -> None:
        index = self._row_of(operand)
        if index is not None:
            self.copies[index] = max(self.copies.get(index, 1), copies)

    def _caller(self) -> str:
        return self.names.get(id(self.stack[-1][0]), "") if self.stack else ""

    def _row_of(self, tensor: Any) -> int | None:
        found = self.produced.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        return found[0] if found is not None and found[1]() is tensor else None

    def _record(self, seen: Observed, tensor: torch.Tensor) -> None:
        # No torch.no_grad() here (it cost more than the rest of a small tensor's Python): the
        # fused path reads the memory through numpy, and the torch path turns grad off itself.
        with torch._C.DisableTorchFunction():  # the statistics' own ops are not the model's
            self._summarize(seen, tensor)

    def _summarize(self, seen: Observed, tensor: torch.Tensor) -> None:
        index = len(self.modules)
        dim = unit_dim(seen.module, tensor)
        s, dead, span, counts = summary_and_counts(tensor, seen.bounds, dim, self.bins)
        row = (
            index,
            seen.name,
            seen.type,
            seen.role,
            s.mean,
            s.var,
            s.std,
            s.frac_zero,
            dead,
            s.frac_saturated,
            s.nonfinite,
        )
        self.rows.append(row)
        self.grad_vars.append(math.nan)
        self.modules.append(seen.module)
        self.produced[id(tensor)] = (index, weakref.ref(tensor))
        # A name observed again gets "name#2", ... so each call's histogram stays separate.
        calls = self.calls[seen.name] = self.calls.get(seen.name, 0) + 1
        label = seen.name if calls == 1 else f"{seen.name}#{calls}"
        self.hists.append(("activation", label, span, counts))
        if self.backward and tensor.requires_grad:
            tensor.register_hook(lambda grad, i=index, n=label: self._on_grad(i, n, grad))

    def _on_grad(self, index: int, name: str, grad: torch.Tensor) -> None:
        s, _, span, counts = summary_and_counts(grad, None, None, self.bins)
        # A broadcast output's gradient is the sum over its copies (a position embedding's
        # over the batch); one copy's gradient has 1/copies of that variance.
        self.grad_vars[index] = s.var / self.copies.get(index, 1)
        self.hists.append(("gradient", name, span, counts))

    def broadcast_modules(self) -> dict[str, int]:
        """Module name -> copies, for the modules whose output was broadcast."""
        return {self.rows[i][1]: c for i, c in self.copies.items()}

    def columns(self) -> LayerColumns:
        """The layers table's columns (`layer_table` makes the table)."""
        if not self.rows:
            return {name: () for name in LAYER_COLUMNS}
        columns = dict(zip(LAYER_COLUMNS[:-1], zip(*self.rows, strict=True), strict=True))
        return {**columns, "grad_var": self.grad_vars}


# The layers table as columns: LAYER_COLUMNS -> one value per row.
LayerColumns = dict[str, Sequence[Any]]


def layer_table(columns: LayerColumns) -> pd.DataFrame:
    """The layers table from its columns (`_Recorder.columns`)."""
    if not len(columns["order"]):  # typed like a frame of no rows (object columns)
        return pd.DataFrame([], columns=LAYER_COLUMNS)
    return pd.DataFrame(columns)


def repeated(
    values: Sequence[str], sizes: Sequence[int] | np.ndarray | int
) -> pd.api.extensions.ExtensionArray:
    """values[i] repeated sizes[i] (or `sizes`) times, as a table's string column: taken by
    index from the distinct strings (one arrow take), where inferring the column from one
    Python string per row cost a fifth of a whole run's table building."""
    index = np.repeat(np.arange(len(values)), sizes)
    return pd.array(list(values), dtype="str").take(index)


def histogram_table(hists: list[Histogram]) -> pd.DataFrame:
    """The histograms table, one row per bin, built column by column from numpy arrays:
    building it from one dict per bin cost a quarter of a whole run of the app's default
    experiment."""
    sizes = [len(counts) for _, _, _, counts in hists]
    if not sum(sizes):  # typed like a frame of no rows (object columns)
        return pd.DataFrame([], columns=HIST_COLUMNS)
    edges = [np.asarray(e) for _, _, e, _ in hists]
    columns = {
        "kind": repeated([h[0] for h in hists], sizes),
        "name": repeated([h[1] for h in hists], sizes),
        "bin_left": np.concatenate([e[:n] for e, n in zip(edges, sizes, strict=True)]),
        "bin_right": np.concatenate([e[1 : n + 1] for e, n in zip(edges, sizes, strict=True)]),
        "count": np.concatenate([np.asarray(counts) for _, _, _, counts in hists]),
    }
    return pd.DataFrame(columns)


def span_table(hists: Sequence[Spanned], bins: int) -> pd.DataFrame:
    """The histograms table from (kind, name, span, counts) of `bins` counts each: what
    `histogram_table` gives for their `edges`, with every edge made in one vectorized call."""
    if not hists or not bins:  # typed like a frame of no rows (object columns)
        return pd.DataFrame([], columns=HIST_COLUMNS)
    kinds, names, spans, counts = zip(*hists, strict=True)
    rows = edge_rows(spans, bins)
    columns = {
        "kind": repeated(kinds, bins),
        "name": repeated(names, bins),
        "bin_left": rows[:, :-1].ravel(),
        "bin_right": rows[:, 1:].ravel(),
        "count": np.concatenate(counts).astype(np.float64),
    }
    return pd.DataFrame(columns)


def block_ids(model: nn.Module) -> set[int]:
    """Children of a Sequential or ModuleList that have children of their own: the candidate
    blocks (each is a block when it returns the shape it was given)."""
    found = set()
    for module in model.modules():
        if isinstance(module, nn.Sequential | nn.ModuleList):
            found |= {id(c) for c in module.children() if next(c.children(), None) is not None}
    return found


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


@contextmanager
def without_dropout(model: nn.Module, off: bool) -> Iterator[None]:
    """Dropout the observer cannot reach, off too: dropout modules in eval mode, and the
    attention dropout that MultiheadAttention applies inside one fused function (restored)."""
    saved = []
    if off:
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.training = False  # `preserved` restores every module's mode
            elif isinstance(m, nn.MultiheadAttention) and m.dropout:
                saved.append((m, m.dropout))
                m.dropout = 0.0
    try:
        yield
    finally:
        for m, p in saved:
            m.dropout = p


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


Loss = Callable[[torch.Tensor], torch.Tensor]


def _backward(output: Any, generator: torch.Generator | None, loss: Loss | None = None) -> None:
    """Backward from a standard-normal cotangent, so the output gradient has variance 1; or,
    with `loss`, from the scalar `loss(output)` (a training task's loss on its targets)."""
    out = first_tensor(output)
    if out is None or not out.requires_grad:
        return
    try:
        if loss is not None:
            loss(out).backward()
            return
        # Drawn on the CPU from `generator`, so every device gives the same numbers.
        cotangent = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        # d(sum(out · c))/d(out) is c, bit for bit; unlike out.backward(c), it does not make
        # autograd import torch.fx's symbolic shapes (and sympy) on a process's first backward
        (out * cotangent.to(out.device)).sum().backward()
    except ProbeError:
        raise
    except Exception as exc:  # the model's own backward (a custom autograd Function) broke
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ProbeError(f"backward pass failed: {reason}") from exc


def probe(
    model: nn.Module,
    inputs: Any,
    backward: bool = True,
    generator: torch.Generator | None = None,
    bins: int = BINS,
    train: bool = True,
    dropout: bool = False,
    loss: Loss | None = None,
) -> ProbeResult:
    """Run `model` on `inputs` (a tensor, a tuple of positional tensors, or a dict of keyword
    tensors) and measure every leaf call, functional activation and block; with `backward`,
    also the gradients. `train` is the modules' mode (BatchNorm's batch statistics);
    `dropout` False makes dropout the identity, whatever the mode. `loss` (output -> scalar)
    replaces the random cotangent: the gradients are then the loss's own."""
    measured = measure(model, inputs, backward, generator, bins, train, dropout, loss)
    layers, hists = layer_table(measured.columns), span_table(measured.hists, bins)
    return ProbeResult(layers, hists, measured.param_grad_var)


class Measured(NamedTuple):
    """`probe`'s results with its tables unmade: a caller that runs many probes makes one layers
    table and one histograms table for all of them (`initlab.run`)."""

    columns: LayerColumns
    hists: list[Spanned]
    param_grad_var: dict[str, float]


def measure(
    model: nn.Module,
    inputs: Any,
    backward: bool = True,
    generator: torch.Generator | None = None,
    bins: int = BINS,
    train: bool = True,
    dropout: bool = False,
    loss: Loss | None = None,
) -> Measured:
    """`probe`, with the layers as columns and the histograms as (kind, name, span, counts)."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins: must be a whole number >= 1; got {bins!r}")
    recorder = _Recorder(model, backward, bins)
    observer = Observer(recorder.in_leaf, recorder.on_activation, recorder.on_broadcast, dropout)
    with preserved(model, train), without_dropout(model, off=not dropout):
        with hooked(model, recorder), torch.set_grad_enabled(backward):
            with observer:  # the forward pass only: backward calls no torch functions of ours
                output = _call(model, inputs)
            if backward:
                _backward(output, generator, loss)
        del output  # nothing of the pass outlives the statistics
        grad_var = _param_grad_var(model, recorder.broadcast_modules()) if backward else {}
    return Measured(recorder.columns(), recorder.hists, grad_var)


def _param_grad_var(model: nn.Module, copies: dict[str, int]) -> dict[str, float]:
    """Each parameter's gradient variance, under its `named_parameters` name (a tied one once);
    a module whose output was broadcast (a position embedding added to every sample) has it
    per copy, comparable with unbroadcast ones."""
    out = {}
    for name, p in model.named_parameters():
        var = variance(p.grad) if p.grad is not None else float("nan")
        out[name] = var / copies.get(name.rpartition(".")[0], 1)
    return out
