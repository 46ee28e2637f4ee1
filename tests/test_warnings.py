"""Warnings: each check of the registry finds its gotcha (and stays quiet where there is none),
and the warnings reach Results, the CLI's stderr and the report.

Where a warning states a number or a consequence, the test measures it: the default's std, the
ConvTranspose fans (through the variance of the signal and of the gradient), the copies.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import initlab
from initlab.cli import main
from initlab.gotchas import WARNING_COLUMNS, WARNINGS, copies, scheme_warnings
from initlab.outline import meta_model
from initlab.schemes import Scheme, apply_scheme

FIXTURES = Path(__file__).parent / "fixtures"
MLP = {"name": "mlp", "depth": 3, "width": 16}
TRANSFORMER = {"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
               "vocab_size": 50, "seq_len": 8}  # fmt: skip


def scheme(*rules: dict, name: str = "s") -> Scheme:
    return Scheme.from_dict({"name": name, "rules": list(rules)})


def found(s: Scheme, model: nn.Module, check: str) -> list[str]:
    return [w.message for w in scheme_warnings(s, model) if w.check == check]


def meta(spec: dict) -> nn.Module:
    return meta_model(initlab.models.normalize_model_spec(spec))


def applied(s: Scheme, model: nn.Module) -> nn.Module:
    apply_scheme(model, s, torch.Generator().manual_seed(0))
    return model


# ---------------------------------------------------------------- the registry


@pytest.mark.parametrize("key", WARNINGS)
def test_every_check_has_a_one_line_reason_a_source_and_a_kind(key):
    check = WARNINGS[key]
    assert check.key == key and check.level in ("warning", "info")
    assert check.needs in ("structure", "values")
    for text in (check.summary, check.source):
        assert text.strip() and "\n" not in text


def test_structural_checks_are_cheap_on_a_large_meta_model():
    model = meta({"name": "transformer", "n_layers": 24, "d_model": 1024})
    start = time.perf_counter()
    for name in initlab.PRESETS:
        scheme_warnings(initlab.preset(name), model)
    # Measured 6-19 ms a preset; the bound is far above it so a busy machine cannot break it.
    assert (time.perf_counter() - start) / len(initlab.PRESETS) < 1.0


# ---------------------------------------------------------------- 1. rules that match nothing


def test_a_misspelt_layers_name_suggests_the_closest_family():
    msgs = found(scheme({"layers": "Lineer", "weight": "zeros"}), meta(MLP), "unmatched_rule")
    assert msgs[0] == "rule 0 (Lineer) matches no module; did you mean 'Linear'?"


@pytest.mark.parametrize(("layers", "close"), [("linear", "Linear"), ("ReLu", "ReLU")])
def test_case_and_full_paths_that_match_nothing_get_a_suggestion(layers, close):
    rules = [{"layers": layers, "weight": "zeros"}, {"layers": "Linear", "bias": "zeros"}]
    msgs = found(scheme(*rules), meta(MLP), "unmatched_rule")
    assert any(f"did you mean {close!r}" in m for m in msgs), msgs


def test_a_torch_path_names_that_class_and_matches():
    rules = [{"layers": "torch.nn.Linear", "weight": "zeros"}]
    assert found(scheme(*rules), meta(MLP), "unmatched_rule") == []


def test_a_glob_that_matches_nothing_suggests_a_glob_that_does():
    rules = [{"layers": "Linear", "name": "*.cproj", "weight": "zeros"},
             {"layers": "Linear", "weight": "xavier_normal"}]  # fmt: skip
    (msg,) = found(scheme(*rules), meta(TRANSFORMER), "unmatched_rule")
    assert "the name glob '*.cproj' matches none of the" in msg
    assert "did you mean '*.c_proj'?" in msg


def test_a_rule_for_modules_without_parameters_and_a_scheme_that_decides_nothing():
    msgs = found(scheme({"layers": "ReLU", "weight": "zeros"}), meta(MLP), "unmatched_rule")
    assert "rule 0 (ReLU) matches 3 module(s), none with parameters" in msgs
    assert any(m.startswith("no rule matches a module with parameters") for m in msgs)
    conv = found(scheme({"layers": "Conv2d", "weight": "zeros"}), meta(MLP), "unmatched_rule")
    assert conv == [
        "no rule matches a module with parameters, so every parameter keeps "
        "PyTorch's default; this model's layers with parameters are: Linear"
    ]


def test_generic_presets_and_gpt2_on_its_own_models_match_without_a_warning(monkeypatch):
    # Presets carry rules for every family; one the model lacks is not a gotcha.
    for name in ("kaiming_normal", "xavier_normal", "recipe", "orthogonal"):
        assert found(initlab.preset(name), meta(MLP), "unmatched_rule") == []
    assert found(initlab.preset("gpt2", "gelu"), meta(TRANSFORMER), "unmatched_rule") == []
    monkeypatch.syspath_prepend(str(FIXTURES))
    from initlab_testzoo.hf_gpt2 import gpt2_lm

    hf = gpt2_lm(n_layer=2, n_embd=16, n_positions=8, vocab_size=50)  # Conv1D + Linear head
    for check in ("unmatched_rule", "shadowed_rule"):
        assert found(initlab.preset("gpt2", "gelu"), hf, check) == []


def test_a_specific_rule_after_a_broad_one_decides_nothing():
    rules = [{"layers": "Linear", "weight": "zeros"},
             {"layers": "Linear", "name": "*.c_proj", "weight": "ones"}]  # fmt: skip
    (msg,) = found(scheme(*rules), meta(TRANSFORMER), "shadowed_rule")
    assert msg.startswith("rule 1 (Linear named *.c_proj) decides nothing") and "rule 0" in msg
    assert found(scheme(*rules[::-1]), meta(TRANSFORMER), "shadowed_rule") == []


# ---------------------------------------------------------------- 2. trunc_normal's bounds


def test_trunc_normal_with_a_small_std_and_absolute_bounds_cuts_nothing():
    s = scheme({"layers": "Linear", "weight": {"method": "trunc_normal", "std": 0.02}})
    (msg,) = found(s, meta(MLP), "trunc_normal_absolute")
    assert "cuts nothing" in msg and "100 std" in msg and "a=-0.04, b=0.04" in msg
    # ... which is true: nothing lands beyond ±2 std's worth of anything like a cut
    model = applied(s, initlab.build_model({"name": "mlp", "depth": 1, "width": 512}))
    assert model.fc1.weight.abs().max().item() > 4 * 0.02


@pytest.mark.parametrize("weight", [{"method": "trunc_normal", "std": 0.02, "a": -0.04, "b": 0.04},
                                    {"method": "trunc_normal"}, "lecun_normal"])  # fmt: skip
def test_trunc_normal_with_bounds_that_cut_is_fine(weight):
    assert found(scheme({"layers": "Linear", "weight": weight}), meta(MLP),
                 "trunc_normal_absolute") == []  # fmt: skip


# ---------------------------------------------------------------- 3. ConvTranspose fans


def transposed(c_in: int, c_out: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 3, padding=1))


def kaiming(mode: str, method: str = "kaiming_normal") -> Scheme:
    weight = {"method": method, "mode": mode, "nonlinearity": "linear"}
    return scheme({"layers": "ConvTranspose", "weight": weight, "bias": "zeros"})


def test_kaiming_on_a_conv_transpose_names_the_fans_torch_reads():
    (msg,) = found(kaiming("fan_in"), transposed(64, 16), "conv_transpose_fans")
    assert "out_channels/groups × kernel = 144" in msg and "in_channels × kernel = 576" in msg
    assert "keeps the gradient's variance, not the signal's" in msg


@pytest.mark.parametrize(("mode", "signal", "gradient"), [("fan_in", 4.0, 1.0),
                                                          ("fan_out", 1.0, 0.25)])  # fmt: skip
def test_what_the_conv_transpose_warning_says_is_what_happens(mode, signal, gradient):
    # 64 -> 16 channels: torch's fan_in is 16·9, the signal's fan is 64·9 (stride 1).
    model = applied(kaiming(mode), transposed(64, 16))
    x = torch.randn(16, 64, 64, 64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = model(x)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(2)))
    assert out.var().item() == pytest.approx(signal, rel=0.08)  # edges lose a few taps
    assert x.grad.var().item() == pytest.approx(gradient, rel=0.08)


@pytest.mark.parametrize(("s", "model"), [
    (scheme({"layers": "ConvTranspose", "weight": "xavier_normal"}), transposed(64, 16)),
    (kaiming("fan_in"), transposed(16, 16)),  # equal fans: nothing swaps
    (scheme({"layers": "Conv", "weight": {"method": "kaiming_normal"}}),
     nn.Sequential(nn.Conv2d(64, 16, 3))),
])  # fmt: skip
def test_no_conv_transpose_warning_where_the_fans_do_not_swap(s, model):
    assert found(s, model, "conv_transpose_fans") == []


# ---------------------------------------------------------------- 4. the a=√5 default


def test_the_default_of_linear_and_conv_is_stated_as_info_with_its_real_std():
    (w,) = [w for w in scheme_warnings(initlab.preset("pytorch_default"), meta(MLP))
            if w.check == "default_a_sqrt5"]  # fmt: skip
    assert w.level == "info"
    assert "3 Linear/Conv weight(s)" in w.message and "a sixth of Kaiming" in w.message
    real = initlab.build_model({"name": "mlp", "depth": 1, "width": 768}, seed=0)
    std = 1 / math.sqrt(3 * 768)
    assert f"std 1/√(3·fan_in) = {std:.3g}" in found(initlab.preset("pytorch_default"), real,
                                                      "default_a_sqrt5")[0]  # fmt: skip
    assert real.fc1.weight.std().item() == pytest.approx(std, rel=0.01)


def test_no_default_info_when_every_weight_is_initialized():
    assert found(initlab.preset("kaiming_normal"), meta(MLP), "default_a_sqrt5") == []
    bias_only = scheme({"layers": "Linear", "weight": "xavier_normal"})  # biases stay default
    assert found(bias_only, meta(MLP), "default_a_sqrt5") == []


# ---------------------------------------------------------------- 5. identical layers


def encoder(layers: int = 3) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def test_transformer_encoder_layers_start_as_copies_under_the_default():
    model = encoder()
    assert torch.equal(model.layers[0].linear1.weight, model.layers[2].linear1.weight)
    (msg,) = found(initlab.preset("pytorch_default"), model, "identical_tensors")
    assert msg.startswith("'layers.1', 'layers.2' start with exactly the values of 'layers.0'")
    assert "self_attn.in_proj_weight" in msg and "linear1.weight" in msg


def test_kaiming_leaves_the_attention_copies_that_it_does_not_touch():
    model = applied(initlab.preset("kaiming_normal"), encoder())  # Linear, not MHA's in_proj
    (msg,) = found(initlab.preset("kaiming_normal"), model, "identical_tensors")
    assert "(1 tensors: self_attn.in_proj_weight)" in msg


def test_no_copies_when_every_layer_is_drawn_on_its_own():
    everything = scheme({"layers": "Linear", "weight": "xavier_normal", "bias": "zeros"},
                        {"layers": "MultiheadAttention", "weight": "xavier_uniform"})  # fmt: skip
    assert found(everything, applied(everything, encoder()), "identical_tensors") == []
    zoo = initlab.build_model(TRANSFORMER, seed=0)  # tied head appears once; norms are constant
    assert found(initlab.preset("pytorch_default"), zoo, "identical_tensors") == []
    assert copies(zoo) == []


def test_value_checks_are_skipped_on_a_meta_model():
    model = meta_model({"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
                        "vocab_size": 50, "seq_len": 8, "tie_weights": True})  # fmt: skip
    values = {k for k, c in WARNINGS.items() if c.needs == "values"}
    assert values == {"identical_tensors", "identical_schemes"}
    assert not {w.check for w in scheme_warnings(initlab.preset("pytorch_default"), model)} & values


# ---------------------------------------------------------------- 6. identical schemes


def warnings_of(schemes: list[dict], model: dict | None = None) -> list[tuple[str, str, str]]:
    exp = initlab.Experiment.from_dict({"model": model or {"name": "mlp", "depth": 3, "width": 32},
                                        "input": {"batch_size": 8}, "seeds": [3, 4],
                                        "backward": False, "schemes": schemes})  # fmt: skip
    table = initlab.run(exp).warnings
    assert list(table.columns) == WARNING_COLUMNS
    return list(table[["scheme", "check", "message"]].itertuples(index=False, name=None))


def test_xavier_with_relu_gain_is_kaiming_on_equal_fans():
    rows = warnings_of([{"name": "Kaiming normal", "preset": "kaiming_normal"},
                        {"name": "Xavier (relu gain)", "preset": "xavier_normal_gain"},
                        {"name": "Xavier", "preset": "xavier_normal"}])  # fmt: skip
    same = [(s, m) for s, c, m in rows if c == "identical_schemes"]
    assert same == [
        (
            "Xavier (relu gain)",
            "identical to 'Kaiming normal': every parameter has "
            "the same values after initialization, so every result is the same",
        )
    ]


# ---------------------------------------------------------------- where warnings surface


def test_results_carry_a_warnings_table_even_without_warnings():
    assert warnings_of([{"name": "K", "preset": "kaiming_normal"}]) == []  # columns checked there
    empty = pd.DataFrame()
    assert list(initlab.Results(empty, empty, empty).warnings.columns) == WARNING_COLUMNS


TYPO = {"model": {"name": "mlp", "depth": 2, "width": 8}, "input": {"batch_size": 4},
        "schemes": [{"name": "<b>typo</b>", "rules": [{"layers": "Lineer", "weight": "zeros"}]},
                    {"name": "K", "preset": "kaiming_normal"}]}  # fmt: skip


def test_the_cli_prints_each_warning_on_stderr_and_still_exits_0(tmp_path, capsys):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(TYPO), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "initlab: warning: <b>typo</b>: rule 0 (Lineer) matches no module; did you mean " \
           "'Linear'?" in err  # fmt: skip
    assert all(line.startswith("initlab: warning: <b>typo</b>: ") for line in err)
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    warnings = report.split("<h2>Warnings</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<b>&lt;b&gt;typo&lt;/b&gt;</b> (unmatched_rule): rule 0 (Lineer)" in warnings
    assert "did you mean &#x27;Linear&#x27;?" in warnings
    assert "<b>typo</b>" not in warnings  # the scheme name is escaped, never markup


def test_python_dash_m_initlab_prints_the_warning_line(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(TYPO), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "initlab", "run", str(path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0
    assert "initlab: warning: <b>typo</b>: rule 0 (Lineer) matches no module" in proc.stderr
