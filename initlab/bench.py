"""The benchmark: `python -m initlab.bench` prints what initlab costs on top of the bare pass.

Every ratio is measured side by side in one run: the baseline and the contender alternate, and
each figure is the median of several interleaved repeats. Memory is measured in a fresh
subprocess per figure (peak RSS above the RSS just before the pass), so one measurement's freed
memory cannot hide the next one's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import nn

from initlab.experiment import generator
from initlab.models import MODELS, build_model
from initlab.probe import first_tensor, probe

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
    # The module, not the function `initlab.probe` that the package exports under its name.
    with mock.patch.object(importlib.import_module("initlab.probe"), "Observer", _NoCapture):
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


def time_table(batch: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for label, spec in TIME_CASES.items():
        if spec["name"] not in MODELS:
            continue
        model, x = make_case(spec, batch)
        contenders = {"bare": bare, "probe": initlab_probe, "peer": hook_and_store}
        fns = {k: (lambda f=f, m=model, x=x: f(m, x)) for k, f in contenders.items()}
        t = interleaved(fns, repeats)
        rows.append(
            {
                "case": label,
                "bare ms": 1e3 * t["bare"],
                "probe ×": t["probe"] / t["bare"],
                "hook-and-store ×": t["peer"] / t["bare"],
            }
        )
    return rows


CAPTURE_CASES = ("mlp 50×512", "transformer")


def capture_table(batch: int, repeats: int) -> list[dict[str, Any]]:
    """What observing functional activations, blocks' broadcasts and dropout costs, as a share
    of the bare forward+backward (the target: at most 5%)."""
    rows = []
    for label in CAPTURE_CASES:
        model, x = make_case(TIME_CASES[label], batch)
        contenders = {"bare": bare, "probe": initlab_probe, "without": probe_without_capture}
        fns = {k: (lambda f=f, m=model, x=x: f(m, x)) for k, f in contenders.items()}
        t = interleaved(fns, repeats)
        rows.append({"case": label, "bare ms": 1e3 * t["bare"],
                     "probe ms": 1e3 * t["probe"], "probe without capture ms": 1e3 * t["without"],
                     "capture ÷ bare": (t["probe"] - t["without"]) / t["bare"]})  # fmt: skip
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


def peak_in_subprocess(spec: dict[str, Any], batch: int, contender: str, backward: bool) -> float:
    code = ("import json,sys; from initlab.bench import measure_peak; "
            "print(measure_peak(json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], "
            "sys.argv[4] == '1'))")  # fmt: skip
    args = [sys.executable, "-c", code, json.dumps(spec), str(batch), contender, str(int(backward))]
    # A fixed mmap threshold: every tensor above 64 KB gets its own mapping and is returned on
    # free, so RSS follows live memory instead of glibc's pools (which depend on history).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return float(result.stdout)


def memory_table(repeats: int) -> list[dict[str, Any]]:
    mlp = {"name": "mlp", "depth": 20, "width": 1024, "activation": "relu", "bias": False}
    rows = []
    peaks = {c: [] for c in ("bare", "probe", "peer")}
    for _ in range(repeats):
        for contender in peaks:
            peaks[contender].append(peak_in_subprocess(mlp, 4096, contender, True))
    med = {c: statistics.median(v) for c, v in peaks.items()}
    rows.append({"figure": "peak memory, forward+backward, mlp 20×1024 batch 4096",
                 "bare MB": med["bare"], "probe ×": med["probe"] / med["bare"],
                 "hook-and-store ×": med["peer"] / med["bare"]})  # fmt: skip
    for depth in (25, 100):
        spec = {**mlp, "depth": depth}
        fwd = statistics.median(peak_in_subprocess(spec, 4096, "probe", False)
                                for _ in range(repeats))  # fmt: skip
        rows.append(
            {"figure": f"forward-only probe peak above the model, depth {depth}", "probe MB": fwd}
        )
    return rows


# ---------------------------------------------------------------- figure payload and app


def payload_bytes(batch: int) -> int:
    """Bytes of figure JSON the default page sends (variance, gradient, histogram grid)."""
    from initlab import plots
    from initlab.experiment import Experiment, run
    from initlab.ui.results_panel import _default_names

    exp = Experiment.from_dict({**DEFAULT_PAGE, "input": {"batch_size": batch}})
    res = run(exp)
    names = list(dict.fromkeys(res.histograms.query("kind == 'activation'")["name"]))
    figs = [
        plots.variance_by_depth(res.layers),
        plots.grad_variance_by_depth(res.layers),
        plots.histogram_grid(res.histograms, "activation", names=_default_names(names)),
    ]
    return sum(len(f.to_json()) for f in figs)


DEFAULT_PAGE = {
    "model": {"name": "mlp", "depth": 20, "width": 256, "activation": "relu"},
    "seeds": [0, 1],
    "schemes": [{"name": "PyTorch default", "preset": "pytorch_default"},
                {"name": "Kaiming normal", "preset": "kaiming_normal"}],
}  # fmt: skip


# ---------------------------------------------------------------- output


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n### {title}\n")
    if not rows:
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [_cell(row.get(c, "")) for c in columns]
        print("| " + " | ".join(cells) + " |")


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m initlab.bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats per figure")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no app reruns")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    torch.set_num_threads(2)
    print(f"initlab benchmark, {date.today()}, {platform.machine()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, python {platform.python_version()}; "
          f"medians of {repeats} interleaved repeats")  # fmt: skip
    print_table("Time: probe and hook-and-store ÷ bare forward+backward (batch 256)",
                time_table(256, repeats))  # fmt: skip
    print_table("Capture of functional activations and broadcasts, share of bare (batch 256)",
                capture_table(256, repeats))  # fmt: skip
    print_table("Memory", memory_table(max(3, repeats // 2)))
    sizes = {b: payload_bytes(b) for b in (64, 4096)}
    print_table("Figure JSON for the default page",
                [{"batch": b, "KB": n / 1000} for b, n in sizes.items()])  # fmt: skip
    if not args.quick:
        from initlab.ui.bench import app_reruns  # the app's part lives with the app

        print_table("App reruns (AppTest)", app_reruns(3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
