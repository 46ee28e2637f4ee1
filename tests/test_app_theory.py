"""Theory on the page, headless (AppTest): the mean-field prediction dashed on both depth charts
of the default MLP (the closed forms of a bias-free ReLU chain, recomputed here) with one phase
line per scheme; one line why, and no dashes, where the model is not a chain; the toggle takes
them away without probing again. The Spectrum view computes on request, shows a histogram per
scheme and the moments beside the prediction, and shows the guard's refusal as an error.

Models are tiny (mlp depth 4 × width 16, batch 8, one seed).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from conftest import open_tab
from streamlit.testing.v1 import AppTest

import initlab
from initlab import guard, plots_theory, spectrum, theory
from initlab.ui import keys, spectrum_view, theory_view
from initlab.ui.text import plain
from initlab.ui.urlstate import decode, encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = {"model.mlp.depth": 4, "model.mlp.width": 16, "batch_size": 8, "n_seeds": 1}
SCHEMES = [
    {"name": "PyTorch default", "preset": "pytorch_default"},
    {"name": "Kaiming normal", "preset": "kaiming_normal"},
]
TRANSFORMER = {"name": "transformer", "n_layers": 1, "d_model": 16, "n_heads": 2}
TRANSFORMER |= {"vocab_size": 50, "seq_len": 8}

pytestmark = pytest.mark.usefixtures("empty_app_caches", "one_thread")


# ---------------------------------------------------------------- helpers


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def run_app(query: dict[str, str] | None = None, **session: Any) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {**SMALL, **session}.items():
        at.session_state[key] = value
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return ok(at.run())


def link(model: dict[str, Any]) -> dict[str, str]:
    exp = {"model": model, "input": {"batch_size": 8}, "seeds": [0], "schemes": SCHEMES}
    return {"experiment": encode(exp)}


def experiment(at: AppTest) -> initlab.Experiment:
    return initlab.Experiment.from_dict(decode(at.query_params["experiment"]))


def figure(at: AppTest, key: str) -> dict[str, Any]:
    """The plotly figure of the chart with this key, as the page sends it."""
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert len(found) == 1, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def values(y: Any) -> np.ndarray:
    """A trace's y as plotly's JSON holds it: a list, or {dtype, bdata} (base64)."""
    if isinstance(y, dict):
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"]))
    return np.array(y, dtype=float)


def dashed(fig: dict[str, Any]) -> dict[str, np.ndarray]:
    """The dashed traces: scheme (its legend group) -> y."""
    lines = [t for t in fig["data"] if t.get("line", {}).get("dash") == "dash"]
    return {t["legendgroup"]: values(t["y"]) for t in lines}


def texts(at: AppTest) -> list[str]:
    return [plain(m.value) for m in (*at.markdown, *at.caption)]


def phase_lines(at: AppTest) -> list[str]:
    return [t for t in texts(at) if ", mean field: " in t]


def counted(at: AppTest, key: str) -> int:
    return at.session_state[key] if key in at.session_state else 0  # noqa: SIM401 (no .get)


# ---------------------------------------------------------------- the overlay


def relu_chain_q(sigma_w2: float, depth: int) -> np.ndarray:
    """q^l of a bias-free ReLU chain from N(0, 1) input: q^1 = σ_w², q^l = σ_w² q^{l-1} / 2
    (E[relu(√q z)²] = q/2)."""
    return sigma_w2 * (sigma_w2 / 2) ** np.arange(depth)


def test_the_default_page_draws_the_prediction_dashed_and_names_each_phase() -> None:
    at = run_app()
    assert at.toggle(key=theory_view.OVERLAY).value is True
    expected = theory.predict(experiment(at)).layers
    # Independent oracle: PyTorch's default Linear weight has variance 1/(3 fan_in); Kaiming's
    # for ReLU 2/fan_in, which keeps q = 2 at every depth.
    closed = {"PyTorch default": relu_chain_q(1 / 3, 4), "Kaiming normal": relu_chain_q(2, 4)}
    for key, column in (("fig_var", "q"), ("fig_grad", "grad_var")):
        lines = dashed(figure(at, key))
        assert set(lines) == {"PyTorch default", "Kaiming normal"}, key
        for name, y in lines.items():
            want = expected.loc[expected["scheme"] == name].sort_values("depth")[column]
            np.testing.assert_allclose(y, want.to_numpy(), rtol=1e-12)
            if column == "q":
                np.testing.assert_allclose(y, closed[name], rtol=1e-9)
        shown = [t for t in figure(at, key)["data"] if t.get("showlegend") is not False]
        assert len(shown) == 2, "the legend keeps one row per scheme"
    lines = phase_lines(at)
    assert len(lines) == 2
    assert "**PyTorch default**, mean field: ordered" in lines[0]
    assert "**Kaiming normal**, mean field: critical (χ₁ = 1): q* = 2;" in lines[1]
    assert any("Dashed: the mean-field prediction." in t for t in texts(at))


def test_toggling_off_removes_the_dashes_and_does_not_probe_again() -> None:
    at = run_app()
    probes = counted(at, keys.PROBES_RUN)
    ok(at.toggle(key=theory_view.OVERLAY).set_value(False).run())
    for key in ("fig_var", "fig_grad"):
        assert dashed(figure(at, key)) == {}
    assert not phase_lines(at) and not any("Dashed" in t for t in texts(at))
    assert at.toggle(key=theory_view.OVERLAY).proto.query_param_key == theory_view.OVERLAY
    ok(at.toggle(key=theory_view.OVERLAY).set_value(True).run())
    assert len(dashed(figure(at, "fig_var"))) == 2
    assert counted(at, keys.PROBES_RUN) == probes, "showing the prediction never re-probes"


def test_rows_other_than_the_layers_with_weights_say_what_the_prediction_is_of() -> None:
    at = run_app(query={keys.VIEW_ROLE: "post-activation"})
    assert dashed(figure(at, "fig_var")) == {} and not phase_lines(at)
    said = [t for t in texts(at) if "prediction is of the layers with weights" in t]
    assert len(said) == 1


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ({"name": "lenet"}, "LeNet is not an nn.Sequential"),
        (TRANSFORMER, "Transformer is not an nn.Sequential"),
    ],
)
def test_a_model_outside_the_theory_gets_one_line_why_and_no_dashes(model, reason) -> None:
    at = run_app(query=link(model))
    assert experiment(at).model["name"] == model["name"]
    assert at.toggle(key=theory_view.OVERLAY).value is True
    for role in ("pre-activation (layers with weights)", "every observed row"):
        ok(next(b for b in at.get("button_group") if b.key == keys.VIEW_ROLE).set_value(role).run())
        assert dashed(figure(at, "fig_var")) == {}
        assert dashed(figure(at, "fig_grad")) == {}
        why = [t for t in texts(at) if t.startswith("No mean-field prediction: ")]
        assert len(why) == 1 and reason in why[0], (role, why)
        assert not phase_lines(at) and not any("Dashed" in t for t in texts(at))


# ---------------------------------------------------------------- the Spectrum view


def test_the_spectrum_is_computed_on_request_and_shown_per_scheme() -> None:
    at = run_app(query={keys.TAB: "Spectrum"})
    assert not at.get("plotly_chart"), "nothing is computed before the button"
    ok(at.button(key=spectrum_view.BUTTON).click().run())
    fig = figure(at, spectrum_view.FIGURE)
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    assert [t["name"] for t in bars] == ["PyTorch default", "Kaiming normal"]
    (table,) = [f.value for f in at.dataframe if "var(λ)/mean(λ)²" in f.value.columns]
    # The oracle: the library's own tables for this experiment (deterministic, float64).
    sp = spectrum.spectrum_table(experiment(at), inputs=spectrum_view.INPUTS)
    by = sp.summary.groupby("scheme", sort=False)
    assert list(table["scheme"]) == list(by.groups)
    np.testing.assert_allclose(table["mean λ"], by["lambda_mean"].mean(), rtol=1e-9)
    np.testing.assert_allclose(table["var(λ)/mean(λ)²"], by["norm_var"].mean(), rtol=1e-9)
    np.testing.assert_allclose(table["predicted"], by["predicted_norm_var"].mean(), rtol=1e-12)
    assert set(table["how"]) == {"exact (SVD)"}
    assert set(table["prediction from"]) == {"free probability"}
    assert not [b for b in at.button if b.key == spectrum_view.BUTTON], "kept: no second click"
    ok(open_tab(ok(open_tab(at, "Health")), "Spectrum"))
    assert figure(at, spectrum_view.FIGURE)["data"], "kept in the session for this run"


def test_a_spectrum_over_the_budget_is_an_error_on_the_page(monkeypatch) -> None:
    at = run_app(query={keys.TAB: "Spectrum"})  # the probe itself runs under the default budget
    monkeypatch.setenv(guard.TIME_ENV, "1e-9")
    ok(at.button(key=spectrum_view.BUTTON).click().run())
    (error,) = [plain(e.value) for e in at.error]
    assert error.startswith("spectrum too slow: about ") and "a 16 × 16 Jacobian (exact)" in error
    assert "over the budget of 1e-09 s (INITLAB_TIME_BUDGET_S)" in error
    assert not at.get("plotly_chart")


def test_a_token_model_has_no_spectrum_and_says_so() -> None:
    at = run_app(query={**link(TRANSFORMER), keys.TAB: "Spectrum"})
    assert not [b for b in at.button if b.key == spectrum_view.BUTTON]
    assert "token ids" in at.info[0].value


def test_the_session_keeps_the_last_four_spectra(monkeypatch) -> None:
    kept: dict[str, Any] = {}
    monkeypatch.setattr(st, "session_state", kept)
    for i in range(6):
        spectrum_view.remember(f"run{i}", spectrum.Spectrum(pd.DataFrame(), pd.DataFrame()))
    spectrum_view.remember("run3", kept[spectrum_view.COMPUTED]["run3"])  # the newest again
    assert list(kept[spectrum_view.COMPUTED]) == ["run2", "run4", "run5", "run3"]


# ---------------------------------------------------------------- the library's side


def exp_of(width: int, depth: int = 2, seeds: int = 1) -> initlab.Experiment:
    model = {"name": "mlp", "depth": depth, "width": width}
    return initlab.Experiment.from_dict(
        {
            "model": model,
            "input": {"batch_size": 8},
            "seeds": list(range(seeds)),
            "schemes": SCHEMES,
        }
    )


def test_the_cost_holds_at_least_the_jacobian_and_grows_with_the_work() -> None:
    small, wide = exp_of(16), exp_of(64)
    est = spectrum.spectrum_cost(small, inputs=3)
    assert est.peak_bytes >= 3 * 16 * 16 * 8, "three float64 16 × 16 Jacobians"
    assert est.runs == 2
    assert spectrum.spectrum_cost(small, inputs=1).seconds < est.seconds
    assert spectrum.spectrum_cost(exp_of(16, seeds=3)).seconds > est.seconds
    assert spectrum.spectrum_cost(wide, inputs=3).peak_bytes > est.peak_bytes
    assert spectrum.jacobian_size(exp_of(16)) == (16, 16)


def test_a_spectrum_over_the_memory_budget_is_refused_naming_sizes_and_limit(monkeypatch) -> None:
    exp = exp_of(64)
    needed = spectrum.spectrum_cost(exp).peak_bytes
    monkeypatch.setenv(guard.MEMORY_ENV, str(needed / 2**20 / 2))
    with pytest.raises(ValueError, match=r"spectrum too large: .*64 × 64 Jacobian \(exact\)"):
        spectrum.spectrum_table(exp)
    monkeypatch.setenv(guard.MEMORY_ENV, str(needed / 2**20 * 2))
    assert spectrum.check_spectrum_budget(exp).peak_bytes == needed


def test_numerically_zero_singular_values_are_counted_not_drawn() -> None:
    s = np.array([2.0, 1.0, 0.5, 1e-20, 0.0])  # a rank-3 Jacobian's five singular values
    frame = pd.DataFrame({"scheme": "a", "seed": 0, "input": 0, "index": range(5)})
    frame = frame.assign(singular_value=s, estimate=False)
    summary = pd.DataFrame({"scheme": ["a"], "norm_var": [0.1], "predicted_norm_var": [np.nan]})
    fig = plots_theory.spectrum_histograms(frame, summary.assign(estimate=False))
    assert sum(fig.data[0].y) == 3
    assert fig.layout.xaxis.title.text.endswith("2 of 5 numerically 0, not drawn")
