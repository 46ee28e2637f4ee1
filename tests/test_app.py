"""The dashboard driven headlessly with streamlit's AppTest: every zoo model and preset renders,
edits reach the results, invalid input is an `st.error` in place (never an exception), the
address restores the page, display-only changes run no probe, scheme columns can be added,
duplicated, removed and renamed, and an uploaded experiment file loads.

Runs are kept small (mlp depth 4 × width 32, one seed) except for the one default-page test.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from conftest import open_tab
from streamlit.testing.v1 import AppTest

import initlab
from initlab.ui import keys, runner, state
from initlab.ui.editors import EDITED, MAX_SCHEMES
from initlab.ui.text import plain
from initlab.ui.urlstate import decode, encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = {"model.mlp.depth": 4, "model.mlp.width": 32, "batch_size": 32, "n_seeds": 1}
ZOO = [name for name in initlab.MODELS if name != "custom"]
ADDRESS_ERROR = "The address holds an experiment initlab can't use"
# a hand-edited preset column is a custom scheme, and its page-given name says so
EDITED_KAIMING = "Kaiming normal" + EDITED


class Clock:
    """Stands in for `time` in the runner: each reading is `step` seconds after the last."""

    def __init__(self, step: float) -> None:
        self._ticks = itertools.count(step=step)

    def perf_counter(self) -> float:
        return float(next(self._ticks))


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch):
    """The run cache is process-wide (every AppTest shares it): start each test empty, so
    `probes_run` counts are this test's own. Runs are made to look instant, so no progress bar
    is drawn; the slow path has its own tests below."""
    st.cache_data.clear()
    runner.store().clear()
    monkeypatch.setattr(runner, "time", Clock(step=0.0), raising=False)
    yield
    st.cache_data.clear()
    runner.store().clear()


# ---------------------------------------------------------------- helpers


def run_app(query: dict[str, str] | None = None, **session: Any) -> AppTest:
    """A first run of the page with small sizes (overridable through session state)."""
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {**SMALL, **session}.items():
        at.session_state[key] = value
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert_ok(at)
    return at


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def errors(at: AppTest) -> list[str]:
    """The error boxes' text as displayed (their markdown escapes user text)."""
    return [plain(e.value) for e in at.error]


def experiment(at: AppTest) -> dict[str, Any]:
    """The experiment in the page's address (what a copied link would share)."""
    return decode(at.query_params["experiment"])


def scheme(at: AppTest, name: str) -> dict[str, Any]:
    return next(s for s in experiment(at)["schemes"] if s["name"] == name)


def names(at: AppTest) -> list[str]:
    return [at.text_input(key=f"s{e['uid']}.name").value for e in at.session_state["editors"]]


def chart_keys(at: AppTest) -> list[str]:
    return [chart.proto.id.rsplit("-", 1)[-1] for chart in at.get("plotly_chart")]


def chart_spec(at: AppTest, key: str) -> dict[str, Any]:
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))
    return json.loads(chart.proto.spec)


def assert_charts(at: AppTest) -> None:
    """The depth charts on the first tab, the histogram on Distributions: each tab draws
    its own charts only while it is open (the page is left on Distributions)."""
    assert {"fig_var", "fig_grad"} <= set(chart_keys(at))
    assert "fig_hist" not in chart_keys(at), "a closed tab draws nothing"
    assert "fig_hist" in chart_keys(open_tab(at, "Distributions"))


def download_keys(at: AppTest, tab: str) -> set[str]:
    return {d.proto.id.rsplit("-", 1)[-1] for d in open_tab(at, tab).get("download_button")}


def hist_picks(at: AppTest, kind: str):
    """The layer picks of one histogram kind (keyed per model: picks follow the model)."""
    model = initlab.Experiment.from_dict(experiment(at)).model
    return at.multiselect(key=keys.hist_names(kind, json.dumps(model)))


def verdict_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "●" in m.value]


def segmented(at: AppTest, key: str):
    return next(b for b in at.get("button_group") if b.key == key)


def layer_act_var(d: dict[str, Any], scheme_name: str) -> list[float]:
    layers = initlab.run(initlab.Experiment.from_dict(d)).layers
    rows = layers[(layers["scheme"] == scheme_name) & (layers["role"] == "weight")]
    return rows.sort_values("order")["act_var"].tolist()


def set_method(at: AppTest, uid: int, family: str, slot: str, method: str, **params: Any) -> None:
    """Pick a method in a scheme column, then set its parameter widgets (one rerun each)."""
    at.selectbox(key=f"s{uid}.{family}.{slot}.method").set_value(method).run()
    for name, value in params.items():
        key = f"s{uid}.{family}.{slot}.{method}.{name}"
        widget = at.text_input(key=key) if isinstance(value, str) else at.number_input(key=key)
        widget.set_value(value).run()


# ---------------------------------------------------------------- the default page


def test_default_page_runs_two_schemes_and_puts_the_experiment_in_the_address() -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()  # default sizes: the slow one
    assert_ok(at)
    assert errors(at) == []
    defaults = [initlab.PRESETS[p].title for p in state.DEFAULT_SCHEMES]
    assert [e["uid"] for e in at.session_state["editors"]] == [0, 1]
    assert names(at) == defaults == ["PyTorch default", "Kaiming normal"]
    lines = verdict_lines(at)
    assert lines and all(any(f"**{n}**" in line for line in lines) for n in defaults)
    assert all(chart_spec(at, key)["data"] for key in ("fig_var", "fig_grad"))
    assert_charts(at)
    assert chart_spec(at, "fig_hist")["data"]
    exp = initlab.Experiment.from_dict(experiment(at))
    assert [s.name for s in exp.schemes] == defaults
    assert exp.model["name"] == "mlp" and len(exp.seeds) == at.number_input(key="n_seeds").value
    assert at.session_state["probes_run"] == len(exp.schemes) * len(exp.seeds)
    assert download_keys(at, "Tables") == {"dl_params", "dl_layers"}
    assert download_keys(at, "Code") == {"dl_code_0", "dl_code_1"}
    assert "dl_experiment" in download_keys(at, "Experiment")
    assert at.session_state["probes_run"] == len(exp.schemes) * len(exp.seeds), "drawn, not run"


def test_the_address_follows_the_sidebar() -> None:
    at = run_app()
    at.number_input(key="model.mlp.depth").set_value(3).run()
    at.radio(key="input_distribution").set_value("uniform").run()
    assert_ok(at)
    d = experiment(at)
    assert d["model"]["depth"] == 3
    assert d["input"]["distribution"] == "uniform"


# ---------------------------------------------------------------- every model, every preset


def small_params(name: str) -> dict[str, Any]:
    """Widget state that keeps a zoo model tiny: every size at most 4 (or its lower bound)."""
    out = {}
    for p in initlab.MODELS[name].params:
        if p.kind == "int" and p.default is not None:
            out[f"model.{name}.{p.name}"] = min(p.default, max(int(p.low or 1), 4))
    return out


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_renders(name: str) -> None:
    at = run_app(batch_size=8)
    for key, value in small_params(name).items():
        at.session_state[key] = value
    at.selectbox(key="model_name").set_value(name).run()
    assert_ok(at)
    assert errors(at) == []
    exp = initlab.Experiment.from_dict(experiment(at))
    assert exp.model["name"] == name
    assert len(exp.schemes) == 2
    assert_charts(at)
    # one method dropdown per (family, slot) of this model, generated from its outline
    assert any(s.key.startswith("s1.") and s.key.endswith(".weight.method") for s in at.selectbox)


@pytest.mark.parametrize("name", list(initlab.PRESETS))
def test_every_preset_renders_in_the_first_column(name: str) -> None:
    at = run_app()
    at.selectbox(key="s0.preset").set_value(name).run()
    assert_ok(at)
    assert errors(at) == []
    first = experiment(at)["schemes"][0]
    assert first["preset"] == name
    # the preset's title, made unique when the other column already uses it
    assert first["name"] == at.text_input(key="s0.name").value
    assert first["name"] in (initlab.PRESETS[name].title, initlab.PRESETS[name].title + " (2)")
    # the column shows the preset's rules: they come back unchanged from its widgets
    want = initlab.preset(name, at.session_state["activation"]).to_dict()["rules"]
    assert (
        initlab.Scheme.from_dict(first).rules
        == initlab.Scheme.from_dict({"name": "x", "rules": want}).rules
    )


def test_picking_a_preset_replaces_the_columns_hand_edits() -> None:
    at = run_app()
    set_method(at, 1, "Linear", "weight", "normal", std=0.01)
    at.selectbox(key="s1.preset").set_value("xavier_normal").run()
    assert_ok(at)
    assert at.selectbox(key="s1.Linear.weight.method").value == "xavier_normal"
    assert scheme(at, "Xavier normal")["rules"][0]["weight"]["method"] == "xavier_normal"


def test_changing_the_activation_keeps_hand_edits() -> None:
    at = run_app()
    set_method(at, 1, "Linear", "weight", "normal", std=0.01)
    at.selectbox(key="model.mlp.activation").set_value("tanh").run()
    assert_ok(at)
    assert at.selectbox(key="s1.Linear.weight.method").value == "normal"
    assert scheme(at, EDITED_KAIMING)["rules"][0]["weight"]["std"] == 0.01


def test_changing_the_activation_updates_untouched_preset_gains() -> None:
    at = run_app()
    at.selectbox(key="model.mlp.activation").set_value("tanh").run()
    assert_ok(at)
    weight = scheme(at, "Kaiming normal")["rules"][0]["weight"]
    assert weight["nonlinearity"] == "tanh"


# ---------------------------------------------------------------- edits reach the results


def test_changing_a_method_changes_that_schemes_results() -> None:
    at = run_app()
    before = experiment(at)
    fig_before = chart_spec(at, "fig_var")
    set_method(at, 1, "Linear", "weight", "normal", std=0.01)
    assert_ok(at)
    assert errors(at) == []
    after = experiment(at)
    weight = {"method": "normal", "mean": 0.0, "std": 0.01}
    assert scheme(at, EDITED_KAIMING)["rules"][0]["weight"] == weight
    assert after["schemes"][0] == before["schemes"][0], "the other column is untouched"
    kaiming_before = layer_act_var(before, "Kaiming normal")
    kaiming_after = layer_act_var(after, EDITED_KAIMING)
    # std 0.01 on width 32 shrinks the variance ~×(32·1e-4) per layer: vanishing by the end
    assert kaiming_after[-1] < 1e-3 * kaiming_before[-1]
    assert layer_act_var(after, "PyTorch default") == layer_act_var(before, "PyTorch default")
    assert chart_spec(at, "fig_var")["data"] != fig_before["data"]


# ---------------------------------------------------------------- invalid input


def test_a_negative_std_is_an_error_in_place_and_the_other_scheme_still_runs() -> None:
    at = run_app()
    set_method(at, 1, "Linear", "weight", "normal", std=-1.0)
    assert_ok(at)
    assert any("std" in e and "-1" in e for e in errors(at)), errors(at)
    assert at.number_input(key="s1.Linear.weight.normal.std").value == -1.0, "input kept"
    assert [s["name"] for s in experiment(at)["schemes"]] == ["PyTorch default"]
    assert any("**PyTorch default**" in line for line in verdict_lines(at))
    assert_charts(at)


def test_an_unknown_gain_name_is_an_error_in_place() -> None:
    at = run_app()
    set_method(at, 1, "Linear", "weight", "xavier_normal", gain="tan")
    assert_ok(at)
    assert any("gain" in e and "'tan'" in e and "tanh" in e for e in errors(at)), errors(at)
    assert at.text_input(key="s1.Linear.weight.xavier_normal.gain").value == "tan"
    assert [s["name"] for s in experiment(at)["schemes"]] == ["PyTorch default"]
    # fixing it brings the column back
    at.text_input(key="s1.Linear.weight.xavier_normal.gain").set_value("tanh").run()
    assert errors(at) == []
    assert scheme(at, EDITED_KAIMING)["rules"][0]["weight"]["gain"] == "tanh"


def test_when_no_scheme_is_valid_the_last_results_stay_on_screen() -> None:
    at = run_app()
    for uid in (0, 1):
        set_method(at, uid, "Linear", "weight", "normal", std=-1.0)
    assert_ok(at)
    assert any("No scheme is valid" in e for e in errors(at))
    assert any("last valid experiment" in i.value for i in at.info)
    assert_charts(at)


def test_a_uniform_input_with_low_above_high_is_an_error() -> None:
    at = run_app()
    at.radio(key="input_distribution").set_value("uniform").run()
    at.number_input(key="input_low").set_value(2.0).run()
    assert_ok(at)
    assert any("low" in e and "high" in e for e in errors(at)), errors(at)
    assert_charts(at)  # the last results stay


@pytest.mark.skipif("transformer" not in initlab.MODELS, reason="needs the transformer model")
def test_model_parameters_invalid_together_are_an_error_not_an_exception() -> None:
    at = run_app(**{**small_params("transformer"), "model.transformer.d_model": 16})
    at.selectbox(key="model_name").set_value("transformer").run()
    assert_ok(at)
    at.number_input(key="model.transformer.n_heads").set_value(3).run()
    assert_ok(at)
    assert any("n_heads" in e for e in errors(at)), errors(at)


def test_an_empty_scheme_name_is_an_error_in_place() -> None:
    at = run_app()
    at.text_input(key="s0.name").set_value("").run()
    assert_ok(at)
    assert any("name" in e for e in errors(at)), errors(at)
    assert [s["name"] for s in experiment(at)["schemes"]] == ["Kaiming normal"]


# ---------------------------------------------------------------- the address


def test_an_address_restores_the_whole_page() -> None:
    d = {
        "model": {"name": "mlp", "depth": 3, "width": 16, "activation": "tanh"},
        "input": {"batch_size": 16, "distribution": "uniform", "low": -2.0, "high": 2.0},
        "seeds": [5, 7],
        "backward": False,
        "schemes": [
            {"name": "Mine", "rules": [{"layers": "Linear", "bias": "zeros",
                                        "weight": {"method": "normal", "std": 0.05}}]},
            {"name": "X", "preset": "xavier_normal"},
        ],
    }  # fmt: skip
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["experiment"] = encode(d)
    at.run()
    assert_ok(at)
    assert errors(at) == []
    assert at.selectbox(key="model_name").value == "mlp"
    assert at.number_input(key="model.mlp.depth").value == 3
    assert at.number_input(key="model.mlp.width").value == 16
    assert at.selectbox(key="model.mlp.activation").value == "tanh"
    assert at.radio(key="input_distribution").value == "uniform"
    assert at.number_input(key="input_low").value == -2.0
    assert at.number_input(key="n_seeds").value == 2
    assert at.checkbox(key="backward").value is False
    assert names(at) == ["Mine", "X"]
    uid = at.session_state["editors"][0]["uid"]
    assert at.selectbox(key=f"s{uid}.Linear.weight.method").value == "normal"
    assert at.number_input(key=f"s{uid}.Linear.weight.normal.std").value == 0.05
    # the page re-shares exactly what it was given (seeds included)
    assert experiment(at) == initlab.Experiment.from_dict(d).to_dict()


@pytest.mark.parametrize("name", ZOO)
def test_an_address_restores_every_zoo_model(name: str) -> None:
    model = {"name": name, **{k.split(".")[-1]: v for k, v in small_params(name).items()}}
    schemes = [{"name": "A", "preset": "gpt2"}, {"name": "B", "preset": "xavier_uniform"}]
    d = {"model": model, "input": {"batch_size": 8}, "seeds": [2], "schemes": schemes}
    at = run_app(query={"experiment": encode(d)})
    assert errors(at) == []
    assert at.selectbox(key="model_name").value == name
    for key, value in small_params(name).items():
        assert at.number_input(key=key).value == value
    got, want = experiment(at), initlab.Experiment.from_dict(d).to_dict()
    assert {k: got[k] for k in ("model", "seeds", "schemes")} == {
        k: want[k] for k in ("model", "seeds", "schemes")
    }
    # the page only spells out the input distribution the model implies
    assert got["input"]["batch_size"] == 8


@pytest.mark.parametrize(
    "token",
    [
        "%%%not-base64",
        encode({"model": {"name": "no_such_model"}, "schemes": []}),
        encode({"model": {"name": "mlp"}, "schemes": [{"preset": "nope"}]}),
        encode([1, 2]),  # type: ignore[arg-type]
    ],
    ids=["not-base64", "unknown-model", "unknown-preset", "not-an-object"],
)
def test_a_broken_address_is_an_error_and_the_default_page(token: str) -> None:
    at = run_app(query={"experiment": token})
    assert any(ADDRESS_ERROR in e for e in errors(at)), errors(at)
    assert names(at) == ["PyTorch default", "Kaiming normal"]
    assert_charts(at)
    initlab.Experiment.from_dict(experiment(at))  # replaced by the page's valid experiment


# ---------------------------------------------------------------- display-only vs. probe


def test_display_only_changes_run_no_probe_but_a_scheme_change_does() -> None:
    at = run_app()
    probes = at.session_state["probes_run"]
    assert probes == 2  # 2 schemes × 1 seed
    view = segmented(at, "view_role")
    for option in view.options[1:]:
        segmented(at, "view_role").set_value(option).run()
        assert_ok(at)
    open_tab(at, "Distributions")
    for option in segmented(at, "hist_kind").options:
        segmented(at, "hist_kind").set_value(option).run()
        assert_ok(at)
    for option in segmented(at, "hist_scale").options:
        segmented(at, "hist_scale").set_value(option).run()
        assert_ok(at)
    picks = hist_picks(at, segmented(at, "hist_kind").value)
    picks.set_value(picks.options[:1]).run()
    assert_ok(at)
    assert at.session_state["probes_run"] == probes, "display changes must not re-probe"
    set_method(at, 1, "Linear", "weight", "normal", std=0.5)
    assert_ok(at)
    assert at.session_state["probes_run"] > probes
    # runs are cached per scheme: one more change probes only the changed scheme (1 seed)
    probes = at.session_state["probes_run"]
    at.number_input(key="s1.Linear.weight.normal.std").set_value(0.25).run()
    assert_ok(at)
    assert at.session_state["probes_run"] == probes + 1
    at.text_input(key="s1.name").set_value("Renamed").run()
    assert_ok(at)
    assert at.session_state["probes_run"] == probes + 1, "a rename is not a new run"
    assert "Renamed" in set(experiment(at)["schemes"][i]["name"] for i in (0, 1))


def test_changing_the_view_redraws_the_variance_chart() -> None:
    at = run_app()
    before = chart_spec(at, "fig_var")
    segmented(at, "view_role").set_value("every observed row").run()
    assert_ok(at)
    assert chart_spec(at, "fig_var")["data"] != before["data"]


def test_a_display_change_after_a_slow_run_does_not_crash(monkeypatch) -> None:
    monkeypatch.setattr(runner, "time", Clock(step=2.0), raising=False)  # every run is slow
    at = run_app()
    segmented(at, "view_role").set_value("post-activation").run()
    assert_ok(at)


def test_a_second_session_reuses_a_slow_runs_cache_without_crashing(monkeypatch) -> None:
    monkeypatch.setattr(runner, "time", Clock(step=2.0), raising=False)
    run_app()
    at = run_app()
    assert at.session_state.get("probes_run", 0) == 0, "served from the cache"


# ---------------------------------------------------------------- scheme columns


def test_add_schemes_up_to_the_maximum() -> None:
    at = run_app()
    for count in range(3, MAX_SCHEMES + 1):
        assert not at.button(key="add_scheme").disabled
        at.button(key="add_scheme").click().run()
        assert_ok(at)
        assert len(at.session_state["editors"]) == count
    assert not [b for b in at.button if b.key == "add_scheme"], "no room for a fifth"
    assert all(at.button(key=f"s{e['uid']}.dup").disabled for e in at.session_state["editors"])
    assert errors(at) == []
    got = [s["name"] for s in experiment(at)["schemes"]]
    assert got == names(at) and len(set(got)) == MAX_SCHEMES
    assert at.session_state["probes_run"] > 2


def test_remove_schemes_down_to_one() -> None:
    at = run_app()
    at.button(key="s0.remove").click().run()
    assert_ok(at)
    assert names(at) == ["Kaiming normal"]
    assert [s["name"] for s in experiment(at)["schemes"]] == ["Kaiming normal"]
    assert at.button(key="s1.remove").disabled, "the last column can't be removed"
    at.button(key="add_scheme").click().run()
    assert_ok(at)
    assert len(names(at)) == 2 and errors(at) == []


def test_duplicate_copies_the_columns_edits() -> None:
    at = run_app()
    set_method(at, 1, "Linear", "weight", "normal", std=0.01)
    at.button(key="s1.dup").click().run()
    assert_ok(at)
    assert errors(at) == []
    copy_name = EDITED_KAIMING + " (copy)"
    assert names(at) == ["PyTorch default", EDITED_KAIMING, copy_name]
    original, copy = scheme(at, EDITED_KAIMING), scheme(at, copy_name)
    assert copy["rules"] == original["rules"]
    assert copy["rules"][0]["weight"]["std"] == 0.01
    new_uid = at.session_state["editors"][2]["uid"]
    assert at.number_input(key=f"s{new_uid}.Linear.weight.normal.std").value == 0.01


def test_duplicating_a_column_twice_gives_distinct_names() -> None:
    at = run_app()
    at.button(key="s1.dup").click().run()
    at.button(key="s1.dup").click().run()
    assert_ok(at)
    assert errors(at) == []
    assert len(set(names(at))) == 4


def test_rename_a_scheme() -> None:
    at = run_app()
    at.text_input(key="s0.name").set_value("Baseline").run()
    assert_ok(at)
    assert [s["name"] for s in experiment(at)["schemes"]] == ["Baseline", "Kaiming normal"]
    assert any("**Baseline**" in line for line in verdict_lines(at))


def test_two_columns_with_one_name_are_an_error_not_an_exception() -> None:
    at = run_app()
    at.text_input(key="s0.name").set_value("Kaiming normal").run()
    assert_ok(at)
    assert any("already called" in e and "must be unique" in e for e in errors(at)), errors(at)
    assert at.text_input(key="s0.name").value == "Kaiming normal"


# ---------------------------------------------------------------- upload (AppTest drives it)


def test_uploading_an_experiment_file_loads_it_into_the_widgets() -> None:
    at = run_app()
    d = experiment(at)
    d["model"]["depth"] = 3
    d["schemes"][0]["name"] = "Uploaded"
    d["seeds"] = [4]
    upload = open_tab(at, "Experiment").get("file_uploader")[0]
    upload.set_value(("mine.json", json.dumps(d).encode(), "application/json")).run()
    assert_ok(at)
    assert errors(at) == []
    assert at.number_input(key="model.mlp.depth").value == 3
    assert names(at) == ["Uploaded", "Kaiming normal"]
    assert experiment(at) == initlab.Experiment.from_dict(d).to_dict()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"{nope", "not valid JSON"), (b'{"model": {"name": "mlp"}}', "schemes"),
     (b"\xff\xfe", "mine.json was not loaded")],
    ids=["not-json", "no-schemes", "not-utf8"],
)  # fmt: skip
def test_uploading_a_broken_file_is_an_error_and_keeps_the_page(content: bytes, reason: str):
    at = run_app()
    before = experiment(at)
    uploader = open_tab(at, "Experiment").get("file_uploader")[0]
    uploader.set_value(("mine.json", content, "application/json")).run()
    assert_ok(at)
    assert any("mine.json was not loaded" in e and reason in e for e in errors(at)), errors(at)
    assert experiment(at) == before
    assert names(at) == ["PyTorch default", "Kaiming normal"]
