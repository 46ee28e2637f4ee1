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
from torch import nn

from initlab.experiment import Experiment, run
from initlab.gotchas import scheme_warnings
from initlab.layers import parameter_slots
from initlab.outline import meta_model
from initlab.schemes import Scheme
from initlab.ui import keys
from initlab.ui.text import md

Tables = dict[str, pd.DataFrame]
MAX_ENTRIES = 64  # (scheme, experiment) results; a few MB each at most
SHOW_AFTER_S = 1.0  # a run shorter than this shows no progress bar at all
TABLES = ("layers", "params", "histograms", "lsuv")  # the results tables the page keeps


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


@st.cache_resource(max_entries=16, show_spinner=False)
def meta_model_cached(model_json: str) -> nn.Module:
    """The model on the meta device (shapes only), built once per model spec: the scheme
    columns read its outline and every scheme is checked against it on each rerun."""
    return meta_model(json.loads(model_json), allow_custom=False)  # the page runs zoo models


@st.cache_data(max_entries=256, show_spinner=False)
def warnings_cached(model_json: str, scheme_json: str) -> list[tuple[str, str]]:
    """(level, message) of a scheme's structural warnings on the model's outline: the walks
    run once per (model, scheme), not on every rerun of the page."""
    scheme = Scheme.from_dict(json.loads(scheme_json), "scheme")
    return [(w.level, w.message) for w in scheme_warnings(scheme, meta_model_cached(model_json))]


@st.cache_data(max_entries=256, show_spinner=False)
def matching_rules_cached(model_json: str, scheme_json: str) -> frozenset[int]:
    """Indices of the scheme's rules that match at least one module of the model."""
    scheme = Scheme.from_dict(json.loads(scheme_json), "scheme")
    modules = list(meta_model_cached(model_json).named_modules())
    return frozenset(
        i for i, rule in enumerate(scheme.rules) if any(rule.matches(n, m) for n, m in modules)
    )


@st.cache_data(max_entries=64, show_spinner=False)
def slots_cached(model_json: str) -> dict:
    return parameter_slots(meta_model_cached(model_json))


def scheme_key(exp: Experiment, scheme: Scheme) -> str:
    """What one scheme's results depend on: everything but the other schemes, its name and
    the training section (the probe measures step 0: a training setting never probes again)."""
    spec = exp.to_dict()
    spec.pop("training", None)
    rules = scheme.to_dict()["rules"]
    spec["schemes"] = [{"name": "", "rules": rules}]
    return json.dumps(spec, sort_keys=True)


def _split(tables: Tables, name: str) -> Tables:
    """One scheme's rows, labelled neutrally for the store (a rename is not a new run)."""
    return {k: f[f["scheme"] == name].assign(scheme="") for k, f in tables.items()}


def run_with_progress(experiment_json: str) -> Tables:
    """Results of every scheme: cached per scheme, so changing one scheme probes only that
    one; a progress bar once the runs take more than a second."""
    exp = Experiment.from_text(experiment_json, allow_custom=False)
    keys = {s.name: scheme_key(exp, s) for s in exp.schemes}
    missing = tuple(s for s in exp.schemes if store().get(keys[s.name]) is None)
    if missing:
        fresh = _run(exp.model_copy(update={"schemes": missing}))
        for scheme in missing:
            store().put(keys[scheme.name], _split(fresh, scheme.name))
    parts = [(name, store().get(key)) for name, key in keys.items()]
    if any(tables is None for _, tables in parts):  # evicted meanwhile by other sessions
        return _run(exp)
    return {
        k: pd.concat([t[k].assign(scheme=n) for n, t in parts], ignore_index=True) for k in TABLES
    }


def _run(exp: Experiment) -> Tables:
    slot, start = st.empty(), time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        if message != "done":
            st.session_state[keys.PROBES_RUN] = st.session_state.get(keys.PROBES_RUN, 0) + 1
        if time.perf_counter() - start > SHOW_AFTER_S:
            slot.progress(fraction, text=f"Probing: {md(message)}")  # it names the scheme

    results = run(exp, progress=progress)
    slot.empty()
    return {name: getattr(results, name) for name in TABLES}
