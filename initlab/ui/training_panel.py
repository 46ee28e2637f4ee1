"""The Training view: a short training run per (scheme, seed), side by side.

Training never starts by itself: editing a scheme or a setting only changes what the Train
button would train. While a job runs (in its own thread, `training_job`), a fragment redraws
the progress bar and the curves about once a second; the rest of the page stays as it is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import streamlit as st

from initlab import plots_training
from initlab.experiment import Experiment
from initlab.training import TrainingResults, task_of, trained_experiment
from initlab.training_words import training_verdicts
from initlab.ui import training_job, training_settings
from initlab.ui.text import chip, describe, md

if TYPE_CHECKING:  # the tab table's View; results_panel imports this module
    from initlab.ui.results_panel import View

POLL_S = 2.0  # how often the progress bar redraws while a job runs (each rerun slows it)
LIVE_CURVES_S = 5.0  # how often the curves do (each redraw slows the training thread)
FLOOR_NOTES = {"tokens": "the chain's entropy rate"}
FAIR = (
    "For a given seed every scheme trains on the same batches in the same order and is "
    "measured on the same held-out set: only the initialization differs."
)


def training_tab(view: View) -> None:
    exp = view.exp
    found, spare = training_settings.settings_ui(exp.model, exp.input.model_dump())
    key = training_job.training_key(exp)
    training_job.harvest()
    with spare:
        running = controls_ui(exp, key, found)
    note_ui(exp)
    job = training_job.job()
    if running:
        live_ui(key, view.colors)
        if job is not None and job.key == key:
            live_curves_ui(key, view.colors)
    if not (running and job is not None and job.key == key):
        done_ui(key, view.colors)


def note_ui(exp: Experiment) -> None:
    """How the task adapts the model (a 10-way output layer, ...), before anything trains."""
    try:
        task = task_of(exp).name
        note = trained_experiment(exp)[1]
    except Exception as exc:  # the trainer says the same when Train is pressed
        st.error(md(describe(exc)))
        return
    if note:
        st.caption(md(f"To train on {task}: {note}."))


def controls_ui(exp: Experiment, key: str, found: dict[str, str]) -> bool:
    """The Train button; True while a job (this experiment's or an earlier one) runs."""
    job = training_job.job()
    busy = job is not None and job.running and job.key == key
    again = training_job.cached(key) is not None
    runs = len(exp.seeds) * len(exp.schemes)
    st.button(
        "Train again" if again else "Train",
        key="train_button",
        type="primary",
        disabled=bool(found) or busy,
        width="stretch",
        help=f"{runs} runs (schemes × seeds), trained side by side. {FAIR}",
        # a callback: the job exists before this run draws, so the button shows it as busy
        on_click=training_job.start,
        args=(exp, key),
    )
    if found:
        st.caption("Fix the settings marked above to train.")
    job = training_job.job()
    return job is not None and job.running


@st.fragment(run_every=POLL_S)
def live_ui(key: str, colors: dict[str, str]) -> None:
    """The running job's progress and Stop button, and this experiment's curves so far."""
    job = training_job.job()
    if job is None or not job.running:
        st.rerun()  # it has ended: the whole view draws its results, or its error
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.progress(min(max(job.fraction, 0.0), 1.0), text=md(f"Training: {job.message}"))
    right.button("Stop", key="train_stop", on_click=job.stop.set, width="stretch")
    if job.key != key:
        st.caption(
            "That is the training of an earlier experiment (its results are kept for it). "
            "Train trains the one on screen and stops it."
        )
        return


@st.fragment(run_every=LIVE_CURVES_S)
def live_curves_ui(key: str, colors: dict[str, str]) -> None:
    """This experiment's verdicts and loss (and accuracy) so far, redrawn less often than the
    progress: every redraw takes the interpreter from the training thread (the ratio and the
    heatmap come when it ends)."""
    job = training_job.job()
    if job is None or not job.running or job.key != key:
        return  # the progress fragment reruns the page when the job ends
    drawn = live_view(job, colors)
    if drawn is None:
        return
    results, (loss, accuracy) = drawn
    verdicts_ui(results, colors)
    st.plotly_chart(loss, key="fig_train_loss")
    if accuracy is not None:
        st.plotly_chart(accuracy, key="fig_train_accuracy")


def done_ui(key: str, colors: dict[str, str]) -> None:
    """This experiment's results, its failure, or what to press."""
    results = training_job.cached(key)
    job = training_job.job()
    if results is not None:
        shown = cached_figures(_signature(key, results, colors), results, colors)
        results_ui(results, shown, colors)
    elif job is not None and job.key == key and job.error is not None:
        st.error(md(job.error))
    else:
        st.info("Press **Train** to train every scheme of this experiment.")


# ---------------------------------------------------------------- what a training shows

Figures = tuple[go.Figure, go.Figure | None, go.Figure, go.Figure]


def results_ui(results: TrainingResults, shown: Figures, colors: dict[str, str]) -> None:
    """One verdict line per scheme; loss (and accuracy), update ratio, activation heatmap."""
    verdicts_ui(results, colors)
    loss, accuracy, ratio, heatmap = shown
    # One under the other: the titles and legends need the whole width at 1280 px, and the
    # ratio and the heatmap have a panel per scheme
    st.plotly_chart(loss, key="fig_train_loss")
    st.caption(FAIR)
    if accuracy is not None:
        st.plotly_chart(accuracy, key="fig_train_accuracy")
    st.plotly_chart(ratio, key="fig_train_ratio")
    st.plotly_chart(heatmap, key="fig_train_heatmap")


def verdicts_ui(results: TrainingResults, colors: dict[str, str]) -> None:
    if results.runs.empty:
        return
    lines = training_verdicts(results.training, results.runs, results.chance, results.floor)
    for scheme, line in lines.items():
        st.markdown(f"{chip(colors.get(scheme))} **{md(scheme)}**: {md(line)}")


def figures(results: TrainingResults, colors: dict[str, str]) -> Figures:
    return (*curves(results, colors), ratio_figure(results), heatmap_figure(results))


def curves(results: TrainingResults, colors: dict[str, str]) -> tuple[go.Figure, go.Figure | None]:
    """Loss (the task's floor and chance as levels) and, where the task has one, accuracy."""
    floor_note = FLOOR_NOTES.get(results.task)
    loss = plots_training.loss_figure(
        results.training, results.floor, results.chance, floor_note, colors=colors
    )
    return loss, plots_training.accuracy_figure(results.training, colors=colors)


def ratio_figure(results: TrainingResults) -> go.Figure:
    return plots_training.update_ratio_figure(results.params)


def heatmap_figure(results: TrainingResults) -> go.Figure:
    return plots_training.activation_heatmap(results.layers, role="weight")


def live_view(
    job: training_job.Job, colors: dict[str, str]
) -> tuple[TrainingResults, tuple[go.Figure, go.Figure | None]] | None:
    """The running job's results and curves; the curves are rebuilt only when the training
    table has grown since they were last drawn."""
    results = job.results()
    if results is None:
        return None
    rows = len(results.training)
    if job.shown.get("rows") != rows:
        job.shown = {"rows": rows, "curves": curves(results, colors)}
    return results, job.shown["curves"]


@st.cache_data(max_entries=16, show_spinner=False)
def cached_figures(signature: str, _results: TrainingResults, _colors: dict[str, str]) -> Figures:
    """A finished training's figures, built once (the signature names its results)."""
    return figures(_results, _colors)


def _signature(key: str, results: TrainingResults, colors: dict[str, str]) -> str:
    """The training key, how far its runs got and the colours: a stopped training and the
    same one run to its end are two sets of figures."""
    runs = results.runs[["scheme", "seed", "status", "steps"]].to_dict("records")
    extra = {"rows": len(results.training), "runs": runs, "colors": colors}
    return key + json.dumps(extra, sort_keys=True, default=str)
