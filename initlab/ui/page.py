"""The page: sidebar (model, input, run) → scheme columns → results tabs.

Reads like a script: each panel is one function that returns plain values; the experiment
assembled from them is the cache key of the run, and the page's address.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st

from initlab.experiment import Experiment
from initlab.models import MODELS, normalize_model_spec
from initlab.plots import scheme_colors
from initlab.report import build_report
from initlab.schemes import Scheme, validate_scheme
from initlab.ui import editors, keys, model_panel, scheme_panel, state, training_settings
from initlab.ui.results_panel import results_ui
from initlab.ui.runner import (
    matching_rules_cached,
    meta_model_cached,
    run_with_progress,
    slots_cached,
    warnings_cached,
)
from initlab.ui.text import describe, md
from initlab.ui.urlstate import encode

TITLE = "initlab"
SUBTITLE = "What does this initialization scheme do to my network, before training?"


def sidebar() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    with st.sidebar:
        model = model_panel.model_ui()
        inputs = model_panel.input_ui(model)
        options = model_panel.options_ui()  # seeds: the list itself, as loaded or typed
    return model, inputs, options


def ensure_editors(activation: str) -> None:
    if keys.EDITORS not in st.session_state:
        st.session_state[keys.ACTIVATION] = activation
        st.session_state[keys.EDITORS] = state.default_editors(activation)
    st.session_state[keys.ACTIVATION] = activation
    editors.follow_activation(activation)


def assemble(
    model: dict, inputs: dict, options: dict, schemes: list[dict], training: dict | None = None
) -> Experiment | None:
    """The experiment on screen, or None (with an error shown) when it is not valid."""
    if not schemes:
        st.error("No scheme is valid: fix the errors marked in the scheme columns.")
        return None
    extra = {} if training is None else {"training": training}
    try:
        return Experiment.from_dict(
            {"model": model, "input": inputs, **options, "schemes": schemes, **extra},
            allow_custom=False,
        )
    except Exception as exc:  # a ValueError names the field; anything else is still a message
        st.error(md(describe(exc)))
        return None


def show_results(exp: Experiment) -> None:
    """Run (cached) and draw; remember the last good results for when input turns invalid."""
    text = exp.to_json()
    try:
        tables = run_with_progress(text)
    except Exception as exc:  # refused by the guard or the model (a ValueError), or a failure
        # the experiment found: say so and keep the rest of the page, never a traceback
        st.error(md(describe(exc)))
        show_last_good()
        return
    st.session_state[keys.LAST_GOOD] = (text, tables)
    token = encode(exp.to_dict())
    if st.query_params.get("experiment") != token:
        st.query_params["experiment"] = token
    colors = scheme_colors([s.name for s in exp.schemes])
    # The report (several MB with plotly.js inside) is built only when its button is clicked.
    results_ui(tables, exp, colors, lambda: build_report(exp, tables))


def show_last_good() -> None:
    last = st.session_state.get(keys.LAST_GOOD)
    if last is None:
        return
    st.info("Showing the results of the last valid experiment.")
    exp = Experiment.from_text(last[0], allow_custom=False)
    results_ui(last[1], exp, scheme_colors([s.name for s in exp.schemes]))


def main() -> None:
    st.set_page_config(page_title="initlab", page_icon="📈", layout="wide")
    state.restore_from_url()
    model, inputs, options = sidebar()
    try:
        spec = normalize_model_spec(model, allow_custom=False)
    except ValueError as exc:  # fields valid one by one, not together (e.g. n_heads, d_model)
        st.sidebar.error(md(exc))
        st.title(TITLE)
        show_last_good()
        return
    ensure_editors(MODELS[spec["name"]].activation(spec))
    st.markdown(f"### {TITLE} :small[{SUBTITLE}]")
    load_error_ui()
    model_json = json.dumps(spec, sort_keys=True)
    slots = slots_cached(model_json)
    columns = scheme_panel.schemes_ui(
        slots,
        check=scheme_checker(model_json),
        warn=scheme_warner(model_json),
        prune=scheme_pruner(model_json),
    )
    schemes = [s for s in columns if s]
    exp = assemble(model, inputs, options, schemes, training_section(spec, inputs))
    if exp is None:
        show_last_good()
    else:
        show_results(exp)


def training_section(spec: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The Training view's settings as the experiment's section (None: never set). The input
    says whether the model takes token ids; a field the sidebar got wrong is main()'s to say."""
    try:
        return training_settings.section(spec, inputs)
    except Exception:  # the input itself is invalid: assemble() names it
        return None


def load_error_ui() -> None:
    """Why a link or a file was not loaded, with what the link held, until it is dismissed
    or something loads: the address itself follows the page, so the text is kept here."""
    problem = st.session_state.get(keys.LOAD_ERROR)
    if problem is None:
        return
    st.error(problem)  # markdown already: its user text is escaped
    text = st.session_state.get(keys.LOAD_TEXT)
    if text is not None:
        with st.expander("What the address held"):
            st.code(text, language=None, wrap_lines=True)  # code shows text, never markup
    st.button("Dismiss", key="dismiss_load_error", on_click=state.dismiss_load_error)


def scheme_pruner(model_json: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An edited scheme keeps only the rules that match a layer of this model: the file and
    the code carry what applies (a rule that matches nothing never changes a tensor)."""

    def prune(scheme: dict[str, Any]) -> dict[str, Any]:
        used = matching_rules_cached(model_json, json.dumps(scheme, sort_keys=True))
        return {**scheme, "rules": [r for i, r in enumerate(scheme["rules"]) if i in used]}

    return prune


def scheme_warner(model_json: str) -> Callable[[dict[str, Any]], list[tuple[str, str]]]:
    """The structural gotcha warnings of a (valid) scheme on the model's meta-device outline;
    the value checks (identical tensors) need a run, and are shown with its results."""

    def warn(scheme: dict[str, Any]) -> list[tuple[str, str]]:
        try:
            return warnings_cached(model_json, json.dumps(scheme, sort_keys=True))
        except Exception as exc:  # a check's own failure must not cost the column
            return [("warning", f"the warnings could not be checked: {describe(exc)}")]

    return warn


def scheme_checker(model_json: str) -> Callable[[dict[str, Any]], str | None]:
    """Checks a scheme dict against the model (on the meta device: shapes only, no memory)."""
    model = meta_model_cached(model_json)

    def check(scheme: dict[str, Any]) -> str | None:
        try:
            validate_scheme(Scheme.from_dict(scheme, "scheme"), model)
        except Exception as exc:  # rules from a link: any failure is a message in the column
            return describe(exc)
        return None

    return check
