"""What a training run costs: a recorded step against an unrecorded one, and a whole run.

A recorded step is an update plus the probe on the fixed probe batch (with the task's loss as
its backward) and the parameter snapshot for the update ratio; an unrecorded step is the update
alone. Both are timed in turn on the same trainer, so machine noise hits them alike.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.__main__ import print_table
from initlab.experiment import Experiment
from initlab.training import Trainer

CASES: dict[str, dict[str, Any]] = {
    "mlp 20×256, teacher": {"model": {"name": "mlp"}, "task": "teacher"},
    "LeNet, digits": {"model": {"name": "lenet"}, "task": "digits"},
}


def _trainer(case: dict[str, Any], seeds: list[int], schemes: int, steps: int) -> Trainer:
    presets = ["pytorch_default", "kaiming_normal"][:schemes]
    return Trainer(
        Experiment.from_dict(
            {
                "model": case["model"],
                "seeds": seeds,
                "schemes": [{"preset": p} for p in presets],
                "training": {"task": case["task"], "steps": steps},
            }
        )
    )


def _step_times(trainer: Trainer, repeats: int) -> tuple[float, float]:
    """Median seconds of an unrecorded and of a recorded step, taken in turn."""
    run = trainer.runs[0]
    plain, recorded = [], []
    for step in range(repeats):
        start = time.perf_counter()
        trainer._update(run, 2 * step, record=False)
        middle = time.perf_counter()
        trainer._record_layers(run, 2 * step + 1)
        trainer._update(run, 2 * step + 1, record=True)
        plain.append(middle - start)
        recorded.append(time.perf_counter() - middle)
    return statistics.median(plain), statistics.median(recorded)


def recorded_step_rows(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for label, case in CASES.items():
        trainer = _trainer(case, [0], 1, 2 * repeats + 2)
        _step_times(trainer, 2)  # warm-up
        plain, recorded = _step_times(trainer, repeats)
        rows.append(
            {
                "case (batch 64, probe batch 64)": label,
                "unrecorded step ms": plain * 1e3,
                "recorded step ms": recorded * 1e3,
                "recorded ÷ unrecorded": recorded / plain,
                "goal": "≤ 1.15",
            }
        )
    return rows


def _timed_run(steps: int, record_at: list[int] | None) -> tuple[float, float]:
    start = time.perf_counter()
    trainer = _trainer(CASES["LeNet, digits"], [0, 1], 2, steps)
    if record_at is not None:
        spec = trainer.spec.model_copy(update={"record_at": tuple(record_at)})
        trainer.spec = spec
    built = time.perf_counter()
    trainer.run()
    return built - start, time.perf_counter() - built


def whole_training_row(steps: int = 300, repeats: int = 3) -> dict[str, Any]:
    """A LeNet `digits` run of `steps` steps, 2 schemes × 2 seeds, start to end; and the same
    run recording only its last step, in turn, to show what the default records cost."""
    full, last = [], []
    for _ in range(repeats):
        full.append(_timed_run(steps, None))
        last.append(_timed_run(steps, [steps]))
    setup = statistics.median(s for s, _ in full)
    trained = statistics.median(t for _, t in full)
    bare = statistics.median(t for _, t in last)
    return {
        "run": f"LeNet digits, {steps} steps, 2 schemes × 2 seeds",
        "set-up s": setup,
        "training s": trained,
        "per step and run ms": trained / (steps * 4) * 1e3,
        "default records ÷ one record": trained / bare,
    }


def main() -> None:
    """`python -m benchmarks.training_cost`: both tables, as Markdown."""
    print_table("Training: a recorded step ÷ an unrecorded one", recorded_step_rows(15))
    print_table("Training: a whole run", [whole_training_row(300, 3)])


if __name__ == "__main__":
    main()
