"""Figure layout numbers: the legend's rows and margins, the depth axis, the reference line and
the histogram cells' scales and notes, checked against independent recomputations."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

import initlab
from initlab import health, plots

LONG_NAMES = [f"scheme {i} " + "x" * 21 for i in range(4)]  # 4 names of 30 characters


def plotly_legend_rows(entry_px: int, count: int, plot_w: float) -> int:
    """plotly.js's horizontal grouped legend, replayed: a group of width `entry` + symbol
    (40) + gap (5) goes on a new row when it would end past the plot's width."""
    width, rows, x = plots.LEGEND_SYMBOL_PX + entry_px + plots.LEGEND_GAP_PX, 1, 0.0
    for _ in range(count):
        if x > 0 and x + width > plot_w:
            rows, x = rows + 1, 0.0
        x += width
    return rows


@pytest.mark.parametrize("width", [600, 700, 1000])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_legend_rows_match_plotly_wrapping(width: int, count: int) -> None:
    names = LONG_NAMES[:count] if count <= 4 else [f"s{i}" for i in range(count)]
    legend = plots.legend_layout(names, width)
    plot_w = width - plots.MARGIN_L - plots.MARGIN_R
    assert legend.rows == plotly_legend_rows(legend.entry_px, count, plot_w)
    assert legend.rows == math.ceil(count / legend.per_row)
    assert legend.height_px == legend.rows * plots.LEGEND_ROW_PX + plots.LEGEND_PAD_PX
    assert legend.entry_px >= max(plots.text_px(n) for n in names)


def test_four_long_names_need_more_rows_on_a_narrower_chart() -> None:
    assert plots.legend_layout(LONG_NAMES, 600).rows == 4
    assert plots.legend_layout(LONG_NAMES, 700).rows == 2
    assert plots.legend_layout(["a", "b"], 600).rows == 1
    with pytest.raises(ValueError, match="width must be at least"):
        plots.legend_layout(LONG_NAMES, 100)


def test_text_width_is_generous() -> None:
    # Arial/Helvetica set a lowercase letter in about 0.5 em, DejaVu Sans in 0.6 em at most
    assert plots.text_px("abcdefghkn", 10) >= 10 * 0.6 * 10
    assert plots.text_px("WWWW", 10) >= plots.text_px("wwww", 10) > plots.text_px("iiii", 10)
    assert plots.text_px("初期化", 10) == pytest.approx(30.0)


def layers_for(names: list[str], depth: int = 6) -> pd.DataFrame:
    rows = [
        {
            "scheme": scheme,
            "seed": seed,
            "order": d,
            "layer": f"fc{d + 1}",
            "type": "Linear",
            "role": "weight",
            "act_mean": 0.0,
            "act_var": 2.0 ** (d - k),
            "act_std": 1.0,
            "frac_zero": 0.0,
            "frac_saturated": np.nan,
            "nonfinite": 0,
            "grad_var": 1.0,
        }
        for k, scheme in enumerate(names)
        for seed in (0, 1)
        for d in range(depth)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("width", [600, 700])
def test_legend_sits_between_the_axis_title_and_the_figure_bottom(width: int) -> None:
    fig = plots.variance_by_depth(layers_for(LONG_NAMES), width=width)
    legend = plots.legend_layout(LONG_NAMES, width)
    layout = fig.layout
    assert layout.height == layout.margin.t + plots.PLOT_PX + layout.margin.b
    assert layout.legend.orientation == "h" and layout.legend.yanchor == "top"
    assert layout.legend.entrywidth == legend.entry_px and layout.legend.tracegroupgap == 0
    top = -layout.legend.y * plots.PLOT_PX  # px below the plot area where the legend starts
    axis = plots._axis_px(plots.depth_axis([f"fc{d}" for d in range(1, 7)], width))
    assert top >= axis, "below the tick labels and the axis title"
    assert top + legend.height_px <= layout.margin.b, "inside the figure"
    assert layout.margin.t >= 40 and layout.title.text.startswith("Activation variance")


def test_reference_line_at_the_input_variance() -> None:
    fig = plots.variance_by_depth(layers_for(["a", "b"]), input_var=0.25)
    ref = [t for t in fig.data if t.name and t.name.startswith("input variance")]
    assert len(ref) == 1 and ref[0].showlegend is False
    assert list(ref[0].y) == [0.25, 0.25] and ref[0].line.dash == "dot"
    assert list(ref[0].x) == list(fig.layout.xaxis.range) == [0.5, 6.5]
    assert ref[0].text[-1] == "input variance 0.25"
    for none in (None, 0.0, -1.0, float("nan"), float("inf")):
        fig = plots.variance_by_depth(layers_for(["a"]), input_var=none)
        assert not any(t.name.startswith("input variance") for t in fig.data)


def test_many_depths_get_integer_ticks_only() -> None:
    axis = plots.variance_by_depth(layers_for(["a"], depth=40)).layout.xaxis
    assert axis.tickmode == "linear" and axis.tickformat == "d"
    assert float(axis.dtick).is_integer() and 40 / axis.dtick <= 10
    assert [plots._integer_step(n) for n in (13, 20, 21, 50, 51, 199, 201)] == [
        2,
        2,
        5,
        5,
        10,
        20,
        50,
    ]


@pytest.fixture(scope="module")
def lenet() -> initlab.Results:
    tiny = {"layers": "Linear", "weight": {"method": "normal", "std": 1e-4}}
    schemes = [{"name": "Kaiming", "preset": "kaiming_normal"}, {"name": "tiny", "rules": [tiny]}]
    exp = {"model": {"name": "lenet"}, "input": {"batch_size": 4}, "seeds": [0, 1]}
    exp["schemes"] = schemes
    return initlab.run(initlab.Experiment.from_dict(exp))


def test_lenet_every_row_names_each_depth_as_the_verdicts_number_it(lenet) -> None:
    layers = lenet.layers
    axis = plots.variance_by_depth(layers, role="all").layout.xaxis
    expected = health.with_depth(layers, "all").query("scheme == 'Kaiming' and seed == 0")
    assert list(axis.tickvals) == list(expected["depth"]) == list(range(1, 12))
    for text, depth, name in zip(axis.ticktext, expected["depth"], expected["layer"], strict=True):
        number, shown = re.split(r"<br>| · ", text, maxsplit=1)
        assert number == str(depth)
        assert shown == name or (shown.startswith("…") and name.endswith(shown[1:]))


def test_lenet_weight_ticks_agree_with_the_verdict(lenet) -> None:
    layers = lenet.layers
    axis = plots.variance_by_depth(layers, role="weight").layout.xaxis
    assert list(axis.ticktext) == ["1<br>conv1", "2<br>conv2", "3<br>fc1", "4<br>fc2", "5<br>fc3"]
    assert axis.tickangle == 0
    verdict = health.verdicts(layers, input_var=1.0, role="weight")["Kaiming"]
    assert "layer 5 (fc3)" in verdict, verdict
    line = next(t for t in plots.variance_by_depth(layers).data if t.name == "Kaiming")
    assert "layer %{x} (%{customdata[0]})" in line.hovertemplate
    assert list(line.customdata[:, 0]) == ["conv1", "conv2", "fc1", "fc2", "fc3"]


# ---------------------------------------------------------------- histogram cells


def binned(samples: dict[tuple[str, str], np.ndarray], kind: str = "activation") -> pd.DataFrame:
    """(scheme, name) -> samples, binned like the probe: 64 bins from min to max."""
    rows = []
    for (scheme, name), x in samples.items():
        lo, hi = (x.min(), x.max()) if x.max() > x.min() else (x[0] - 0.5, x[0] + 0.5)
        counts, edges = np.histogram(x, bins=64, range=(lo, hi))
        rows += [
            {
                "scheme": scheme,
                "seed": 0,
                "kind": kind,
                "name": name,
                "bin_left": a,
                "bin_right": b,
                "count": float(c),
            }
            for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True)
        ]
    return pd.DataFrame(rows)


RNG = np.random.default_rng(7)
WIDE, NARROW = RNG.normal(0.5, 2.0, 20_000), RNG.normal(0.0, 1e-5, 20_000)


def cell_notes(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations if a.xref.endswith("domain")]


def test_bin_moments_match_numpy_on_the_samples() -> None:
    frame = binned({("s", "a"): WIDE})
    mean, std = plots.bin_moments(
        *(frame[c].to_numpy() for c in ("bin_left", "bin_right", "count"))
    )
    assert mean == pytest.approx(WIDE.mean(), abs=0.01 * WIDE.std())
    assert std == pytest.approx(WIDE.std(), rel=0.01)
    const = binned({("s", "a"): np.full(100, 3.0)})
    assert (
        plots.bin_moments(*(const[c].to_numpy() for c in ("bin_left", "bin_right", "count")))[1]
        == 0
    )


def test_standardized_cells_are_in_std_units_with_area_one() -> None:
    hist = binned({("wide", "a"): WIDE, ("narrow", "a"): NARROW})
    moments = pd.DataFrame(
        [
            {
                "scheme": s,
                "seed": 0,
                "kind": "activation",
                "name": "a",
                "mean": x.mean(),
                "std": x.std(),
            }
            for s, x in (("wide", WIDE), ("narrow", NARROW))
        ]
    )
    fig = plots.histogram_grid(hist, "activation", scale="standardized", moments=moments)
    for bars, x in zip(fig.data, (WIDE, NARROW), strict=True):
        cell = hist[hist["scheme"] == bars.name]
        centre = (cell["bin_left"] + cell["bin_right"]).to_numpy() / 2
        np.testing.assert_allclose(bars.x, (centre - x.mean()) / x.std())
        assert np.sum(np.asarray(bars.y) * np.asarray(bars.width)) == pytest.approx(1.0)
        assert max(bars.y) < 1.0, "no spike: a normal's density peaks at 0.4 per std"
    assert cell_notes(fig) == [f"std {WIDE.std():.3g}", f"std {NARROW.std():.3g}"]
    assert fig.layout.xaxis.title.text == "value (std units)"
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis.title.text == "density"
    assert -6.6 <= fig.layout.xaxis.range[0] < fig.layout.xaxis.range[1] <= 6.6


def test_shared_scale_marks_a_distribution_too_narrow_to_see() -> None:
    fig = plots.histogram_grid(binned({("wide", "a"): WIDE, ("narrow", "a"): NARROW}), "activation")
    assert fig.layout.xaxis2.matches == "x" and fig.layout.xaxis.title.text == "value"
    spikes = [t for t in fig.data if t.type == "scatter"]
    assert len(spikes) == 1 and spikes[0].line.width == 2
    assert spikes[0].x[0] == pytest.approx(NARROW.mean(), abs=1e-6)
    notes = cell_notes(fig)
    assert notes[0].startswith("std ≈ ") and "narrow" not in notes[0]
    assert "too narrow for this x range" in notes[1]
    assert fig.layout.yaxis2.showticklabels is False, "its density ticks would read 40 000"


def test_a_constant_cell_says_so() -> None:
    hist = binned({("wide", "a"): WIDE, ("zero", "a"): np.zeros(500)})
    standardized = plots.histogram_grid(hist, "activation", scale="standardized")
    assert len(standardized.data) == 1, "nothing to standardize"
    assert "constant" in cell_notes(standardized)[1] and "std 0" in cell_notes(standardized)[1]
    shared = plots.histogram_grid(hist, "activation")
    assert "constant" in cell_notes(shared)[1]
    with pytest.raises(ValueError, match="scale must be one of shared, standardized"):
        plots.histogram_grid(hist, "activation", scale="log")
    with pytest.raises(ValueError, match="moments must have columns"):
        plots.histogram_grid(hist, "activation", moments=pd.DataFrame({"std": [1.0]}))


def rows(fig) -> list[str]:
    """The row titles' whole names (make_subplots sets row titles at 90°)."""
    return [a.hovertext for a in fig.layout.annotations if a.textangle == 90]


def test_lenet_rows_follow_the_forward_order_for_every_kind(lenet) -> None:
    hists = lenet.histograms
    forward = list(dict.fromkeys(hists.loc[hists["kind"] == "activation", "name"]))
    backward = list(dict.fromkeys(hists.loc[hists["kind"] == "gradient", "name"]))
    assert backward == forward[::-1], "the probe records gradients output first"
    grads = plots.histogram_grid(hists, "gradient", max_rows=len(forward))
    assert rows(grads) == forward
    picked = plots.histogram_grid(hists, "gradient", names=["fc3", "conv1", "fc1"])
    assert rows(picked) == ["conv1", "fc1", "fc3"]
    weights = lenet.params.loc[lenet.params["param"].str.endswith("weight"), "param"]
    assert rows(plots.histogram_grid(hists, "weight")) == list(dict.fromkeys(weights))
    evenly = plots.histogram_grid(hists, "activation", max_rows=4)
    assert rows(evenly) == [forward[i] for i in (0, 3, 7, 10)], "first and last included"
    reversed_order = plots.histogram_grid(
        hists, "activation", names=forward[:3], order=forward[::-1]
    )
    assert rows(reversed_order) == forward[:3][::-1]


def test_lenet_moments_are_exact_and_agree_with_the_bins(lenet) -> None:
    moments = plots.histogram_moments(lenet.layers, lenet.params)
    assert list(moments.columns) == plots.MOMENT_COLUMNS
    keys = moments[["scheme", "seed", "kind", "name"]].astype(str).agg("|".join, axis=1)
    hist_keys = (
        lenet.histograms[["scheme", "seed", "kind", "name"]].astype(str).agg("|".join, axis=1)
    )
    assert set(hist_keys) <= set(keys), "every histogram has its moments (pool#2 included)"
    second = moments.query("kind == 'activation' and name == 'pool#2' and seed == 0").iloc[0]
    pool = lenet.layers.query("layer == 'pool' and seed == 0 and scheme == @second.scheme")
    assert second["std"] == pool["act_std"].iloc[1] and second["mean"] == pool["act_mean"].iloc[1]
    grads = moments.query("kind == 'gradient'")
    assert grads["mean"].isna().all()
    np.testing.assert_allclose(
        grads["std"] ** 2,
        lenet.layers.sort_values(["scheme", "seed", "order"])["grad_var"].to_numpy(),
        rtol=1e-12,
    )
    for kind in plots.HISTOGRAM_KINDS:
        exact = plots.histogram_grid(lenet.histograms, kind, moments=moments, max_rows=20)
        approx = plots.histogram_grid(lenet.histograms, kind, max_rows=20)
        for e, a in zip(cell_notes(exact), cell_notes(approx), strict=True):
            assert e.startswith("std ") and not e.startswith("std ≈") and a.startswith("std ≈")
            e_std, a_std = float(e.split()[1]), float(a.split()[2])
            # Bins from min to max in 64 steps: their std is within a few percent
            assert a_std == pytest.approx(e_std, rel=0.08), (kind, e, a)
