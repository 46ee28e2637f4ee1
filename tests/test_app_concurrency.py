"""Streamlit sessions are threads of one process: two pages run at once, each with its own
experiment from its own address, and each shows exactly the results it would get alone.

PyTorch's default init draws from torch's global RNG, so a model built while another thread
seeds that RNG gets the other's weights unless model construction is serialised: the
"PyTorch default" scheme in each experiment is there to catch that.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import initlab
from initlab.ui import runner
from initlab.ui.urlstate import decode, encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
ROUNDS = 3  # the race is a matter of timing: give it a few chances
# a row's identity in each table (the page concatenates per scheme, the engine per seed)
TABLES = {"layers": ["scheme", "seed", "order"], "params": ["scheme", "seed", "param"]}
SAME = ("model", "seeds", "schemes")  # the page also spells out the input's defaults


def experiment(depth: int, width: int, seeds: list[int]) -> dict[str, Any]:
    return {
        "model": {"name": "mlp", "depth": depth, "width": width, "activation": "tanh"},
        "input": {"batch_size": 64},
        "seeds": seeds,
        "schemes": [
            {"name": "PyTorch default", "preset": "pytorch_default"},
            {"name": "Xavier", "preset": "xavier_normal"},
        ],
    }


EXPERIMENTS = {
    "a": experiment(depth=8, width=64, seeds=[0, 1, 2, 3]),
    "b": experiment(depth=6, width=48, seeds=[10, 11, 12, 13]),
}


pytestmark = pytest.mark.usefixtures("empty_app_caches")


def solo(d: dict[str, Any]) -> dict[str, pd.DataFrame]:
    results = initlab.run(initlab.Experiment.from_dict(d))
    return {"layers": results.layers, "params": results.params}


def shown_table(at: AppTest, columns: pd.Index) -> pd.DataFrame:
    """The table of the Tables tab with these columns (AppTest gives st.dataframe no key)."""
    frames = [f.value for f in at.dataframe if set(f.value.columns) == set(columns)]
    assert len(frames) == 1, [list(f.value.columns) for f in at.dataframe]
    return frames[0]


def session(d: dict[str, Any], start: threading.Barrier, out: dict[str, Any], key: str) -> None:
    try:
        at = AppTest.from_file(APP, default_timeout=300)
        at.query_params["experiment"] = encode(d)
        at.query_params["tab"] = "Tables"  # its tables are drawn only while it is open
        start.wait(timeout=60)  # both pages start their first run together
        out[key] = at.run()
    except BaseException as exc:  # reported by the main thread
        out[key] = exc


def run_together() -> dict[str, AppTest]:
    out: dict[str, Any] = {}
    start = threading.Barrier(len(EXPERIMENTS))
    threads = [threading.Thread(target=session, args=(d, start, out, key))
               for key, d in EXPERIMENTS.items()]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    for key, value in out.items():
        if isinstance(value, BaseException):
            raise AssertionError(f"session {key} failed") from value
    return out


def assert_same(shown: pd.DataFrame, alone: pd.DataFrame, keys: list[str], what: str) -> None:
    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[list(alone.columns)].sort_values(keys).reset_index(drop=True)

    pd.testing.assert_frame_equal(tidy(shown), tidy(alone), check_dtype=False, obj=what)


def test_two_sessions_at_once_each_see_their_own_solo_results() -> None:
    alone = {key: solo(d) for key, d in EXPERIMENTS.items()}
    for _ in range(ROUNDS):
        st.cache_data.clear()
        runner.store().clear()  # every round runs the probes again, concurrently
        pages = run_together()
        for key, at in pages.items():
            assert not at.exception, [e.message for e in at.exception]
            assert [e.value for e in at.error] == []
            got = decode(at.query_params["experiment"])
            want = initlab.Experiment.from_dict(EXPERIMENTS[key]).to_dict()
            assert {k: got[k] for k in SAME} == {k: want[k] for k in SAME}, "its own address"
            for name, keys in TABLES.items():
                table = alone[key][name]
                shown = shown_table(at, table.columns)
                assert_same(shown, table, keys, f"session {key} {name}")
