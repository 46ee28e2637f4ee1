"""Every method's doc: its formula, checked against the code, and examples that run.

The examples are real doctests (exact output), run here module by module. Each formula written
in a doc is transcribed below and recomputed independently (torch's calculate_gain, scipy's
truncated normal), then compared with the method's `expected_std`: a doc and the code that
disagree fail here, and so does a method added without a doc or a formula.
"""

from __future__ import annotations

import doctest
import io
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import torch
from scipy import stats
from torch import nn

from initlab import (
    csvout,
    functional,
    gains,
    gotchas,
    initializers,
    methods,
    models,
    reading,
    report,
    units,
)
from initlab.gains import estimated_gain
from initlab.layers import default_std
from initlab.methods import METHODS, SCALE_BY_MATCHES, apply_method, parse_method_spec

Shape = tuple[int, ...]
Params = dict[str, Any]
MODULES: tuple[ModuleType, ...] = (
    methods,
    initializers,
    gains,
    models,
    functional,
    gotchas,
    units,
    report,
    csvout,
    reading,
)
SHAPES: tuple[Shape, ...] = ((256, 128), (128, 256), (64, 32, 3, 3), (8, 8, 3), (20,))


# ---------------------------------------------------------------- the examples run


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    return [t for m in MODULES for t in finder.find(m) if t.examples]


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_example_output_is_exact(test: doctest.DocTest) -> None:
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=0)  # exact output: no ellipsis, no whitespace slack
    runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()


def test_every_method_example_is_collected() -> None:
    names = {t.name for t in DOCTESTS}
    assert {f"initlab.methods.__test__.METHODS[{n!r}]" for n in METHODS} <= names


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_a_formula_and_an_example(name: str) -> None:
    doc = METHODS[name].doc
    assert doc.strip().startswith(f"{name}:"), "the doc opens with the method's name"
    assert "=" in doc
    examples = doctest.DocTestParser().get_examples(doc)
    assert any(name in e.source for e in examples), "an example calls the method itself"
    assert any(e.want for e in examples), "an example prints something to compare"


# ---------------------------------------------------------------- the formulas, recomputed


def fan_in(s: Shape) -> int:
    return s[1] * math.prod(s[2:])


def fan_out(s: Shape) -> int:
    return s[0] * math.prod(s[2:])


def fan_mode(s: Shape, p: Params) -> float:
    return {"fan_in": fan_in(s), "fan_out": fan_out(s), "fan_avg": (fan_in(s) + fan_out(s)) / 2}[
        p["mode"]
    ]


def gain(value: float | str) -> float:
    return value if isinstance(value, float) else nn.init.calculate_gain(value)


def kaiming(p: Params) -> float:
    if p["nonlinearity"] == "gelu":
        return estimated_gain("gelu")  # checked against numerical integration in test_gains
    return nn.init.calculate_gain(p["nonlinearity"], p["a"])


def trunc_as_written(p: Params) -> float:
    """The doc's std_out, evaluated as written with scipy's φ and Φ."""
    alpha, beta = (p["a"] - p["mean"]) / p["std"], (p["b"] - p["mean"]) / p["std"]
    phi, z = stats.norm.pdf, stats.norm.cdf(beta) - stats.norm.cdf(alpha)
    shift = (alpha * phi(alpha) - beta * phi(beta)) / z
    return p["std"] * math.sqrt(1 + shift - ((phi(alpha) - phi(beta)) / z) ** 2)


def bernoulli(ones: float, numel: int) -> float:
    p = ones / numel
    return math.sqrt(p * (1 - p))


def from_bound(bound: Callable[[Shape, Params], float]) -> Callable[[Shape, Params], float]:
    """U(-b, b) has std b / √3: the doc's b and its std formula must agree."""
    return lambda s, p: bound(s, p) / math.sqrt(3)


XAVIER = "std = gain · √(2 / (fan_in + fan_out))"
KAIMING = "std = gain / √fan_mode"
# method -> (formula as written in its doc, the same formula in code)
FORMULAS: dict[str, tuple[str, Callable[[Shape, Params], float]]] = {
    "default": ("std = 1 / √(3 · fan_in)", lambda s, p: 1 / math.sqrt(3 * fan_in(s))),
    "uniform": ("std = (b - a) / √12", lambda s, p: (p["b"] - p["a"]) / math.sqrt(12)),
    "normal": ("std = std", lambda s, p: p["std"]),
    "trunc_normal": (
        "std_out = std · √(1 + (α·φ(α) - β·φ(β)) / Z - ((φ(α) - φ(β)) / Z)²)",
        lambda s, p: trunc_as_written(p),
    ),
    "constant": ("std = 0", lambda s, p: 0.0),
    "ones": ("std = 0", lambda s, p: 0.0),
    "zeros": ("std = 0", lambda s, p: 0.0),
    "eye": (
        "std = √(p · (1 - p)), p = min(rows, cols) / (rows · cols)",
        lambda s, p: bernoulli(min(s), math.prod(s)),
    ),
    "dirac": (
        "std = √(p · (1 - p)), p = groups · min(out_channels / groups, in_channels) / numel",
        lambda s, p: bernoulli(p["groups"] * min(s[0] // p["groups"], s[1]), math.prod(s)),
    ),
    "xavier_uniform": (
        "b = gain · √(6 / (fan_in + fan_out))",
        from_bound(lambda s, p: gain(p["gain"]) * math.sqrt(6 / (fan_in(s) + fan_out(s)))),
    ),
    "xavier_normal": (
        XAVIER,
        lambda s, p: gain(p["gain"]) * math.sqrt(2 / (fan_in(s) + fan_out(s))),
    ),
    "kaiming_uniform": (
        "b = gain · √(3 / fan_mode)",
        from_bound(lambda s, p: kaiming(p) * math.sqrt(3 / fan_mode(s, p))),
    ),
    "kaiming_normal": (KAIMING, lambda s, p: kaiming(p) / math.sqrt(fan_mode(s, p))),
    "orthogonal": (
        "std = |gain| · √(min(rows, cols) / (rows · cols))",
        lambda s, p: abs(gain(p["gain"])) * math.sqrt(min(s[0], math.prod(s[1:])) / math.prod(s)),
    ),
    "sparse": (
        "std_out = std · √(1 - ⌈sparsity · rows⌉ / rows)",
        lambda s, p: p["std"] * math.sqrt(1 - math.ceil(p["sparsity"] * s[0]) / s[0]),
    ),
    "lecun_normal": ("std = 1 / √fan_in", lambda s, p: 1 / math.sqrt(fan_in(s))),
    "lecun_uniform": (
        "b = √(3 / fan_in)",
        from_bound(lambda s, p: math.sqrt(3 / fan_in(s))),
    ),
    "variance_scaling": (
        "std = √(factor / n)",
        lambda s, p: math.sqrt(p["factor"] / fan_mode(s, p)),
    ),
}
# Each std formula that goes with a uniform's bound is written in the doc too.
ALSO_WRITTEN = {
    "xavier_uniform": XAVIER,
    "kaiming_uniform": KAIMING,
    "lecun_uniform": "std = 1 / √fan_in",
}
PARAMS: dict[str, list[Params]] = {
    "uniform": [{}, {"a": -0.3, "b": 0.5}],
    "normal": [{}, {"mean": 0.5, "std": 0.02}],
    "trunc_normal": [{}, {"std": 0.02}, {"mean": 0.1, "std": 0.5, "a": -0.5, "b": 1.5}],
    "constant": [{"val": 0.3}],
    "dirac": [{}, {"groups": 2}],
    "xavier_uniform": [{}, {"gain": "tanh"}, {"gain": 0.5}],
    "xavier_normal": [{}, {"gain": "relu"}, {"gain": 2.0}],
    "kaiming_uniform": [{}, {"nonlinearity": "relu", "mode": "fan_out"}, {"nonlinearity": "gelu"}],
    "kaiming_normal": [{}, {"nonlinearity": "leaky_relu", "a": 0.2}, {"nonlinearity": "tanh"}],
    "orthogonal": [{}, {"gain": 2.0}, {"gain": "sigmoid"}],
    "sparse": [{}, {"sparsity": 0.25, "std": 0.05}],
    "variance_scaling": [{}, {"factor": 2.0, "mode": "fan_avg"}, {"mode": "fan_out"}],
}
# Data-dependent methods (lsuv): the std comes from the data, tested in tests/test_lsuv.py.
DATA = {name for name, method in METHODS.items() if method.data_dependent}
FORMULA_CASES = [
    (name, given, shape)
    for name in METHODS
    if name != "default" and name not in DATA
    for given in PARAMS.get(name, [{}])
    for shape in SHAPES
    if parse_method_spec({"method": name, **given}, "w").rank_problem(shape) is None
]


def test_every_method_has_a_transcribed_formula() -> None:
    assert sorted(DATA) == ["lsuv"]
    assert set(FORMULAS) == set(METHODS) - DATA
    assert {name for name, _, _ in FORMULA_CASES} == set(METHODS) - {"default"} - DATA


def test_a_data_dependent_method_states_its_rule_and_has_no_std_formula() -> None:
    assert "|Var(output) − 1| < tol" in METHODS["lsuv"].doc
    assert math.isnan(parse_method_spec("lsuv", "w").expected_std((64, 32)))


@pytest.mark.parametrize("name", sorted(set(METHODS) - DATA))
def test_formula_is_written_in_the_doc(name: str) -> None:
    doc = METHODS[name].doc
    assert FORMULAS[name][0] in doc
    assert ALSO_WRITTEN.get(name, "") in doc


@pytest.mark.parametrize(
    ("name", "given", "shape"), FORMULA_CASES, ids=[f"{n}{g}{s}" for n, g, s in FORMULA_CASES]
)
def test_doc_formula_is_the_expected_std(name: str, given: Params, shape: Shape) -> None:
    spec = parse_method_spec({"method": name, **given}, "w")
    formula = FORMULAS[name][1](shape, spec.kwargs)
    assert spec.expected_std(shape) == pytest.approx(formula, rel=1e-9, abs=1e-15)


def test_trunc_normal_formula_as_written_is_scipys() -> None:
    p = {"mean": 0.1, "std": 0.5, "a": -0.5, "b": 1.5}
    cut = stats.truncnorm((-0.5 - 0.1) / 0.5, (1.5 - 0.1) / 0.5, loc=0.1, scale=0.5)
    assert trunc_as_written(p) == pytest.approx(cut.std(), rel=1e-12)


@pytest.mark.parametrize(
    "module", [nn.Linear(128, 256, device="meta"), nn.Conv2d(32, 64, 3, device="meta")]
)
def test_default_formula_is_pytorchs_linear_and_conv_weight(module: nn.Module) -> None:
    shape = tuple(module.weight.shape)
    assert math.isnan(METHODS["default"].expected_std(shape, {}))  # the method alone can't know
    assert default_std(module, "weight", shape) == pytest.approx(FORMULAS["default"][1](shape, {}))


# ---------------------------------------------------------------- apply_method, which the docs use


@pytest.mark.parametrize("name", ["xavier_normal", "kaiming_uniform", "sparse", "lecun_normal"])
def test_apply_method_is_the_rules_call_bit_for_bit(name: str) -> None:
    spec = parse_method_spec({"method": name, "scale": 0.5}, "w")
    theirs = torch.empty(64, 32)
    spec.call((64, 32)).run(theirs, torch.Generator().manual_seed(3))
    theirs.mul_(0.5)
    ours = apply_method(
        torch.empty(64, 32), name, generator=torch.Generator().manual_seed(3), scale=0.5
    )
    assert torch.equal(ours, theirs)


def test_apply_method_refuses_what_a_rule_refuses() -> None:
    with pytest.raises(ValueError, match=r"method: eye needs a 2-D tensor"):
        apply_method(torch.empty(2, 2, 2), "eye")
    with pytest.raises(ValueError, match=r"method.gain: must be"):
        apply_method(torch.empty(2, 2), "xavier_normal", gain="nope")
    with pytest.raises(ValueError, match=r"unknown parameter 'std'"):
        apply_method(torch.empty(2, 2), "zeros", std=1.0)
    with pytest.raises(ValueError, match=r"method.scale: '1/sqrt\(matches\)' needs a model"):
        apply_method(torch.empty(2, 2), "zeros", scale=SCALE_BY_MATCHES)


def test_apply_method_default_leaves_the_tensor_alone() -> None:
    w = torch.arange(6.0).reshape(2, 3)
    assert apply_method(w, "default") is w
    assert torch.equal(w, torch.arange(6.0).reshape(2, 3))


def test_default_std_of_a_layer_without_inputs_is_torchs_zero_bias() -> None:
    torch.manual_seed(0)
    module = nn.Linear(0, 4)  # torch: bias bound 1/sqrt(fan_in) if fan_in > 0 else 0
    assert default_std(module, "bias", (4,)) == 0.0
    assert torch.count_nonzero(module.bias) == 0
