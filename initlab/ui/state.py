"""Putting a whole experiment into the page's widgets (from the URL or an uploaded file)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from initlab.experiment import Experiment
from initlab.models import MODELS
from initlab.presets import PRESETS
from initlab.ui.model_panel import DEVICE_NOTE, OFFER_AUTO, model_key
from initlab.ui.scheme_panel import new_editor, preset_editor
from initlab.ui.urlstate import decode
from initlab.ui.widgets import forget, format_ints, load_value

DEFAULT_SCHEMES = ("pytorch_default", "kaiming_normal")


def default_editors(activation: str) -> list[dict[str, Any]]:
    return [preset_editor(name, activation) for name in DEFAULT_SCHEMES]


def load_experiment(exp: Experiment) -> None:
    """Overwrite every widget's state with `exp` (call before widgets are drawn). Every field
    reaches a widget or a kept value the sidebar shows, so the page runs what it was given."""
    for editor in st.session_state.get("editors", []):
        forget(f"s{editor['uid']}.")  # the old columns' widgets and what was typed in them
    _load_model(exp.model)
    _load_input(exp)
    load_value("n_seeds", len(exp.seeds))
    load_value("seed_text", format_ints(exp.seeds))
    for field in ("backward", "mode", "bins", "device"):
        load_value(field, getattr(exp, field))
    st.session_state[OFFER_AUTO] = st.session_state.get(OFFER_AUTO) or exp.device == "auto"
    st.session_state.pop(DEVICE_NOTE, None)
    activation = MODELS[exp.model["name"]].activation(exp.model)
    st.session_state["activation"] = activation
    st.session_state["editors"] = [
        new_editor(
            s.preset if s.preset in PRESETS else None, s.to_dict()["rules"], s.name, activation
        )
        for s in exp.schemes
    ]


def _load_model(model: dict[str, Any]) -> None:
    name = model["name"]
    load_value("model_name", name)
    for p in MODELS[name].params:
        if p.kind == "ints":  # "" when absent: an earlier list must not linger
            load_value(model_key(name, p.name), format_ints(model.get(p.name)))
        elif model.get(p.name) is not None:
            load_value(model_key(name, p.name), model[p.name])


def _load_input(exp: Experiment) -> None:
    spec = exp.input
    load_value("batch_size", spec.batch_size)
    if spec.distribution != "tokens":  # None is the model's own: normal for number input
        load_value("input_distribution", spec.distribution or "normal")
    for field in ("mean", "std", "low", "high"):
        load_value(f"input_{field}", float(getattr(spec, field)))
    load_value("input_vocab_size", spec.vocab_size)
    st.session_state["input_shape"] = list(spec.shape) if spec.shape else None


def restore_from_url() -> None:
    """Once per session: restore the page from `?experiment=...` if the address has one."""
    if st.session_state.get("url_checked"):
        return
    st.session_state["url_checked"] = True
    token = st.query_params.get("experiment")
    if not token:
        return
    try:
        load_experiment(Experiment.from_dict(decode(token)))
    except ValueError as exc:
        st.session_state["load_error"] = f"The address holds an experiment initlab can't use: {exc}"


def load_upload() -> None:
    """`on_change` of the uploader: load the file, or keep the page and say what was wrong."""
    upload = st.session_state.get("upload")
    if upload is None:
        return
    try:
        text = upload.getvalue().decode("utf-8")
        load_experiment(Experiment.from_text(text, upload.name))
        st.session_state.pop("load_error", None)
    except (ValueError, UnicodeDecodeError) as exc:
        st.session_state["load_error"] = f"{upload.name} was not loaded: {exc}"
