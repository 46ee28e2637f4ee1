"""The pure helpers of the dashboard (no streamlit session needed): the address's experiment
token, the scheme editor's rule bookkeeping, the method dropdown and the histogram picks."""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from initlab import Experiment
from initlab.methods import METHODS
from initlab.ui.editors import compose_rules, editable_rule, method_options, spec_dict
from initlab.ui.results_panel import _default_names
from initlab.ui.urlstate import MAX_URL_CHARS, decode, encode

URL_SAFE = set(string.ascii_letters + string.digits + "-_")
EXPERIMENT = {
    "model": {"name": "mlp", "depth": 3, "width": 8, "activation": "tanh"},
    "input": {"batch_size": 16},
    "seeds": [0, 1],
    "schemes": [
        {"name": "PyTorch default", "preset": "pytorch_default"},
        {"name": "Xavier, tanh gain",
         "rules": [{"layers": "Linear", "weight": {"method": "xavier_normal", "gain": "tanh"},
                    "bias": {"method": "zeros"}}]},
    ],
}  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


# ---------------------------------------------------------------- urlstate


def test_experiment_round_trips_through_the_address() -> None:
    token = encode(EXPERIMENT)
    assert decode(token) == EXPERIMENT
    # and the decoded dict is still a valid experiment, equal to the original
    assert Experiment.from_dict(decode(token)) == Experiment.from_dict(EXPERIMENT)


def test_token_is_url_safe_base64_without_padding() -> None:
    # Every length mod 3, so every amount of padding base64 would add, is exercised.
    for extra in ("", "a", "ab"):
        token = encode({**EXPERIMENT, "note": extra})
        assert set(token) <= URL_SAFE, "only URL-safe characters, no '+', '/' or '='"
        padded = token + "=" * (-len(token) % 4)
        assert json.loads(base64.urlsafe_b64decode(padded)) == {**EXPERIMENT, "note": extra}


def test_token_is_compact_json() -> None:
    raw = base64.urlsafe_b64decode(encode({"a": [1, 2]}) + "==").decode()
    assert raw == '{"a":[1,2]}'


def test_decode_accepts_a_padded_token_too() -> None:
    padded = base64.urlsafe_b64encode(json.dumps(EXPERIMENT).encode()).decode()
    assert decode(padded) == EXPERIMENT


def test_non_ascii_scheme_names_survive() -> None:
    d = {"schemes": [{"name": "Kaiming · ReLU → σ² ≈ 1 🚀"}]}
    assert decode(encode(d)) == d


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_round_trip_of_any_json_object(d: dict) -> None:
    assert decode(encode(d)) == d


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not base64 at all!", "not valid base64 JSON"),
        ("%%%", "not valid base64 JSON"),
        (base64.urlsafe_b64encode(b"{not json").decode(), "not valid base64 JSON"),
        (base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(), "not valid base64 JSON"),
        (encode([1, 2, 3]), "not a JSON object"),  # type: ignore[arg-type]
        (base64.urlsafe_b64encode(b'"text"').decode(), "not a JSON object"),
        ("A" * (MAX_URL_CHARS + 1), "too long"),
    ],
)
def test_decode_refuses_with_a_readable_reason(token: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode(token)


# ---------------------------------------------------------------- editable_rule

RULES = [
    {"layers": "Linear", "name": "*.c_proj", "weight": {"method": "normal", "std": 0.002}},
    {"layers": "Conv2d", "weight": {"method": "kaiming_normal"}},
    {"layers": "Linear", "weight": {"method": "normal", "std": 0.02}},
    {"layers": "Linear", "weight": {"method": "zeros"}},
]


def test_editable_rule_skips_rules_with_a_name_glob_and_takes_the_first_match() -> None:
    assert editable_rule(RULES, "Linear", ["Linear"]) == 2


def test_editable_rule_matches_a_family_through_its_class_names() -> None:
    assert editable_rule(RULES, "Conv", ["Conv1d", "Conv2d"]) == 1
    assert editable_rule(RULES, "Conv", ["Conv1d"]) is None


def test_editable_rule_is_none_when_nothing_covers_the_family() -> None:
    assert editable_rule(RULES, "LayerNorm", ["LayerNorm"]) is None
    assert editable_rule([], "Linear", ["Linear"]) is None


# ---------------------------------------------------------------- compose_rules

SLOTS = {
    "Linear": {"classes": ["Linear"], "weight": {2}, "bias": {1}},
    "LayerNorm": {"classes": ["LayerNorm"], "weight": {1}, "bias": {1}},
}


def test_compose_rules_edits_the_covering_rule_in_place_keeping_order() -> None:
    edit = {"weight": {"method": "normal", "mean": 0.0, "std": 0.01},
            "bias": {"method": "zeros"}}  # fmt: skip
    out = compose_rules(RULES, {"Linear": edit}, SLOTS)
    assert [r["layers"] for r in out] == [r["layers"] for r in RULES]
    assert out[2] == {"layers": "Linear", **edit}
    assert out[0] == RULES[0], "the name-glob rule is kept as it was (first match still wins)"
    assert out[3] == RULES[3]


def test_compose_rules_appends_a_rule_for_an_edited_uncovered_family() -> None:
    edit = {"weight": {"method": "ones"}, "bias": {"method": "zeros"}}
    out = compose_rules(RULES, {"LayerNorm": edit}, SLOTS)
    assert out[: len(RULES)] == RULES
    assert out[-1] == {"layers": "LayerNorm", **edit}


def test_compose_rules_adds_no_rule_for_an_all_default_uncovered_family() -> None:
    edit = {"weight": {"method": "default"}, "bias": {"method": "default"}}
    assert compose_rules([], {"LayerNorm": edit}, SLOTS) == []


def test_compose_rules_does_not_mutate_its_input() -> None:
    base = [{"layers": "Linear", "weight": {"method": "zeros"}}]
    before = json.dumps(base)
    compose_rules(base, {"Linear": {"weight": {"method": "ones"}}}, SLOTS)
    assert json.dumps(base) == before


def test_compose_rules_output_is_a_valid_scheme() -> None:
    edit = {"weight": {"method": "xavier_normal", "gain": "tanh"}, "bias": {"method": "zeros"}}
    rules = compose_rules([], {"Linear": edit}, SLOTS)
    exp = Experiment.from_dict({**EXPERIMENT, "schemes": [{"name": "s", "rules": rules}]})
    assert exp.schemes[0].to_dict()["rules"][0]["weight"]["gain"] == "tanh"


# ---------------------------------------------------------------- method_options


def test_method_options_for_a_bias_exclude_fan_based_methods() -> None:
    options = method_options({1}, "zeros")
    assert {"default", "normal", "uniform", "zeros", "ones", "constant"} <= set(options)
    # torch.nn.init refuses these on a 1-D tensor (no fan_in / not a matrix)
    assert not {"xavier_normal", "kaiming_normal", "orthogonal", "eye", "dirac"} & set(options)


def test_method_options_follow_the_tensor_rank() -> None:
    matrix, conv = method_options({2}, "normal"), method_options({4}, "normal")
    assert "eye" in matrix and "dirac" not in matrix
    assert "dirac" in conv and "eye" not in conv
    assert "xavier_normal" in matrix and "xavier_normal" in conv


def test_method_options_need_every_rank_of_the_slot() -> None:
    assert "eye" not in method_options({2, 4}, "normal")
    assert "xavier_normal" not in method_options({1, 2}, "normal")


def test_method_options_keep_registry_order_and_have_no_duplicates() -> None:
    options = method_options({2}, "normal")
    assert options == [m for m in METHODS if m in options]
    assert len(options) == len(set(options))


def test_method_options_append_an_unfit_current_method_to_explain_it() -> None:
    options = method_options({1}, "xavier_normal")
    assert options[-1] == "xavier_normal"
    assert options[:-1] == method_options({1}, "zeros")


# ---------------------------------------------------------------- spec_dict


@pytest.mark.parametrize("value", [None, "default"])
def test_spec_dict_of_nothing_is_default(value: object) -> None:
    assert spec_dict(value) == {"method": "default"}


def test_spec_dict_of_a_name_accepts_the_torch_underscore_form() -> None:
    assert spec_dict("zeros") == {"method": "zeros"}
    assert spec_dict("zeros_") == {"method": "zeros"}


def test_spec_dict_of_a_dict_keeps_parameters_and_strips_the_underscore() -> None:
    value = {"method": "normal_", "std": 0.02, "scale": 0.5}
    assert spec_dict(value) == {"method": "normal", "std": 0.02, "scale": 0.5}
    assert value["method"] == "normal_", "the rule itself is not changed"


def test_spec_dict_of_a_dict_without_method_is_default() -> None:
    assert spec_dict({"std": 0.1}) == {"method": "default", "std": 0.1}


# ---------------------------------------------------------------- _default_names


@pytest.mark.parametrize("n", [0, 1, 3, 4])
def test_default_names_keep_short_lists(n: int) -> None:
    names = [f"fc{i}" for i in range(n)]
    assert _default_names(names) == names


def test_default_names_are_evenly_spaced_first_and_last_included() -> None:
    names = [f"fc{i}" for i in range(1, 11)]
    assert _default_names(names) == ["fc1", "fc4", "fc7", "fc10"]
    assert _default_names(names, most=2) == ["fc1", "fc10"]


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=2, max_value=8))
def test_default_names_are_distinct_ordered_picks(n: int, most: int) -> None:
    names = [f"layer{i}" for i in range(n)]
    picked = _default_names(names, most)
    assert len(picked) == min(n, most)
    assert len(set(picked)) == len(picked)
    assert picked == sorted(picked, key=names.index)
    if n:
        assert picked[0] == names[0] and picked[-1] == names[-1]
