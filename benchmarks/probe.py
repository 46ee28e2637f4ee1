"""The probe's cost: time and peak memory of initlab's probe and of the hook-and-store approach
people write by hand, each against the bare forward+backward pass.

Every ratio is measured side by side in one run: the baseline and the contender alternate, and
each figure is the median of several interleaved repeats. Memory is measured in a fresh
subprocess per figure (peak RSS above the RSS just before the pass), so one measurement's freed
memory cannot hide the next one's.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import torch
from torch import nn

from initlab import fused
from initlab.experiment import generator
from initlab.layers import saturation_bounds
from initlab.models import MODELS, build_model
from initlab.probe import block_ids, first_tensor, probe
from initlab.stats import BINS, summarize
from initlab.units import unit_dim

ROOT = Path(__file__).resolve().parents[1]  # the memory subprocesses import `benchmarks` here
# The module, not the function `initlab.probe` that the package exports under its name.
PROBE_MODULE = importlib.import_module("initlab.probe")

TIME_CASES: dict[str, dict[str, Any]] = {
    "mlp 50×512": {"name": "mlp", "depth": 50, "width": 512, "activation": "relu", "bias": False},
    "lenet": {"name": "lenet"},
    "cnn": {"name": "cnn"},
    "transformer": {"name": "transformer"},
}


# ---------------------------------------------------------------- the three contenders


def make_case(spec: dict[str, Any], batch: int) -> tuple[nn.Module, torch.Tensor]:
    model = build_model(spec, seed=0)
    entry = MODELS[spec["name"]]
    full = {**entry.normalize(spec)}
    shape = (batch, *entry.input_shape(full))
    vocab = entry.tokens(full)
    g = generator(0, "input")
    x = torch.randint(0, vocab, shape, generator=g) if vocab else torch.randn(shape, generator=g)
    return model, x


def bare(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    """Forward and backward from a standard-normal cotangent, nothing else."""
    with torch.set_grad_enabled(backward):
        out = first_tensor(model(x))
        if backward:
            out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)))
    model.zero_grad(set_to_none=True)


def initlab_probe(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    probe(model, x, backward=backward, generator=torch.Generator().manual_seed(0))


def hook_and_store(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    """The approach users write by hand: keep every output and gradient, then numpy."""
    acts: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def store(module: nn.Module, args: Any, output: Any) -> None:
            out = first_tensor(output)
            if out is not None:
                acts[name] = out
                if backward and out.requires_grad:
                    out.register_hook(lambda g: grads.__setitem__(name, g))

        return store

    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook(n)) for n, m in leaves]
    try:
        bare_out = first_tensor(model(x))
        if backward:
            bare_out.backward(
                torch.randn(bare_out.shape, generator=torch.Generator().manual_seed(0))
            )
        for store in (acts, grads):
            for t in store.values():
                a = t.detach().numpy()
                a.mean(), a.var(), (a == 0).mean(), np.histogram(a, bins=64)
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)


class _NoCapture:
    """Stands in for the probe's functional observer: the probe without its capture of
    functional activations, broadcasts and dropout, to price that capture alone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _NoCapture:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def probe_without_capture(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    with mock.patch.object(PROBE_MODULE, "Observer", _NoCapture):
        initlab_probe(model, x, backward)


# ---------------------------------------------------------------- time


def interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turn so machine noise hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up: allocator, kernels, caches
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


Cases = dict[str, dict[str, Any]]


def time_table(batch: int, repeats: int, cases: Cases = TIME_CASES) -> list[dict[str, Any]]:
    """Probe and hook-and-store, each as a multiple of the bare forward+backward, and the
    floor (`kernels_only`) beside them."""
    rows = []
    for label, spec in cases.items():
        if spec["name"] not in MODELS:
            continue
        model, x = make_case(spec, batch)
        contenders = {"bare": bare, "probe": initlab_probe, "peer": hook_and_store}
        t = _race(model, x, {**contenders, "floor": kernels_only}, repeats)
        rows.append(
            {
                "case": label,
                "bare ms": 1e3 * t["bare"],
                "probe ×": t["probe"] / t["bare"],
                "hook-and-store ×": t["peer"] / t["bare"],
                "floor ×": t["floor"] / t["bare"],
            }
        )
    return rows


def _race(
    model: nn.Module, x: torch.Tensor, contenders: dict[str, Callable[..., None]], repeats: int
) -> dict[str, float]:
    fns = {k: (lambda f=f: f(model, x)) for k, f in contenders.items()}
    return interleaved(fns, repeats)


CAPTURE_CASES: Cases = {label: TIME_CASES[label] for label in ("mlp 50×512", "transformer")}


def capture_table(batch: int, repeats: int, cases: Cases = CAPTURE_CASES) -> list[dict[str, Any]]:
    """What observing functional activations, blocks' broadcasts and dropout costs, as a share
    of the bare forward+backward (the target: at most 5%)."""
    rows = []
    for label, spec in cases.items():
        model, x = make_case(spec, batch)
        contenders = {"bare": bare, "probe": initlab_probe, "without": probe_without_capture}
        t = _race(model, x, contenders, repeats)
        rows.append(
            {
                "case": label,
                "bare ms": 1e3 * t["bare"],
                "probe ms": 1e3 * t["probe"],
                "probe without capture ms": 1e3 * t["without"],
                "capture ÷ bare": (t["probe"] - t["without"]) / t["bare"],
            }
        )
    return rows


PARTS_CASES: Cases = {
    "mlp 20×256 (default page)": {
        "name": "mlp",
        "depth": 20,
        "width": 256,
        "activation": "relu",
        "bias": True,
    },
    "mlp 50×512": TIME_CASES["mlp 50×512"],
}


def hooks_only(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    """The bare pass with a do-nothing forward pre-hook and hook on every module: the floor of
    any per-module observer written in Python."""
    _bare_with_hooks(model, x, backward, lambda m, a: None, lambda m, a, o: None)


def _bare_with_hooks(
    model: nn.Module, x: torch.Tensor, backward: bool, pre: Callable, post: Callable
) -> None:
    """The bare pass with `pre` and `post` as forward pre-hook and hook on every module."""
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        bare(model, x, backward)
    finally:
        for handle in handles:
            handle.remove()


def kernels_only(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    """The floor of the probe's design: `hooks_only`, plus the probe's one compiled call
    (`fused.summary_and_bins`, with the probe's unit axis and saturation bounds) on every leaf
    output and block output, from its forward hook, and on its gradient, from a gradient hook;
    no call stack, rows, names, observer (so no functional activations) or tables."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    bounds = {id(m): saturation_bounds(m) for m in leaves}
    blocks, shapes = block_ids(model), {}

    def reduce(tensor: torch.Tensor, limits: Any = None, dim: int | None = None) -> None:
        a = fused.view(tensor)
        if a is not None:
            fused.summary_and_bins(a, tuple(tensor.shape), limits, dim, BINS)

    def pre(module: nn.Module, args: Any) -> None:
        if id(module) in blocks:  # a block is one when it returns the shape it was given
            given = first_tensor(args)
            shapes[id(module)] = None if given is None else tuple(given.shape)

    def post(module: nn.Module, args: Any, output: Any) -> None:
        out = first_tensor(output)
        if out is None or (id(module) not in bounds and shapes.get(id(module)) != out.shape):
            return
        reduce(out, bounds.get(id(module)), unit_dim(module, out))
        if backward and out.requires_grad:
            out.register_hook(reduce)

    _bare_with_hooks(model, x, backward, pre, post)


def _no_statistics(x: torch.Tensor, bounds: Any, dim: Any, bins: int = 64) -> tuple:
    """Stands in for `summary_and_counts`: the probe's bookkeeping without any statistic."""
    return STUB_SUMMARY, 0.0, (0.0, 1.0), np.zeros(bins)


STUB_SUMMARY = summarize(torch.ones(2))


def probe_without_statistics(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    """The probe's hooks, recorder and observer, with no statistic, no weight-gradient
    variance and no tables."""
    _probe_with_stubs(model, x, backward, summary_and_counts=_no_statistics)


def probe_without_tables(model: nn.Module, x: torch.Tensor, backward: bool = True) -> None:
    """The probe with every output's and gradient's statistics, but neither the weight
    gradients' variance nor the tables."""
    _probe_with_stubs(model, x, backward)


def _probe_with_stubs(model: nn.Module, x: torch.Tensor, backward: bool, **stubs: Any) -> None:
    """The probe without the weight gradients' variance and the tables, and `stubs` in its
    module."""
    empty = pd.DataFrame()
    stubs = {
        "_param_grad_var": lambda m, c: {},
        "span_table": lambda h, b: empty,
        "layer_table": lambda c: empty,
        **stubs,
    }
    with (
        mock.patch.multiple(PROBE_MODULE, **stubs),
        mock.patch.object(PROBE_MODULE._Recorder, "columns", lambda self: {}),
    ):
        initlab_probe(model, x, backward)


def parts_table(batch: int, repeats: int, cases: Cases = PARTS_CASES) -> list[dict[str, Any]]:
    """Where the probe's time goes: each step from the bare pass to the whole probe as a
    multiple of the bare pass (hooks that do nothing; the recorder and observer without
    statistics; the statistics of every output and gradient; the weight gradients' variance
    and the tables), and beside them the floor (`kernels_only`): do-nothing hooks and the
    compiled statistics with nothing else."""
    contenders = {
        "bare": bare,
        "hooks": hooks_only,
        "recorder": probe_without_statistics,
        "statistics": probe_without_tables,
        "probe": initlab_probe,
        "floor": kernels_only,
    }
    rows = []
    for label, spec in cases.items():
        model, x = make_case(spec, batch)
        t = _race(model, x, contenders, repeats)
        row: dict[str, Any] = {"case": label, "bare ms": 1e3 * t["bare"]}
        row.update({f"{k} ×": t[k] / t["bare"] for k in list(contenders)[1:]})
        rows.append(row)
    return rows


# ---------------------------------------------------------------- memory (one subprocess each)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def measure_peak(spec: dict[str, Any], batch: int, contender: str, backward: bool) -> float:
    """In this process: MB of peak RSS above the RSS just before one pass."""
    torch.set_num_threads(2)
    model, x = make_case(spec, batch)
    fn = {"bare": bare, "probe": initlab_probe, "peer": hook_and_store}[contender]
    # No warm-up: the allocator would keep its pools and hide part of the pass's memory.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _rss_kb("VmRSS")
    fn(model, x, backward)
    return (_rss_kb("VmHWM") - before) / 1024


PEAK_CODE = (
    "import json, sys; from benchmarks.probe import measure_peak; "
    "print(measure_peak(json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], "
    "sys.argv[4] == '1'))"
)


def peak_in_subprocess(spec: dict[str, Any], batch: int, contender: str, backward: bool) -> float:
    """`measure_peak` in a fresh interpreter (run from the repository root, which holds
    `benchmarks`), so no earlier measurement's pools are counted."""
    args = [sys.executable, "-c", PEAK_CODE, json.dumps(spec), str(batch), contender]
    # A fixed mmap threshold: every tensor above 64 KB gets its own mapping and is returned on
    # free, so RSS follows live memory instead of glibc's pools (which depend on history).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    run = subprocess.run(
        [*args, str(int(backward))], check=True, capture_output=True, text=True, env=env, cwd=ROOT
    )
    return float(run.stdout)


MEMORY_MLP = {"name": "mlp", "depth": 20, "width": 1024, "activation": "relu", "bias": False}


def memory_table(
    repeats: int, mlp: dict[str, Any] = MEMORY_MLP, batch: int = 4096, depths: tuple = (25, 100)
) -> list[dict[str, Any]]:
    """Peak memory of a forward+backward pass, and of forward-only probes at several depths."""
    peaks: dict[str, list[float]] = {c: [] for c in ("bare", "probe", "peer")}
    for _ in range(repeats):
        for contender, values in peaks.items():
            values.append(peak_in_subprocess(mlp, batch, contender, True))
    med = {c: statistics.median(v) for c, v in peaks.items()}
    size = f"mlp {mlp['depth']}×{mlp['width']} batch {batch}"
    rows: list[dict[str, Any]] = [
        {
            "figure": f"peak memory, forward+backward, {size}",
            "bare MB": med["bare"],
            "probe ×": med["probe"] / med["bare"],
            "hook-and-store ×": med["peer"] / med["bare"],
        }
    ]
    for depth in depths:
        spec = {**mlp, "depth": depth}
        fwd = [peak_in_subprocess(spec, batch, "probe", False) for _ in range(repeats)]
        figure = f"forward-only probe peak above the model, depth {depth}"
        rows.append({"figure": figure, "probe MB": statistics.median(fwd)})
    return rows
