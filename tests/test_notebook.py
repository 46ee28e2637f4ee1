"""The notebook API: a model class defined here, with no import path, compared and plotted."""

from __future__ import annotations

import math

import torch
from torch import nn

import initlab
from initlab import plots
from initlab.experiment import HISTS_OUT, LAYERS_OUT, PARAMS_OUT


def test_compare_runs_a_model_defined_in_the_test_and_its_results_plot():
    class Tiny(nn.Module):  # local: no module path could import it
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.tanh(self.fc1(x)))

    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    res = initlab.compare(Tiny, ["as_constructed", "kaiming_normal"], x, seeds=[0, 1])
    assert list(res.layers.columns) == LAYERS_OUT and list(res.params.columns) == PARAMS_OUT
    assert list(res.histograms.columns) == HISTS_OUT
    assert set(res.layers["scheme"]) == {"As constructed", "Kaiming normal"}
    assert set(res.layers["seed"]) == {0, 1}
    kaiming = res.params[(res.params["scheme"] == "Kaiming normal") & (res.params["seed"] == 0)]
    fc1 = kaiming.set_index("param").loc["fc1.weight"]
    assert math.isclose(fc1["expected_std"], math.sqrt(2 / 16))  # kaiming relu gain, fan_in 16
    assert abs(fc1["std"] / fc1["expected_std"] - 1) < 6 / math.sqrt(2 * 32 * 16)
    fig = plots.variance_by_depth(res, role="weight")
    assert {t.name for t in fig.data if t.showlegend is not False} >= {"As constructed"}
    assert plots.histogram_grid(res, "weight").data


def test_each_seed_builds_the_same_model_for_every_scheme_and_a_new_one_per_seed():
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    res = initlab.compare(
        lambda: nn.Linear(4, 4), ["as_constructed", "pytorch_default"], x, seeds=[0, 1]
    )
    std = {key: list(part["std"]) for key, part in res.params.groupby(["scheme", "seed"])}
    assert std[("As constructed", 0)] == std[("PyTorch default", 0)]
    assert std[("As constructed", 0)] != std[("As constructed", 1)]


def test_probe_results_plot_without_scheme_or_seed_columns():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    result = initlab.probe(model, x, backward=True, generator=torch.Generator().manual_seed(1))
    assert "scheme" not in result.layers.columns
    for data in (result, result.layers):
        fig = plots.variance_by_depth(data)
        assert len(fig.data) >= 1 and "no layers" not in str(fig.layout.annotations)
        assert plots.grad_variance_by_depth(data).data
    assert plots.histogram_grid(result, "activation").data
    assert not plots.histogram_moments(result).empty
