"""The Sweep view: a small grid over the experiment's fields, run from the page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from initlab.ui.results_panel import View


def sweep_tab(view: View) -> None:
    st.caption("Sweeps: `python -m initlab sweep SWEEP.json --out DIR`.")
