"""Putting a whole experiment into the page's widgets (from the URL or an uploaded file)."""

from __future__ import annotations

import base64
from typing import Any

import streamlit as st

from initlab.architectures import ARCHITECTURES
from initlab.experiment import Experiment
from initlab.models import MODELS
from initlab.presets import PRESETS
from initlab.reading import parse_json
from initlab.ui import keys, training_settings
from initlab.ui.editors import new_editor, preset_editor
from initlab.ui.text import describe, md
from initlab.ui.urlstate import decode
from initlab.ui.widgets import forget, format_ints, load_value

DEFAULT_SCHEMES = ("pytorch_default", "kaiming_normal")
MAX_SHOWN_CHARS = 4_000  # of a link's text shown with its error
ADDRESS_PROBLEM = "The address holds an experiment initlab can't use"
CUSTOM_REFUSED = (
    "it names a custom model, and a custom model imports and runs Python code: that is for "
    "the CLI and the library only, with explicit opt-in, never for a link or a file"
)


def default_editors(activation: str) -> list[dict[str, Any]]:
    return [preset_editor(name, activation) for name in DEFAULT_SCHEMES]


def load_experiment(exp: Experiment) -> None:
    """Overwrite every widget's state with `exp` (call before widgets are drawn). Every field
    reaches a widget or a kept value the sidebar shows, so the page runs what it was given."""
    for editor in st.session_state.get(keys.EDITORS, []):
        forget(keys.column(editor["uid"]))  # the old columns' widgets and what was typed in them
    _load_model(exp.model)
    _load_input(exp)
    load_value(keys.N_SEEDS, len(exp.seeds))
    load_value(keys.SEED_TEXT, format_ints(exp.seeds))
    for field, key in keys.RUN_FIELDS.items():
        load_value(key, getattr(exp, field))
    offer = st.session_state.get(keys.OFFER_AUTO) or exp.device == "auto"
    st.session_state[keys.OFFER_AUTO] = offer
    st.session_state.pop(keys.DEVICE_NOTE, None)
    activation = MODELS[exp.model["name"]].activation(exp.model)
    training_settings.load(exp.training)
    st.session_state[keys.ACTIVATION] = activation
    st.session_state[keys.EDITORS] = [
        new_editor(
            s.preset if s.preset in PRESETS else None, s.to_dict()["rules"], s.name, activation
        )
        for s in exp.schemes
    ]


def _load_model(model: dict[str, Any]) -> None:
    name = model["name"]
    load_value(keys.MODEL_NAME, name)
    _load_params(model, MODELS[name].params, name)
    if name == "hf":  # and the architecture's own config fields
        arch = model["architecture"]
        _load_params(model, ARCHITECTURES[arch].params, f"hf.{arch}")


def _load_params(model: dict[str, Any], params: tuple, owner: str) -> None:
    for p in params:
        if p.kind == "ints":  # "" when absent: an earlier list must not linger
            load_value(keys.model_param(owner, p.name), format_ints(model.get(p.name)))
        elif model.get(p.name) is not None:
            load_value(keys.model_param(owner, p.name), model[p.name])


def _load_input(exp: Experiment) -> None:
    spec = exp.input
    load_value(keys.BATCH_SIZE, spec.batch_size)
    if spec.distribution != "tokens":  # None is the model's own: normal for number input
        load_value(keys.INPUT_DISTRIBUTION, spec.distribution or "normal")
    for field in ("mean", "std", "low", "high"):
        load_value(keys.input_field(field), float(getattr(spec, field)))
    load_value(keys.input_field("vocab_size"), spec.vocab_size)
    st.session_state[keys.INPUT_SHAPE] = list(spec.shape) if spec.shape else None


def experiment_from_data(data: Any) -> Experiment:
    """The experiment in a link or a file. That is data, so a custom model is refused whatever
    the environment enables (INITLAB_ALLOW_CUSTOM_MODELS is for the CLI and the library)."""
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and model.get("name") == "custom":
        raise ValueError(CUSTOM_REFUSED)
    return Experiment.from_dict(data, allow_custom=False)


def restore_from_url() -> None:
    """Once per session: restore the page from `?experiment=...` if the address has one."""
    if st.session_state.get(keys.URL_CHECKED):
        return
    st.session_state[keys.URL_CHECKED] = True
    token = st.query_params.get("experiment")
    if not token:
        return
    try:
        load_experiment(experiment_from_data(decode(token)))
    except Exception as exc:  # whatever an address does, it is a message, never a traceback
        st.session_state[keys.LOAD_ERROR] = f"{ADDRESS_PROBLEM}: {md(describe(exc))}"
        # the page goes on with its defaults and the address follows it, so what the link
        # held is kept here, shown with the error, for the user to mend
        st.session_state[keys.LOAD_TEXT] = address_text(token)


def address_text(token: str) -> str:
    """What a link held, readable: its decoded JSON where it decodes, else the token itself."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except Exception:  # not base64 or not UTF-8: the token is all there is
        text = token
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + " …"


def load_upload() -> None:
    """`on_change` of the uploader: load the file, or keep the page and say what was wrong."""
    upload = st.session_state.get(keys.UPLOAD)
    if upload is None:
        return
    try:
        exp = experiment_from_data(parse_json(upload.getvalue().decode("utf-8"), "the file"))
        load_experiment(exp)
        dismiss_load_error()
    except Exception as exc:  # whatever a file does, it is a message, never a traceback
        problem = f"{md(upload.name)} was not loaded: {md(describe(exc))}"
        st.session_state[keys.LOAD_ERROR] = problem
        st.session_state.pop(keys.LOAD_TEXT, None)


def dismiss_load_error() -> None:
    st.session_state.pop(keys.LOAD_ERROR, None)
    st.session_state.pop(keys.LOAD_TEXT, None)
