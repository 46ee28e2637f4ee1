"""The session's one training, run in a background thread, and the results it left.

The page must stay responsive while every (scheme, seed) trains, so `Trainer.run` goes on in a
thread of its own. That thread never calls streamlit: it only sets the job's plain attributes
(progress, error); the page reads them, and `Trainer.results()` (thread-safe), on its reruns.
When a job has ended, the next rerun moves its results into a small per-session cache keyed on
the experiment as trained, so switching tabs or the display never trains again.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from initlab.experiment import Experiment
from initlab.training import Trainer, TrainingResults, task_of, training_of
from initlab.ui import keys, session_cache
from initlab.ui.text import describe

CACHED = 4  # finished trainings kept per session (each a few small DataFrames)
JOIN_S = 10.0  # how long a new Train waits for the stopped job (it stops within one step)


def training_key(exp: Experiment) -> str:
    """What a training's results depend on: the experiment with its `training` section as it
    is run (defaults filled in, the task named), so an absent section and the same defaults
    written out are one training."""
    spec = exp.to_dict()
    training = training_of(exp)
    spec["training"] = training.model_dump(mode="json", exclude_none=True) | {
        "task": task_of(exp).name,
        "optimizer": {"name": training.optimizer.name, **training.optimizer.settings()},
        "record_at": list(training.records()),
    }
    return json.dumps(spec, sort_keys=True)


@dataclass
class Job:
    """One training: built and run in its own thread; stopped through `stop`."""

    key: str  # training_key of the experiment it trains
    exp: Experiment
    stop: threading.Event = field(default_factory=threading.Event)
    trainer: Trainer | None = None
    thread: threading.Thread | None = None
    error: str | None = None  # why it failed (a ValueError from the guard, ...), as a sentence
    fraction: float = 0.0
    message: str = "building the models and the task's data"
    harvested: bool = False
    # What the page last drew of it while it ran (the page's memory; the thread never
    # touches it)
    shown: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._work, name="initlab-training", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:  # the models, the data and the guard's estimate take a while: built here too
            self.trainer = Trainer(self.exp)
            self.message = "step 0"
            self.trainer.run(progress=self._progress, stop=self.stop.is_set)
        except Exception as exc:  # over budget, a model the task can't take, or a failure
            self.error = describe(exc)

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def results(self) -> TrainingResults | None:
        """The tables so far (None before the trainer is built)."""
        trainer = self.trainer
        return None if trainer is None else trainer.results()


# ---------------------------------------------------------------- the session's job and cache


def job() -> Job | None:
    return st.session_state.get(keys.TRAINING_JOB)


def cached(key: str) -> TrainingResults | None:
    return session_cache.cached(keys.TRAINED, key)


def remember(key: str, results: TrainingResults) -> None:
    session_cache.remember(keys.TRAINED, key, results, CACHED)


def harvest() -> None:
    """A job that has ended: its results into the cache, its models let go."""
    current = job()
    if current is None or current.running or current.harvested:
        return
    current.harvested = True
    results = current.results() if current.error is None else None
    if results is not None:
        remember(current.key, results)
    current.trainer = None  # every run's model and optimizer state


def start(exp: Experiment, key: str) -> None:
    """Train `exp`; a job still running (another experiment's) is stopped first."""
    old = job()
    if old is not None and old.running:
        old.stop.set()
        if old.thread is not None:
            old.thread.join(JOIN_S)
    harvest()
    new = Job(key, exp)
    st.session_state[keys.TRAINING_JOB] = new
    st.session_state[keys.TRAININGS_RUN] = st.session_state.get(keys.TRAININGS_RUN, 0) + 1
    new.start()
