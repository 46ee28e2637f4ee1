"""The cached run: the experiment's JSON is the cache key, results are plain DataFrames.

The store is a small process-wide LRU (st.cache_resource holds it) rather than st.cache_data,
because the page must know *before* running whether a run is needed, to show a progress bar
only then: st.cache_data records any element drawn inside the cached call and replays it on
every later hit, against a page that no longer has it. Every caller gets its own copy of the
tables, so one session can never change another's results.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict

import pandas as pd
import streamlit as st

from initlab.experiment import Experiment, run
from initlab.outline import model_slots

Tables = dict[str, pd.DataFrame]
MAX_ENTRIES = 16
SHOW_AFTER_S = 1.0  # a run shorter than this shows no progress bar at all


class RunStore:
    """A thread-safe LRU of experiment JSON → results tables."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, Tables] = OrderedDict()

    def get(self, key: str) -> Tables | None:
        with self.lock:
            tables = self.entries.get(key)
            if tables is None:
                return None
            self.entries.move_to_end(key)
        return {name: frame.copy() for name, frame in tables.items()}

    def put(self, key: str, tables: Tables) -> None:
        with self.lock:
            self.entries[key] = {name: frame.copy() for name, frame in tables.items()}
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


@st.cache_resource
def store() -> RunStore:
    return RunStore()


@st.cache_data(max_entries=64, show_spinner=False)
def slots_cached(model_json: str) -> dict:
    return model_slots(json.loads(model_json))


def run_with_progress(experiment_json: str) -> Tables:
    """Cached results, or a run with a progress bar once it has taken more than a second."""
    cached = store().get(experiment_json)
    if cached is not None:
        return cached
    slot, start = st.empty(), time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        if message != "done":
            st.session_state["probes_run"] = st.session_state.get("probes_run", 0) + 1
        if time.perf_counter() - start > SHOW_AFTER_S:
            slot.progress(fraction, text=f"Probing: {message}")

    results = run(Experiment.from_text(experiment_json), progress=progress)
    slot.empty()
    tables = {"layers": results.layers, "params": results.params, "histograms": results.histograms}
    store().put(experiment_json, tables)
    return tables
