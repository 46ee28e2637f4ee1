"""Training figures: traces, axes, titles, bands and smoothing recomputed here from synthetic
tables (2 schemes × 2 seeds × 50 steps), never pixels."""

from __future__ import annotations

import ast
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from initlab import plots_training
from initlab.plots import scheme_colors
from initlab.plots_training import (
    accuracy_figure,
    activation_heatmap,
    ema_window,
    loss_figure,
    update_ratio_figure,
)

SCHEMES = ("Zeta", "Alpha")  # deliberately not alphabetical
SEEDS = (0, 1)
STEPS = 50
EVAL_EVERY = 10
RECORD_AT = (0, 10, 25, 49)
LAYERS = [("fc1", "Linear", "weight"), ("act1", "Tanh", "activation"), ("fc2", "Linear", "weight")]
PARAMS = [("fc1.weight", 2), ("fc1.bias", 1), ("fc2.weight", 2)]


def heldout_steps() -> list[int]:
    return sorted({*range(0, STEPS, EVAL_EVERY), STEPS - 1})


def make_training(schemes: tuple[str, ...] = SCHEMES, accuracy: bool = True) -> pd.DataFrame:
    """Noisy decaying train losses, smoother held-out ones; the second scheme learns slower."""
    rng = np.random.default_rng(0)
    rows = []
    for k, scheme in enumerate(schemes):
        for seed in SEEDS:
            for step in range(STEPS):
                loss = 2.3 * math.exp(-step / (15 + 10 * k)) + 0.1 + rng.uniform(0, 0.3)
                rows.append([scheme, seed, step, "train", loss, np.nan, int(rng.integers(1e6))])
            for step in heldout_steps():
                loss = 2.3 * math.exp(-step / (15 + 10 * k)) + 0.2 + rng.uniform(0, 0.05)
                acc = min(1.0, step / STEPS + rng.uniform(0, 0.1)) if accuracy else np.nan
                rows.append([scheme, seed, step, "heldout", loss, acc, -1])
    columns = ["scheme", "seed", "step", "split", "loss", "accuracy", "batch"]
    return pd.DataFrame(rows, columns=columns)


def make_layers(depth: int = 1) -> pd.DataFrame:
    """`depth` × LAYERS per (scheme, seed, record step), act_var log-uniform over 4 decades."""
    rng = np.random.default_rng(1)
    rows = []
    for scheme in SCHEMES:
        for seed in SEEDS:
            for step in RECORD_AT:
                for order in range(depth * len(LAYERS)):
                    name, typ, role = LAYERS[order % len(LAYERS)]
                    name = f"{name}.{order // len(LAYERS)}" if depth > 1 else name
                    var = 10 ** rng.uniform(-2, 2)
                    rows.append(
                        [scheme, seed, step, order, name, typ, role, 0.0, var, 0.0, 0.0, 1.0]
                    )
    columns = ["scheme", "seed", "step", "order", "layer", "type", "role"]
    columns += ["act_mean", "act_var", "frac_zero", "frac_dead", "grad_var"]
    return pd.DataFrame(rows, columns=columns)


def make_params() -> pd.DataFrame:
    """Update ratios around 1e-3 per (scheme, seed, record step, param); NaN at step 0."""
    rng = np.random.default_rng(2)
    rows = []
    for scheme in SCHEMES:
        for seed in SEEDS:
            for step in RECORD_AT:
                for param, ndim in PARAMS:
                    ratio = np.nan if step == 0 else 10 ** rng.uniform(-4, -2)
                    rows.append([scheme, seed, step, param, param.split(".")[0], ndim, ratio])
    columns = ["scheme", "seed", "step", "param", "layer", "ndim", "update_ratio"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(grad_norm=1.0, weight_std=0.1, update_std=frame["update_ratio"] * 0.1)


def ema_oracle(values: np.ndarray, window: int) -> np.ndarray:
    """y0 = x0, y_t = (1 - a) y_(t-1) + a x_t with a = 2 / (window + 1), a plain loop."""
    alpha = 2.0 / (window + 1)
    out = np.empty(len(values))
    out[0] = values[0]
    for t in range(1, len(values)):
        out[t] = (1 - alpha) * out[t - 1] + alpha * values[t]
    return out


def seed_emas(training: pd.DataFrame, scheme: str, window: int) -> np.ndarray:
    """Each seed's train loss in step order through `ema_oracle`, a row per seed."""
    curves = []
    for seed in SEEDS:
        rows = training[
            (training["scheme"] == scheme)
            & (training["seed"] == seed)
            & (training["split"] == "train")
        ].sort_values("step")
        curves.append(ema_oracle(rows["loss"].to_numpy(dtype=float), window))
    return np.array(curves)


def line(fig, scheme: str, split: str):
    found = [t for t in fig.data if t.name == html.escape(scheme) and t.meta == split]
    assert len(found) == 1, [(t.name, t.meta) for t in fig.data]
    return found[0]


def named(fig, name: str):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def annotation_texts(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


# ---------------------------------------------------------------- loss


def test_ema_window_is_two_percent_of_the_steps_and_at_least_five() -> None:
    assert [ema_window(n) for n in (1, 50, 250, 1000, 5000)] == [5, 5, 5, 20, 100]


def test_loss_figure_axes_titles_and_line_styles() -> None:
    fig = loss_figure(make_training())
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.type in (None, "linear")  # step 0 stays on the chart
    assert fig.layout.title.text.startswith("Loss during training")
    assert "EMA over 5 steps" in fig.layout.title.text
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == "loss"
    for scheme in SCHEMES:
        assert line(fig, scheme, "train").line.dash == "solid"
        assert line(fig, scheme, "heldout").line.dash == "dash"
        # one legend entry per scheme; the held-out line shares its group
        assert line(fig, scheme, "train").showlegend is True
        assert line(fig, scheme, "heldout").showlegend is False
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0
    keys = [t.name for t in fig.data if t.showlegend and t.legendgroup.startswith("key ")]
    assert keys == ["train (EMA over 5 steps)", "held-out (not smoothed)"]


def test_train_curve_is_the_mean_over_seeds_of_each_seeds_ema() -> None:
    training = make_training()
    fig = loss_figure(training)
    window = 5
    for scheme in SCHEMES:
        curves = seed_emas(training, scheme, window)
        train = line(fig, scheme, "train")
        np.testing.assert_array_equal(train.x, np.arange(STEPS))
        np.testing.assert_allclose(train.y, curves.mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            named(fig, f"{scheme} train min").y, curves.min(axis=0), atol=1e-12
        )
        np.testing.assert_allclose(
            named(fig, f"{scheme} train max").y, curves.max(axis=0), atol=1e-12
        )
        # the smoothing did something: the raw mean is further from a smooth curve
        raw = training[(training["scheme"] == scheme) & (training["split"] == "train")]
        raw_mean = raw.groupby("step")["loss"].mean().to_numpy()
        assert np.abs(np.diff(raw_mean, 2)).mean() > 2 * np.abs(np.diff(train.y, 2)).mean()


def test_heldout_curve_is_unsmoothed_mean_with_min_max_band() -> None:
    training = make_training()
    fig = loss_figure(training)
    heldout = training[training["split"] == "heldout"]
    for scheme in SCHEMES:
        stats = (
            heldout[heldout["scheme"] == scheme].groupby("step")["loss"].agg(["mean", "min", "max"])
        )
        curve = line(fig, scheme, "heldout")
        np.testing.assert_array_equal(curve.x, heldout_steps())
        np.testing.assert_allclose(curve.y, stats["mean"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(named(fig, f"{scheme} heldout min").y, stats["min"], atol=1e-12)
        high = named(fig, f"{scheme} heldout max")
        np.testing.assert_allclose(high.y, stats["max"], atol=1e-12)
        assert high.fill == "tonexty"


def test_reference_levels_for_floor_and_chance() -> None:
    fig = loss_figure(make_training(), floor=1.2344, chance=math.log(10), floor_note="entropy rate")
    floor = named(fig, "best achievable 1.234 (entropy rate)")
    chance = named(fig, "chance 2.303")
    assert list(floor.y) == [1.2344, 1.2344] and floor.line.dash == "dot"
    assert chance.y[0] == math.log(10) and list(chance.x) == [0, STEPS - 1]
    # levels a log axis cannot show are left out rather than raising
    plain = loss_figure(make_training(), floor=0.0, chance=math.nan)
    assert not [t for t in plain.data if (t.name or "").startswith(("best", "chance"))]


def test_scheme_order_and_colours_follow_the_table() -> None:
    fig = loss_figure(make_training())
    order = [t.name for t in fig.data if t.meta == "train"]
    assert order == list(SCHEMES)
    colors = scheme_colors(list(SCHEMES))
    for scheme in SCHEMES:
        assert line(fig, scheme, "train").line.color == colors[scheme]
        assert line(fig, scheme, "heldout").line.color == colors[scheme]


def test_scheme_names_are_escaped_in_every_figure() -> None:
    name = "<b>x</b>"
    training = make_training(schemes=(name, "plain"))
    escaped = html.escape(name, quote=False)
    loss = loss_figure(training)
    assert line(loss, name, "train").name == escaped == "&lt;b&gt;x&lt;/b&gt;"
    assert all(name not in (t.name or "") for t in loss.data)
    accuracy = accuracy_figure(training)
    assert escaped in [t.name for t in accuracy.data]
    params = make_params().replace({"scheme": {"Zeta": name}})
    assert escaped in annotation_texts(update_ratio_figure(params))
    heat = activation_heatmap(make_layers().replace({"scheme": {"Zeta": name}}))
    assert escaped in annotation_texts(heat) and escaped in [t.name for t in heat.data]
    assert name not in annotation_texts(heat)


# ---------------------------------------------------------------- loss edge cases


def test_empty_tables_say_no_training_yet() -> None:
    for fig in (
        loss_figure(pd.DataFrame()),
        loss_figure(make_training().iloc[:0]),
        accuracy_figure(pd.DataFrame()),
        update_ratio_figure(make_params().iloc[:0]),
        activation_heatmap(pd.DataFrame()),
    ):
        assert annotation_texts(fig) == ["no training yet"]
        assert fig.layout.title.text


def test_one_seed_has_no_band_and_one_step_draws_markers() -> None:
    training = make_training()
    one_seed = loss_figure(training[training["seed"] == 0])
    assert not [t for t in one_seed.data if (t.name or "").endswith((" min", " max"))]
    assert len([t for t in one_seed.data if t.meta in ("train", "heldout")]) == 4
    first = loss_figure(training[training["step"] == 0])
    assert line(first, "Zeta", "train").mode == "lines+markers"
    assert list(line(first, "Zeta", "heldout").x) == [0]
    assert accuracy_figure(training[training["step"] == 0]) is not None


def test_a_diverged_run_with_missing_rows_and_non_finite_losses() -> None:
    training = make_training()
    seed1 = (training["scheme"] == "Alpha") & (training["seed"] == 1)
    training = training[~seed1 | (training["step"] <= 20)].copy()  # nothing after it diverged
    at = seed1 & (training["step"] == 20)
    training.loc[at & (training["split"] == "train"), "loss"] = math.inf
    training.loc[at & (training["split"] == "heldout"), ["loss", "accuracy"]] = math.nan
    fig = loss_figure(training)
    train = line(fig, "Alpha", "train")
    assert np.isfinite(np.asarray(train.y, dtype=float)).all()
    assert list(train.customdata[:20]) == [2] * 20 and list(train.customdata[20:]) == [1] * 30
    heldout = line(fig, "Alpha", "heldout")
    alone = training[(training["scheme"] == "Alpha") & (training["seed"] == 0)]
    alone = alone[(alone["split"] == "heldout") & (alone["step"] >= 20)]
    np.testing.assert_allclose(heldout.y[2:], alone["loss"], atol=1e-12)  # seed 0 alone
    assert accuracy_figure(training) is not None


def test_only_non_finite_losses_give_a_note_not_an_error() -> None:
    training = make_training().assign(loss=math.nan)
    training.loc[training.index[::2], "loss"] = -math.inf
    fig = loss_figure(training)
    assert annotation_texts(fig) == ["no finite loss to plot: every recorded loss is non-finite"]


def test_bad_tables_raise_value_errors_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"training must have columns .*missing loss"):
        loss_figure(make_training().drop(columns="loss"))
    with pytest.raises(ValueError, match=r"split must be one of train, heldout; got \['test'\]"):
        loss_figure(make_training().replace({"split": {"heldout": "test"}}))
    with pytest.raises(ValueError, match=r"guide must be a finite number > 0"):
        update_ratio_figure(make_params(), guide=0.0)
    with pytest.raises(ValueError, match="role must be None or one of weight, norm"):
        activation_heatmap(make_layers(), role="all")
    with pytest.raises(ValueError, match="training_layers must have columns"):
        activation_heatmap(make_layers().drop(columns="act_var"))


# ---------------------------------------------------------------- accuracy


def test_accuracy_is_the_heldout_mean_with_band_and_none_without_accuracy() -> None:
    training = make_training()
    fig = accuracy_figure(training)
    assert fig.layout.title.text.startswith("Held-out accuracy")
    assert fig.layout.yaxis.title.text == "accuracy" and list(fig.layout.yaxis.range) == [0, 1.02]
    heldout = training[training["split"] == "heldout"]
    for scheme in SCHEMES:
        stats = (
            heldout[heldout["scheme"] == scheme]
            .groupby("step")["accuracy"]
            .agg(["mean", "min", "max"])
        )
        curve = line(fig, scheme, "accuracy")
        assert curve.line.dash == "dash"
        np.testing.assert_allclose(curve.y, stats["mean"], atol=1e-12)
        np.testing.assert_allclose(named(fig, f"{scheme} accuracy min").y, stats["min"], atol=1e-12)
        np.testing.assert_allclose(named(fig, f"{scheme} accuracy max").y, stats["max"], atol=1e-12)
    assert accuracy_figure(make_training(accuracy=False)) is None


# ---------------------------------------------------------------- update ratio


def test_update_ratio_lines_per_weight_matrix_and_scheme_with_the_guide() -> None:
    params = make_params()
    fig = update_ratio_figure(params)
    assert fig.layout.title.text.startswith("Update-to-weight ratio")
    assert annotation_texts(fig) == list(SCHEMES)  # one panel per scheme, in the table's order
    assert fig.layout.xaxis2.matches is None and fig.layout.yaxis2.matches == "y"  # shared y
    lines = [t for t in fig.data if t.name != "~1e-3"]
    assert sorted({t.name for t in lines}) == ["fc1.weight", "fc2.weight"]  # no bias (ndim 1)
    assert [t.showlegend for t in lines] == [True, True, False, False]
    weights = params[params["ndim"] >= 2].assign(log=np.log10(params["update_ratio"]))
    expected = weights.dropna().groupby(["scheme", "param", "step"])["log"].mean()
    for t in lines:
        scheme = SCHEMES[0] if t.xaxis == "x" else SCHEMES[1]
        want = expected.loc[(scheme, t.name)]
        np.testing.assert_array_equal(t.x, want.index)
        np.testing.assert_allclose(t.y, want.to_numpy(), atol=1e-12)
    guides = [t for t in fig.data if t.name == "~1e-3"]
    assert [t.xaxis for t in guides] == ["x", "x2"]
    assert all(list(t.y) == [-3.0, -3.0] and t.line.dash == "dash" for t in guides)
    label = update_ratio_figure(params, guide=2.5e-3).data[-1].name
    assert label == "~2.5e-3"


def test_update_ratio_without_weight_matrices_or_finite_ratios() -> None:
    params = make_params()
    biases = update_ratio_figure(params[params["ndim"] < 2])
    assert annotation_texts(biases)[0].startswith("no finite update ratios")
    first = update_ratio_figure(params[params["step"] == 0])  # before any update: all NaN
    assert annotation_texts(first)[0].startswith("no finite update ratios")
    one = update_ratio_figure(params[params["step"] == 10])
    assert {t.mode for t in one.data if t.name != "~1e-3"} == {"lines+markers"}


# ---------------------------------------------------------------- activation heatmap


def test_heatmap_z_is_log10_of_the_mean_over_seeds() -> None:
    layers = make_layers()
    fig = activation_heatmap(layers)
    heats = [t for t in fig.data if t.type == "heatmap"]
    assert [t.name for t in heats] == list(SCHEMES)
    weights = layers[layers["role"] == "weight"]
    for heat in heats:
        part = weights[weights["scheme"] == heat.name]
        expected = np.log10(part.groupby(["order", "step"])["act_var"].mean().unstack("step"))
        assert list(heat.x) == [str(s) for s in RECORD_AT]
        assert list(heat.y) == [1, 2]
        np.testing.assert_allclose(np.asarray(heat.z, dtype=float), expected.to_numpy(), atol=1e-12)
    assert fig.layout.yaxis.ticktext == ("1 · fc1", "2 · fc2")
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.xaxis.type == "category" and fig.layout.xaxis2.type == "category"
    assert fig.layout.title.text.startswith("Activation variance during training")


def test_heatmap_colour_scale_is_shared_with_one_colour_bar() -> None:
    layers = make_layers()
    heats = [t for t in activation_heatmap(layers, role=None).data if t.type == "heatmap"]
    every = np.concatenate([np.asarray(t.z, dtype=float).ravel() for t in heats])
    assert {t.zmin for t in heats} == {every.min()} and {t.zmax for t in heats} == {every.max()}
    assert [t.showscale for t in heats] == [False, True]
    assert all(np.asarray(t.z).shape == (len(LAYERS), len(RECORD_AT)) for t in heats)


def test_heatmap_steps_sort_numerically_and_missing_cells_are_gaps() -> None:
    layers = make_layers()
    layers = layers[~((layers["scheme"] == "Alpha") & (layers["step"] > 10))]  # diverged
    layers = pd.concat([layers.assign(step=layers["step"] + 100), layers])  # 100 before 0
    heats = [t for t in activation_heatmap(layers).data if t.type == "heatmap"]
    steps = [str(s) for s in sorted({*RECORD_AT, *(s + 100 for s in RECORD_AT)})]
    assert all(list(t.x) == steps for t in heats)
    alpha = np.asarray(heats[1].z, dtype=float)
    assert np.isnan(alpha[:, 2:4]).all() and np.isfinite(alpha[:, :2]).all()


def test_heatmap_edge_cases() -> None:
    layers = make_layers()
    deep = activation_heatmap(make_layers(depth=5), role="weight")  # 10 weight layers
    assert len(deep.layout.yaxis.ticktext) == 10
    deeper = activation_heatmap(make_layers(depth=5), role=None)  # 15 rows: integer ticks
    assert deeper.layout.yaxis.tickmode == "linear" and deeper.layout.yaxis.ticktext is None
    assert annotation_texts(activation_heatmap(layers, role="norm")) == [
        "no layers with role 'norm' to plot"
    ]
    one = activation_heatmap(layers[(layers["seed"] == 0) & (layers["step"] == 0)])
    heats = [t for t in one.data if t.type == "heatmap"]
    assert all(list(t.x) == ["0"] for t in heats) and heats[0].zmin < heats[0].zmax
    broken = activation_heatmap(layers.assign(act_var=math.inf))
    assert annotation_texts(broken) == ["no finite positive activation variance to plot"]


def test_plots_training_imports_neither_torch_nor_streamlit() -> None:
    tree = ast.parse(Path(plots_training.__file__).read_text(encoding="utf-8"))
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"torch", "streamlit"}
    assert imported <= {"__future__", "math", "numpy", "pandas", "plotly", "initlab"}


def test_the_line_is_the_mean_not_the_median_over_three_seeds() -> None:
    training = make_training()
    third = training[training["seed"] == 1].assign(seed=2)
    third = third.assign(loss=third["loss"] * np.where(third["split"] == "heldout", 3.0, 1.0))
    training = pd.concat([training, third], ignore_index=True)
    heldout = training[(training["split"] == "heldout") & (training["scheme"] == "Zeta")]
    stats = heldout.groupby("step")["loss"].agg(["mean", "median"])
    curve = line(loss_figure(training), "Zeta", "heldout")
    np.testing.assert_allclose(curve.y, stats["mean"], atol=1e-12)
    assert not np.allclose(stats["mean"], stats["median"])
