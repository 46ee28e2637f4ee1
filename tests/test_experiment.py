"""Experiments: signal-propagation theory as an end-to-end oracle, reproducibility, independent
random streams, validation errors with field locations, round trips and the results columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import initlab.experiment as experiment_module
from initlab import Experiment, run
from initlab.experiment import build_initialized, make_input, stream_seed

SMALL = {
    "model": {"name": "mlp", "bias": True, "depth": 3, "width": 16, "activation": "tanh"},
    "input": {"batch_size": 32},
    "seeds": [0, 1],
    "schemes": [
        {"name": "Kaiming", "preset": "kaiming_normal"},
        {"name": "Xavier", "rules": [{"layers": "Linear", "weight": "xavier_normal",
                                      "bias": "zeros"}]},
    ],
}  # fmt: skip

DESIGN_EXAMPLE = """
{
  "model":  {"name": "mlp", "depth": 20, "width": 256, "activation": "tanh"},
  "input":  {"batch_size": 256, "distribution": "normal", "mean": 0.0, "std": 1.0},
  "seeds":  [0, 1, 2],
  "backward": true,
  "schemes": [
    {"name": "PyTorch default", "preset": "pytorch_default"},
    {"name": "Xavier, tanh gain",
     "rules": [
       {"layers": "Linear",
        "weight": {"method": "xavier_normal", "gain": "tanh"},
        "bias":   {"method": "zeros"}}
     ]}
  ]
}
"""


def small(**changes) -> Experiment:
    return Experiment.from_dict({**SMALL, **changes})


# ---------------------------------------------------------------- theory


@pytest.fixture(scope="module")
def deep_relu_factors() -> dict[str, float]:
    """Per-layer factor of the pre-activation variance, median over seeds, per scheme."""
    exp = Experiment.from_dict({
        "model": {"name": "mlp", "depth": 30, "width": 512, "activation": "relu", "bias": False},
        "input": {"batch_size": 256},
        "seeds": [0, 1],
        "backward": False,
        "schemes": [
            {"name": "kaiming", "preset": "kaiming_normal"},
            {"name": "xavier gain 1",
             "rules": [{"layers": "Linear", "weight": {"method": "xavier_normal", "gain": 1.0}}]},
            {"name": "default", "preset": "pytorch_default"},
            {"name": "xavier preset", "preset": "xavier_normal_gain"},
        ],
    })  # fmt: skip
    layers = run(exp).layers
    weight = layers[layers["role"] == "weight"]
    factors: dict[str, list[float]] = {}
    for (scheme, _seed), rows in weight.groupby(["scheme", "seed"]):
        var = rows.sort_values("order")["act_var"].to_numpy(np.float64)
        assert len(var) == 30
        ratios = var[1:] / var[:-1]
        factors.setdefault(scheme, []).append(float(np.exp(np.log(ratios).mean())))
    return {scheme: float(np.median(values)) for scheme, values in factors.items()}


def test_theory_kaiming_keeps_variance(deep_relu_factors):
    assert deep_relu_factors["kaiming"] == pytest.approx(1.0, abs=0.05)


def test_theory_xavier_gain_one_halves_variance(deep_relu_factors):
    assert deep_relu_factors["xavier gain 1"] == pytest.approx(0.5, abs=0.03)


def test_theory_pytorch_default_sixth(deep_relu_factors):
    # U(±1/sqrt(fan_in)): variance 1/(3 fan_in) per weight, times fan_in, times 1/2 from ReLU
    assert deep_relu_factors["default"] == pytest.approx(1 / 6, abs=0.02)


def test_theory_xavier_preset_uses_relu_gain(deep_relu_factors):
    # gain sqrt(2) with equal fans: the same std as Kaiming
    assert deep_relu_factors["xavier preset"] == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------- reproducibility


def test_same_experiment_twice_identical():
    exp = small()
    a, b = run(exp), run(Experiment.from_dict(SMALL))
    pd.testing.assert_frame_equal(a.layers, b.layers, check_exact=True)
    pd.testing.assert_frame_equal(a.params, b.params, check_exact=True)
    pd.testing.assert_frame_equal(a.histograms, b.histograms, check_exact=True)


def test_different_seeds_differ():
    layers = run(small()).layers
    s0 = layers[(layers["seed"] == 0) & (layers["scheme"] == "Xavier")]
    s1 = layers[(layers["seed"] == 1) & (layers["scheme"] == "Xavier")]
    assert len(s0) == len(s1) == 6
    assert not np.array_equal(s0["act_var"].to_numpy(), s1["act_var"].to_numpy())
    assert (s0["act_var"].to_numpy() != s1["act_var"].to_numpy()).all()


def test_every_scheme_gets_the_same_input_per_seed(monkeypatch):
    seen: list[torch.Tensor] = []
    real = experiment_module.measure

    def spy(model, x, *args, **kwargs):
        seen.append(x.clone())
        return real(model, x, *args, **kwargs)

    monkeypatch.setattr(experiment_module, "measure", spy)
    exp = small(seeds=[3, 4])
    run(exp)
    assert len(seen) == 4  # seed-major: (3, Kaiming), (3, Xavier), (4, Kaiming), (4, Xavier)
    assert torch.equal(seen[0], seen[1])
    assert torch.equal(seen[2], seen[3])
    assert not torch.equal(seen[0], seen[2])
    assert torch.equal(seen[0], make_input(exp, 3))


def test_two_identical_schemes_give_identical_rows():
    rules = [{"layers": "Linear", "weight": "kaiming_uniform"}]
    exp = small(schemes=[{"name": "a", "rules": rules}, {"name": "b", "rules": rules}])
    layers = run(exp).layers
    cols = ["act_mean", "act_var", "grad_var"]
    a = layers[layers["scheme"] == "a"][cols].reset_index(drop=True)
    b = layers[layers["scheme"] == "b"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_build_initialized_bit_identical():
    exp = small()
    for scheme in exp.schemes:
        m1, t1 = build_initialized(exp, scheme, 5)
        m2, t2 = build_initialized(exp, scheme, 5)
        for (n, p), (_, q) in zip(m1.named_parameters(), m2.named_parameters(), strict=True):
            assert torch.equal(p, q), (scheme.name, n)
        pd.testing.assert_frame_equal(t1, t2, check_exact=True)
        m3, _ = build_initialized(exp, scheme, 6)
        assert not torch.equal(m1.fc1.weight, m3.fc1.weight)
    # the global RNG is neither used nor disturbed
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_initialized(exp, exp.schemes[0], 5)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- independent streams


def test_stream_seed_differs_per_purpose_and_seed():
    purposes = ["model", "init", "input", "cotangent"]
    seeds = {stream_seed(s, p) for s in (0, 1) for p in purposes}
    assert len(seeds) == 8
    assert stream_seed(0, "input") == stream_seed(0, "input")
    assert all(0 <= s < 2**63 for s in seeds)


def test_make_input_comes_from_its_own_stream():
    exp = small(input={"batch_size": 8, "mean": 2.0, "std": 3.0})
    x = make_input(exp, 7)
    g = torch.Generator().manual_seed(stream_seed(7, "input"))
    assert torch.equal(x, torch.empty(8, 16).normal_(2.0, 3.0, generator=g))
    u = make_input(small(input={"batch_size": 8, "distribution": "uniform", "low": -2,
                                "high": 5}), 7)  # fmt: skip
    assert u.min() >= -2 and u.max() <= 5 and u.shape == (8, 16)


def test_first_layer_variance_not_doubled():
    width = 256
    exp = Experiment.from_dict({
        "model": {"name": "mlp", "depth": 2, "width": width, "activation": "identity",
                  "bias": False},
        "input": {"batch_size": 256, "std": 1.0},
        "backward": False,
        "seeds": [0, 1, 2],
        "schemes": [{"name": "n", "rules": [{"layers": "Linear", "weight": {
            "method": "normal", "std": 1 / math.sqrt(width)}}]}],
    })  # fmt: skip
    layers = run(exp).layers
    first = layers[layers["layer"] == "fc1"]["act_var"]
    assert len(first) == 3
    for var in first:
        assert var == pytest.approx(1.0, abs=0.1)


# ---------------------------------------------------------------- errors


def base(**changes):
    d = {
        "model": {"name": "mlp", "bias": True, "depth": 2, "width": 8},
        "schemes": [{"preset": "zeros"}],
    }
    return {**d, **changes}


LENET = {"name": "lenet"}
ERRORS = [
    (base(colour="red"), r"^colour: unknown field; allowed: model, input"),
    (base(input={"batch_sise": 4}), r"^input\.batch_sise: unknown field; allowed: batch_size"),
    (base(input={"batch_size": 0}), r"^input\.batch_size:"),
    (base(input={"batch_size": 2.5}), r"^input\.batch_size:"),
    (base(backward="yes"), r"^backward:"),
    (base(schemes=[{"name": "a", "preset": "zeros"}, {"name": "a", "preset": "recipe"}]),
     r"schemes\.1\.name: 'a' is used twice"),
    (base(schemes=[{"preset": "nope"}]), r"^schemes\.0\.preset: unknown preset 'nope'"),
    (base(schemes=[]), r"^schemes:"),
    (base(schemes=[{"name": "s", "rules": [{"layers": "Linear", "weight": {
        "method": "normal", "std": -1}}]}]), r"^schemes\.0\.rules\.0\.weight\.std:"),
    (base(model={"name": "resnet50"}), r"^model\.name: unknown model 'resnet50'"),
    (base(model={"name": "mlp", "bias": True, "depth": 0}), r"^model\.depth:"),
    (base(model={"name": "mlp", "bias": True, "depth": 3, "widths": [4, 8]}),
     r"^model\.depth: 3 disagrees with widths"),
    (base(model={"name": "mlp", "bias": True, "colour": 1}), r"model: unknown parameter 'colour'"),
    (base(seeds=[1, 1]), r"^seeds:"),
    (base(seeds=[]), r"^seeds:"),
    (base(input={"distribution": "uniform", "low": 1, "high": 0}), r"^input.low: must be"),
    (base(model=LENET, input={"shape": [3, 28, 28]}), r"input\.shape: lenet expects \[3, 32, 32\]"),
    (base(input={"distribution": "tokens"}), r"input\.distribution: mlp takes normal or uniform"),
]  # fmt: skip


@pytest.mark.parametrize(("d", "pattern"), ERRORS)
def test_errors_are_value_errors_with_the_field(d, pattern):
    with pytest.raises(ValueError, match=pattern):
        Experiment.from_dict(d)


@pytest.mark.parametrize(
    ("d", "start"),
    [(base(model=LENET, input={"shape": [3, 28, 28]}), "input.shape:"),
     (base(input={"distribution": "tokens"}), "input.distribution:"),
     (base(model={"name": "mlp", "bias": True, "colour": 1}), "model: unknown parameter 'colour'")],
)  # fmt: skip
def test_model_level_errors_start_with_the_field(d, start):
    with pytest.raises(ValueError) as info:
        Experiment.from_dict(d)
    assert str(info.value).startswith(start)


def test_bad_json_and_non_object():
    with pytest.raises(ValueError, match="not valid JSON"):
        Experiment.from_text('{"model": ')
    with pytest.raises(ValueError, match="must be a JSON object; got list"):
        Experiment.from_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        Experiment.from_dict("mlp")


def test_from_json_reads_a_file(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(small().to_json(), encoding="utf-8")
    assert Experiment.from_json(path).to_dict() == small().to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        Experiment.from_json(bad)


def test_invalid_scheme_for_model_raises_at_run_before_any_probe(monkeypatch):
    calls = []
    monkeypatch.setattr(experiment_module, "measure", lambda *a, **k: calls.append("probe"))
    monkeypatch.setattr(
        experiment_module, "build_initialized", lambda *a, **k: calls.append("build")
    )
    exp = Experiment.from_dict({
        "model": {"name": "lenet"},
        "schemes": [{"name": "fine", "preset": "kaiming_normal"},
                    {"name": "identity", "rules": [{"layers": "Conv", "weight": "eye"}]}],
    })  # fmt: skip
    with pytest.raises(ValueError, match=r"scheme 'identity'.*conv1\.weight.*\(6, 3, 5, 5\)"):
        run(exp)
    assert calls == []


# ---------------------------------------------------------------- round trips


def test_json_round_trip():
    exp = Experiment.from_dict({
        **SMALL,
        "model": {"name": "mlp", "widths": [16, 8, 4], "activation": "leaky_relu",
                  "norm": "layernorm"},
        "input": {"batch_size": 5, "distribution": "uniform", "low": -0.5, "high": 2.0},
        "mode": "eval",
        "bins": 16,
    })  # fmt: skip
    back = Experiment.from_text(exp.to_json())
    assert back.to_dict() == exp.to_dict()
    assert back.model["depth"] == 2
    assert back.input.distribution == "uniform"
    assert back.to_dict()["schemes"][0]["preset"] == "kaiming_normal"
    # a preset scheme comes back with the rules it had (for the model's activation)
    assert back.schemes[0].rules == exp.schemes[0].rules
    assert back.schemes[0].rules[0].weight.kwargs["nonlinearity"] == "leaky_relu"


def test_design_example_parses():
    exp = Experiment.from_text(DESIGN_EXAMPLE)
    assert [s.name for s in exp.schemes] == ["PyTorch default", "Xavier, tanh gain"]
    assert exp.schemes[0].rules == ()
    assert exp.schemes[1].rules[0].weight.gain() == pytest.approx(5 / 3)
    assert exp.seeds == (0, 1, 2)
    assert exp.input_shape() == (256,)
    assert Experiment.from_text(exp.to_json()).to_dict() == exp.to_dict()


def test_preset_gain_follows_model_activation():
    exp = Experiment.from_dict({**SMALL, "schemes": [{"preset": "xavier_normal_gain"}]})
    assert exp.schemes[0].rules[0].weight.gain() == pytest.approx(5 / 3)  # tanh model


# ---------------------------------------------------------------- results


def test_results_columns_exactly():
    res = run(small())
    assert list(res.layers.columns) == [
        "scheme", "seed", "order", "layer", "type", "role", "act_mean", "act_var", "act_std",
        "frac_zero", "frac_dead", "frac_saturated", "nonfinite", "grad_var",
    ]  # fmt: skip
    assert list(res.params.columns) == [
        "scheme", "seed", "param", "layer", "type", "shape", "method", "fan_in", "fan_out",
        "gain", "expected_std", "mean", "std", "grad_var",
    ]  # fmt: skip
    assert list(res.histograms.columns) == [
        "scheme", "seed", "kind", "name", "bin_left", "bin_right", "count",
    ]  # fmt: skip
    assert len(res.layers) == 2 * 2 * 6
    assert len(res.params) == 2 * 2 * 6
    assert set(res.histograms["kind"]) == {"activation", "gradient", "weight"}
    weights = res.histograms[res.histograms["kind"] == "weight"]
    assert set(weights["name"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert res.layers["grad_var"].notna().all()
    assert res.params["grad_var"].notna().all()
    tanh = res.layers[res.layers["type"] == "Tanh"]
    assert tanh["frac_saturated"].notna().all()


def test_backward_off_gives_nan_gradients():
    res = run(small(backward=False, seeds=[0]))
    assert res.layers["grad_var"].isna().all()
    assert res.params["grad_var"].isna().all()
    assert "gradient" not in set(res.histograms["kind"])


@pytest.mark.parametrize(
    ("weight", "expected"),
    [({"method": "kaiming_normal", "nonlinearity": "relu"}, math.sqrt(2 / 256)),
     ({"method": "xavier_uniform", "gain": 1.0}, math.sqrt(2 / 512)),
     ({"method": "lecun_normal"}, math.sqrt(1 / 256))],
)  # fmt: skip
def test_measured_std_meets_expected_std(weight, expected):
    exp = Experiment.from_dict({
        "model": {"name": "mlp", "depth": 2, "width": 256, "bias": False},
        "input": {"batch_size": 4},
        "schemes": [{"name": "s", "rules": [{"layers": "Linear", "weight": weight}]}],
    })  # fmt: skip
    params = run(exp).params
    assert len(params) == 2
    for _, row in params.iterrows():
        assert row["expected_std"] == pytest.approx(expected, rel=1e-9)
        assert row["std"] == pytest.approx(row["expected_std"], rel=0.05)
        assert row["mean"] == pytest.approx(0.0, abs=0.05 * expected)
        assert (row["fan_in"], row["fan_out"]) == (256, 256)


def test_params_grad_var_matches_an_independent_backward():
    exp = small(seeds=[2])
    scheme = exp.schemes[1]
    res = run(exp)
    model, _ = build_initialized(exp, scheme, 2)
    x = make_input(exp, 2)
    out = model(x)
    g = torch.Generator().manual_seed(stream_seed(2, "cotangent"))
    out.backward(torch.randn(out.shape, generator=g))
    rows = res.params[res.params["scheme"] == scheme.name].set_index("param")
    for name, p in model.named_parameters():
        want = float(p.grad.double().var(unbiased=False))
        assert rows.loc[name, "grad_var"] == pytest.approx(want, rel=1e-4), name


def test_eval_mode_and_progress():
    messages = []
    exp = small(mode="eval", seeds=[0])
    run(exp, progress=lambda f, m: messages.append((f, m)))
    assert messages[0] == (0.0, "Kaiming, seed 0")
    assert messages[-1] == (1.0, "done")
    assert [f for f, _ in messages] == sorted(f for f, _ in messages)


def test_lenet_runs_one_row_per_call():
    exp = Experiment.from_dict({
        "model": {"name": "lenet"},
        "input": {"batch_size": 4},
        "schemes": [{"name": "recipe", "preset": "recipe"}],
    })  # fmt: skip
    res = run(exp)
    assert list(res.layers["layer"]) == [
        "conv1", "conv1.relu", "pool", "conv2", "conv2.relu", "pool",
        "fc1", "fc1.relu", "fc2", "fc2.relu", "fc3",
    ]  # fmt: skip
    assert make_input(exp, 0).shape == (4, 3, 32, 32)
    rows = res.params.set_index("param")
    assert rows.loc["fc1.weight", "method"] == "normal(mean=0.0, std=0.01)"
    assert rows.loc["fc1.weight", "std"] == pytest.approx(0.01, rel=0.05)
    assert rows.loc["conv1.weight", "method"] == "xavier_normal(gain=1.0)"
