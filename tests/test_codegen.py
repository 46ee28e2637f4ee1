"""Code export is exact: the generated `initialize_weights` on a fresh model gives the same
tensors, bit for bit, as `apply_scheme` with an equal generator, and draws the same numbers
from it (the generators end in the same state)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from initlab.cli import main
from initlab.codegen import load_initializer, to_code
from initlab.models import MODELS, build_model, normalize_model_spec
from initlab.presets import PRESETS, preset
from initlab.schemes import Scheme, apply_scheme

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = {
    "mlp": {"name": "mlp", "bias": True, "depth": 3, "width": 16},
    "mlp_gelu": {"name": "mlp", "depth": 2, "width": 16, "activation": "gelu",
                 "norm": "layernorm"},
    "lenet": {"name": "lenet"},
    "cnn": {"name": "cnn", "depth": 2, "channels": 4, "image_size": 8, "batchnorm": True},
    "resnet": {"name": "resnet", "stages": 2, "blocks": 1, "width": 4, "image_size": 8},
    "transformer": {"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
                    "vocab_size": 50, "seq_len": 8},
}  # fmt: skip


def assert_exact(make: Any, scheme: Scheme, seed: int = 7) -> None:
    """apply_scheme and the exported code agree bit for bit on two fresh models."""
    applied, exported = make(), make()
    g_applied, g_exported = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    apply_scheme(applied, scheme, g_applied)
    load_initializer(to_code(scheme))(exported, g_exported)
    a, b = applied.state_dict(), exported.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{scheme.name}: {name} differs"
    assert torch.equal(g_applied.get_state(), g_exported.get_state())


def test_every_zoo_model_is_covered():
    assert {spec["name"] for spec in SMALL.values()} == {
        name for name, entry in MODELS.items() if not entry.custom
    }


@pytest.mark.parametrize("model", SMALL)
@pytest.mark.parametrize("name", PRESETS)
def test_to_code_is_exact_for_every_preset_on_every_zoo_model(name, model):
    spec = normalize_model_spec(SMALL[model])
    scheme = preset(name, MODELS[spec["name"]].activation(spec))
    assert_exact(lambda: build_model(spec, seed=3), scheme)


def test_to_code_is_exact_for_gpt2_on_a_hugging_face_style_model(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    from initlab_testzoo.hf_gpt2 import gpt2_lm

    def make() -> nn.Module:
        torch.manual_seed(0)
        return gpt2_lm(n_layer=2, n_embd=16, n_head=2)

    assert_exact(make, preset("gpt2", "gelu"))
    assert 'any(c.__name__ == "Conv1D" for c in type(m).__mro__)' in to_code(preset("gpt2"))


def test_to_code_is_exact_for_counted_scales_on_weights_and_biases():
    scheme = Scheme.from_dict({"name": "counted", "rules": [
        {"layers": "Linear", "name": "fc2",
         "weight": {"method": "kaiming_normal", "nonlinearity": "gelu", "scale": "1/sqrt(matches)"},
         "bias": {"method": "normal", "std": 0.1, "scale": "1/sqrt(matches)"}},
        {"layers": "Linear", "weight": {"method": "xavier_uniform", "scale": "1/sqrt(matches)"},
         "bias": {"method": "uniform", "scale": 0.5}},
    ]})  # fmt: skip
    assert_exact(
        lambda: build_model({"name": "mlp", "bias": True, "depth": 3, "width": 16}, seed=0), scheme
    )


def test_without_a_generator_the_global_stream_is_used_the_same_way():
    scheme = preset("gpt2", "gelu")
    spec = SMALL["transformer"]
    applied, exported = build_model(spec, seed=1), build_model(spec, seed=1)
    torch.manual_seed(5)
    apply_scheme(applied, scheme)
    torch.manual_seed(5)
    load_initializer(to_code(scheme))(exported)
    for (name, a), b in zip(applied.state_dict().items(), exported.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name", PRESETS)
def test_exported_code_is_plain_pytorch(name):
    code = to_code(preset(name))
    imports = [line for line in code.splitlines() if line.startswith(("import ", "from "))]
    assert all("initlab" not in line for line in imports)
    assert ("matches = {" in code) == (name == "gpt2")  # counts only where a scale needs them
    compile(code, "<generated>", "exec")


def test_cli_code_prints_the_selected_scheme(tmp_path, capsys):
    exp = {"model": SMALL["transformer"],
           "schemes": [{"name": "GPT-2", "preset": "gpt2"}, {"preset": "zeros"}]}  # fmt: skip
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp), encoding="utf-8")
    assert main(["code", str(path), "--scheme", "GPT-2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Weight initialization scheme 'GPT-2' (preset gpt2)")
    assert out.count("def initialize_weights") == 1
    assert_exact(lambda: build_model(SMALL["transformer"], seed=0), preset("gpt2", "gelu"))
    exported = build_model(SMALL["transformer"], seed=0)
    load_initializer(out)(exported, torch.Generator().manual_seed(0))
    residual = 0.02 / (2 * 2) ** 0.5
    assert exported.h[0].mlp.c_proj.weight.std().item() == pytest.approx(residual, rel=0.2)
    assert main(["code", str(path), "--scheme", "nope"]) == 2
    assert "--scheme: no scheme named 'nope'" in capsys.readouterr().err


def test_several_schemes_export_as_one_valid_module_bit_for_bit(tmp_path, capsys):
    spec = {"name": "mlp", "depth": 3, "width": 8, "bias": True}
    names = ["PyTorch default", "Kaiming normal", "Kaiming normal!", "1 GPT-2"]
    keys = ["pytorch_default", "kaiming_normal", "xavier_normal", "gpt2"]
    exp = {
        "model": spec,
        "schemes": [{"name": n, "preset": k} for n, k in zip(names, keys, strict=True)],
    }
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp), encoding="utf-8")
    assert main(["code", str(path)]) == 0
    code = capsys.readouterr().out
    defs = [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    slugs = ["pytorch_default", "kaiming_normal", "kaiming_normal_2", "scheme_1_gpt_2"]
    assert [d for d in defs if d.startswith("initialize_")] == [f"initialize_{s}" for s in slugs]
    namespace: dict = {}
    exec(compile(code, "<module>", "exec"), namespace)
    for slug_, key in zip(slugs, keys, strict=True):
        want, got = build_model(spec, seed=0), build_model(spec, seed=0)
        apply_scheme(want, preset(key), torch.Generator().manual_seed(3))
        namespace[f"initialize_{slug_}"](got, torch.Generator().manual_seed(3))
        for (name, a), (_, b) in zip(
            want.state_dict().items(), got.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), (slug_, name)
