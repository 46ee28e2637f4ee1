"""The Jacobian's spectrum against what is known exactly: an orthogonal linear network is an
isometry; a Gaussian linear one has var(λ)/mean(λ)² ≈ L (free probability); the Lanczos
estimate against the exact extremes; the prediction against the measurement on tanh MLPs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab import spectrum

WIDTH = 128


def linear_network(depth: int, kind: str, seed: int, width: int = WIDTH) -> nn.Sequential:
    """depth square Linear layers without bias, float64, orthogonal or N(0, 1/width)."""
    g = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(width, width, bias=False, dtype=torch.float64) for _ in range(depth)]
    with torch.no_grad():
        for layer in layers:
            if kind == "orthogonal":
                nn.init.orthogonal_(layer.weight, generator=g)
            else:
                nn.init.normal_(layer.weight, std=width**-0.5, generator=g)
    return nn.Sequential(*layers)


def inputs(n: int = 2, width: int = WIDTH) -> torch.Tensor:
    return torch.randn(n, width, dtype=torch.float64, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize("depth", [8, 32])
def test_an_orthogonal_linear_network_is_an_isometry(depth: int) -> None:
    n = 2 if depth == 8 else 1  # two inputs once: vmap over them
    values, summary = spectrum.jacobian_spectrum(linear_network(depth, "orthogonal", 0), inputs(n))
    assert len(values) == n * WIDTH and not values["estimate"].any()
    np.testing.assert_allclose(values["singular_value"], 1.0, atol=1e-6)
    np.testing.assert_allclose(summary["norm_var"], 0.0, atol=1e-6)


# Measured (width 128, seeds 0-3): L = 8: 7.60, 7.76, 7.75, 9.02 (mean 8.03, +0.4%);
# L = 32: 26.3, 27.9, 36.7, 28.8 (mean 29.9, -6.5%: finite width lowers it at depth)
@pytest.mark.parametrize(("depth", "tol"), [(8, 0.1), (32, 0.15)])
def test_a_gaussian_linear_network_has_normalized_variance_about_its_depth(depth, tol) -> None:
    measured = [
        spectrum.jacobian_spectrum(linear_network(depth, "gaussian", seed), inputs(1))[1]
        for seed in range(4)
    ]
    mean = float(np.mean([s["norm_var"].iloc[0] for s in measured]))
    assert mean == pytest.approx(depth, rel=tol)


def test_the_lanczos_estimate_finds_the_extremes_and_is_labelled() -> None:
    model, x = linear_network(8, "gaussian", 0), inputs(1)
    _, exact = spectrum.jacobian_spectrum(model, x)
    g = torch.Generator().manual_seed(123)  # not the weights' seed: probes must be independent
    values, estimate = spectrum.jacobian_spectrum(model, x, g, max_entries=WIDTH * WIDTH - 1)
    assert values["estimate"].all() and estimate["estimate"].all()
    assert list(values["index"]) == [0, 1]  # the estimated largest and smallest only
    assert estimate["s_max"].iloc[0] == pytest.approx(exact["s_max"].iloc[0], rel=1e-8)
    # 16 probes of a heavy-tailed spectrum: the moments are estimates to ~10%
    assert estimate["lambda_mean"].iloc[0] == pytest.approx(exact["lambda_mean"].iloc[0], rel=0.1)
    assert estimate["norm_var"].iloc[0] == pytest.approx(exact["norm_var"].iloc[0], rel=0.2)


def tanh_experiment(schemes: list[dict], **model: object) -> initlab.Experiment:
    spec = {"name": "mlp", "depth": 8, "width": WIDTH, "activation": "tanh", **model}
    return initlab.Experiment.from_dict({"model": spec, "schemes": schemes, "seeds": [0]})


def test_orthogonal_near_criticality_is_well_conditioned_and_gaussian_is_not() -> None:
    """tanh at σ_w² = 1.05 without bias: the prediction beside the measurement, per scheme.
    Measured (width 128, 2 inputs): orthogonal 1.54, 1.45 (predicted 1.43); Gaussian 8.35,
    8.56 (predicted 9.30)."""
    gain = math.sqrt(1.05)
    schemes = [
        {
            "name": "orthogonal",
            "rules": [{"layers": "Linear", "weight": {"method": "orthogonal", "gain": gain}}],
        },
        {
            "name": "gaussian",
            "rules": [
                {"layers": "Linear", "weight": {"method": "normal", "std": gain / WIDTH**0.5}}
            ],
        },
    ]
    sp = spectrum.spectrum_table(tanh_experiment(schemes), inputs=2)
    assert list(sp.values.columns) == spectrum.VALUE_COLUMNS
    assert list(sp.summary.columns) == spectrum.SUMMARY_COLUMNS
    assert len(sp.values) == 2 * 2 * WIDTH
    by = sp.summary.groupby("scheme")
    orth, gauss = by.get_group("orthogonal"), by.get_group("gaussian")
    assert orth["norm_var"].max() < gauss["norm_var"].min() / 4
    for part in (orth, gauss):
        assert part["prediction"].str.startswith("free probability").all()
        np.testing.assert_allclose(part["norm_var"], part["predicted_norm_var"], rtol=0.2)


def test_where_the_prediction_is_not_available_it_says_why() -> None:
    exp = initlab.Experiment.from_dict(
        {
            "model": {"name": "mlp", "widths": [16, 12, 12], "activation": "relu"},
            "schemes": [{"name": "k", "preset": "kaiming_normal"}],
        }
    )
    sp = spectrum.spectrum_table(exp, inputs=1)
    (words,) = sp.summary["prediction"]
    assert words == "not available: fc1 is not square (12 × 16)"
    assert sp.summary["predicted_norm_var"].isna().all()
    assert len(sp.values) == 12  # min(12, 16) singular values


def test_bad_requests_are_refused_naming_the_field() -> None:
    exp = tanh_experiment([{"name": "d", "preset": "pytorch_default"}], depth=2, width=4)
    with pytest.raises(ValueError, match="inputs: must be from 1 to 16"):
        spectrum.spectrum_table(exp, inputs=0)
    tokens = initlab.Experiment.from_dict(
        {
            "model": {
                "name": "transformer",
                "n_layers": 1,
                "d_model": 8,
                "n_heads": 2,
                "vocab_size": 10,
                "seq_len": 4,
            },
            "schemes": [{"name": "g", "preset": "gpt2"}],
        }
    )
    with pytest.raises(ValueError, match="input: token ids have no Jacobian"):
        spectrum.spectrum_table(tokens)
