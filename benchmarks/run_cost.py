"""What a whole `initlab.run` costs on the default page, and what its first call in a fresh
process costs on top of a warm one; then every README target against what was measured.

The whole run's baseline is the sum, over its (seed, scheme) pairs, of what any user must pay to
look at a network at all: draw the seed's input, build the seed's model, apply the scheme, and
one bare forward+backward from a standard-normal cotangent. Everything else `run` does (the
guard, the warnings, the probe's statistics and histograms, the tables) is its overhead.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

import torch

from benchmarks.app_reruns import DEFAULT_PAGE
from benchmarks.probe import ROOT, bare, interleaved
from initlab.experiment import Experiment, build_initialized, make_input, run

RUN_BATCH = 256


def page_experiment(page: dict[str, Any] = DEFAULT_PAGE, batch: int = RUN_BATCH) -> Experiment:
    return Experiment.from_dict({**page, "input": {"batch_size": batch}})


def bare_passes(exp: Experiment) -> None:
    """The baseline of a whole run: per seed its input, per (seed, scheme) model build, scheme
    and one bare forward+backward, with the run's own seeds and streams."""
    for seed in exp.seeds:
        x = make_input(exp, seed)
        for scheme in exp.schemes:
            model, _ = build_initialized(exp, scheme, seed)
            model.train(exp.mode == "train")
            bare(model, x, exp.backward)


def whole_run_row(repeats: int, exp: Experiment | None = None) -> dict[str, Any]:
    """`run` on the default page against the sum of its bare passes, interleaved."""
    exp = exp or page_experiment()
    t = interleaved({"bare": lambda: bare_passes(exp), "run": lambda: run(exp)}, repeats)
    runs = len(exp.seeds) * len(exp.schemes)
    return {
        "figure": f"whole run(), default page ({runs} runs, batch {exp.input.batch_size})",
        "bare passes ms": 1e3 * t["bare"],
        "run() ms": 1e3 * t["run"],
        "run() ×": t["run"] / t["bare"],
    }


# The lazy imports a first run once paid (over a second): the meta kernels' sympy, and the
# DTensor and dynamo modules that torch.utils.flop_counter and dispatch modes pull in.
HEAVY = ("sympy", "torch.distributed.tensor", "torch._dynamo")
COLD_CODE = """import json, sys, time
t0 = time.perf_counter()
import torch, initlab
t1 = time.perf_counter()
torch.set_num_threads(int(sys.argv[2]))
exp = initlab.Experiment.from_dict(json.loads(sys.argv[1]))
times = []
for _ in range(2):
    start = time.perf_counter()
    initlab.run(exp)
    times.append(time.perf_counter() - start)
heavy = [m for m in sys.argv[3].split(",") if m in sys.modules]
print(json.dumps({"import": t1 - t0, "first": times[0], "warm": times[1], "heavy": heavy}))
"""


def cold_start(exp_dict: dict[str, Any]) -> dict[str, Any]:
    """In a fresh interpreter: `import initlab`, then the first and a second (warm) run, and
    which of the heavy lazy imports (sympy, DTensor, dynamo) the two runs pulled in."""
    threads = str(torch.get_num_threads())
    args = [sys.executable, "-c", COLD_CODE, json.dumps(exp_dict), threads, ",".join(HEAVY)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(args, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_start_row(repeats: int, page: dict[str, Any] = DEFAULT_PAGE) -> dict[str, Any]:
    """Medians over `repeats` fresh processes of the first run, the warm run, their difference."""
    exp_dict = {**page, "input": {"batch_size": RUN_BATCH}}
    samples = [cold_start(exp_dict) for _ in range(repeats)]
    med = {k: statistics.median(s[k] for s in samples) for k in ("import", "first", "warm")}
    extra = statistics.median(s["first"] - s["warm"] for s in samples)
    heavy = sorted({m for s in samples for m in s["heavy"]})
    return {
        "figure": "first run() in a fresh process vs a warm one (default page)",
        "import initlab s": med["import"],
        "first s": med["first"],
        "warm s": med["warm"],
        "first − warm s": extra,
        "first ÷ warm": med["first"] / med["warm"],
        "heavy imports": ", ".join(heavy) or "none",
    }


# ---------------------------------------------------------------- targets

Rows = list[dict[str, Any]]
# (figure, table, the row's first-column value or None for the only row, column, at most, unit)
TARGETS: tuple[tuple[str, str, str | None, str, float, str], ...] = (
    ("probe ÷ bare forward+backward, mlp 50×512", "time", "mlp 50×512", "probe ×", 1.15, "×"),
    ("probe ÷ bare forward+backward, lenet", "time", "lenet", "probe ×", 1.25, "×"),
    ("probe ÷ bare forward+backward, cnn", "time", "cnn", "probe ×", 1.2, "×"),
    ("probe ÷ bare forward+backward, transformer", "time", "transformer", "probe ×", 1.15, "×"),
    ("probe peak RSS ÷ bare, mlp 20×1024 batch 4096", "memory", None, "probe ×", 1.05, "×"),
    ("whole run() ÷ its bare passes, default page", "run", None, "run() ×", 1.3, "×"),
    ("first run() − warm run(), fresh process", "cold", None, "first − warm s", 0.3, " s"),
)


def _measured(rows: Rows, key: str | None, column: str) -> float | None:
    for row in rows:
        if key is None or next(iter(row.values())) == key:
            return row.get(column)
    return None


def target_rows(tables: dict[str, Rows]) -> Rows:
    """Each target's goal, what this run measured, and whether it is met (blank when the
    figure was not measured); for a probe's time, the floor of its design measured beside it
    (`benchmarks.probe.kernels_only`)."""
    rows = []
    for figure, table, key, column, limit, unit in TARGETS:
        value = _measured(tables.get(table, []), key, column)
        floor = _measured(tables.get(table, []), key, "floor ×") if column == "probe ×" else None
        rows.append(
            {
                "target": figure,
                "goal": f"≤ {limit:g}{unit}",
                "measured": "" if value is None else f"{value:.2f}{unit}",
                "status": "" if value is None else ("met" if value <= limit else "**not met**"),
                "floor": "" if floor is None else f"{floor:.2f}×",
            }
        )
    return rows
