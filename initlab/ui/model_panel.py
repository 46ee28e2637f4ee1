"""The sidebar: model, input and run options, generated from the model registry.

Ranges come from the library's own declarations (the models' `Param`s, the pydantic fields of
`Experiment` and `InputSpec`), so every experiment the library accepts fits the widgets: a link
or a file is never clamped to a narrower page. What has no widget for the model on screen (an
unused distribution's numbers, a token model's vocabulary limit) is kept as it came.
"""

from __future__ import annotations

from typing import Any

import annotated_types
import streamlit as st
import torch
from pydantic import BaseModel

from initlab.architectures import ARCHITECTURES
from initlab.experiment import Experiment, InputSpec
from initlab.models import MODELS, normalize_model_spec
from initlab.ui import keys
from initlab.ui.widgets import (
    format_ints,
    param_widget,
    parse_ints,
    seed_value,
    typed,
)

ZOO = [name for name in MODELS if name != "custom"]  # custom models run user code: CLI only
# A list parameter that, when given, fixes others (mlp: widths sets depth and width).
OVERRIDES = {"widths": ("depth", "width")}
INPUT_DEFAULTS = {"mean": 0.0, "std": 1.0, "low": -1.0, "high": 1.0}


def field_limits(model: type[BaseModel], name: str) -> tuple[int | None, int | None]:
    """The (low, high) a pydantic field declares: ge/le for numbers, lengths for lists."""
    low = high = None
    for item in model.model_fields[name].metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.MinLen):
            low = getattr(item, "ge", getattr(item, "min_length", None))
        if isinstance(item, annotated_types.Le | annotated_types.MaxLen):
            high = getattr(item, "le", getattr(item, "max_length", None))
    return low, high


MAX_BATCH = field_limits(InputSpec, "batch_size")[1]
MAX_SEEDS = field_limits(Experiment, "seeds")[1]
MIN_BINS, MAX_BINS = field_limits(Experiment, "bins")
MAX_VOCAB = field_limits(InputSpec, "vocab_size")[1]


# ---------------------------------------------------------------- model


def model_ui() -> dict[str, Any]:
    """The model spec, e.g. {"name": "mlp", "depth": 20, ...}."""
    st.header("Model")
    seed_value(keys.MODEL_NAME, "mlp")
    name = st.selectbox("Model", ZOO, key=keys.MODEL_NAME, help=_summary_help())
    entry = MODELS[name]
    st.caption(entry.summary)
    overridden = _overridden(name)
    spec: dict[str, Any] = {"name": name}
    for p in entry.params:
        off = p.name in overridden
        value = param_widget(
            p, keys.model_param(name, p.name), p.default, bounded=True, disabled=off
        )
        if not off and value is not None:  # None: an optional list left empty
            spec[p.name] = value
    if overridden:
        st.caption(f"{' and '.join(overridden)} follow from the list of widths.")
    if name == "hf":
        spec |= _architecture_ui(spec["architecture"])
    return spec


def _architecture_ui(architecture: str) -> dict[str, Any]:
    """A Hugging Face architecture's own config fields (each architecture keeps its values)."""
    arch = ARCHITECTURES[architecture]
    st.caption(f"**{architecture}**: {arch.summary}")
    spec: dict[str, Any] = {}
    for p in arch.params:
        key = keys.model_param(f"hf.{architecture}", p.name)
        value = param_widget(p, key, p.default, bounded=True)
        if value is not None:
            spec[p.name] = value
    return spec


def _overridden(name: str) -> tuple[str, ...]:
    """The parameters a filled-in list parameter fixes (their widgets are shown disabled)."""
    out: tuple[str, ...] = ()
    for p in MODELS[name].params:
        if p.kind == "ints" and p.name in OVERRIDES:
            key = keys.model_param(name, p.name)
            seed_value(key, format_ints(p.default))
            if str(st.session_state[key]).strip():
                out += OVERRIDES[p.name]
    return out


def _summary_help() -> str:
    return "\n".join(f"- **{m.name}**: {m.summary}" for m in MODELS.values() if m.name in ZOO)


# ---------------------------------------------------------------- input


def input_ui(model: dict[str, Any]) -> dict[str, Any]:
    """The random input: batch size and distribution (token models draw token ids). The four
    numbers are always part of the spec, the unused pair as last set (a link keeps them)."""
    st.header("Input")
    seed_value(keys.BATCH_SIZE, 256)
    spec: dict[str, Any] = {
        "batch_size": st.number_input("Batch size", 1, MAX_BATCH, step=1, key=keys.BATCH_SIZE)
    }
    if MODELS[model["name"]].tokens(model) is not None:
        spec |= _tokens_ui()
    else:
        spec |= _numbers_ui()
    spec |= {
        f: typed().get(keys.input_field(f), d) for f, d in INPUT_DEFAULTS.items() if f not in spec
    }
    return spec | _kept_shape(model)


def _tokens_ui() -> dict[str, Any]:
    st.caption("Random token ids, uniform over the vocabulary.")
    seed_value(keys.input_field("vocab_size"), None)
    vocab = st.number_input(
        "Token ids drawn below",
        1,
        MAX_VOCAB,
        step=1,
        key=keys.input_field("vocab_size"),
        placeholder="the model's vocabulary",
        help="ids from 0 to this - 1; empty: the whole vocabulary",
    )
    return {"distribution": "tokens"} | ({} if vocab is None else {"vocab_size": int(vocab)})


def _numbers_ui() -> dict[str, Any]:
    seed_value(keys.INPUT_DISTRIBUTION, "normal")
    dist = st.radio(
        "Distribution", ["normal", "uniform"], key=keys.INPUT_DISTRIBUTION, horizontal=True
    )
    spec: dict[str, Any] = {"distribution": dist}
    first, second = ("mean", "std") if dist == "normal" else ("low", "high")
    left, right = st.columns(2)
    for column, field in ((left, first), (right, second)):
        seed_value(keys.input_field(field), INPUT_DEFAULTS[field])
        spec[field] = column.number_input(
            field, key=keys.input_field(field), format="%g", step=None
        )
    vocab = typed().get(keys.input_field("vocab_size"))
    if vocab is not None:  # valid for any model; only token models read it
        st.caption(
            f"input.vocab_size {vocab} kept (from the file or a token model; this model "
            "reads no token ids)"
        )
        spec["vocab_size"] = vocab
    return spec


def _kept_shape(model: dict[str, Any]) -> dict[str, Any]:
    """A loaded `input.shape` is kept while it is the model's own (zoo models allow no other)."""
    shape = st.session_state.get(keys.INPUT_SHAPE)
    if not shape:
        return {}
    try:
        own = MODELS[model["name"]].input_shape(normalize_model_spec(model, allow_custom=False))
    except ValueError:  # the model's fields are invalid: main() says so
        return {}
    if tuple(shape) != tuple(own):
        return {}
    st.caption(f"input.shape {list(shape)} (from the file: the model's own)")
    return {"shape": list(shape)}


# ---------------------------------------------------------------- run options


def options_ui() -> dict[str, Any]:
    """Seeds, backward pass, the probe's mode, histogram bins and the device."""
    st.header("Run")
    seed_value(keys.BACKWARD, True)
    seed_value(keys.MODE, "train")
    seed_value(keys.BINS, field_default("bins"))
    seed_value(keys.DROPOUT, field_default("dropout"))
    seeds = seeds_ui()
    backward = st.checkbox("Backward pass (gradients)", key=keys.BACKWARD)
    mode = st.radio(
        "Mode",
        ["train", "eval"],
        key=keys.MODE,
        horizontal=True,
        help="train: BatchNorm normalizes with batch statistics",
    )
    dropout = st.checkbox(
        "Dropout on",
        key=keys.DROPOUT,
        help="off: dropout is the identity in the probe (its noise is not "
        "initialization), whatever the mode",
    )
    bins = st.number_input("Histogram bins", MIN_BINS, MAX_BINS, step=1, key=keys.BINS)
    options = {
        "seeds": seeds,
        "backward": backward,
        "mode": mode,
        "bins": int(bins),
        "dropout": dropout,
    }
    return {**options, "device": _device_ui()}


def field_default(name: str) -> Any:
    return Experiment.model_fields[name].default


def seeds_ui() -> list[int] | str:
    """A count (the quick control) and the list itself (any distinct whole numbers >= 0).
    The list is the truth; changing the count resizes it, typing a list sets the count."""
    seed_value(keys.N_SEEDS, 2)
    seed_value(keys.SEED_TEXT, format_ints(range(int(st.session_state[keys.N_SEEDS]))))
    _resize_seed_list()
    st.number_input(
        "Seeds", 1, MAX_SEEDS, step=1, key=keys.N_SEEDS, help="each seed: new weights and input"
    )
    text = st.text_input(
        "Seed values",
        key=keys.SEED_TEXT,
        on_change=_on_seed_text,
        help="comma-separated, distinct whole numbers >= 0",
    )
    seeds = parse_ints(text)
    if seeds is None:
        st.error("Seed values: whole numbers separated by commas, e.g. 0, 1, 2")
        return text
    return seeds


def _resize_seed_list() -> None:
    """The count was changed (by its widget or by code): grow or cut the list to match."""
    seeds, n = parse_ints(st.session_state[keys.SEED_TEXT]), int(st.session_state[keys.N_SEEDS])
    if seeds is None or len(seeds) == n or not 1 <= len(seeds) <= MAX_SEEDS:
        return  # unreadable or out of range: left as typed, the error says what is wrong
    st.session_state[keys.SEED_TEXT] = format_ints(resized(seeds, n))
    typed()[keys.SEED_TEXT] = st.session_state[keys.SEED_TEXT]


def resized(seeds: list[int], n: int) -> list[int]:
    """The first `n` seeds, extended with the smallest unused whole numbers."""
    out, candidate = list(seeds[:n]), 0
    while len(out) < n:
        if candidate not in out:
            out.append(candidate)
        candidate += 1
    return out


def _on_seed_text() -> None:
    seeds = parse_ints(st.session_state[keys.SEED_TEXT])
    if seeds is not None and 1 <= len(seeds) <= MAX_SEEDS:
        st.session_state[keys.N_SEEDS] = len(seeds)


def _device_ui() -> str:
    """CUDA is offered only where a GPU is present; "auto" (cuda when there is one) where an
    experiment asked for it. A device this machine lacks is said, not silently replaced."""
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if st.session_state.get(keys.OFFER_AUTO):
        devices.append("auto")
    seed_value(keys.DEVICE, "cpu")
    if st.session_state[keys.DEVICE] not in devices:
        st.session_state[keys.DEVICE_NOTE] = (
            f"The experiment asked for device "
            f"{st.session_state[keys.DEVICE]}; this machine has no "
            "GPU, so it runs on cpu."
        )
        st.session_state[keys.DEVICE] = "cpu"
    device = st.radio("Device", devices, key=keys.DEVICE, horizontal=True)
    if device == "cpu" and st.session_state.get(keys.DEVICE_NOTE):
        st.caption(st.session_state[keys.DEVICE_NOTE])
    return device
