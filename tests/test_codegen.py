"""Code export is exact: the generated `initialize_weights` on a fresh model gives the same
tensors, bit for bit, as `apply_scheme` with an equal generator, and draws the same numbers
from it (the generators end in the same state)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from initlab.cli import main
from initlab.codegen import ESTIMATED, _gain_expr, load_initializer, to_code, to_module
from initlab.gains import TORCH_GAINS, parse_gain, resolve_gain
from initlab.models import MODELS, build_model, normalize_model_spec
from initlab.presets import PRESETS, preset
from initlab.schemes import Scheme, apply_scheme

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = {
    "mlp": {"name": "mlp", "bias": True, "depth": 3, "width": 16},
    "mlp_gelu": {"name": "mlp", "depth": 2, "width": 16, "activation": "gelu", "norm": "layernorm"},
    "lenet": {"name": "lenet"},
    "cnn": {"name": "cnn", "depth": 2, "channels": 4, "image_size": 8, "batchnorm": True},
    "resnet": {"name": "resnet", "stages": 2, "blocks": 1, "width": 4, "image_size": 8},
    "transformer": {
        "name": "transformer",
        "n_layers": 2,
        "d_model": 16,
        "n_heads": 2,
        "vocab_size": 50,
        "seq_len": 8,
    },
    "rnn": {"name": "rnn", "cell": "gru", "layers": 2, "hidden": 8, "input_size": 4},
    "hf": {
        "name": "hf",
        "architecture": "gpt2",
        "n_layer": 2,
        "n_embd": 16,
        "n_head": 2,
        "vocab_size": 50,
        "n_positions": 16,
        "seq_len": 8,
    },
}


def assert_exact(make: Any, scheme: Scheme, seed: int = 7, with_model: bool = False) -> str:
    """apply_scheme and the exported code (for `make()`'s model, or for any model) agree bit
    for bit on two fresh models; returns the code."""
    applied, exported = make(), make()
    g_applied, g_exported = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    apply_scheme(applied, scheme, g_applied)
    code = to_code(scheme, make() if with_model else None)
    load_initializer(code)(exported, g_exported)
    a, b = applied.state_dict(), exported.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{scheme.name}: {name} differs"
    assert torch.equal(g_applied.get_state(), g_exported.get_state())
    return code


def test_every_zoo_model_is_covered():
    assert {spec["name"] for spec in SMALL.values()} == {
        name for name, entry in MODELS.items() if not entry.custom
    }


@pytest.mark.parametrize("with_model", [False, True], ids=["any_model", "this_model"])
@pytest.mark.parametrize("model", SMALL)
@pytest.mark.parametrize("name", PRESETS)
def test_to_code_is_exact_for_every_preset_on_every_zoo_model(name, model, with_model):
    spec = normalize_model_spec(SMALL[model])
    scheme = preset(name, MODELS[spec["name"]].activation(spec))
    assert_exact(lambda: build_model(spec, seed=3), scheme, with_model=with_model)


def test_to_code_is_exact_for_gpt2_on_a_hugging_face_style_model(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    from initlab_testzoo.hf_gpt2 import gpt2_lm

    def make() -> nn.Module:
        torch.manual_seed(0)
        return gpt2_lm(n_layer=2, n_embd=16, n_head=2)

    assert_exact(make, preset("gpt2", "gelu"))
    code = assert_exact(make, preset("gpt2", "gelu"), with_model=True)
    assert "Conv1D" in code  # the model's own class, tested by name: no transformers import
    anywhere = to_code(preset("gpt2"))  # for any model: Linear's members known by name too
    assert "_is_a(" in anywhere and '"Conv1D"' in anywhere and "import transformers" not in anywhere


def test_to_code_is_exact_for_counted_scales_on_weights_and_biases():
    scheme = Scheme.from_dict(
        {
            "name": "counted",
            "rules": [
                {
                    "layers": "Linear",
                    "name": "fc2",
                    "weight": {
                        "method": "kaiming_normal",
                        "nonlinearity": "gelu",
                        "scale": "1/sqrt(matches)",
                    },
                    "bias": {"method": "normal", "std": 0.1, "scale": "1/sqrt(matches)"},
                },
                {
                    "layers": "Linear",
                    "weight": {"method": "xavier_uniform", "scale": "1/sqrt(matches)"},
                    "bias": {"method": "uniform", "scale": 0.5},
                },
            ],
        }
    )
    for with_model in (False, True):
        assert_exact(
            lambda: build_model({"name": "mlp", "bias": True, "depth": 3, "width": 16}, seed=0),
            scheme,
            with_model=with_model,
        )


def test_without_a_generator_the_global_stream_is_used_the_same_way():
    scheme = preset("gpt2", "gelu")
    spec = SMALL["transformer"]
    applied, exported = build_model(spec, seed=1), build_model(spec, seed=1)
    torch.manual_seed(5)
    apply_scheme(applied, scheme)
    torch.manual_seed(5)
    load_initializer(to_code(scheme))(exported)
    for (name, a), b in zip(
        applied.state_dict().items(), exported.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name", PRESETS)
def test_exported_code_is_plain_pytorch(name):
    code = to_code(preset(name))
    imports = [line for line in code.splitlines() if line.startswith(("import ", "from "))]
    assert all("initlab" not in line for line in imports)
    # counts only where a scale needs them
    assert ("matches = {" in code) == (name in ("gpt2", "residual_scaled"))
    compile(code, "<generated>", "exec")


def test_cli_code_prints_the_selected_scheme(tmp_path, capsys):
    exp = {
        "model": SMALL["transformer"],
        "schemes": [{"name": "GPT-2", "preset": "gpt2"}, {"preset": "zeros"}],
    }
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


def _scheme(*rules: dict) -> Scheme:
    return Scheme.from_dict({"name": "s", "rules": list(rules)})


class Tied(nn.Module):
    """A second Linear whose weight is the first's but whose bias is its own."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight


class Extra(nn.Linear):
    """A Linear subclass with one more weight-like parameter: it must walk its parameters."""

    def __init__(self) -> None:
        super().__init__(4, 4)
        self.weight_scale = nn.Parameter(torch.ones(4, 4))


RNN_AND_ATTENTION = _scheme(
    {"layers": "RNN", "weight": "orthogonal", "bias": "zeros"},
    {"layers": "MultiheadAttention", "weight": "xavier_uniform", "bias": "zeros"},
    {"layers": "Linear", "weight": {"method": "kaiming_uniform", "nonlinearity": "gelu"}},
)


@pytest.mark.parametrize(
    ("make", "scheme"),
    [
        (
            lambda: nn.Sequential(
                nn.LSTM(4, 8, num_layers=2), nn.MultiheadAttention(8, 2), nn.Linear(8, 3)
            ),
            RNN_AND_ATTENTION,
        ),
        (Tied, _scheme({"layers": "Linear", "weight": "xavier_normal", "bias": "ones"})),
        (
            lambda: nn.Sequential(Extra(), nn.Linear(4, 4)),
            _scheme({"layers": "Linear", "weight": {"method": "normal", "std": 0.5}}),
        ),
        (
            lambda: nn.Sequential(nn.BatchNorm1d(4, affine=False), nn.BatchNorm1d(4)),
            _scheme({"layers": "BatchNorm", "weight": "zeros", "bias": "ones"}),
        ),
    ],
    ids=["rnn_attention", "partly_tied", "extra_parameter", "norm_without_affine"],
)
def test_walking_tied_and_optional_parameters_stay_exact(make, scheme):
    for with_model in (False, True):
        assert_exact(lambda: (torch.manual_seed(0), make())[1], scheme, with_model=with_model)


def test_a_partly_tied_module_walks_its_untied_parameters():
    code = to_code(_scheme({"layers": "Linear", "weight": "zeros", "bias": "ones"}), Tied())
    assert "_untied(m, seen)" in code and "m.weight" not in code
    whole = to_code(preset("gpt2"), build_model(SMALL["transformer"]))
    assert 'if name == "lm_head":' in whole and "_untied" not in whole  # all of it is tied


def test_a_default_rule_still_shadows_later_rules_without_a_pass():
    scheme = _scheme(
        {"layers": "BatchNorm", "name": "*.bn2"},  # keeps the default: must stay out of rule 1
        {"layers": "BatchNorm", "weight": "zeros", "bias": "zeros"},
        {"layers": "Conv", "weight": "dirac"},
    )
    make = lambda: build_model(SMALL["resnet"], seed=0)  # noqa: E731
    for with_model in (False, True):
        code = assert_exact(make, scheme, with_model=with_model)
        assert "continue" in code and "pass" not in code
    lone = to_code(_scheme({"layers": "Linear"}, {"layers": "Conv", "weight": "zeros"}), make())
    assert "continue" not in lone and "nn.Linear" not in lone  # nothing later takes a Linear


def test_with_a_model_only_its_rules_and_classes_are_written():
    code = to_code(preset("recipe"), build_model(SMALL["lenet"]))
    assert "#   rule 1 (BatchNorm2d): matches no layer of this model, left out" in code
    assert "BatchNorm" not in code.split("import torch", 1)[1]
    resnet = to_code(preset("kaiming_normal"), build_model(SMALL["resnet"]))
    assert "nn.BatchNorm2d" in resnet and "nn.BatchNorm1d" not in resnet
    assert "rule 2 (ConvTranspose): matches no layer of this model, left out" in resnet


@pytest.mark.parametrize("name", PRESETS)
def test_exported_code_uses_no_private_torch_names(name):
    for model in (None, build_model(SMALL["resnet"]), build_model(SMALL["mlp_gelu"])):
        code = to_code(preset(name, "gelu"), model)
        assert "nn.init._" not in code and "_BatchNorm" not in code and "modules." not in code


@pytest.mark.parametrize("gain", [*TORCH_GAINS, "leaky_relu(0.2)", *ESTIMATED])
def test_a_named_gain_is_written_as_calculate_gain_only_where_it_is_the_same_float(gain):
    value = resolve_gain(parse_gain(gain))
    text = _gain_expr(parse_gain(gain), value)
    assert text.startswith("nn.init.calculate_gain(") == (gain not in ESTIMATED)
    got = eval(text, {"nn": nn})  # the expression the export writes, evaluated
    assert type(got) is type(value) and got == value


def test_a_counted_scale_says_what_it_counts():
    code = to_code(preset("gpt2"), build_model(SMALL["transformer"]))  # n_layers = 2
    header = code.split("from __future__", 1)[0].replace("\n#    ", "")
    assert "1/√(2·n_layers) in GPT-2; 4 in this model" in header
    assert "1/sqrt(matches)" not in code


def _ruff(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--isolated", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_exported_code_is_ruff_clean_at_ruffs_defaults(tmp_path):
    pytest.importorskip("ruff")
    for key in PRESETS:
        for model in (None, "lenet", "transformer", "resnet", "mlp_gelu"):
            built = build_model(SMALL[model], seed=0) if model else None
            code = to_code(preset(key, "gelu"), built)
            (tmp_path / f"{key}_{model}.py").write_text(code, encoding="utf-8")
    sparse = _scheme({"layers": "Linear", "weight": {"method": "sparse", "sparsity": 0.5}})
    (tmp_path / "mixed.py").write_text(to_module([preset("gpt2"), sparse, preset("lecun_normal")]))
    (tmp_path / "rnn.py").write_text(to_code(RNN_AND_ATTENTION))
    lsuv = _scheme({"layers": "Linear", "weight": {"method": "lsuv", "tol": 0.05}})
    for model in (None, "lenet", "transformer"):
        built = build_model(SMALL[model], seed=0) if model else None
        (tmp_path / f"lsuv_{model}.py").write_text(to_code(lsuv, built))
    (tmp_path / "lsuv_mixed.py").write_text(to_module([lsuv, preset("kaiming_normal")]))
    formatted = _ruff(tmp_path, "format", "--check")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    checked = _ruff(tmp_path, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    functions = [f.read_text().split("@torch.no_grad()", 1)[1] for f in tmp_path.glob("*.py")]
    assert max(len(line) for text in functions for line in text.splitlines()) <= 88


def test_a_param_glob_leaves_the_other_parameters_to_later_rules_in_the_export():
    scheme = _scheme(
        {"layers": "RNN", "param": "weight_hh_l*", "weight": "orthogonal"},
        {"layers": "RNN", "weight": "xavier_uniform", "bias": "zeros"},
        {"layers": "Linear", "weight": "zeros"},
    )

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.LSTM(4, 8, num_layers=2), nn.Linear(8, 2), nn.GRU(3, 3))

    for with_model in (False, True):
        code = assert_exact(make, scheme, with_model=with_model)
        assert 'fnmatch.fnmatchcase(\n                pname, "weight_hh_l*"' in code
