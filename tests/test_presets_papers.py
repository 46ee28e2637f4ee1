"""The presets behave as their papers say.

- Xavier is Glorot & Bengio's gain 1 (as in the paper, Keras and JAX); the activation-gain
  variants (torch's documented usage) are presets of their own.
- On SELU, fan-based presets use the 'linear' gain, as torch's calculate_gain docs advise.
- The recipe preset gives, bit for bit, what the recipe's own nine-line isinstance loop gives.
- The classic comparison: on a 30-layer ReLU MLP, Xavier halves the pre-activation variance per
  layer and Kaiming keeps it (He et al. 2015, section 2.2).

Expected stds are recomputed here from the shapes; ratios are compared at explicit tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.presets import PRESETS, preset
from initlab.schemes import apply_scheme

WIDE = {"name": "mlp", "bias": True, "depth": 2, "width": 256}


def init(spec: dict, name: str, activation: str, seed: int = 0) -> dict[str, torch.Tensor]:
    model = initlab.build_model({**spec, "activation": activation}, seed=seed)
    apply_scheme(model, preset(name, activation), torch.Generator().manual_seed(seed))
    return dict(model.named_parameters())


def std_of(t: torch.Tensor) -> float:
    return t.detach().double().std().item()


# ---------------------------------------------------------------- Xavier: gain 1


@pytest.mark.parametrize("activation", ["relu", "tanh", "selu", "sigmoid"])
@pytest.mark.parametrize("kind", ["normal", "uniform"])
def test_xavier_presets_are_glorot_and_bengios_gain_one(kind, activation):
    w = init(WIDE, f"xavier_{kind}", activation)["fc2.weight"]
    std = math.sqrt(2.0 / (256 + 256))  # whatever the activation
    assert std_of(w) == pytest.approx(std, rel=0.02)
    if kind == "uniform":
        assert w.abs().max().item() <= math.sqrt(3.0) * std


@pytest.mark.parametrize(("activation", "gain"), [("tanh", 5 / 3), ("relu", math.sqrt(2.0)),
                                                  ("sigmoid", 1.0), ("selu", 1.0)])  # fmt: skip
@pytest.mark.parametrize("kind", ["normal", "uniform"])
def test_xavier_gain_presets_take_the_activations_calculate_gain(kind, activation, gain):
    w = init(WIDE, f"xavier_{kind}_gain", activation)["fc2.weight"]
    assert std_of(w) == pytest.approx(gain * math.sqrt(2.0 / 512), rel=0.02)


def test_the_xavier_texts_say_which_is_the_paper_and_which_adds_a_gain():
    assert "gain 1" in PRESETS["xavier_normal"].why
    assert "Keras" in PRESETS["xavier_normal"].source
    assert "calculate_gain" in PRESETS["xavier_normal_gain"].why
    assert "gain" in PRESETS["xavier_uniform_gain"].title.lower()


# ---------------------------------------------------------------- SELU: the linear gain


@pytest.mark.parametrize(("name", "fan"), [("kaiming_normal", 0), ("kaiming_normal_fan_out", 1)])
def test_kaiming_on_selu_uses_the_linear_gain(name, fan):
    spec = {"name": "mlp", "widths": [512, 128], "activation": "selu", "bias": True}
    w = init(spec, name, "selu")["fc1.weight"]  # (128, 512): fans 512 and 128
    assert std_of(w) == pytest.approx(1 / math.sqrt((512, 128)[fan]), rel=0.02)
    assert "'linear'" in PRESETS[name].why
    assert preset(name, "selu").rules[0].weight.kwargs["nonlinearity"] == "linear"


def test_kaiming_keeps_a_deep_selu_net_at_its_fixed_point_where_the_selu_gain_shrinks_it():
    selu_gain = {"layers": "Linear", "weight": {"method": "kaiming_normal", "nonlinearity": "selu"}}
    schemes = [{"name": "kaiming", "preset": "kaiming_normal"},
               {"name": "selu gain", "rules": [selu_gain]}]  # fmt: skip
    factors = per_layer_factors("selu", schemes, seeds=[0])
    assert factors["kaiming"] == [pytest.approx(1.0, abs=0.02)]
    assert factors["selu gain"][0] < 0.95  # measured 0.90


# ---------------------------------------------------------------- the recipe, bit for bit


def recipe_loop(model: nn.Module) -> None:
    """The recipe's own code, verbatim (it draws from torch's global generator)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


class MyConv(nn.Conv2d):
    """A Conv2d subclass: isinstance(m, nn.Conv2d) holds, so the recipe initializes it."""


def with_subclasses() -> nn.Module:
    torch.manual_seed(123)  # the same default init for both copies
    return nn.Sequential(
        MyConv(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        nn.ConvTranspose2d(8, 8, 3),  # not a Conv2d: both leave it at its default
        nn.Conv2d(8, 4, 3, bias=False), nn.Flatten(), nn.Linear(4 * 6 * 6, 10),
    )  # fmt: skip


MODELS_FOR_RECIPE: dict[str, Callable[[], nn.Module]] = {
    "lenet": lambda: initlab.build_model({"name": "lenet"}, seed=7),
    "subclasses": with_subclasses,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("which", MODELS_FOR_RECIPE)
def test_the_recipe_preset_is_the_recipes_own_loop_bit_for_bit(which, seed):
    ours, theirs = MODELS_FOR_RECIPE[which](), MODELS_FOR_RECIPE[which]()
    torch.manual_seed(seed)
    recipe_loop(theirs)
    apply_scheme(ours, preset("recipe"), generator=torch.Generator().manual_seed(seed))
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_the_subclass_model_really_exercises_the_subclass():
    model = with_subclasses()
    apply_scheme(model, preset("recipe"), generator=torch.Generator().manual_seed(0))
    fan_in, fan_out = 3 * 9, 8 * 9
    assert std_of(model[0].weight) == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.15)
    assert model[0].bias.eq(0).all() and model[1].weight.eq(1).all()


# ---------------------------------------------------------------- the classic comparison


def per_layer_factors(activation: str, schemes: list[dict], seeds: list[int]) -> dict:
    """Geometric-mean ratio of consecutive pre-activation variances, per scheme and seed."""
    exp = initlab.Experiment.from_dict({
        "model": {"name": "mlp", "depth": 30, "width": 512, "activation": activation,
                  "bias": False},
        "input": {"batch_size": 256}, "seeds": seeds, "backward": False, "schemes": schemes,
    })  # fmt: skip
    layers = initlab.run(exp).layers
    weight = layers[layers["role"] == "weight"]
    out: dict[str, list[float]] = {}
    for (scheme, _seed), rows in weight.groupby(["scheme", "seed"]):
        var = rows.sort_values("order")["act_var"].to_numpy(np.float64)
        assert len(var) == 30
        out.setdefault(scheme, []).append(float(np.exp(np.log(var[1:] / var[:-1]).mean())))
    return out


@pytest.fixture(scope="module")
def relu_factors() -> dict[str, list[float]]:
    schemes = [{"name": "xavier", "preset": "xavier_normal"},
               {"name": "kaiming", "preset": "kaiming_normal"}]  # fmt: skip
    return per_layer_factors("relu", schemes, seeds=[0, 1])


def test_xavier_halves_the_variance_per_relu_layer(relu_factors):
    # Var(W) = 1/n with equal fans, and ReLU keeps half of E[h²]: ×1/2 per layer.
    assert relu_factors["xavier"] == [pytest.approx(0.5, abs=0.03)] * 2  # measured 0.496, 0.491


def test_kaiming_keeps_the_variance_per_relu_layer(relu_factors):
    assert relu_factors["kaiming"] == [pytest.approx(1.0, abs=0.05)] * 2  # measured 0.993, 0.982
