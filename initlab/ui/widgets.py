"""Widgets generated from declared parameters (`initlab.params.Param`), and the memory that
keeps what was typed into a widget while it is not on the page.

Streamlit deletes a widget's session_state entry at the end of any run that does not draw it
(another model picked, a layer family gone from the model), so its next appearance would start
from the default again. Every widget here is seeded through `seed_value`, which records the
widget's current value in the plain dict `st.session_state[TYPED]` (plain entries survive) and
re-seeds a redrawn widget from it.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from initlab.params import Param
from initlab.ui.keys import TYPED


def typed() -> dict[str, Any]:
    """The page's memory of widget values (created on first use)."""
    if TYPED not in st.session_state:
        st.session_state[TYPED] = {}
    return st.session_state[TYPED]


def seed_value(key: str, value: Any) -> None:
    """Give a widget its value through session_state (never both value= and key=): the one it
    has, else the one last typed into it, else `value`; and remember it for later runs."""
    memory = typed()
    if key not in st.session_state:
        st.session_state[key] = memory.get(key, value)
    memory[key] = st.session_state[key]


def load_value(key: str, value: Any) -> None:
    """Set a widget's value from a loaded experiment (before the widget is drawn)."""
    st.session_state[key] = value
    typed()[key] = value


def forget(prefix: str) -> None:
    """Drop every widget value (current and remembered) whose key starts with `prefix`."""
    for store in (st.session_state, typed()):
        for key in [k for k in store if str(k).startswith(prefix) and k != TYPED]:
            del store[key]


def gain_value(text: str) -> float | str:
    """A gain field: a number when it parses as one, else the text (a nonlinearity name)."""
    try:
        return float(text)
    except ValueError:
        return text.strip()


def format_ints(values: Any) -> str:
    return ", ".join(str(v) for v in values) if values else ""


def parse_ints(text: str) -> list[int] | None:
    """Read '8, 32, 4' (commas and/or spaces) as [8, 32, 4]; None if a part is not an int."""
    parts = [part for part in re.split(r"[,\s]+", text.strip()) if part]
    try:
        return [int(part) for part in parts]
    except ValueError:
        return None


def ints_value(text: str) -> list[int] | str | None:
    """An ints field: None when empty, the list when it parses, else the text itself, so the
    library's validation names the field and what is allowed."""
    if not text.strip():
        return None
    values = parse_ints(text)
    return text if values is None else values


def param_widget(
    p: Param, key: str, initial: Any, bounded: bool = False, disabled: bool = False
) -> Any:
    """One widget for `p`; `bounded` applies the declared range to the control itself."""
    if p.kind == "gain":
        seed_value(key, str(initial))
        return gain_value(
            st.text_input(p.name, key=key, help=p.help + " (number or name)", disabled=disabled)
        )
    if p.kind == "ints":
        seed_value(key, format_ints(initial))
        help_text = p.help + " (comma-separated; empty: not used)"
        return ints_value(st.text_input(p.name, key=key, help=help_text, disabled=disabled))
    seed_value(key, _initial(p, initial))
    common: dict[str, Any] = {"key": key, "help": p.help, "disabled": disabled}
    if p.kind == "choice":
        return st.selectbox(p.name, p.choices, **common)
    if p.kind == "bool":
        return st.checkbox(p.name, **common)
    limits = {"min_value": _limit(p, p.low), "max_value": _limit(p, p.high)} if bounded else {}
    if p.kind == "int":
        return st.number_input(p.name, step=1, **common, **limits)
    return st.number_input(p.name, format="%g", step=None, **common, **limits)


def _initial(p: Param, value: Any) -> Any:
    if p.kind == "int":
        return int(value)
    if p.kind == "float":
        return float(value)
    return value


def _limit(p: Param, bound: float | None) -> float | int | None:
    if bound is None:
        return None
    return int(bound) if p.kind == "int" else float(bound)
