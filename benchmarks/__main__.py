"""`python -m benchmarks` (from the repository root): what initlab costs on top of the bare pass,
as the Markdown tables of the README's Performance section."""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from typing import Any

import torch

from benchmarks.app_reruns import app_reruns, payload_bytes
from benchmarks.probe import capture_table, memory_table, parts_table, time_table
from benchmarks.run_cost import cold_start_row, target_rows, whole_run_row


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
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats per figure")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no app reruns")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2: the README's)")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    print(
        f"initlab benchmark, {date.today()}, {platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, python {platform.python_version()}; "
        f"medians of {repeats} interleaved repeats"
    )
    batch = 256
    time_title = f"Time: probe and hook-and-store ÷ bare forward+backward (batch {batch})"
    tables = {"time": time_table(batch, repeats)}
    print_table(time_title, tables["time"])
    capture_title = (
        f"Capture of functional activations and broadcasts, share of bare (batch {batch})"
    )
    print_table(capture_title, capture_table(batch, repeats))
    parts_title = f"Where the probe's time goes, each step ÷ bare forward+backward (batch {batch})"
    print_table(parts_title, parts_table(batch, repeats))
    tables["memory"] = memory_table(max(3, repeats // 2))
    print_table("Memory", tables["memory"])
    tables["run"] = [whole_run_row(repeats)]
    print_table("Whole run() ÷ the sum of its bare passes", tables["run"])
    tables["cold"] = [cold_start_row(3 if args.quick else 5)]
    print_table("First run() in a fresh process", tables["cold"])
    sizes = {b: payload_bytes(b) for b in (64, 4096)}
    rows = [{"batch": b, "KB": n / 1000} for b, n in sizes.items()]
    print_table("Figure JSON for the default page", rows)
    if not args.quick:
        print_table("App reruns (AppTest)", app_reruns(3))
    print_table("Targets", target_rows(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
