"""The one-line verdict per scheme of a training run, on small tables built in the test."""

from __future__ import annotations

import math

import pandas as pd

from initlab.training import RUNS_COLUMNS, TRAINING_COLUMNS
from initlab.training_words import training_verdicts


def tables(finals: dict[str, list[float]], statuses: dict[str, list[str]] | None = None):
    rows, runs = [], []
    for scheme, losses in finals.items():
        for seed, loss in enumerate(losses):
            status = (statuses or {}).get(scheme, ["finished"] * len(losses))[seed]
            rows.append((scheme, seed, 0, "heldout", 2.3, 0.1, -1))
            if status != "diverged":
                rows.append((scheme, seed, 100, "heldout", loss, 0.9, -1))
            at = 7 if status == "diverged" else math.nan
            runs.append((scheme, seed, status, 7 if status == "diverged" else 100, at, loss))
    return pd.DataFrame(rows, columns=TRAINING_COLUMNS), pd.DataFrame(runs, columns=RUNS_COLUMNS)


def test_the_lowest_learner_is_named_and_chance_is_said() -> None:
    training, runs = tables({"a": [0.3, 0.5], "b": [2.29, 2.31]})
    words = training_verdicts(training, runs, chance=2.30)
    assert words["a"] == "reaches 0.4 at step 100, 90% accurate; the lowest of the schemes"
    assert words["b"].startswith("still at chance: 2.3 at step 100") and "lowest" not in words["b"]


def test_nobody_is_the_lowest_when_every_scheme_is_at_chance() -> None:
    training, runs = tables({"a": [2.3], "b": [2.31]})
    assert not any("lowest" in w for w in training_verdicts(training, runs, 2.30).values())


def test_divergence_is_a_verdict_with_its_step() -> None:
    statuses = {"b": ["diverged", "diverged"], "c": ["finished", "diverged"]}
    training, runs = tables({"a": [0.5, 0.5], "b": [0, 0], "c": [0.6, 0]}, statuses)
    words = training_verdicts(training, runs, chance=2.30)
    assert words["b"] == "diverged at step 7"
    assert words["c"].endswith("diverged in 1 of 2 seeds") and "0.6 at step 100" in words["c"]


def test_a_positive_floor_is_named_and_a_zero_floor_is_not() -> None:
    training, runs = tables({"a": [1.3]})
    assert "(best achievable 1.25)" in training_verdicts(training, runs, 3.0, floor=1.25)["a"]
    assert "best achievable" not in training_verdicts(training, runs, 3.0, floor=0.0)["a"]
