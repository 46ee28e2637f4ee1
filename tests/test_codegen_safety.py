"""Exported code contains no user text outside string literals and comments that stay comments.

Hypothesis throws arbitrary unicode at every string field of a scheme (name, preset, layers,
name glob, gain); whatever validation accepts must export to a module whose top level is
exactly the expected imports and function definitions, whose names are all initlab's own, and
which defines nothing else when run.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from initlab import PRESETS, Rule, Scheme, preset, to_code
from initlab.layers import FAMILIES

IMPORTS = {"__future__", "fnmatch", "math", "torch"}
FUNCTIONS = {"initialize_weights", "sparse_", "variance_scaling_", "_fan", "_untied", "_is_a"}
DEFINED = {"annotations", "fnmatch", "math", "torch", "nn", *FUNCTIONS}
# Payloads that would be code or markup if any text were written raw.
PAYLOADS = [
    "Linear\n'''\nimport os; os.system('touch /tmp/pwned')\n'''",
    "x\rimport os",
    "x\u2028import os",
    "*\nimport os\n#",
    "'); import os; ('",
    '"""',
    "\\",
    "<script>alert(1)</script>",
    "=cmd|' /C calc'!A0",
]


def _names(code: str) -> set[str]:
    """Every identifier the module uses: user text must never become one."""
    tree = ast.parse(code)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args}
    return names


def _benign_names() -> set[str]:
    """The vocabulary of initlab's own exports: every preset, globs, class names, helpers."""
    names: set[str] = set()
    schemes = [preset(name) for name in PRESETS]
    schemes.append(
        Scheme.from_dict(
            {
                "name": "all",
                "rules": [
                    {
                        "layers": "Foo",
                        "name": "*.x",
                        "weight": {"method": "sparse", "sparsity": 0.5},
                    },
                    {"layers": "a.b.Foo", "weight": {"method": "variance_scaling"}},
                    {
                        "layers": "Linear",
                        "weight": {"method": "kaiming_normal", "nonlinearity": "gelu"},
                    },
                    {"layers": "Conv", "weight": {"method": "normal", "scale": "1/sqrt(matches)"}},
                ],
            }
        )
    )
    for scheme in schemes:
        names |= _names(to_code(scheme))
    return names


BENIGN = _benign_names() | {"name", "module", "pname", "p", "generator", "matches"}


def assert_safe(code: str) -> None:
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= IMPORTS, ast.dump(node)
        elif isinstance(node, ast.ImportFrom):
            assert node.module in IMPORTS, ast.dump(node)
        else:
            assert isinstance(node, ast.FunctionDef), ast.dump(node)
            assert node.name in FUNCTIONS
    assert _names(code) <= BENIGN, _names(code) - BENIGN
    comments = [t for t in tokenize.generate_tokens(io.StringIO(code).readline)
                if t.type == tokenize.COMMENT]  # fmt: skip
    assert all(t.string.isprintable() for t in comments)
    namespace: dict[str, Any] = {}
    exec(compile(code, "<exported>", "exec"), namespace)
    assert set(namespace) - {"__builtins__"} <= DEFINED


def _scheme_or_none(d: dict[str, Any]) -> Scheme | None:
    try:
        return Scheme.from_dict(d)
    except ValueError:
        return None


texts = st.one_of(st.text(max_size=40), st.sampled_from(PAYLOADS))
layers = st.one_of(texts, st.sampled_from([*FAMILIES, "Conv1D", "torch.nn.Linear", "MyLayer"]))
specs = st.one_of(
    st.just("zeros"),
    st.builds(lambda g: {"method": "xavier_normal", "gain": g}, texts),
    st.builds(lambda s: {"method": "normal", "scale": s}, st.one_of(texts, st.floats(0.1, 2))),
)
rules = st.builds(
    lambda lay, glob, w, b: {
        "layers": lay,
        **({"name": glob} if glob else {}),
        "weight": w,
        "bias": b,
    },
    layers,
    st.one_of(st.none(), texts),
    specs,
    specs,
)
schemes = st.builds(
    lambda n, p, r: {"name": n, **({"preset": p} if p else {}), "rules": r},
    texts,
    st.one_of(st.none(), texts, st.sampled_from(list(PRESETS))),
    st.lists(rules, max_size=3),
)


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(schemes)
def test_exported_code_is_only_imports_and_functions(d: dict[str, Any]) -> None:
    scheme = _scheme_or_none(d)
    if scheme is not None:
        assert_safe(to_code(scheme))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_refused_or_quoted(payload: str) -> None:
    for d in (
        {"name": payload, "rules": [{"layers": "Linear", "weight": "zeros"}]},
        {"name": "s", "rules": [{"layers": "Linear", "name": payload, "weight": "zeros"}]},
    ):
        scheme = _scheme_or_none(d)
        if scheme is not None:
            code = to_code(scheme)
            assert_safe(code)
            assert repr(payload) in code  # as a literal, or not at all


def test_the_issue_payload_in_layers_is_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"scheme.rules.0.layers: must be a layer family"):
        Scheme.from_dict({"name": "s", "rules": [{"layers": PAYLOADS[0], "weight": "zeros"}]})


@pytest.mark.parametrize(
    "build",
    [
        lambda: Rule(PAYLOADS[0]),
        lambda: Rule("Linear", name="*\nimport os"),
        lambda: Rule("Linear", name="x" * 257),
        lambda: Scheme("a\nimport os"),
        lambda: Scheme("s", preset="x\nimport os"),
        lambda: Scheme("s", rules=(Rule("Linear"),) * 257),
    ],
)
def test_rules_and_schemes_built_in_code_are_checked_too(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


def test_a_preset_is_checked_even_when_rules_are_given() -> None:
    for bad in ({"a": 1}, ["x"], "nope", "x\nimport os"):
        with pytest.raises(ValueError, match=r"scheme.preset: unknown preset .*choose one of"):
            Scheme.from_dict({"name": "s", "preset": bad, "rules": []})


def test_a_dotted_class_name_matches_the_full_class_path() -> None:
    import torch
    from torch import nn

    from initlab import apply_scheme
    from initlab.codegen import load_initializer

    model = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(2, 2, 1))
    scheme = Scheme.from_dict({"name": "s", "rules": [
        {"layers": "torch.nn.modules.linear.Linear", "weight": "zeros"}]})  # fmt: skip
    apply_scheme(model, scheme, torch.Generator().manual_seed(0))
    assert not model[0].weight.any() and model[1].weight.any()
    again = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(2, 2, 1))
    load_initializer(to_code(scheme))(again, torch.Generator().manual_seed(0))
    assert not again[0].weight.any() and again[1].weight.any()


def test_a_torch_class_name_means_that_class_in_the_library_and_the_export():
    import torch
    from torch import nn

    from initlab import apply_scheme
    from initlab.codegen import load_initializer

    class Conv2d(nn.Module):  # a user's own class that only shares the name
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(2, 2))

    class MyConv(nn.Conv2d):  # a real subclass: the recipe's isinstance takes it
        pass

    def make() -> nn.Module:
        return nn.Sequential(Conv2d(), MyConv(1, 1, 1), nn.Linear(2, 2))

    for layers in ("Conv2d", "torch.nn.Conv2d", "nn.Conv2d"):
        scheme = Scheme.from_dict({"name": "s", "rules": [{"layers": layers, "weight": "zeros"}]})
        for init in (lambda m, s=scheme: apply_scheme(m, s), load_initializer(to_code(scheme))):
            model = make()
            init(model)
            assert model[0].weight.all() and not model[1].weight.any(), layers
