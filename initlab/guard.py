"""The resource guard: estimate an experiment's memory and time before building anything,
and refuse one above the budget with a message that says what to shrink.

The estimate runs the model on PyTorch's meta device (shapes, no storage, no arithmetic), so
it is exact about tensor sizes and takes well under a second even for a 1000-layer network.

Most of PyTorch's meta kernels are written in Python, and the first one called imports sympy,
torch.fx's symbolic shapes and torch.distributed's tensor ops (about 800 modules, over a second
once per process). The shape pass below computes the common operators' outputs from their
arguments' shapes itself, so a fresh process's first experiment does not pay that import; any
other operator is handed to PyTorch's own meta kernel, which stays the authority.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from initlab.models import MODELS
from initlab.outline import meta_model
from initlab.params import shown
from initlab.probe import first_tensor
from initlab.schemes import targets, uses_data

MEMORY_ENV = "INITLAB_MEMORY_BUDGET_MB"
TIME_ENV = "INITLAB_TIME_BUDGET_S"
MEMORY_FRACTION = 0.5  # of the memory available when the experiment is checked
DEFAULT_TIME_BUDGET_S = 600.0
FLOPS_PER_SECOND = 1e10  # a deliberately modest CPU: the estimate should not promise too much
PROBE_OVERHEAD = 2.5  # statistics and histograms on top of the bare pass (see the benchmark)
PER_CALL_S = 3e-4  # hooks, statistics and a histogram per leaf call, whatever its size
# Trying one module against one rule (a compiled glob, then the family): about 1 µs measured
# on a busy 2-core machine; every walk of a model tries every module against every rule.
PER_MATCH_S = 2e-6


@dataclass(frozen=True)
class Estimate:
    """What one experiment needs: bytes at its peak (one run at a time) and seconds in all."""

    param_bytes: int
    activation_bytes: int
    peak_bytes: int
    seconds: float
    runs: int
    lsuv_passes: int = 0  # forward passes LSUV may take at most, over every run
    lsuv_seconds: float = 0.0  # their share of `seconds`


# ---------------------------------------------------------------- the shape pass

aten = torch.ops.aten
Shape = tuple[int, ...]


def _empty(shape: Shape | list[int], dtype: torch.dtype) -> torch.Tensor:
    # aten.empty has a C++ meta kernel: no Python, no import.
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


# Each rule returns the operator's output(s), or None where its arguments are not the plain
# case it knows (mismatched shapes included): PyTorch's meta kernel then answers, error and all.


def _broadcast(*shapes: Shape) -> Shape | None:
    """NumPy broadcasting of shapes (torch.broadcast_shapes without its Python checks)."""
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        sizes = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _binary(a: Any, b: Any, **kwargs: Any) -> torch.Tensor | None:
    """add, sub, mul, div of tensors or a tensor and a number: broadcast, promoted dtype."""
    shape = _broadcast(*(t.shape for t in (a, b) if isinstance(t, torch.Tensor)))
    return None if shape is None else _empty(shape, torch.result_type(a, b))


def _where(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    shape = _broadcast(cond.shape, a.shape, b.shape)
    return None if shape is None else _empty(shape, torch.result_type(a, b))


def _same(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _empty(x.shape, x.dtype)


def _softmax(x: torch.Tensor, dim: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    return _empty(x.shape, dtype or x.dtype)


def _in_place(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return x


def _per_dim(values: list[int], n: int) -> list[int]:
    return list(values) * n if len(values) == 1 else list(values)


def _window(size: int, k: int, stride: int, pad: int, dil: int, ceil: bool = False) -> int:
    """Output length of a convolution or pooling window (PyTorch's pooling_output_shape)."""
    span = size + 2 * pad - dil * (k - 1) - 1 + (stride - 1 if ceil else 0)
    out = span // stride + 1
    return out - 1 if ceil and (out - 1) * stride >= size + pad else out


def _convolution(x, w, bias, stride, padding, dilation, transposed, pad_out, groups):
    """Batched, non-transposed convolutions; the rest (output padding...) to PyTorch."""
    n = w.dim() - 2
    if transposed or x.dim() != n + 2 or x.shape[1] != w.shape[1] * groups:
        return None
    per = [_per_dim(v, n) for v in (stride, padding, dilation)]
    spatial = [_window(*v) for v in zip(x.shape[2:], w.shape[2:], *per, strict=True)]
    return _empty((x.shape[0], w.shape[0], *spatial), x.dtype) if min(spatial) > 0 else None


def _max_pool(x, kernel, stride=(), padding=(0,), dilation=(1,), ceil=False) -> tuple | None:
    per = [_per_dim(v, 2) for v in (kernel, stride or kernel, padding, dilation)]
    spatial = [_window(s, *v, ceil) for s, *v in zip(x.shape[-2:], *per, strict=True)]
    if x.dim() not in (3, 4) or min(spatial) <= 0:
        return None
    shape = (*x.shape[:-2], *spatial)
    return _empty(shape, x.dtype), _empty(shape, torch.long)


def _reduce(x, dims=None, keepdim=False, dtype=None) -> torch.Tensor:
    axes = {d % x.dim() for d in dims} if dims else set(range(x.dim()))
    shape = [1 if i in axes else n for i, n in enumerate(x.shape) if keepdim or i not in axes]
    return _empty(shape, dtype or x.dtype)


def _batch_norm(x, weight, bias, mean, var, training, *rest) -> tuple | None:
    if x.dim() < 2:
        return None
    stats = (x.shape[1],) if training else (0,)
    return _empty(x.shape, x.dtype), _empty(stats, x.dtype), _empty(stats, x.dtype)


def _layer_norm(x, normalized, *rest) -> tuple | None:
    if tuple(x.shape[x.dim() - len(normalized) :]) != tuple(normalized):
        return None
    kept = (*x.shape[: x.dim() - len(normalized)], *[1] * len(normalized))
    return _empty(x.shape, x.dtype), _empty(kept, x.dtype), _empty(kept, x.dtype)


def _matmul(a, b, **kwargs) -> torch.Tensor | None:
    """mm and bmm: (b,) m×k times (b,) k×n."""
    if a.dim() != b.dim() or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        return None
    return _empty((*a.shape[:-1], b.shape[-1]), a.dtype) if a.dtype == b.dtype else None


def _plus_matmul(bias, a, b, *rest, **kwargs) -> torch.Tensor | None:
    """addmm(bias, a, b) and baddbmm: the product's shape, the bias broadcast onto it."""
    out = _matmul(a, b)
    return out if out is not None and _broadcast(bias.shape, out.shape) == out.shape else None


def _embedding(weight, indices, *rest) -> torch.Tensor | None:
    if indices.dtype not in (torch.long, torch.int) or weight.dim() != 2:
        return None
    return _empty((*indices.shape, weight.shape[1]), weight.dtype)


UNARY = ("relu", "gelu", "tanh", "sigmoid", "silu", "elu", "leaky_relu", "hardtanh", "neg")
SHAPE_RULES: dict[Any, Any] = {
    **{getattr(aten, name).default: _same for name in (*UNARY, "tril", "triu", "clone")},
    **{getattr(aten, f"{name}_").default: _in_place for name in UNARY},
    **{getattr(aten, name).Tensor: _binary for name in ("add", "sub", "mul", "div")},
    **{getattr(aten, name).Scalar: _binary for name in ("add", "sub", "mul", "div")},
    **{getattr(aten, f"{name}_").Tensor: _in_place for name in ("add", "sub", "mul", "div")},
    aten.where.self: _where,
    aten._safe_softmax.default: _softmax,
    aten.mm.default: _matmul,
    aten.bmm.default: _matmul,
    aten.addmm.default: _plus_matmul,
    aten.baddbmm.default: _plus_matmul,
    aten.convolution.default: _convolution,
    aten.max_pool2d_with_indices.default: _max_pool,
    aten.mean.dim: _reduce,
    aten.sum.dim_IntList: _reduce,
    aten.native_batch_norm.default: _batch_norm,
    aten.native_layer_norm.default: _layer_norm,
    aten.embedding.default: _embedding,
}


def _mm_flops(a: torch.Tensor, b: torch.Tensor) -> float:
    """2·m·k·n per matrix product (FlopCounterMode's count: multiply and add)."""
    batch = a.shape[0] if a.dim() == 3 else 1
    return 2.0 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


def _conv_flops(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, transposed: bool) -> float:
    """2·(Cin/groups)·k^n per output element (per input element when transposed)."""
    return 2.0 * (x if transposed else out).numel() * math.prod(w.shape[1:])


def flops_of(func: Any, args: tuple, out: Any) -> float:
    """The FLOPs torch.utils.flop_counter counts for one operator call (matmuls and
    convolutions; everything else, elementwise, counts nothing there either)."""
    packet = func.overloadpacket
    if packet in (aten.mm, aten.bmm):
        return _mm_flops(args[0], args[1])
    if packet in (aten.addmm, aten.baddbmm):
        return _mm_flops(args[1], args[2])
    if packet in (aten.convolution, aten._convolution):
        return _conv_flops(args[0], args[1], first_tensor(out), bool(args[6]))
    return 0.0


class ShapePass(TorchDispatchMode):
    """Meta tensors through the common operators by the rules above; FLOPs counted on the way.
    `fallbacks` names the operators handed to PyTorch's own meta kernels."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Otherwise TorchDispatchMode wraps __torch_dispatch__ in torch._disable_dynamo, whose
        # first call imports torch._dynamo (and sympy with it); nothing here is ever compiled.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0.0
        self.fallbacks: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        rule = SHAPE_RULES.get(func)
        meta = all(a.is_meta for a in args if isinstance(a, torch.Tensor))
        out = rule(*args, **kwargs) if rule is not None and meta else None
        if out is None:
            self.fallbacks.add(str(func))
            out = func(*args, **kwargs)
        self.flops += flops_of(func, args, out)
        return out


def _leaf_shapes(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """Every leaf module's output on the meta device (by forward hooks), and the forward
    pass's FLOPs as torch's FlopCounterMode counts them (matmuls, convolutions, attention)."""
    calls: list[torch.Tensor] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        out = first_tensor(output)
        if out is not None and not list(module.children()):
            calls.append(out)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad(), ShapePass() as shapes:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls, shapes.flops


def meta_input(exp: Any) -> torch.Tensor:
    """The experiment's input as a meta tensor: its shape and dtype, never its memory."""
    shape = (exp.input.batch_size, *exp.input_shape())
    tokens = MODELS[exp.model["name"]].tokens(exp.model) is not None
    if tokens or exp.input.distribution == "tokens":
        return torch.zeros(shape, dtype=torch.long, device="meta")
    return torch.empty(shape, device="meta")


def _meta_calls(exp: Any, model: nn.Module, x: torch.Tensor) -> tuple[list, float] | None:
    """Leaf outputs of a meta forward pass in the experiment's mode; a zoo model that fails
    is a problem of the experiment (ValueError), a custom one may just not support meta."""
    model.train(exp.mode == "train")
    try:
        return _leaf_shapes(model, x)
    except Exception as exc:  # the model's own error, whatever its type
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if "more than 1 value per channel" in reason:
            raise ValueError(
                f"input.batch_size: BatchNorm in train mode needs more than one value per "
                f"channel, and batch {exp.input.batch_size} of this model gives one; use a "
                f"larger batch_size or mode 'eval'"
            ) from None
        if exp.model["name"] == "custom":
            return None  # judged on its parameters; the probe reports a failing forward
        shape = list(x.shape[1:])
        raise ValueError(f"model: fails on input of shape {shape}: {reason}") from None


def estimate(exp: Any, model: nn.Module | None = None) -> Estimate:
    """Memory and time of `exp` (an initlab Experiment), from a meta-device forward pass.
    `model`: the experiment's model on the meta device, when the caller has built it."""
    if model is None:  # the experiment's validation allowed a custom model
        model = meta_model(exp.model, allow_custom=True)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    runs = len(exp.seeds) * len(exp.schemes)
    x = meta_input(exp)
    inputs = x.numel() * x.element_size()
    budget, _ = memory_budget()
    if params + inputs > budget:  # refuse at once, before the (slower) meta forward pass
        return Estimate(params, inputs, params + inputs, math.inf, runs)
    calls, flops = _meta_calls(exp, model, x) or ([], 0.0)
    sizes = [out.numel() * out.element_size() for out in calls] or [0]
    # Backward keeps every output for autograd; forward-only holds about two at a time.
    activations = sum(sizes) if exp.backward else 2 * max(sizes)
    peak = params * (2 if exp.backward else 1) + inputs + activations + 2 * max(sizes)
    passes = 3 if exp.backward else 1  # backward costs about twice the forward
    forward = flops * PROBE_OVERHEAD / FLOPS_PER_SECOND + len(calls) * PER_CALL_S
    lsuv = lsuv_passes(exp, model)
    seconds = runs * passes * forward + matching_seconds(exp, model) + lsuv * forward
    return Estimate(params, activations, peak, seconds, runs, lsuv, lsuv * forward)


def lsuv_passes(exp: Any, model: nn.Module) -> int:
    """The most forward passes LSUV takes: per seed, for each layer a scheme gives `lsuv`,
    max_iter + 1 (each stopped at the layer, counted whole), plus one to find the order."""
    total = 0
    for scheme in exp.schemes:
        if uses_data(scheme):
            found = [t for t in targets(model, scheme) if t.spec.entry.data_dependent]
            total += 1 + sum(t.spec.kwargs["max_iter"] + 1 for t in found)
    return total * len(exp.seeds)


def matching_seconds(exp: Any, model: nn.Module) -> float:
    """Rules tried against modules: once per scheme to validate, once per (seed, scheme) to
    apply, about twice more for the warnings' structural checks, so thousands of globs on a
    deep model are counted before they grind."""
    rules = sum(len(s.rules) for s in exp.schemes)
    # A rule with a counted scale (1/sqrt(matches)) is also tried on every module to count them.
    counted = sum(r.weight.counted or r.bias.counted for s in exp.schemes for r in s.rules)
    # A rule with a `param` glob is also tried on each parameter of the modules it matches.
    by_param = sum(r.param is not None for s in exp.schemes for r in s.rules)
    modules = sum(1 for _ in model.modules())
    params = sum(1 for m in model.modules() for _ in m.parameters(recurse=False)) if by_param else 0
    tries = modules * (rules + counted) + params * by_param
    return tries * (len(exp.seeds) + 3) * PER_MATCH_S


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else the physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def env_number(name: str) -> float | None:
    """A positive, finite number from the environment, or None when the variable is unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a positive number; got {shown(raw)}")
    return value


def memory_budget() -> tuple[int, str]:
    """The budget in bytes and where it came from (for the message)."""
    megabytes = env_number(MEMORY_ENV)
    if megabytes is not None:
        return int(megabytes * 2**20), MEMORY_ENV
    return int(available_bytes() * MEMORY_FRACTION), (
        f"half of the memory available now; set {MEMORY_ENV} to change it"
    )


def time_budget() -> tuple[float, str]:
    seconds = env_number(TIME_ENV)
    if seconds is not None:
        return seconds, TIME_ENV
    return DEFAULT_TIME_BUDGET_S, f"the default; set {TIME_ENV} to change it"


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


SIZE_FIELDS = (
    "depth",
    "width",
    "widths",
    "channels",
    "stages",
    "blocks",
    "n_layers",
    "d_model",
    "seq_len",
    "image_size",
)


def _shrink_hint(exp: Any, est: Estimate) -> str:
    sizes = {k: exp.model[k] for k in SIZE_FIELDS if exp.model.get(k) is not None}
    model_part = ", ".join(f"model.{k} ({v})" for k, v in sizes.items())
    batch = f"input.batch_size ({exp.input.batch_size})"
    if est.param_bytes >= est.activation_bytes:
        return f"shrink the model: {model_part}" if model_part else "use a smaller model"
    return f"shrink {batch}" + (f", or the model: {model_part}" if model_part else "")


def _lsuv_hint(est: Estimate) -> str:
    return (
        f"a smaller lsuv max_iter ({est.lsuv_passes} passes at most), " if est.lsuv_passes else ""
    )


def check_budget(exp: Any, model: nn.Module | None = None) -> Estimate:
    """Raise ValueError, within a second, if `exp` would exceed the memory or time budget."""
    est = estimate(exp, model)
    budget, source = memory_budget()
    if est.peak_bytes > budget:
        raise ValueError(
            f"experiment too large: about {_gb(est.peak_bytes)} at its peak (parameters "
            f"{_gb(est.param_bytes)}, activations {_gb(est.activation_bytes)}), over the budget "
            f"of {_gb(budget)} ({source}); {_shrink_hint(exp, est)}"
        )
    limit, source = time_budget()
    if est.seconds > limit and math.isfinite(est.seconds):
        raise ValueError(
            f"experiment too slow: about {est.seconds:.0f} s estimated for {est.runs} runs "
            f"(seeds × schemes), over the budget of {limit:.0f} s ({source}); "
            f"use fewer seeds or schemes, {_lsuv_hint(est)}or {_shrink_hint(exp, est)}"
        )
    return est
