"""Rules, schemes and apply_scheme: matching, routing, defaults, validation, the params table,
round trips, and every preset on the zoo models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab import PRESETS, Rule, Scheme, apply_scheme, build_model, preset, validate_scheme
from initlab.layers import FAMILIES, family_of, matches_layers
from initlab.methods import parse_method_spec
from initlab.presets import scheme_from_dict


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scheme(*rules: dict, name: str = "test") -> Scheme:
    return Scheme.from_dict({"name": name, "rules": list(rules)})


def mlp(depth: int = 3, width: int = 8, **kw) -> nn.Module:
    return build_model({"name": "mlp", "bias": True, "depth": depth, "width": width, **kw}, seed=0)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---------------------------------------------------------------- matching


def test_first_matching_rule_wins():
    model = mlp()
    s = scheme({"layers": "Linear", "name": "fc1", "weight": "zeros"}, {"layers": "Linear",
               "weight": "ones"})  # fmt: skip
    apply_scheme(model, s, gen())
    assert torch.all(model.fc1.weight == 0)
    assert torch.all(model.fc2.weight == 1) and torch.all(model.fc3.weight == 1)
    # reversed: the general rule matches first everywhere
    model = mlp()
    s = scheme({"layers": "Linear", "weight": "ones"}, {"layers": "Linear", "name": "fc1",
               "weight": "zeros"})  # fmt: skip
    apply_scheme(model, s, gen())
    assert all(torch.all(getattr(model, f"fc{i}").weight == 1) for i in (1, 2, 3))


def test_name_glob_narrows():
    model = build_model({"name": "lenet"}, seed=0)
    before = snapshot(model)
    table = apply_scheme(model, scheme({"layers": "Linear", "name": "fc1", "weight": "zeros"}))
    assert torch.all(model.fc1.weight == 0)
    assert torch.equal(model.fc2.weight, before["fc2.weight"])
    assert list(table.loc[table["method"] != "default", "param"]) == ["fc1.weight"]
    model = build_model({"name": "lenet"}, seed=0)
    table = apply_scheme(model, scheme({"layers": "Linear", "name": "fc*", "weight": "zeros"}))
    assert list(table.loc[table["method"] != "default", "param"]) == [
        "fc1.weight", "fc2.weight", "fc3.weight",
    ]  # fmt: skip
    # a glob that matches the name but not the family matches nothing
    model = build_model({"name": "lenet"}, seed=0)
    table = apply_scheme(model, scheme({"layers": "Conv", "name": "fc*", "weight": "zeros"}))
    assert (table["method"] == "default").all()


class ConvMix(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 3, 3)
        self.c2 = nn.Conv2d(2, 3, 3)
        self.t2 = nn.ConvTranspose2d(3, 2, 3)


def test_exact_class_name_vs_family():
    torch.manual_seed(0)
    model = ConvMix()
    before = snapshot(model)
    table = apply_scheme(model, scheme({"layers": "Conv2d", "weight": "zeros"}))
    assert torch.all(model.c2.weight == 0)
    assert torch.equal(model.c1.weight, before["c1.weight"])
    assert torch.equal(model.t2.weight, before["t2.weight"])
    assert list(table.loc[table["method"] == "zeros", "param"]) == ["c2.weight"]
    model = ConvMix()
    apply_scheme(model, scheme({"layers": "Conv", "weight": "zeros"}))
    assert torch.all(model.c1.weight == 0) and torch.all(model.c2.weight == 0)
    assert not torch.all(model.t2.weight == 0)  # ConvTranspose is its own family
    assert family_of(model.t2) == "ConvTranspose" and family_of(model.c1) == "Conv"
    assert matches_layers(nn.BatchNorm1d(3), "BatchNorm")
    assert not matches_layers(nn.BatchNorm1d(3), "BatchNorm2d")
    assert "MultiheadAttention" in FAMILIES


def test_unmatched_parameters_keep_their_value_bit_for_bit():
    model = build_model({"name": "lenet"}, seed=0)
    before = snapshot(model)
    table = apply_scheme(model, scheme({"layers": "Conv", "weight": "ones"}), gen())
    for name, p in model.named_parameters():
        if name in ("conv1.weight", "conv2.weight"):
            assert torch.all(p == 1)
        else:
            assert torch.equal(p, before[name]), name
    rows = table.set_index("param")
    assert rows.loc["fc1.weight", "method"] == "default"
    assert rows.loc["conv1.bias", "method"] == "default"  # bias omitted in the rule
    assert rows.loc["conv1.weight", "method"] == "ones"
    assert len(table) == len(before)


def test_default_scheme_reports_every_parameter_as_default():
    model = mlp()
    before = snapshot(model)
    table = apply_scheme(model, preset("pytorch_default"), gen())
    assert (table["method"] == "default").all()
    assert list(table["param"]) == list(before)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_scale_multiplies():
    model = build_model({"name": "mlp", "depth": 1, "width": 256, "bias": False}, seed=0)
    s = scheme({"layers": "Linear", "weight": {"method": "normal", "std": 1.0, "scale": 0.1}})
    table = apply_scheme(model, s, gen(3))
    assert float(model.fc1.weight.detach().std()) == pytest.approx(0.1, rel=0.03)
    assert table["expected_std"].iloc[0] == pytest.approx(0.1)
    # exactly the unscaled draw times the scale
    ref = torch.empty(256, 256).normal_(0.0, 1.0, generator=gen(3)) * 0.1
    assert torch.equal(model.fc1.weight.detach(), ref)
    assert "0.1" in table["method"].iloc[0]


def test_scale_on_default_is_applied_or_refused():
    spec = {"layers": "Linear", "weight": {"method": "default", "scale": 0.5}}
    try:
        s = scheme(spec)
    except ValueError:
        return  # refusing is an acceptable fix
    model = mlp(depth=1)
    before = model.fc1.weight.detach().clone()
    apply_scheme(model, s, gen())
    assert torch.equal(model.fc1.weight.detach(), before * 0.5)
    assert Scheme.from_dict(s.to_dict()) == s


def test_weight_and_bias_routing():
    model = mlp()
    apply_scheme(model, scheme({"layers": "Linear", "weight": "ones",
                                "bias": {"method": "constant", "val": 0.25}}))  # fmt: skip
    for i in (1, 2, 3):
        layer = getattr(model, f"fc{i}")
        assert torch.all(layer.weight == 1)
        assert torch.all(layer.bias == 0.25)


def test_mha_weight_and_bias_routing_by_name_substring():
    torch.manual_seed(0)
    model = nn.Sequential(nn.MultiheadAttention(8, 2))
    table = apply_scheme(model, scheme({"layers": "MultiheadAttention", "weight": "zeros",
                                        "bias": "ones"}))  # fmt: skip
    mha = model[0]
    assert torch.all(mha.in_proj_weight == 0) and torch.all(mha.in_proj_bias == 1)
    # out_proj is a Linear child: not matched by the MultiheadAttention rule
    assert not torch.all(mha.out_proj.weight == 0)
    rows = table.set_index("param")
    assert rows.loc["0.in_proj_weight", "method"] == "zeros"
    assert rows.loc["0.out_proj.weight", "method"] == "default"


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(16, 16, bias=False)
        self.dec = nn.Linear(16, 16, bias=False)
        self.dec.weight = self.enc.weight


def test_tied_parameters_initialized_once():
    torch.manual_seed(0)
    model = Tied()
    table = apply_scheme(model, scheme({"layers": "Linear", "weight": "normal"}), gen(7))
    assert list(table["param"]) == ["enc.weight"]  # one row for the one tensor
    assert model.dec.weight is model.enc.weight
    # exactly one draw: a second one would have advanced the generator past this
    first = torch.empty(16, 16).normal_(0.0, 1.0, generator=gen(7))
    assert torch.equal(model.enc.weight.detach(), first)


# ---------------------------------------------------------------- validation


def test_validation_message_names_scheme_rule_parameter_and_shape():
    model = build_model({"name": "lenet"}, seed=0)
    s = scheme({"layers": "Linear", "weight": "xavier_normal"},
               {"layers": "Conv", "weight": "eye"}, name="identity try")  # fmt: skip
    with pytest.raises(ValueError) as info:
        validate_scheme(s, model)
    msg = str(info.value)
    for part in ("identity try", "rule 1", "Conv", "conv1.weight", "(6, 3, 5, 5)",
                 "eye needs a 2-D tensor; for convolutions use dirac"):  # fmt: skip
        assert part in msg, part
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"conv1\.weight"):
        apply_scheme(model, s, gen())
    # nothing was touched before the refusal
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_validation_fan_method_on_bias():
    model = mlp()
    s = scheme({"layers": "Linear", "bias": "kaiming_normal"})
    with pytest.raises(ValueError, match=r"fc1\.bias, shape \(8,\): kaiming_normal needs a >= 2-D"):
        validate_scheme(s, model)
    validate_scheme(scheme({"layers": "Conv", "weight": "dirac"}), build_model({"name": "lenet"}))


# ---------------------------------------------------------------- the params table


def test_params_table_values_by_hand():
    model = build_model({"name": "lenet"}, seed=0)
    s = scheme(
        {"layers": "Conv", "weight": {"method": "kaiming_normal", "nonlinearity": "relu"},
         "bias": "zeros"},
        {"layers": "Linear", "name": "fc1", "weight": {"method": "xavier_uniform",
                                                        "gain": "tanh"}},
    )  # fmt: skip
    table = apply_scheme(model, s, gen())
    assert list(table.columns) == ["param", "layer", "type", "shape", "method", "fan_in",
                                   "fan_out", "gain", "expected_std"]  # fmt: skip
    rows = table.set_index("param")
    c1 = rows.loc["conv1.weight"]
    assert (c1["layer"], c1["type"], c1["shape"]) == ("conv1", "Conv2d", "(6, 3, 5, 5)")
    assert (c1["fan_in"], c1["fan_out"]) == (3 * 25, 6 * 25)
    assert c1["gain"] == pytest.approx(math.sqrt(2))
    assert c1["expected_std"] == pytest.approx(math.sqrt(2) / math.sqrt(75))
    c2 = rows.loc["conv2.weight"]
    assert (c2["fan_in"], c2["fan_out"]) == (150, 400)
    assert c2["expected_std"] == pytest.approx(math.sqrt(2 / 150))
    b = rows.loc["conv1.bias"]
    assert b["method"] == "zeros" and b["expected_std"] == 0.0
    assert math.isnan(b["fan_in"]) and math.isnan(b["gain"])
    f1 = rows.loc["fc1.weight"]
    assert (f1["fan_in"], f1["fan_out"]) == (400, 120)
    assert f1["gain"] == pytest.approx(5 / 3)
    assert f1["expected_std"] == pytest.approx(5 / 3 * math.sqrt(2 / 520))
    assert f1["method"] == "xavier_uniform(gain='tanh')"
    # untouched: PyTorch's own U(±1/sqrt(fan_in)), std 1/sqrt(3 fan_in), for weight and bias
    f2w, f2b = rows.loc["fc2.weight"], rows.loc["fc2.bias"]
    assert f2w["method"] == "default" and f2b["method"] == "default"
    assert f2w["expected_std"] == pytest.approx(1 / math.sqrt(3 * 120))
    assert f2b["expected_std"] == pytest.approx(1 / math.sqrt(3 * 120))
    assert (f2w["fan_in"], f2w["fan_out"]) == (120, 84)


def test_params_table_expected_std_is_met():
    model = build_model({"name": "mlp", "depth": 2, "width": 256, "bias": False}, seed=0)
    table = apply_scheme(model, preset("kaiming_normal"), gen(1))
    for _, row in table.iterrows():
        measured = float(model.get_parameter(row["param"]).detach().std(unbiased=False))
        assert measured == pytest.approx(row["expected_std"], rel=0.03), row["param"]
    assert table["expected_std"].iloc[0] == pytest.approx(math.sqrt(2 / 256))


def test_params_table_norm_defaults():
    model = mlp(depth=1, norm="layernorm")
    rows = apply_scheme(model, preset("pytorch_default")).set_index("param")
    assert rows.loc["norm1.weight", "expected_std"] == 0.0
    assert rows.loc["norm1.weight", "type"] == "LayerNorm"


# ---------------------------------------------------------------- round trips and parsing


def test_to_dict_from_dict_round_trip():
    s = scheme(
        {"layers": "Linear", "name": "*.c_proj",
         "weight": {"method": "normal", "std": 0.02, "scale": 0.25}, "bias": "zeros"},
        {"layers": "Conv", "weight": {"method": "kaiming_uniform_", "nonlinearity": "relu"}},
        {"layers": "LayerNorm", "weight": "ones"},
        {"layers": "Embedding", "weight": {"method": "xavier_normal", "gain": "leaky_relu(0.2)"}},
        name="GPT-ish",
    )  # fmt: skip
    d = s.to_dict()
    assert d["rules"][0]["name"] == "*.c_proj"
    assert d["rules"][0]["weight"]["scale"] == 0.25
    assert d["rules"][1]["weight"]["method"] == "kaiming_uniform"  # trailing _ normalized
    assert d["rules"][2]["bias"] == "default"
    back = Scheme.from_dict(d)
    assert back == s
    assert back.to_dict() == d
    p = preset("xavier_normal", activation="tanh")
    assert Scheme.from_dict(p.to_dict()) == p


def test_scheme_from_preset_dict():
    s = scheme_from_dict({"preset": "kaiming_normal"}, activation="tanh")
    assert s.preset == "kaiming_normal"
    assert s.rules == preset("kaiming_normal", activation="tanh").rules
    assert s.rules[0].weight.kwargs["nonlinearity"] == "tanh"
    named = scheme_from_dict({"name": "mine", "preset": "zeros"})
    assert named.name == "mine"
    with pytest.raises(ValueError, match=r"scheme\.preset: unknown preset 'nope'"):
        scheme_from_dict({"preset": "nope"})


@pytest.mark.parametrize(
    ("d", "pattern"),
    [
        ({"name": "s", "rules": [{"layers": "Linear", "weihgt": "zeros"}]},
         r"scheme\.rules\.0: unknown field 'weihgt'"),
        ({"name": "s", "rules": [], "colour": "red"}, r"scheme: unknown field 'colour'"),
        ({"name": "s", "rules": [{"layers": "Linear", "weight": {"method": "normal",
                                                                  "sdt": 1}}]},
         r"scheme\.rules\.0\.weight: unknown parameter 'sdt'"),
        ({"name": "s", "rules": [{"layers": "Linear", "weight": "nope"}]},
         r"scheme\.rules\.0\.weight\.method: unknown method 'nope'"),
        ({"name": "s", "rules": [{"layers": "Linear", "weight": {"method": "uniform", "a": 1,
                                                                  "b": 0}}]},
         r"scheme\.rules\.0\.weight: a must be smaller than b"),
        ({"name": "s", "rules": [{"weight": "zeros"}]}, r"scheme\.rules\.0\.layers"),
        ({"name": "s", "rules": "Linear"}, r"scheme\.rules: must be a list"),
        ({"name": "", "rules": []}, r"scheme\.name"),
        ({"name": "s", "rules": [{"layers": "Linear", "weight": {"method": "xavier_normal",
                                                                  "gain": "relu6"}}]},
         r"scheme\.rules\.0\.weight\.gain"),
    ],
)  # fmt: skip
def test_from_dict_refuses_with_the_field_named(d, pattern):
    with pytest.raises(ValueError, match=pattern):
        Scheme.from_dict(d)


def test_method_spec_accepts_underscore_names_and_gain_names():
    spec = parse_method_spec({"method": "xavier_normal_", "gain": "leaky_relu(0.2)"}, "w")
    assert spec.method == "xavier_normal"
    assert spec.gain() == pytest.approx(math.sqrt(2 / (1 + 0.2**2)))
    assert Rule("Linear", spec).to_dict()["weight"]["method"] == "xavier_normal"


# ---------------------------------------------------------------- presets


ACTIVATIONS = ["relu", "tanh", "gelu", "linear", "leaky_relu", "selu"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_applies(name, activation):
    s = preset(name, activation=activation)
    assert s.preset == name
    for spec in ({"name": "mlp", "bias": True, "depth": 2, "width": 16}, {"name": "lenet"}):
        model = build_model(spec, seed=0)
        table = apply_scheme(model, s, gen())
        assert len(table) == len(list(model.parameters()))
        for _, row in table.iterrows():
            p = model.get_parameter(row["param"])
            assert torch.isfinite(p).all(), (name, row["param"])
    assert Scheme.from_dict(s.to_dict()) == s


def test_preset_gains_follow_the_activation():
    t = preset("kaiming_normal", activation="tanh").rules[0].weight
    assert t.gain() == pytest.approx(5 / 3)
    x = preset("xavier_normal_gain", activation="relu").rules[0].weight
    assert x.gain() == pytest.approx(math.sqrt(2))
    assert preset("xavier_normal", activation="relu").rules[0].weight.gain() == 1.0  # the paper
    lr = preset("kaiming_normal", activation="leaky_relu").rules[0].weight
    assert lr.gain() == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")


def test_default_expected_std_of_mha_out_proj_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.MultiheadAttention(16, 2))
    rows = apply_scheme(model, preset("pytorch_default")).set_index("param")
    measured = float(model[0].out_proj.bias.detach().std(unbiased=False))
    assert measured == 0.0
    assert rows.loc["0.out_proj.bias", "expected_std"] == pytest.approx(measured, abs=1e-12)
