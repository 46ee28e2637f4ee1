"""The page runs exactly what the address or the file says: every field of a valid experiment
reaches a widget (or is kept and shown), none is clamped or dropped; and values typed for a
model or a layer family survive while another model is on screen.

Most tests stop the page before the probe: `page.run_with_progress` is replaced by a recorder
of the experiment JSON the page would run (that JSON *is* what the page runs), which then stops
the run with an error. One test runs the probe for real and reads the page's address instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
import torch
from conftest import open_tab
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as hs
from streamlit.testing.v1 import AppTest

import initlab
from initlab.layers import FAMILIES
from initlab.models import build_model
from initlab.schemes import validate_scheme
from initlab.ui import page
from initlab.ui.urlstate import decode, encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
STOP = "stopped before the probe for this test"
SCHEME = {"name": "K", "preset": "kaiming_normal"}
TINY_MLP = {"name": "mlp", "depth": 2, "width": 8}
TINY_TRANSFORMER = {"name": "transformer", "n_layers": 1, "d_model": 8, "n_heads": 2,
                    "vocab_size": 100, "seq_len": 4}  # fmt: skip


class Recorded(ValueError):
    """Raised by the stand-in runner: the page shows it as a refused run, nothing else."""


pytestmark = pytest.mark.usefixtures("empty_app_caches")


@contextmanager
def recording() -> Iterator[list[str]]:
    """While active, the page records each experiment it would run instead of probing."""
    ran: list[str] = []

    def fake(text: str) -> dict:
        ran.append(text)
        raise Recorded(STOP)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(page, "run_with_progress", fake)
        yield ran


def start(d: dict[str, Any] | None = None, **session: Any) -> AppTest:
    """A first run of the page, from the address `d` (if any) and preset widget state."""
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in session.items():
        at.session_state[key] = value
    if d is not None:
        at.query_params["experiment"] = encode(d)
    return rerun(at)


def rerun(target: Any) -> AppTest:
    """Run the page (`target`: the AppTest, or a widget just given a value) and check it."""
    at = target.run()
    assert not at.exception, [e.message for e in at.exception]
    others = [e.value for e in at.error if STOP not in e.value]
    assert others == [], others
    return at


def ran(record: list[str]) -> dict[str, Any]:
    """The last experiment the page ran, as the library writes it."""
    assert record, "the page ran nothing"
    return initlab.Experiment.from_text(record[-1]).to_dict()


def normal_form(d: dict[str, Any]) -> dict[str, Any]:
    """`d` as the library normalizes it; the page also spells out the input distribution the
    model implies (None means the model's own), the one default it legitimately fills in."""
    out = initlab.Experiment.from_dict(d).to_dict()
    tokens = initlab.MODELS[out["model"]["name"]].tokens(out["model"]) is not None
    out["input"].setdefault("distribution", "tokens" if tokens else "normal")
    return out


def experiment(**fields: Any) -> dict[str, Any]:
    return {"model": TINY_MLP, "input": {"batch_size": 8}, "schemes": [SCHEME], **fields}


# ---------------------------------------------------------------- each measured defect


def test_a_batch_size_above_the_old_ui_limit_is_run_as_given() -> None:
    d = experiment(input={"batch_size": 8000})
    with recording() as record:
        at = start(d)
    assert at.number_input(key="batch_size").value == 8000
    assert ran(record)["input"]["batch_size"] == 8000
    assert at.number_input(key="batch_size").max == 65_536  # the library's own limit


def test_ten_arbitrary_seeds_are_run_as_given() -> None:
    seeds = [3, 17, 99, 4, 5, 6, 7, 8, 1000, 12]
    with recording() as record:
        at = start(experiment(seeds=seeds))
    assert ran(record)["seeds"] == seeds
    assert at.number_input(key="n_seeds").value == 10
    assert at.text_input(key="seed_text").value == ", ".join(map(str, seeds))


def test_typed_seed_values_are_run_and_set_the_count() -> None:
    with recording() as record:
        at = start(experiment())
        rerun(at.text_input(key="seed_text").set_value("5, 9, 2"))
        assert ran(record)["seeds"] == [5, 9, 2]
        assert at.number_input(key="n_seeds").value == 3
        rerun(at.number_input(key="n_seeds").set_value(5))  # the count grows the list
        assert ran(record)["seeds"] == [5, 9, 2, 0, 1]
        at.text_input(key="seed_text").set_value("5, x").run()
    assert any("Seed values" in e.value for e in at.error)


def test_mlp_per_layer_widths_are_run_as_given() -> None:
    d = experiment(model={"name": "mlp", "widths": [8, 32, 4]})
    with recording() as record:
        at = start(d)
    assert ran(record)["model"] == normal_form(d)["model"]
    assert ran(record)["model"]["widths"] == [8, 32, 4]
    assert at.text_input(key="model.mlp.widths").value == "8, 32, 4"
    assert at.number_input(key="model.mlp.depth").disabled, "depth follows from widths"


def test_clearing_the_widths_goes_back_to_depth_times_width() -> None:
    with recording() as record:
        at = start(experiment(model={"name": "mlp", "widths": [8, 32, 4]}))
        rerun(at.text_input(key="model.mlp.widths").set_value(""))
    model = ran(record)["model"]
    assert "widths" not in model and (model["depth"], model["width"]) == (2, 8)


def test_histogram_bins_are_run_as_given() -> None:
    with recording() as record:
        at = start(experiment(bins=16))
    assert ran(record)["bins"] == 16
    assert at.number_input(key="bins").value == 16


def test_a_token_models_input_vocab_size_is_run_as_given() -> None:
    d = experiment(model=TINY_TRANSFORMER, input={"batch_size": 4, "vocab_size": 50})
    with recording() as record:
        at = start(d)
    assert ran(record)["input"]["vocab_size"] == 50
    assert at.number_input(key="input_vocab_size").value == 50
    assert ran(record) == normal_form(d)


def test_device_auto_is_run_as_given() -> None:
    with recording() as record:
        at = start(experiment(device="auto"))
    assert ran(record)["device"] == "auto"
    assert "auto" in at.radio(key="device").options


def test_an_input_shape_equal_to_the_models_own_is_kept() -> None:
    d = experiment(model={"name": "lenet"}, input={"batch_size": 2, "shape": [3, 32, 32]})
    with recording() as record:
        start(d)
    assert ran(record)["input"]["shape"] == [3, 32, 32]


def test_numbers_of_the_unused_distribution_are_kept() -> None:
    d = experiment(input={"batch_size": 4, "distribution": "normal", "low": -3.0, "high": 5.0})
    with recording() as record:
        at = start(d)
        assert ran(record) == normal_form(d)
        rerun(at.radio(key="input_distribution").set_value("uniform"))
    assert (ran(record)["input"]["low"], ran(record)["input"]["high"]) == (-3.0, 5.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_cuda_experiment_on_a_cpu_machine_says_it_runs_on_cpu() -> None:
    with recording() as record:
        at = start(experiment(device="cuda"))
    assert ran(record)["device"] == "cpu"
    assert any("asked for device cuda" in c.value for c in at.caption)


def test_an_upload_replaces_what_was_typed_before() -> None:
    """Values typed earlier (a widths list, seeds, bins) must not linger into a loaded file.
    The uploader sits with the results, so this one probes for real (tiny sizes)."""
    d = experiment(model={**TINY_MLP, "depth": 3}, seeds=[4], bins=32)
    at = start(experiment())
    rerun(at.text_input(key="model.mlp.widths").set_value("4, 4, 4"))
    rerun(at.text_input(key="seed_text").set_value("1, 2"))
    rerun(at.number_input(key="bins").set_value(100))
    assert decode(at.query_params["experiment"])["model"]["widths"] == [4, 4, 4]
    upload = open_tab(at, "Experiment").get("file_uploader")[0]
    rerun(upload.set_value(("mine.json", json.dumps(d).encode(), "application/json")))
    assert decode(at.query_params["experiment"]) == normal_form(d)


def test_a_loaded_custom_schemes_rules_are_run_as_given() -> None:
    """A rule for a layer type the model lacks never changes a tensor, but it is part of what
    the file says: the page must not drop it from a scheme nobody edited."""
    rules = [{"layers": "Conv", "weight": "zeros"}, {"layers": "Linear", "weight": "ones"}]
    d = experiment(schemes=[{"name": "C", "rules": rules}])
    with recording() as record:
        at = start(d)
    assert at.text_input(key=f"s{at.session_state['editors'][0]['uid']}.name").value == "C"
    assert ran(record) == normal_form(d)


# ---------------------------------------------------------------- switching away and back


def test_a_model_switched_away_and_back_keeps_its_typed_values() -> None:
    with recording() as record:
        at = start(experiment())
        rerun(at.number_input(key="model.mlp.depth").set_value(3))
        rerun(at.selectbox(key="model.mlp.norm").set_value("layernorm"))
        rerun(at.selectbox(key="model_name").set_value("lenet"))
        assert ran(record)["model"]["name"] == "lenet"
        rerun(at.selectbox(key="model_name").set_value("mlp"))
    assert at.number_input(key="model.mlp.depth").value == 3
    assert at.selectbox(key="model.mlp.norm").value == "layernorm"
    assert ran(record)["model"]["depth"] == 3 and ran(record)["model"]["norm"] == "layernorm"


def test_the_input_distribution_survives_a_token_model() -> None:
    session = {f"model.transformer.{k}": v for k, v in TINY_TRANSFORMER.items() if k != "name"}
    with recording() as record:
        at = start(experiment(), **session)
        rerun(at.radio(key="input_distribution").set_value("uniform"))
        rerun(at.selectbox(key="model_name").set_value("transformer"))
        rerun(at.selectbox(key="model_name").set_value("mlp"))
    assert ran(record)["input"]["distribution"] == "uniform"


def bn_weight(exp: dict[str, Any], scheme: str) -> Any:
    rules = next(s for s in exp["schemes"] if s["name"] == scheme)["rules"]
    return next(r for r in rules if r["layers"] == "BatchNorm" and "name" not in r)["weight"]


@pytest.mark.parametrize("away", ["norm none", "transformer"])
def test_a_batchnorm_edit_survives_a_model_without_batchnorm(away: str) -> None:
    """Away to a model without BatchNorm (the transformer also has another activation, so the
    column must not be reset to the preset's gains for it) and back."""
    session = {f"model.transformer.{k}": v for k, v in TINY_TRANSFORMER.items() if k != "name"}
    d = experiment(model={**TINY_MLP, "norm": "batchnorm"}, schemes=[SCHEME])
    with recording() as record:
        at = start(d, **session)
        uid = at.session_state["editors"][0]["uid"]
        key = f"s{uid}.BatchNorm.weight"
        rerun(at.selectbox(key=f"{key}.method").set_value("constant"))
        rerun(at.number_input(key=f"{key}.constant.val").set_value(0.5))
        assert bn_weight(ran(record), "K") == {"method": "constant", "val": 0.5}
        if away == "transformer":
            rerun(at.selectbox(key="model_name").set_value("transformer"))
            rerun(at.selectbox(key="model_name").set_value("mlp"))
        else:
            rerun(at.selectbox(key="model.mlp.norm").set_value("none"))
            rerun(at.selectbox(key="model.mlp.norm").set_value("batchnorm"))
    assert at.selectbox(key=f"{key}.method").value == "constant"
    assert at.number_input(key=f"{key}.constant.val").value == 0.5
    assert bn_weight(ran(record), "K") == {"method": "constant", "val": 0.5}


def test_picking_a_preset_still_resets_remembered_edits() -> None:
    d = experiment(model={**TINY_MLP, "norm": "batchnorm"})
    with recording() as record:
        at = start(d)
        uid = at.session_state["editors"][0]["uid"]
        rerun(at.selectbox(key=f"s{uid}.BatchNorm.weight.method").set_value("zeros"))
        rerun(at.selectbox(key="model.mlp.norm").set_value("none"))
        rerun(at.selectbox(key=f"s{uid}.preset").set_value("xavier_normal"))
        rerun(at.selectbox(key="model.mlp.norm").set_value("batchnorm"))
    assert at.selectbox(key=f"s{uid}.BatchNorm.weight.method").value != "zeros"
    assert ran(record)["schemes"][0]["rules"] == initlab.preset("xavier_normal").to_dict()["rules"]


# ---------------------------------------------------------------- one real run


def test_a_loaded_experiment_runs_for_real_and_is_shared_unchanged() -> None:
    d = {
        "model": {"name": "mlp", "widths": [6, 12, 4], "activation": "tanh", "bias": True},
        "input": {"batch_size": 5000, "distribution": "uniform", "low": -2.0, "high": 3.0},
        "seeds": [7, 3],
        "bins": 8,
        "device": "auto",
        "mode": "eval",
        "backward": False,
        "schemes": [SCHEME, {"name": "N", "rules": [
            {"layers": "Linear", "weight": {"method": "normal", "std": 0.05}, "bias": "zeros"}]}],
    }  # fmt: skip
    at = start(d)
    assert at.session_state["probes_run"] == 4  # 2 schemes × 2 seeds, really probed
    assert decode(at.query_params["experiment"]) == normal_form(d)


# ---------------------------------------------------------------- property: any valid one

ACTIVATIONS = list(initlab.models.ACTIVATIONS)
small = hs.integers


def mlp_models() -> hs.SearchStrategy[dict[str, Any]]:
    shape = hs.one_of(
        hs.fixed_dictionaries({"depth": small(1, 4), "width": small(1, 16)}),
        hs.fixed_dictionaries({"widths": hs.lists(small(1, 16), min_size=2, max_size=5)}),
    )
    extra = hs.fixed_dictionaries({}, optional={
        "activation": hs.sampled_from(ACTIVATIONS), "bias": hs.booleans(),
        "norm": hs.sampled_from(["none", "batchnorm", "layernorm"])})  # fmt: skip
    return hs.builds(lambda a, b: {"name": "mlp", **a, **b}, shape, extra)


def transformer_models() -> hs.SearchStrategy[dict[str, Any]]:
    return hs.builds(
        lambda heads, d, rest: {"name": "transformer", "n_heads": heads, "d_model": d, **rest},
        hs.sampled_from([1, 2, 4]), hs.sampled_from([8, 16]),
        hs.fixed_dictionaries({"n_layers": small(1, 2), "vocab_size": small(2, 64),
                               "seq_len": small(1, 6), "tie_weights": hs.booleans()}),
    )  # fmt: skip


MODELS = hs.one_of(
    mlp_models(),
    hs.just({"name": "lenet"}),
    hs.fixed_dictionaries({"name": hs.just("cnn"), "depth": small(1, 3), "channels": small(1, 6),
                           "activation": hs.sampled_from(ACTIVATIONS),
                           "batchnorm": hs.booleans(), "image_size": small(4, 12)}),
    hs.fixed_dictionaries({"name": hs.just("resnet"), "stages": small(1, 2),
                           "blocks": small(1, 2), "width": small(1, 6),
                           "image_size": small(4, 12)}),
    transformer_models(),
)  # fmt: skip

NUMBERS = hs.sampled_from([-2.5, -1.0, 0.0, 0.1, 1e-3, 3.0, 12.75])
ANY_RANK = [  # methods that take a tensor of any rank (norm weights and biases are 1-D)
    "default", "zeros", "ones", {"method": "constant", "val": 0.25},
    {"method": "normal", "mean": 0.1, "std": 0.02}, {"method": "uniform", "a": -0.5, "b": 0.5},
    {"method": "trunc_normal", "std": 0.5, "scale": 2.0},
]  # fmt: skip
MATRIX = [  # methods for weights of rank >= 2
    {"method": "xavier_normal", "gain": "tanh"}, {"method": "xavier_uniform", "gain": 1.5},
    {"method": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"},
    {"method": "kaiming_uniform_", "a": 0.2}, {"method": "orthogonal"}, "lecun_normal",
]  # fmt: skip
WEIGHTED = ["Linear", "Conv", "Embedding"]
NORMS = ["BatchNorm", "LayerNorm", "BatchNorm1d"]


def rules() -> hs.SearchStrategy[dict[str, Any]]:
    matrix = hs.fixed_dictionaries(
        {"layers": hs.sampled_from(WEIGHTED), "weight": hs.sampled_from(MATRIX + ANY_RANK)},
        optional={"bias": hs.sampled_from(ANY_RANK), "name": hs.sampled_from(["*.c_proj", "fc1"])},
    )
    norm = hs.fixed_dictionaries(
        {"layers": hs.sampled_from(NORMS)},
        optional={"weight": hs.sampled_from(ANY_RANK), "bias": hs.sampled_from(ANY_RANK)},
    )
    return hs.one_of(matrix, norm)  # fmt: skip


def schemes() -> hs.SearchStrategy[list[dict[str, Any]]]:
    one = hs.one_of(
        hs.builds(lambda p: {"preset": p}, hs.sampled_from(list(initlab.PRESETS))),
        hs.builds(lambda r: {"rules": r}, hs.lists(rules(), max_size=3)),
        hs.builds(lambda p, r: {"preset": p, "rules": r},  # a preset's column, edited
                  hs.sampled_from(list(initlab.PRESETS)), hs.lists(rules(), max_size=2)),
    )  # fmt: skip
    named = hs.lists(one, min_size=1, max_size=3)
    return named.map(lambda ss: [{"name": f"Scheme {i}", **s} for i, s in enumerate(ss)])


@hs.composite
def experiments(draw: hs.DrawFn) -> dict[str, Any]:
    model = draw(MODELS)
    entry = initlab.MODELS[model["name"]]
    spec = entry.normalize(model)
    vocab = entry.tokens(spec)
    inputs: dict[str, Any] = {"batch_size": draw(hs.sampled_from([1, 3, 16, 4096, 65_536]))}
    kind = "tokens" if vocab else draw(hs.sampled_from(["normal", "uniform"]))
    if draw(hs.booleans()):
        inputs["distribution"] = kind
    for field in ("mean", "low"):
        inputs[field] = draw(NUMBERS)
    inputs["std"] = abs(draw(NUMBERS))
    inputs["high"] = inputs["low"] + draw(hs.sampled_from([0.5, 4.0]))
    if draw(hs.booleans()):
        inputs["vocab_size"] = draw(small(1, vocab or 1000))
    if draw(hs.booleans()):
        inputs["shape"] = list(entry.input_shape(spec))
    options = {
        "seeds": draw(hs.lists(small(0, 10_000), min_size=1, max_size=32, unique=True)),
        "backward": draw(hs.booleans()),
        "mode": draw(hs.sampled_from(["train", "eval"])),
        "bins": draw(small(4, 512)),
        "device": draw(hs.sampled_from(["cpu", "auto"])),
    }
    return {"model": model, "input": inputs, **options, "schemes": draw(schemes())}


def valid_for_the_model(d: dict[str, Any]) -> bool:
    """Valid for the library and every scheme applicable to the model (what `run` checks)."""
    exp = initlab.Experiment.from_dict(d)
    model = build_model(exp.model)
    try:
        for scheme in exp.schemes:
            validate_scheme(scheme, model)
    except ValueError:
        return False
    return True


@settings(derandomize=True, max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip
@given(experiments())
def test_the_page_runs_any_valid_experiment_it_is_given(d: dict[str, Any]) -> None:
    assume(valid_for_the_model(d))
    st.cache_data.clear()
    with recording() as record:
        start(d)
    assert ran(record) == normal_form(d)


def test_every_family_the_strategy_names_exists() -> None:
    # a typo here would only make rules match nothing, silently weakening the property
    assert set(WEIGHTED) | {"BatchNorm", "LayerNorm"} <= set(FAMILIES)
