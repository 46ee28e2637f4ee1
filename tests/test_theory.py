"""The mean-field theory against independent oracles: scipy's quad for every Gaussian
expectation, closed forms (ReLU's length map, tanh's critical point), PyTorch's own activations
for the float64 twins, and measured 30 × 1000 tanh networks for the fixed point and χ₁."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import integrate
from torch import nn

import initlab
from initlab import meanfield, theory
from initlab.models import ACTIVATIONS as MODULES

QS = [1e-4, 0.01, 0.5, 1.0, 3.0, 10.0, 100.0, 1e4]


def quad_expectation(f, q: float) -> float:
    """E[f(√q z)] by adaptive quadrature, split at 0 and where √q z = ±1, ±4, ±16."""
    root = math.sqrt(q)

    def integrand(z: float) -> float:
        return float(f(np.array([root * z]))[0]) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    cuts = sorted({0.0, *(s * u / root for u in (1, 4, 16) for s in (-1, 1) if u / root < 38)})
    total, _ = integrate.quad(integrand, -40, 40, points=cuts, limit=400, epsrel=1e-12)
    return total


@pytest.mark.parametrize("name", list(MODULES))
def test_quadrature_matches_scipy_quad_for_every_registered_activation(name: str) -> None:
    act = meanfield.ACTIVATIONS[name]
    for q in QS:
        for f in (lambda x: act.phi(x) ** 2, lambda x: act.dphi(x) ** 2):
            expected = quad_expectation(f, q)
            assert meanfield.gaussian_expectation(f, q) == pytest.approx(
                expected, rel=1e-9, abs=1e-15
            )


@pytest.mark.parametrize("name", list(MODULES))
def test_float64_twins_agree_with_the_torch_modules(name: str) -> None:
    """φ and φ' against the registry's own modules (autograd for φ'), in float64."""
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64, requires_grad=True)
    module = MODULES[name]()
    y = module(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    act = theory.activation_of(module)
    assert act is meanfield.ACTIVATIONS[name]
    xs = x.detach().numpy()
    np.testing.assert_allclose(act.phi(xs), y.detach().numpy(), rtol=1e-12, atol=1e-14)
    kink = xs != 0  # torch's subgradient at 0 is a convention
    np.testing.assert_allclose(act.dphi(xs)[kink], grad.numpy()[kink], rtol=1e-10, atol=1e-14)


def test_tanh_without_bias_at_sigma_w2_1_is_critical_with_q_star_0() -> None:
    tanh = meanfield.ACTIVATIONS["tanh"]
    assert meanfield.fixed_point(tanh, 1.0, 0.0, q0=1.0) == 0.0
    assert meanfield.chi(tanh, 0.0, 1.0) == 1.0  # tanh'(0)² = 1
    assert meanfield.phase(1.0) == "critical"
    assert meanfield.depth_scale(1.0) == math.inf


@pytest.mark.parametrize(("sigma_w2", "sigma_b2"), [(2.0, 0.0), (1.5, 0.1), (1.0, 0.5)])
def test_relu_length_map_is_the_closed_form(sigma_w2: float, sigma_b2: float) -> None:
    relu = meanfield.ACTIVATIONS["relu"]
    for q in (0.01, 1.0, 7.0, 1e3):
        expected = sigma_w2 / 2 * q + sigma_b2
        assert meanfield.length_map(relu, q, sigma_w2, sigma_b2) == pytest.approx(
            expected, rel=1e-13
        )
        assert meanfield.chi(relu, q, sigma_w2) == pytest.approx(sigma_w2 / 2, rel=1e-13)
    if sigma_w2 < 2:  # the geometric series' limit
        expected = sigma_b2 / (1 - sigma_w2 / 2)
        assert meanfield.fixed_point(relu, sigma_w2, sigma_b2) == pytest.approx(expected, rel=1e-9)
    assert meanfield.fixed_point(relu, 2.5, 0.0) == math.inf


def test_phases_and_depth_scale() -> None:
    assert meanfield.phase(0.5) == "ordered"
    assert meanfield.phase(1.5) == "chaotic"
    assert meanfield.phase(1 + meanfield.CRITICAL_TOL / 2) == "critical"
    assert meanfield.depth_scale(math.exp(-0.25)) == pytest.approx(4.0)
    assert meanfield.depth_scale(math.exp(0.5)) == pytest.approx(2.0)


def experiment(model: dict, schemes: list[dict], **extra: object) -> initlab.Experiment:
    spec = {"model": {"name": "mlp", **model}, "schemes": schemes, **extra}
    return initlab.Experiment.from_dict(spec)


def gaussian(name: str, sigma_w2: float, sigma_b2: float, width: int) -> dict:
    weight = {"method": "normal", "std": math.sqrt(sigma_w2 / width)}
    bias = {"method": "normal", "std": math.sqrt(sigma_b2)}
    return {"name": name, "rules": [{"layers": "Linear", "weight": weight, "bias": bias}]}


def test_sigmas_are_read_from_each_schemes_resolved_parameters() -> None:
    width = 64

    def rule(weight: dict, bias: dict | None = None) -> list[dict]:
        return [{"layers": "Linear", "weight": weight, **({"bias": bias} if bias else {})}]

    kaiming = {"method": "kaiming_normal", "nonlinearity": "relu"}
    schemes = [
        {"name": "default", "preset": "pytorch_default"},
        {"name": "kaiming", "rules": rule(kaiming, {"method": "zeros"})},
        {"name": "orthogonal", "rules": rule({"method": "orthogonal", "gain": 1.5})},
        {"name": "uniform", "rules": rule({"method": "uniform", "a": -0.1, "b": 0.1})},
    ]
    given = {"distribution": "uniform", "low": -1.0, "high": 3.0}
    exp = experiment({"depth": 3, "width": width, "bias": True}, schemes, input=given)
    th = theory.predict(exp)
    by = th.layers.groupby("scheme")
    bias_default = 1 / (3 * width)  # U(±1/√fan_in)
    np.testing.assert_allclose(by.get_group("default")["sigma_w2"], 1 / 3, rtol=1e-12)
    np.testing.assert_allclose(by.get_group("default")["sigma_b2"], bias_default, rtol=1e-12)
    np.testing.assert_allclose(by.get_group("kaiming")["sigma_w2"], 2.0, rtol=1e-12)
    np.testing.assert_allclose(by.get_group("kaiming")["sigma_b2"], 0.0)
    np.testing.assert_allclose(by.get_group("orthogonal")["sigma_w2"], 1.5**2, rtol=1e-12)
    np.testing.assert_allclose(by.get_group("uniform")["sigma_w2"], 0.2**2 / 12 * width)
    # q^1 from the input's second moment: E[x²] of U(-1, 3) is (1 - 3 + 9)/3
    first = th.layers[th.layers["depth"] == 1].set_index("scheme")
    assert first.loc["kaiming", "q"] == pytest.approx(2.0 * 7 / 3, rel=1e-12)
    verdicts = th.schemes.set_index("scheme")["verdict"]
    assert "orthogonal weights treated by their variance" in verdicts["orthogonal"]
    assert (th.schemes["reason"] == "").all()


@pytest.mark.parametrize(
    ("model", "scheme", "words"),
    [
        ({"norm": "batchnorm"}, {"preset": "kaiming_normal"}, "norm1 (BatchNorm1d) normalizes"),
        ({}, {"rules": [{"layers": "Linear", "weight": {"method": "eye"}}]}, "fc1.weight: eye"),
        (
            {},
            {"rules": [{"layers": "Linear", "weight": {"method": "normal", "mean": 0.1}}]},
            "fc1.weight: normal(mean=0.1, std=1.0) has a nonzero mean",
        ),
    ],
)
def test_what_the_theory_does_not_cover_is_said_in_one_line(model, scheme, words) -> None:
    exp = experiment({"depth": 3, "width": 8, **model}, [{"name": "s", **scheme}])
    th = theory.predict(exp)
    assert th.layers.empty
    (reason,) = th.schemes["reason"]
    assert words in reason and "\n" not in reason
    assert th.schemes["verdict"].iloc[0] == f"no prediction: {reason}"


def test_a_model_that_is_not_a_plain_chain_has_a_reason() -> None:
    dropout = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Dropout(0.1), nn.Linear(4, 2))
    assert "2 (Dropout) is neither" in theory.linear_chain(dropout)
    assert "Bilinear is not an nn.Sequential" in theory.linear_chain(nn.Bilinear(2, 2, 2))
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    names = [layer.activation and layer.activation.name for layer in theory.linear_chain(model)]
    assert names == ["identity", "relu", None]


# Measured on 30 × 1000 tanh MLPs (batch 128, seed 0, Gaussian weights and biases): the mean
# over layers 10–30 of the measured pre-activation variance against q*, and the geometric mean
# over layers 10–29 of grad_var[l] / grad_var[l + 1] against χ₁:
#   σ_w², σ_b²   phase    q*      measured         χ₁      measured
#   1.5, 0.3     ordered  0.8462  0.8588 (+1.5%)   0.7418  0.7383 (-0.5%)
#   2.0, 0.02    chaotic  0.6612  0.6715 (+1.6%)   1.0803  1.0740 (-0.6%)
#   4.0, 0.3     chaotic  2.5484  2.5831 (+1.4%)   1.2569  1.2496 (-0.6%)
# One layer departs by up to 14% (1000 biases drawn once), so layer by layer only the median
# departure is bounded.
SETTINGS = [(1.5, 0.3, "ordered"), (2.0, 0.02, "chaotic"), (4.0, 0.3, "chaotic")]


def test_the_prediction_matches_30_by_1000_tanh_networks() -> None:
    schemes = [gaussian(f"w{w} b{b}", w, b, 1000) for w, b, _ in SETTINGS]
    model = {"depth": 30, "width": 1000, "activation": "tanh", "bias": True}
    exp = experiment(model, schemes, seeds=[0], input={"batch_size": 128}, bins=4)
    th = theory.predict(exp, initlab.run(exp))
    for (w, b, expected_phase), (_, row) in zip(SETTINGS, th.schemes.iterrows(), strict=True):
        part = th.layers[th.layers["scheme"] == row["scheme"]]
        assert row["phase"] == expected_phase
        measured_q = part["act_var_measured"].iloc[9:30].mean()
        grads = part["grad_var_measured"].to_numpy()
        ratio = math.exp(np.mean(np.log(grads[9:29] / grads[10:30])))
        assert measured_q == pytest.approx(row["q_star"], rel=0.03), (w, b)
        assert ratio == pytest.approx(row["chi1"], rel=0.02), (w, b)
        departure = (part["act_var_measured"] / part["q"] - 1).abs().median()
        assert departure < 0.03, (w, b)


def relu_scheme_row(preset: str) -> pd.Series:
    """theory's scheme row for `preset` on a bias-free 12 × 256 ReLU MLP."""
    model = {"name": "mlp", "depth": 12, "width": 256, "activation": "relu", "bias": False}
    exp = initlab.Experiment.from_dict({"model": model, "schemes": [{"preset": preset}]})
    return theory.predict(exp).schemes.iloc[0]


@pytest.mark.parametrize(
    ("preset", "sigma_w2"), [("pytorch_default", 1 / 3), ("xavier_normal", 1.0)]
)
def test_relu_collapsing_to_q_star_0_has_chi1_the_limit_sigma_w2_over_2(preset, sigma_w2) -> None:
    # relu'(0) is a convention (0); as q -> 0+ E[relu'(sqrt(q) z)^2] = 1/2 for every q > 0.
    row = relu_scheme_row(preset)
    expected = sigma_w2 / 2  # xavier at fan_in = fan_out = 256: sigma_w2 = 2 / 512 * 256
    assert row["q_star"] == 0 and row["phase"] == "ordered"
    assert row["chi1"] == pytest.approx(expected, rel=1e-12)
    assert row["depth_scale"] == pytest.approx(1 / abs(math.log(expected)), rel=1e-12)
    assert f"ξ = {1 / abs(math.log(expected)):.3g} layers" in row["verdict"]


def test_kaiming_on_relu_is_critical_with_an_infinite_depth_scale_in_words() -> None:
    row = relu_scheme_row("kaiming_normal")
    assert row["phase"] == "critical" and row["verdict"].endswith("ξ = ∞")
