"""The session's one sweep, run in a background thread, and the last few results it left.

The grid's cells run in a local process pool (`initlab.sweep`'s pool executor, `isolated`):
a cell sets PyTorch to one thread while it runs, a process-wide setting, and a page's
sessions are threads of one process, so no cell runs in it. The pool's first start imports
PyTorch in a server process (seconds), and a cell of a deep model takes seconds more, so the
sweep goes on in a thread of its own and the page polls it, as the Training view does. That
thread never calls streamlit: it only sets the job's plain attributes (cells done, the time
left, the results, the error), which the page reads on its reruns.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from initlab.sweep import Sweep, SweepResults, run_sweep
from initlab.ui import session_cache
from initlab.ui.text import describe

JOB = "sweep.job"  # the session's one sweep (a Job)
DONE = "sweep.done"  # sweep key -> SweepResults, the last few (CACHED)
RUNS = "sweep.runs"  # counted for the tests: sweeps started
CACHED = 4  # finished sweeps kept per session (each a table of at most PAGE_CELLS cells)
PAGE_CELLS = 64  # the page's cap: larger grids are the command line's
WORKERS = 4  # processes per sweep at most (a server's sessions share its cores)
JOIN_S = 10.0  # how long a new Run waits for the stopped sweep (it stops within one cell)


def workers() -> int:
    return max(1, min(WORKERS, os.cpu_count() or 1))


@dataclass
class Job:
    """One sweep: validated and run in its own thread; stopped through `stop`."""

    key: str  # the sweep's canonical JSON
    sweep: dict[str, Any]
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    done: int = 0
    total: int = 0
    left: float | None = None  # seconds, once a cell has finished
    results: SweepResults | None = None
    error: str | None = None  # why it failed (a ValueError from the guard, ...), as a sentence
    harvested: bool = False

    def start(self) -> None:
        self.thread = threading.Thread(target=self._work, name="initlab-sweep", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            sweep = Sweep.from_dict(self.sweep, allow_custom=False, max_cells=PAGE_CELLS)
            self.total = len(sweep.cells)
            self.results = run_sweep(
                sweep,
                executor="pool",
                workers=workers(),
                progress=self._progress,
                stop=self.stop.is_set,
                isolated=True,
            )
        except Exception as exc:  # over budget, or the pool itself failed
            self.error = describe(exc)

    def _progress(self, done: int, total: int, left: float | None) -> None:
        self.done, self.total, self.left = done, total, left

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


# ---------------------------------------------------------------- the session's job and cache


def job() -> Job | None:
    return st.session_state.get(JOB)


def cached(key: str) -> SweepResults | None:
    return session_cache.cached(DONE, key)


def remember(key: str, results: SweepResults) -> None:
    session_cache.remember(DONE, key, results, CACHED)


def harvest() -> None:
    """A job that has ended: its results (a stopped one's too) into the cache."""
    current = job()
    if current is None or current.running or current.harvested:
        return
    current.harvested = True
    if current.results is not None:
        remember(current.key, current.results)


def start(sweep: dict[str, Any], key: str) -> None:
    """Run `sweep`; a sweep still running (other settings) is stopped first."""
    old = job()
    if old is not None and old.running:
        old.stop.set()
        if old.thread is not None:
            old.thread.join(JOIN_S)
    harvest()
    new = Job(key, sweep)
    st.session_state[JOB] = new
    st.session_state[RUNS] = st.session_state.get(RUNS, 0) + 1
    new.start()
