"""The restructured page, headless (AppTest): the view (open tab, rows, histogram kind and
scale, every health row) lives in the address and a fresh page restores it; an edited preset
column is a custom scheme, named so, in the file and in the code, and reverting restores the
preset; a rule by name (GPT-2's *.c_proj) is added, edited and measured; a corrupt address
keeps its text on screen; Health numbers depth as the verdicts do.

Models are tiny (mlp depth 4 × width 16, batch 8, one seed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import open_tab
from streamlit.testing.v1 import AppTest

import initlab
from initlab.layers import parameter_slots
from initlab.ui import keys, state
from initlab.ui.editors import EDITED, compose_rules
from initlab.ui.text import plain
from initlab.ui.urlstate import decode, encode

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = {"model.mlp.depth": 4, "model.mlp.width": 16, "batch_size": 8, "n_seeds": 1}
TRANSFORMER = {"n_layers": 2, "d_model": 16, "n_heads": 2, "vocab_size": 50, "seq_len": 8}
KAIMING = "Kaiming normal"

pytestmark = pytest.mark.usefixtures("empty_app_caches", "one_thread")


# ---------------------------------------------------------------- helpers


def run_app(query: dict[str, str] | None = None, **session: Any) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {**SMALL, **session}.items():
        at.session_state[key] = value
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return ok(at.run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def experiment(at: AppTest) -> dict[str, Any]:
    return decode(at.query_params["experiment"])


def scheme(at: AppTest, name: str) -> dict[str, Any]:
    found = [s for s in experiment(at)["schemes"] if s["name"] == name]
    assert found, (name, [s["name"] for s in experiment(at)["schemes"]])
    return found[0]


def segmented(at: AppTest, key: str):
    return next(b for b in at.get("button_group") if b.key == key)


def query(at: AppTest) -> dict[str, str]:
    """The address's parameters (one value each), the experiment left out."""
    return {k: at.query_params[k] for k in at.query_params if k != "experiment"}


def dataframe(at: AppTest, column: str) -> pd.DataFrame:
    """The one table on screen with this column (AppTest gives st.dataframe no key)."""
    frames = [f.value for f in at.dataframe if column in f.value.columns]
    assert len(frames) == 1, [list(f.value.columns) for f in at.dataframe]
    return frames[0]


# ---------------------------------------------------------------- the view in the address


VIEW = {  # each view control away from its default, as the address spells it
    keys.TAB: "Health",
    keys.VIEW_ROLE: "every observed row",
    keys.HIST_KIND: "gradient",
    keys.HIST_SCALE: "standardized (shape)",
    keys.HEALTH_ALL: "true",
    keys.THEORY_OVERLAY: "false",
}


def bound_key(at: AppTest, key: str) -> str:
    """The query parameter a view control is bound to (the browser writes it on a change)."""
    if key == keys.TAB:
        return at.tabs[0].proto and next(iter(tab_containers(at._tree))).query_param_key
    toggles = (keys.HEALTH_ALL, keys.THEORY_OVERLAY)
    widget = at.toggle(key=key) if key in toggles else segmented(at, key)
    return widget.proto.query_param_key


def tab_containers(node: Any):
    for child in getattr(node, "children", {}).values():
        if getattr(child, "type", None) == "tab_container":
            yield child.proto.tab_container
        yield from tab_containers(child)


def test_every_view_control_is_bound_to_the_address_under_its_key() -> None:
    at = run_app()
    assert query(at) == {}, "a fresh page spells out no view"
    bound = {key: bound_key(at, key) for key in (keys.TAB, keys.VIEW_ROLE, keys.THEORY_OVERLAY)}
    bound[keys.HIST_KIND] = bound_key(open_tab(at, "Distributions"), keys.HIST_KIND)
    bound[keys.HIST_SCALE] = bound_key(at, keys.HIST_SCALE)
    bound[keys.HEALTH_ALL] = bound_key(open_tab(at, "Health"), keys.HEALTH_ALL)
    assert bound == {key: key for key in keys.VIEW_KEYS}


def test_an_address_with_a_view_restores_it() -> None:
    first = run_app()
    at = run_app(query={"experiment": first.query_params["experiment"], **VIEW})
    assert at.session_state[keys.TAB] == "Health"
    assert at.toggle(key=keys.HEALTH_ALL).value is True, "the Health tab drawn, every row"
    assert len(dataframe(at, "status")) == 2 * 8, "2 schemes × (4 Linear + 4 activations)"
    assert not at.get("plotly_chart"), "only the open tab is drawn"
    open_tab(at, "Distributions")
    assert segmented(at, keys.HIST_KIND).value == "gradient"
    assert segmented(at, keys.HIST_SCALE).value == VIEW[keys.HIST_SCALE]
    open_tab(at, "Variance by depth")
    assert segmented(at, keys.VIEW_ROLE).value == VIEW[keys.VIEW_ROLE]
    assert at.toggle(key=keys.THEORY_OVERLAY).value is False
    assert first.session_state["probes_run"] == 2 and at.session_state.get("probes_run", 0) == 0


def test_a_view_the_model_lacks_in_the_address_is_the_default() -> None:
    at = run_app(query={keys.VIEW_ROLE: "residual stream (block outputs)", keys.TAB: "Nope"})
    assert at.session_state[keys.VIEW_ROLE] == "pre-activation (layers with weights)"
    assert {"fig_var", "fig_grad"} <= {
        c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")
    }


def test_histogram_picks_follow_the_model() -> None:
    at = open_tab(run_app(), "Distributions")
    kind = segmented(at, keys.HIST_KIND).value
    model = initlab.Experiment.from_dict(experiment(at)).model
    picks = at.multiselect(key=keys.hist_names(kind, json.dumps(model)))
    ok(picks.set_value(picks.options[:1]).run())
    ok(at.number_input(key="model.mlp.depth").set_value(3).run())
    other = initlab.Experiment.from_dict(experiment(at)).model
    fresh = at.multiselect(key=keys.hist_names(kind, json.dumps(other)))
    # another model: its own default picks (every layer of three), none of the old model's
    assert fresh.value == fresh.options == ["fc1", "fc2", "fc3"]
    assert not [m for m in at.multiselect if m.key == picks.key], "the old picks' widget is gone"


# ---------------------------------------------------------------- an edited preset column


def code_of(at: AppTest, index: int) -> str:
    return open_tab(at, "Code").code[index].value


def test_an_edited_kaiming_column_is_custom_and_reverting_restores_the_preset() -> None:
    at = run_app()
    method = "s1.Linear.weight.method"
    ok(at.selectbox(key=method).set_value("normal").run())
    assert at.text_input(key="s1.name").value == KAIMING + EDITED
    edited = scheme(at, KAIMING + EDITED)
    assert "preset" not in edited
    # only the rules that match a layer of the mlp (the preset's Conv, norms... are gone)
    assert [r["layers"] for r in edited["rules"]] == ["Linear"]
    assert edited["rules"][0]["weight"]["method"] == "normal"
    code = code_of(at, 1)
    assert f"'{KAIMING + EDITED}'" in code and "preset kaiming_normal" not in code
    assert "matches no layer" not in code
    ok(at.selectbox(key=method).set_value("kaiming_normal").run())  # the edit reverted
    assert at.text_input(key="s1.name").value == KAIMING
    want = initlab.preset("kaiming_normal", "relu").to_dict()
    assert scheme(at, KAIMING) == {"name": KAIMING, "preset": "kaiming_normal", **want}
    assert "preset kaiming_normal" in code_of(at, 1)


def test_the_undo_button_restores_the_preset_and_a_typed_name_is_kept() -> None:
    at = run_app()
    ok(at.text_input(key="s1.name").set_value("Mine").run())
    ok(at.selectbox(key="s1.Linear.weight.method").set_value("xavier_normal").run())
    assert at.text_input(key="s1.name").value == "Mine", "a typed name is the user's"
    assert "preset" not in scheme(at, "Mine")
    ok(at.button(key="s1.reset").click().run())
    assert at.selectbox(key="s1.Linear.weight.method").value == "kaiming_normal"
    assert scheme(at, "Mine")["preset"] == "kaiming_normal"
    assert not [b for b in at.button if b.key == "s1.reset"], "nothing left to undo"


# ---------------------------------------------------------------- a rule by name


def transformer_page() -> AppTest:
    session = {keys.model_param("transformer", k): v for k, v in TRANSFORMER.items()}
    at = run_app(**session)
    return ok(at.selectbox(key=keys.MODEL_NAME).set_value("transformer").run())


def test_a_rule_by_name_on_the_transformer_is_measured_as_apply_scheme_does() -> None:
    at = transformer_page()
    ok(at.button(key=keys.button(1, "add_rule")).click().run())
    row = keys.named_rule(1, 0, "weight")
    ok(at.selectbox(key=keys.named_rule(1, 0, "layers")).set_value("Linear").run())
    ok(at.text_input(key=keys.named_rule(1, 0, "name")).set_value("*.c_proj").run())
    ok(at.selectbox(key=f"{row}.method").set_value("normal").run())
    ok(at.number_input(key=f"{row}.normal.std").set_value(0.02).run())
    ok(at.text_input(key=f"{row}.scale").set_value("0.5").run())
    assert [e.value for e in at.error] == []
    rule = scheme(at, KAIMING + EDITED)["rules"][0]
    assert rule["name"] == "*.c_proj" and rule["layers"] == "Linear"
    assert rule["weight"] == {"method": "normal", "mean": 0.0, "std": 0.02, "scale": 0.5}
    shown = dataframe(open_tab(at, "Tables"), "expected_std")
    shown = shown[shown["scheme"] == KAIMING + EDITED].set_index("param")
    alone = initlab.run(initlab.Experiment.from_dict(experiment(at))).params
    alone = alone[alone["scheme"] == KAIMING + EDITED].set_index("param")
    c_proj = [p for p in alone.index if p.endswith("c_proj.weight")]
    assert len(c_proj) == 2 * TRANSFORMER["n_layers"]
    assert shown.loc[c_proj, "std"].tolist() == alone.loc[c_proj, "std"].tolist()
    assert shown.loc[c_proj, "expected_std"].tolist() == pytest.approx([0.01] * len(c_proj))
    # 16·16 draws of N(0, 0.02)·0.5 (fc's c_proj: 64·16): the measured std within 20 %
    assert shown.loc[c_proj, "std"].tolist() == pytest.approx([0.01] * len(c_proj), rel=0.2)
    others = [p for p in alone.index if p.endswith("c_attn.weight")]
    assert all(shown.loc[others, "method"] != "normal"), "other Linear layers keep Kaiming"


def test_a_param_glob_rule_composes_before_the_familys_own_rule() -> None:
    """No zoo model has an RNN: the editor's composition on one, applied by the library."""
    rnn = torch.nn.RNN(6, 8, num_layers=2)
    slots = parameter_slots(rnn)
    base = [
        {"layers": "RNN", "param": "weight_hh_l*", "weight": "default"},
        {"layers": "RNN", "weight": "default", "bias": "default"},
    ]
    named = {0: {"layers": "RNN", "param": "weight_hh_l*", "weight": {"method": "orthogonal"}}}
    edits = {"RNN": {"weight": {"method": "xavier_uniform"}, "bias": {"method": "zeros"}}}
    rules = compose_rules(base, edits, slots, named)
    assert rules == [named[0], {**base[1], **edits["RNN"]}], "the family row edits rule 1"
    initlab.apply_scheme(
        rnn,
        initlab.Scheme.from_dict({"name": "r", "rules": rules}),
        torch.Generator().manual_seed(0),
    )
    for layer in range(2):
        hh = getattr(rnn, f"weight_hh_l{layer}").detach().double()
        torch.testing.assert_close(hh @ hh.T, torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0)
        ih = getattr(rnn, f"weight_ih_l{layer}").detach()
        bound = (6.0 / (ih.shape[0] + ih.shape[1])) ** 0.5
        assert ih.abs().max() <= bound and not torch.allclose(ih @ ih.T, torch.eye(8))
        assert not getattr(rnn, f"bias_hh_l{layer}").any()


# ---------------------------------------------------------------- a corrupt address


def test_a_corrupt_address_keeps_its_text_visible_until_dismissed() -> None:
    text = '{"model": {"name": "mlp", "depth": 2}, "schemes": [{"preset": "kaiming_nromal"}]}'
    at = run_app(query={"experiment": encode(json.loads(text))})
    problem = [plain(e.value) for e in at.error if state.ADDRESS_PROBLEM in plain(e.value)]
    assert problem and "kaiming_nromal" in problem[0]
    shown = [c.value for c in at.code if "kaiming_nromal" in c.value]
    assert [json.loads(s) for s in shown] == [json.loads(text)], "the decoded text, as held"
    assert "What the address held" in [e.label for e in at.expander]
    ok(at.number_input(key="model.mlp.depth").set_value(3).run())  # the page goes on
    assert [c.value for c in at.code if "kaiming_nromal" in c.value] == shown, "still there"
    ok(at.button(key="dismiss_load_error").click().run())
    assert not [e for e in at.error if state.ADDRESS_PROBLEM in plain(e.value)]
    assert not [c for c in at.code if "kaiming_nromal" in c.value]


# ---------------------------------------------------------------- Health numbered as verdicts

VERDICT_LAYER = re.compile(r"at layer (\d+) \(([^)]+)\)")


def test_health_depth_numbers_the_layer_the_verdict_names() -> None:
    d = {
        "model": {"name": "mlp", "depth": 4, "width": 16},
        "input": {"batch_size": 8},
        "seeds": [0],
        "schemes": [
            {
                "name": "Tiny",
                "rules": [{"layers": "Linear", "weight": {"method": "normal", "std": 0.01}}],
            },
            {
                "name": "Big",
                "rules": [{"layers": "Linear", "weight": {"method": "normal", "std": 1.0}}],
            },
        ],
    }
    at = run_app(query={"experiment": encode(d), keys.TAB: "Health", keys.HEALTH_ALL: "true"})
    health = dataframe(at, "status")
    assert "order" not in health.columns and list(health.columns[:4]) == [
        "scheme",
        "depth",
        "layer",
        "status",
    ]
    lines = [m.value for m in at.markdown if "●" in m.value]
    for name in ("Tiny", "Big"):
        line = next(x for x in lines if f"**{name}**:" in x)
        depth, layer = VERDICT_LAYER.search(plain(line)).groups()
        rows = health[(health["scheme"] == name) & (health["depth"] == depth)]
        assert rows["layer"].tolist() == [layer] == [f"fc{depth}"]
        weights = health[(health["scheme"] == name) & (health["depth"] != "")]
        assert weights["depth"].tolist() == ["1", "2", "3", "4"]
        assert weights["layer"].tolist() == ["fc1", "fc2", "fc3", "fc4"]
