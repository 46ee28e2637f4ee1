"""Layer health statuses and verdict sentences on synthetic `layers` tables."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import initlab
from initlab.health import layer_health, numbered, verdicts, with_depth


def make_layers(variances: dict[str, list[float]], seeds=(0,), noise: float = 0.0, **extra):
    """[Linear → Tanh] per listed variance; the Tanh rows get variance 0.5 (ignored by verdicts).

    `extra` overrides columns with a per-layer list for the Linear rows (e.g. nonfinite=[...]).
    """
    rng = np.random.default_rng(0)
    rows = []
    for scheme, weight_vars in variances.items():
        for seed in seeds:
            for d, var in enumerate(weight_vars):
                var = var * (1 + noise * rng.uniform(-1, 1))
                linear = {"type": "Linear", "role": "weight", "act_var": var}
                linear |= {column: values[d] for column, values in extra.items()}
                tanh = {"type": "Tanh", "role": "activation", "act_var": 0.5}
                for k, row in enumerate([linear, tanh]):
                    base = {"scheme": scheme, "seed": seed, "order": 2 * d + k}
                    base |= {"layer": f"layers.{2 * d + k}", "act_mean": 0.0, "frac_zero": 0.0}
                    base |= {"frac_saturated": np.nan, "nonfinite": 0, "grad_var": np.nan}
                    rows.append(base | row)
    return pd.DataFrame(rows)


def factor_in(sentence: str) -> float:
    return float(re.search(r"×([0-9.e+-]+) per layer", sentence).group(1))


def test_with_depth_counts_selected_rows_per_scheme_and_seed():
    layers = make_layers({"b": [1.0] * 3, "a": [1.0] * 3}, seeds=(0, 1))
    rows = with_depth(layers, "weight")
    assert list(rows["depth"]) == [1, 2, 3] * 4
    assert list(rows["scheme"].unique()) == ["b", "a"]
    assert list(with_depth(layers, "all")["depth"][:6]) == [1, 2, 3, 4, 5, 6]


def test_statuses_follow_thresholds():
    variances = [1.0, 1e-8, 1e8, np.inf, 1.0, 1.0]
    layers = make_layers(
        {"s": variances},
        nonfinite=[0, 0, 0, 10, 4, 0],
        frac_zero=[0.0, 0.0, 0.0, 0.0, 0.0, 0.95],
    )
    health = layer_health(layers)
    weight = health[health["role"] == "weight"]
    expected = ["ok", "vanishing", "exploding", "non-finite", "non-finite", "dead"]
    assert list(weight["status"]) == expected
    assert set(health.loc[health["role"] == "activation", "status"]) == {"ok"}


def test_health_is_median_over_seeds_but_nonfinite_is_any_seed():
    layers = make_layers({"s": [1.0, 1.0]}, seeds=(0, 1, 2))
    first = layers.index[layers["order"] == 0]
    layers.loc[first, "act_var"] = [1.0, 2.0, 100.0]
    layers.loc[first[2], "nonfinite"] = 3
    health = layer_health(layers)
    row = health.iloc[0]
    assert row["act_var"] == 2.0 and row["nonfinite"] == 3 and row["seeds"] == 3
    assert row["status"] == "non-finite"
    assert list(health["order"]) == [0, 1, 2, 3]


def test_health_keeps_experiment_order_and_handles_empty():
    health = layer_health(make_layers({"z": [1.0] * 2, "a": [1.0] * 2}))
    assert list(health["scheme"]) == ["z"] * 4 + ["a"] * 4
    empty = layer_health(make_layers({"z": [1.0]}).iloc[:0])
    assert empty.empty and "status" in empty.columns


def test_verdict_shrink_grow_flat():
    depths = np.arange(1, 11)
    layers = make_layers({"shrink": list(0.5**depths), "grow": list(2.0**depths), "flat": [1] * 10})
    said = verdicts(layers)
    assert list(said) == ["shrink", "grow", "flat"]
    assert said["shrink"].startswith("activations shrink ×0.5 per layer")
    assert "at layer 10 (layers.18)" in said["shrink"]
    assert "0.000977× the input's" in said["shrink"]
    assert said["grow"].startswith("activations grow ×2 per layer")
    assert "1.02e+03× the input's" in said["grow"]
    assert said["flat"].startswith("activations stay flat (×1.00 per layer)")


def test_verdict_relative_to_input_variance():
    layers = make_layers({"s": [4.0 * 0.1**d for d in range(1, 9)]})
    assert (
        "at layer 8 (layers.14) their variance is 1e-08× the input's" in verdicts(layers, 4.0)["s"]
    )
    with pytest.raises(ValueError, match="input_var"):
        verdicts(layers, -1.0)
    assert verdicts(layers, 0.0)["s"].startswith("the input is constant (variance 0)")


def test_verdict_without_input_variance_compares_with_layer_one():
    # Token ids have no meaningful variance: the embedding (layer 1) is the reference.
    layers = make_layers({"s": [2.0 * 0.1**d for d in range(8)]})
    assert (
        "at layer 8 (layers.14) their variance is 1e-07× layer 1's" in verdicts(layers, None)["s"]
    )


def test_verdict_factor_from_noisy_seeds_is_close():
    depths = np.arange(1, 21)
    layers = make_layers({"s": list(0.8**depths)}, seeds=(0, 1, 2), noise=0.1)
    assert factor_in(verdicts(layers)["s"]) == pytest.approx(0.8, rel=0.02)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_verdict_names_first_non_finite_layer(bad):
    variances = [2.0, 4.0, 8.0, bad, bad]
    said = verdicts(make_layers({"s": variances}))["s"]
    assert said.startswith("activations become non-finite at layer 4 (layers.6)")
    assert "after growing ×2 per layer" in said


def test_verdict_non_finite_count_in_one_seed_counts():
    layers = make_layers({"s": [1.0, 1.0, 1.0]}, seeds=(0, 1, 2))
    layers.loc[(layers["seed"] == 1) & (layers["order"] == 4), "nonfinite"] = 7
    expected = "activations become non-finite at layer 3 (layers.4)"
    flat = "staying flat (×1.00 per layer, seeds 1.00–1.00)"
    assert verdicts(layers)["s"] == f"{expected}, after {flat}"


def test_verdict_exact_zeros_and_first_layer_events():
    said = verdicts(make_layers({"z": [0.1, 0.01, 0.0, 0.0], "n": [np.nan, 1.0]}))
    assert said["z"].startswith("activations vanish to exact zeros at layer 3 (layers.4)")
    assert "after shrinking ×0.1 per layer" in said["z"]
    assert said["n"] == "activations become non-finite at layer 1 (layers.0)"


def test_verdict_degenerate_tables():
    one = verdicts(make_layers({"s": [0.5]}))["s"]
    assert one == "one layer with weights (layers.0): its activation variance is 0.5× the input's"
    no_weights = make_layers({"s": [1.0, 1.0]}).assign(role="activation")
    assert verdicts(no_weights) == {"s": "no layers with weights to judge"}
    assert verdicts(make_layers({"s": [1.0]}).iloc[:0]) == {}


# ---------------------------------------------------------------- honest verdicts (issue 10)


def per_seed_layers(factors: list[float], depth: int = 8, role: str = "weight") -> pd.DataFrame:
    """One scheme; seed i's variance is factors[i] ** depth (a clean per-seed trend)."""
    rows = []
    for seed, f in enumerate(factors):
        for d in range(depth):
            rows.append({"scheme": "s", "seed": seed, "order": d, "layer": f"l{d}",
                         "type": "Linear", "role": role, "act_mean": 0.0,
                         "act_var": f ** (d + 1) if role == "weight" else 1.0 + f * d,
                         "frac_zero": 0.0, "frac_saturated": np.nan, "nonfinite": 0,
                         "grad_var": np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_trend_is_called_only_when_every_seed_shows_it():
    disagree = verdicts(per_seed_layers([0.91, 0.97]))["s"]
    assert disagree.startswith("activations show no trend the seeds agree on (×0.94"), disagree
    assert "seeds 0.91–0.97" in disagree
    agree = verdicts(per_seed_layers([0.49, 0.51]))["s"]
    assert agree.startswith("activations shrink ×0.501 per layer (seeds 0.49–0.51)"), agree
    flat = verdicts(per_seed_layers([0.99, 1.01]))["s"]
    assert flat.startswith("activations stay flat (×1.00 per layer, seeds 0.99–1.01)"), flat


def test_the_factor_comes_from_the_seeds_mean_variance_not_their_ratios():
    # seed 0 flat at 1, seed 1 flat at 100: each seed's ratio is 1, and so is the mean's trend
    rows = per_seed_layers([1.0, 1.0])
    rows.loc[rows["seed"] == 1, "act_var"] = 100.0
    assert "×1.00 per layer" in verdicts(rows)["s"]


def test_saturation_is_the_story_when_units_are_saturated():
    layers = make_layers({"s": [1.0, 1.0, 1.0]})
    layers["frac_saturated"] = 0.88
    said = verdicts(layers)["s"]
    assert said.startswith("saturated: 88% of bounded activations sit at their bounds"), said


def test_a_constant_input_is_blamed_on_the_input():
    said = verdicts(make_layers({"a": [0.0, 0.0], "b": [1.0, 1.0]}), 0.0)
    assert all(v.startswith("the input is constant (variance 0)") for v in said.values())


def test_blocks_are_judged_by_their_increment_per_block():
    said = verdicts(per_seed_layers([0.1, 0.12], role="block"))["s"]
    assert said.startswith("the residual stream grows +0.11 per block (linear, seeds +0.1–+0.12)")
    assert "0.11× l0's variance per block: 1 at l0 → 1.77 at l7" in said


def _params(zeroed: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"scheme": "s", "seed": 0, "param": f"{layer}.weight", "layer": layer,
                          "mean": 0.0, "std": 0.0 if layer in zeroed else 0.1}
                         for layer in ("fc1", "fc2")])  # fmt: skip


def _chain(**columns) -> pd.DataFrame:
    base = {"scheme": "s", "seed": 0, "act_mean": 0.0, "frac_saturated": np.nan, "nonfinite": 0}
    names = [("fc1", "Linear", "weight"), ("act1", "ReLU", "activation"),
             ("fc2", "Linear", "weight"), ("act2", "ReLU", "activation")]  # fmt: skip
    rows = [{**base, "order": i, "layer": n, "type": t, "role": r} for i, (n, t, r) in
            enumerate(names)]  # fmt: skip
    return pd.DataFrame(rows).assign(**columns)


def test_zero_by_design_is_not_dead_and_dead_is_per_unit():
    zeros = _chain(act_var=[0.0, 0.0, 1.0, 0.5], frac_zero=[1.0, 1.0, 0.0, 0.5],
                   frac_dead=[1.0, 1.0, 0.0, 0.6], grad_var=1.0)  # fmt: skip
    table = layer_health(zeros, params=_params(["fc1"]))
    assert list(table["status"]) == ["zero by design", "zero by design", "ok", "dead"]
    # without the params table nothing says it was on purpose
    assert list(layer_health(zeros)["status"])[:2] == ["dead", "dead"]
    half_zero = _chain(act_var=1.0, frac_zero=0.5, frac_dead=0.0, grad_var=1.0)
    assert set(layer_health(half_zero)["status"]) == {"ok"}  # ReLUs off half the time: alive


def test_gradients_are_flagged_against_the_outputs_gradient():
    table = layer_health(_chain(act_var=1.0, frac_zero=0.0, frac_dead=0.0,
                                grad_var=[1e-9, 1.0, 1e9, 1.0]))  # fmt: skip
    assert list(table["status"]) == ["vanishing gradients", "ok", "exploding gradients", "ok"]


def test_activations_are_judged_against_the_input_variance():
    layers = _chain(act_var=[4e-6, 4e-6, 4e-6, 4e-6], frac_zero=0.0, frac_dead=0.0, grad_var=1.0)
    assert set(layer_health(layers, input_var=1.0)["status"]) == {"ok"}
    assert set(layer_health(layers, input_var=100.0)["status"]) == {"vanishing"}


def test_the_health_table_numbers_depth_as_the_verdicts_do() -> None:
    """LeNet: the verdict says "layer 5 (fc3)"; the table's depth 5 is fc3, and only the
    layers with weights are numbered (relu and pool rows have none)."""
    spec = {"model": {"name": "lenet"}, "input": {"batch_size": 8}}
    exp = initlab.Experiment.from_dict(
        {**spec, "schemes": [{"name": "d", "preset": "pytorch_default"}]}
    )
    layers = initlab.run(exp).layers
    table = numbered(layer_health(layers), "weight")
    depth, name = re.search(r"layer (\d+) \((\w+)\)", verdicts(layers)["d"]).groups()
    assert table.loc[table["depth"] == depth, "layer"].tolist() == [name] == ["fc3"]
    assert set(table.loc[table["role"] != "weight", "depth"]) == {""}
    assert table.loc[table["role"] == "weight", "depth"].tolist() == ["1", "2", "3", "4", "5"]
    assert list(table.columns[:4]) == ["scheme", "depth", "layer", "status"]
    assert "order" not in table
