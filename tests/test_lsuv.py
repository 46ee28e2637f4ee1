"""LSUV (Mishkin & Matas 2015): unit output variance per layer, its log, its export, its limits.

The oracle for "variance 1" is independent of initlab.lsuv: each layer's output is captured by
a hook of the test's own in one eval-mode forward pass and its variance taken in numpy float64.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import initlab
from initlab.codegen import load_initializer, to_code
from initlab.experiment import Experiment
from initlab.guard import check_budget, estimate
from initlab.lsuv import LSUV_COLUMNS
from initlab.methods import apply_method
from initlab.plots_lsuv import lsuv_log, lsuv_summary
from initlab.schemes import Scheme, apply_scheme, initialize, validate_scheme


def lsuv_scheme(tol: float = 0.1, max_iter: int = 10, bias: str = "zeros", **more) -> Scheme:
    weight = {"method": "lsuv", "tol": tol, "max_iter": max_iter}
    rules = [{"layers": family, "weight": weight, "bias": bias} for family in ("Linear", "Conv")]
    return Scheme.from_dict({"name": "LSUV", "rules": rules, **more})


def tanh_mlp(depth: int = 8, width: int = 96, bias: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # the constructor's draws: overwritten, but keep them fixed
    layers: list[nn.Module] = [nn.Linear(32, width, bias=bias)]
    for _ in range(depth - 1):
        layers += [nn.Tanh(), nn.Linear(width, width, bias=bias)]
    return nn.Sequential(*layers)


def batch(n: int = 256, features: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, features, generator=torch.Generator().manual_seed(seed)) * 3.0


def output_variances(model: nn.Module, x: torch.Tensor, kind: type = nn.Linear) -> list[float]:
    """Each `kind` layer's output variance (ddof 1, float64), by the test's own hooks."""
    outputs: list[np.ndarray] = []
    hooks = [
        m.register_forward_hook(lambda m, a, out: outputs.append(out.detach().double().numpy()))
        for m in model.modules()
        if isinstance(m, kind)
    ]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [float(np.var(o, ddof=1)) for o in outputs]


def initialized(model: nn.Module, scheme: Scheme, x: torch.Tensor, seed: int = 0):
    return initialize(model, scheme, torch.Generator().manual_seed(seed), x)


# ---------------------------------------------------------------- what LSUV promises


@pytest.mark.parametrize("tol", [0.1, 0.01])
def test_every_layer_ends_within_tol_of_unit_variance(tol: float) -> None:
    model, x = tanh_mlp(), batch()
    before = output_variances(tanh_mlp(), x)
    assert max(abs(v - 1) for v in before) > 0.5  # PyTorch's default is far from 1 here
    initialized(model, lsuv_scheme(tol), x)
    after = output_variances(model, x)
    assert len(after) == 8
    assert all(abs(v - 1) < tol for v in after), after


def test_the_log_shows_each_layer_s_passes_in_forward_order() -> None:
    model, x = tanh_mlp(), batch()
    done = initialized(model, lsuv_scheme(0.01), x)
    log = done.lsuv
    assert list(log.columns) == LSUV_COLUMNS
    names = [f"{2 * i}" for i in range(8)]  # Sequential: Linear layers at even indices
    assert list(dict.fromkeys(log["layer"])) == names
    final = output_variances(model, x)
    for name, measured in zip(names, final, strict=True):
        rows = log[log["layer"] == name]
        assert list(rows["iteration"]) == list(range(len(rows)))  # 0 = after the orthonormal draw
        assert rows["converged"].tolist() == [False] * (len(rows) - 1) + [True]
        # the last pass saw the final weights: the same variance as the test's own hook
        assert rows["variance"].iloc[-1] == pytest.approx(measured, rel=1e-12)
    assert set(log["param"]) == {f"{n}.weight" for n in names}


def test_a_linear_network_without_bias_converges_in_one_rescale() -> None:
    # Var(c·Wx) = c²·Var(Wx): dividing by √Var gives exactly 1 (up to float32 rounding).
    # Widths change at every layer: a square orthonormal W keeps |x| and needs no rescale.
    widths = [64, 128, 32, 96, 48]
    model = nn.Sequential(*[nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(widths)])
    x = torch.randn(512, 64, generator=torch.Generator().manual_seed(3))
    log = initialized(model, lsuv_scheme(1e-4), x).lsuv
    assert log.groupby("layer", sort=False)["iteration"].max().tolist() == [1] * 4
    assert np.allclose(log[log["iteration"] == 1]["variance"], 1.0, atol=1e-5)


def test_square_orthonormal_layers_keep_the_variance_lsuv_set() -> None:
    model = nn.Sequential(*[nn.Linear(64, 64, bias=False) for _ in range(6)])
    x = torch.randn(512, 64, generator=torch.Generator().manual_seed(3)) * 4.0
    log = initialized(model, lsuv_scheme(1e-4), x).lsuv
    assert log.groupby("layer", sort=False)["iteration"].max().tolist() == [1] + [0] * 5


def test_the_weight_is_the_orthonormal_draw_rescaled() -> None:
    model, x = tanh_mlp(depth=3, width=64), batch()
    initialized(model, lsuv_scheme(0.01), x, seed=5)
    g = torch.Generator().manual_seed(5)
    for layer in (m for m in model if isinstance(m, nn.Linear)):
        draw = nn.init.orthogonal_(torch.empty_like(layer.weight), generator=g)
        factor = (layer.weight / draw).flatten()
        # one scalar per layer: the product of its 1/√Var rescalings
        assert torch.allclose(factor, factor[0].expand_as(factor), rtol=1e-4)


def test_max_iter_bounds_the_passes() -> None:
    model, x = tanh_mlp(depth=4), batch()
    log = initialized(model, lsuv_scheme(tol=1e-9, max_iter=2), x).lsuv
    assert log.groupby("layer")["iteration"].max().max() <= 2
    assert log.groupby("layer").size().max() <= 3


def test_batchnorm_in_train_mode_normalizes_by_the_batch_as_the_probe_sees_it() -> None:
    exp = Experiment.from_dict(
        {
            "model": {"name": "cnn", "depth": 4, "channels": 8, "batchnorm": True},
            "input": {"batch_size": 32, "mean": 1.0},
            "seeds": [0],
            "schemes": [lsuv_scheme(0.05).to_dict()],
        }
    )
    res = initlab.run(exp)  # the probe in train mode: BatchNorm by batch statistics
    rows = res.layers[res.layers["type"].isin(["Conv2d", "Linear"])]
    assert len(rows) >= 4 and np.allclose(rows["act_var"], 1.0, atol=0.05 + 0.01), rows
    model, _ = initlab.experiment.initialized(exp, exp.schemes[0], 0)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(int(m.num_batches_tracked) == 0 for m in norms)  # restored
    assert all(m.running_var.eq(1).all() for m in norms)


def test_dropout_and_batchnorm_are_left_alone_and_the_global_rng_untouched() -> None:
    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.Dropout(0.5), nn.ReLU(),
                             nn.Linear(64, 8))  # fmt: skip

    x = batch()
    a, b = model(), model()
    state = torch.get_rng_state()
    initialized(a, lsuv_scheme(), x)
    initialized(b, lsuv_scheme(), x)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert a[1].running_mean.abs().max() == 0 and a[1].num_batches_tracked == 0
    assert all(m.training for m in a.modules())  # modes restored


def test_convolutions_get_unit_variance_too() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU())
    x = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    initialized(model, lsuv_scheme(0.05), x)
    assert all(abs(v - 1) < 0.05 for v in output_variances(model, x, nn.Conv2d))


# ---------------------------------------------------------------- the export


@pytest.mark.parametrize("with_model", [True, False])
def test_exported_code_takes_the_batch_and_is_bit_identical(with_model: bool) -> None:
    scheme, x = lsuv_scheme(0.02), batch()
    ours, theirs = tanh_mlp(), tanh_mlp()
    apply_scheme(ours, scheme, torch.Generator().manual_seed(7), batch=x)
    code = to_code(scheme, theirs if with_model else None)
    assert "def initialize_weights(\n    model: nn.Module, batch: torch.Tensor," in code
    load_initializer(code)(theirs, x, torch.Generator().manual_seed(7))
    for (name, p), q in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_exported_code_on_a_zoo_cnn_is_bit_identical() -> None:
    exp = Experiment.from_dict(
        {
            "model": {"name": "lenet"},
            "input": {"batch_size": 16},
            "seeds": [0],
            "schemes": [lsuv_scheme(0.05).to_dict()],
        }
    )
    model, done = initlab.experiment.initialized(exp, exp.schemes[0], 0)
    fresh = initlab.build_model(exp.model, seed=initlab.experiment.stream_seed(0, "model"))
    x = initlab.experiment.make_input(exp, 0)
    load_initializer(to_code(exp.schemes[0], fresh))(
        fresh, x, initlab.experiment.generator(0, "init")
    )
    for (name, p), q in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert len(done.lsuv) > 0


def test_the_signature_is_the_scheme_s_even_where_no_layer_gets_lsuv() -> None:
    conv_only = Scheme.from_dict(
        {"name": "c", "rules": [{"layers": "Conv", "weight": "lsuv"}, {"layers": "Linear"}]}
    )
    code = to_code(conv_only, tanh_mlp())  # an MLP has no Conv: nothing to rescale
    assert "batch: torch.Tensor" in code and "lsuv_rescale" not in code
    model = tanh_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_initializer(code)(model, batch(), generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_schemes_without_lsuv_keep_the_plain_signature() -> None:
    code = to_code(initlab.preset("kaiming_normal"), tanh_mlp())
    assert "batch" not in code and "lsuv" not in code


# ---------------------------------------------------------------- in an experiment


def mlp_experiment(**more) -> Experiment:
    d = {
        "model": {"name": "mlp", "depth": 10, "width": 128, "activation": "tanh"},
        "input": {"batch_size": 256, "std": 2.0},
        "seeds": [0, 1],
        "schemes": [lsuv_scheme(0.05).to_dict(), {"preset": "pytorch_default"}],
    }
    return Experiment.from_dict(d | more)


def test_run_keeps_the_log_and_the_probe_measures_unit_variance(tmp_path) -> None:
    exp = mlp_experiment()
    res = initlab.run(exp)
    assert set(res.lsuv["scheme"]) == {"LSUV"} and set(res.lsuv["seed"]) == {0, 1}
    assert res.lsuv.groupby(["seed", "layer"])["converged"].last().all()
    # the probe (another code path, same input) sees each Linear's output at variance ~1
    rows = res.layers[(res.layers["scheme"] == "LSUV") & (res.layers["type"] == "Linear")]
    assert np.allclose(rows["act_var"], 1.0, atol=0.05 + 0.01)
    written = {p.name for p in res.write_csv(tmp_path)}
    assert "lsuv.csv" in written


def test_a_run_without_lsuv_writes_no_lsuv_table(tmp_path) -> None:
    exp = mlp_experiment(schemes=[{"preset": "pytorch_default"}], seeds=[0])
    res = initlab.run(exp)
    assert res.lsuv.empty and "lsuv.csv" not in {p.name for p in res.write_csv(tmp_path)}


def test_the_guard_counts_lsuv_passes() -> None:
    plain = estimate(mlp_experiment(schemes=[{"preset": "pytorch_default"}]))
    exp = mlp_experiment(schemes=[lsuv_scheme(0.05, max_iter=100).to_dict()])
    est = estimate(exp)
    assert est.lsuv_passes == 2 * (1 + 10 * 101)  # seeds × (order pass + layers × passes)
    assert est.seconds > plain.seconds * 50


def test_the_guard_refuses_hopeless_lsuv(monkeypatch) -> None:
    monkeypatch.setenv("INITLAB_TIME_BUDGET_S", "0.5")
    exp = mlp_experiment(schemes=[lsuv_scheme(0.05, max_iter=100).to_dict()])
    with pytest.raises(ValueError, match="lsuv max_iter"):
        check_budget(exp)


# ---------------------------------------------------------------- refusals


def test_lsuv_takes_no_scale() -> None:
    with pytest.raises(ValueError, match=r"weight\.scale: 'lsuv' sets the weight's scale"):
        Scheme.from_dict({"name": "s", "rules": [{"layers": "Linear",
                          "weight": {"method": "lsuv", "scale": 2.0}}]})  # fmt: skip


@pytest.mark.parametrize(("key", "value"), [("tol", 0), ("tol", -1), ("max_iter", 0),
                                            ("max_iter", 101), ("max_iter", 2.5)])  # fmt: skip
def test_bad_parameters_are_refused_by_name(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"weight\.{key}: must be"):
        Scheme.from_dict({"name": "s", "rules": [{"layers": "Linear",
                          "weight": {"method": "lsuv", key: value}}]})  # fmt: skip


def test_lsuv_is_for_a_layer_s_weight_only() -> None:
    with pytest.raises(ValueError, match=r"rules\.0\.bias: lsuv rescales a layer's weight"):
        Scheme.from_dict({"name": "s", "rules": [{"layers": "Linear", "bias": "lsuv"}]})
    rnn = Scheme.from_dict({"name": "r", "rules": [{"layers": "LSTM", "weight": "lsuv"}]})
    with pytest.raises(ValueError, match="weight_ih_l0 is not one"):
        validate_scheme(rnn, nn.LSTM(8, 16))


def test_without_a_batch_nothing_is_touched() -> None:
    model = tanh_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="pass a batch"):
        apply_scheme(model, lsuv_scheme(), torch.Generator().manual_seed(0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_apply_method_points_to_apply_scheme() -> None:
    with pytest.raises(ValueError, match="needs the model and a batch"):
        apply_method(torch.empty(4, 4), "lsuv")


def test_a_layer_the_forward_never_calls_is_named() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(8, 8), nn.Conv1d(8, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    with pytest.raises(ValueError, match=r"spare\.weight: its Conv1d is never called"):
        initialized(Unused(), lsuv_scheme(), torch.randn(4, 8))


def test_zero_output_variance_stops_without_dividing_by_zero() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    log = initialized(model, lsuv_scheme(), torch.zeros(16, 8)).lsuv  # zero input, zero bias
    assert (log["variance"] == 0).all() and log.groupby("layer").size().tolist() == [1, 1]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(log["variance"].sum())


# ---------------------------------------------------------------- the chart, the report, the CLI


def test_the_chart_draws_a_line_per_layer_and_one_legend_entry_per_scheme() -> None:
    res = initlab.run(mlp_experiment())
    fig = lsuv_log(res.lsuv)
    lines = [t for t in fig.data if t.legendgroup == "LSUV"]
    assert len(lines) == 10 and sum(t.showlegend for t in lines) == 1
    first = res.lsuv[(res.lsuv["seed"] == 0) & (res.lsuv["layer"] == "fc2")]
    drawn = next(t for t in lines if t.customdata[0] == "fc2")
    assert list(drawn.y) == pytest.approx(list(first["variance"]))
    summary = lsuv_summary(res.lsuv)
    assert len(summary) == 10 and summary["converged"].all()
    assert (summary["passes"] == first.groupby("layer")["iteration"].max().max() + 1).any()


def test_the_report_and_the_cli_carry_the_log(tmp_path) -> None:
    path = tmp_path / "exp.json"
    path.write_text(mlp_experiment(seeds=[0]).to_json())
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "initlab", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    log = pd.read_csv(out / "lsuv.csv")
    assert list(log.columns) == ["scheme", "seed", *LSUV_COLUMNS] and len(log) >= 10
    report = (out / "report.html").read_text()
    assert "<h2>LSUV</h2>" in report and "variance_last" in report


# ---------------------------------------------------------------- a batch or a model LSUV can't use


def refused(model: nn.Module, x: object, match: str) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        initialized(model, lsuv_scheme(), x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "touched"


def test_a_batch_the_model_cannot_take_is_refused_before_anything_is_drawn() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    refused(model, torch.randn(8, 5), r"batch: the model fails on a batch of shape \[8, 5\]")
    refused(model, [[0.0] * 4] * 8, "batch: must be a torch.Tensor; got list")
    refused(model, torch.full((8, 4), math.nan), "batch: holds NaN or infinite values")
    refused(nn.Sequential(nn.Linear(4, 1)), torch.randn(1, 4), "needs 2 or more")


def test_attention_s_out_proj_is_named_with_a_way_out() -> None:
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    refused(model, torch.randn(4, 6, 16), r"self_attn\.out_proj\.weight: .* never called")
    way_out = {"layers": "Linear", "name": "*out_proj", "weight": "orthogonal"}
    rules = [way_out, *lsuv_scheme().to_dict()["rules"]]
    done = initialized(
        model, Scheme.from_dict({"name": "s", "rules": rules}), torch.randn(4, 6, 16)
    )
    assert set(done.lsuv["layer"]) == {"linear1", "linear2"}


def test_a_layer_the_rescaled_forward_no_longer_reaches_is_named() -> None:
    class Route(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h) if h.var() > 1.5 else h  # b is skipped once a is at variance 1

    torch.manual_seed(0)
    with pytest.raises(ValueError, match="a Linear layer was not reached"):
        initialized(Route(), lsuv_scheme(), batch(64, 8) * 10)


def test_training_counts_lsuv_once_per_run_not_once_per_step(monkeypatch) -> None:
    from initlab import training

    seen = {}
    monkeypatch.setattr(training, "_check_training_time", lambda *a: seen.update(args=a))
    exp = mlp_experiment(
        schemes=[lsuv_scheme(0.05, max_iter=100).to_dict()],
        training={"task": "teacher", "steps": 2000, "batch_size": 64},
    )
    trained, _ = training.trained_experiment(exp)
    training.check_training_budget(trained, training.task_of(exp), training.output_shape(trained))
    _, per_step, _, once = seen["args"]
    assert once > 0 and once > 10 * per_step  # LSUV's 2 × 1011 passes, counted apart


def test_training_keeps_the_log_of_the_lsuv_its_runs_started_from(tmp_path) -> None:
    exp = mlp_experiment(
        seeds=[0],
        schemes=[lsuv_scheme(0.05).to_dict()],
        training={"task": "teacher", "steps": 2, "batch_size": 32},
    )
    trainer = initlab.training.Trainer(exp)
    first = trainer._first_batch(trainer.exp.schemes[0], 0)
    _, done = initlab.experiment.initialized(trainer.exp, trainer.exp.schemes[0], 0, first, True)
    trainer.run()
    log = trainer.results().lsuv
    assert list(log.columns) == ["scheme", "seed", *LSUV_COLUMNS]
    assert log["variance"].tolist() == done.lsuv["variance"].tolist()  # the first batch's
    assert log.groupby("layer")["converged"].last().all()
    names = {p.name for p in trainer.results().write_csv(tmp_path)}
    assert "training_lsuv.csv" in names
