"""Widgets generated from declared parameters (`initlab.params.Param`)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from initlab.params import Param


def seed_value(key: str, value: Any) -> None:
    """Give a widget its first value through session_state (never both value= and key=)."""
    if key not in st.session_state:
        st.session_state[key] = value


def gain_value(text: str) -> float | str:
    """A gain field: a number when it parses as one, else the text (a nonlinearity name)."""
    try:
        return float(text)
    except ValueError:
        return text.strip()


def param_widget(p: Param, key: str, initial: Any, bounded: bool = False) -> Any:
    """One widget for `p`; `bounded` applies the declared range to the control itself."""
    if p.kind == "gain":
        seed_value(key, str(initial))
        return gain_value(st.text_input(p.name, key=key, help=p.help + " (number or name)"))
    seed_value(key, _initial(p, initial))
    if p.kind == "choice":
        return st.selectbox(p.name, p.choices, key=key, help=p.help)
    if p.kind == "bool":
        return st.checkbox(p.name, key=key, help=p.help)
    limits = {"min_value": _limit(p, p.low), "max_value": _limit(p, p.high)} if bounded else {}
    if p.kind == "int":
        return st.number_input(p.name, step=1, key=key, help=p.help, **limits)
    return st.number_input(p.name, key=key, help=p.help, format="%g", step=None, **limits)


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
