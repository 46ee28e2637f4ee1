"""The probe against an independent hook-and-store oracle, and its guarantees: one row per leaf
call, any output structure, hooks removed, modes / buffers / grads restored, failures named."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import ProbeError, build_model, probe
from initlab.rng import seeded_global_rng

SEED = 1234


def gen(seed: int = SEED) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, std: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed)) * std


# ---------------------------------------------------------------- the oracle


def oracle(model: nn.Module, x: torch.Tensor, seed: int = SEED, blocks: tuple[str, ...] = ()):
    """Store every leaf-module output, every functional F.relu output outside leaf modules
    (named after its input's producer), and the outputs of the named blocks, with their
    gradients; reduce afterwards in float64."""
    names = {id(m): n for n, m in model.named_modules()}
    outputs: list[tuple[str, str, torch.Tensor]] = []
    grads: dict[int, torch.Tensor] = {}
    producer: dict[int, str] = {}
    inside = [0]  # leaf modules running: an nn.ReLU's own F.relu is its row, not another

    def store(name: str, kind: str, t: torch.Tensor) -> None:
        index = len(outputs)
        outputs.append((name, kind, t.detach().clone()))
        producer[id(t)] = name
        if t.requires_grad:
            t.register_hook(lambda g, i=index: grads.__setitem__(i, g.detach().clone()))

    def pre(module, args):
        inside[0] += 1

    def hook(module, args, out):
        inside[0] -= 1
        store(names[id(module)], type(module).__name__, out[0] if isinstance(out, tuple) else out)

    real_relu = F.relu

    def relu(input, inplace=False):
        out = real_relu(input, inplace)
        if not inside[0]:
            store(f"{producer[id(input)]}.relu", "relu", out)
        return out

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(pre) for m in leaves]
    handles += [m.register_forward_hook(hook) for m in leaves]
    by_name = dict(model.named_modules())
    block_hook = lambda m, a, out: store(names[id(m)], type(m).__name__, out)  # noqa: E731
    handles += [by_name[b].register_forward_hook(block_hook) for b in blocks]
    model.train(True)
    F.relu = relu
    try:
        out = model(x)
    finally:
        F.relu = real_relu
        for h in handles:
            h.remove()
    cotangent = torch.randn(out.shape, generator=gen(seed))
    model.zero_grad(set_to_none=True)
    out.backward(cotangent)
    rows = []
    for i, (name, kind, t) in enumerate(outputs):
        a = t.numpy().astype(np.float64)
        g = grads[i].numpy().astype(np.float64) if i in grads else None
        rows.append({
            "layer": name, "type": kind, "act_mean": a.mean(), "act_var": a.var(ddof=0),
            "act_std": a.std(ddof=0), "frac_zero": float(np.mean(a == 0)),
            "frac_dead": dead_units(a),
            "grad_var": g.var(ddof=0) if g is not None else math.nan,
        })  # fmt: skip
    param_vars = {n: p.grad.numpy().astype(np.float64).var() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return pd.DataFrame(rows), param_vars


def dead_units(a: np.ndarray) -> float:
    """Units: dim 1 of (N, C, ...) and of (N, F); the last dim of (N, T, D) token outputs."""
    if a.ndim < 2:
        return math.nan
    units = np.moveaxis(a, 2 if a.ndim == 3 else 1, 0).reshape(a.shape[2 if a.ndim == 3 else 1], -1)
    return float(np.mean(np.all(units == 0, axis=1)))


def assert_matches_oracle(
    model: nn.Module,
    x: torch.Tensor,
    expected_rows: int,
    blocks: tuple[str, ...] = (),
    copies: dict[str, int] | None = None,
):
    """`copies`: layers whose output is broadcast that many times (the probe reports their
    gradient per copy: the oracle's summed one over the copies)."""
    want, want_params = oracle(model, x, blocks=blocks)
    for layer, n in (copies or {}).items():
        want.loc[want["layer"] == layer, "grad_var"] /= n
        for name in [p for p in want_params if p.startswith(layer + ".")]:
            want_params[name] /= n
    got = probe(model, x, backward=True, generator=gen())
    layers = got.layers
    assert len(layers) == len(want) == expected_rows
    assert list(layers["order"]) == list(range(expected_rows))
    assert list(layers["layer"]) == list(want["layer"])
    assert list(layers["type"]) == list(want["type"])
    for col in ("act_var", "act_std", "grad_var"):
        np.testing.assert_allclose(layers[col], want[col], rtol=1e-4, err_msg=col)
    # a mean near zero: relative to the spread
    np.testing.assert_allclose(
        layers["act_mean"], want["act_mean"], rtol=1e-4, atol=1e-5 * want["act_std"].max()
    )
    np.testing.assert_allclose(layers["frac_zero"], want["frac_zero"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(layers["frac_dead"], want["frac_dead"], rtol=0, atol=1e-12)
    assert set(got.param_grad_var) == set(want_params)
    for name, var in want_params.items():
        assert got.param_grad_var[name] == pytest.approx(var, rel=1e-4), name
    return got


def test_probe_matches_oracle_on_mlp():
    model = build_model(
        {"name": "mlp", "bias": True, "depth": 4, "width": 32, "activation": "relu"}, seed=0
    )
    got = assert_matches_oracle(model, randn(64, 32), expected_rows=8)
    assert list(got.layers["type"]) == ["Linear", "ReLU"] * 4
    assert list(got.layers["role"]) == ["weight", "activation"] * 4
    relu = got.layers[got.layers["type"] == "ReLU"]
    assert relu["frac_zero"].between(0.3, 0.7).all()  # a sanity check of the oracle itself


def test_probe_matches_oracle_on_mlp_with_layernorm_and_tanh():
    spec = {
        "name": "mlp",
        "bias": True,
        "depth": 3,
        "width": 16,
        "activation": "tanh",
        "norm": "layernorm",
    }
    model = build_model(spec, seed=1)
    got = assert_matches_oracle(model, randn(32, 16, seed=1, std=2.0), expected_rows=9)
    assert list(got.layers["role"]) == ["weight", "norm", "activation"] * 3


def test_probe_matches_oracle_on_lenet_one_row_per_call():
    model = build_model({"name": "lenet"}, seed=0)
    got = assert_matches_oracle(model, randn(8, 3, 32, 32), expected_rows=11)
    layers = got.layers
    assert list(layers["layer"]) == ["conv1", "conv1.relu", "pool", "conv2", "conv2.relu", "pool",
                                     "fc1", "fc1.relu", "fc2", "fc2.relu", "fc3"]  # fmt: skip
    assert list(layers["type"]) == ["Conv2d", "relu", "MaxPool2d", "Conv2d", "relu", "MaxPool2d",
                                    "Linear", "relu", "Linear", "relu", "Linear"]  # fmt: skip
    assert list(layers[layers["type"] == "relu"]["role"]) == ["activation"] * 4
    assert list(layers["order"]) == list(range(11))
    # the final output's gradient is the standard-normal cotangent itself
    cot = torch.randn(8, 10, generator=gen())
    assert layers["grad_var"].iloc[-1] == pytest.approx(float(cot.var(unbiased=False)), rel=1e-5)


def test_probe_layer_columns():
    model = build_model({"name": "mlp", "bias": True, "depth": 1, "width": 4}, seed=0)
    got = probe(model, randn(8, 4), generator=gen())
    assert list(got.layers.columns) == [
        "order", "layer", "type", "role", "act_mean", "act_var", "act_std", "frac_zero",
        "frac_dead", "frac_saturated", "nonfinite", "grad_var",
    ]  # fmt: skip
    assert list(got.histograms.columns) == ["kind", "name", "bin_left", "bin_right", "count"]


def test_probe_accepts_tuple_and_dict_inputs():
    class TwoIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(5, 3)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    model = TwoIn()
    x, y = randn(6, 4), randn(6, 5, seed=1)
    by_tuple = probe(model, (x, y), generator=gen()).layers
    by_dict = probe(model, {"x": x, "y": y}, generator=gen()).layers
    assert list(by_tuple["layer"]) == ["a", "b"]
    pd.testing.assert_frame_equal(by_tuple, by_dict)
    assert by_tuple["act_var"].iloc[1] == pytest.approx(
        float(model.b(y).detach().var(unbiased=False)), rel=1e-5
    )


# ---------------------------------------------------------------- output structures


def test_multihead_attention_alone_tuple_output():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    q = randn(3, 5, 16)
    got = probe(mha, (q, q, q), generator=gen())
    layers = got.layers
    assert len(layers) == 1  # out_proj is not called: MHA itself is the leaf call
    row = layers.iloc[0]
    assert row["type"] == "MultiheadAttention"
    assert row["role"] == "weight"
    with torch.no_grad():
        out = mha(q, q, q)[0].double()
    assert row["act_var"] == pytest.approx(float(out.var(unbiased=False)), rel=1e-4)
    cot = torch.randn(3, 5, 16, generator=gen())
    assert row["grad_var"] == pytest.approx(float(cot.var(unbiased=False)), rel=1e-5)
    assert not math.isnan(got.param_grad_var["in_proj_weight"])


class AttnNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        h = self.inp(x)
        a, _ = self.attn(h, h, h)
        return self.out(a)


def test_multihead_attention_inside_a_model():
    torch.manual_seed(0)
    model = AttnNet()
    got = probe(model, randn(2, 6, 8), generator=gen())
    layers = got.layers
    assert list(layers["layer"]) == ["inp", "attn", "out"]
    assert list(layers["type"]) == ["Linear", "MultiheadAttention", "Linear"]
    assert layers["grad_var"].notna().all()
    with torch.no_grad():
        h = model.inp(randn(2, 6, 8))
        a = model.attn(h, h, h)[0]
    assert layers["act_var"].iloc[1] == pytest.approx(float(a.var(unbiased=False)), rel=1e-4)


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)

    def forward(self, x):
        h = self.act(self.fc1(x))
        return {"logits": self.fc2(h), "hidden": h, "count": 3}


@dataclasses.dataclass
class Output:
    loss: torch.Tensor | None
    logits: torch.Tensor
    labels: torch.Tensor


class DataclassOut(DictOut):
    def forward(self, x):
        d = super().forward(x)
        return Output(None, d["logits"], torch.zeros(len(x), dtype=torch.long))


@pytest.mark.parametrize("cls", [DictOut, DataclassOut])
def test_dict_and_dataclass_model_outputs(cls):
    torch.manual_seed(0)
    model = cls()
    got = probe(model, randn(10, 4), generator=gen())
    layers = got.layers
    assert list(layers["layer"]) == ["fc1", "act", "fc2"]
    # backward went through the first floating tensor (the logits)
    cot = torch.randn(10, 3, generator=gen())
    assert layers["grad_var"].iloc[-1] == pytest.approx(float(cot.var(unbiased=False)), rel=1e-5)
    assert layers["grad_var"].notna().all()
    assert all(not math.isnan(v) for v in got.param_grad_var.values())


# ---------------------------------------------------------------- cleanup guarantees


def assert_no_hooks(model: nn.Module) -> None:
    for name, m in model.named_modules():
        assert not m._forward_hooks, name
        assert not m._forward_pre_hooks, name
        assert not getattr(m, "_forward_hooks_with_kwargs", {}), name
        assert not getattr(m, "_forward_pre_hooks_with_kwargs", {}), name


def test_hooks_removed_after_probe():
    model = build_model({"name": "lenet"}, seed=0)
    probe(model, randn(2, 3, 32, 32), generator=gen())
    assert_no_hooks(model)
    probe(model, randn(2, 3, 32, 32), backward=False)
    assert_no_hooks(model)


def broken_mlp() -> nn.Sequential:
    model = nn.Sequential()
    model.add_module(
        "block", build_model({"name": "mlp", "bias": True, "depth": 3, "width": 8}, seed=0)
    )
    model.block.fc2 = nn.Linear(5, 8)  # wrong in_features
    return model


def test_forward_failure_names_the_layer_and_cleans_up():
    model = broken_mlp()
    model.eval()
    model.block.fc1.weight.grad = sentinel = torch.ones(8, 8)
    with pytest.raises(ProbeError) as info:
        probe(model, randn(4, 8), generator=gen())
    message = str(info.value)
    assert "block.fc2" in message
    assert "Linear" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert_no_hooks(model)
    assert not any(m.training for m in model.modules())
    assert model.block.fc1.weight.grad is sentinel
    assert model.block.fc1.bias.grad is None
    # the model works again once fixed, with no stale hook rows
    model.block.fc2 = nn.Linear(8, 8)
    rows = probe(model, randn(4, 8), generator=gen()).layers
    assert list(rows["role"]) == ["weight", "activation"] * 3 + ["block"]  # the inner Sequential


def test_train_mode_restored_from_eval():
    model = build_model(
        {"name": "mlp", "bias": True, "depth": 2, "width": 8, "norm": "batchnorm"}, seed=0
    )
    model.eval()
    seen = []
    model.act1.register_forward_hook(lambda m, a, o: seen.append(m.training))
    probe(model, randn(16, 8), generator=gen(), train=True)
    assert seen == [True]  # the probe ran in train mode
    assert not any(m.training for m in model.modules())


def test_eval_flag_and_train_mode_restored():
    model = build_model({"name": "mlp", "bias": True, "depth": 2, "width": 8}, seed=0)
    model.train()
    seen = []
    model.act1.register_forward_hook(lambda m, a, o: seen.append(m.training))
    probe(model, randn(16, 8), generator=gen(), train=False)
    assert seen == [False]
    assert all(m.training for m in model.modules())


def test_mixed_modes_restored():
    model = build_model(
        {"name": "mlp", "bias": True, "depth": 3, "width": 8, "norm": "batchnorm"}, seed=0
    )
    model.train()
    model.norm2.eval()
    model.act1.eval()
    before = {n: m.training for n, m in model.named_modules()}
    probe(model, randn(16, 8), generator=gen())
    assert {n: m.training for n, m in model.named_modules()} == before
    assert before["norm2"] is False and before["norm1"] is True


def test_batchnorm_running_stats_unchanged():
    model = build_model(
        {"name": "mlp", "bias": True, "depth": 2, "width": 8, "norm": "batchnorm"}, seed=0
    )
    model.train()
    with torch.no_grad():
        model(randn(32, 8, seed=5, std=3.0))  # non-trivial running stats
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    assert int(buffers["norm1.num_batches_tracked"]) == 1
    probe(model, randn(32, 8, std=2.0), generator=gen())
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n


def test_train_flag_selects_batchnorm_statistics():
    model = build_model(
        {"name": "mlp", "bias": True, "depth": 1, "width": 8, "norm": "batchnorm"}, seed=0
    )
    with torch.no_grad():
        model.norm1.running_mean.fill_(3.0)
        model.norm1.running_var.fill_(4.0)
    x = randn(64, 8)
    batch = probe(model, x, generator=gen(), train=True).layers.set_index("layer")
    assert batch.loc["norm1", "act_mean"] == pytest.approx(0.0, abs=1e-5)
    assert batch.loc["norm1", "act_var"] == pytest.approx(1.0, rel=1e-3)
    running = probe(model, x, generator=gen(), train=False).layers.set_index("layer")
    expected = (running.loc["fc1", "act_mean"] - 3.0) / math.sqrt(4.0 + 1e-5)
    assert running.loc["norm1", "act_mean"] == pytest.approx(expected, rel=1e-4)


def test_preexisting_grads_restored_and_not_mixed_in():
    model = build_model({"name": "mlp", "bias": True, "depth": 2, "width": 16}, seed=0)
    x = randn(32, 16)
    _, fresh = oracle(model, x)
    prior = randn(16, 16, seed=9, std=100.0)
    model.fc1.weight.grad = prior
    snapshot = prior.clone()
    got = probe(model, x, generator=gen())
    assert model.fc1.weight.grad is prior
    assert torch.equal(prior, snapshot)
    for name, p in model.named_parameters():
        if name != "fc1.weight":
            assert p.grad is None, name
    # the probe measured fresh gradients, not prior + fresh
    assert got.param_grad_var["fc1.weight"] == pytest.approx(fresh["fc1.weight"], rel=1e-4)


# ---------------------------------------------------------------- backward off, grad mode


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_backward_false(grad_enabled):
    model = build_model({"name": "mlp", "bias": True, "depth": 2, "width": 8}, seed=0)
    with torch.set_grad_enabled(grad_enabled):
        got = probe(model, randn(8, 8), backward=False)
        assert torch.is_grad_enabled() is grad_enabled
    assert got.layers["grad_var"].isna().all()
    assert len(got.layers) == 4
    assert set(got.histograms["kind"]) == {"activation"}
    assert all(math.isnan(v) for v in got.param_grad_var.values())
    assert all(p.grad is None for p in model.parameters())


def test_backward_under_no_grad_still_measures_and_restores_mode():
    model = build_model({"name": "mlp", "bias": True, "depth": 2, "width": 8}, seed=0)
    with torch.no_grad():
        got = probe(model, randn(8, 8), backward=True, generator=gen())
        assert not torch.is_grad_enabled()
    assert got.layers["grad_var"].notna().all()
    assert set(got.histograms["kind"]) == {"activation", "gradient"}


# ---------------------------------------------------------------- saturation, non-finite


def test_frac_saturated_for_tanh_and_nan_elsewhere():
    spec = {"name": "mlp", "bias": True, "depth": 3, "width": 64, "activation": "tanh"}
    model = build_model(spec, seed=0)
    x = randn(128, 64, std=4.0)
    layers = probe(model, x, generator=gen()).layers
    linear = layers[layers["type"] == "Linear"]
    assert linear["frac_saturated"].isna().all()
    tanh = layers[layers["type"] == "Tanh"]
    assert len(tanh) == 3
    h = x
    with torch.no_grad():
        for i, (_, row) in enumerate(tanh.iterrows(), start=1):
            h = torch.tanh(getattr(model, f"fc{i}")(h))
            expected = float((h.double().abs() >= 0.98).double().mean())
            assert row["frac_saturated"] == pytest.approx(expected, abs=1e-4)
    assert tanh["frac_saturated"].iloc[0] > 0.05  # the check is not vacuous


def test_frac_saturated_nan_for_relu():
    model = build_model({"name": "mlp", "bias": True, "depth": 1, "width": 4}, seed=0)
    layers = probe(model, randn(4, 4), generator=gen()).layers
    assert layers["frac_saturated"].isna().all()


def test_nonfinite_counted():
    x = randn(4, 25)
    x[0, 0] = float("inf")
    x[1, 3] = -float("inf")
    x[2, 2] = float("nan")
    got = probe(nn.Sequential(nn.Identity()), x, generator=gen())
    row = got.layers.iloc[0]
    assert row["nonfinite"] == 3
    acts = got.histograms[got.histograms["kind"] == "activation"]
    assert acts["count"].sum() == 100 - 3


def test_nonfinite_from_a_weight():
    model = build_model({"name": "mlp", "bias": True, "depth": 2, "width": 4}, seed=0)
    with torch.no_grad():
        model.fc2.weight[0, 0] = float("inf")
    layers = probe(model, randn(10, 4), backward=False).layers.set_index("layer")
    assert layers.loc["fc1", "nonfinite"] == 0
    assert layers.loc["fc2", "nonfinite"] >= 1


# ---------------------------------------------------------------- histograms


def test_histograms_count_every_finite_element_and_bins_are_contiguous():
    model = build_model({"name": "mlp", "bias": True, "depth": 3, "width": 16}, seed=0)
    got = probe(model, randn(20, 16), generator=gen(), bins=16)
    hist = got.histograms
    assert set(hist["kind"]) == {"activation", "gradient"}
    groups = hist.groupby(["kind", "name"], sort=False)
    assert len(groups) == 2 * 6
    for (kind, name), h in groups:
        assert len(h) == 16, (kind, name)
        assert h["count"].sum() == 20 * 16, (kind, name)
        left, right = h["bin_left"].to_numpy(), h["bin_right"].to_numpy()
        np.testing.assert_array_equal(left[1:], right[:-1])
        assert (right > left).all()


def test_histograms_one_per_leaf_call_on_lenet():
    model = build_model({"name": "lenet"}, seed=0)
    got = probe(model, randn(4, 3, 32, 32), generator=gen(), bins=8)
    groups = got.histograms.groupby(["kind", "name"])
    assert len(groups) == 2 * len(got.layers)  # one activation + one gradient per call
    for _, h in groups:
        assert len(h) == 8
        np.testing.assert_array_equal(h["bin_left"].to_numpy()[1:], h["bin_right"].to_numpy()[:-1])


def test_inplace_activation_gives_the_same_numbers():
    torch.manual_seed(0)
    inplace = nn.Sequential(nn.Linear(8, 8), nn.ReLU(inplace=True), nn.Linear(8, 8))
    plain = nn.Sequential(inplace[0], nn.ReLU(), inplace[2])
    x = randn(16, 8)
    a = probe(inplace, x, generator=gen()).layers
    b = probe(plain, x, generator=gen()).layers
    cols = ["act_mean", "act_var", "frac_zero", "grad_var"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    assert a["frac_zero"].iloc[1] > 0.2


@pytest.mark.parametrize("module", [nn.ReLU6(), nn.Hardtanh(-2.0, 2.0)], ids=["relu6", "hardtanh2"])
def test_frac_saturated_uses_the_modules_own_bounds(module):
    x = torch.linspace(-3.0, 7.0, 1001)
    row = probe(nn.Sequential(module), x, backward=False).layers.iloc[0]
    lo, hi = module.min_val, module.max_val
    margin = 0.01 * (hi - lo)
    y = module(x).double()
    expected = float(((y <= lo + margin) | (y >= hi - margin)).double().mean())
    assert row["frac_saturated"] == pytest.approx(expected, abs=2e-3)


def test_a_first_backward_imports_no_sympy() -> None:
    """The probe's backward from its cotangent, in a fresh process, leaves sympy unimported
    (out.backward(c) would import torch.fx's symbolic shapes and sympy: about a second)."""
    code = (
        "import sys, torch, initlab\n"
        "m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())\n"
        "initlab.probe(m, torch.randn(3, 4), generator=torch.Generator().manual_seed(0))\n"
        "print('sympy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


# ---------------------------------------------------------------- a tied weight's gradient


class Tied(nn.Module):
    """One Linear applied twice, and a second name for its weight: three uses of one weight,
    which named_parameters lists once."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 12)
        self.head = nn.Linear(12, 12, bias=False)
        self.head.weight = self.fc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.fc(torch.tanh(self.fc(x)))))


def test_weight_gradient_variance_is_the_whole_accumulated_gradients():
    with seeded_global_rng(3):  # Linear's own init draws from the global generator
        model = Tied()
    x = randn(32, 12, seed=4)
    got = probe(model, x, generator=gen())
    model.zero_grad(set_to_none=True)  # the oracle: autograd's own gradients, in float64
    out = model(x)
    (out * torch.randn(out.shape, generator=gen(), dtype=out.dtype)).sum().backward()
    want = {n: p.grad.double().var(unbiased=False).item() for n, p in model.named_parameters()}
    assert list(got.param_grad_var) == list(want) == ["fc.weight", "fc.bias"]
    for name, var in want.items():
        assert got.param_grad_var[name] == pytest.approx(var, rel=1e-6), name
