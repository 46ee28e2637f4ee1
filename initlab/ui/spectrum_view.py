"""The Spectrum view: singular values of each scheme's input-output Jacobian.

Jacobians are costly (one backward pass per output element and input, in float64), so the
spectrum is computed only when asked for, after the guard's check (`spectrum_table` refuses
hopeless work with a ValueError, shown as an error), and kept in the session for the last few
runs: never in a module global, which every session of the process would share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from initlab.plots_theory import spectrum_histograms
from initlab.spectrum import Spectrum, spectrum_table
from initlab.ui import session_cache
from initlab.ui.text import md

if TYPE_CHECKING:
    from initlab.ui.results_panel import View

COMPUTED = "spectrum.computed"  # session state: run key -> Spectrum, the last KEEP of them
BUTTON = "spectrum.compute"
FIGURE = "spectrum.figure"
TABLE = "spectrum.table"
KEEP = 4
INPUTS = 3  # Jacobians per (scheme, seed): the first samples of each seed's input
ABOUT = (
    "Singular values s of the input-output Jacobian J = ∂ output / ∂ input at the first "
    f"{INPUTS} samples of each seed's input (float64, the model as initialized, eval mode); "
    "λ = s². Dynamical isometry is every λ near its mean, var(λ)/mean(λ)² near 0: on a deep "
    "tanh network near criticality orthogonal weights keep λ concentrated near 1, while "
    "Gaussian weights of the same variance spread it, more with depth (Pennington, Schoenholz "
    "& Ganguli 2017)."
)
COLUMNS = {
    "scheme": "scheme",
    "lambda_mean": "mean λ",
    "norm_var": "var(λ)/mean(λ)²",
    "predicted_norm_var": "predicted",
    "method": "how",
    "prediction": "prediction from",
}


def remember(key: str, found: Spectrum) -> None:
    """Keep `found` for the run `key`, forgetting the least recently used beyond KEEP."""
    session_cache.remember(COMPUTED, key, found, KEEP)


def compute(view: View) -> None:
    """The spectrum of the run, with a spinner; a refusal or failure is said, not raised."""
    with st.spinner("Computing each scheme's Jacobian…"):
        try:
            remember(view.key, spectrum_table(view.exp, inputs=INPUTS))
        except ValueError as exc:  # the guard's refusal names the sizes and the limit
            st.error(md(exc))


def spectrum_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per scheme: mean λ and var(λ)/mean(λ)² averaged over seeds and inputs, the
    prediction beside them, and whether the values are exact or estimated."""
    rows = summary.groupby("scheme", sort=False).agg(
        lambda_mean=("lambda_mean", "mean"),
        norm_var=("norm_var", "mean"),
        predicted_norm_var=("predicted_norm_var", "mean"),
        estimate=("estimate", "any"),
        prediction=("prediction", "first"),
    )
    rows["method"] = [
        "estimate (Lanczos, Hutchinson)" if est else "exact (SVD)" for est in rows["estimate"]
    ]
    rows["prediction"] = [_source(w) for w in rows["prediction"]]
    return rows.reset_index()[[*COLUMNS]].rename(columns=COLUMNS)


def _source(words: str) -> str:
    """'not available: why' stays; the paper's words are shortened for the narrow column."""
    return "free probability" if words.startswith("free probability") else words


def spectrum_table_ui(frame: pd.DataFrame) -> None:
    numbers = {
        name: st.column_config.NumberColumn(name, format="%.3g")
        for name in ("mean λ", "var(λ)/mean(λ)²", "predicted")
    }
    st.dataframe(frame, hide_index=True, key=TABLE, column_config=numbers)


def spectrum_tab(view: View) -> None:
    st.caption(ABOUT)
    if view.input_var is None:
        st.info("This model reads token ids: there is no Jacobian with respect to its input.")
        return
    found = session_cache.cached(COMPUTED, view.key)
    if found is None:  # computed once per run: the same run gives the same spectrum
        slot = st.empty()  # the button goes once clicked: the spinner, then the result
        if not slot.button("Compute spectrum", key=BUTTON, help=COST, type="primary"):
            return
        slot.empty()
        compute(view)
        found = session_cache.cached(COMPUTED, view.key)
        if found is None:  # refused: compute said why
            return
    st.plotly_chart(spectrum_histograms(found.values, found.summary, view.colors), key=FIGURE)
    summary = spectrum_summary(found.summary)
    spectrum_table_ui(summary)
    if summary["predicted"].notna().any():
        st.caption(PREDICTED)


COST = "One Jacobian per scheme, seed and input, in float64: seconds to minutes"
PREDICTED = (
    "predicted: the sum over layers of μ₂/μ₁² − 1 + v_W along the mean-field trajectory, "
    "μₖ = E[φ′(√q z)²ᵏ], v_W = 1 for Gaussian and 0 for orthogonal square weights (free "
    "probability, large width). Where it is not available the reason is in its place."
)
