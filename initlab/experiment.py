"""The experiment: model + random input + seeds + schemes, validated; and `run`, the one
orchestrator that turns an experiment into Results.

Every (scheme, seed) gets a freshly built model and, for a given seed, the same input, so
schemes differ only by their initialization. Weights, input and backward cotangent come from
independent generators derived from (seed, purpose): drawing the input from the weights' stream
would correlate x and W and silently double the first layer's variance.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from torch import nn

from initlab.csvout import write_tables
from initlab.gotchas import WarningCollector, empty_table
from initlab.guard import check_budget
from initlab.lsuv import LSUV_COLUMNS
from initlab.models import MODELS, build_model, moved, normalize_model_spec
from initlab.outline import meta_model
from initlab.params import MAX_MAGNITUDE, shown
from initlab.presets import scheme_from_dict
from initlab.probe import (
    HIST_COLUMNS,
    LAYER_COLUMNS,
    LayerColumns,
    ProbeError,
    Spanned,
    layer_table,
    measure,
    repeated,
    span_table,
)
from initlab.reading import parse_json, read_bounded
from initlab.schemes import (
    PARAMS_COLUMNS,
    Initialized,
    Scheme,
    initialize,
    uses_data,
    validate_scheme,
)
from initlab.stats import summarize, summary_and_counts
from initlab.tasks import check_task, default_task
from initlab.training_spec import OptimizerSpec, TrainingSpec

Progress = Callable[[float, str], None]
# Name and param globs over all schemes (each scheme has at most schemes.MAX_RULES rules): every
# walk of the model tries each module against each rule, so this bounds the matching work.
MAX_GLOBS = 512


class InputSpec(BaseModel):
    """The random input: `normal` (mean, std), `uniform` (low, high) or `tokens` (vocab_size)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    batch_size: StrictInt = Field(64, ge=1, le=65_536)
    distribution: Literal["normal", "uniform", "tokens"] | None = None  # None: model's own
    # Strict numbers (true or "2" are not numbers), within what float32 input can hold.
    mean: StrictFloat = Field(0.0, allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)
    std: StrictFloat = Field(1.0, allow_inf_nan=False, ge=0, le=MAX_MAGNITUDE)
    low: StrictFloat = Field(-1.0, allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)
    high: StrictFloat = Field(1.0, allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)
    vocab_size: StrictInt | None = Field(None, ge=1, le=10_000_000)
    shape: tuple[StrictInt, ...] | None = None  # per-sample shape; zoo models supply their own

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or min(value) < 1 or max(value) > 1_000_000):
            raise ValueError(f"must list sizes from 1 to 1000000; got {shown(list(value))}")
        return value

    @model_validator(mode="after")
    def _low_below_high(self) -> InputSpec:
        if self.distribution == "uniform" and not self.low < self.high:
            raise ValueError(
                f"input.low: must be smaller than high; got low={self.low}, high={self.high}"
            )
        return self


class Experiment(BaseModel):
    """A validated experiment. Build it with `from_dict` / `from_json` for clear errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    model: dict[str, Any]
    input: InputSpec = InputSpec()
    seeds: tuple[StrictInt, ...] = Field((0,), min_length=1, max_length=32)
    backward: StrictBool = True
    schemes: tuple[Scheme, ...] = Field(min_length=1, max_length=8)
    mode: Literal["train", "eval"] = "train"  # train: BatchNorm uses batch statistics
    dropout: StrictBool = False  # off: dropout is the identity in the probe, whatever the mode
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    bins: StrictInt = Field(64, ge=4, le=512)
    training: TrainingSpec | None = None  # a short training run per (scheme, seed): train()

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any, info: ValidationInfo) -> dict[str, Any]:
        # Permission to import a custom model's code comes from the caller through the
        # validation context (from_dict's allow_custom); without it, the environment decides.
        allow = (info.context or {}).get("allow_custom")
        return normalize_model_spec(value, allow_custom=allow)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if min(value) < 0 or len(set(value)) != len(value):
            raise ValueError(f"must be distinct whole numbers >= 0; got {shown(list(value))}")
        return value

    @field_validator("schemes", mode="before")
    @classmethod
    def _schemes(cls, value: Any, info: Any) -> tuple[Scheme, ...]:
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of schemes")
        model = info.data.get("model")
        activation = _activation(model)
        # presets that depend on the model (residual_scaled's projections, pytorch_default on a
        # Hugging Face model) resolve against it
        schemes = tuple(
            s if isinstance(s, Scheme) else scheme_from_dict(s, f"schemes.{i}", activation, model)
            for i, s in enumerate(value)
        )
        _unique_names(schemes)
        _bounded_globs(schemes)
        return schemes

    @model_validator(mode="after")
    def _input_fits_model(self) -> Experiment:
        _check_input(self.model, self.input)
        return self

    @model_validator(mode="after")
    def _task_suits_model(self) -> Experiment:
        if self.training is not None:
            given = self.input.model_dump()
            task = self.training.task or default_task(self.model, given)
            check_task(task, self.model, input_spec=given)
        return self

    # ------------------------------------------------------------ construction and export

    @classmethod
    def from_dict(cls, d: Any, allow_custom: bool | None = None) -> Experiment:
        """Validate a plain dict; any problem is one ValueError naming the field.

        `allow_custom=True` permits a `custom` model (it imports the user's code); None reads
        INITLAB_ALLOW_CUSTOM_MODELS=1 from the environment.
        """
        if not isinstance(d, dict):
            raise ValueError(f"an experiment must be a JSON object; got {type(d).__name__}")
        try:
            return cls.model_validate(d, context={"allow_custom": allow_custom})
        except ValidationError as exc:
            raise ValueError(format_errors(exc)) from None
        except RecursionError:
            raise ValueError("experiment: nested too deeply to be an experiment") from None
        except (TypeError, KeyError, IndexError, AttributeError) as exc:
            # Data no validator foresaw must still be an answer, not a traceback.
            raise ValueError(f"experiment: not a valid experiment ({shown(str(exc))})") from None

    @classmethod
    def from_json(cls, source: str | Path, allow_custom: bool | None = None) -> Experiment:
        """Read an experiment from a JSON file path (JSON only: nothing in it is executed)."""
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{path}: a folder, not an experiment file")
        try:
            text = read_bounded(path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); not an experiment") from (
                None
            )
        return cls.from_text(text, str(path), allow_custom)

    @classmethod
    def from_text(
        cls, text: str, where: str = "experiment", allow_custom: bool | None = None
    ) -> Experiment:
        return cls.from_dict(parse_json(text, where), allow_custom)

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"schemes", "training"})
        out["model"] = {k: v for k, v in out["model"].items() if v is not None}
        out["input"] = {k: v for k, v in out["input"].items() if v is not None}
        out["schemes"] = [s.to_dict() for s in self.schemes]
        if self.training is not None:  # absent stays absent: older files and links unchanged
            out["training"] = self.training.model_dump(mode="json", exclude_none=True)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def input_variance(self) -> float | None:
        """The input's variance (what verdicts compare with); None for token ids, 0 for a
        constant input."""
        spec = self.input
        if spec.distribution == "tokens" or MODELS[self.model["name"]].tokens(self.model):
            return None
        if spec.distribution == "uniform":
            return (spec.high - spec.low) ** 2 / 12
        return spec.std**2  # 0 for a constant input: verdicts then blame the input

    def input_shape(self) -> tuple[int, ...]:
        return self.input.shape or MODELS[self.model["name"]].input_shape(self.model)


def _activation(model: dict[str, Any] | None) -> str:
    if not model:
        return "relu"
    return MODELS[model["name"]].activation(model)


def _unique_names(schemes: tuple[Scheme, ...]) -> None:
    seen: set[str] = set()
    for i, scheme in enumerate(schemes):
        if scheme.name in seen:
            raise ValueError(
                f"schemes.{i}.name: '{scheme.name}' is used twice; scheme names must be unique"
            )
        seen.add(scheme.name)


def _bounded_globs(schemes: tuple[Scheme, ...]) -> None:
    globs = sum(
        (rule.name is not None) + (rule.param is not None) for s in schemes for rule in s.rules
    )
    if globs > MAX_GLOBS:
        raise ValueError(
            f"schemes: at most {MAX_GLOBS} rules with a name glob in one experiment "
            f"(a param glob counts as one too); got {globs}"
        )


def _check_input(model: dict[str, Any], spec: InputSpec) -> None:
    entry = MODELS[model["name"]]
    if entry.custom:
        _check_custom_input(spec)
        return
    expected = entry.input_shape(model)
    if spec.shape is not None and tuple(spec.shape) != tuple(expected):
        raise ValueError(
            f"input.shape: {model['name']} expects {list(expected)} per sample; "
            f"got {list(spec.shape)}"
        )
    wants_tokens = entry.tokens(model) is not None
    if spec.distribution is not None and (spec.distribution == "tokens") != wants_tokens:
        allowed = "tokens" if wants_tokens else "normal or uniform"
        raise ValueError(
            f"input.distribution: {model['name']} takes {allowed} input; got {spec.distribution}"
        )
    vocab = entry.tokens(model)
    if vocab is not None and spec.vocab_size is not None and spec.vocab_size > vocab:
        raise ValueError(
            f"input.vocab_size: {model['name']} has {vocab} token ids; got {spec.vocab_size}"
        )


def _check_custom_input(spec: InputSpec) -> None:
    """Initlab cannot know what a user's model eats: the input must say it."""
    if spec.shape is None:
        raise ValueError(
            "input.shape: a custom model must declare its per-sample input shape, "
            "e.g. [3, 32, 32], or [seq_len] with distribution 'tokens'"
        )
    if spec.distribution == "tokens" and spec.vocab_size is None:
        raise ValueError(
            "input.vocab_size: token input to a custom model needs the vocabulary "
            "size (token ids are drawn from 0 to vocab_size - 1)"
        )


BOUNDS = {
    "less_than_equal": ("<=", "le"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "greater_than": (">", "gt"),
}


def _pydantic_message(err: dict[str, Any]) -> str:
    """One pydantic error in initlab's words: what is allowed, and what was given."""
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown field; allowed: {', '.join(_allowed_fields(err['loc']))}"
    if kind == "missing":
        return "missing (required)"
    if kind in BOUNDS:
        op, key = BOUNDS[kind]
        return f"must be {op} {err['ctx'][key]:g}; got {shown(err.get('input'))}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind.endswith(("_type", "_parsing", "finite_number", "literal_error")):
        msg += f"; got {shown(err.get('input'))}"
    return msg


def format_errors(exc: ValidationError, most: int = 3) -> str:
    """Pydantic errors as 'where: what is wrong; what is allowed' lines."""
    lines = []
    for err in exc.errors()[:most]:
        loc = ".".join(shown(part).strip("'") for part in err["loc"])
        msg = _pydantic_message(err)
        # Our own validators already start their messages with the field's full path.
        ours = not loc or msg.startswith((loc.split(".")[0] + ".", loc.split(".")[0] + ":"))
        lines.append(msg if ours else f"{loc}: {msg}")
    more = len(exc.errors()) - most
    return "\n".join(lines + ([f"... and {more} more"] if more > 0 else []))


# The sections whose unknown fields are answered with their own allowed fields.
SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    ("input",): InputSpec,
    ("training",): TrainingSpec,
    ("training", "optimizer"): OptimizerSpec,
}


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    model = SECTIONS.get(tuple(str(part) for part in loc[:-1]), Experiment)
    return list(model.model_fields)


# ---------------------------------------------------------------- running


def stream_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose ('model', 'init', 'input', 'cotangent')."""
    digest = hashlib.sha256(f"initlab:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, purpose))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is available; use cpu")
    return torch.device(device)


def make_input(exp: Experiment, seed: int) -> torch.Tensor:
    """The random input of this seed, drawn on the CPU from its own stream."""
    spec, g = exp.input, generator(seed, "input")
    shape = (spec.batch_size, *exp.input_shape())
    vocab = MODELS[exp.model["name"]].tokens(exp.model)
    if vocab is not None or spec.distribution == "tokens":  # custom models: input says
        return torch.randint(0, spec.vocab_size or vocab, shape, generator=g)
    if spec.distribution == "uniform":
        return torch.empty(shape).uniform_(spec.low, spec.high, generator=g)
    return torch.empty(shape).normal_(spec.mean, spec.std, generator=g)


def build_initialized(exp: Experiment, scheme: Scheme, seed: int) -> tuple[nn.Module, pd.DataFrame]:
    """A fresh model for this seed with `scheme` applied (on the CPU, so any device agrees)."""
    model, done = initialized(exp, scheme, seed)
    return model, done.params


def initialized(
    exp: Experiment,
    scheme: Scheme,
    seed: int,
    batch: torch.Tensor | None = None,
    train: bool | None = None,
) -> tuple[nn.Module, Initialized]:
    """`build_initialized` with the LSUV log. LSUV rescales on `batch`, by default the seed's
    input, in the probe's mode (`train`, by default the experiment's): what the probe sees."""
    # allow_custom: validating the experiment already refused a custom model unless enabled.
    model = build_model(exp.model, seed=stream_seed(seed, "model"), allow_custom=True)
    if uses_data(scheme):
        batch = make_input(exp, seed) if batch is None else batch
        model.train(exp.mode == "train" if train is None else train)
    return model, initialize(model, scheme, generator(seed, "init"), batch)


@dataclass
class Results:
    """The three tidy tables of DESIGN.md; the only thing that flows to plots, CLI and UI."""

    layers: pd.DataFrame
    params: pd.DataFrame
    histograms: pd.DataFrame
    # scheme, check, level, message: initlab.gotchas, on each scheme's first-seed model
    warnings: pd.DataFrame = field(default_factory=empty_table)
    # scheme, seed, LSUV_COLUMNS: a row per LSUV forward pass (no rows without `lsuv`)
    lsuv: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LSUV_OUT))

    def write_csv(self, folder: str | Path) -> list[Path]:
        """layers.csv, params.csv, histograms.csv; lsuv.csv when a scheme uses LSUV."""
        names = ("layers", "params", "histograms") + (("lsuv",) if len(self.lsuv) else ())
        return write_tables(folder, {name: getattr(self, name) for name in names})


LAYERS_OUT = ["scheme", "seed", *LAYER_COLUMNS]
PARAMS_OUT = ["scheme", "seed", *PARAMS_COLUMNS, "mean", "std", "grad_var"]
HISTS_OUT = ["scheme", "seed", *HIST_COLUMNS]
LSUV_OUT = ["scheme", "seed", *LSUV_COLUMNS]


def validate_against_model(exp: Experiment) -> None:
    """Before anything runs: every scheme fits the model, and the experiment fits the budget.

    Both look at the model on the meta device (shapes only), so a model too large for this
    machine is refused without ever being allocated.
    """
    model = meta_model(exp.model, allow_custom=True)  # validation checked the permission
    check_budget(exp, model)  # first: a model too large is refused at once
    for scheme in exp.schemes:
        validate_scheme(scheme, model)


def run(exp: Experiment, progress: Progress | None = None) -> Results:
    """Run every (seed, scheme) of the experiment; return the results tables."""
    validate_against_model(exp)
    device = resolve_device(exp.device)
    parts: dict[str, list[Any]] = {
        k: [] for k in ("layers", "params", "measured", "histograms", "lsuv")
    }
    total = len(exp.seeds) * len(exp.schemes)
    keys: list[tuple[str, int]] = []  # per (seed, scheme) run, in order: what its rows are
    found = WarningCollector()  # warnings are per scheme: the first seed's models tell
    for seed in exp.seeds:
        x = make_input(exp, seed).to(device)
        for scheme in exp.schemes:
            if progress:
                progress(len(keys) / total, f"{scheme.name}, seed {seed}")
            collector = found if seed == exp.seeds[0] else None
            for key, frame in _run_one(exp, scheme, seed, x, device, collector).items():
                parts[key].append(frame)
            keys.append((scheme.name, seed))
    if progress:
        progress(1.0, "done")
    return Results(
        _layers_table(parts["layers"], keys),
        _params_table(parts["params"], parts["measured"], keys),
        _hist_table(parts["histograms"], keys, exp.bins),
        found.table(),
        _concat(parts["lsuv"], keys, LSUV_OUT),
    )


def _concat(
    frames: list[pd.DataFrame], keys: list[tuple[str, int]], columns: list[str]
) -> pd.DataFrame:
    """The runs' frames one under another, each row labelled with its run's scheme and seed:
    the two columns are made once, after the concatenation (an `assign` per frame cost more
    than the concatenation itself)."""
    sizes = [len(frame) for frame in frames]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "scheme", repeated([scheme for scheme, _ in keys], sizes))
    table.insert(1, "seed", np.repeat(np.array([seed for _, seed in keys], dtype=np.int64), sizes))
    # in place, in order: selecting the columns copies the table (half of this function's time)
    return table if list(table.columns) == columns else table[columns]


MEASURED = ("mean", "std", "grad_var")  # the params table's columns the run measures


def _params_table(
    frames: list[pd.DataFrame], measured: list[np.ndarray], keys: list[tuple[str, int]]
) -> pd.DataFrame:
    """The runs' params tables one under another, and the measured columns (each run's a
    (3, params) array, in MEASURED order) added once, to the whole table: a copy of every
    run's frame with them cost more than the concatenation."""
    table = _concat(frames, keys, PARAMS_OUT[: -len(MEASURED)])
    values = np.concatenate(measured, axis=1)
    for name, column in zip(MEASURED, values, strict=True):
        table[name] = column
    return table


def _layers_table(runs: list[LayerColumns], keys: list[tuple[str, int]]) -> pd.DataFrame:
    """Every run's layers in one table, made once from the runs' columns: a frame per run and
    their concatenation cost a tenth of the default page's overhead."""
    sizes = [len(columns["order"]) for columns in runs]
    if not sum(sizes):  # no rows at all: typed as the concatenation of empty frames is
        return _concat([layer_table(columns) for columns in runs], keys, LAYERS_OUT)
    table = pd.DataFrame({name: [v for c in runs for v in c[name]] for name in LAYER_COLUMNS})
    table.insert(0, "scheme", repeated([scheme for scheme, _ in keys], sizes))
    table.insert(1, "seed", np.repeat(np.array([seed for _, seed in keys], dtype=np.int64), sizes))
    return table


def _hist_table(runs: list[list[Spanned]], keys: list[tuple[str, int]], bins: int) -> pd.DataFrame:
    """Every run's histograms (weights, then the probe's) in one table: one vectorized set of
    edges and one frame, not a frame per run and their concatenation."""
    table = span_table([h for hists in runs for h in hists], bins)
    sizes = [len(hists) * bins for hists in runs]
    table.insert(0, "scheme", repeated([scheme for scheme, _ in keys], sizes))
    table.insert(1, "seed", np.repeat(np.array([seed for _, seed in keys], dtype=np.int64), sizes))
    return table[HISTS_OUT]


def _run_one(
    exp: Experiment,
    scheme: Scheme,
    seed: int,
    x: torch.Tensor,
    device: torch.device,
    found: WarningCollector | None = None,
) -> dict[str, Any]:
    model, done = initialized(exp, scheme, seed, x.cpu() if uses_data(scheme) else None)
    params = done.params
    if found is not None:  # on the CPU, before the probe: the tensors as initialized
        found.add(scheme, model)
    model = moved(model, device)
    summaries, weight_hists = _param_summaries(model, exp.bins)
    cotangent = generator(seed, "cotangent")
    train = exp.mode == "train"
    try:
        result = measure(
            model, x, exp.backward, cotangent, exp.bins, train=train, dropout=exp.dropout
        )
    except ProbeError as exc:  # the model breaks on this input: say which input it was
        raise ProbeError(f"input: the model fails on {_input_words(exp, x)}: {exc}") from exc
    names = params["param"].tolist()  # columns from lists: a Series.map per column cost more
    grad_var = result.param_grad_var
    values = [(*summaries[p], grad_var.get(p, math.nan)) for p in names]  # MEASURED, per param
    return {
        "layers": result.columns,
        "params": params,
        "measured": np.array(values, dtype=np.float64).reshape(len(names), len(MEASURED)).T,
        "histograms": weight_hists + result.hists,  # one table for every run (`_hist_table`)
        "lsuv": done.lsuv,
    }


def _input_words(exp: Experiment, x: torch.Tensor) -> str:
    spec = exp.input
    words = f"input of shape {list(x.shape)} (input.shape {list(exp.input_shape())}"
    words += f", input.distribution '{spec.distribution or 'normal'}'"
    if spec.vocab_size is not None:
        words += f", input.vocab_size {spec.vocab_size}"
    return words + ")"


def _param_summaries(
    model: nn.Module, bins: int
) -> tuple[dict[str, tuple[float, float]], list[Spanned]]:
    """Each parameter's (mean, std), and the histograms of the weight matrices and kernels (norm
    scales are constant at init), in one walk over the parameters; a weight's histogram is
    binned on its summary, so each weight is read twice (moments, then bins), not three times."""
    stats, hists = {}, []
    for name, p in model.named_parameters():
        if "weight" in name.rsplit(".", 1)[-1] and p.dim() >= 2:
            s, _, span, counts = summary_and_counts(p, None, None, bins)
            hists.append(("weight", name, span, counts))
        else:
            s = summarize(p)
        stats[name] = (s.mean, s.std)
    return stats, hists
