"""The cached run: the experiment's JSON is the cache key, results are plain DataFrames."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import streamlit as st

from initlab.experiment import Experiment, run
from initlab.outline import model_slots

Tables = dict[str, pd.DataFrame]


@st.cache_data(max_entries=16, show_spinner=False)
def run_cached(
    experiment_json: str, _progress: Callable[[float, str], None] | None = None
) -> Tables:
    """Run once per distinct experiment; st.cache_data hands every caller its own copy."""
    results = run(Experiment.from_text(experiment_json), progress=_progress)
    return {"layers": results.layers, "params": results.params, "histograms": results.histograms}


@st.cache_data(max_entries=64, show_spinner=False)
def slots_cached(model_json: str) -> dict:
    import json

    return model_slots(json.loads(model_json))


def run_with_progress(experiment_json: str) -> Tables:
    """A progress bar once a run has taken more than a second; counts the probes run."""
    slot, start = st.empty(), time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        if message != "done":
            st.session_state["probes_run"] = st.session_state.get("probes_run", 0) + 1
        if time.perf_counter() - start > 1.0:
            slot.progress(fraction, text=f"Probing: {message}")

    tables = run_cached(experiment_json, _progress=progress)
    slot.empty()
    return tables
