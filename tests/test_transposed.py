"""Hugging Face's Conv1D stores its weight as (in, out): fan-based methods must read fan_in from
dim 0 there, and the export must do the same. Checked against the closed form and against the
signal itself: Kaiming fan_in on a stack of Conv1D keeps the variance of x @ W at 2× its input's."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

import initlab
from initlab.codegen import load_initializer, to_code
from initlab.schemes import Scheme, apply_scheme

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent / "fixtures"))
from initlab_testzoo.hf_gpt2 import Conv1D

IN, OUT = 512, 128  # unequal, so a swapped fan is a factor of 2 in the std


def stack() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(Conv1D(OUT, IN), nn.ReLU(), Conv1D(OUT, OUT))


def scheme(weight: dict) -> Scheme:
    return Scheme.from_dict({"name": "t", "rules": [{"layers": "Conv1D", "weight": weight}]})


@pytest.mark.parametrize(
    ("weight", "std"),
    [
        ({"method": "kaiming_normal", "nonlinearity": "relu"}, math.sqrt(2 / IN)),
        ({"method": "kaiming_normal", "nonlinearity": "relu", "mode": "fan_out"},
         math.sqrt(2 / OUT)),
        ({"method": "kaiming_uniform", "nonlinearity": "gelu"},
         initlab.gains.estimated_gain("gelu") / math.sqrt(IN)),
        ({"method": "lecun_normal"}, 1 / math.sqrt(IN)),
        ({"method": "variance_scaling", "mode": "fan_out", "distribution": "normal"},
         1 / math.sqrt(OUT)),
    ],
)  # fmt: skip
def test_fans_of_an_in_out_weight_come_from_dim_0(weight: dict, std: float) -> None:
    model = stack()
    table = apply_scheme(model, scheme(weight), torch.Generator().manual_seed(1))
    row = table.set_index("param").loc["0.weight"]
    assert (row["fan_in"], row["fan_out"]) == (IN, OUT)
    assert row["expected_std"] == pytest.approx(std, rel=1e-12)
    assert model[0].weight.std().item() == pytest.approx(std, rel=0.03)


def test_kaiming_keeps_the_signal_of_a_conv1d_stack() -> None:
    model = stack()
    apply_scheme(model, scheme({"method": "kaiming_normal", "nonlinearity": "relu"}),
                  torch.Generator().manual_seed(2))  # fmt: skip
    x = torch.randn(4096, IN, generator=torch.Generator().manual_seed(3))
    assert model[0](x).var().item() == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("method", ["kaiming_normal", "kaiming_uniform", "lecun_uniform"])
@pytest.mark.parametrize("nonlinearity", ["relu", "silu"])
def test_export_is_exact_on_conv1d(method: str, nonlinearity: str) -> None:
    spec = {"method": method} | ({"nonlinearity": nonlinearity} if "kaiming" in method else {})
    s = scheme(spec)
    a, b = stack(), stack()
    apply_scheme(a, s, torch.Generator().manual_seed(4))
    load_initializer(to_code(s))(b, torch.Generator().manual_seed(4))
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
