"""Refusals: every bad input gets one short message that says what, where and what is allowed.

A catalogue of bad inputs, one field at a time: the top level, `input.*`, every declared `Param`
of every zoo model (below `low`, above `high`, wrong types, unknown choices), every declared
parameter of every method, rules, schemes, JSON syntax, files, and what only `initlab.run` can
see against the model (eye on a convolution, dirac on a Linear, ...). Each must end in a
ValueError whose message contains the field's path and is one short paragraph; a sample also
goes through the CLI (exit 2, at most two lines on stderr). A library defect found this way is
a catalogue entry with `known=...` (a strict xfail, so its fix shows up as XPASS) until fixed;
none is open.

Also here: every preset on every zoo model (runs, or says which scheme and parameter it cannot
initialize), and numerics (explosion to inf and vanishing to exact zeros are flagged at the
first layer where they happen, and never break a chart).
"""

from __future__ import annotations

import copy
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import initlab
from initlab import Experiment, health, plots
from initlab.cli import main
from initlab.experiment import HISTS_OUT, LAYERS_OUT, PARAMS_OUT
from initlab.models import ALLOW_ENV
from initlab.params import Param
from initlab.reading import MAX_FILE_BYTES

NAN, INF = float("nan"), float("inf")
MAX_MESSAGE = 600  # characters: "a line or two", not a dump of the input


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Custom models off and the default budgets, whatever the caller's shell says."""
    for name in (ALLOW_ENV, "INITLAB_MEMORY_BUDGET_MB", "INITLAB_TIME_BUDGET_S"):
        monkeypatch.delenv(name, raising=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Bad:
    """One bad input and the field path its message must contain.

    `data` is a dict (Experiment.from_dict), a str (from_text) or bytes (a file for from_json;
    "{file}" in `where` stands for its path). `stage` "run": valid on its own, refused by
    `initlab.run` against the model. `known`: a library defect (the strict xfail's reason).
    """

    what: str
    data: Any
    where: str
    stage: str = "parse"
    allow_custom: bool | None = False
    known: str | None = None


# Small configs of every zoo model (kept tiny so that the run-stage entries take milliseconds).
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"depth": 3, "width": 8},
    "lenet": {},
    "cnn": {"depth": 2, "channels": 4, "image_size": 8},
    "resnet": {"stages": 2, "blocks": 1, "width": 4, "image_size": 8},
    "transformer": {"n_layers": 1, "d_model": 8, "n_heads": 2, "vocab_size": 16, "seq_len": 4},
    "rnn": {"layers": 1, "hidden": 8, "input_size": 4, "seq_len": 3},
}
# hf (Hugging Face architectures) has its own tests: tests/test_hf_*.py
ZOO = [name for name, entry in initlab.MODELS.items() if not entry.custom and name != "hf"]
CUSTOM_OK = {
    "name": "custom",
    "factory": "torch.nn:Linear",  # already imported: "running the user's code" is harmless here
    "kwargs": {"in_features": 4, "out_features": 4},
}

BASE: dict[str, Any] = {
    "model": {"name": "mlp", "depth": 2, "width": 8},
    "input": {"batch_size": 4},
    "seeds": [0],
    "schemes": [{"preset": "kaiming_normal"}],
}


def exp(**changes: Any) -> dict[str, Any]:
    """BASE with top-level fields replaced."""
    return {**copy.deepcopy(BASE), **changes}


def edit(path: str, value: Any, d: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE (or `d`) with the value at a dotted path set (list indices are numbers)."""
    out = copy.deepcopy(d if d is not None else BASE)
    node: Any = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in copy.deepcopy(BASE).items() if k != key}


def with_model(name: str, **changes: Any) -> dict[str, Any]:
    return exp(model={"name": name, **SMALL[name], **changes}, input={"batch_size": 2})


def rule(spec: Any, layers: str = "Linear", slot: str = "weight") -> dict[str, Any]:
    return {"layers": layers, slot: spec}


# Where a method spec sits: (path prefix, schemes holding `spec` at that place).
SPEC_PLACES: list[tuple[str, Any]] = [
    ("schemes.0.rules.0.weight", lambda s: [{"name": "s", "rules": [rule(s)]}]),
    (
        "schemes.1.rules.0.bias",
        lambda s: [{"preset": "zeros"}, {"name": "t", "rules": [rule(s, slot="bias")]}],
    ),
    (
        "schemes.0.rules.2.weight",
        lambda s: [{"name": "s", "rules": [rule("zeros", "LayerNorm"), rule("ones"), rule(s)]}],
    ),
]


def spec_at(spec: Any, place: int = 0) -> tuple[str, dict[str, Any]]:
    prefix, schemes = SPEC_PLACES[place % len(SPEC_PLACES)]
    return prefix, exp(schemes=schemes(spec))


def wrong_types(kind: str) -> list[tuple[str, Any]]:
    common = [("null", None), ("a list", [1]), ("an object", {"v": 1})]
    if kind in ("float", "int"):
        return [("text", "3"), ("true", True), ("NaN", NAN), ("inf", INF), *common]
    if kind == "bool":
        return [("text 'yes'", "yes"), ("1", 1), ("null", None)]
    if kind == "choice":
        return [("unknown value", "nope"), ("a number", 3), ("null", None), ("a list", ["x"])]
    if kind == "gain":
        return [
            ("negative", -1.0),
            ("unknown name", "tanh2"),
            ("true", True),
            ("NaN", NAN),
            ("inf", INF),
            ("bad leaky_relu slope", "leaky_relu(x)"),
            ("empty text", ""),
            *common,
        ]
    raise AssertionError(kind)


def out_of_range(p: Param) -> list[tuple[str, Any]]:
    """Values just outside the declared range, and a fraction for whole numbers."""
    out = []
    if p.low is not None:
        out.append(("below low", p.low - 1))
        if p.low_open:
            out.append(("at the open low", p.low))
    if p.high is not None:
        out.append(("above high", p.high + 1))
        if p.high_open:
            out.append(("at the open high", p.high))
    if p.kind == "int":
        out.append(("a fraction", (p.low or 0) + 1.5))
    return out


def model_param_entries() -> list[Bad]:
    """Every declared Param of every zoo model (and of `custom`): out of range and wrong types."""
    out = []
    for name, entry in initlab.MODELS.items():
        if name == "hf":  # its fields are its architecture's: tests/test_hf_architectures.py
            continue
        for p in entry.params:
            if p.kind == "ints":  # mlp widths: its own list
                continue
            for label, value in out_of_range(p) + wrong_types(p.kind):
                what = f"model {name}.{p.name}: {label}"
                if entry.custom:
                    data = exp(model={**CUSTOM_OK, p.name: value}, input={"shape": [4]})
                    out.append(Bad(what, data, f"model.{p.name}", allow_custom=True))
                else:
                    out.append(Bad(what, with_model(name, **{p.name: value}), f"model.{p.name}"))
        if entry.custom:
            data = exp(model={**CUSTOM_OK, "colour": "red"}, input={"shape": [4]})
        else:
            data = with_model(name, colour="red")
        out.append(Bad(f"model {name}: unknown parameter", data, "model", allow_custom=True))
    return out


def method_param_entries() -> list[Bad]:
    """Every declared parameter of every method: out of range and wrong types, at three places."""
    out, i = [], 0
    for name, method in initlab.METHODS.items():
        for p in method.params:
            for label, value in out_of_range(p) + wrong_types(p.kind):
                prefix, data = spec_at({"method": name, p.name: value}, i)
                out.append(Bad(f"method {name}.{p.name}: {label}", data, f"{prefix}.{p.name}"))
                i += 1
        prefix, data = spec_at({"method": name, "colour": 1}, i)
        out.append(Bad(f"method {name}: unknown parameter", data, prefix))
        i += 1
    return out


MLP_WIDTHS = [
    ("one width", [8]),
    ("empty", []),
    ("text", "abc"),
    ("a number", 5),
    ("a zero inside", [8, 0]),
    ("above high", [8, 100_001]),
    ("a fraction", [8, 2.5]),
    ("true inside", [8, True]),
    ("text inside", [8, "x"]),
]

CATALOGUE: list[Bad] = [
    # ------------------------------------------------ top level
    Bad("unknown top-level field", exp(colour="red"), "colour"),
    Bad("misspelt top-level field", exp(seed=[0]), "seed"),
    Bad("model missing", without("model"), "model"),
    Bad("schemes missing", without("schemes"), "schemes"),
    Bad("schemes empty", exp(schemes=[]), "schemes"),
    Bad("schemes a text", exp(schemes="kaiming_normal"), "schemes"),
    Bad("schemes an object", exp(schemes={"preset": "zeros"}), "schemes"),
    Bad(
        "nine schemes",
        exp(schemes=[{"name": f"s{i}", "preset": "zeros"} for i in range(9)]),
        "schemes",
    ),
    Bad("seeds empty", exp(seeds=[]), "seeds"),
    Bad("seeds negative", exp(seeds=[-1]), "seeds"),
    Bad("seeds repeated", exp(seeds=[1, 1]), "seeds"),
    Bad("seeds a text", exp(seeds="0"), "seeds"),
    Bad("seeds a number", exp(seeds=0), "seeds"),
    Bad("seeds a fraction", exp(seeds=[0.5]), "seeds"),
    Bad("seeds null inside", exp(seeds=[None]), "seeds"),
    Bad("seeds true inside", exp(seeds=[True]), "seeds"),
    Bad("33 seeds", exp(seeds=list(range(33))), "seeds"),
    Bad("backward a text", exp(backward="yes"), "backward"),
    Bad("backward 1", exp(backward=1), "backward"),
    Bad("backward null", exp(backward=None), "backward"),
    Bad("mode unknown", exp(mode="test"), "mode"),
    Bad("mode a number", exp(mode=1), "mode"),
    Bad("device unknown", exp(device="tpu"), "device"),
    Bad("device empty", exp(device=""), "device"),
    Bad("bins below 4", exp(bins=3), "bins"),
    Bad("bins above 512", exp(bins=513), "bins"),
    Bad("bins a fraction", exp(bins=64.5), "bins"),
    Bad("bins a text", exp(bins="64"), "bins"),
    Bad("bins true", exp(bins=True), "bins"),
    # ------------------------------------------------ input
    Bad("input unknown field", edit("input.batch_sise", 4), "input.batch_sise"),
    Bad("input a list", exp(input=[1]), "input"),
    Bad("input a text", exp(input="normal"), "input"),
    Bad("input null", exp(input=None), "input"),
    Bad("batch_size 0", edit("input.batch_size", 0), "input.batch_size"),
    Bad("batch_size negative", edit("input.batch_size", -1), "input.batch_size"),
    Bad("batch_size above 65536", edit("input.batch_size", 65_537), "input.batch_size"),
    Bad("batch_size a fraction", edit("input.batch_size", 2.5), "input.batch_size"),
    Bad("batch_size a text", edit("input.batch_size", "4"), "input.batch_size"),
    Bad("batch_size true", edit("input.batch_size", True), "input.batch_size"),
    Bad("batch_size null", edit("input.batch_size", None), "input.batch_size"),
    Bad("distribution unknown", edit("input.distribution", "gaussian"), "input.distribution"),
    Bad("distribution a number", edit("input.distribution", 3), "input.distribution"),
    Bad("tokens into an mlp", edit("input.distribution", "tokens"), "input.distribution"),
    Bad(
        "normal into a transformer",
        edit("input.distribution", "normal", with_model("transformer")),
        "input.distribution",
    ),
    Bad("mean NaN", edit("input.mean", NAN), "input.mean"),
    Bad("mean -inf", edit("input.mean", -INF), "input.mean"),
    Bad("mean a text", edit("input.mean", "abc"), "input.mean"),
    Bad("mean a list", edit("input.mean", [0]), "input.mean"),
    Bad("std negative", edit("input.std", -1.0), "input.std"),
    Bad("std NaN", edit("input.std", NAN), "input.std"),
    Bad("std inf", edit("input.std", INF), "input.std"),
    Bad("std a text", edit("input.std", "abc"), "input.std"),
    Bad(
        "uniform low above high",
        exp(input={"distribution": "uniform", "low": 1, "high": 0}),
        "input",
    ),
    Bad(
        "uniform low equals high",
        exp(input={"distribution": "uniform", "low": 1, "high": 1}),
        "input",
    ),
    Bad("low NaN", edit("input.low", NAN), "input.low"),
    Bad("high a text", edit("input.high", "x"), "input.high"),
    Bad("vocab_size 0", edit("input.vocab_size", 0, with_model("transformer")), "input.vocab_size"),
    Bad(
        "vocab_size a fraction",
        edit("input.vocab_size", 2.5, with_model("transformer")),
        "input.vocab_size",
    ),
    Bad(
        "vocab_size a text",
        edit("input.vocab_size", "10", with_model("transformer")),
        "input.vocab_size",
    ),
    Bad(
        "vocab_size above the model's",
        edit("input.vocab_size", 17, with_model("transformer")),
        "input.vocab_size",
    ),
    Bad(
        "shape wrong for lenet",
        edit("input.shape", [3, 28, 28], with_model("lenet")),
        "input.shape",
    ),
    Bad("shape wrong for an mlp", edit("input.shape", [9]), "input.shape"),
    Bad("shape a text", edit("input.shape", "8"), "input.shape"),
    Bad(
        "shape true inside", edit("input.shape", [3, 32, True], with_model("lenet")), "input.shape"
    ),
    Bad("shape a fraction inside", edit("input.shape", [8.5]), "input.shape"),
    # ------------------------------------------------ model
    Bad("model name unknown", exp(model={"name": "resnet50"}), "model.name"),
    Bad("model name missing", exp(model={"depth": 2}), "model.name"),
    Bad("model name a number", exp(model={"name": 5}), "model.name"),
    Bad("model a text", exp(model="mlp"), "model"),
    Bad("model a list", exp(model=["mlp"]), "model"),
    Bad("model null", exp(model=None), "model"),
    Bad(
        "mlp depth disagrees with widths",
        exp(model={"name": "mlp", "depth": 3, "widths": [8, 8]}),
        "model.depth",
    ),
    Bad(
        "transformer n_heads does not divide d_model",
        with_model("transformer", n_heads=3),
        "model.n_heads",
    ),
    Bad("lenet takes no parameters", exp(model={"name": "lenet", "depth": 2}), "model"),
    *[
        Bad(
            f"model mlp.widths: {label}",
            exp(model={"name": "mlp", "widths": value}),
            "model.widths",
        )
        for label, value in MLP_WIDTHS
    ],
    # ------------------------------------------------ custom models
    Bad(
        "custom model without permission", exp(model=CUSTOM_OK, input={"shape": [4]}), "model.name"
    ),
    Bad("custom model without input.shape", exp(model=CUSTOM_OK), "input.shape", allow_custom=True),
    Bad(
        "custom factory not a path",
        exp(model={**CUSTOM_OK, "factory": "not a path"}, input={"shape": [4]}),
        "model.factory",
        allow_custom=True,
    ),
    Bad(
        "custom factory missing",
        exp(model={"name": "custom"}, input={"shape": [4]}),
        "model.factory",
        allow_custom=True,
    ),
    Bad(
        "custom factory cannot be imported",
        exp(model={**CUSTOM_OK, "factory": "initlab_no_such_module_zz:f"}, input={"shape": [4]}),
        "model.factory",
        allow_custom=True,
    ),
    Bad(
        "custom factory not callable",
        exp(model={**CUSTOM_OK, "factory": "json:__doc__"}, input={"shape": [4]}),
        "model.factory",
        allow_custom=True,
    ),
    Bad(
        "custom kwargs a list",
        exp(model={**CUSTOM_OK, "kwargs": [1]}, input={"shape": [4]}),
        "model.kwargs",
        allow_custom=True,
    ),
    Bad(
        "custom tokens without vocab_size",
        exp(model=CUSTOM_OK, input={"shape": [4], "distribution": "tokens"}),
        "input.vocab_size",
        allow_custom=True,
    ),
    Bad(
        "custom factory raises",
        exp(model={**CUSTOM_OK, "kwargs": {"bogus": 1}}, input={"shape": [4]}),
        "model.factory",
        stage="run",
        allow_custom=True,
    ),
    Bad(
        "custom factory returns no module",
        exp(
            model={**CUSTOM_OK, "factory": "json:dumps", "kwargs": {"obj": 1}}, input={"shape": [4]}
        ),
        "model.factory",
        stage="run",
        allow_custom=True,
    ),
    # ------------------------------------------------ schemes
    Bad("scheme null", exp(schemes=[None]), "schemes.0"),
    Bad("scheme a text", exp(schemes=["zeros"]), "schemes.0"),
    Bad("scheme a number", exp(schemes=[{"preset": "zeros"}, 3]), "schemes.1"),
    Bad("scheme unknown field", exp(schemes=[{"preset": "zeros", "colour": 1}]), "schemes.0"),
    Bad("scheme name empty", exp(schemes=[{"name": "", "preset": "zeros"}]), "schemes.0.name"),
    Bad("scheme name blank", exp(schemes=[{"name": "  ", "rules": []}]), "schemes.0.name"),
    Bad("scheme name a number", exp(schemes=[{"name": 3, "preset": "zeros"}]), "schemes.0.name"),
    Bad("scheme name null", exp(schemes=[{"name": None, "rules": []}]), "schemes.0.name"),
    Bad(
        "scheme names repeated",
        exp(schemes=[{"name": "a", "preset": "zeros"}, {"name": "a", "preset": "recipe"}]),
        "schemes.1.name",
    ),
    Bad(
        "preset names repeated",
        exp(schemes=[{"preset": "zeros"}, {"preset": "zeros"}]),
        "schemes.1.name",
    ),
    Bad("preset unknown", exp(schemes=[{"preset": "nope"}]), "schemes.0.preset"),
    Bad("preset null", exp(schemes=[{"preset": None}]), "schemes.0.preset"),
    Bad("preset a number", exp(schemes=[{"preset": 3}]), "schemes.0.preset"),
    Bad("rules missing", exp(schemes=[{"name": "s"}]), "schemes.0.rules"),
    Bad("rules a text", exp(schemes=[{"name": "s", "rules": "Linear"}]), "schemes.0.rules"),
    Bad("rules an object", exp(schemes=[{"name": "s", "rules": {}}]), "schemes.0.rules"),
    Bad("rules null", exp(schemes=[{"name": "s", "rules": None}]), "schemes.0.rules"),
    Bad("rule null", exp(schemes=[{"name": "s", "rules": [None]}]), "schemes.0.rules.0"),
    Bad("rule a text", exp(schemes=[{"name": "s", "rules": ["Linear"]}]), "schemes.0.rules.0"),
    Bad(
        "rule unknown field",
        exp(schemes=[{"name": "s", "rules": [{"layers": "Linear", "weights": "zeros"}]}]),
        "schemes.0.rules.0",
    ),
    Bad(
        "rule layers missing",
        exp(schemes=[{"name": "s", "rules": [{"weight": "zeros"}]}]),
        "schemes.0.rules.0.layers",
    ),
    Bad(
        "rule layers empty",
        exp(schemes=[{"name": "s", "rules": [rule("zeros", "")]}]),
        "schemes.0.rules.0.layers",
    ),
    Bad(
        "rule layers a number",
        exp(schemes=[{"name": "s", "rules": [rule("zeros", 3)]}]),
        "schemes.0.rules.0.layers",
    ),
    Bad(
        "rule layers a list",
        exp(schemes=[{"name": "s", "rules": [rule("zeros", ["Linear"])]}]),
        "schemes.0.rules.0.layers",
    ),
    Bad(
        "rule name a number",
        exp(schemes=[{"name": "s", "rules": [{"layers": "Linear", "name": 3}]}]),
        "schemes.0.rules.0.name",
    ),
    Bad(
        "rule name empty",
        exp(schemes=[{"name": "s", "rules": [{"layers": "Linear", "name": ""}]}]),
        "schemes.0.rules.0.name",
    ),
    Bad(
        "rule name a list",
        exp(schemes=[{"name": "s", "rules": [{"layers": "Linear", "name": ["fc1"]}]}]),
        "schemes.0.rules.0.name",
    ),
    # ------------------------------------------------ method specs
    Bad("weight a number", spec_at(3)[1], "schemes.0.rules.0.weight"),
    Bad("weight a list", spec_at(["normal"])[1], "schemes.0.rules.0.weight"),
    Bad("weight true", spec_at(True)[1], "schemes.0.rules.0.weight"),
    Bad("bias a number", spec_at(0, 1)[1], "schemes.1.rules.0.bias"),
    Bad("method missing", spec_at({"std": 1.0})[1], "schemes.0.rules.0.weight.method"),
    Bad("method unknown", spec_at("glorot")[1], "schemes.0.rules.0.weight.method"),
    Bad(
        "method unknown in an object",
        spec_at({"method": "he_normal"}, 2)[1],
        "schemes.0.rules.2.weight.method",
    ),
    Bad("method a number", spec_at({"method": 3})[1], "schemes.0.rules.0.weight.method"),
    Bad("method empty", spec_at({"method": ""})[1], "schemes.0.rules.0.weight.method"),
    Bad("method two underscores", spec_at("normal__")[1], "schemes.0.rules.0.weight.method"),
    Bad(
        "uniform a above b",
        spec_at({"method": "uniform", "a": 1, "b": 0})[1],
        "schemes.0.rules.0.weight",
    ),
    Bad(
        "uniform a equals b",
        spec_at({"method": "uniform", "a": 1, "b": 1}, 1)[1],
        "schemes.1.rules.0.bias",
    ),
    Bad(
        "trunc_normal a above b",
        spec_at({"method": "trunc_normal", "a": 2, "b": -2})[1],
        "schemes.0.rules.0.weight",
    ),
    Bad(
        "scale a text",
        spec_at({"method": "normal", "scale": "half"})[1],
        "schemes.0.rules.0.weight.scale",
    ),
    Bad(
        "scale true",
        spec_at({"method": "normal", "scale": True})[1],
        "schemes.0.rules.0.weight.scale",
    ),
    Bad(
        "scale NaN",
        spec_at({"method": "normal", "scale": NAN}, 1)[1],
        "schemes.1.rules.0.bias.scale",
    ),
    Bad(
        "scale inf",
        spec_at({"method": "normal", "scale": INF})[1],
        "schemes.0.rules.0.weight.scale",
    ),
    Bad(
        "scale null",
        spec_at({"method": "normal", "scale": None})[1],
        "schemes.0.rules.0.weight.scale",
    ),
    Bad(
        "scale a list",
        spec_at({"method": "normal", "scale": [2]})[1],
        "schemes.0.rules.0.weight.scale",
    ),
    Bad(
        "scale a wrong formula",
        spec_at({"method": "normal", "scale": "1/sqrt(n)"})[1],
        "schemes.0.rules.0.weight.scale",
    ),
    Bad(
        "scale on default",
        spec_at({"method": "default", "scale": 2})[1],
        "schemes.0.rules.0.weight.scale",
    ),
    Bad(
        "parameter for zeros",
        spec_at({"method": "zeros", "val": 1}, 1)[1],
        "schemes.1.rules.0.bias",
    ),
    Bad(
        "parameter for default",
        spec_at({"method": "default", "std": 1})[1],
        "schemes.0.rules.0.weight",
    ),
    # ------------------------------------------------ only the model can tell (initlab.run)
    Bad(
        "eye on a convolution",
        with_model("lenet") | {"schemes": [{"name": "id", "rules": [rule("eye", "Conv")]}]},
        "scheme 'id', rule 0 (Conv): conv1.weight",
        stage="run",
    ),
    Bad(
        "dirac on a Linear",
        exp(schemes=[{"name": "d", "rules": [rule("dirac")]}]),
        "scheme 'd', rule 0 (Linear): fc1.weight",
        stage="run",
    ),
    Bad(
        "sparse on a 4-D weight",
        with_model("cnn") | {"schemes": [{"name": "sp", "rules": [rule("sparse", "Conv")]}]},
        "scheme 'sp', rule 0 (Conv): conv1.weight",
        stage="run",
    ),
    Bad(
        "dirac groups not dividing the out channels",
        with_model("lenet")
        | {"schemes": [{"name": "g", "rules": [rule({"method": "dirac", "groups": 4}, "Conv")]}]},
        "scheme 'g', rule 0 (Conv): conv1.weight",
        stage="run",
    ),
    *[
        Bad(
            f"{m} on a Linear bias",
            with_model("mlp", bias=True)
            | {"schemes": [{"name": m, "rules": [rule(m, slot="bias")]}]},
            f"scheme '{m}', rule 0 (Linear): fc1.bias",
            stage="run",
        )
        for m in (
            "xavier_normal",
            "kaiming_uniform",
            "orthogonal",
            "lecun_normal",
            "variance_scaling",
            "eye",
            "sparse",
            "dirac",
        )
    ],
    Bad(
        "xavier on a LayerNorm weight",
        with_model("mlp", norm="layernorm")
        | {"schemes": [{"name": "ln", "rules": [rule("xavier_uniform", "LayerNorm")]}]},
        "scheme 'ln', rule 0 (LayerNorm): norm1.weight",
        stage="run",
    ),
    Bad(
        "eye on a BatchNorm1d weight",
        with_model("mlp", norm="batchnorm")
        | {"schemes": [{"name": "bn", "rules": [rule("eye", "BatchNorm")]}]},
        "scheme 'bn', rule 0 (BatchNorm): norm1.weight",
        stage="run",
    ),
    Bad(
        "kaiming on a BatchNorm2d weight",
        with_model("cnn", batchnorm=True)
        | {"schemes": [{"name": "bn", "rules": [rule("kaiming_normal", "BatchNorm")]}]},
        "scheme 'bn', rule 0 (BatchNorm): bn1.weight",
        stage="run",
    ),
    Bad(
        "orthogonal on resnet's BatchNorm",
        with_model("resnet")
        | {"schemes": [{"name": "o", "rules": [rule("orthogonal", "BatchNorm")]}]},
        "scheme 'o', rule 0 (BatchNorm): bn1.weight",
        stage="run",
    ),
    Bad(
        "xavier on the transformer's LayerNorm",
        with_model("transformer")
        | {"schemes": [{"name": "x", "rules": [rule("xavier_normal", "LayerNorm")]}]},
        "scheme 'x', rule 0 (LayerNorm): h.0.ln_1.weight",
        stage="run",
    ),
    Bad(
        "dirac on an Embedding",
        with_model("transformer")
        | {"schemes": [{"name": "e", "rules": [rule("dirac", "Embedding")]}]},
        "scheme 'e', rule 0 (Embedding): wte.weight",
        stage="run",
    ),
    Bad(
        "xavier on the attention's bias",
        with_model("transformer")
        | {"schemes": [{"name": "b", "rules": [rule("xavier_normal", slot="bias")]}]},
        "scheme 'b', rule 0 (Linear): h.0.attn.c_attn.bias",
        stage="run",
    ),
    Bad(
        "the second scheme does not fit",
        with_model("cnn")
        | {
            "schemes": [
                {"preset": "kaiming_normal"},
                {"name": "second", "rules": [rule("eye", "Conv")]},
            ]
        },
        "scheme 'second', rule 0 (Conv): conv1.weight",
        stage="run",
    ),
    Bad(
        "the third rule does not fit",
        with_model("cnn", batchnorm=True)
        | {
            "schemes": [
                {
                    "name": "r",
                    "rules": [rule("ones", "BatchNorm"), rule("zeros"), rule("eye", "Conv")],
                }
            ]
        },
        "scheme 'r', rule 2 (Conv): conv1.weight",
        stage="run",
    ),
    Bad(
        "a rule by name does not fit",
        with_model("lenet")
        | {
            "schemes": [
                {"name": "n", "rules": [{"layers": "Conv", "name": "conv2", "weight": "eye"}]}
            ]
        },
        "scheme 'n', rule 0 (Conv named conv2): conv2.weight",
        stage="run",
    ),
    # ------------------------------------------------ JSON text
    Bad("empty text", "", "experiment: not valid JSON"),
    Bad("only whitespace", "  \n ", "experiment: not valid JSON"),
    Bad("an open brace", "{", "experiment: not valid JSON"),
    Bad("a missing value", '{"model": }', "experiment: not valid JSON"),
    Bad("single quotes", "{'model': {'name': 'mlp'}}", "experiment: not valid JSON"),
    Bad("a trailing comma", '{"model": {"name": "mlp"},}', "experiment: not valid JSON"),
    Bad("a comment", '// my experiment\n{"model": {"name": "mlp"}}', "experiment: not valid JSON"),
    Bad("a byte order mark", '\ufeff{"model": {"name": "mlp"}}', "experiment: not valid JSON"),
    Bad(
        "a control character in a string",
        '{"model": {"name": "ml\x00p"}}',
        "experiment: not valid JSON",
    ),
    Bad(
        "python literals", '{"model": {"name": "mlp", "bias": True}}', "experiment: not valid JSON"
    ),
    Bad("two objects", '{"model": {}} {"model": {}}', "experiment: not valid JSON"),
    Bad("YAML", "model:\n  name: mlp\n", "experiment: not valid JSON"),
    Bad("a list", "[1, 2]", "must be a JSON object"),
    Bad("null", "null", "must be a JSON object"),
    Bad("a number", "42", "must be a JSON object"),
    Bad("a string", '"mlp"', "must be a JSON object"),
    Bad("true", "true", "must be a JSON object"),
    Bad("NaN", "NaN", "must be a JSON object"),
    Bad("NaN for a depth", json.dumps(with_model("mlp", depth=NAN)), "model.depth"),
    Bad("Infinity for input.std", json.dumps(edit("input.std", INF)), "input.std"),
    Bad(
        "a repeated key",
        '{"model": {"name": "mlp"}, "model": 5, "schemes": [{"preset": "zeros"}]}',
        "experiment: the key 'model' appears twice",
    ),
    Bad(
        "a repeated key deep inside",
        '{"model": {"name": "mlp", "depth": 2, "depth": 3}, "schemes": [{"preset": "zeros"}]}',
        "the key 'depth' appears twice",
    ),
    # ------------------------------------------------ files (from_json)
    Bad("an oversized file", b"{" + b" " * MAX_FILE_BYTES + b"}", "{file}: larger than"),
    Bad("an empty file", b"", "{file}: not valid JSON"),
    Bad("a file cut short", json.dumps(BASE).encode()[:40], "{file}: not valid JSON"),
    Bad(
        "a file with the wrong experiment", json.dumps(edit("input.std", -1)).encode(), "input.std"
    ),
    # ------------------------------------------------ inputs that once got an unclear answer
    Bad(
        "constant beyond float32",
        spec_at({"method": "constant", "val": 1e39})[1],
        "schemes.0.rules.0.weight.val",
    ),
    Bad(
        "uniform bounds beyond float32",
        spec_at({"method": "uniform", "a": -1e39, "b": 1e39})[1],
        "schemes.0.rules.0.weight",
    ),
    Bad(
        "variance_scaling factor 1e308, uniform",
        spec_at({"method": "variance_scaling", "factor": 1e308, "distribution": "uniform"})[1],
        "schemes.0.rules.0.weight.factor",
    ),
    Bad(
        "input uniform high beyond float32",
        exp(input={"distribution": "uniform", "low": 0, "high": 1e39}),
        "input.high",
    ),
    Bad(
        "kaiming slope 1e308",
        spec_at({"method": "kaiming_normal", "a": 1e308, "nonlinearity": "leaky_relu"})[1],
        "schemes.0.rules.0.weight.a",
    ),
    Bad(
        "xavier gain leaky_relu(1e300)",
        spec_at({"method": "xavier_normal", "gain": "leaky_relu(1e300)"})[1],
        "schemes.0.rules.0.weight.gain",
    ),
    Bad(
        "trunc_normal mean far outside [a, b]",
        spec_at({"method": "trunc_normal", "mean": 100, "std": 1, "a": -2, "b": 2})[1],
        "schemes.0.rules.0.weight",
    ),
    *[
        Bad(
            f"a 400-digit integer for {where}",
            data,
            where,
        )
        for where, data in [
            ("model.depth", with_model("mlp", depth=10**400)),
            ("model.widths", exp(model={"name": "mlp", "widths": [8, 10**400]})),
            ("schemes.0.rules.0.weight.std", spec_at({"method": "normal", "std": 10**400})[1]),
            (
                "schemes.0.rules.0.weight.gain",
                spec_at({"method": "orthogonal", "gain": 10**400})[1],
            ),
            ("schemes.0.rules.0.weight.scale", spec_at({"method": "ones", "scale": -(10**400)})[1]),
        ]
    ],
    Bad(
        "preset a list",
        exp(schemes=[{"preset": ["zeros"]}]),
        "schemes.0.preset",
    ),
    Bad(
        "preset an object",
        exp(schemes=[{"preset": {"name": "zeros"}}]),
        "schemes.0.preset",
    ),
    Bad(
        "deeply nested JSON",
        "[" * 100_000 + "]" * 100_000,
        "experiment",
    ),
    Bad(
        "a 5000-digit number",
        '{"model": {"name": "mlp", "depth": ' + "9" * 5000 + "}}",
        "experiment",
    ),
    Bad(
        "a file that is not UTF-8",
        b'{"model": {"name": "caf\xe9"}}',
        "{file}",
    ),
    Bad(
        "a 10000-item list for model.depth",
        with_model("mlp", depth=[0] * 10_000),
        "model.depth",
    ),
    Bad(
        "a 10000-character model name",
        exp(model={"name": "x" * 10_000}),
        "model.name",
    ),
    Bad(
        "a 10000-character preset",
        exp(schemes=[{"preset": "x" * 10_000}]),
        "schemes.0.preset",
    ),
    Bad(
        "a 10000-item list for a weight",
        spec_at([1] * 10_000)[1],
        "schemes.0.rules.0.weight",
    ),
    Bad(
        "a 10000-character unknown field",
        exp(**{"x" * 10_000: 1}),
        "x" * 40,
    ),
    Bad(
        "input.shape with a zero",
        edit("input.shape", [0]),
        "input.shape",
    ),
    Bad(
        "mlp widths with a zero input width",
        exp(model={"name": "mlp", "widths": [0, 8]}),
        "model.widths",
    ),
    Bad(
        "mlp widths with a text input width",
        exp(model={"name": "mlp", "widths": ["x", 8]}),
        "model.widths",
    ),
    Bad(
        "input.mean true",
        edit("input.mean", True),
        "input.mean",
    ),
    Bad(
        "input.std a numeric text",
        edit("input.std", "2"),
        "input.std",
    ),
    Bad(
        "mlp width disagrees with widths",
        exp(model={"name": "mlp", "widths": [8, 4], "width": 5}),
        "model.width",
    ),
    Bad(
        "mlp BatchNorm with batch_size 1",
        with_model("mlp", norm="batchnorm") | {"input": {"batch_size": 1}},
        "input.batch_size",
        stage="run",  # needs the model's shapes: the guard's meta pass finds it
    ),
    Bad(
        "resnet down to 1x1 with batch_size 1",
        exp(
            model={"name": "resnet", "stages": 3, "blocks": 1, "width": 4, "image_size": 4},
            input={"batch_size": 1},
        ),
        "input.batch_size",
        stage="run",  # needs the model's shapes: the guard's meta pass finds it
    ),
    Bad(
        "custom model given the wrong input.shape",
        exp(model=CUSTOM_OK, input={"shape": [5]}),
        "input.shape",
        stage="run",
        allow_custom=True,
    ),
    Bad(
        "custom Embedding fed token ids beyond its vocabulary",
        exp(
            model={
                "name": "custom",
                "factory": "torch.nn:Embedding",
                "kwargs": {"num_embeddings": 4, "embedding_dim": 4},
            },
            input={"shape": [4], "distribution": "tokens", "vocab_size": 30},
        ),
        "input.vocab_size",
        stage="run",
        allow_custom=True,
    ),
    Bad(
        "custom Linear fed token ids",
        exp(model=CUSTOM_OK, input={"shape": [4], "distribution": "tokens", "vocab_size": 3}),
        "input.distribution",
        stage="run",
        allow_custom=True,
    ),
    *model_param_entries(),
    *method_param_entries(),
]

KNOWN = {bad.what for bad in CATALOGUE if bad.known}
if not torch.cuda.is_available():
    CATALOGUE.append(Bad("cuda without a GPU", exp(device="cuda"), "device", stage="run"))


# ---------------------------------------------------------------- judging one answer


def parse(bad: Bad, folder: Path) -> Experiment:
    if isinstance(bad.data, bytes):
        path = folder / f"{abs(hash(bad.what))}.json"
        path.write_bytes(bad.data)
        return Experiment.from_json(path, allow_custom=bad.allow_custom)
    if isinstance(bad.data, str):
        return Experiment.from_text(bad.data, allow_custom=bad.allow_custom)
    return Experiment.from_dict(bad.data, allow_custom=bad.allow_custom)


def expected_where(bad: Bad, folder: Path) -> str:
    return bad.where.replace("{file}", str(folder / f"{abs(hash(bad.what))}.json"))


def unclear(message: str, where: str) -> str | None:
    """Why `message` is not one short paragraph naming `where`; None when it is."""
    if where not in message:
        return f"does not name {where[:60]!r}: {message[:200]!r}"
    if "Traceback" in message or len(message) >= MAX_MESSAGE:
        return f"not short ({len(message)} characters): {message[:120]!r}..."
    if "\n\n" in message or message.count("\n") > 3:
        return f"not one paragraph: {message[:200]!r}"
    return None


def judge(bad: Bad, folder: Path) -> str | None:
    """None when `bad` gets a clear ValueError at its stage; else what happened instead."""
    where = expected_where(bad, folder)
    stage = "parse"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's trunc_normal_ warns about far-off means
            exp = parse(bad, folder)
            stage = "run (accepted by validation)" if bad.stage == "parse" else "run"
            initlab.run(exp)
    except ValueError as exc:
        problem = unclear(str(exc), where)
        if problem is None and bad.stage == "parse" and stage != "parse":
            return f"refused only at {stage}: {str(exc)[:200]!r}"
        return None if problem is None else f"{type(exc).__name__} at {stage}, {problem}"
    except Exception as exc:
        return f"{type(exc).__name__} at {stage}: {str(exc)[:200]}"
    return f"accepted: no error at all (expected a message naming {where!r})"


_ANSWERS: dict[str, str | None] = {}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refusals")


def answer(bad: Bad, folder: Path) -> str | None:
    if bad.what not in _ANSWERS:
        _ANSWERS[bad.what] = judge(bad, folder)
    return _ANSWERS[bad.what]


def cases(entries: list[Bad]) -> list[Any]:
    return [
        pytest.param(
            bad,
            id=bad.what,
            marks=[pytest.mark.xfail(strict=True, reason=bad.known)] if bad.known else [],
        )
        for bad in entries
    ]


# ---------------------------------------------------------------- the tests


def test_catalogue_is_big_and_distinct():
    whats = [bad.what for bad in CATALOGUE]
    assert len(whats) == len(set(whats)), "catalogue descriptions must be unique"
    assert len(CATALOGUE) >= 150
    assert set(SMALL) == set(ZOO), "give every zoo model a small config in SMALL"


@pytest.mark.parametrize("bad", cases(CATALOGUE))
def test_bad_input_gets_a_clear_message(bad: Bad, folder: Path):
    problem = answer(bad, folder)
    assert problem is None, problem


def test_summary_no_bad_input_gets_anything_but_a_clear_message(folder: Path):
    problems = {bad.what: answer(bad, folder) for bad in CATALOGUE}
    bad_answers = {what: p for what, p in problems.items() if p is not None}
    unexpected = sorted(set(bad_answers) - KNOWN)
    print(
        f"\nrefusal catalogue: {len(CATALOGUE)} bad inputs tried; "
        f"{len(CATALOGUE) - len(bad_answers)} clear messages; "
        f"{len(bad_answers)} anything else ({len(set(bad_answers) & KNOWN)} known library "
        f"defects, {len(unexpected)} new)"
    )
    for what, problem in sorted(bad_answers.items()):
        print(f"  - {what}: {problem}")
    assert not unexpected, {what: bad_answers[what] for what in unexpected}


def test_summary_including_known_defects(folder: Path):
    problems = {bad.what: answer(bad, folder) for bad in CATALOGUE}
    assert {what: p for what, p in problems.items() if p is not None} == {}


# ---------------------------------------------------------------- the same through the CLI


def write_input(bad: Bad, folder: Path) -> Path:
    path = folder / f"cli-{abs(hash(bad.what))}.json"
    if isinstance(bad.data, bytes):
        path.write_bytes(bad.data)
    elif isinstance(bad.data, str):
        path.write_text(bad.data, encoding="utf-8")
    else:
        path.write_text(json.dumps(bad.data), encoding="utf-8")
    return path


def cli_answer(bad: Bad, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str | None:
    """None when the CLI exits 2 with at most two short lines naming the field on stderr."""
    path = write_input(bad, tmp_path)
    argv = ["run", str(path), "--out", str(tmp_path / "out")]
    if bad.allow_custom:
        argv.append("--allow-custom-models")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(argv)
    except Exception as exc:  # what a user would see as a traceback
        return f"traceback: {type(exc).__name__}: {str(exc)[:200]}"
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    where = bad.where.replace("{file}", str(path))
    if isinstance(bad.data, str) and where.startswith("experiment:"):
        where = f"{path}:" + where.removeprefix("experiment:")  # the CLI names the file it read
    if code != 2:
        return f"exit {code}, stderr {err[:200]!r}"
    if not 1 <= len(lines) <= 2 or not lines[0].startswith("initlab: error:"):
        return f"stderr not one or two 'initlab: error:' lines: {err[:300]!r}"
    if "Traceback" in err or len(lines[0]) >= MAX_MESSAGE or where not in err:
        return f"unclear stderr ({len(err)} characters): {err[:200]!r}"
    return None


CLEAR = [bad for bad in CATALOGUE if not bad.known]
CLI_SAMPLE = CLEAR[:: max(1, len(CLEAR) // 30)][:30]


@pytest.mark.parametrize("bad", cases(CLI_SAMPLE))
def test_cli_exit_2_with_a_short_message(bad: Bad, tmp_path: Path, capsys):
    problem = cli_answer(bad, tmp_path, capsys)
    assert problem is None, problem


def test_eval_mode_batchnorm_with_batch_size_1_runs():
    """In eval mode BatchNorm uses its running statistics: one sample is fine."""
    d = with_model("mlp", norm="batchnorm") | {"input": {"batch_size": 1}, "mode": "eval"}
    res = initlab.run(Experiment.from_dict(d))
    assert len(res.layers) == 3 * SMALL["mlp"]["depth"]


# ---------------------------------------------------------------- every preset on every model

REFUSED_PAIRS: set[tuple[str, str]] = set()  # (model, preset) refused on purpose: none so far


@pytest.mark.parametrize("preset", list(initlab.PRESETS))
@pytest.mark.parametrize("model", ZOO)
def test_every_preset_on_every_zoo_model(model: str, preset: str):
    d = with_model(model) | {"seeds": [0], "backward": True, "schemes": [{"preset": preset}]}
    title = initlab.PRESETS[preset].title
    try:
        res = initlab.run(Experiment.from_dict(d))
    except ValueError as exc:
        message = str(exc)
        assert f"scheme '{title}'" in message and re.search(r"\.(weight|bias)\b", message), message
        assert (model, preset) in REFUSED_PAIRS, f"{model} × {preset} refused: {message}"
        return
    assert (model, preset) not in REFUSED_PAIRS, "runs now: take it out of REFUSED_PAIRS"
    assert list(res.layers.columns) == LAYERS_OUT
    assert list(res.params.columns) == PARAMS_OUT
    assert list(res.histograms.columns) == HISTS_OUT
    assert len(res.layers) > 0 and set(res.layers["scheme"]) == {title}
    assert res.layers["grad_var"].notna().any(), "backward is on"


# ---------------------------------------------------------------- numerics: inf, NaN, zeros

# N(0, 1) on 64 inputs: variance ×64 per layer (×32 after a ReLU), so the *values* pass
# float32's 3.4e38 by layer ~43 (identity) or ~51 (ReLU): really non-finite, not a statistic's
# overflow (the statistics are exact for every finite tensor).
DEPTH, WIDTH = 60, 64


@pytest.fixture(scope="module", params=["identity", "relu"])
def extremes(request: pytest.FixtureRequest) -> initlab.Results:
    d = {
        "model": {"name": "mlp", "depth": DEPTH, "width": WIDTH, "activation": request.param},
        "input": {"batch_size": 8},
        "seeds": [0, 1],
        "schemes": [{"preset": "too_large"}, {"preset": "zeros"}, {"preset": "kaiming_normal"}],
    }
    return initlab.run(Experiment.from_dict(d))


TOO_LARGE = initlab.PRESETS["too_large"].title
ZEROS = initlab.PRESETS["zeros"].title


def first_bad_weight_layer(layers: pd.DataFrame, scheme: str) -> tuple[int, str]:
    """(depth from 1, name) of the first layer with weights whose output is non-finite in any
    seed: a count of non-finite values, or a variance past float's range. Computed here."""
    rows = layers[(layers["scheme"] == scheme) & (layers["role"] == "weight")]
    first: dict[str, int] = {}
    for _, seed_rows in rows.groupby("seed"):
        seed_rows = seed_rows.sort_values("order")
        for depth, (_, row) in enumerate(seed_rows.iterrows(), start=1):
            if row["nonfinite"] > 0 or not math.isfinite(row["act_var"]):
                first[row["layer"]] = depth
                break
    depth = min(first.values())
    return depth, next(name for name, d in first.items() if d == depth)


def test_too_large_explodes(extremes):
    rows = extremes.layers[extremes.layers["scheme"] == TOO_LARGE]
    var = rows["act_var"].to_numpy(float)
    assert (rows["nonfinite"] > 0).any() or not np.isfinite(var).all()
    assert np.nanmax(np.where(np.isfinite(var), var, np.nan)) > health.EXPLODING_VAR


def test_verdict_names_the_first_non_finite_layer(extremes):
    depth, name = first_bad_weight_layer(extremes.layers, TOO_LARGE)
    verdict = health.verdicts(extremes.layers)[TOO_LARGE]
    assert "non-finite" in verdict and f"layer {depth} ({name})" in verdict, verdict


def test_layer_health_flags_the_first_non_finite_layer(extremes):
    _, name = first_bad_weight_layer(extremes.layers, TOO_LARGE)
    table = health.layer_health(extremes.layers)
    table = table[table["scheme"] == TOO_LARGE]
    flagged = table[table["layer"] == name]
    assert (flagged["status"] == "non-finite").all() and len(flagged) == 1
    after = table[table["order"] > flagged["order"].iloc[0]]
    assert not (after["status"] == "ok").any(), "nothing after an explosion is healthy"
    kaiming = health.layer_health(extremes.layers)
    statuses = set(kaiming[kaiming["scheme"] == initlab.PRESETS["kaiming_normal"].title]["status"])
    # 60 layers of width 64 on 8 samples: the samples' correlation creeps toward 1, so some
    # ReLU units end up off for all eight (dead, per unit); the signal itself stays finite.
    assert statuses <= {"ok", "dead"}, statuses


def test_zeros_vanish_to_exact_zeros(extremes):
    verdict = health.verdicts(extremes.layers)[ZEROS]
    assert "exact zeros" in verdict and "layer 1 (fc1)" in verdict, verdict
    table = health.layer_health(extremes.layers)
    assert (table[table["scheme"] == ZEROS]["status"] != "ok").all()


def test_one_seed_of_three_overflowing_is_flagged_like_the_verdict_says():
    rows = [
        {"scheme": "s", "seed": seed, "order": i, "layer": f"fc{i + 1}", "type": "Linear",
         "role": "weight", "act_mean": 0.0, "act_var": 1.0, "act_std": 1.0, "frac_zero": 0.0,
         "frac_saturated": 0.0, "nonfinite": 0, "grad_var": 1.0}
        for seed in range(3) for i in range(4)
    ]  # fmt: skip
    rows[2]["act_var"] = rows[2]["act_std"] = INF  # seed 0, fc3: float32's range ran out
    layers = pd.DataFrame(rows)
    assert "non-finite at layer 3 (fc3)" in health.verdicts(layers)["s"]
    table = health.layer_health(layers)
    assert table.loc[table["layer"] == "fc3", "status"].tolist() == ["non-finite"]


def check_figure(fig: Any) -> None:
    """A figure plotly can serialize, without an infinity sent to the browser (NaN is a gap)."""
    assert isinstance(fig, go.Figure)
    json.loads(fig.to_json())
    for trace in fig.data:
        for axis in ("x", "y"):
            values = getattr(trace, axis, None)
            if values is None:
                continue
            numbers = np.array([np.nan if v is None else v for v in values], dtype=float)
            assert not np.isinf(numbers).any(), (trace.name, axis)


@pytest.mark.parametrize("scheme", [TOO_LARGE, ZEROS, None])
def test_charts_survive_inf_nan_and_zeros(extremes, scheme):
    """Log axes with zeros and infinities, NaN bins: every chart still draws or says why not."""
    layers, hists = extremes.layers, extremes.histograms
    if scheme is not None:
        layers, hists = layers[layers["scheme"] == scheme], hists[hists["scheme"] == scheme]
    for role in ("weight", "activation", "all"):
        check_figure(plots.variance_by_depth(layers, role=role))
        check_figure(plots.grad_variance_by_depth(layers, role=role))
    for kind in plots.HISTOGRAM_KINDS:
        check_figure(plots.histogram_grid(hists, kind))
