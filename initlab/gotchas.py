"""Warnings: the classic gotchas of a scheme applied to a model, found by one registry of checks.

Each check in WARNINGS has a key, a one-line reason, its source and a function from a `Subject`
(the scheme, the model, and its parameters walked once as schemes.Target) to messages.

- `needs="structure"` checks read only the rules and the model's modules and shapes, so they run
  on the meta-device model (`initlab.outline.meta_model(spec)`: shapes, no storage) in about a
  millisecond: `scheme_warnings(scheme, meta_model(spec))` is cheap enough for every rerun.
- `needs="values"` checks look at initialized tensors. `scheme_warnings` runs them only when the
  model has real tensors; `run` calls it on each scheme's model of the first seed, and there the
  `identical_schemes` check also compares the schemes of one experiment with each other.

(The module is not called `warnings.py` so that it never shadows the standard library's.)
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from initlab.digest import xxh64
from initlab.layers import FAMILIES, TRANSPOSED, class_path, family_of, matches_layers
from initlab.methods import fans
from initlab.schemes import Rule, Scheme, Target, compile_glob, has_own_init, targets

WARNING_COLUMNS = ["scheme", "check", "level", "message"]
Level = Literal["warning", "info"]
MAX_MESSAGES = 8  # per check and scheme: a model with 100 copies says so in a few lines
PREFIX_ELEMENTS = 4096  # elements of each tensor hashed to find candidate copies
TRUNC_FAR = 5.0  # stds: a cut this far from the mean removes under 1 draw in 3.4 million
# Methods whose `mode` picks one fan (lecun_* always use fan_in).
ONE_FAN = ("kaiming_normal", "kaiming_uniform", "lecun_normal", "lecun_uniform", "variance_scaling")
# Modules whose reset_parameters() is kaiming_uniform_(a=sqrt(5)) on the weight.
A_SQRT5 = (nn.Linear, *FAMILIES["Conv"], *FAMILIES["ConvTranspose"])


@dataclass(frozen=True)
class Subject:
    """What every check looks at: one scheme on one model, walked once."""

    scheme: Scheme
    model: nn.Module
    targets: tuple[Target, ...]
    modules: tuple[tuple[str, nn.Module], ...]
    earlier: Mapping[str, str] = field(default_factory=dict)  # scheme name -> fingerprint
    fingerprint: str | None = None  # this model's, when its tensors are real

    @classmethod
    def of(
        cls,
        scheme: Scheme,
        model: nn.Module,
        earlier: Mapping[str, str] | None = None,
        fingerprint: str | None = None,
    ) -> Subject:
        found, modules = tuple(targets(model, scheme)), tuple(model.named_modules())
        return cls(scheme, model, found, modules, earlier or {}, fingerprint)


@dataclass(frozen=True)
class Check:
    key: str
    level: Level
    summary: str  # the one-line reason
    source: str
    find: Callable[[Subject], list[str]]
    needs: Literal["structure", "values"] = "structure"


@dataclass(frozen=True)
class SchemeWarning:
    check: str
    level: Level
    message: str


# ---------------------------------------------------------------- rules that decide nothing


def _own_params(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _closest_layers(layers: str, modules: tuple[tuple[str, nn.Module], ...]) -> str:
    """'; did you mean ...?' from the families and class names in the model, case aside;
    else the families this model has (a valid name that is simply absent gets the list)."""
    present = sorted(
        {family_of(m) for _, m in modules if _own_params(m)}
        | {type(m).__name__ for _, m in modules}
    )
    lowered = {name.lower(): name for name in present}
    wanted = layers.rsplit(".", 1)[-1].lower()  # a dotted path: compare its class name
    close = difflib.get_close_matches(wanted, list(lowered), n=2, cutoff=0.6)
    if close:
        return f"; did you mean {' or '.join(repr(lowered[c]) for c in close)}?"
    families = sorted({family_of(m) for _, m in modules if _own_params(m)})
    return f"; this model's layers with parameters are: {', '.join(families) or 'none'}"


def _closest_glob(glob: str, names: list[str]) -> str:
    """A glob with its last component replaced by the closest module name part that matches."""
    head, _, tail = glob.rpartition(".")
    parts = sorted({n.rsplit(".", 1)[-1] for n in names})
    for close in difflib.get_close_matches(tail, parts, n=3, cutoff=0.6):
        candidate = f"{head}.{close}" if head else close
        if any(compile_glob(candidate).match(n) for n in names):
            return f"; did you mean {candidate!r}?"
    return f"; their names look like {', '.join(repr(n) for n in names[:2])}"


def known_layers(layers: str) -> bool:
    """A family, a torch.nn class (by name or full path) or a class initlab knows by name
    (Hugging Face's Conv1D): a rule for one that this model lacks is generic (presets carry
    rules for every family), not a typo."""
    if layers in FAMILIES or layers in TRANSPOSED:
        return True
    cls = getattr(nn, layers.rsplit(".", 1)[-1], None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return False
    return "." not in layers or class_path(cls) == layers  # "torch.nn.Linear" matches nothing


def _unknown_layers(index: int, rule: Rule, subject: Subject) -> str | None:
    if known_layers(rule.layers) or any(matches_layers(m, rule.layers) for _, m in subject.modules):
        return None
    hint = _closest_layers(rule.layers, subject.modules)
    return f"rule {index} ({rule.label()}) matches no module{hint}"


def _glob_matches_nothing(glob: str, rules: list[tuple[int, Rule]], subject: Subject) -> str | None:
    """Rules sharing a glob are alternatives (GPT-2's `*.c_proj` on Linear or Conv1D): say so
    only when none of them matches, though the model has layers of their kinds."""
    kinds = [n for n, m in subject.modules if any(matches_layers(m, r.layers) for _, r in rules)]
    if not kinds or any(r.matches(n, m) for n, m in subject.modules for _, r in rules):
        return None
    which = "/".join(str(i) for i, _ in rules)
    layers = "/".join(dict.fromkeys(r.layers for _, r in rules))
    return (
        f"rule {which} ({layers} named {glob}): the name glob {glob!r} matches none of the "
        f"{len(kinds)} {layers} modules{_closest_glob(glob, kinds)}"
    )


def _no_parameters(index: int, rule: Rule, subject: Subject) -> str | None:
    matched = [m for n, m in subject.modules if rule.matches(n, m)]
    if not matched or any(_own_params(m) for m in matched):
        return None
    return f"rule {index} ({rule.label()}) matches {len(matched)} module(s), none with parameters"


def _nothing_decided(subject: Subject) -> str | None:
    if not subject.scheme.rules or any(t.rule_index is not None for t in subject.targets):
        return None
    families = sorted({family_of(t.module) for t in subject.targets})
    return (
        "no rule matches a module with parameters, so every parameter keeps PyTorch's "
        f"default; this model's layers with parameters are: {', '.join(families) or 'none'}"
    )


def _unmatched(subject: Subject) -> list[str]:
    rules = list(enumerate(subject.scheme.rules))
    found = [f(i, r, subject) for i, r in rules for f in (_unknown_layers, _no_parameters)]
    globs: dict[str, list[tuple[int, Rule]]] = {}
    for i, rule in rules:
        if rule.name is not None:
            globs.setdefault(rule.name, []).append((i, rule))
    found += [_glob_matches_nothing(g, rs, subject) for g, rs in globs.items()]
    found.append(_nothing_decided(subject))
    return [m for m in found if m][:MAX_MESSAGES]


def _shadowed(subject: Subject) -> list[str]:
    """Rules that match modules with parameters, all of which an earlier rule takes (per
    parameter: a rule with a `param` glob takes only the parameters it names)."""
    rules, decided, first_match = subject.scheme.rules, set(), {}
    for name, module in subject.modules:
        winners = [
            _decider(subject.scheme, name, module, pname)
            for pname, _ in module.named_parameters(recurse=False)
        ]
        decided.update(winners)
        for i, rule in enumerate(rules):
            if i not in first_match and rule.matches(name, module) and winners:
                first_match[i] = (name, winners[0])
    out = []
    for i, (name, winner) in sorted(first_match.items()):
        if i not in decided:
            out.append(
                f"rule {i} ({rules[i].label()}) decides nothing: every module it matches "
                f"(e.g. {name!r}) is taken by rule {winner} first (first match wins); "
                "move it above"
            )
    return out[:MAX_MESSAGES]


def _decider(scheme: Scheme, name: str, module: nn.Module, pname: str) -> int | None:
    """The rule that decides one parameter: the first that matches its module and names it."""
    for index, rule in scheme.candidates(name, module):
        if rule.matches_param(pname):
            return index
    return None


# ---------------------------------------------------------------- methods and their traps


def _trunc_absolute(subject: Subject) -> list[str]:
    out = []
    for i, rule in enumerate(subject.scheme.rules):
        for slot, spec in (("weight", rule.weight), ("bias", rule.bias)):
            if spec.method != "trunc_normal":
                continue
            p = spec.kwargs
            reach = min(p["b"] - p["mean"], p["mean"] - p["a"]) / p["std"]
            if reach >= TRUNC_FAR:
                low, high = p["mean"] - 2 * p["std"], p["mean"] + 2 * p["std"]
                out.append(
                    f"rule {i} ({rule.label()}) {slot}: trunc_normal(std={p['std']:g}) with "
                    f"a={p['a']:g}, b={p['b']:g} cuts nothing: a and b are absolute values, "
                    f"{reach:.3g} std from the mean here; for ±2 std write a={low:g}, b={high:g}"
                )
    return out[:MAX_MESSAGES]


def _conv_transpose_message(t: Target, count: int) -> str:
    fan_in, fan_out = fans(t.shape)
    mode = t.spec.kwargs.get("mode", "fan_in")
    # The input gradient of a transposed conv sums out_channels/groups × kernel terms (torch's
    # fan_in); each output sums in_channels × kernel / stride^d (torch's fan_out at stride 1).
    keeps = {
        "fan_in": "the gradient's variance, not the signal's",
        "fan_out": "the signal's variance (at stride 1), not the gradient's",
    }[mode]
    others = f" and {count - 1} more" if count > 1 else ""
    return (
        f"{t.param}{others} ({type(t.module).__name__}, weight {tuple(t.tensor.shape)}): "
        f"{t.spec.method} mode={mode!r}: torch reads fan_in from dim 1, out_channels/groups "
        f"× kernel = {fan_in}, and fan_out = in_channels × kernel = {fan_out}, so here it "
        f"keeps {keeps}: the reverse of a Conv"
    )


def _conv_transpose_fans(subject: Subject) -> list[str]:
    """One message per rule: the first ConvTranspose weight it gives a one-fan method."""
    hits: dict[int | None, list[Target]] = {}
    for t in subject.targets:
        if (
            isinstance(t.module, FAMILIES["ConvTranspose"])
            and t.spec.method in ONE_FAN
            and t.tensor.dim() >= 3
            and t.spec.kwargs.get("mode", "fan_in") != "fan_avg"
            and fans(t.shape)[0] != fans(t.shape)[1]
        ):
            hits.setdefault(t.rule_index, []).append(t)
    return [_conv_transpose_message(ts[0], len(ts)) for ts in hits.values()][:MAX_MESSAGES]


def _keeps_a_sqrt5(t: Target) -> bool:
    """A Linear/Conv weight (not a bias, not a Bilinear) left at its reset_parameters()."""
    is_weight = t.param.rsplit(".", 1)[-1] == "weight"
    return t.spec.method == "default" and is_weight and isinstance(t.module, A_SQRT5)


def _default_a_sqrt5(subject: Subject) -> list[str]:
    if has_own_init(subject.model):  # a Hugging Face model: its default is its _init_weights
        return []
    kept = [t for t in subject.targets if _keeps_a_sqrt5(t)]
    if not kept:
        return []
    first = kept[0]
    std = 1 / math.sqrt(3 * fans(tuple(first.tensor.shape))[0])
    return [
        f"{len(kept)} Linear/Conv weight(s) keep PyTorch's default kaiming_uniform(a=√5) "
        f"(e.g. {first.param}: std 1/√(3·fan_in) = {std:.3g}): a variance of 1/(3·fan_in), "
        "a sixth of Kaiming's 2/fan_in for ReLU, so a deep ReLU stack shrinks ×1/6 per "
        "layer (×1/3 per linear layer)"
    ]


# ---------------------------------------------------------------- values: copies


def _flat(p: torch.Tensor) -> torch.Tensor:
    return p.detach().reshape(-1)


def _is_constant(p: torch.Tensor) -> bool:
    flat = _flat(p)
    head = flat[:PREFIX_ELEMENTS]
    return bool((head == head[0]).all()) and bool((flat == flat[0]).all())


def _prefix_key(p: torch.Tensor) -> tuple[object, ...]:
    return tuple(p.shape), p.dtype, xxh64(_bytes(_flat(p)[:PREFIX_ELEMENTS]))


def _bytes(x: torch.Tensor) -> np.ndarray:
    """A tensor's bytes, any dtype (bfloat16 too), as a numpy array: no copy when contiguous
    on the CPU."""
    return x.contiguous().cpu().view(torch.uint8).numpy()


def copies(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names (first one first) whose random tensors are identical.

    Bounded work: each tensor's first PREFIX_ELEMENTS are hashed, and only tensors that agree
    there are compared whole. Constant tensors (norm weights of 1, zero biases) are left out:
    those are equal by design. Tied parameters appear once in named_parameters.
    """
    buckets: dict[tuple[object, ...], list[tuple[str, torch.Tensor]]] = {}
    for name, p in model.named_parameters():
        if p.numel() > 1 and not _is_constant(p):
            buckets.setdefault(_prefix_key(p), []).append((name, p))
    groups = []
    for members in buckets.values():
        while len(members) > 1:
            (first, tensor), rest = members[0], members[1:]
            same = [n for n, q in rest if torch.equal(tensor, q)]
            if same:
                groups.append([first, *same])
            members = [(n, q) for n, q in rest if n not in same]
    return groups


def _split_suffix(a: str, b: str) -> tuple[str, str, str]:
    """('layers.0', 'layers.1', 'linear1.weight') from two names with a common ending."""
    pa, pb = a.split("."), b.split(".")
    k = 0
    while k < min(len(pa), len(pb)) - 1 and pa[-1 - k] == pb[-1 - k]:
        k += 1
    if k == 0:
        return a, b, ""
    return ".".join(pa[:-k]), ".".join(pb[:-k]), ".".join(pa[-k:])


def _identical_tensors(subject: Subject) -> list[str]:
    if _on_meta(subject.model):
        return []
    pairs: dict[tuple[str, str], list[str]] = {}
    for group in copies(subject.model):
        for other in group[1:]:
            a, b, suffix = _split_suffix(group[0], other)
            pairs.setdefault((a, b), []).append(suffix)
    by_original: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (a, b), suffixes in pairs.items():
        by_original.setdefault((a, tuple(suffixes)), []).append(b)
    return [_copy_message(a, list(sfx), bs) for (a, sfx), bs in by_original.items()][:MAX_MESSAGES]


def _copy_message(original: str, suffixes: list[str], copied: list[str]) -> str:
    more = f" and {len(copied) - 3} more" if len(copied) > 3 else ""
    names = ", ".join(repr(b) for b in copied[:3]) + more
    what = [s for s in suffixes if s]
    inside = f" ({len(suffixes)} tensors: {', '.join(what[:4])}{', ...' if len(what) > 4 else ''})"
    return (
        f"{names} start{'s' if len(copied) == 1 else ''} with exactly the values of "
        f"{original!r}{inside if what else ''}: a copied layer stays a copy until a rule "
        "re-initializes it"
    )


def _identical_schemes(subject: Subject) -> list[str]:
    if subject.fingerprint is None:
        return []
    same = [name for name, fp in subject.earlier.items() if fp == subject.fingerprint]
    if not same:
        return []
    return [
        f"identical to {same[0]!r}: every parameter has the same values after "
        "initialization, so every result is the same"
    ]


def _on_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def fingerprint(model: nn.Module) -> str:
    """A digest of every parameter's name, shape, dtype and bytes (equal digests: equal models;
    two different tensors share an XXH64 digest with probability about 2**-64). The bytes are
    read by XXH64 (`initlab.digest`), several times faster than SHA-256 over them."""
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}:{xxh64(_bytes(_flat(p)))};".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- the registry


_ENTRIES = [
    Check(
        key="unmatched_rule",
        level="warning",
        find=_unmatched,
        summary=(
            "a rule whose layers or name glob match no module initializes nothing, and "
            "the run still succeeds with those parameters at PyTorch's default"
        ),
        source="initlab: first matching rule wins; unmatched parameters keep the default",
    ),
    Check(
        key="shadowed_rule",
        level="warning",
        find=_shadowed,
        summary=(
            "a rule after a broader one decides nothing: first match wins, so the "
            "specific rule (e.g. a name glob) must come first"
        ),
        source="initlab's matching; GPT-2's *.c_proj rule comes before the Linear rule",
    ),
    Check(
        key="trunc_normal_absolute",
        level="warning",
        find=_trunc_absolute,
        summary=(
            "trunc_normal's a and b are absolute values, not stds: with std 0.02 the "
            "default [-2, 2] is 100 std away and cuts nothing"
        ),
        source=(
            "torch.nn.init.trunc_normal_ (a=-2, b=2 by default); "
            "foundation-model-stack/foundation-model-stack#289"
        ),
    ),
    Check(
        key="conv_transpose_fans",
        level="warning",
        find=_conv_transpose_fans,
        summary=(
            "torch reads a ConvTranspose weight's fan_in from dim 1 (out_channels), so "
            "mode='fan_in' and 'fan_out' swap roles there (xavier, using both, is unaffected)"
        ),
        source=(
            "torch.nn.init._calculate_fan_in_and_fan_out; pytorch/pytorch#30079; "
            "Lasagne/Lasagne#858"
        ),
    ),
    Check(
        key="default_a_sqrt5",
        level="info",
        find=_default_a_sqrt5,
        summary=(
            "PyTorch's default Linear/Conv init is kaiming_uniform(a=√5): variance "
            "1/(3·fan_in), a sixth of Kaiming's for ReLU"
        ),
        source="torch.nn.Linear.reset_parameters; pytorch/pytorch#15314, #57109",
    ),
    Check(
        key="identical_tensors",
        level="warning",
        find=_identical_tensors,
        needs="values",
        summary=(
            "layers that start with identical tensors (nn.TransformerEncoder deep-copies "
            "its layer, weights included) compute the same thing and get the same gradients"
        ),
        source=(
            "torch.nn.TransformerEncoder's _get_clones (copy.deepcopy); "
            "pytorch/pytorch#86274, #72253"
        ),
    ),
    Check(
        key="identical_schemes",
        level="info",
        find=_identical_schemes,
        needs="values",
        summary=(
            "two schemes of one experiment that give identical tensors (e.g. Xavier with "
            "relu's gain and Kaiming on equal fans) are one scheme under two names"
        ),
        source="initlab: same seed, same draws, same values",
    ),
]

WARNINGS: dict[str, Check] = {c.key: c for c in _ENTRIES}


def scheme_warnings(
    scheme: Scheme,
    model: nn.Module,
    *,
    earlier: Mapping[str, str] | None = None,
    fingerprint: str | None = None,
) -> list[SchemeWarning]:
    """Every warning of `scheme` on `model`, in registry order.

    On a meta-device model only the structural checks run (cheap: for the UI's every rerun);
    on a real, initialized model the value checks run too. `earlier` (scheme name ->
    `fingerprint(model)` of the schemes before this one, same seed) and this model's
    `fingerprint` let `identical_schemes` compare schemes; `run` passes them.
    """
    subject = Subject.of(scheme, model, earlier, fingerprint)
    real = not _on_meta(model)
    out = []
    for check in WARNINGS.values():
        if check.needs == "values" and not real:
            continue
        out += [SchemeWarning(check.key, check.level, m) for m in check.find(subject)]
    return out


class WarningCollector:
    """What `run` keeps: each scheme's warnings on its first-seed model, as one table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []
        self.fingerprints: dict[str, str] = {}

    def add(self, scheme: Scheme, model: nn.Module) -> None:
        own = fingerprint(model)
        found = scheme_warnings(scheme, model, earlier=self.fingerprints, fingerprint=own)
        self.fingerprints[scheme.name] = own
        self.rows += [
            {"scheme": scheme.name, "check": w.check, "level": w.level, "message": w.message}
            for w in found
        ]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=WARNING_COLUMNS)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=WARNING_COLUMNS)


def same_tensors(params: pd.DataFrame) -> dict[str, str]:
    """Scheme -> the first earlier scheme whose every parameter, in every seed, has exactly the
    same measured mean and std: from a params table alone, for views that keep no tensors
    (the app caches each scheme's run apart). Different random tensors agreeing in both
    float64 moments everywhere do not happen; equal tensors always do."""
    keyed = params.set_index(["seed", "param"])[["mean", "std"]]
    order = list(dict.fromkeys(params["scheme"]))
    moments = {s: keyed[params.set_index(["seed", "param"])["scheme"] == s] for s in order}
    out: dict[str, str] = {}
    for i, scheme in enumerate(order):
        match = next(
            (o for o in order[:i] if o not in out and moments[o].equals(moments[scheme])), None
        )
        if match is not None:
            out[scheme] = match
    return out
