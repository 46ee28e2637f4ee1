"""A scheme as a plain PyTorch `initialize_weights(model, generator=None)` function.

The function reads like the classic recipe, a ladder of `isinstance` tests over
`model.modules()`, and gives the same tensors bit for bit as `apply_scheme` on a fresh model:
modules come in the same order, each rule runs the same `Call` (copying initlab's own helper
initializers verbatim), scales multiply afterwards, and the first matching rule wins. Rules on
layers with parameters other than `weight` and `bias` (RNNs, attention, classes named by text,
Hugging Face's transposed Conv1D) walk their module's parameters one by one. Given the model,
the export keeps only the rules that decide some of its modules and needs no bookkeeping for
tied weights unless the model has some; without it, a parameter shared by two modules is
skipped the second time, as `apply_scheme` does.
"""

from __future__ import annotations

import ast
import fnmatch
import inspect
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from initlab import initializers, lsuv
from initlab.gains import TORCH_GAINS, split_gain
from initlab.layers import (
    FAMILIES,
    NAMED_MEMBERS,
    SUFFIX_MEMBERS,
    TRANSPOSED,
    is_transposed,
    torch_class,
)
from initlab.methods import SWAPPED_MODE, Call, MethodSpec, kaiming_gain
from initlab.schemes import Rule, Scheme, match_counts, uses_data

INDENT = "    "
LSUV_HELPERS = (
    lsuv._Seen,
    lsuv._forward_order,
    lsuv._output_variance,
    lsuv._rescale,
    lsuv._quiet,
    lsuv._restore,
    lsuv.lsuv_rescale,
)
WIDTH = 88  # ruff's default line length: the code is pasted into the user's project
TORCH_NEEDED = "torch >= 2.2"  # generator= in torch.nn.init: pytorch/pytorch#110413
ESTIMATED = ("gelu", "silu", "elu", "mish")  # gains torch's calculate_gain rejects
# Families whose classes hold just `weight` and `bias`: the ladder initializes them directly.
SIMPLE = (
    "Linear",
    "Conv",
    "ConvTranspose",
    "BatchNorm",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm",
    "RMSNorm",
    "Embedding",
)
SIMPLE_CLASSES = tuple(cls for family in SIMPLE for cls in FAMILIES[family])


# ---------------------------------------------------------------- text that stays text


def comment(text: str) -> str:
    """A `#` comment that stays one comment: anything not printable (a newline, U+2028, a bidi
    override) is written as its escape, so no text can end the comment and become code."""
    return "# " + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def comments(text: str, pad: str = "") -> list[str]:
    """`comment(text)` wrapped to the line length (the escapes keep every piece one line)."""
    width = WIDTH - len(pad) - 2
    pieces = textwrap.wrap(comment(text)[2:], width, subsequent_indent="  ") or [""]
    return [f"{pad}# {piece}".rstrip() for piece in pieces]


def literal(text: str) -> str:
    """A string literal for `text` in ruff's preferred quotes: double, unless the text holds
    double quotes and no single ones. `repr` escapes everything unprintable."""
    quoted = repr(text)
    if quoted.startswith("'") and '"' not in text:
        return '"' + quoted[1:-1].replace("\\'", "'") + '"'
    return quoted


def _rule_words(rule: Rule) -> str:
    """`Linear named '*.c_proj'`: the glob quoted as a literal, never raw."""
    words = rule.layers + (f" named {rule.name!r}" if rule.name is not None else "")
    param = getattr(rule, "param", None)
    return words + (f", parameters {param!r}" if param is not None else "")


# ---------------------------------------------------------------- formatting as ruff does


@dataclass(frozen=True)
class Br:
    """A bracketed expression `head(item, item)` that ruff may split over lines; with
    `genexp`, the items are a generator's element and its `for` clause."""

    head: str
    items: tuple[str | Br, ...]
    genexp: bool = False

    def flat(self) -> str:
        parts = [i.flat() if isinstance(i, Br) else i for i in self.items]
        return f"{self.head}({(' ' if self.genexp else ', ').join(parts)})"


def fit(pad: str, prefix: str, expr: Br, suffix: str = "") -> list[str]:
    """`prefix + expr + suffix` as ruff formats it: one line if it fits, else the contents on
    one indented line, else one item per line (with a trailing comma unless a generator)."""
    line = f"{pad}{prefix}{expr.flat()}{suffix}"
    if len(line) <= WIDTH:
        return [line]
    inner = pad + INDENT
    flat = expr.flat()[len(expr.head) + 1 : -1]
    if len(inner + flat) <= WIDTH:
        return [f"{pad}{prefix}{expr.head}(", inner + flat, f"{pad}){suffix}"]
    comma = "" if expr.genexp else ","
    lines = [f"{pad}{prefix}{expr.head}("]
    for item in expr.items:
        lines += fit(inner, "", item, comma) if isinstance(item, Br) else [inner + item + comma]
    return [*lines, f"{pad}){suffix}"]


def _block(pad: str, head: str, body: list[str]) -> list[str]:
    """`head:` and its indented body (body lines carry their own relative indent)."""
    return [pad + head + ":", *(pad + INDENT + line for line in body)]


# ---------------------------------------------------------------- what the model tells


@dataclass
class Plan:
    """What to write for one scheme: the rules kept, how each branch initializes, and the
    model's facts that make shortcuts exact (None: no model given, assume nothing)."""

    scheme: Scheme
    model: nn.Module | None
    decided: dict[int, list[tuple[str, nn.Module]]] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # modules whose touched tensors are tied
    guarded: bool = True  # tie bookkeeping (`_untied`) in the generated loop

    def modules(self, index: int) -> list[nn.Module]:
        return [m for _, m in self.decided.get(index, [])]


def plan(scheme: Scheme, model: nn.Module | None) -> Plan:
    found = Plan(scheme, model)
    if model is None:
        return found
    found.counts = match_counts(model, scheme)
    for name, module in model.named_modules():
        hit = scheme.rule_for(name, module)
        if hit is not None:
            found.decided.setdefault(hit[0], []).append((name, module))
    if _per_parameter(scheme):
        return found  # rules decide parameters, not modules: the walk keeps `seen`
    ties = list(_touched_ties(found))
    found.skipped = [name for name, whole in ties if whole]
    found.guarded = not all(whole for _, whole in ties)
    return found


def _per_parameter(scheme: Scheme) -> bool:
    """A rule with a `param` glob leaves its module's other parameters to later rules, so
    the whole ladder runs per parameter."""
    return any(getattr(rule, "param", None) is not None for rule in scheme.rules)


def _touches(found: Plan, index: int, pname: str) -> bool:
    return found.scheme.rules[index].spec_for(pname).method != "default"


def _touched_ties(found: Plan) -> Iterator[tuple[str, bool]]:
    """Modules holding a tensor an earlier module (or an earlier name) already has, which
    their rule would initialize again: (name, True when that is every tensor it touches)."""
    seen: set[int] = set()
    owners = {id(m): i for i, pairs in found.decided.items() for _, m in pairs}
    for name, module in found.model.named_modules():
        index, tied = owners.get(id(module)), []
        for pname, tensor in module.named_parameters(recurse=False, remove_duplicate=False):
            if index is not None and _touches(found, index, pname):
                tied.append(id(tensor) in seen)
            seen.add(id(tensor))
        if any(tied):
            yield name, all(tied)


# ---------------------------------------------------------------- which modules a branch takes


def _public(cls: type) -> bool:
    return getattr(nn, cls.__name__, None) is cls


def _family_classes(rule: Rule) -> tuple[type, ...] | None:
    """The classes a family or torch.nn class name means (None: a class named by text)."""
    return FAMILIES.get(rule.layers) or torch_class(rule.layers)


def _public_classes(classes: tuple[type, ...]) -> list[type]:
    """torch.nn's public classes for `classes`: a private base (`_BatchNorm`) becomes its
    public subclasses, lazy ones left out (they become those classes once initialized)."""
    found: list[type] = []
    for cls in classes:
        if _public(cls):
            found.append(cls)
            continue
        subs = [getattr(nn, n) for n in dir(nn) if not n.startswith(("_", "Lazy"))]
        subs = [c for c in subs if isinstance(c, type) and issubclass(c, cls) and c is not cls]
        found += [c for c in subs if not any(c is not d and issubclass(c, d) for d in subs)]
    return found


def _nearest_public(cls: type, family: tuple[type, ...]) -> type:
    """The first public torch.nn class in `cls`'s bases that is in the family (a model's own
    subclass of nn.Linear is tested as nn.Linear)."""
    for base in cls.__mro__:
        if _public(base) and issubclass(base, family):
            return base
    return cls


def _classes(rule: Rule, modules: list[nn.Module] | None) -> list[type] | None:
    """The classes an isinstance test names for `rule`: those of `modules` (from a model), or
    the family's public ones; None for a class named by text (tested by name)."""
    family = _family_classes(rule)
    if family is None:
        return None
    if modules is None:
        return _public_classes(family)
    found = [_nearest_public(type(m), family) for m in modules]
    return sorted(set(found), key=found.index)


def _class_path(cls: type) -> str:
    return f"nn.{cls.__name__}" if _public(cls) else f"{cls.__module__}.{cls.__qualname__}"


def _tests(rule: Rule, modules: list[nn.Module] | None) -> list[Br]:
    """The rule's condition as the parts of an `and`: the class test, then the name glob."""
    classes = _classes(rule, modules)
    if classes is None:
        path = 'f"{c.__module__}.{c.__qualname__}"' if "." in rule.layers else "c.__name__"
        test = f"{path} == {literal(rule.layers)}"
        parts = [Br("any", (test, "for c in type(m).__mro__"), genexp=True)]
    elif all(_public(c) for c in classes):
        parts = [_class_test(classes, _members(rule, modules))]
    else:  # a class outside torch.nn (transformers' Conv1D): by its qualified name, so the
        # code needs no import of the package that defines it (isinstance ⇔ in the __mro__)
        names = ", ".join(literal(f"{c.__module__}.{c.__qualname__}") for c in classes)
        names += "," if len(classes) == 1 else ""
        test = f'f"{{c.__module__}}.{{c.__qualname__}}" in ({names})'
        parts = [Br("any", (test, "for c in type(m).__mro__"), genexp=True)]
    if rule.name is not None:
        parts.append(Br("fnmatch.fnmatchcase", ("name", literal(rule.name))))
    return parts


Members = tuple[tuple[str, ...], str | None]  # family members known by name: names, suffix


def _members(rule: Rule, modules: list[nn.Module] | None) -> Members:
    """For any model, the family's members outside torch.nn known by class name (Conv1D in
    Linear, *RMSNorm in RMSNorm); with a model, its own classes say it all."""
    if modules is not None:
        return (), None
    return NAMED_MEMBERS.get(rule.layers, ()), SUFFIX_MEMBERS.get(rule.layers)


def _class_test(classes: list[type], members: Members) -> Br:
    """isinstance over torch.nn classes; with family members known by name, `_is_a`, which
    also matches those by their class name, so the code imports no package that defines them."""
    named, suffix = members
    if not named and not suffix:
        return _isinstance(classes)
    items: tuple[str | Br, ...] = ("m", Br("", tuple(_class_path(c) for c in classes)))
    if len(classes) == 1:
        items = ("m", Br("", (_class_path(classes[0]) + ",",)))
    items += tuple(literal(n) for n in named)
    if suffix:
        items += (f"suffix={literal(suffix)}",)
    return Br("_is_a", items)


def _isinstance(classes: list[type]) -> Br:
    if len(classes) == 1:
        return Br("isinstance", ("m", _class_path(classes[0])))
    return Br("isinstance", ("m", Br("", tuple(_class_path(c) for c in classes))))


def _condition(pad: str, keyword: str, parts: list[Br], op: str = "and") -> list[str]:
    """`if a and b:` laid out as ruff does: split the last call if its first line fits, else
    the first call, with the rest after its closing bracket."""
    flats = [p.flat() for p in parts]
    head = f"{keyword} " + "".join(f"{f} {op} " for f in flats[:-1])
    rhs = fit(pad, head, parts[-1], ":")
    if len(parts) == 1 or len(rhs) == 1 or len(rhs[0]) <= WIDTH:
        return rhs
    first, rest = parts[0], f" {op} ".join(flats[1:])
    lhs = fit(pad, f"{keyword} ", first, f" {op} {rest}:")
    return lhs if all(len(line) <= WIDTH for line in lhs) else rhs


def _holds(rule: Rule, classes: list[type] | None, name: str, module: nn.Module) -> bool:
    """Whether a branch's condition is true for a module (what the generated test computes)."""
    if classes is None:
        return rule.matches(name, module)
    glob = rule.name is None or fnmatch.fnmatchcase(name, rule.name)
    return glob and isinstance(module, tuple(classes))


# ---------------------------------------------------------------- branches of the ladder


@dataclass(frozen=True)
class Branch:
    """One kept rule: its condition's classes and whether it walks parameters one by one."""

    index: int
    rule: Rule
    modules: list[nn.Module] | None  # the modules it decides (None: no model given)
    classes: list[type] | None
    walker: bool

    @property
    def idle(self) -> bool:
        """Both methods `default`: the branch only keeps later rules off its layers."""
        return self.rule.weight.method == "default" and self.rule.bias.method == "default"


def _simple_module(module: nn.Module) -> bool:
    """Own parameters `weight` and `bias` only, reachable as attributes, stored (out, in)."""
    own = dict(module.named_parameters(recurse=False, remove_duplicate=False))
    if not set(own) <= {"weight", "bias"} or any(is_transposed(module, t) for t in own.values()):
        return False
    return all(getattr(module, n, None) is t for n, t in own.items())


def _needs_walker(rule: Rule, modules: list[nn.Module] | None) -> bool:
    family = _family_classes(rule)
    if getattr(rule, "param", None) is not None or family is None:
        return True
    if not all(issubclass(c, SIMPLE_CLASSES) for c in family):
        return True
    if modules is None:
        return False
    if not all(_simple_module(m) for m in modules):
        return True
    # `m.bias` on a module without the attribute would raise: such mixes walk.
    return any(len({hasattr(m, s) for m in modules}) > 1 for s in ("weight", "bias"))


def _matched(found: Plan, rule: Rule) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in found.model.named_modules() if rule.matches(n, m)]


def _shadows(found: Plan, branch: Branch, later: list[Branch]) -> bool:
    """Whether an idle branch must stay: a later branch's test would take one of its layers."""
    if found.model is None:
        return any(not b.idle for b in later)
    return any(
        _holds(b.rule, b.classes, n, m)
        for b in later
        if not b.idle
        for n, m in found.decided[branch.index]
    )


def branches(found: Plan) -> list[Branch]:
    """The rules that decide something, in order; idle ones only where they shadow."""
    kept, each = [], _per_parameter(found.scheme)
    for i, rule in enumerate(found.scheme.rules):
        if found.model is not None and _left_out(found, i):
            continue
        modules = None if found.model is None else found.modules(i)
        modules = [m for _, m in _matched(found, rule)] if each and modules is not None else modules
        kept.append(Branch(i, rule, modules, _classes(rule, modules), _needs_walker(rule, modules)))
    if each:
        return kept
    return [b for k, b in enumerate(kept) if not b.idle or _shadows(found, b, kept[k + 1 :])]


def _left_out(found: Plan, index: int) -> str | None:
    """Why a rule has no code for this model, or None."""
    if found.model is None or index in found.decided:
        return None
    matched = _matched(found, found.scheme.rules[index])
    if matched and _per_parameter(found.scheme):
        return None  # it may decide parameters an earlier rule's `param` glob leaves
    if not matched:
        return "matches no layer of this model, left out"
    return "every layer it matches is taken by an earlier rule, left out"


# ---------------------------------------------------------------- initializing one tensor


def _estimated(spec: MethodSpec) -> bool:
    """Kaiming with a gain torch lacks: normal_/uniform_ with a std from the shape."""
    return spec.kwargs.get("nonlinearity") in ESTIMATED


def _gain_expr(gain: Any, value: Any) -> str:
    """`nn.init.calculate_gain("tanh")` where that gives exactly `value`, else the number."""
    if isinstance(gain, str):
        name, slope = split_gain(gain)
        if name in TORCH_GAINS:
            got = nn.init.calculate_gain(name, slope)
            if type(got) is type(value) and got == value:
                extra = f", {slope!r}" if slope is not None else ""
                return f"nn.init.calculate_gain({literal(name)}{extra})"
    return repr(value)


def _defaults(fn: str) -> dict[str, Any]:
    """Keyword defaults of a torch.nn.init function (initlab's own helpers: none dropped)."""
    if not fn.startswith("nn.init."):
        return {}
    params = inspect.signature(getattr(nn.init, fn.removeprefix("nn.init."))).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _arguments(call: Call, target: str, spec: MethodSpec) -> tuple[str, ...]:
    """The call's arguments, less those equal to torch's defaults (same value, same type) and
    kaiming's `a` where calculate_gain ignores it (every nonlinearity but leaky_relu)."""
    defaults, args = _defaults(call.fn), [target]
    for key, value in call.kwargs.items():
        if key == "a" and "kaiming" in call.fn and call.kwargs["nonlinearity"] != "leaky_relu":
            continue
        if key in defaults and type(defaults[key]) is type(value) and defaults[key] == value:
            continue
        text = _gain_expr(spec.kwargs.get("gain"), value) if key == "gain" else None
        args.append(f"{key}={text or (literal(value) if isinstance(value, str) else repr(value))}")
    return (*args, "generator=generator") if call.random else tuple(args)


def _gain_note(pad: str, spec: MethodSpec) -> list[str]:
    name = spec.kwargs.get("gain", spec.kwargs.get("nonlinearity"))
    if name not in ESTIMATED:
        return []
    text = f"gain of {name}: estimated by initlab (torch's calculate_gain has no {name})"
    return comments(text, pad)


def _estimated_lines(pad: str, spec: MethodSpec, target: str, transposed: bool) -> list[str]:
    """initlab.methods' kaiming formula, std = gain / sqrt(fan), on the tensor's own shape."""
    mode = spec.kwargs["mode"]
    mode = SWAPPED_MODE[mode] if transposed else mode  # stored (in, out): fans swap
    lines = [f'{pad}std = {kaiming_gain(spec.kwargs)!r} / math.sqrt(_fan({target}, "{mode}"))']
    if spec.method == "kaiming_normal":
        return lines + fit(
            pad, "", Br("nn.init.normal_", (target, "std=std", "generator=generator"))
        )
    lines.append(f"{pad}bound = math.sqrt(3.0) * std")
    args = (target, "a=-bound", "b=bound", "generator=generator")
    return lines + fit(pad, "", Br("nn.init.uniform_", args))


def _scale_lines(pad: str, spec: MethodSpec, target: str, index: int) -> list[str]:
    """The multiplication by the spec's scale, if any (the same float apply_scheme uses)."""
    if spec.counted:
        return [f"{pad}{target}.mul_(1.0 / math.sqrt(matches[{index}]))"]
    return [f"{pad}{target}.mul_({spec.scale!r})"] if spec.scale != 1.0 else []


def init_lines(pad: str, spec: MethodSpec, target: str, index: int, transposed: bool) -> list[str]:
    """The statements that initialize `target` as `spec` says (nothing for `default`)."""
    if spec.method == "default":
        return []
    if spec.entry.data_dependent:
        return _lsuv_lines(pad, spec, target)
    if _estimated(spec):
        lines = _estimated_lines(pad, spec, target, transposed)
    else:
        call = spec.call((2, 2))  # shape-independent for every method but estimated kaiming
        call = call.transposed() if transposed else call
        lines = fit(pad, "", Br(call.fn, _arguments(call, target, spec)))
    return _gain_note(pad, spec) + lines + _scale_lines(pad, spec, target, index)


def _lsuv_lines(pad: str, spec: MethodSpec, target: str) -> list[str]:
    """LSUV's orthonormal draw now, in module order as every other rule; the layer joins the
    list the rescaling pass takes after the loop (`initlab.lsuv`, copied below)."""
    call = spec.call((2, 2))
    entry = Br("", ("m", target, repr(spec.kwargs["tol"]), repr(spec.kwargs["max_iter"])))
    return fit(pad, "", Br(call.fn, _arguments(call, target, spec))) + fit(
        pad, "", Br(f"{LSUV_LIST}.append", (entry.flat(),))
    )


# ---------------------------------------------------------------- a branch's statements


def _slot_guard(found: Plan, branch: Branch, slot: str) -> str | None:
    """The test before `m.<slot>`'s statements: "" for none, None to write no statements
    (no module it decides has the parameter)."""
    present = [slot in dict(m.named_parameters(recurse=False)) for m in branch.modules]
    if not any(present):
        return None
    return "" if all(present) else f"if m.{slot} is not None"


def _ladder_body(found: Plan, branch: Branch, pad: str) -> list[str]:
    lines = []
    for slot in ("weight", "bias"):
        spec, guard = getattr(branch.rule, slot), _slot_guard(found, branch, slot)
        if spec.method == "default" or guard is None:
            continue
        body = init_lines(pad + INDENT * bool(guard), spec, f"m.{slot}", branch.index, False)
        lines += [pad + guard + ":", *body] if guard else body
    return lines


def _transposed(branch: Branch) -> set[bool]:
    """Whether the weights a walking branch initializes are stored (in, out), as
    `apply_scheme` decides it (both values: it depends on the module)."""
    if branch.modules is None:  # any model: a family with a transposed member may hold both
        layers = branch.rule.layers
        members = NAMED_MEMBERS.get(layers, ())
        return {True, False} if any(n in TRANSPOSED for n in members) else {layers in TRANSPOSED}
    own = [
        (m, t)
        for m in branch.modules
        for n, t in m.named_parameters(recurse=False)
        if "weight" in n
    ]
    return {is_transposed(m, t) for m, t in own} or {False}


def _weight_lines(branch: Branch, pad: str) -> list[str]:
    """The walker's weight statements; split on the module when only some are transposed."""
    spec, index = branch.rule.weight, branch.index
    flags = _transposed(branch)
    plain, swapped = (init_lines(pad + INDENT, spec, "p", index, t) for t in (False, True))
    if flags != {True, False} or plain == swapped:
        return swapped if flags == {True} else plain
    test = f"type(m).__name__ == {literal(TRANSPOSED[0])} and p.dim() == 2"
    # one level deeper, wrapped (comments too) for that depth
    deeper = pad + INDENT * 2
    head, rest = (init_lines(deeper, spec, "p", index, t) for t in (True, False))
    return [pad + INDENT + f"if {test}:", *head, pad + INDENT + "else:", *rest]


def _walker_body(found: Plan, branch: Branch, pad: str) -> list[str]:
    """`for pname, p in ...`: weight methods for names with "weight", bias for "bias"."""
    source = "params.items()" if found.guarded else "m.named_parameters(recurse=False)"
    return [f"{pad}for pname, p in {source}:", *_dispatch(branch, pad + INDENT)]


def _dispatch(branch: Branch, deeper: str) -> list[str]:
    """Statements for one parameter `p` named `pname` that the branch's rule decides."""
    inner: list[str] = []
    rule = branch.rule
    weight = _weight_lines(branch, deeper) if rule.weight.method != "default" else []
    bias = init_lines(deeper + INDENT, rule.bias, "p", branch.index, False)
    if weight == bias:  # one body for both: one test (`if a: x elif b: x` is `if a or b`)
        return [deeper + 'if "weight" in pname or "bias" in pname:', *weight]
    if weight:
        inner += [deeper + 'if "weight" in pname:', *weight]
    if rule.bias.method != "default":
        test = "elif" if rule.weight.method != "default" else "if"
        extra = "" if test == "elif" else ' and "weight" not in pname'
        inner += [f'{deeper}{test} "bias" in pname{extra}:', *bias]
    return inner


def branch_body(found: Plan, branch: Branch, pad: str) -> list[str]:
    """What a branch does to a module it takes. Without the model (or with tied tensors
    only partly touched) every branch walks the module's untied parameters."""
    if branch.idle:
        note = "keeps PyTorch's default here, and later rules off these layers"
        return [*comments(note, pad), pad + "continue"]
    walks = branch.walker or found.guarded
    return (_walker_body if walks else _ladder_body)(found, branch, pad)


# ---------------------------------------------------------------- the function


def _count_lines(found: Plan, kept: list[Branch]) -> list[str]:
    """`matches`: how many modules each counted-scale rule matches, whichever rule decides
    them (as `match_counts`), counted before any tensor is touched."""
    counted = [b for b in kept if b.rule.weight.counted or b.rule.bias.counted]
    if not counted:
        return []
    lines = comments("A scale of 1/√(modules its rule matches) needs the count first.", INDENT)
    lines.append(f"{INDENT}matches = {{")
    for b in counted:
        modules = None if found.model is None else [m for _, m in _matched(found, b.rule)]
        tests = _tests(b.rule, modules)
        walk = "for name, m in model.named_modules()" if b.rule.name else "for m in model.modules()"
        lines += _sum_lines(f"{b.index}: ", tests, walk)
    return [*lines, f"{INDENT}}}"]


def _sum_lines(key: str, tests: list[Br], walk: str) -> list[str]:
    """`key: sum(test for m in ...),` in the dict of counts, split as ruff splits it."""
    pad, inner = INDENT * 2, INDENT * 3
    flat = " and ".join(t.flat() for t in tests)
    lines = fit(pad, key, Br("sum", (flat, walk), genexp=True), ",")
    if all(len(line) <= WIDTH for line in lines):
        return lines
    parts = [line for i, t in enumerate(tests) for line in fit(inner, "and " if i else "", t)]
    return [f"{pad}{key}sum(", *parts, inner + walk, f"{pad}),"]


def _loop_lines(found: Plan, kept: list[Branch]) -> list[str]:
    """`for m in model.modules():` and the ladder of rules, first match first."""
    if not kept:
        return comments("No rules: every parameter keeps PyTorch's default.", INDENT)
    named = found.skipped or any(b.rule.name is not None for b in kept)
    pad = INDENT * 2
    lines = []
    if found.guarded:
        note = "A tensor two modules share is initialized once, by the first (as initlab does)."
        lines += [*comments(note, INDENT), f"{INDENT}seen = set()"]
    head = "for name, m in model.named_modules():" if named else "for m in model.modules():"
    lines.append(INDENT + head)
    if found.guarded:
        lines.append(pad + "params = _untied(m, seen)")
    lines += _skip_lines(found, pad)
    if _per_parameter(found.scheme):
        return lines + _parameter_chain(found, kept, pad)
    for k, link in enumerate(_chain(found, kept, pad + INDENT)):
        lines += _condition(pad, "elif" if k else "if", link.tests, link.op) + link.body
    return lines


def _parameter_chain(found: Plan, kept: list[Branch], pad: str) -> list[str]:
    """Per parameter, the first rule that matches its module and covers its name: a rule
    with a `param` glob leaves the module's other parameters to the rules after it."""
    lines, deeper = [f"{pad}for pname, p in params.items():"], pad + INDENT
    chain: list[Link] = []
    for branch in kept:
        tests = _tests(branch.rule, branch.modules)
        param = getattr(branch.rule, "param", None)
        if param is not None:
            tests.append(Br("fnmatch.fnmatchcase", ("pname", literal(param))))
        body = _dispatch(branch, deeper + INDENT) or [deeper + INDENT + "continue"]
        plain = _plain(branch) and param is None
        members = _members(branch.rule, branch.modules)
        _link(chain, tests, body, list(branch.classes) if plain else None, members)
    for k, link in enumerate(chain):
        lines += _condition(deeper, "elif" if k else "if", link.tests, link.op) + link.body
    return lines


@dataclass
class Link:
    """One `if`/`elif` of the ladder: its tests (joined by `op`) and its body."""

    tests: list[Br]
    body: list[str]
    op: str = "and"
    classes: list[type] | None = None  # set while the test is one plain class test
    members: Members = ((), None)  # and the family members it also tests by name


def _link(
    chain: list[Link],
    tests: list[Br],
    body: list[str],
    classes: list[type] | None,
    members: Members = ((), None),
) -> None:
    """Append a branch; a neighbour with the same body becomes one test (`if a: x elif b: x`
    is `if a or b: x`): one class test over their classes where both are plain."""
    last = chain[-1] if chain else None
    if last and last.body == body and last.classes is not None and classes is not None:
        last.classes += [c for c in classes if c not in last.classes]
        names = tuple(dict.fromkeys(last.members[0] + members[0]))
        last.members = (names, last.members[1] or members[1])
        last.tests = [_class_test(last.classes, last.members)]
    elif (
        last and last.body == body and len(tests) == 1 and (len(last.tests) == 1 or last.op == "or")
    ):
        last.tests, last.op, last.classes = last.tests + tests, "or", None
    else:
        chain.append(Link(tests, body, classes=classes, members=members))


def _chain(found: Plan, kept: list[Branch], pad: str) -> list[Link]:
    """The branches in order, neighbours with the same body merged (`_link`)."""
    chain: list[Link] = []
    for branch in kept:
        tests, body = _tests(branch.rule, branch.modules), branch_body(found, branch, pad)
        members = _members(branch.rule, branch.modules)
        _link(chain, tests, body, list(branch.classes) if _plain(branch) else None, members)
    return chain


def _plain(branch: Branch) -> bool:
    """A branch whose test is a class test over torch.nn classes alone (neighbours merge
    theirs); not one naming a class outside torch.nn, nor one with a name glob."""
    if branch.classes is None or branch.rule.name is not None:
        return False
    return all(_public(c) for c in branch.classes)


def _skip_lines(found: Plan, pad: str) -> list[str]:
    """Modules every touched tensor of which an earlier module has: left alone (tied)."""
    if not found.skipped:
        return []
    names = [literal(n) for n in found.skipped]
    if len(names) == 1:
        head = [f"{pad}if name == {names[0]}:"]
    else:
        head = fit(pad, "if name in ", Br("", tuple(names)), ":")
    note = "tied: its tensors belong to an earlier module and are initialized there"
    return [*head, *comments(note, pad + INDENT), pad + INDENT + "continue"]


def _function(found: Plan, name: str) -> list[str]:
    """The function; a scheme with LSUV takes the batch, whether or not this model has a
    layer it rescales (the signature is the scheme's, as the page and the README say)."""
    kept = branches(found)
    takes, data = uses_data(found.scheme), _uses_data(kept)
    args = ("model: nn.Module", "generator: torch.Generator | None = None")
    args = (args[0], "batch: torch.Tensor", args[1]) if takes else args
    lines = ["@torch.no_grad()", *fit("", "def ", Br(name, args), " -> None:")]
    lines += DATA_DOC if data else UNUSED_DOC if takes else [f'{INDENT}"""{PLAIN_DOC}"""']
    lines += _count_lines(found, kept)
    lines += [f"{INDENT}{LSUV_LIST} = []"] if data else []
    lines += _loop_lines(found, kept)
    return lines + ([f"{INDENT}lsuv_rescale(model, {LSUV_LIST}, batch)"] if data else [])


PLAIN_DOC = "Initialize `model` in place; a seeded `generator` reproduces it."
DATA_DOC = [
    f'{INDENT}"""Initialize `model` in place; a seeded `generator` and the same `batch`',
    f'{INDENT}reproduce it. LSUV layers are rescaled on `batch` after the loop."""',
]
UNUSED_DOC = [
    f'{INDENT}"""Initialize `model` in place; a seeded `generator` reproduces it. No layer',
    f'{INDENT}of this model gets LSUV, so `batch` is not used."""',
]
LSUV_LIST = "lsuv_layers"


def _uses_data(kept: list[Branch]) -> bool:
    """Whether a rule the function keeps gives its weights a data-dependent method (LSUV)."""
    return any(b.rule.weight.entry.data_dependent for b in kept if not b.idle)


# ---------------------------------------------------------------- header, imports, helpers


def _spec_words(spec: MethodSpec, rule: Rule, count: int | None) -> str:
    if spec.method == "default":
        return "PyTorch's default"
    words = MethodSpec(spec.method, spec.params).label()
    if not spec.counted:
        return words + (f" × {spec.scale!r}" if spec.scale != 1.0 else "")
    words += " × 1/√(number of modules this rule matches)"
    if rule.name == "*.c_proj":
        words += " = 1/√(2·n_layers) in GPT-2"
    return words + (f"; {count} in this model" if count is not None else "")


def _rule_note(found: Plan, index: int, rule: Rule) -> str:
    head = f"rule {index} ({_rule_words(rule)}): "
    why = _left_out(found, index)
    if why:
        return head + why
    count = found.counts.get(index)
    weight, bias = (_spec_words(s, rule, count) for s in (rule.weight, rule.bias))
    return head + f"weight {weight}, bias {bias}"


def _header(found: Plan) -> list[str]:
    """Comments only; every text from the user in them is a quoted literal (repr)."""
    scheme = found.scheme
    origin = f" (preset {scheme.preset})" if scheme.preset else ""  # a key: [a-z0-9_]
    model = f" for {type(found.model).__name__}" if found.model is not None else ""
    lines = comments(
        f"Weight initialization scheme {scheme.name!r}{origin}{model}, exported by initlab."
    )
    lines += comments(
        f"Bit-identical to initlab's apply_scheme with an equal generator"
        f"{_same_batch(found)}; needs "
        f"{TORCH_NEEDED} (generator= in torch.nn.init). The first matching rule "
        "decides a layer; parameters no rule decides keep PyTorch's default."
    )
    for i, rule in enumerate(scheme.rules):
        pieces = comments(_rule_note(found, i, rule), "  ")  # one indent inside the comment
        lines += ["#   " + piece.removeprefix("  # ") for piece in pieces]
    return lines


def _same_batch(found: Plan) -> str:
    return " and the same batch" if _uses_data(branches(found)) else ""


UNTIED = '''def _untied(module: nn.Module, seen: set[int]) -> dict[str, nn.Parameter]:
    """The module's own parameters by name, less those an earlier module already had."""
    own = dict(module.named_parameters(recurse=False))
    fresh = {name: p for name, p in own.items() if id(p) not in seen}
    seen.update(id(p) for p in own.values())
    return fresh'''
IS_A = '''def _is_a(
    module: nn.Module, classes: tuple[type, ...], *names: str, suffix: str | None = None
) -> bool:
    """isinstance, or a base class named in `names` (or ending in `suffix`): classes
    outside torch.nn, such as transformers' Conv1D (a Linear storing its weight as
    (in, out)), matched by name so that nothing here imports their package."""
    bases = [c.__name__ for c in type(module).__mro__]
    return isinstance(module, classes) or any(
        b in names or (suffix is not None and b.endswith(suffix)) for b in bases
    )'''
FAN = '''def _fan(tensor: torch.Tensor, mode: str) -> int:
    """fan_in or fan_out as torch.nn.init counts them (dim 1 is in, dim 0 is out)."""
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1 if mode == "fan_in" else 0] * receptive'''


def _refit(line: str) -> list[str]:
    """A long `[return ]f(args)` line of a copied helper, split as ruff would."""
    if len(line) <= WIDTH:
        return [line]
    text = line.strip()
    try:
        statement = ast.parse(text).body[0]
    except SyntaxError:  # a line of a docstring or of a longer statement: left as it is
        return [line]
    call = statement.value if isinstance(statement, ast.Return | ast.Expr) else None
    if not isinstance(call, ast.Call):
        return [line]
    part = lambda node: ast.get_source_segment(text, node)  # noqa: E731
    args = [part(a) for a in call.args] + [f"{k.arg}={part(k.value)}" for k in call.keywords]
    prefix = "return " if isinstance(statement, ast.Return) else ""
    return fit(line[: len(line) - len(text)], prefix, Br(part(call.func), tuple(args)))


def _tidy(source: str) -> str:
    """initlab's helper source, verbatim but for a header kept on two lines by `fmt: skip`
    and lines longer than ruff's default: re-laid out the way ruff lays them out."""
    lines = source.rstrip().split("\n")
    end = next((i for i, line in enumerate(lines) if line.endswith(":  # fmt: skip")), None)
    if end is not None:
        header = " ".join(line.strip() for line in lines[: end + 1]).removesuffix("  # fmt: skip")
        name, params = header.removeprefix("def ").removesuffix("):").split("(", 1)
        args = tuple(a.strip() for a in params.split(","))
        lines = fit("", "def ", Br(name, args), ":") + lines[end + 1 :]
    return "\n".join(piece for line in lines for piece in _refit(line))


def _helpers(body: str) -> list[str]:
    """The helper functions `body` calls, each once."""
    found = []
    for name in ("sparse_", "variance_scaling_"):
        if re.search(rf"(?<![.\w]){name}\(", body):
            found.append(_tidy(inspect.getsource(getattr(initializers, name))))
    if "lsuv_rescale(" in body:  # initlab.lsuv's pass, verbatim: bit for bit the same
        found += [_tidy(inspect.getsource(f)) for f in LSUV_HELPERS]
    found += [FAN] if "_fan(" in body else []
    found += [IS_A] if "_is_a(" in body else []
    return found + ([UNTIED] if "_untied(" in body else [])


def _imports(code: str) -> list[str]:
    stdlib = [f"import {name}" for name in ("fnmatch", "math") if f"{name}." in code]
    return [*stdlib, *([""] if stdlib else []), "import torch", "from torch import nn"]


def _module(found: list[Plan], names: list[str]) -> str:
    """One module: headers, imports once, helpers once, a function per scheme."""
    functions = ["\n".join(_function(p, n)) for p, n in zip(found, names, strict=True)]
    helpers = _helpers("\n".join(functions))
    code = "\n".join(helpers + functions)
    lines = [line for p in found for line in [*_header(p), ""]]
    lines += ["from __future__ import annotations", "", *_imports(code)]
    for block in helpers + functions:
        lines += ["", "", block]
    return "\n".join(lines) + "\n"


def to_code(scheme: Scheme, model: nn.Module | None = None) -> str:
    """Python source of `initialize_weights(model, generator=None)` for `scheme`; with
    `model`, only the rules that decide some of its modules, tested by its own classes."""
    return _module([plan(scheme, model)], ["initialize_weights"])


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


def to_module(schemes: list[Scheme], model: nn.Module | None = None) -> str:
    """Several schemes as one valid module: the imports and helpers once, and per scheme an
    `initialize_<slug>(model, generator=None)` (one scheme: plain `to_code`)."""
    if len(schemes) == 1:
        return to_code(schemes[0], model)
    names: list[str] = []
    for scheme in schemes:
        names.append(slug(scheme.name, set(names)))
    return _module([plan(s, model) for s in schemes], [f"initialize_{n}" for n in names])


def load_initializer(code: str) -> Any:
    """Execute generated code in a fresh namespace; return its `initialize_weights`."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "<initlab scheme>", "exec"), namespace)
    return namespace["initialize_weights"]
