"""Putting a whole experiment into the page's widgets (from the URL or an uploaded file)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from initlab.experiment import Experiment
from initlab.models import MODELS
from initlab.presets import PRESETS
from initlab.ui.model_panel import model_key
from initlab.ui.scheme_panel import new_editor, preset_editor
from initlab.ui.urlstate import decode

DEFAULT_SCHEMES = ("pytorch_default", "kaiming_normal")


def default_editors(activation: str) -> list[dict[str, Any]]:
    return [preset_editor(name, activation) for name in DEFAULT_SCHEMES]


def load_experiment(exp: Experiment) -> None:
    """Overwrite every widget's state with `exp` (call before widgets are drawn)."""
    model = exp.model
    st.session_state["model_name"] = model["name"]
    for p in MODELS[model["name"]].params:
        if model.get(p.name) is not None:
            st.session_state[model_key(model["name"], p.name)] = model[p.name]
    _load_input(exp)
    st.session_state["n_seeds"] = len(exp.seeds)
    st.session_state["seed_list"] = list(exp.seeds)
    st.session_state["backward"] = exp.backward
    st.session_state["mode"] = exp.mode
    st.session_state["device"] = "cpu" if exp.device == "auto" else exp.device
    activation = MODELS[model["name"]].activation(model)
    st.session_state["activation"] = activation
    st.session_state["editors"] = [
        new_editor(
            s.preset if s.preset in PRESETS else None, s.to_dict()["rules"], s.name, activation
        )
        for s in exp.schemes
    ]


def _load_input(exp: Experiment) -> None:
    spec = exp.input
    st.session_state["batch_size"] = spec.batch_size
    if spec.distribution in ("normal", "uniform"):
        st.session_state["input_distribution"] = spec.distribution
    for field in ("mean", "std", "low", "high"):
        st.session_state[f"input_{field}"] = float(getattr(spec, field))


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
