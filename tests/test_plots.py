"""Figure builders: traces, axes, titles, facets and colours on synthetic results, never pixels."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plotly.colors import hex_to_rgb

from initlab import plots
from initlab.plots import grad_variance_by_depth, histogram_grid, scheme_colors, variance_by_depth

SCHEMES = {"Xavier": 0.5, "Kaiming": 2.0}  # deliberately not alphabetical
SEEDS = (0, 1, 2)
DEPTH = 5


def make_layers(backward: bool = True) -> pd.DataFrame:
    """DEPTH × [Linear → ReLU] per (scheme, seed); weight-layer variance = factor**depth × noise."""
    rng = np.random.default_rng(0)
    rows = []
    for scheme, factor in SCHEMES.items():
        for seed in SEEDS:
            for d in range(DEPTH):
                for k, (typ, role) in enumerate([("Linear", "weight"), ("ReLU", "activation")]):
                    var = factor ** (d + 1) * rng.uniform(0.9, 1.1) / (k + 1)
                    order = 2 * d + k
                    rows.append(
                        {
                            "scheme": scheme,
                            "seed": seed,
                            "order": order,
                            "layer": f"layers.{order}",
                            "type": typ,
                            "role": role,
                            "act_mean": 0.0,
                            "act_var": var,
                            "act_std": var**0.5,
                            "frac_zero": 0.5 * k,
                            "frac_saturated": np.nan,
                            "nonfinite": 0,
                            "grad_var": 1 / var if backward else np.nan,
                        }
                    )
    return pd.DataFrame(rows)


def make_histograms(names: int = 3, bins: int = 10) -> pd.DataFrame:
    """Normal samples binned per (scheme, seed, kind, name); each scheme has its own range."""
    rng = np.random.default_rng(1)
    rows = []
    for scheme, spread in {"Xavier": 1.0, "Kaiming": 3.0}.items():
        for seed in (0, 1):
            for kind in ("activation", "weight"):
                for i in range(names):
                    name = f"layers.{2 * i}" + (".weight" if kind == "weight" else "")
                    counts, edges = np.histogram(rng.normal(0, spread, 1000), bins=bins)
                    for c, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True):
                        row = {"scheme": scheme, "seed": seed, "kind": kind, "name": name}
                        rows.append(row | {"bin_left": lo, "bin_right": hi, "count": c})
    return pd.DataFrame(rows)


def lines(fig):
    """The median lines (the band edges are hidden from the legend)."""
    return [t for t in fig.data if t.showlegend is not False]


def annotation_texts(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_plots_imports_neither_torch_nor_streamlit():
    tree = ast.parse(Path(plots.__file__).read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"torch", "streamlit"}


def test_scheme_colors_are_stable_distinct_and_ignore_repeats():
    colors = scheme_colors(["b", "a", "b", "c"])
    assert list(colors) == ["b", "a", "c"]
    assert len(set(colors.values())) == 3
    assert scheme_colors(["b", "a", "c"]) == colors
    many = scheme_colors([f"s{i}" for i in range(50)])  # more schemes than colours: cycles
    assert len(many) == 50 and set(many.values()) <= set(plots.PALETTE)


def test_variance_by_depth_one_line_per_scheme_in_experiment_order():
    fig = variance_by_depth(make_layers())
    assert [t.name for t in lines(fig)] == list(SCHEMES)
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.title.text.startswith("depth")
    assert "Activation variance" in fig.layout.title.text
    for line in lines(fig):
        assert list(line.x) == list(range(1, DEPTH + 1))


def test_median_line_and_band_match_an_independent_computation():
    layers = make_layers()
    fig = variance_by_depth(layers)
    weights = layers[(layers["role"] == "weight") & (layers["scheme"] == "Kaiming")]
    per_seed = np.stack([g["act_var"].to_numpy() for _, g in weights.groupby("seed")])
    line = next(t for t in fig.data if t.name == "Kaiming")
    low = next(t for t in fig.data if t.name == "Kaiming min")
    high = next(t for t in fig.data if t.name == "Kaiming max")
    np.testing.assert_allclose(line.y, np.median(per_seed, axis=0))
    np.testing.assert_allclose(low.y, per_seed.min(axis=0))
    np.testing.assert_allclose(high.y, per_seed.max(axis=0))
    assert high.fill == "tonexty" and low.showlegend is False


def test_role_selects_rows_and_depth_counts_selected_rows():
    layers = make_layers()
    every = variance_by_depth(layers, role="all")
    after = variance_by_depth(layers, role="activation")
    assert list(lines(every)[0].x) == list(range(1, 2 * DEPTH + 1))
    assert list(lines(after)[0].customdata[:, 0]) == [f"layers.{2 * d + 1}" for d in range(DEPTH)]
    assert set(lines(after)[0].customdata[:, 1]) == {"ReLU"}
    with pytest.raises(ValueError, match="role must be one of"):
        variance_by_depth(layers, role="conv")


def test_colours_agree_between_lines_bands_and_histograms():
    expected = scheme_colors(list(SCHEMES))
    fig = variance_by_depth(make_layers())
    for line in lines(fig):
        assert line.line.color == expected[line.name]
        band = next(t for t in fig.data if t.name == f"{line.name} max")
        r, g, b = hex_to_rgb(expected[line.name])
        assert band.fillcolor == f"rgba({r}, {g}, {b}, 0.2)"
    grid = histogram_grid(make_histograms(), "activation")
    assert {t.name: t.marker.color for t in grid.data} == expected


def test_single_seed_has_no_band():
    fig = variance_by_depth(make_layers().query("seed == 0"))
    assert len(fig.data) == len(SCHEMES)


def test_zero_and_non_finite_values_become_gaps():
    layers = make_layers()
    weights = layers.index[layers["role"] == "weight"]
    layers.loc[weights[1::DEPTH], "act_var"] = 0.0  # depth 2 of every (scheme, seed)
    layers.loc[weights[2::DEPTH], "act_var"] = np.inf  # depth 3
    layers.loc[weights[3::DEPTH], "act_var"] = np.nan  # depth 4
    for line in lines(variance_by_depth(layers)):
        y = np.asarray(line.y, dtype=float)
        assert np.isnan(y[1:4]).all() and np.isfinite(y[[0, 4]]).all()


def test_nothing_plottable_gives_an_annotation():
    layers = make_layers().assign(act_var=0.0)
    fig = variance_by_depth(layers)
    assert len(fig.data) == 0
    assert "no finite positive values" in annotation_texts(fig)[0]
    layers = make_layers().assign(act_var=np.where(np.arange(60) % 2, np.nan, -np.inf))
    assert "no finite positive values" in annotation_texts(variance_by_depth(layers))[0]
    empty = variance_by_depth(make_layers().query("role == 'norm'"))
    assert "no layers with role" in annotation_texts(empty)[0]


def test_grad_variance_by_depth():
    fig = grad_variance_by_depth(make_layers())
    assert fig.layout.title.text.startswith("Gradient variance")
    assert fig.layout.yaxis.type == "log" and len(lines(fig)) == len(SCHEMES)
    off = grad_variance_by_depth(make_layers(backward=False))
    assert len(off.data) == 0 and "backward pass is off" in annotation_texts(off)[0]


def test_histogram_grid_facets():
    fig = histogram_grid(make_histograms(), "weight")
    names = [f"layers.{2 * i}.weight" for i in range(3)]
    # column titles, then row labels, then a std note per cell
    assert annotation_texts(fig)[: len(SCHEMES) + 3] == [*SCHEMES, *names]
    assert all(t.startswith("std ≈ ") for t in annotation_texts(fig)[len(SCHEMES) + 3 :])
    assert len(fig.data) == 3 * len(SCHEMES)
    assert fig.layout.title.text == "Weight histograms (seed 0)"
    # x axes are shared within a row (2 columns: x, x2 | x3, x4 | ...), not across rows
    assert fig.layout.xaxis2.matches == "x" and fig.layout.xaxis4.matches == "x3"
    assert fig.layout.xaxis3.matches is None
    assert len({(t.xaxis, t.yaxis) for t in fig.data}) == len(fig.data)


def test_histogram_grid_rows_names_and_seed():
    hist = make_histograms(names=12)
    assert len(histogram_grid(hist, "activation").data) == 8 * len(SCHEMES)
    assert len(histogram_grid(hist, "activation", max_rows=2).data) == 2 * len(SCHEMES)
    picked = histogram_grid(hist, "activation", names=["layers.6", "nope", "layers.0"])
    # rows in depth order, whatever order they were picked in
    assert annotation_texts(picked)[len(SCHEMES) : len(SCHEMES) + 2] == ["layers.0", "layers.6"]
    seed1 = histogram_grid(hist, "activation", seed=1)
    assert "seed 1" in seed1.layout.title.text
    assert not np.allclose(seed1.data[0].y, histogram_grid(hist, "activation").data[0].y)


def test_histogram_bars_are_densities():
    for bars in histogram_grid(make_histograms(), "activation").data:
        assert np.sum(np.asarray(bars.y) * np.asarray(bars.width)) == pytest.approx(1.0)


def test_histogram_grid_missing_kind_and_bad_kind():
    fig = histogram_grid(make_histograms(), "gradient")
    assert len(fig.data) == 0 and "no gradient histograms" in annotation_texts(fig)[0]
    with pytest.raises(ValueError, match="kind must be one of"):
        histogram_grid(make_histograms(), "bias")
