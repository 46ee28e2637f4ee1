"""What the probe sees beyond leaf modules: functional activations, blocks (the residual
stream), dead units, dropout switched off, broadcast gradients per copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_probe import assert_matches_oracle, gen, oracle, randn
from torch import nn

import initlab
from initlab import build_model, probe
from initlab.presets import preset


class FunctionalMLP(nn.Module):
    """nanoGPT's MLP written the functional way: F.gelu between c_fc and c_proj."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Residual(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.ln, self.mlp = nn.LayerNorm(d), FunctionalMLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.ln(x))


def test_a_functional_gelu_is_named_after_the_layer_it_takes():
    torch.manual_seed(0)
    model = nn.Sequential(Residual(), Residual())
    rows = probe(model, randn(8, 5, 16), generator=gen()).layers
    assert list(rows["layer"]) == [
        "0.ln", "0.mlp.c_fc", "0.mlp.c_fc.gelu", "0.mlp.c_proj", "0",
        "1.ln", "1.mlp.c_fc", "1.mlp.c_fc.gelu", "1.mlp.c_proj", "1",
    ]  # fmt: skip
    assert list(rows["role"]) == ["norm", "weight", "activation", "weight", "block"] * 2


def test_lenet_under_kaiming_shows_four_relus_with_about_half_zeros():
    model = build_model({"name": "lenet"}, seed=0)
    initlab.apply_scheme(model, preset("kaiming_normal"), gen())
    rows = probe(model, randn(64, 3, 32, 32), generator=gen()).layers
    relus = rows[rows["role"] == "activation"]
    assert list(relus["layer"]) == ["conv1.relu", "conv2.relu", "fc1.relu", "fc2.relu"]
    assert relus["frac_zero"].between(0.4, 0.65).all(), relus["frac_zero"].tolist()


def test_transformer_blocks_and_functional_rows_match_the_oracle():
    spec = {"name": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
            "vocab_size": 50, "seq_len": 8}  # fmt: skip
    model = build_model(spec, seed=0)
    x = torch.randint(0, 50, (4, 8), generator=gen())
    got = assert_matches_oracle(model, x, expected_rows=2 + 8 * 2 + 2, blocks=("h.0", "h.1"),
                                copies={"wpe": 4})  # fmt: skip
    blocks = got.layers[got.layers["role"] == "block"]
    assert list(blocks["layer"]) == ["h.0", "h.1"] and list(blocks["type"]) == ["Block"] * 2


def test_a_downsampling_block_is_not_a_block_row():
    spec = {"name": "resnet", "stages": 2, "blocks": 2, "width": 4, "image_size": 8}
    rows = probe(build_model(spec, seed=0), randn(4, 3, 8, 8), generator=gen()).layers
    # stage 2's first block halves the resolution: its output is not the stream it was given
    assert list(rows.loc[rows["role"] == "block", "layer"]) == ["layer1.0", "layer1.1", "layer2.1"]


def test_a_unit_zero_for_every_sample_is_dead_and_counted_per_unit():
    lin = nn.Linear(8, 4)
    with torch.no_grad():
        lin.weight[2].zero_()
        lin.bias.copy_(torch.tensor([0.1, 0.1, -1.0, 0.1]))  # unit 2 is always negative
    rows = probe(nn.Sequential(lin, nn.ReLU()), randn(32, 8), generator=gen()).layers
    relu = rows.iloc[1]
    assert relu["frac_dead"] == 0.25
    assert 0.25 < relu["frac_zero"] < 1.0  # element-wise: unit 2 plus the others' negatives
    assert rows.iloc[0]["frac_dead"] == 0.0  # the Linear's outputs are not exactly zero


def test_dead_channels_of_a_convolution_are_counted_per_channel():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight[1:3].zero_()
        conv.bias.zero_()
    rows = probe(nn.Sequential(conv, nn.ReLU()), randn(8, 3, 6, 6), generator=gen()).layers
    want = oracle(nn.Sequential(conv, nn.ReLU()), randn(8, 3, 6, 6))[0]
    assert rows["frac_dead"].tolist() == pytest.approx(want["frac_dead"].tolist())
    assert rows.iloc[0]["frac_dead"] == 0.5


class Dropping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.drop, self.out = nn.Linear(16, 16), nn.Dropout(0.5), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.fc(x))
        q = F.dropout(self.out(x), 0.5, self.training).unsqueeze(1)
        return F.scaled_dot_product_attention(q, q, q, None, 0.5 if self.training else 0.0)


def test_dropout_is_the_identity_in_the_probe_unless_asked_for():
    torch.manual_seed(0)
    model, x = Dropping(), randn(32, 16)
    off = probe(model, x, generator=gen(), train=True).layers
    model.eval()
    clean = probe(model, x, generator=gen(), train=False).layers
    np.testing.assert_array_equal(off["act_var"], clean["act_var"])
    np.testing.assert_array_equal(off["grad_var"], clean["grad_var"])
    torch.manual_seed(1)
    on = probe(model, x, generator=gen(), train=True, dropout=True).layers
    assert on.set_index("layer").loc["drop", "frac_zero"] > 0.3


def test_a_broadcast_position_embedding_has_its_gradient_per_copy():
    spec = {"name": "transformer", "n_layers": 1, "d_model": 16, "n_heads": 2,
            "vocab_size": 50, "seq_len": 8}  # fmt: skip
    model, batch = build_model(spec, seed=0), 32
    x = torch.randint(0, 50, (batch, 8), generator=gen())
    want, want_params = oracle(model, x)
    got = probe(model, x, generator=gen())
    wpe = got.layers.set_index("layer").loc["wpe", "grad_var"]
    # the summed gradient over the 32 copies, divided by the copies: one copy's variance
    assert wpe == pytest.approx(want.set_index("layer").loc["wpe", "grad_var"] / batch, rel=1e-4)
    wte = got.layers.set_index("layer").loc["wte", "grad_var"]
    assert 0.5 < wpe / wte < 2.0  # now comparable with the token embedding's
    assert got.param_grad_var["wpe.weight"] == pytest.approx(want_params["wpe.weight"] / batch)


def _unscaled_gpt2() -> dict:
    scheme = preset("gpt2").to_dict()
    for rule in scheme["rules"]:
        if isinstance(rule.get("weight"), dict):
            rule["weight"].pop("scale", None)
    return {"name": "GPT-2 without c_proj scaling", "rules": scheme["rules"]}


def test_gpt2_scaling_slows_the_residual_streams_growth_by_about_2_n_layers():
    # Pre-LN: E[x_k²] = E[x_0²] + k·v with v ∝ σ_proj², so the MLP branch alone makes the
    # unscaled slope exactly 2·n_layers times GPT-2's. Attention at init averages values over
    # positions that share the stream, which adds growth without c_proj scaling: measured here
    # 13.6 at n_layers 6 (2·n_layers = 12), 17.5-19.1 at 8 (16), 29.4 at 12 (24).
    n_layers = 6
    d = {"model": {"name": "transformer", "n_layers": n_layers, "d_model": 64, "n_heads": 4,
                   "seq_len": 16, "vocab_size": 200},
         "input": {"batch_size": 16}, "seeds": [0, 1],
         "schemes": [{"name": "GPT-2", "preset": "gpt2"}, _unscaled_gpt2()]}  # fmt: skip
    res = initlab.run(initlab.Experiment.from_dict(d))
    blocks = res.layers[res.layers["role"] == "block"]
    stream = blocks.groupby(["scheme", "layer"], sort=False)["act_var"].mean().unstack(0)
    depth = np.arange(1, n_layers + 1)
    slope = {s: np.polyfit(depth, stream[s].to_numpy(), 1)[0] for s in stream.columns}
    ratio = slope["GPT-2 without c_proj scaling"] / slope["GPT-2"]
    assert 0.9 * 2 * n_layers < ratio < 1.6 * 2 * n_layers, ratio
    assert (np.diff(stream["GPT-2"].to_numpy()) > 0).all()  # it grows, linearly, slowly


def test_attention_dropout_inside_multihead_attention_is_off_too():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.5, batch_first=True)
    x = randn(4, 6, 16)
    off = probe(layer, x, generator=gen(), train=True).layers
    layer.eval()
    clean = probe(layer, x, generator=gen(), train=False).layers
    np.testing.assert_allclose(off["act_var"], clean["act_var"], rtol=1e-6)
    assert layer.self_attn.dropout == 0.5  # restored


def test_a_failing_backward_is_a_probe_error_naming_it():
    class Broken(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            raise RuntimeError("custom backward broke")

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return Broken.apply(self.fc(x))

    with pytest.raises(initlab.ProbeError, match="backward pass failed: custom backward broke"):
        probe(Model(), randn(3, 4), generator=gen())


def test_bad_bins_and_self_containing_outputs_are_answers():
    with pytest.raises(ValueError, match="bins: must be a whole number >= 1"):
        probe(nn.Linear(2, 2), randn(3, 2), bins=0)

    class Loop(nn.Module):
        def forward(self, x):
            out: list = [x]
            out.append(out)
            return out

    rows = probe(nn.Sequential(nn.Linear(2, 2), Loop()), randn(3, 2), backward=False).layers
    assert list(rows["layer"]) == ["0", "1"]
