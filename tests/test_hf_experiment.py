"""A Hugging Face model through the experiment file: presets that depend on the model resolve
against it there too, so a link naming Llama gets Llama's residual projections."""

from __future__ import annotations

import math

import pytest

import initlab

LLAMA = {"name": "hf", "architecture": "llama", "num_hidden_layers": 4}


def test_residual_scaled_in_an_experiment_scales_llamas_own_projections() -> None:
    exp = initlab.Experiment.from_dict(
        {"model": LLAMA, "seeds": [0], "schemes": [{"preset": "residual_scaled"}]}
    )
    params = initlab.run(exp).params.set_index("param")
    expected = 0.02 / math.sqrt(2 * 4)
    for name in ("model.layers.0.self_attn.o_proj.weight", "model.layers.3.mlp.down_proj.weight"):
        n = math.prod(int(v) for v in str(params.loc[name, "shape"]).strip("()[]").split(",") if v)
        # the sample std of n normal draws is within 6 standard errors of sigma
        tolerance = 6 * expected / math.sqrt(2 * n)
        assert params.loc[name, "std"] == pytest.approx(expected, abs=tolerance)
    q = params.loc["model.layers.0.self_attn.q_proj.weight", "std"]
    assert q == pytest.approx(0.02, rel=0.1)  # as constructed: initializer_range


def test_pytorch_default_in_an_experiment_is_not_as_constructed_on_hf() -> None:
    exp = initlab.Experiment.from_dict(
        {"model": LLAMA, "schemes": [{"preset": "pytorch_default"}, {"preset": "as_constructed"}]}
    )
    assert exp.schemes[0].rules and not exp.schemes[1].rules
    again = initlab.Experiment.from_dict(exp.to_dict())
    assert again.schemes == exp.schemes
