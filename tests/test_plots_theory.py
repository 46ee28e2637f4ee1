"""The theory figures on small synthetic tables: dashed predictions in each scheme's colour on
the variance-by-depth chart, one spectrum histogram per scheme, user text escaped."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from initlab import plots_theory
from initlab.plots import scheme_colors

SCHEMES = ["<b>bold</b>", "plain & simple"]
ESCAPED = {"<b>bold</b>": "&lt;b&gt;bold&lt;/b&gt;", "plain & simple": "plain &amp; simple"}


def measured_layers() -> pd.DataFrame:
    rows = []
    for scheme in SCHEMES:
        for seed in (0, 1):
            for depth in range(1, 4):
                common = {"scheme": scheme, "seed": seed, "act_var": 0.5**depth}
                common["grad_var"] = 2.0**depth
                linear = {"order": 2 * depth, "layer": f"fc{depth}", "type": "Linear"}
                tanh = {"order": 2 * depth + 1, "layer": f"act{depth}", "type": "Tanh"}
                rows.append(common | linear | {"role": "weight"})
                rows.append(common | tanh | {"role": "activation"})
    return pd.DataFrame(rows)


def theory_layers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scheme": np.repeat(SCHEMES, 3),
            "depth": [1, 2, 3] * 2,
            "q": [0.5, 0.25, 0.125, 1.0, 0.0, 0.3],
            "grad_var": [2.0, 4.0, 8.0, 1.0, 1.0, 1.0],
        }
    )


def dashed(fig) -> list:
    return [t for t in fig.data if t.line is not None and t.line.dash == "dash"]


@pytest.mark.parametrize(("value", "column"), [("act_var", "q"), ("grad_var", "grad_var")])
def test_predictions_are_dashed_in_each_schemes_colour(value: str, column: str) -> None:
    fig = plots_theory.variance_with_theory(measured_layers(), theory_layers(), value)
    colors = scheme_colors(SCHEMES)
    lines = dashed(fig)
    assert len(lines) == 2
    solid = [t for t in fig.data if t.mode == "lines+markers"]
    for trace, solid_line, scheme in zip(lines, solid, SCHEMES, strict=True):
        assert trace.line.color == colors[scheme] == solid_line.line.color
        assert trace.legendgroup == scheme and trace.showlegend is False
        assert trace.name == ESCAPED[scheme] + " (mean-field)"
        expected = theory_layers().query("scheme == @scheme")[column].to_numpy()
        got = np.asarray(trace.y, dtype=float)
        np.testing.assert_array_equal(np.isnan(got), expected <= 0)  # a log axis: gaps
        np.testing.assert_allclose(got[expected > 0], expected[expected > 0])
    assert fig.layout.yaxis.type == "log"


def test_no_prediction_leaves_the_figure_as_it_was() -> None:
    empty = theory_layers().iloc[:0]
    fig = plots_theory.variance_with_theory(measured_layers(), empty)
    assert not dashed(fig) and len(fig.data) > 0
    with pytest.raises(ValueError, match="value: one of act_var, grad_var"):
        plots_theory.add_theory(fig, theory_layers(), "frac_zero")


def spectrum_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    s = np.concatenate([np.ones(8), np.logspace(-3, 1, 8)])
    values = pd.DataFrame({"scheme": np.repeat(SCHEMES, 8), "singular_value": s})
    values = values.assign(seed=0, input=0, index=list(range(8)) * 2, estimate=False)
    summary = pd.DataFrame({"scheme": SCHEMES, "norm_var": [0.0, 7.5]})
    summary = summary.assign(seed=0, input=0, estimate=False, predicted_norm_var=[0.0, math.nan])
    return values, summary


def test_spectrum_histograms_one_per_scheme_side_by_side() -> None:
    values, summary = spectrum_tables()
    fig = plots_theory.spectrum_histograms(values, summary)
    colors = scheme_colors(SCHEMES)
    assert [t.type for t in fig.data] == ["bar", "bar"]
    assert [t.xaxis for t in fig.data] == ["x", "x2"]
    for trace, scheme in zip(fig.data, SCHEMES, strict=True):
        assert trace.marker.color == colors[scheme]
        assert sum(trace.y) == 8
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "&lt;b&gt;bold&lt;/b&gt;<br>var(λ)/mean(λ)² = 0, predicted 0"
    assert titles[1] == "plain &amp; simple<br>var(λ)/mean(λ)² = 7.5"
    assert "<b>bold" not in fig.to_json()


def test_an_empty_spectrum_says_so() -> None:
    values, summary = spectrum_tables()
    fig = plots_theory.spectrum_histograms(values.iloc[:0], summary.iloc[:0])
    assert fig.layout.annotations[0].text == "no spectrum: nothing was measured"
