"""Rules and schemes: which method each parameter of a model gets, and applying it.

A scheme is an ordered list of rules; for every parameter (in `named_modules()` order) the
first rule that matches it decides. A rule matches a parameter when it matches the parameter's
module (family or class, and the optional `name` glob on the module's qualified name) and, if
it has one, its `param` glob matches the parameter's own name within the module
(`weight_hh_l*`). Parameters whose name contains "weight" get the rule's weight method, those
containing "bias" its bias method; everything unmatched keeps PyTorch's default.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from initlab.layers import FAMILIES, default_std, is_transposed, matches_layers
from initlab.lsuv import check_batch, log_table, lsuv_rescale
from initlab.methods import METHODS, MethodSpec, fans, parse_method_spec
from initlab.params import shown
from initlab.preset_rules import check_preset_name

PARAMS_COLUMNS = [
    "param",
    "layer",
    "type",
    "shape",
    "method",
    "fan_in",
    "fan_out",
    "gain",
    "expected_std",
]
RULE_FIELDS = ("layers", "name", "param", "weight", "bias")

# Bounds far above real use (GPT-2's own scheme has 5 rules, a careful one a few dozen): they
# keep an experiment's matching work (modules × rules per walk) small enough to estimate.
MAX_RULES = 256  # per scheme
MAX_GLOB_CHARS = 256
MAX_NAME_CHARS = 200  # scheme names and layer class names
# A family or a class name: a Python identifier, optionally dotted (module path + class).
LAYERS_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
PRESET_PATTERN = re.compile(r"[a-z0-9_]{1,64}")


def _has_control(text: str) -> bool:
    """Control, format and separator characters (newlines, U+2028, bidi overrides, ...): none
    belongs in a name, and each could end a comment or hide text in exported code."""
    return any(not (c.isprintable() or c == " ") for c in text)


def check_layers(value: Any, where: str) -> str:
    """A rule's `layers`: a family or a class name (an identifier, optionally dotted)."""
    text = value.strip() if isinstance(value, str) else None
    if not text or len(text) > MAX_NAME_CHARS or not LAYERS_PATTERN.fullmatch(text):
        raise ValueError(
            f"{where}: must be a layer family ({', '.join(FAMILIES)}) or a class "
            f"name (a Python identifier, optionally dotted); got {shown(value)}"
        )
    return text


def check_glob(value: Any, where: str) -> str | None:
    """A rule's `name`: a glob on the module's qualified name, printable, bounded."""
    return _checked_glob(value, where, "the module name", "'*.c_proj'")


def check_param_glob(value: Any, where: str) -> str | None:
    """A rule's `param`: a glob on the parameter's own name within its module."""
    return _checked_glob(value, where, "the parameter's name in its module", "'weight_hh_l*'")


def _checked_glob(value: Any, where: str, on: str, example: str) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_GLOB_CHARS
        or _has_control(value)
    ):
        raise ValueError(
            f"{where}: must be a glob on {on} (1 to {MAX_GLOB_CHARS} "
            f"printable characters, e.g. {example}); got {shown(value)}"
        )
    return value


def check_scheme_name(value: Any, where: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_NAME_CHARS or _has_control(value):
        raise ValueError(
            f"{where}: must be a text of 1 to {MAX_NAME_CHARS} printable "
            f"characters; got {shown(value)}"
        )
    return text


def compile_glob(glob: str) -> re.Pattern[str]:
    """fnmatchcase's own translation, compiled once per rule: fnmatch's shared cache is
    bounded, and an experiment with many globs would otherwise recompile on every match."""
    return re.compile(fnmatch.translate(glob))


@dataclass(frozen=True)
class Rule:
    """Layers of family (or class) `layers`, optionally with a qualified name matching the glob
    `name`, get `weight` for their weight parameters and `bias` for their bias parameters.

    `param` (optional) is a glob on the parameter's own name within the module
    (`"weight_hh_l*"`, `"weight_ih_l*"`): the rule then covers only the parameters it matches,
    and the module's other parameters go on to the next rule that matches them. So an RNN's
    recurrent and input weights can get different methods:
    `{"layers": "RNN", "param": "weight_hh_l*", "weight": {"method": "orthogonal"}}` before
    `{"layers": "RNN", "weight": {"method": "xavier_uniform"}}`. A counted scale
    (1/sqrt(matches)) counts the modules the rule matches; `param` does not change the count.
    """

    layers: str
    weight: MethodSpec = field(default_factory=MethodSpec)
    bias: MethodSpec = field(default_factory=MethodSpec)
    name: str | None = None
    param: str | None = None
    pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    param_pattern: re.Pattern[str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Checked here too, so a Rule built in a notebook is as safe to export as one read
        # from a file: its texts end up in generated code and on the page.
        # Exactly as checked, not merely after stripping: the text is written out as it is.
        if check_layers(self.layers, "rule.layers") != self.layers:
            raise ValueError(f"rule.layers: no surrounding spaces; got {shown(self.layers)}")
        check_glob(self.name, "rule.name")
        check_param_glob(self.param, "rule.param")
        if self.name is not None:
            object.__setattr__(self, "pattern", compile_glob(self.name))
        if self.param is not None:
            object.__setattr__(self, "param_pattern", compile_glob(self.param))

    def matches(self, qualname: str, module: nn.Module) -> bool:
        """Does the rule match this module (family or class, and the `name` glob)?"""
        if self.pattern is not None and self.pattern.match(qualname) is None:
            return False
        return matches_layers(module, self.layers)

    def matches_param(self, pname: str) -> bool:
        """Does the rule cover this parameter (its own name) of a module it matches?"""
        return self.param_pattern is None or self.param_pattern.match(pname) is not None

    def spec_for(self, param: str) -> MethodSpec:
        if "weight" in param:
            return self.weight
        if "bias" in param:
            return self.bias
        return MethodSpec()

    def label(self) -> str:
        where = f" named {self.name}" if self.name else ""
        which = f" param {self.param}" if self.param else ""
        return f"{self.layers}{where}{which}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layers": self.layers}
        if self.name is not None:
            out["name"] = self.name
        if self.param is not None:
            out["param"] = self.param
        out["weight"] = self.weight.to_dict() if self.weight.method != "default" else "default"
        out["bias"] = self.bias.to_dict() if self.bias.method != "default" else "default"
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Rule:
        if not isinstance(d, dict):
            raise ValueError(f"{where}: a rule must be an object with 'layers'; got {shown(d)}")
        unknown = set(d) - set(RULE_FIELDS)
        if unknown:
            raise ValueError(
                f"{where}: unknown field {shown(sorted(unknown)[0])}; allowed: "
                + ", ".join(RULE_FIELDS)
            )
        layers = check_layers(d.get("layers"), f"{where}.layers")
        name = check_glob(d.get("name"), f"{where}.name")
        param = check_param_glob(d.get("param"), f"{where}.param")
        weight = parse_method_spec(d.get("weight"), f"{where}.weight")
        bias = parse_method_spec(d.get("bias"), f"{where}.bias")
        if bias.entry.data_dependent:
            raise ValueError(
                f"{where}.bias: {bias.method} rescales a layer's weight by the layer's output; "
                "a bias cannot use it (zeros is the usual bias with LSUV)"
            )
        return cls(layers, weight, bias, name, param)


@dataclass(frozen=True)
class Scheme:
    """A named, ordered list of rules. First matching rule wins."""

    name: str
    rules: tuple[Rule, ...] = ()
    preset: str | None = None  # the preset it came from, if any (informational)

    def __post_init__(self) -> None:
        if check_scheme_name(self.name, "scheme.name") != self.name:
            raise ValueError(f"scheme.name: no surrounding spaces; got {shown(self.name)}")
        if len(self.rules) > MAX_RULES:
            raise ValueError(f"scheme.rules: at most {MAX_RULES} rules; got {len(self.rules)}")
        if self.preset is not None and not (
            isinstance(self.preset, str) and PRESET_PATTERN.fullmatch(self.preset)
        ):
            raise ValueError(f"scheme.preset: must be a preset key; got {shown(self.preset)}")

    def rule_for(self, qualname: str, module: nn.Module) -> tuple[int, Rule] | None:
        """The first rule that matches the module (whatever its `param` glob)."""
        for index, rule in enumerate(self.rules):
            if rule.matches(qualname, module):
                return index, rule
        return None

    def candidates(self, qualname: str, module: nn.Module) -> list[tuple[int, Rule]]:
        """The rules that match the module, in order, up to the first without a `param` glob:
        that one decides every parameter the earlier ones leave, so later rules never do.
        Without `param` rules this is the first match alone, found by the same walk."""
        found = []
        for index, rule in enumerate(self.rules):
            if rule.matches(qualname, module):
                found.append((index, rule))
                if rule.param_pattern is None:
                    break
        return found

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.preset:
            out["preset"] = self.preset
        out["rules"] = [rule.to_dict() for rule in self.rules]
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str = "scheme") -> Scheme:
        """Validate a scheme dict with its rules. A dict that names only a preset (no rules)
        is read by `initlab.presets.scheme_from_dict`, which fills in the preset's rules."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: a scheme must be an object; got {shown(d)}")
        unknown = set(d) - {"name", "rules", "preset"}
        if unknown:
            raise ValueError(
                f"{where}: unknown field {shown(sorted(unknown)[0])}; allowed: name, rules, preset"
            )
        if "preset" in d:  # validated whenever present: it is written into exported code
            check_preset_name(d["preset"], f"{where}.preset")
        if "rules" not in d and "preset" in d:
            raise ValueError(
                f"{where}.rules: missing; a scheme that names only a preset is read by "
                "initlab.presets.scheme_from_dict, which fills in the preset's rules"
            )
        rules = d.get("rules")
        if not isinstance(rules, list):
            raise ValueError(f"{where}.rules: must be a list of rules (or give a 'preset')")
        if len(rules) > MAX_RULES:
            raise ValueError(f"{where}.rules: at most {MAX_RULES} rules; got {len(rules)}")
        name = check_scheme_name(d.get("name", "scheme"), f"{where}.name")
        parsed = tuple(Rule.from_dict(r, f"{where}.rules.{i}") for i, r in enumerate(rules))
        return cls(name, parsed, d.get("preset"))


# ---------------------------------------------------------------- walking a model


@dataclass(frozen=True)
class Target:
    """One parameter of a model, with the rule (if any) that decides its method."""

    param: str  # qualified parameter name
    layer: str  # qualified module name
    module: nn.Module
    tensor: nn.Parameter
    rule_index: int | None
    spec: MethodSpec
    transposed: bool = False  # stored (in, out), like Hugging Face's Conv1D
    # False in a model with its own init (Hugging Face's `_init_weights`): what `default`
    # keeps is then that init, not the module's reset_parameters, whose std layers knows
    torch_default: bool = True

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape as torch's (out, in, ...) convention reads it: what fans come from."""
        shape = tuple(self.tensor.shape)
        return shape[::-1] if self.transposed else shape


def match_counts(model: nn.Module, scheme: Scheme) -> dict[int, int]:
    """How many modules each rule with a counted scale ('1/sqrt(matches)') matches.

    Every module the rule matches counts, whichever rule decides it (first match wins only
    for applying), so the number is what the rule alone says: "*.c_proj" in GPT-2 is 2·n_layers.
    Modules are counted, not parameters: a `param` glob does not change the count.
    """
    counted = [i for i, r in enumerate(scheme.rules) if r.weight.counted or r.bias.counted]
    if not counted:
        return {}
    modules = list(model.named_modules())
    return {i: sum(scheme.rules[i].matches(n, m) for n, m in modules) for i in counted}


def targets(model: nn.Module, scheme: Scheme) -> Iterator[Target]:
    """Every parameter once, in named_modules() order, with the method the scheme gives it
    (counted scales resolved for this model)."""
    seen: set[int] = set()  # tied parameters are initialized once, by their first module
    counts = match_counts(model, scheme)
    torch_default = not has_own_init(model)
    for qualname, module in model.named_modules():
        # Rules are tried once per module; per parameter only the few that matched it.
        found = scheme.candidates(qualname, module)
        for pname, tensor in module.named_parameters(recurse=False):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            index, spec = _decided(found, pname, counts)
            full = f"{qualname}.{pname}" if qualname else pname
            transposed = is_transposed(module, tensor)
            yield Target(full, qualname, module, tensor, index, spec, transposed, torch_default)


def has_own_init(model: nn.Module) -> bool:
    """A Hugging Face model: its constructor re-initializes every module (`_init_weights`)."""
    return callable(getattr(model, "_init_weights", None)) and hasattr(model, "config")


def _decided(
    found: list[tuple[int, Rule]], pname: str, counts: dict[int, int]
) -> tuple[int | None, MethodSpec]:
    """The index and method of the first of the module's rules that covers `pname`."""
    for index, rule in found:
        if rule.matches_param(pname):
            spec = rule.spec_for(pname)
            return index, spec.for_matches(counts.get(index, 0))
    return None, MethodSpec()


def validate_scheme(scheme: Scheme, model: nn.Module) -> None:
    """Raise ValueError naming the scheme, rule and parameter if any method can't apply."""
    check_targets(scheme, list(targets(model, scheme)))


def check_targets(scheme: Scheme, found: list[Target]) -> None:
    """`validate_scheme` on targets already walked (one walk serves checking and applying)."""
    for t in found:
        shape = tuple(t.tensor.shape)
        problem = t.spec.rank_problem(shape) if t.tensor.numel() else None
        problem = problem or _data_problem(t)
        if problem:
            rule = scheme.rules[t.rule_index]
            raise ValueError(
                f"scheme '{scheme.name}', rule {t.rule_index} ({rule.label()}): "
                f"{t.param}, shape {shape}: {problem}"
            )


def apply_scheme(
    model: nn.Module,
    scheme: Scheme,
    generator: torch.Generator | None = None,
    batch: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Initialize `model` in place; return the params table (what each tensor got).

    `batch` is the data a data-dependent method (`lsuv`) rescales by; `initialize` also
    returns its iteration log."""
    return initialize(model, scheme, generator, batch).params


@dataclass
class Initialized:
    """What `initialize` did: the params table and the LSUV log (LSUV_COLUMNS)."""

    params: pd.DataFrame
    lsuv: pd.DataFrame


def initialize(
    model: nn.Module,
    scheme: Scheme,
    generator: torch.Generator | None = None,
    batch: torch.Tensor | None = None,
) -> Initialized:
    """`apply_scheme`, and the log of the LSUV passes (empty when no rule uses `lsuv`)."""
    found = list(targets(model, scheme))
    check_targets(scheme, found)
    data = [t for t in found if t.spec.entry.data_dependent and t.tensor.numel()]
    if data and batch is None:  # refused before any tensor is touched
        raise ValueError(
            f"scheme '{scheme.name}': {data[0].param} uses {data[0].spec.method}, which "
            "rescales each layer by its output on data; pass a batch: "
            "apply_scheme(model, scheme, generator, batch=x)"
        )
    if data:
        try:
            check_batch(model, [(t.param, t.module) for t in data], batch)
        except ValueError as exc:
            raise ValueError(f"scheme '{scheme.name}', lsuv: {exc}") from None
    with torch.no_grad():
        for t in found:
            _init_one(t, generator)
    layers = [(t.module, t.tensor, t.spec.kwargs["tol"], t.spec.kwargs["max_iter"]) for t in data]
    log = lsuv_rescale(model, layers, batch) if data else []
    return Initialized(params_table(found), log_table([t.param for t in data], layers, log))


def uses_data(scheme: Scheme) -> bool:
    """Whether some rule gives a data-dependent method (`lsuv`): applying needs a batch."""
    specs = [spec for rule in scheme.rules for spec in (rule.weight, rule.bias)]
    return any(spec.entry.data_dependent for spec in specs)


def _data_problem(t: Target) -> str | None:
    """A data-dependent method rescales a layer's own `weight` by that layer's output."""
    pname = t.param.rsplit(".", 1)[-1]
    if not t.spec.entry.data_dependent or pname == "weight":
        return None
    return (
        f"{t.spec.method} rescales a layer's `weight` by the layer's output; {pname} is not "
        "one (give it another method)"
    )


def params_table(found: list[Target]) -> pd.DataFrame:
    """The params table of these targets, built column by column."""
    if not found:  # typed like a frame of no rows (object columns)
        return pd.DataFrame([], columns=PARAMS_COLUMNS)
    values = [_param_values(t) for t in found]
    return pd.DataFrame(dict(zip(PARAMS_COLUMNS, zip(*values, strict=True), strict=True)))


def _init_one(t: Target, generator: torch.Generator | None) -> None:
    call = t.spec.call(t.shape) if t.tensor.numel() else None
    if call is None:
        return
    (call.transposed() if t.transposed else call).run(t.tensor, generator)
    if t.spec.scale != 1.0:
        t.tensor.mul_(t.spec.scale)


def _param_values(t: Target) -> tuple[Any, ...]:
    """One parameter's values, in PARAMS_COLUMNS order."""
    shape = t.shape  # fans and expected std follow the (out, in) reading
    method = METHODS[t.spec.method]
    fan_in, fan_out = fans(shape) if len(shape) >= 2 else (math.nan, math.nan)
    if t.spec.method == "default":
        pname = t.param.rsplit(".", 1)[-1]
        expected = default_std(t.module, pname, shape) if t.torch_default else math.nan
    else:
        expected = t.spec.expected_std(shape) if t.tensor.numel() else math.nan
    label = t.spec.label() if method.name != "default" else "default"
    kind = type(t.module).__name__
    stored = str(tuple(t.tensor.shape))
    return (t.param, t.layer, kind, stored, label, fan_in, fan_out, t.spec.gain(), expected)
