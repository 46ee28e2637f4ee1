"""The experiment file's JSON Schema (draft 2020-12), built from the registries.

Methods, models, presets and layer families come from METHODS, MODELS, PRESETS and FAMILIES,
parameters from their declared `Param`s, and the plain fields of the experiment and its input
from the pydantic models' own declarations, so adding a method or a model changes the schema
with it. The schema describes the file a user writes (`"weight": "zeros"`, `{"method":
"xavier_normal", "gain": "tanh"}`), not initlab's internal dataclasses.

What JSON Schema cannot say is left to `Experiment.from_dict`: constraints between two values
(uniform `low` < `high`, trunc_normal's `a` < `b`, an MLP's `depth` against its `widths`,
`n_heads` dividing `d_model`, `input.shape` against the model), unique scheme names, the total
number of name globs, and the difference between `2` and `2.0` for whole-number fields that are
strict in the library (`batch_size`, `seeds`, `bins`, `vocab_size`, `shape`).
"""

from __future__ import annotations

import copy
import functools
import itertools
import re
import sys
from typing import Any

from initlab.architectures import ARCHITECTURES, Architecture
from initlab.experiment import Experiment, InputSpec
from initlab.gains import GAIN_NAMES, MAX_GAIN
from initlab.layers import FAMILIES
from initlab.methods import METHODS, SCALE, SCALE_BY_MATCHES, Method
from initlab.models import _FACTORY, MAX_MLP_DEPTH, MODELS, ModelEntry
from initlab.params import MAX_MAGNITUDE, Param
from initlab.presets import PRESETS
from initlab.schemes import LAYERS_PATTERN, MAX_GLOB_CHARS, MAX_NAME_CHARS, MAX_RULES
from initlab.tasks import TASKS
from initlab.training_spec import (
    MAX_RECORDS,
    MAX_STEPS,
    OPTIMIZER_FIELDS,
    OptimizerSpec,
    TrainingSpec,
)

Schema = dict[str, Any]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The end of the text in ECMA-262 and in Python's re alike: Python's `$` also matches before a
# final newline, which would let "Linear\n" through a pattern that Python's own check refuses.
END = r"(?![\s\S])"
MAX_SHAPE_SIZE = 1_000_000  # InputSpec's per-sample sizes, 1 to this
FAMILY_NAMES = list(FAMILIES)


def experiment_schema() -> Schema:
    """The JSON Schema of the experiment file, as a plain dict (`json.dumps` it)."""
    plain = _plain_fields(Experiment, exclude=("model", "input", "training"))
    plain["schemes"]["items"] = {"$ref": "#/$defs/scheme"}
    plain["seeds"]["items"] = {"type": "integer", "minimum": 0}  # as Experiment._seeds
    plain["seeds"]["uniqueItems"] = True
    return {
        "$schema": DIALECT,
        "title": "initlab experiment",
        "description": "Model + random input + seeds + schemes: the file the initlab app "
        "downloads and uploads, its URL encodes and `python -m initlab run` reads.",
        "type": "object",
        "properties": {
            "model": {"$ref": "#/$defs/model"},
            "input": {"$ref": "#/$defs/input"},
            **plain,
            "training": {"$ref": "#/$defs/training"},
        },
        "required": ["model", "schemes"],
        "additionalProperties": False,
        "allOf": _input_fits_model(),
        "$defs": _defs(),
    }


def _defs() -> dict[str, Schema]:
    defs: dict[str, Schema] = {
        "model": {"oneOf": [s for entry in MODELS.values() for s in _models(entry)]},
        "input": _input(),
        "scheme": {"oneOf": [_preset_scheme(), _rules_scheme()]},
        "rule": _rule(),
        "layers": _layers(),
        "printable": _printable(),
        "glob": _glob(),
        "scheme_name": _scheme_name(),
        "method_spec": _method_spec(),
        "gain": _gain(),
        "training": _training(),
        "optimizer": _optimizer(),
    }
    defs |= {f"method.{name}": _method(method) for name, method in METHODS.items()}
    return defs


# ---------------------------------------------------------------- training


def _training() -> Schema:
    """The training section: pydantic's own bounds, the task from the registry; which task
    suits which model, and record_at within steps, are left to Experiment.from_dict."""
    properties = _plain_fields(TrainingSpec, exclude=("task", "optimizer", "record_at"))
    properties["task"] = {
        "enum": [*TASKS, None],
        "default": None,
        "description": "what is learned: "
        + "; ".join(f"{t.name}: {t.summary}" for t in TASKS.values())
        + "; null: the model's own",
    }
    properties["optimizer"] = {"$ref": "#/$defs/optimizer"}
    steps = {"type": "integer", "minimum": 0, "maximum": MAX_STEPS}
    records = {"type": "array", "items": steps, "minItems": 1, "maxItems": MAX_RECORDS}
    properties["record_at"] = {
        "anyOf": [records, {"type": "null"}],
        "default": None,
        "description": "steps with per-layer statistics, increasing; null: log-spaced",
    }
    return {
        "anyOf": [{"type": "null"}, _object(TrainingSpec.__doc__, properties)],
    }


def _optimizer() -> Schema:
    """One optimizer by name with only its own fields, or its name alone."""
    bounds = _plain_fields(OptimizerSpec)
    variants = [
        _object(
            f"{name}; defaults {defaults}",
            {"name": {"const": name}} | {k: _number_only(bounds[k]) for k in defaults},
            required=["name"],
        )
        for name, defaults in OPTIMIZER_FIELDS.items()
    ]
    return {"oneOf": [{"enum": list(OPTIMIZER_FIELDS)}, *variants]}


def _number_only(prop: Schema) -> Schema:
    """A field pydantic declares as `number | null`: a number here (null means 'default')."""
    numbers = [p for p in prop.get("anyOf", [prop]) if p.get("type") == "number"]
    return {**numbers[0], "description": prop.get("description", "")} if numbers else prop


def _object(description: str | None, properties: dict[str, Schema], **extra: Any) -> Schema:
    return {
        "type": "object",
        "description": description or "",
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


# ---------------------------------------------------------------- plain fields (pydantic)


def _plain_fields(model: type[Any], exclude: tuple[str, ...] = ()) -> dict[str, Schema]:
    """The fields pydantic's own declarations describe exactly (types, bounds, defaults)."""
    properties = copy.deepcopy(model.model_json_schema()["properties"])
    for prop in properties.values():
        prop.pop("title", None)  # pydantic's generated "Batch Size": noise in an editor
    return {k: v for k, v in properties.items() if k not in exclude}


def _input() -> Schema:
    properties = _plain_fields(InputSpec)
    # InputSpec._shape: at least one size, each from 1 to MAX_SHAPE_SIZE.
    shape = {
        "type": "array",
        "minItems": 1,
        "items": {"type": "integer", "minimum": 1, "maximum": MAX_SHAPE_SIZE},
    }
    properties["shape"] = {
        "anyOf": [shape, {"type": "null"}],
        "default": None,
        "description": "per-sample shape; zoo models supply their own, a custom model must give it",
    }
    return {
        "type": "object",
        "description": InputSpec.__doc__,
        "properties": properties,
        "additionalProperties": False,
    }


def _input_fits_model() -> list[Schema]:
    """The input each model takes: token ids for token models, numbers for the rest, and a
    custom model's input must declare its shape (and its vocabulary, for tokens)."""
    zoo = {n: e for n, e in MODELS.items() if not e.custom and n != "hf"}
    tokens = [n for n, e in zoo.items() if e.tokens(e.normalize({}))]
    numbers = [n for n in zoo if n not in tokens]
    custom = [n for n, e in MODELS.items() if e.custom]
    vocab = {
        "if": {"properties": {"distribution": {"const": "tokens"}}, "required": ["distribution"]},
        "then": {"properties": {"vocab_size": {"type": "integer"}}, "required": ["vocab_size"]},
    }
    custom_input = {"properties": {"shape": {"type": "array"}}, "required": ["shape"], **vocab}
    return [
        _when_model(tokens, {"properties": {"input": _distribution(["tokens", None])}}),
        _when_model(numbers, {"properties": {"input": _distribution(["normal", "uniform", None])}}),
        _when_model(custom, {"properties": {"input": custom_input}, "required": ["input"]}),
        *_hf_inputs(),
    ]


def _hf_inputs() -> list[Schema]:
    """An `hf` model's input follows its architecture (gpt2 when none is named)."""
    by_kind: dict[str, list[str]] = {"tokens": [], "pixels": []}
    for arch in ARCHITECTURES.values():
        by_kind[arch.input].append(arch.name)
    allowed = {"tokens": ["tokens", None], "pixels": ["normal", "uniform", None]}
    out = []
    for kind, names in by_kind.items():
        named = {"properties": {"architecture": {"enum": names}}, "required": ["architecture"]}
        which = (
            {"anyOf": [named, {"not": {"required": ["architecture"]}}]}
            if "gpt2" in names
            else named
        )
        model = {"properties": {"name": {"const": "hf"}}, "required": ["name"], **which}
        then = {"properties": {"input": _distribution(allowed[kind])}}
        out.append({"if": {"properties": {"model": model}, "required": ["model"]}, "then": then})
    return out


def _when_model(names: list[str], then: Schema) -> Schema:
    model = {"properties": {"name": {"enum": names}}, "required": ["name"]}
    return {"if": {"properties": {"model": model}, "required": ["model"]}, "then": then}


def _distribution(allowed: list[str | None]) -> Schema:
    return {"properties": {"distribution": {"enum": allowed}}}


# ---------------------------------------------------------------- declared parameters


def _param(p: Param) -> Schema:
    """One declared `Param` as the JSON it accepts (Param.check's rules)."""
    if p.kind == "choice":
        schema: Schema = {"enum": list(p.choices)}
    elif p.kind == "bool":
        schema = {"type": "boolean"}
    elif p.kind == "gain":
        schema = {"$ref": "#/$defs/gain"}
    elif p.kind == "ints":
        schema = {"type": "array", "minItems": 1, "items": _number(p, "integer")}
    else:
        schema = _number(p, "integer" if p.kind == "int" else "number")
    if p.default is None:  # an optional parameter may be given as null
        schema = {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "default": _json_default(p.default), "description": p.help}


def _number(p: Param, kind: str) -> Schema:
    """A number within the declared bounds and, like every parameter, within ±MAX_MAGNITUDE."""
    out: Schema = {"type": kind}
    low = -MAX_MAGNITUDE if p.low is None else max(p.low, -MAX_MAGNITUDE)
    high = MAX_MAGNITUDE if p.high is None else min(p.high, MAX_MAGNITUDE)
    out["exclusiveMinimum" if p.low_open and low == p.low else "minimum"] = _tidy(low)
    out["exclusiveMaximum" if p.high_open and high == p.high else "maximum"] = _tidy(high)
    return out


def _tidy(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------- models


def _models(entry: ModelEntry) -> list[Schema]:
    """A model entry's schemas: one, or one per architecture for `hf`."""
    if entry.name == "hf":
        return [_hf_model(entry, arch) for arch in ARCHITECTURES.values()]
    return [_model(entry)]


def _hf_model(entry: ModelEntry, arch: Architecture) -> Schema:
    """An `hf` model of one architecture: its own config fields (gpt2 when none is named)."""
    properties = {
        "name": {"const": "hf"},
        "architecture": {"const": arch.name, "description": arch.summary},
        **{p.name: _param(p) for p in arch.params},
    }
    return {
        "type": "object",
        "description": f"{entry.summary}; this one: {arch.summary}",
        "properties": properties,
        "required": ["name"] if arch.name == "gpt2" else ["name", "architecture"],
        "additionalProperties": False,
    }


def _model(entry: ModelEntry) -> Schema:
    if entry.custom:
        return _custom_model(entry)
    properties = {"name": {"const": entry.name}, **{p.name: _param(p) for p in entry.params}}
    if entry.name == "mlp":  # models._mlp_widths: input width first, 2 to depth + 1 widths
        widths = properties["widths"]["anyOf"][0]
        widths |= {"minItems": 2, "maxItems": MAX_MLP_DEPTH + 1}
    return {
        "type": "object",
        "description": entry.summary,
        "properties": properties,
        "required": ["name"],
        "additionalProperties": False,
    }


def _custom_model(entry: ModelEntry) -> Schema:
    factory = {
        "type": "string",
        "pattern": _FACTORY.pattern.removesuffix("$") + END,
        "description": "'package.module:callable', imported from your environment "
        "(refused unless custom models are enabled: it runs your code)",
    }
    kwargs = {"type": "object", "default": {}, "description": "keyword arguments of the factory"}
    properties = {"name": {"const": entry.name}, "factory": factory, "kwargs": kwargs}
    properties |= {p.name: _param(p) for p in entry.params}
    return {
        "type": "object",
        "description": entry.summary,
        "properties": properties,
        "required": ["name", "factory"],
        "additionalProperties": False,
    }


# ---------------------------------------------------------------- schemes and rules


def _preset_scheme() -> Schema:
    return {
        "type": "object",
        "description": "a preset's rules, built for the model's activation",
        "properties": {"name": {"$ref": "#/$defs/scheme_name"}, "preset": _preset_name()},
        "required": ["preset"],
        "additionalProperties": False,
    }


def _rules_scheme() -> Schema:
    rules = {
        "type": "array",
        "maxItems": MAX_RULES,
        "items": {"$ref": "#/$defs/rule"},
        "description": "first matching rule wins; unmatched parameters keep PyTorch's default",
    }
    return {
        "type": "object",
        "properties": {
            "name": {"$ref": "#/$defs/scheme_name"},
            "rules": rules,
            "preset": _preset_name(),
        },
        "required": ["rules"],
        "additionalProperties": False,
    }


def _preset_name() -> Schema:
    return {"enum": list(PRESETS), "description": "a preset (python -m initlab presets)"}


def _rule() -> Schema:
    glob_or_null = {"anyOf": [{"$ref": "#/$defs/glob"}, {"type": "null"}]}
    properties = {
        "layers": {"$ref": "#/$defs/layers"},
        "name": {
            **glob_or_null,
            "description": "glob on the module's qualified name, e.g. '*.c_proj'",
        },
        "param": {
            **glob_or_null,
            "description": "glob on the parameter's name within the module, e.g. 'weight_hh_l*'",
        },
        "weight": {"$ref": "#/$defs/method_spec"},
        "bias": {"$ref": "#/$defs/method_spec"},
    }
    return {
        "type": "object",
        "properties": properties,
        "required": ["layers"],
        "additionalProperties": False,
    }


def _layers() -> Schema:
    """schemes.check_layers: an identifier, optionally dotted, up to MAX_NAME_CHARS once the
    surrounding whitespace is stripped."""
    core = f"(?=[A-Za-z0-9_.]{{1,{MAX_NAME_CHARS}}}\\s*{END})"
    return {
        "type": "string",
        "pattern": rf"^\s*{core}{LAYERS_PATTERN.pattern}\s*{END}",
        "examples": FAMILY_NAMES,
        "description": "a layer family (" + ", ".join(FAMILY_NAMES) + ") or a class name "
        "(Conv2d, nn.Conv2d, torch.nn.Conv2d, a dotted path)",
    }


def _printable() -> Schema:
    """Text without the characters schemes._has_control refuses (control, format, separator
    and unassigned characters; the space is allowed)."""
    return {
        "type": "string",
        "pattern": f"^[^{_control_class()}]*{END}",
        "description": "printable characters only",
    }


def _glob() -> Schema:
    """schemes.check_glob: 1 to MAX_GLOB_CHARS printable characters."""
    return {"$ref": "#/$defs/printable", "minLength": 1, "maxLength": MAX_GLOB_CHARS}


def _scheme_name() -> Schema:
    """schemes.check_scheme_name: printable, and 1 to MAX_NAME_CHARS once stripped (the only
    printable whitespace is the space, so only spaces can surround it)."""
    core = rf"[^ ](?:[\s\S]{{0,{MAX_NAME_CHARS - 2}}}[^ ])?"
    return {
        "$ref": "#/$defs/printable",
        "pattern": f"^ *{core} *{END}",
        "description": "unique within the experiment; default: the preset's title, or 'scheme'",
    }


@functools.cache
def _control_class() -> str:
    """The characters schemes._has_control refuses, as the body of a regex character class:
    `\\uXXXX` escapes in the Basic Multilingual Plane, the characters themselves above it."""
    flags = [not (c.isprintable() or c == " ") for c in map(chr, range(sys.maxunicode + 1))]
    parts, start = [], 0
    for refused, run in itertools.groupby(flags):
        end = start + sum(1 for _ in run) - 1
        if refused:
            parts.append(_char(start) if start == end else f"{_char(start)}-{_char(end)}")
        start = end + 1
    return "".join(parts)


def _char(code: int) -> str:
    return f"\\u{code:04X}" if code <= 0xFFFF else chr(code)


# ---------------------------------------------------------------- methods and gains


def _method_spec() -> Schema:
    """methods.parse_method_spec: omitted, null, 'default', a method name, or an object."""
    names = "|".join(re.escape(name) for name in METHODS)
    name = {
        "type": "string",
        "pattern": rf"^\s*(?:{names})_?\s*{END}",
        "examples": list(METHODS),
        "description": "a method without parameters (its defaults)",
    }
    methods = [{"$ref": f"#/$defs/method.{m}"} for m in METHODS]
    return {
        "oneOf": [{"type": "null"}, name, *methods],
        "description": "'default' (keep PyTorch's), a method name, or an object with "
        "'method', its parameters and an optional 'scale'",
    }


def _method(method: Method) -> Schema:
    name = {
        "type": "string",
        "pattern": rf"^\s*{re.escape(method.name)}_?\s*{END}",
        "examples": [method.name],
    }
    properties = {"method": name, "scale": _scale(method)}
    properties |= {p.name: _param(p) for p in method.params}
    return {
        "type": "object",
        "description": f"{method.summary} ({method.citation})",
        "properties": properties,
        "required": ["method"],
        "additionalProperties": False,
    }


def _scale(method: Method) -> Schema:
    if method.name == "default":  # it keeps PyTorch's values untouched: nothing to scale
        return {"const": 1, "description": "'default' takes no scale"}
    spaced = " *" + " *".join(re.escape(c) for c in SCALE_BY_MATCHES) + " *"
    counted = {
        "type": "string",
        "pattern": f"^{spaced}{END}",
        "description": "1/sqrt(number of modules the rule matches)",
    }
    return {"anyOf": [_number(SCALE, "number"), counted], "default": 1, "description": SCALE.help}


def _gain() -> Schema:
    """gains.parse_gain: a number from 0 to MAX_GAIN, a nonlinearity name or leaky_relu(slope),
    any case, surrounding whitespace ignored."""
    names = "|".join(_caseless(name) for name in GAIN_NAMES)
    number = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    leaky = _caseless("leaky_relu") + rf"\s*[(:]\s*{number}\s*\)?"
    text = {
        "type": "string",
        "pattern": rf"^\s*(?:{names}|{leaky})\s*{END}",
        "examples": [*GAIN_NAMES, "leaky_relu(0.2)"],
    }
    return {
        "anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_GAIN}, text],
        "description": "a number >= 0, a nonlinearity name for torch's calculate_gain, or "
        "'leaky_relu(slope)'",
    }


def _caseless(text: str) -> str:
    """A pattern matching `text` in any case (no inline flags: ECMA-262 has none)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)
