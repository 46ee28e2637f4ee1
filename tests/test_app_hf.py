"""Llama on the page: picked by name with its config fields as widgets, compared under its
own init, PyTorch's default and the residual-scaled preset on its residual stream."""

from __future__ import annotations

from test_app import errors, experiment, run_app

from initlab.ui.urlstate import encode

LLAMA = {
    "name": "hf",
    "architecture": "llama",
    "num_hidden_layers": 3,
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 64,
    "vocab_size": 100,
    "max_position_embeddings": 16,
    "seq_len": 8,
}
SCHEMES = [{"preset": p} for p in ("as_constructed", "pytorch_default", "residual_scaled")]


def test_llama_from_a_link_shows_its_fields_and_the_three_presets() -> None:
    d = {"model": LLAMA, "input": {"batch_size": 4}, "seeds": [0], "schemes": SCHEMES}
    at = run_app(query={"experiment": encode(d)})
    assert errors(at) == []
    assert at.selectbox(key="model.hf.architecture").value == "llama"
    assert at.number_input(key="model.hf.llama.num_hidden_layers").value == 3
    assert at.number_input(key="model.hf.llama.hidden_size").value == 32
    got = experiment(at)
    assert got["model"]["architecture"] == "llama" and got["model"]["hidden_size"] == 32
    assert len(got["schemes"]) == 3
    # the verdicts speak of the residual stream, the blocks' output
    text = " ".join(m.value for m in at.markdown)
    assert "As constructed" in text and "Residual" in text


def test_editing_a_llama_field_changes_the_experiment() -> None:
    d = {"model": LLAMA, "input": {"batch_size": 4}, "seeds": [0], "schemes": SCHEMES[:1]}
    at = run_app(query={"experiment": encode(d)})
    at.number_input(key="model.hf.llama.num_hidden_layers").set_value(2).run()
    assert errors(at) == []
    assert experiment(at)["model"]["num_hidden_layers"] == 2
