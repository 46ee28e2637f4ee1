"""A rule's `param` glob: the parameter's own name within its module decides too.

The oracle for what a scheme does is torch.nn.init itself, called here in `named_parameters()`
order with a generator seeded like the one apply_scheme gets: the tensors must be bit-identical.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

from initlab import Experiment, Rule, Scheme, apply_scheme, build_model, preset, validate_scheme
from initlab.experiment import MAX_GLOBS
from initlab.guard import PER_MATCH_S, matching_seconds
from initlab.layers import default_std
from initlab.methods import METHODS, MethodSpec, fans
from initlab.outline import meta_model
from initlab.schemes import MAX_GLOB_CHARS, PARAMS_COLUMNS, targets

ORTHOGONAL_RECURRENT = [
    {"layers": "RNN", "param": "weight_hh_l*", "weight": {"method": "orthogonal"}},
    {"layers": "RNN", "weight": {"method": "xavier_uniform"}, "bias": "zeros"},
]
RNNS = [nn.LSTM, nn.GRU, nn.RNN]


def scheme(rules: list[dict[str, Any]], name: str = "s") -> Scheme:
    return Scheme.from_dict({"name": name, "rules": rules})


def by_torch(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The orthogonal-recurrent recipe written with torch.nn.init, in parameter order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("weight_hh_l"):
                nn.init.orthogonal_(p, generator=g)
            elif "weight" in name:
                nn.init.xavier_uniform_(p, generator=g)
            else:
                nn.init.zeros_(p)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cls", RNNS)
def test_recurrent_weights_orthogonal_input_weights_xavier_bit_identical_to_torch(cls) -> None:
    torch.manual_seed(0)
    model = cls(8, 16, num_layers=2)
    torch.manual_seed(0)
    reference = cls(8, 16, num_layers=2)
    apply_scheme(model, scheme(ORTHOGONAL_RECURRENT), torch.Generator().manual_seed(3))
    want = by_torch(reference, seed=3)
    got = dict(model.named_parameters())
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name
    # and the recipe really is what it says: W_hh orthogonal (per gate block for LSTM/GRU rows)
    w_hh = got["weight_hh_l1"].detach().double()
    assert torch.allclose(w_hh.T @ w_hh, torch.eye(16, dtype=torch.float64), atol=1e-5)


def test_params_table_names_the_method_each_parameter_got() -> None:
    model = nn.LSTM(8, 16, num_layers=2)
    table = apply_scheme(model, scheme(ORTHOGONAL_RECURRENT), torch.Generator().manual_seed(0))
    methods = dict(zip(table["param"], table["method"], strict=True))
    assert methods["weight_hh_l0"].startswith("orthogonal")
    assert methods["weight_hh_l1"].startswith("orthogonal")
    assert methods["weight_ih_l0"].startswith("xavier_uniform")
    assert methods["bias_hh_l1"] == "zeros"
    # the orthogonal rule is rule 0, the rest rule 1
    found = {t.param: t.rule_index for t in targets(model, scheme(ORTHOGONAL_RECURRENT))}
    assert found == {
        "weight_ih_l0": 1,
        "weight_hh_l0": 0,
        "bias_ih_l0": 1,
        "bias_hh_l0": 1,
        "weight_ih_l1": 1,
        "weight_hh_l1": 0,
        "bias_ih_l1": 1,
        "bias_hh_l1": 1,
    }


def test_first_matching_rule_wins_per_parameter() -> None:
    """A rule without `param` before a `param` rule decides every parameter of the module."""
    rules = [
        {"layers": "RNN", "weight": "zeros"},
        {"layers": "RNN", "param": "weight_hh_l*", "weight": "ones"},
    ]
    model = nn.RNN(4, 4)
    apply_scheme(model, scheme(rules))
    assert all(bool((p == 0).all()) for n, p in model.named_parameters() if "weight" in n)
    assert {t.rule_index for t in targets(model, scheme(rules))} == {0}


def test_unmatched_parameters_of_a_param_rule_keep_their_default() -> None:
    torch.manual_seed(1)
    model = nn.GRU(4, 6)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rules = [{"layers": "GRU", "param": "weight_ih_*", "weight": "zeros"}]
    apply_scheme(model, scheme(rules))
    for name, p in model.named_parameters():
        if name == "weight_ih_l0":
            assert bool((p == 0).all())
        else:
            assert torch.equal(p, before[name]), name


def test_param_and_name_globs_together_pick_one_module_and_one_parameter() -> None:
    model = nn.ModuleDict({"enc": nn.LSTM(4, 4), "dec": nn.LSTM(4, 4)})
    rules = [{"layers": "RNN", "name": "enc", "param": "bias_hh_*", "bias": "ones"}]
    apply_scheme(model, scheme(rules))
    ones = {n for n, p in model.named_parameters() if bool((p == 1).all())}
    assert ones == {"enc.bias_hh_l0"}


def test_param_glob_is_case_sensitive_and_anchored_like_fnmatchcase() -> None:
    model = nn.RNN(3, 3)
    cases = [("WEIGHT_*", set()), ("weight_hh", set()), ("w*_hh_l0", {"weight_hh_l0"})]
    for glob, want in cases:
        rules = [{"layers": "RNN", "param": glob, "weight": "zeros"}]
        decided = {t.param for t in targets(model, scheme(rules)) if t.rule_index is not None}
        assert decided == want, glob


def test_round_trip_through_dicts_and_experiments() -> None:
    s = scheme(ORTHOGONAL_RECURRENT, "orthogonal recurrent")
    d = s.to_dict()
    assert d["rules"][0]["param"] == "weight_hh_l*"
    assert list(d["rules"][0]) == ["layers", "param", "weight", "bias"]
    assert "param" not in d["rules"][1]
    back = Scheme.from_dict(d)
    assert back == s
    assert back.rules[0].param == "weight_hh_l*"
    assert back.to_dict() == d
    exp = Experiment.from_dict({"model": {"name": "mlp", "depth": 2, "width": 8}, "schemes": [d]})
    assert Experiment.from_dict(exp.to_dict()).schemes == (s,)
    in_code = Rule("RNN", back.rules[0].weight, param="weight_hh_l*")
    assert in_code == back.rules[0]
    assert Rule.from_dict(in_code.to_dict(), "rule") == in_code


def test_label_shows_the_param_glob() -> None:
    assert Rule("RNN", param="weight_hh_l*").label() == "RNN param weight_hh_l*"
    assert Rule("Linear", name="*.c_proj").label() == "Linear named *.c_proj"
    both = Rule("LSTM", name="enc", param="bias_*")
    assert both.label() == "LSTM named enc param bias_*"


def test_a_rank_problem_names_the_param_rule() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    rules = [{"layers": "LayerNorm", "param": "weight", "weight": "orthogonal"}]
    with pytest.raises(ValueError, match=r"rule 0 \(LayerNorm param weight\): 1\.weight"):
        validate_scheme(scheme(rules), model)


@pytest.mark.parametrize(
    "value",
    ["", 3, ["weight"], "weight\nimport os", "a\u2028b", "x" * (MAX_GLOB_CHARS + 1)],
)
def test_a_bad_param_glob_is_refused_with_the_field_named(value: Any) -> None:
    rules = [{"layers": "RNN", "param": value, "weight": "zeros"}]
    pattern = (
        r"scheme\.rules\.0\.param: must be a glob on the parameter's name in its module "
        rf"\(1 to {MAX_GLOB_CHARS} printable characters, e\.g\. 'weight_hh_l\*'\); got"
    )
    with pytest.raises(ValueError, match=pattern):
        scheme(rules)
    if isinstance(value, str):  # built in code: checked the same way
        with pytest.raises(ValueError, match=r"rule\.param: must be a glob on the parameter"):
            Rule("RNN", param=value)


def test_unknown_rule_field_lists_param_among_the_allowed() -> None:
    with pytest.raises(ValueError, match=r"allowed: layers, name, param, weight, bias$"):
        scheme([{"layers": "RNN", "params": "weight_hh_l*"}])


def test_param_globs_count_toward_the_experiments_glob_bound() -> None:
    per = 128  # rules per scheme, each with a name and a param glob: 2 globs
    rules = [{"layers": "Linear", "name": f"n{i}", "param": "weight"} for i in range(per)]
    n = MAX_GLOBS // (2 * per) + 1
    schemes = [{"name": f"s{i}", "rules": rules} for i in range(n)]
    model = {"name": "mlp", "depth": 2, "width": 8}
    with pytest.raises(ValueError, match=rf"at most {MAX_GLOBS} rules with a name glob.*param"):
        Experiment.from_dict({"model": model, "schemes": schemes})
    Experiment.from_dict({"model": model, "schemes": schemes[: n - 1]})  # 2·128·(n−1) ≤ 512


def test_the_guard_counts_param_glob_tries_per_parameter() -> None:
    model = {"name": "mlp", "depth": 3, "width": 8, "bias": True}
    plain = [{"layers": "Linear", "weight": "zeros"}]
    with_param = [{"layers": "Linear", "param": "weight", "weight": "zeros"}, *plain]
    seeds = [0, 1]

    def seconds(rules: list[dict[str, Any]]) -> float:
        exp = Experiment.from_dict(
            {"model": model, "seeds": seeds, "schemes": [{"name": "s", "rules": rules}]}
        )
        return matching_seconds(exp, meta_model(exp.model))

    outline = meta_model({"name": "mlp", "depth": 3, "width": 8, "bias": True})
    modules = sum(1 for _ in outline.modules())
    params = sum(1 for _ in outline.parameters())
    walks = len(seeds) + 3
    assert seconds(plain) == pytest.approx(modules * 1 * walks * PER_MATCH_S, rel=1e-12)
    want = (modules * 2 + params * 1) * walks * PER_MATCH_S
    assert seconds(with_param) == pytest.approx(want, rel=1e-12)


def test_counted_scale_counts_modules_not_parameters() -> None:
    """1/sqrt(matches) with a param rule: the count is of LSTM modules (2), not weights (4)."""
    model = nn.ModuleList([nn.LSTM(4, 4, num_layers=2), nn.LSTM(4, 4, num_layers=2)])
    counted = {"method": "ones", "scale": "1/sqrt(matches)"}
    rules = [{"layers": "LSTM", "param": "weight_hh_*", "weight": counted}]
    apply_scheme(model, scheme(rules))
    for lstm in model:
        for name in ("weight_hh_l0", "weight_hh_l1"):
            values = getattr(lstm, name).detach().unique().tolist()
            assert values == [pytest.approx(1 / math.sqrt(2), rel=1e-6)], name
        assert not bool((lstm.weight_ih_l0 == 1 / math.sqrt(2)).any())


# ---------------------------------------------------------------- rules without `param`


def old_targets(model: nn.Module, s: Scheme) -> list[tuple[str, nn.Module, torch.Tensor, Any]]:
    """The walk as it was before `param`: one rule per module, its first match."""
    seen: set[int] = set()
    out = []
    for qualname, module in model.named_modules():
        found = s.rule_for(qualname, module)
        for pname, tensor in module.named_parameters(recurse=False):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            spec = found[1].spec_for(pname) if found else MethodSpec()
            full = f"{qualname}.{pname}" if qualname else pname
            out.append((full, qualname, module, tensor, spec))
    return out


def old_params_table(model: nn.Module, s: Scheme) -> pd.DataFrame:
    """The params table as apply_scheme built it before: one dict per parameter (no counted
    scales or transposed weights in the models used here)."""
    rows = []
    for full, qualname, module, tensor, spec in old_targets(model, s):
        shape = tuple(tensor.shape)
        fan_in, fan_out = fans(shape) if len(shape) >= 2 else (math.nan, math.nan)
        if spec.method == "default":
            expected = default_std(module, full.rsplit(".", 1)[-1], shape)
        else:
            expected = spec.expected_std(shape) if tensor.numel() else math.nan
        label = spec.label() if METHODS[spec.method].name != "default" else "default"
        row = {"param": full, "layer": qualname, "type": type(module).__name__}
        row |= {"shape": str(shape), "method": label, "fan_in": fan_in, "fan_out": fan_out}
        rows.append(row | {"gain": spec.gain(), "expected_std": expected})
    return pd.DataFrame(rows, columns=PARAMS_COLUMNS)


@pytest.mark.parametrize(
    ("model_spec", "name"),
    [
        ({"name": "mlp", "depth": 3, "width": 16, "bias": True}, "kaiming_normal"),
        ({"name": "cnn", "depth": 2, "channels": 4, "image_size": 8, "batchnorm": True}, "recipe"),
        ({"name": "resnet", "stages": 2, "width": 4, "image_size": 8}, "zero_init_residual"),
        ({"name": "lenet"}, "xavier_uniform_gain"),
        ({"name": "mlp", "depth": 2, "width": 8}, "pytorch_default"),
    ],
)
def test_an_existing_schemes_params_table_and_tensors_are_unchanged(model_spec, name) -> None:
    s = preset(name, "relu")
    model = build_model(model_spec, seed=0)
    expected = old_params_table(model, s)
    table = apply_scheme(model, s, torch.Generator().manual_seed(0))
    pd.testing.assert_frame_equal(table, expected)
    # the tensors: the old walk's targets initialized in order with an equal generator
    reference = build_model(model_spec, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, _, _, tensor, spec in old_targets(reference, s):
            call = spec.call(tuple(tensor.shape)) if tensor.numel() else None
            if call is not None:
                call.run(tensor, g)
    for (n, p), (m, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert n == m and torch.equal(p, q), n
