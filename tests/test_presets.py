"""Every preset, each checked on a model where its effect shows.

Expected stds are recomputed here from the shapes (never read back from `expected_std`);
sample stds are compared with ratios at tolerances of several standard errors (a sample std of
n normal draws has relative standard error about 1/sqrt(2n)).
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from initlab.experiment import Experiment, run
from initlab.methods import SCALE_BY_MATCHES, parse_method_spec
from initlab.models import MODELS, build_model, normalize_model_spec
from initlab.presets import PRESETS, preset
from initlab.schemes import Scheme, apply_scheme

FIXTURES = Path(__file__).parent / "fixtures"
REL = 0.05
SMALL = {
    "mlp": {"name": "mlp", "bias": True, "depth": 3, "width": 16},
    "lenet": {"name": "lenet"},
    "cnn": {"name": "cnn", "depth": 2, "channels": 4, "image_size": 8, "batchnorm": True},
    "resnet": {"name": "resnet", "stages": 2, "blocks": 1, "width": 4, "image_size": 8},
    "transformer": {"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
                    "vocab_size": 50, "seq_len": 8},
    "rnn": {"name": "rnn", "layers": 2, "hidden": 8, "input_size": 4, "seq_len": 3},
}  # fmt: skip
# Observed rows: leaf calls, plus LeNet's four functional ReLUs, the one ResNet block that keeps
# its shape (stage 2's first block downsamples) and the transformer's two blocks.
SMALL_CALLS = {"mlp": 6, "lenet": 7 + 4, "cnn": 9, "resnet": 3 + 6 * 2 + 2 + 2 + 1,
               "transformer": 18 + 2, "rnn": 2}  # fmt: skip


def init(spec: dict[str, Any], name: str, seed: int = 0) -> nn.Module:
    """A fresh zoo model with preset `name` applied for the model's own activation."""
    full = normalize_model_spec(spec)
    model = build_model(full, seed=seed)
    scheme = preset(name, MODELS[full["name"]].activation(full))
    apply_scheme(model, scheme, torch.Generator().manual_seed(seed))
    return model


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters(remove_duplicate=False))


def assert_std(tensor: torch.Tensor, want: float, rel: float = REL) -> None:
    got = tensor.detach().double().std().item()
    assert got == pytest.approx(want, rel=rel), f"std {got:.5g}, want {want:.5g}"


def fans(w: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(w.shape[2:])
    return w.shape[1] * receptive, w.shape[0] * receptive


# ---------------------------------------------------------------- the registry


def test_the_presets_are_the_ones_promised():
    assert set(PRESETS) == {
        "pytorch_default", "recipe", "xavier_uniform", "xavier_normal", "xavier_uniform_gain",
        "xavier_normal_gain", "kaiming_normal", "kaiming_normal_fan_out", "lecun_normal",
        "orthogonal", "orthogonal_recurrent", "gpt2", "zero_init_residual", "zeros", "too_small",
        "too_large", "as_constructed", "residual_scaled",
    }  # fmt: skip


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_has_a_title_a_one_line_why_and_a_source(name):
    p = PRESETS[name]
    for text in (p.title, p.why, p.source):
        assert text.strip() and "\n" not in text
    assert preset(name).preset == name


@pytest.mark.parametrize("model", SMALL)
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_runs_on_every_zoo_model(name, model):
    exp = Experiment.from_dict({"model": SMALL[model], "input": {"batch_size": 4},
                                "schemes": [{"preset": name}]})  # fmt: skip
    res = run(exp)
    assert len(res.layers) == SMALL_CALLS[model]
    assert res.params["std"].notna().all()


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown preset 'gpt3'; choose one of: pytorch_default"):
        preset("gpt3")


# ---------------------------------------------------------------- each preset's effect


def test_pytorch_default_leaves_the_fresh_model_as_it_was():
    fresh = build_model(SMALL["resnet"], seed=1)
    model = init(SMALL["resnet"], "pytorch_default", seed=1)
    for (name, a), b in zip(fresh.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_recipe_gives_conv_xavier_normal_and_linear_normal_001():
    p = params(init({"name": "lenet"}, "recipe"))
    w = p["conv2.weight"]
    assert_std(w, math.sqrt(2.0 / sum(fans(w))))
    assert_std(p["fc1.weight"], 0.01)
    assert all(p[f"{n}.bias"].eq(0).all() for n in ("conv1", "conv2", "fc1", "fc2", "fc3"))


@pytest.mark.parametrize(("kind", "std_of_bound"), [("normal", 1.0), ("uniform", math.sqrt(3))])
def test_xavier_gain_uses_the_gain_of_the_models_activation(kind, std_of_bound):
    # xavier_normal / xavier_uniform themselves are the paper's gain 1: test_presets_papers.py
    p = params(init({"name": "mlp", "bias": True, "depth": 2, "width": 256, "activation": "tanh"},
                    f"xavier_{kind}_gain"))  # fmt: skip
    w = p["fc2.weight"]
    std = 5 / 3 * math.sqrt(2.0 / sum(fans(w)))  # calculate_gain("tanh") = 5/3
    assert_std(w, std, rel=0.02)
    if kind == "uniform":
        assert w.abs().max().item() <= std * std_of_bound


@pytest.mark.parametrize(("activation", "gain"),
                         [("relu", math.sqrt(2.0)), ("leaky_relu", math.sqrt(2 / (1 + 0.01**2))),
                          ("tanh", 5 / 3)])  # fmt: skip
def test_kaiming_normal_is_gain_over_sqrt_fan_in(activation, gain):
    spec = {"name": "mlp", "bias": True, "depth": 2, "width": 256, "activation": activation}
    p = params(init(spec, "kaiming_normal"))
    assert_std(p["fc2.weight"], gain / math.sqrt(256), rel=0.02)
    assert p["fc2.bias"].eq(0).all()


def test_kaiming_fan_in_and_fan_out_differ_where_the_fans_do():
    spec = {"name": "cnn", "depth": 1, "channels": 128, "image_size": 4}
    for name, fan in (("kaiming_normal", 0), ("kaiming_normal_fan_out", 1)):
        w = params(init(spec, name))["conv1.weight"]  # 3 -> 128 channels: fans 27 and 1152
        assert_std(w, math.sqrt(2.0 / fans(w)[fan]))


def test_lecun_normal_is_a_truncated_normal_with_std_one_over_sqrt_fan_in():
    p = params(init({"name": "mlp", "bias": True, "depth": 2, "width": 256, "activation": "selu"},
                    "lecun_normal"))  # fmt: skip
    std = 1 / math.sqrt(256)
    assert_std(p["fc2.weight"], std, rel=0.02)
    assert p["fc2.weight"].abs().max().item() <= 2 * std / 0.8796256610342398


def test_orthogonal_rows_are_orthogonal_with_the_activations_gain():
    w = params(init({"name": "mlp", "bias": True, "depth": 2, "width": 64}, "orthogonal"))[
        "fc2.weight"
    ]
    assert torch.allclose(w @ w.T, 2.0 * torch.eye(64), atol=1e-5)  # relu gain² = 2


def test_zeros_makes_every_unit_the_same_so_nothing_can_learn_to_differ():
    exp = Experiment.from_dict({"model": {"name": "mlp", "depth": 4, "width": 32},
                                "schemes": [{"preset": "zeros"}]})  # fmt: skip
    res = run(exp)
    assert (res.layers["act_var"] == 0).all()
    assert (res.params["grad_var"] == 0).all()  # the same (zero) update for every weight


@pytest.mark.parametrize(("name", "check"), [
    ("too_small", lambda v: v[-1] < 1e-12 * v[0] and all(a > b for a, b in pairwise(v))),
    ("too_large", lambda v: all(a < b for a, b in pairwise(v)) and v[-1] > 1e12 * v[0]),
])  # fmt: skip
def test_a_fixed_std_vanishes_or_explodes_with_depth(name, check):
    exp = Experiment.from_dict({"model": {"name": "mlp", "depth": 8, "width": 256},
                                "schemes": [{"preset": name}], "backward": False})  # fmt: skip
    layers = run(exp).layers
    variances = layers[layers["type"] == "Linear"]["act_var"].tolist()
    assert check(variances), variances


def test_too_large_saturates_tanh():
    model = {"name": "mlp", "bias": True, "depth": 4, "width": 256, "activation": "tanh"}
    exp = Experiment.from_dict(
        {"model": model, "schemes": [{"preset": "too_large"}], "backward": False}
    )
    layers = run(exp).layers
    assert (layers[layers["type"] == "Tanh"]["frac_saturated"].iloc[1:] > 0.8).all()


# ---------------------------------------------------------------- zero_init_residual


def block_io(model: nn.Module) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """Each BasicBlock with the input and output of its call in one forward pass."""
    seen: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    handles = [b.register_forward_hook(lambda m, a, out: seen.append((m, a[0], out)))
               for b in blocks]  # fmt: skip
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    assert len(seen) == len(blocks)
    return seen


def test_zero_init_residual_makes_each_residual_block_the_identity_on_its_shortcut():
    spec = {"name": "resnet", "stages": 3, "blocks": 2, "width": 8, "image_size": 8}
    model = init(spec, "zero_init_residual")
    downsampled = 0
    for block, x, out in block_io(model):
        # relu(residual(x) + shortcut(x)) with the residual branch exactly 0; for blocks
        # without downsample, shortcut(x) = x.
        shortcut = x if block.downsample is None else block.downsample(x)
        downsampled += block.downsample is not None
        assert torch.equal(out, torch.relu(shortcut))
        assert block.bn2.weight.eq(0).all() and block.bn1.weight.eq(1).all()
    assert downsampled == 2
    # ... which the PyTorch default does not do
    default = init(spec, "pytorch_default")
    assert not all(torch.equal(out, torch.relu(x)) for b, x, out in block_io(default)
                   if b.downsample is None)  # fmt: skip


def test_zero_init_residual_uses_kaiming_fan_out_and_touches_no_plain_stack():
    p = params(
        init({"name": "resnet", "stages": 1, "blocks": 1, "width": 64}, "zero_init_residual")
    )
    w = p["layer1.0.conv1.weight"]
    assert_std(w, math.sqrt(2.0 / fans(w)[1]))
    # A plain conv stack has no residual block: its `bn2` (top level) keeps weight 1.
    cnn = params(init({"name": "cnn", "depth": 3, "channels": 4, "batchnorm": True},
                      "zero_init_residual"))  # fmt: skip
    assert all(cnn[f"bn{i}.weight"].eq(1).all() for i in (1, 2, 3))


# ---------------------------------------------------------------- gpt2


def check_gpt2(p: dict[str, torch.Tensor], prefix: str, n_layers: int) -> None:
    """c_proj weights N(0, 0.02/sqrt(2·n_layers)); other weights N(0, 0.02); biases 0."""
    residual = 0.02 / math.sqrt(2 * n_layers)
    for i in range(n_layers):
        block = f"{prefix}h.{i}"
        assert_std(p[f"{block}.attn.c_proj.weight"], residual)
        assert_std(p[f"{block}.mlp.c_proj.weight"], residual)
        assert_std(p[f"{block}.attn.c_attn.weight"], 0.02)
        assert_std(p[f"{block}.mlp.c_fc.weight"], 0.02)
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            assert p[f"{block}.{name}.bias"].eq(0).all()
        assert p[f"{block}.ln_1.weight"].eq(1).all() and p[f"{block}.ln_2.bias"].eq(0).all()
    assert_std(p[f"{prefix}wte.weight"], 0.02)
    assert_std(p[f"{prefix}wpe.weight"], 0.02, rel=0.1)


@pytest.mark.parametrize("n_layers", [1, 3])
def test_gpt2_scales_the_residual_projections_of_the_zoo_transformer(n_layers):
    spec = {"name": "transformer", "n_layers": n_layers, "d_model": 64, "n_heads": 4,
            "vocab_size": 500, "seq_len": 64}  # fmt: skip
    model = init(spec, "gpt2")
    check_gpt2(params(model), "", n_layers)
    assert model.lm_head.weight is model.wte.weight


def test_gpt2_params_table_has_the_scaled_expected_std():
    spec = {"name": "transformer", "n_layers": 3, "d_model": 16, "n_heads": 2}
    table = apply_scheme(build_model(spec), preset("gpt2", "gelu"), torch.Generator())
    rows = table.set_index("param")
    assert rows.loc["h.2.mlp.c_proj.weight", "expected_std"] == pytest.approx(0.02 / math.sqrt(6))
    assert rows.loc["h.2.mlp.c_fc.weight", "expected_std"] == pytest.approx(0.02)
    assert "1/sqrt" not in rows.loc["h.2.mlp.c_proj.weight", "method"]  # resolved: a number


def test_gpt2_finds_hugging_face_conv1d_projections_by_name(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    from initlab_testzoo.hf_gpt2 import gpt2_lm

    n_layer = 3
    model = gpt2_lm(n_layer=n_layer, n_embd=64, n_positions=64, vocab_size=500)
    for conv in (m for m in model.modules() if type(m).__name__ == "Conv1D"):
        nn.init.ones_(conv.weight)  # make sure the preset, not the model's own init, is measured
    apply_scheme(model, preset("gpt2", "gelu"), torch.Generator().manual_seed(0))
    p = params(model)
    check_gpt2(p, "transformer.", n_layer)
    assert p["lm_head.weight"] is p["transformer.wte.weight"]


# ---------------------------------------------------------------- the counted scale itself


def test_counted_scale_parses_round_trips_and_labels():
    spec = parse_method_spec({"method": "normal", "std": 0.02, "scale": "1 / sqrt(matches)"}, "w")
    assert spec.scale == SCALE_BY_MATCHES and spec.counted
    assert spec.to_dict()["scale"] == SCALE_BY_MATCHES
    assert parse_method_spec(spec.to_dict(), "w") == spec
    assert spec.label() == "normal(mean=0.0, std=0.02) × 1/sqrt(matches)"
    assert math.isnan(spec.expected_std((4, 4)))  # unknown until resolved for a model
    assert spec.for_matches(4).scale == 0.5


@pytest.mark.parametrize("value", ["1/sqrt(n)", "sqrt(matches)", [1]])
def test_other_scale_texts_are_refused_naming_the_one_allowed(value):
    with pytest.raises(ValueError) as info:
        parse_method_spec({"method": "normal", "scale": value}, "w")
    assert str(info.value).startswith("w.scale: must be a number or '1/sqrt(matches)'; got ")


def test_counted_scale_counts_every_module_the_rule_matches_whichever_rule_decides():
    scheme = Scheme.from_dict({"name": "s", "rules": [
        {"layers": "Linear", "name": "fc1", "weight": "zeros"},
        {"layers": "Linear", "weight": {"method": "normal", "std": 1.0,
                                        "scale": SCALE_BY_MATCHES}},
    ]})  # fmt: skip
    depth = 4
    model = build_model({"name": "mlp", "bias": True, "depth": depth, "width": 256})
    table = apply_scheme(model, scheme, torch.Generator().manual_seed(0)).set_index("param")
    assert model.fc1.weight.eq(0).all()
    assert_std(model.fc3.weight, 1 / math.sqrt(depth), rel=0.02)  # 4 Linear match rule 1
    assert table.loc["fc3.weight", "expected_std"] == pytest.approx(1 / math.sqrt(depth))
