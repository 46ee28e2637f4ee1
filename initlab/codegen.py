"""A scheme as a plain PyTorch `initialize_weights(model, generator=None)` function.

The code walks `named_modules()` and each module's own parameters in the same order as
`apply_scheme`, runs the same `Call` for every parameter, and copies initlab's own helper
initializers verbatim, so on a fresh model it gives the same tensors bit for bit. A scale of
'1/sqrt(matches)' becomes a count of the modules its rule matches, taken before any tensor is
touched, and the same `1.0 / math.sqrt(count)` that `scale_for_matches` computes.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from initlab import initializers
from initlab.layers import FAMILIES, TRANSPOSED, torch_class
from initlab.methods import SWAPPED_MODE, Call, MethodSpec
from initlab.schemes import Rule, Scheme

INDENT = "    "


def _class_path(cls: type) -> str:
    if getattr(nn, cls.__name__, None) is cls:
        return f"nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _condition(rule: Rule) -> str:
    """The rule's test in Python: isinstance for families and torch.nn classes; for other
    class names, a look through the class's bases, which is what isinstance means by name."""
    classes = FAMILIES.get(rule.layers) or torch_class(rule.layers)
    if classes is not None:
        paths = ", ".join(_class_path(c) for c in classes)
        test = f"isinstance(module, ({paths}{',' if len(classes) == 1 else ''}))"
    elif "." in rule.layers:
        test = (f'any(f"{{c.__module__}}.{{c.__qualname__}}" == {rule.layers!r} '
                "for c in type(module).__mro__)")  # fmt: skip
    else:
        test = f"any(c.__name__ == {rule.layers!r} for c in type(module).__mro__)"
    if rule.name is not None:
        test += f" and fnmatch.fnmatchcase(name, {rule.name!r})"
    return test


def _call_lines(spec: MethodSpec, index: int, transposed: bool) -> list[str]:
    """The statements that initialize `p` with `spec` (shape-independent calls only)."""
    if spec.method == "default":
        return ["pass  # keep PyTorch's default"]
    call = spec.call((2, 2))
    call = call.transposed() if transposed else call
    return [_format_call(call) + _gain_comment(spec), *_scale_lines(spec, index)]


def _scale_lines(spec: MethodSpec, index: int) -> list[str]:
    """The multiplication by the spec's scale, if any (the same float apply_scheme uses)."""
    if spec.counted:
        return [f"p.mul_(1.0 / math.sqrt(matches[{index}]))  # 1/sqrt(rule {index}'s matches)"]
    if spec.scale != 1.0:
        return [f"p.mul_({spec.scale!r})"]
    return []


def _format_call(call: Call) -> str:
    args = ["p", *(f"{k}={v!r}" for k, v in call.kwargs.items())]
    if call.random:
        args.append("generator=generator")
    return f"{call.fn}({', '.join(args)})"


def _gain_comment(spec: MethodSpec) -> str:
    gain = spec.kwargs.get("gain")
    return f"  # gain {gain}" if isinstance(gain, str) else ""


def _shape_dependent(spec: MethodSpec) -> bool:
    """Kaiming with a gain torch lacks turns into normal_/uniform_ with a std from the shape."""
    return spec.kwargs.get("nonlinearity") in ("gelu", "silu", "elu", "mish")


def _spec_lines(spec: MethodSpec, depth: int, index: int, transposed: bool = False) -> list[str]:
    pad = INDENT * depth
    if not _shape_dependent(spec):
        return [pad + line for line in _call_lines(spec, index, transposed)]
    # Same formula as initlab.methods.kaiming_*: std = gain / sqrt(fan).
    kind = spec.method.removeprefix("kaiming_")
    mode = spec.kwargs["mode"]
    mode = SWAPPED_MODE.get(mode, mode) if transposed else mode  # weight stored (in, out)
    from initlab.methods import kaiming_gain

    gain = kaiming_gain(spec.kwargs)
    lines = [
        "fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(p)",
        f"std = {gain!r} / math.sqrt({mode})  # gain of {spec.kwargs['nonlinearity']}, estimated",
    ]
    if kind == "normal":
        lines.append("nn.init.normal_(p, mean=0.0, std=std, generator=generator)")
    else:
        lines += ["bound = math.sqrt(3.0) * std",
                  "nn.init.uniform_(p, a=-bound, b=bound, generator=generator)"]  # fmt: skip
    lines += _scale_lines(spec, index)
    return [pad + line for line in lines]


def comment(text: str) -> str:
    """A `#` comment that stays one comment: anything not printable (a newline, U+2028, a bidi
    override) is written as its escape, so no text can end the comment and become code."""
    return "# " + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _rule_words(rule: Rule) -> str:
    """`Linear named '*.c_proj'`: the glob quoted as a literal, never raw."""
    return rule.layers + (f" named {rule.name!r}" if rule.name is not None else "")


def _rule_lines(index: int, rule: Rule, first: bool) -> list[str]:
    keyword = "if" if first else "elif"
    head = comment(f"rule {index}: {_rule_words(rule)}")
    lines = [f"{INDENT}{head}", f"{INDENT}{keyword} {_condition(rule)}:"]
    lines.append(f'{INDENT * 2}if "weight" in pname:')
    lines += _spec_lines(rule.weight, 3, index, transposed=rule.layers in TRANSPOSED)
    lines.append(f'{INDENT * 2}elif "bias" in pname:')
    lines += _spec_lines(rule.bias, 3, index)
    return lines


def _helpers(scheme: Scheme) -> list[str]:
    names: list[str] = []
    for rule in scheme.rules:
        for spec in (rule.weight, rule.bias):
            call = spec.call((2, 2)) if spec.method != "default" else None
            if call and not call.fn.startswith("nn.init.") and call.fn not in names:
                names.append(call.fn)
    return [inspect.getsource(getattr(initializers, n)) for n in names]


def _header(scheme: Scheme) -> list[str]:
    """Comments only; every text from the user in them is a quoted literal (repr)."""
    origin = f" (preset {scheme.preset})" if scheme.preset else ""  # a key: [a-z0-9_]
    lines = [comment(f"Weight initialization scheme {scheme.name!r}{origin}, exported by initlab.")]
    lines.append(comment("First matching rule wins; parameters no rule matches keep the default."))
    for i, rule in enumerate(scheme.rules):
        lines.append(comment(f"  rule {i}: {_rule_words(rule)}: weight {rule.weight.label()}, "
                             f"bias {rule.bias.label()}"))  # fmt: skip
    return lines


BODY = '''
def initialize_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Initialize `model` in place (pass a seeded torch.Generator for reproducible weights)."""
    seen = set()  # tied parameters are initialized once, by the first module that owns them
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            _init_parameter(name, module, pname, p, generator)


@torch.no_grad()
def _init_parameter(
    name: str, module: nn.Module, pname: str, p: torch.Tensor, generator: torch.Generator | None
) -> None:
'''
# With counted scales: the counts come first, from the whole model, and travel as `matches`.
COUNT = """    # A scale of 1/sqrt(matches) needs how many modules its rule matches (in any order).
    matches = {{
{counts}
    }}
"""


def _counted(scheme: Scheme) -> list[int]:
    return [i for i, r in enumerate(scheme.rules) if r.weight.counted or r.bias.counted]


def _body(scheme: Scheme) -> list[str]:
    """initialize_weights and the head of _init_parameter; with counted scales, `matches`."""
    counted = _counted(scheme)
    if not counted:
        return BODY.rstrip("\n").split("\n")
    counts = "\n".join(
        f"{INDENT * 2}{i}: sum(1 for name, module in model.named_modules()\n"
        f"{INDENT * 2}       if {_condition(scheme.rules[i])}),"
        for i in counted
    )
    body = BODY.replace("    seen = set()", COUNT.format(counts=counts) + "    seen = set()")
    body = body.replace("p, generator)\n", "p, generator, matches)\n")
    body = body.replace(
        "generator: torch.Generator | None\n) -> None:",
        "generator: torch.Generator | None,\n    matches: dict[int, int],\n) -> None:",
    )
    return body.rstrip("\n").split("\n")


def _imports(scheme: Scheme) -> list[str]:
    specs = [spec for rule in scheme.rules for spec in (rule.weight, rule.bias)]
    needs_math = bool(_helpers(scheme)) or any(_shape_dependent(s) or s.counted for s in specs)
    stdlib = ["import fnmatch"] if any(r.name for r in scheme.rules) else []
    stdlib += ["import math"] if needs_math else []
    return [*stdlib, *([""] if stdlib else []), "import torch", "from torch import nn", ""]


def to_code(scheme: Scheme) -> str:
    """Python source of `initialize_weights(model, generator=None)` for `scheme`."""
    lines = _header(scheme)
    lines += ["", "from __future__ import annotations", ""]
    lines += _imports(scheme)
    for source in _helpers(scheme):
        lines += ["", source.rstrip(), ""]
    return "\n".join(lines + _functions(scheme)) + "\n"


def _functions(scheme: Scheme) -> list[str]:
    """`initialize_weights` and `_init_parameter` for one scheme."""
    lines = _body(scheme)
    if not scheme.rules:
        lines.append(f"{INDENT}pass  # no rules: every parameter keeps PyTorch's default")
    for i, rule in enumerate(scheme.rules):
        lines += _rule_lines(i, rule, first=i == 0)
    return lines


def slug(name: str, taken: set[str]) -> str:
    """A Python identifier from a scheme name ('Kaiming normal' -> 'kaiming_normal'), unique
    among `taken`: only [a-z0-9_], so no user text becomes code."""
    base = "_".join(
        "".join(c if c.isascii() and c.isalnum() else " " for c in name.lower()).split()
    )
    base = base if base and not base[0].isdigit() else f"scheme_{base}"
    found, n = base, 2
    while found in taken:
        found, n = f"{base}_{n}", n + 1
    return found


def to_module(schemes: list[Scheme]) -> str:
    """Several schemes as one valid module: the imports and helpers once, and per scheme an
    `initialize_<slug>(model, generator=None)` (one scheme: plain `to_code`)."""
    if len(schemes) == 1:
        return to_code(schemes[0])
    lines, taken = [], set()
    for scheme in schemes:
        lines += [*_header(scheme), ""]
    merged = Scheme("all", tuple(r for s in schemes for r in s.rules))  # imports and helpers
    lines += ["from __future__ import annotations", "", *_imports(merged)]
    for source in _helpers(merged):
        lines += ["", source.rstrip(), ""]
    for i, scheme in enumerate(schemes):
        name = slug(scheme.name, taken)
        taken.add(name)
        body = "\n".join(_functions(scheme))  # starts with a blank line; two between schemes
        body = body.replace("def initialize_weights(", f"def initialize_{name}(")
        lines += [*([""] if i else []), body.replace("_init_parameter", f"_init_parameter_{name}")]
    return "\n".join(lines) + "\n"


def load_initializer(code: str) -> Any:
    """Execute generated code in a fresh namespace; return its `initialize_weights`."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "<initlab scheme>", "exec"), namespace)
    return namespace["initialize_weights"]
