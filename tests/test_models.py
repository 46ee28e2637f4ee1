"""The model zoo and custom models.

Leaf-call counts are recomputed here from each config and the model's structure as written
down in its docstring (never read back from the model), custom models come from a tiny package
in tests/fixtures that a test puts on sys.path, as a user's own package would be.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from initlab.cli import main
from initlab.experiment import Experiment, make_input, run
from initlab.models import ALLOW_ENV, MODELS, build_model, moved, normalize_model_spec
from initlab.probe import probe

FIXTURES = Path(__file__).parent / "fixtures"
# hf (Hugging Face architectures) has its own tests: tests/test_hf_*.py
ZOO = [name for name, entry in MODELS.items() if not entry.custom and name != "hf"]


# ---------------------------------------------------------------- leaf calls from the config


def mlp_calls(spec: dict[str, Any]) -> int:
    per_block = 2 + (spec.get("norm", "none") != "none")  # Linear, (norm), activation
    return spec["depth"] * per_block


def cnn_calls(spec: dict[str, Any]) -> int:
    per_layer = 2 + bool(spec.get("batchnorm"))  # conv, (bn), activation
    return spec["depth"] * per_layer + 3  # pool, flatten, fc


def resnet_calls(spec: dict[str, Any]) -> int:
    # stem conv1/bn1/relu; per block conv1 bn1 relu conv2 bn2 relu, + downsample conv/bn
    # in the first block of every stage after the first (width doubles, stride 2); avgpool, fc.
    # Every block that keeps its shape (all but each later stage's first) is a block row too.
    blocks = spec["stages"] * spec["blocks"]
    return 3 + 6 * blocks + 2 * (spec["stages"] - 1) + 2 + blocks - (spec["stages"] - 1)


def transformer_calls(spec: dict[str, Any]) -> int:
    # wte, wpe; per block ln_1, c_attn, c_proj, ln_2, c_fc, gelu, c_proj and the block's own
    # output (the residual stream); ln_f, lm_head.
    return 2 + 8 * spec["n_layers"] + 2


CASES = [
    ({"name": "mlp", "bias": True, "depth": 3, "width": 16}, mlp_calls),
    ({"name": "mlp", "bias": True, "depth": 2, "width": 8, "norm": "layernorm",
      "activation": "tanh"}, mlp_calls),
    # conv1 conv1.relu pool conv2 conv2.relu pool fc1 fc1.relu fc2 fc2.relu fc3 (F.relu)
    ({"name": "lenet"}, lambda s: 11),
    ({"name": "cnn", "depth": 3, "channels": 4, "image_size": 8}, cnn_calls),
    ({"name": "cnn", "depth": 2, "channels": 4, "image_size": 8, "batchnorm": True}, cnn_calls),
    ({"name": "resnet", "stages": 1, "blocks": 2, "width": 4, "image_size": 8}, resnet_calls),
    ({"name": "resnet", "stages": 3, "blocks": 2, "width": 4, "image_size": 8}, resnet_calls),
    ({"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2, "vocab_size": 50,
      "seq_len": 8}, transformer_calls),
    ({"name": "transformer", "n_layers": 3, "d_model": 16, "n_heads": 4, "vocab_size": 50,
      "seq_len": 4, "tie_weights": False}, transformer_calls),
    # the recurrent module (one call over the whole sequence) and the head
    ({"name": "rnn", "cell": "lstm", "layers": 2, "hidden": 8, "input_size": 4}, lambda s: 2),
    ({"name": "rnn", "cell": "rnn", "layers": 1, "hidden": 8, "seq_len": 5}, lambda s: 2),
]  # fmt: skip


def sample_input(spec: dict[str, Any], batch: int = 4) -> torch.Tensor:
    entry = MODELS[spec["name"]]
    full = normalize_model_spec(spec)
    shape = (batch, *entry.input_shape(full))
    g = torch.Generator().manual_seed(0)
    vocab = entry.tokens(full)
    if vocab is not None:
        return torch.randint(0, vocab, shape, generator=g)
    return torch.randn(shape, generator=g)


@pytest.mark.parametrize(("spec", "calls"), CASES, ids=[json.dumps(s) for s, _ in CASES])
def test_zoo_model_probes_forward_and_backward_with_the_leaf_calls_its_structure_says(spec, calls):
    model = build_model(spec, seed=0)
    full = normalize_model_spec(spec)
    result = probe(model, sample_input(spec), backward=True, generator=torch.Generator())
    assert len(result.layers) == calls(full)
    assert result.layers["grad_var"].notna().all()
    assert (result.layers["nonfinite"] == 0).all()
    assert all(math.isfinite(v) for v in result.param_grad_var.values())


def test_every_zoo_model_has_a_test_case():
    assert {s["name"] for s, _ in CASES} == set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_defaults_build_and_are_reproducible(name):
    a, b = build_model({"name": name}, seed=3), build_model({"name": name}, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_numeric_params_are_bounded(name):
    for p in MODELS[name].params:
        if p.kind in ("int", "float", "ints"):
            assert p.low is not None and p.high is not None, f"{name}.{p.name} needs bounds"


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_build_on_the_meta_device(name):
    spec = normalize_model_spec({"name": name})
    with torch.device("meta"):
        model = MODELS[name].build(spec)
    assert all(p.is_meta for p in model.parameters())


def test_resnet_uses_torchvision_names():
    model = build_model({"name": "resnet", "stages": 2, "blocks": 2, "width": 4})
    names = dict(model.named_modules())
    expected = ("conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2",
                "layer1.1.bn2", "layer2.0.downsample.0", "layer2.0.downsample.1", "fc")  # fmt: skip
    for name in expected:
        assert name in names, name
    assert "layer1.0.downsample" not in names  # same shape: plain identity shortcut
    assert isinstance(names["layer2.0.downsample.1"], nn.BatchNorm2d)
    assert model.fc.in_features == 8  # width doubles per stage


def test_transformer_uses_gpt2_names_shapes_and_ties_weights():
    spec = {"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
            "vocab_size": 50, "seq_len": 8}  # fmt: skip
    model = build_model(spec)
    names = dict(model.named_modules())
    assert tuple(names["h.1.attn.c_attn"].weight.shape) == (48, 16)
    assert tuple(names["h.1.attn.c_proj"].weight.shape) == (16, 16)
    assert tuple(names["h.0.mlp.c_fc"].weight.shape) == (64, 16)
    assert tuple(names["h.0.mlp.c_proj"].weight.shape) == (16, 64)
    assert isinstance(names["h.0.ln_1"], nn.LayerNorm) and isinstance(names["ln_f"], nn.LayerNorm)
    assert tuple(names["wpe"].weight.shape) == (8, 16)
    assert model.lm_head.weight is model.wte.weight
    assert model(sample_input(spec)).shape == (4, 8, 50)
    untied = build_model({**spec, "tie_weights": False})
    assert untied.lm_head.weight is not untied.wte.weight
    assert MODELS["transformer"].activation(normalize_model_spec(spec)) == "gelu"


def test_transformer_attention_is_causal():
    spec = {"name": "transformer", "n_layers": 1, "d_model": 16, "n_heads": 2,
            "vocab_size": 50, "seq_len": 8}  # fmt: skip
    model = build_model(spec, seed=0)
    x = sample_input(spec)
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(a[:, :-1], b[:, :-1]) and not torch.equal(a[:, -1], b[:, -1])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "transformer", "d_model": 128, "n_heads": 3},
         "model.n_heads: must divide d_model (128)"),
        ({"name": "transformer", "n_layers": 49}, "model.n_layers: must be a whole number"),
        ({"name": "transformer", "d_model": 8192}, "model.d_model: "),
        ({"name": "resnet", "blocks": 0}, "model.blocks: must be a whole number >= 1"),
        ({"name": "cnn", "batchnorm": "yes"}, "model.batchnorm: must be true or false"),
        ({"name": "cnn", "activation": "swish"}, "model.activation: must be one of"),
        ({"name": "resnet", "depth": 3}, "model: unknown parameter 'depth' for model 'resnet'"),
        ({"name": "vgg"}, "model.name: unknown model 'vgg'; choose one of: mlp, lenet, cnn"),
    ],
)  # fmt: skip
def test_invalid_zoo_specs_are_refused_naming_the_field(spec, message):
    with pytest.raises(ValueError) as info:
        build_model(spec)
    assert str(info.value).startswith(message)


def test_transformer_input_is_token_ids_within_the_vocabulary():
    exp = Experiment.from_dict({
        "model": {"name": "transformer", "n_layers": 1, "d_model": 16, "n_heads": 2,
                  "vocab_size": 30, "seq_len": 5},
        "input": {"batch_size": 64}, "schemes": [{"preset": "pytorch_default"}],
    })  # fmt: skip
    x = make_input(exp, 0)
    assert x.dtype == torch.int64 and x.shape == (64, 5)
    assert x.min() >= 0 and x.max() < 30
    with pytest.raises(ValueError, match=r"input\.vocab_size: transformer has 30 token ids"):
        Experiment.from_dict({**exp.to_dict(), "input": {"vocab_size": 31}})


# ---------------------------------------------------------------- custom models


@pytest.fixture
def testzoo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture package importable, custom models not enabled by the environment."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.delenv(ALLOW_ENV, raising=False)


def custom_exp(factory: str, shape: list[int], **extra: Any) -> dict[str, Any]:
    model = {"name": "custom", "factory": f"initlab_testzoo.{factory}", **extra.pop("model", {})}
    return {"model": model, "input": {"batch_size": 8, "shape": shape, **extra.pop("input", {})},
            "seeds": [0], "schemes": [{"preset": "kaiming_normal"}], **extra}  # fmt: skip


def test_custom_model_is_refused_unless_enabled_and_its_code_never_imported(testzoo):
    d = custom_exp("tripwire:model", [4])
    with pytest.raises(ValueError) as info:
        Experiment.from_dict(d)
    message = str(info.value)
    assert message.startswith("model.name: a custom model ('initlab_testzoo.tripwire:model')")
    assert "--allow-custom-models" in message and f"{ALLOW_ENV}=1" in message
    with pytest.raises(ValueError, match="--allow-custom-models"):
        build_model(d["model"])
    with pytest.raises(ValueError, match="--allow-custom-models"):
        Experiment.from_dict(d, allow_custom=False)
    assert "initlab_testzoo.tripwire" not in sys.modules  # refused before importing


def test_environment_variable_enables_custom_models(testzoo, monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "1")
    exp = Experiment.from_dict(custom_exp("outputs:shared_net", [8]))
    assert exp.model["factory"] == "initlab_testzoo.outputs:shared_net"
    monkeypatch.setenv(ALLOW_ENV, "0")
    with pytest.raises(ValueError, match="off by default"):
        Experiment.from_dict(custom_exp("outputs:shared_net", [8]))


def test_explicit_refusal_wins_over_the_environment(testzoo, monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "1")
    with pytest.raises(ValueError, match="off by default"):
        build_model({"name": "custom", "factory": "initlab_testzoo.outputs:tuple_net"},
                    allow_custom=False)  # fmt: skip


@pytest.mark.parametrize(
    ("factory", "kwargs", "calls"),
    [
        ("outputs:tuple_net", {"width": 8}, 3),  # (logits, features): fc1, act, fc2
        ("outputs:dict_net", {"width": 8}, 3),  # {"logits", "features"}
        ("outputs:shared_net", {"width": 8, "repeats": 4}, 8),  # fc, act called 4 times each
    ],
)
def test_custom_models_with_tuple_dict_outputs_and_shared_modules_run(testzoo, factory, kwargs,
                                                                     calls):  # fmt: skip
    d = custom_exp(factory, [8], model={"kwargs": kwargs})
    res = run(Experiment.from_dict(d, allow_custom=True))
    assert len(res.layers) == calls
    assert res.layers["grad_var"].notna().all()
    assert res.params["std"].notna().all() and res.params["grad_var"].notna().all()


def test_custom_language_model_with_dataclass_output_runs_on_token_input(testzoo):
    n_layer = 2
    d = custom_exp("hf_gpt2:gpt2_lm", [16], input={"distribution": "tokens", "vocab_size": 100},
                   model={"kwargs": {"n_layer": n_layer, "n_embd": 32}})  # fmt: skip
    exp = Experiment.from_dict(d, allow_custom=True)
    x = make_input(exp, 0)
    assert x.dtype == torch.int64 and x.min() >= 0 and x.max() < 100
    res = run(exp)
    assert len(res.layers) == 2 + 8 * n_layer + 2  # leaf calls and one block row per block
    assert res.layers["layer"].iloc[-1] == "lm_head"
    assert res.layers["grad_var"].notna().all()


def test_custom_experiment_round_trips(testzoo):
    d = custom_exp("outputs:tuple_net", [8], model={"kwargs": {"width": 8}, "activation": "tanh"})
    exp = Experiment.from_dict(d, allow_custom=True)
    again = Experiment.from_dict(json.loads(exp.to_json()), allow_custom=True)
    assert again == exp
    assert exp.model == {"name": "custom", "factory": "initlab_testzoo.outputs:tuple_net",
                         "kwargs": {"width": 8}, "activation": "tanh"}  # fmt: skip


@pytest.mark.parametrize(
    ("model", "input", "message"),
    [
        ({"factory": "initlab_testzoo.missing:f"}, {"shape": [4]},
         "model.factory: cannot import 'initlab_testzoo.missing:f': ModuleNotFoundError"),
        ({"factory": "initlab_testzoo.broken:f"}, {"shape": [4]},
         "model.factory: cannot import 'initlab_testzoo.broken:f': ImportError: this module is "
         "broken on purpose"),
        ({"factory": "initlab_testzoo.outputs:nope"}, {"shape": [4]},
         "model.factory: cannot import 'initlab_testzoo.outputs:nope': AttributeError"),
        ({"factory": "initlab_testzoo.outputs:NOT_CALLABLE"}, {"shape": [4]},
         "model.factory: 'initlab_testzoo.outputs:NOT_CALLABLE' is a int, not a callable"),
        ({"factory": "initlab_testzoo.outputs"}, {"shape": [4]},
         "model.factory: must be 'package.module:callable'"),
        ({}, {"shape": [4]}, "model.factory: must be 'package.module:callable'; got None"),
        ({"factory": "initlab_testzoo.outputs:tuple_net", "kwargs": [1]}, {"shape": [4]},
         "model.kwargs: must be an object of keyword arguments"),
        ({"factory": "initlab_testzoo.outputs:tuple_net", "depth": 3}, {"shape": [4]},
         "model: unknown parameter 'depth' for model 'custom'"),
        ({"factory": "initlab_testzoo.outputs:tuple_net"}, {},
         "input.shape: a custom model must declare its per-sample input shape"),
        ({"factory": "initlab_testzoo.hf_gpt2:gpt2_lm"}, {"shape": [4], "distribution": "tokens"},
         "input.vocab_size: token input to a custom model needs the vocabulary size"),
    ],
)  # fmt: skip
def test_invalid_custom_models_are_refused_naming_the_field(testzoo, model, input, message):
    d = {"model": {"name": "custom", **model}, "input": input,
         "schemes": [{"preset": "pytorch_default"}]}  # fmt: skip
    with pytest.raises(ValueError) as info:
        Experiment.from_dict(d, allow_custom=True)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("outputs:raises", "model.factory: 'initlab_testzoo.outputs:raises' raised RuntimeError: "
                           "factory failed on purpose"),
        ("outputs:not_a_module", "model.factory: 'initlab_testzoo.outputs:not_a_module' returned "
                                 "a str, not a torch.nn.Module"),
    ],
)  # fmt: skip
def test_a_factory_that_fails_is_named(testzoo, factory, message):
    with pytest.raises(ValueError) as info:
        run(Experiment.from_dict(custom_exp(factory, [8]), allow_custom=True))
    assert str(info.value).startswith(message)


def test_cli_refuses_custom_models_without_the_flag_and_runs_them_with_it(
    testzoo, tmp_path, capsys
):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(custom_exp("outputs:tuple_net", [8])), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab: error: model.name: a custom model") and "--allow-" in err
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--allow-custom-models"])
    assert code == 0 and (tmp_path / "out" / "layers.csv").exists()
    assert main(["code", str(path)]) == 2
    assert main(["code", str(path), "--allow-custom-models"]) == 0
    assert "def initialize_weights" in capsys.readouterr().out


def test_moved_skips_module_to_only_where_every_tensor_is_there(monkeypatch):
    calls = []
    real = nn.Module.to
    monkeypatch.setattr(nn.Module, "to", lambda self, *a, **k: calls.append(a) or real(self, *a))
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert moved(model, torch.device("cpu")) is model and calls == []
    # one buffer there already, the rest not: the whole model moves
    model[1].register_buffer("extra", torch.zeros(2, device="meta"))
    on_meta = moved(model, torch.device("meta"))
    assert calls == [(torch.device("meta"),)]
    assert all(t.is_meta for t in [*on_meta.parameters(), *on_meta.buffers()])
