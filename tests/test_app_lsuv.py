"""LSUV on the page: a scheme from the address runs, its code takes the batch, its log shows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import open_tab
from streamlit.testing.v1 import AppTest

from initlab.codegen import load_initializer
from initlab.experiment import Experiment, generator, initialized, make_input, stream_seed
from initlab.models import build_model
from initlab.ui.urlstate import encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LSUV = {"method": "lsuv", "tol": 0.05, "max_iter": 5}
PAGE = {
    "model": {"name": "mlp", "depth": 6, "width": 32, "activation": "tanh"},
    "input": {"batch_size": 64},
    "seeds": [0],
    "schemes": [
        {"name": "LSUV", "rules": [{"layers": "Linear", "weight": LSUV, "bias": "zeros"}]},
        {"preset": "pytorch_default"},
    ],
}

pytestmark = pytest.mark.usefixtures("empty_app_caches", "one_thread")


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["experiment"] = encode(PAGE)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_the_method_s_parameters_are_widgets_with_the_file_s_values() -> None:
    at = page()
    tol = [w for w in at.number_input if w.label == "tol"]
    max_iter = [w for w in at.number_input if w.label == "max_iter"]
    assert [w.value for w in tol] == [0.05] and [w.value for w in max_iter] == [5]


def test_the_exported_code_takes_the_batch_and_reproduces_the_page_s_tensors() -> None:
    at = open_tab(page(), "Code")
    code = at.code[0].value
    assert "batch: torch.Tensor" in code and "lsuv_rescale(model, lsuv_layers, batch)" in code
    exp = Experiment.from_dict(PAGE)
    ours, _ = initialized(exp, exp.schemes[0], 0)
    theirs = build_model(exp.model, seed=stream_seed(0, "model"))
    load_initializer(code)(theirs, make_input(exp, 0), generator(0, "init"))
    for (name, p), q in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_the_tables_tab_shows_the_log_and_its_chart() -> None:
    at = open_tab(page(), "Tables")
    assert any(s.value == "lsuv" for s in at.subheader)
    frames = [f.value for f in at.dataframe]
    log = next(f for f in frames if "iteration" in f.columns)
    assert set(log["scheme"]) == {"LSUV"} and log.groupby("layer")["converged"].last().all()
