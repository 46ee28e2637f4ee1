"""A training run's answer in one line per scheme: where its held-out loss ended, whether it
ever left chance, or at which step it diverged. Tables in, words out (no torch)."""

from __future__ import annotations

import math

import pandas as pd

# A final loss above this fraction of the chance loss has not learned anything worth naming.
AT_CHANCE = 0.97


def training_verdicts(
    training: pd.DataFrame, runs: pd.DataFrame, chance: float, floor: float | None = None
) -> dict[str, str]:
    """{scheme: one line}, in the order of the schemes' columns."""
    best = _best_scheme(training, runs, chance)
    out = {}
    for scheme in runs["scheme"].drop_duplicates():
        own = runs[runs["scheme"] == scheme]
        line = _verdict(training[training["scheme"] == scheme], own, chance)
        if scheme == best and runs["scheme"].nunique() > 1:
            line += "; the lowest of the schemes"
        if floor is not None and math.isfinite(floor) and floor > 0 and _finished(own):
            line += f" (best achievable {floor:.3g})"
        out[scheme] = line
    return out


def _finished(runs: pd.DataFrame) -> bool:
    return bool((runs["status"] != "diverged").any())


def _verdict(training: pd.DataFrame, runs: pd.DataFrame, chance: float) -> str:
    diverged = runs[runs["status"] == "diverged"]
    if len(diverged) == len(runs):
        return f"diverged at step {int(diverged['diverged_at'].min())}"
    step, loss, accuracy = _final(training, runs)
    if step is None:
        return "not trained yet"
    words = f"{loss:.3g} at step {step}" + _accuracy_words(accuracy)
    if math.isfinite(chance) and loss >= AT_CHANCE * chance:
        words = f"still at chance: {words} (chance {chance:.3g})"
    else:
        words = f"reaches {words}"
    if (runs["status"] == "stopped").any():
        words = f"stopped: {words}"
    if len(diverged):
        words += f"; diverged in {len(diverged)} of {len(runs)} seeds"
    return words


def _final(training: pd.DataFrame, runs: pd.DataFrame) -> tuple[int | None, float, float]:
    """The last held-out step every surviving seed reached, its mean loss and accuracy."""
    alive = runs.loc[runs["status"] != "diverged", "seed"]
    held = training[(training["split"] == "heldout") & training["seed"].isin(alive)]
    if held.empty:
        return None, math.nan, math.nan
    reached = held.groupby("seed")["step"].max().min()
    at = held[held["step"] == reached]
    return int(reached), float(at["loss"].mean()), float(at["accuracy"].mean())


def _accuracy_words(accuracy: float) -> str:
    return f", {accuracy:.0%} accurate" if math.isfinite(accuracy) else ""


def _best_scheme(training: pd.DataFrame, runs: pd.DataFrame, chance: float) -> str | None:
    """The scheme with the lowest final loss, unless even that one is still at chance."""
    finals = {}
    for scheme in runs["scheme"].drop_duplicates():
        own = runs[runs["scheme"] == scheme]
        if _finished(own):
            step, loss, _ = _final(training[training["scheme"] == scheme], own)
            if step is not None and math.isfinite(loss):
                finals[scheme] = loss
    if not finals:
        return None
    best = min(finals, key=finals.get)
    return None if math.isfinite(chance) and finals[best] >= AT_CHANCE * chance else best
