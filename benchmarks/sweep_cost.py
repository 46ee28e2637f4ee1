"""What a sweep costs: cells per second run one after another in this process, in the local
process pool and as tasks on a local Ray instance, and Ray's overhead per cell over the pool.

`python -m benchmarks.sweep_cost [--cells N] [--workers N]` (from the repository root). Every
executor runs the same grid (a 10×64 tanh MLP, batch 64, over σ_w² and seeds) from scratch, its
start-up included (workers importing initlab, Ray starting): what a user waits for.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

import pandas as pd

from initlab.sweep import Sweep, run_sweep

WIDTH = 64


def grid(cells: int) -> Sweep:
    base = {
        "model": {"name": "mlp", "depth": 10, "width": WIDTH, "activation": "tanh"},
        "input": {"batch_size": 64},
        "schemes": [{"name": "gauss", "rules": [{"layers": "Linear",
                                                 "weight": {"method": "normal", "std": 0.1}}]}],
    }  # fmt: skip
    stds = [math.sqrt((0.5 + 2.5 * i / (cells - 1)) / WIDTH) for i in range(cells)]
    return Sweep.from_dict({"base": base, "axes": {"schemes.0.rules.0.weight.std": stds}})


def _timed(sweep: Sweep, **how: Any) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    table = run_sweep(sweep, **how).table
    return time.perf_counter() - start, table


def _ray_run(sweep: Sweep, workers: int) -> tuple[float, float, pd.DataFrame]:
    """Seconds to start a local Ray instance, and to run the sweep on it."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    try:
        seconds, table = _timed(sweep, executor="ray")
    finally:
        ray.shutdown()
    return started, seconds, table


def _row(name: str, cells: int, seconds: float, sequential: float, note: str) -> dict[str, Any]:
    return {"executor": name, "cells": cells, "seconds": f"{seconds:.2f}",
            "cells/s": f"{cells / seconds:.2f}", "speed-up": f"{sequential / seconds:.2f}×",
            "note": note}  # fmt: skip


def measure(cells: int, workers: int) -> list[dict[str, Any]]:
    """The pool twice: cold (its server imports initlab first) and warm (a second pool)."""
    sweep = grid(cells)
    seq_s, seq = _timed(sweep, executor="sequential")
    cold_s, pool = _timed(sweep, executor="pool", workers=workers)
    warm_s, _ = _timed(sweep, executor="pool", workers=workers)
    ray_start, ray_s, on_ray = _ray_run(sweep, workers)
    same = seq.equals(pool) and seq.equals(on_ray)
    overhead_ms = (ray_s - warm_s) / cells * 1000
    return [
        _row("sequential", cells, seq_s, seq_s, "this process, one thread"),
        _row(f"pool, cold ({workers} workers)", cells, cold_s, seq_s, "server start included"),
        _row(f"pool, warm ({workers} workers)", cells, warm_s, seq_s, "a second pool"),
        _row(f"Ray, local ({workers} CPUs)", cells, ray_s, seq_s,
             f"ray.init took {ray_start:.1f} s more; over the warm pool: {overhead_ms:+.0f} ms "
             f"per cell; same table as sequential: {same}"),
    ]  # fmt: skip


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    print(f"\n### Sweep cost ({os.cpu_count()} cores)\n")
    print_table(measure(args.cells, args.workers))


if __name__ == "__main__":
    main()
