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
from benchmarks.probe import capture_table, memory_table, time_table


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
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    torch.set_num_threads(2)
    print(
        f"initlab benchmark, {date.today()}, {platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, python {platform.python_version()}; "
        f"medians of {repeats} interleaved repeats"
    )
    batch = 256
    time_title = f"Time: probe and hook-and-store ÷ bare forward+backward (batch {batch})"
    print_table(time_title, time_table(batch, repeats))
    capture_title = (
        f"Capture of functional activations and broadcasts, share of bare (batch {batch})"
    )
    print_table(capture_title, capture_table(batch, repeats))
    print_table("Memory", memory_table(max(3, repeats // 2)))
    sizes = {b: payload_bytes(b) for b in (64, 4096)}
    rows = [{"batch": b, "KB": n / 1000} for b, n in sizes.items()]
    print_table("Figure JSON for the default page", rows)
    if not args.quick:
        print_table("App reruns (AppTest)", app_reruns(3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
