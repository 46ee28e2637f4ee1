"""A Hugging Face model through the experiment file: presets that depend on the model resolve
against it there too, so a link naming Llama gets Llama's residual projections."""

from __future__ import annotations

import ast
import math

import pytest
import torch

import initlab
from initlab.outline import meta_model

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


def test_code_for_a_linear_rule_on_gpt2_covers_conv1d_without_importing_transformers() -> None:
    exp = initlab.Experiment.from_dict(
        {
            "model": {"name": "hf", "architecture": "gpt2", "n_layer": 2},
            "schemes": [{"name": "x", "rules": [{"layers": "Linear", "weight": "xavier_normal"}]}],
        }
    )
    scheme, model = exp.schemes[0], meta_model(exp.model)
    code = initlab.to_code(scheme, model)
    imported = {
        alias.name
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any("transformers" in name for name in imported), imported
    namespace: dict = {}
    exec(compile(code, "generated", "exec"), namespace)
    ours, theirs = (initlab.build_model(exp.model, seed=0) for _ in range(2))
    namespace["initialize_weights"](ours, torch.Generator().manual_seed(5))
    initlab.apply_scheme(theirs, scheme, torch.Generator().manual_seed(5))
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    c_attn = dict(ours.named_parameters())["transformer.h.0.attn.c_attn.weight"]
    assert c_attn.std().item() == pytest.approx(math.sqrt(2 / sum(c_attn.shape)), rel=0.05)


def test_as_constructed_on_a_hugging_face_model_raises_no_a_sqrt5_warning() -> None:
    model = initlab.build_model(LLAMA, seed=0)
    found = initlab.scheme_warnings(initlab.preset("as_constructed", "silu"), model)
    assert "default_a_sqrt5" not in {w.check for w in found}
    mlp = initlab.build_model({"name": "mlp", "depth": 3, "width": 8}, seed=0)
    found = initlab.scheme_warnings(initlab.preset("pytorch_default", "relu"), mlp)
    assert "default_a_sqrt5" in {w.check for w in found}  # the zoo's default still warns
