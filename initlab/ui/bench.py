"""The app's part of the benchmark (`python -m initlab.bench` calls it): reruns measured with
Streamlit's AppTest, a display-only change against a scheme change."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from initlab.ui.runner import store


def app_reruns(repeats: int) -> list[dict[str, Any]]:
    """AppTest: a display-only change vs a scheme change; seconds and probes run."""
    app = str(Path(__file__).resolve().parents[2] / "app.py")
    steps = ("first load", "display-only change", "scheme change")
    rows: dict[str, list[tuple[float, int]]] = {step: [] for step in steps}
    for i in range(repeats):
        store().clear()  # each repeat's first load really runs the probes
        at = AppTest.from_file(app, default_timeout=300)
        for step in steps:
            rows[step].append(_timed(at, step, 0.01 * (i + 1)))
    return [_rerun_row(step, v) for step, v in rows.items()]


def _rerun_row(step: str, values: list[tuple[float, int]]) -> dict[str, Any]:
    seconds = statistics.median(s for s, _ in values)
    probes = statistics.median(p for _, p in values)
    return {"rerun": step, "seconds": seconds, "probes run": probes}


def _timed(at: Any, step: str, slope: float) -> tuple[float, int]:
    # AppTest's session_state supports `in` and [] but not .get
    before = at.session_state["probes_run"] if "probes_run" in at.session_state else 0  # noqa: SIM401
    if step == "display-only change":
        at.segmented_control(key="view_role").set_value("every observed row")
    elif step == "scheme change":
        at.number_input(key="s1.Linear.weight.kaiming_normal.a").set_value(slope)
    start = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - start
    after = at.session_state["probes_run"] if "probes_run" in at.session_state else 0  # noqa: SIM401
    return seconds, after - before
