"""plots_sweep on synthetic sweep tables: ratios recomputed, the critical line against scipy's
quad, traces, axes and titles of each figure, escaping; nothing here runs a network."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad

from initlab import plots_sweep
from initlab.plots_sweep import (
    cell_ratios,
    chi1,
    coordinate_check,
    critical_sigma_w2,
    depth_at_failure,
    depth_at_failure_figure,
    phase_diagram,
    report_html,
)


def synthetic(depths=(2, 4), sigma_w2=(1.0, 2.0), schemes=("a",), seeds=(0, 1)) -> pd.DataFrame:
    """Linear rows whose act_var grows by σ_w²/1.5 per layer and whose grad_var shrinks by it
    going back: the gradient ratio is (σ_w²/1.5)^(depth-1), the variance ratio the same."""
    rows, cell = [], 0
    for depth in depths:
        for s2 in sigma_w2:
            for scheme in schemes:
                for seed in seeds:
                    g = s2 / 1.5
                    for i in range(depth):
                        rows.append({"cell": cell, "model.depth": depth, "model.width": 8 * s2,
                                     "scheme": scheme, "seed": seed, "order": i,
                                     "layer": f"fc{i + 1}", "type": "Linear", "role": "weight",
                                     "act_mean": 0.0, "act_var": g**i, "grad_var": g ** -i,
                                     "sigma_w2": s2, "sigma_b2": 0.05})  # fmt: skip
            cell += 1
    return pd.DataFrame(rows)


def test_cell_ratios_are_first_over_last():
    ratios = cell_ratios(synthetic())
    assert len(ratios) == 2 * 2 * 2
    expected = (ratios["sigma_w2"] / 1.5) ** (ratios["model.depth"] - 1)
    np.testing.assert_allclose(ratios["gradient_ratio"], expected, rtol=1e-12)
    np.testing.assert_allclose(ratios["variance_ratio"], expected, rtol=1e-12)


def test_critical_line_is_where_chi1_is_one_by_scipy_quad():
    sigma_b2 = 0.05
    found = critical_sigma_w2("tanh", sigma_b2)

    def mean(f):
        return quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -12, 12)[0]

    q = 1.0
    for _ in range(200):
        q = found * mean(lambda z, q=q: math.tanh(math.sqrt(q) * z) ** 2) + sigma_b2
    chi = found * mean(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)
    assert chi == pytest.approx(1.0, abs=1e-6)
    assert chi1("tanh", found * 1.1, sigma_b2) > 1 > chi1("tanh", found * 0.9, sigma_b2)
    assert critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, rel=1e-9)  # χ₁ = σ_w²/2
    assert critical_sigma_w2("mish", 0.0) is None


def test_phase_diagram_is_a_log_heatmap_with_the_critical_line():
    fig = phase_diagram(synthetic(), "sigma_w2", "model.depth", activation="tanh")
    heat, line = fig.data
    assert heat.type == "heatmap" and list(heat.x) == [1.0, 2.0] and list(heat.y) == [2, 4]
    expected = np.log10([[1 / 1.5, 2 / 1.5], [(1 / 1.5) ** 3, (2 / 1.5) ** 3]])
    np.testing.assert_allclose(np.array(heat.z, dtype=float), expected, rtol=1e-12)
    assert heat.zmid == 0 and heat.colorbar.ticktext[0].startswith("10^")
    crit = critical_sigma_w2("tanh", 0.05)
    assert list(line.x) == [crit, crit] and list(line.y) == [2, 4]
    assert fig.layout.xaxis.title.text == "sigma_w2"
    assert "gradient ratio" in fig.layout.title.text


def test_phase_diagram_without_an_mlp_has_no_line_and_escapes_names():
    fig = phase_diagram(synthetic(schemes=("<i>x</i>",)), "sigma_w2", "model.depth")
    assert len(fig.data) == 1 and "<i>" not in fig.layout.title.text
    with pytest.raises(ValueError, match="value: must be one of"):
        phase_diagram(synthetic(), "sigma_w2", "model.depth", value="loss")


def test_coordinate_check_draws_a_line_per_layer_per_scheme():
    fig = coordinate_check(synthetic(depths=(3,), schemes=("a", "b")))
    assert len(fig.data) == 6 and fig.layout.xaxis.type == "log"
    fc2 = fig.data[1]
    assert fc2.name == "fc2" and list(fc2.x) == [8.0, 16.0]
    np.testing.assert_allclose(fc2.y, np.sqrt([1 / 1.5, 2 / 1.5]), rtol=1e-12)


def test_depth_at_failure_is_the_first_depth_beyond_the_limit():
    table = synthetic(depths=(2, 6, 12), sigma_w2=(1.5, 6.0))
    curves = depth_at_failure(table, over="sigma_w2", limit=100.0)
    # σ_w² = 6: ratio 4^(d-1); 4 and 4^5 = 1024 > 100, so it fails at depth 6.
    by = curves.set_index("sigma_w2")
    assert by.loc[6.0, "failed_at"] == 6 and math.isnan(by.loc[1.5, "failed_at"])
    fig = depth_at_failure_figure(table, over="sigma_w2")
    assert list(fig.data[0].y) == [12, 6] and fig.data[0].marker.symbol[0] == "circle-open"


def test_report_embeds_plotly_once_and_escapes_text():
    table = synthetic(schemes=("<script>",))
    failed = pd.DataFrame(
        [(3, "cell 3 (<b>=1)", "<img>")], columns=["cell", "coordinates", "error"]
    )
    sweep = {"base": {"model": {"name": "mlp", "activation": "tanh"}}, "axes": {"<x>": [1]}}
    page = report_html(table, failed, sweep, ["model.depth", "model.width"])
    assert page.count("plotly.js v") == 1 and page.count("Plotly.newPlot") == 3
    assert '<script>"' not in page and "<img>" not in page and "<b>=1" not in page
    assert "&lt;x&gt;" in page


def test_the_module_imports_no_torch():
    tree = ast.parse(Path(plots_sweep.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n and n.split(".")[0] in ("torch", "streamlit")}
