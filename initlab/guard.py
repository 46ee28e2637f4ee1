"""The resource guard: estimate an experiment's memory and time before building anything,
and refuse one above the budget with a message that says what to shrink.

The estimate runs the model on PyTorch's meta device (shapes, no storage, no arithmetic), so
it is exact about tensor sizes and takes well under a second even for a 1000-layer network.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from initlab.models import MODELS
from initlab.outline import meta_model
from initlab.params import shown
from initlab.probe import first_tensor

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
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls, float(counter.get_total_flops())


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


def _flops(module: nn.Module, out: torch.Tensor) -> float:
    """Multiply-adds ×2 of one forward call; elementwise modules count one per element."""
    if isinstance(module, nn.Linear):
        return 2.0 * out.numel() * module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = math.prod(module.kernel_size)
        return 2.0 * out.numel() * (module.in_channels // module.groups) * kernel
    return float(out.numel())


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
    per_run = passes * (flops * PROBE_OVERHEAD / FLOPS_PER_SECOND + len(calls) * PER_CALL_S)
    return Estimate(params, activations, peak, runs * per_run + matching_seconds(exp, model), runs)


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


def _env_number(name: str) -> float | None:
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
    megabytes = _env_number(MEMORY_ENV)
    if megabytes is not None:
        return int(megabytes * 2**20), MEMORY_ENV
    return int(available_bytes() * MEMORY_FRACTION), (
        f"half of the memory available now; set {MEMORY_ENV} to change it"
    )


def time_budget() -> tuple[float, str]:
    seconds = _env_number(TIME_ENV)
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
            f"use fewer seeds or schemes, or {_shrink_hint(exp, est)}"
        )
    return est
