"""The Spectrum view: singular values of each scheme's input-output Jacobian."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from initlab.ui.results_panel import View


def spectrum_tab(view: View) -> None:
    st.caption("The Jacobian spectrum: `python -m initlab run EXPERIMENT --spectrum`.")
