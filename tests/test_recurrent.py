"""The `rnn` zoo model and the orthogonal-recurrent preset: an RNN's recurrent weights get a
method of their own through a rule's `param` glob."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initlab
from initlab.outline import meta_model


def _torch_recipe(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The recipe written against torch.nn.init directly, in the model's parameter order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                nn.init.orthogonal_(p, generator=g)
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p, generator=g)
            else:
                nn.init.zeros_(p)
        nn.init.xavier_uniform_(model.head.weight, generator=g)
        nn.init.zeros_(model.head.bias)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_orthogonal_recurrent_is_the_recipe_bit_for_bit(cell: str) -> None:
    spec = {"name": "rnn", "cell": cell, "layers": 2, "hidden": 24, "input_size": 8}
    ours = initlab.build_model(spec)
    initlab.apply_scheme(
        ours, initlab.preset("orthogonal_recurrent"), torch.Generator().manual_seed(3)
    )
    theirs = _torch_recipe(initlab.build_model(spec), 3)
    assert ours.state_dict().keys() == theirs.keys()
    for key, tensor in ours.state_dict().items():
        assert torch.equal(tensor, theirs[key]), key
    w = ours.rnn.weight_hh_l1  # (gates·hidden, hidden): orthonormal columns
    eye = torch.eye(w.shape[1])
    assert torch.allclose(w.T @ w, eye, atol=1e-5)


def test_the_recurrent_rule_is_not_called_shadowed() -> None:
    """Rule 1 (RNN) decides weight_ih and the biases although rule 0 matches the module."""
    model = meta_model({"name": "rnn"})
    found = initlab.scheme_warnings(initlab.preset("orthogonal_recurrent"), model)
    assert [w.check for w in found] == []


def test_rnn_default_std_is_torchs_uniform_bound() -> None:
    """nn.RNNBase.reset_parameters: U(±1/√hidden) for every parameter, std 1/√(3·hidden)."""
    exp = initlab.Experiment.from_dict(
        {
            "model": {"name": "rnn", "cell": "gru", "hidden": 64, "input_size": 16},
            "input": {"batch_size": 4},
            "schemes": [{"name": "d", "preset": "pytorch_default"}],
        }
    )
    params = initlab.run(exp).params
    rnn = params[params["param"].str.startswith("rnn.")]
    assert len(rnn) == 8
    assert rnn["expected_std"].tolist() == pytest.approx([1 / math.sqrt(3 * 64)] * 8)
    assert rnn["std"].to_numpy() == pytest.approx(rnn["expected_std"].to_numpy(), rel=0.1)


def test_the_rnn_runs_and_its_code_is_exact() -> None:
    exp = initlab.Experiment.from_dict(
        {
            "model": {"name": "rnn", "hidden": 32, "seq_len": 6},
            "input": {"batch_size": 8},
            "schemes": [{"name": "o", "preset": "orthogonal_recurrent"}],
        }
    )
    layers = initlab.run(exp).layers
    assert layers["layer"].tolist() == ["rnn", "head"]
    assert layers["grad_var"].notna().all()
    model = initlab.build_model(exp.model)
    namespace: dict = {}
    exec(initlab.to_code(exp.schemes[0], meta_model(exp.model)), namespace)
    namespace["initialize_weights"](model, torch.Generator().manual_seed(5))
    expected = initlab.build_model(exp.model)
    initlab.apply_scheme(expected, exp.schemes[0], torch.Generator().manual_seed(5))
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected.state_dict()[key]), key
