"""The app's part of the benchmark: the figure JSON the default page sends, and reruns measured
with Streamlit's AppTest (a display-only change against a scheme change)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from initlab import plots
from initlab.experiment import Experiment, run
from initlab.ui.results_panel import _default_names
from initlab.ui.runner import store

APP = Path(__file__).resolve().parents[1] / "app.py"
DEFAULT_PAGE = {
    "model": {"name": "mlp", "depth": 20, "width": 256, "activation": "relu"},
    "seeds": [0, 1],
    "schemes": [
        {"name": "PyTorch default", "preset": "pytorch_default"},
        {"name": "Kaiming normal", "preset": "kaiming_normal"},
    ],
}


def payload_bytes(batch: int, page: dict[str, Any] = DEFAULT_PAGE) -> int:
    """Bytes of figure JSON the page sends (variance, gradient, histogram grid)."""
    res = run(Experiment.from_dict({**page, "input": {"batch_size": batch}}))
    names = list(dict.fromkeys(res.histograms.query("kind == 'activation'")["name"]))
    figs = [
        plots.variance_by_depth(res.layers),
        plots.grad_variance_by_depth(res.layers),
        plots.histogram_grid(res.histograms, "activation", names=_default_names(names)),
    ]
    return sum(len(f.to_json()) for f in figs)


STEPS = ("first load", "display-only change", "scheme change")


def app_reruns(repeats: int) -> list[dict[str, Any]]:
    """AppTest: a display-only change vs a scheme change; seconds and probes run."""
    rows: dict[str, list[tuple[float, int]]] = {step: [] for step in STEPS}
    for i in range(repeats):
        store().clear()  # each repeat's first load really runs the probes
        at = AppTest.from_file(str(APP), default_timeout=300)
        for step in STEPS:
            rows[step].append(_timed(at, step, 0.01 * (i + 1)))
    return [_rerun_row(step, v) for step, v in rows.items()]


def _rerun_row(step: str, values: list[tuple[float, int]]) -> dict[str, Any]:
    seconds = statistics.median(s for s, _ in values)
    probes = statistics.median(p for _, p in values)
    return {"rerun": step, "seconds": seconds, "probes run": probes}


def _probes_run(at: AppTest) -> int:
    # AppTest's session_state supports `in` and [] but not .get
    return at.session_state["probes_run"] if "probes_run" in at.session_state else 0  # noqa: SIM401


def _timed(at: AppTest, step: str, slope: float) -> tuple[float, int]:
    before = _probes_run(at)
    if step == "display-only change":
        at.segmented_control(key="view_role").set_value("every observed row")
    elif step == "scheme change":
        at.number_input(key="s1.Linear.weight.kaiming_normal.a").set_value(slope)
    start = time.perf_counter()
    at.run()
    return time.perf_counter() - start, _probes_run(at) - before
