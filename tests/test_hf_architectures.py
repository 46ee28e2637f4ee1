"""Hugging Face architectures: built offline by name, probed, every preset applied or refused,
`as_constructed` bit for bit plain transformers, and the residual preset's stds against their
closed forms."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import transformers

import initlab
from initlab.architectures import ARCHITECTURES
from initlab.models import MODELS, build_model, normalize_model_spec
from initlab.outline import meta_model
from initlab.presets import PRESETS, preset

# Smaller than the defaults, so every architecture builds and probes in milliseconds.
TINY = {
    "gpt2": {
        "n_layer": 2,
        "n_embd": 32,
        "n_head": 2,
        "vocab_size": 64,
        "n_positions": 16,
        "seq_len": 8,
    },
    "llama": {
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 64,
        "max_position_embeddings": 16,
        "seq_len": 8,
    },
    "bert": {
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 64,
        "max_position_embeddings": 16,
        "seq_len": 8,
    },
    "vit": {
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 16,
        "patch_size": 4,
    },
    "resnet": {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "image_size": 16},
}


def spec(arch: str, **changes: object) -> dict:
    return normalize_model_spec({"name": "hf", "architecture": arch, **TINY[arch], **changes})


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def sample_input(s: dict, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    shape = (batch, *MODELS["hf"].input_shape(s))
    vocab = MODELS["hf"].tokens(s)
    if vocab is not None:
        return torch.randint(0, vocab, shape, generator=g)
    return torch.randn(shape, generator=g)


def test_the_registry_has_the_promised_architectures():
    assert set(ARCHITECTURES) >= {"gpt2", "llama", "bert", "vit", "resnet"}
    for arch in ARCHITECTURES.values():
        assert hasattr(transformers, arch.config_class) and hasattr(transformers, arch.model_class)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_builds_offline_and_probes_both_ways(arch, no_network):
    s = spec(arch)
    model = build_model(s, seed=0)
    assert isinstance(model, getattr(transformers, ARCHITECTURES[arch].model_class))
    result = initlab.probe(
        model, sample_input(s), backward=True, generator=torch.Generator().manual_seed(1)
    )
    layers = result.layers
    assert (layers["role"] == "block").sum() >= 2, "the residual stream is observed"
    assert layers["act_var"].notna().all() and layers["grad_var"].notna().any()
    outline = meta_model(s)
    assert all(p.device.type == "meta" for p in outline.parameters())
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert {n: p.shape for n, p in outline.named_parameters()} == shapes


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_preset_applies_or_is_refused_with_a_reason(arch, no_network):
    s = spec(arch)
    activation = MODELS["hf"].activation(s)
    for name in PRESETS:
        try:
            scheme = preset(name, activation, s)
        except ValueError as exc:
            assert (arch, name) == ("resnet", "residual_scaled"), str(exc)
            assert "no initializer_range" in str(exc) and "zero_init_residual" in str(exc)
            continue
        model = build_model(s, seed=0)
        table = initlab.apply_scheme(model, scheme, torch.Generator().manual_seed(0))
        assert len(table) == len(list(model.parameters()))
        assert all(torch.isfinite(p).all() for p in model.parameters()), name


PLAIN = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_layer=2,
            n_embd=32,
            n_head=2,
            vocab_size=64,
            n_positions=16,
            bos_token_id=0,
            eos_token_id=0,
        )
    ),
    "llama": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=64,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=0,
        )
    ),
    "bert": lambda: transformers.BertForMaskedLM(
        transformers.BertConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=64,
            max_position_embeddings=16,
        )
    ),
    "vit": lambda: transformers.ViTForImageClassification(
        transformers.ViTConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=16,
            patch_size=4,
            num_labels=10,
        )
    ),
    "resnet": lambda: transformers.ResNetForImageClassification(
        transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10
        )
    ),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_as_constructed_is_plain_transformers_bit_for_bit(arch):
    seed = 1234
    ours = build_model(spec(arch), seed=seed)
    initlab.apply_scheme(ours, preset("as_constructed"), torch.Generator().manual_seed(0))
    torch.manual_seed(seed)
    theirs = PLAIN[arch]()
    mine, plain = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(plain)
    for key, tensor in plain.items():
        assert torch.equal(mine[key], tensor), key
    other = build_model(spec(arch), seed=seed + 1).state_dict()
    assert any(not torch.equal(other[key], tensor) for key, tensor in plain.items())


def pooled_std(tensors: list[torch.Tensor]) -> tuple[float, int]:
    flat = torch.cat([t.detach().flatten().double() for t in tensors])
    return float(flat.pow(2).mean().sqrt()), flat.numel()


def assert_std(tensors: list[torch.Tensor], expected: float) -> None:
    """Measured root mean square (mean 0) within 6 standard errors: for a normal sample of n
    values the estimate's relative standard error is 1/sqrt(2n)."""
    measured, n = pooled_std(tensors)
    assert abs(measured / expected - 1) < 6 / math.sqrt(2 * n), (measured, expected, n)


RESIDUAL_CASES = {
    "gpt2": ("n_layer", ("attn.c_proj", "mlp.c_proj"), ("attn.c_attn", "mlp.c_fc")),
    "llama": (
        "num_hidden_layers",
        ("self_attn.o_proj", "mlp.down_proj"),
        ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj", "mlp.gate_proj"),
    ),
}


@pytest.mark.parametrize("arch", list(RESIDUAL_CASES))
def test_the_residual_preset_scales_the_projections_by_one_over_sqrt_2n(arch):
    layers_field, residual, others = RESIDUAL_CASES[arch]
    n, init_range = 6, 0.05  # not GPT-2's 0.02, so every std below is told apart
    s = spec(arch, **{layers_field: n, "initializer_range": init_range})
    model = build_model(s, seed=0)
    initlab.apply_scheme(
        model, preset("residual_scaled", "gelu", s), torch.Generator().manual_seed(0)
    )
    blocks = model.transformer.h if arch == "gpt2" else model.model.layers

    def weights(paths: tuple[str, ...]) -> list[torch.Tensor]:
        return [block.get_submodule(p).weight for block in blocks for p in paths]

    assert_std(weights(residual), init_range / math.sqrt(2 * n))
    assert_std(weights(others), init_range)


def test_pytorch_default_on_llama_is_the_modules_reset_parameters():
    s = spec("llama")
    model = build_model(s, seed=0)
    initlab.apply_scheme(
        model, preset("pytorch_default", "silu", s), torch.Generator().manual_seed(0)
    )
    q = [block.self_attn.q_proj.weight for block in model.model.layers]
    assert_std(q, 1 / math.sqrt(3 * q[0].shape[1]))  # kaiming_uniform(a=√5): U(±1/√fan_in)
    assert_std([model.model.embed_tokens.weight], 1.0)  # nn.Embedding: N(0, 1)
    # as constructed, Llama's own init: N(0, initializer_range)
    assert_std([b.self_attn.q_proj.weight for b in build_model(s, seed=0).model.layers], 0.02)


def test_pytorch_default_biases_follow_each_layers_fan_in():
    s = spec("bert")
    model = build_model(s, seed=0)
    initlab.apply_scheme(
        model, preset("pytorch_default", "gelu", s), torch.Generator().manual_seed(0)
    )
    for name, module in model.named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and module.bias is not None
            and name != "cls.predictions.decoder"
        ):
            bound = 1 / math.sqrt(module.weight.shape[1])
            assert module.bias.abs().max() <= bound and module.bias.abs().max() > bound / 4, name


def test_families_cover_what_the_models_contain():
    gpt2, llama = build_model(spec("gpt2"), seed=0), build_model(spec("llama"), seed=0)
    slots = initlab.layers.parameter_slots(gpt2)
    assert "Conv1D" in slots["Linear"]["classes"] and slots["Linear"]["weight"] == {2}
    llama_slots = initlab.layers.parameter_slots(llama)
    assert "LlamaRMSNorm" in llama_slots["RMSNorm"]["classes"]
    assert {"Embedding", "Linear"} <= set(llama_slots)
    rows = initlab.probe(llama, sample_input(spec("llama")), backward=False).layers
    roles = dict(zip(rows["type"], rows["role"], strict=False))
    assert roles["LlamaRMSNorm"] == "norm" and roles["SiLUActivation"] == "activation"


def test_specs_are_checked_against_the_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'gpt3'; choose one of: gpt2, llama"):
        normalize_model_spec({"name": "hf", "architecture": "gpt3"})
    with pytest.raises(ValueError, match="unknown parameter 'hidden_size' for architecture 'gpt2'"):
        normalize_model_spec({"name": "hf", "architecture": "gpt2", "hidden_size": 8})
    with pytest.raises(ValueError, match=r"model\.n_head: must divide n_embd"):
        normalize_model_spec({"name": "hf", "n_head": 5})
    with pytest.raises(ValueError, match=r"model\.depths: one depth per stage"):
        normalize_model_spec({"name": "hf", "architecture": "resnet", "depths": [1]})
    assert normalize_model_spec({"name": "hf"})["architecture"] == "gpt2"


def test_the_schema_accepts_an_hf_model_and_refuses_an_unknown_field():
    from jsonschema import Draft202012Validator

    from initlab.fileformat import experiment_schema

    validator = Draft202012Validator(experiment_schema())
    base = {"input": {"batch_size": 2}, "schemes": [{"preset": "as_constructed"}]}
    ok = [{"name": "hf", "architecture": a, **TINY[a]} for a in TINY] + [{"name": "hf"}]
    for model in ok:
        assert not list(validator.iter_errors({**base, "model": model})), model
        initlab.Experiment.from_dict({**base, "model": model})
    bad = {**base, "model": {"name": "hf", "architecture": "llama", "n_layer": 2}}
    assert list(validator.iter_errors(bad))
    vit_tokens = {
        "model": {"name": "hf", "architecture": "vit"},
        "input": {"distribution": "tokens"},
        "schemes": base["schemes"],
    }
    assert list(validator.iter_errors(vit_tokens))
