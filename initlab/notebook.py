"""Your own model, in memory: compare schemes on a model your code builds, in your process.

`compare(factory, schemes, input)` is `initlab.run` for a model that is not in the zoo: the
factory is a zero-argument callable returning a fresh `nn.Module` (a class, a lambda, a
function), called once per (scheme, seed) under the same seeding as the zoo, so each scheme
starts from the same constructor draws. Nothing is imported by path: it is your own code, so no
opt-in is asked for. The Results are those of `initlab.run`, and plot the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from initlab.experiment import (
    HISTS_OUT,
    LAYERS_OUT,
    PARAMS_OUT,
    Results,
    generator,
    stream_seed,
)
from initlab.gotchas import WarningCollector
from initlab.presets import scheme_from_dict
from initlab.probe import histogram_table, probe
from initlab.rng import seeded_global_rng
from initlab.schemes import Scheme, apply_scheme
from initlab.stats import histogram, summarize

Factory = Callable[[], nn.Module]
SchemeLike = Scheme | str | dict[str, Any]


def compare(
    factory: Factory,
    schemes: Sequence[SchemeLike],
    input: Any,
    seeds: Sequence[int] = (0,),
    backward: bool = True,
    activation: str = "relu",
    bins: int = 64,
    train: bool = True,
) -> Results:
    """Probe a fresh `factory()` per (scheme, seed) with each scheme applied; the Results.

    `schemes`: Schemes, preset keys ("kaiming_normal") or scheme dicts (presets get gains for
    `activation`). `input`: a tensor, a tuple of positional tensors or a dict of keyword
    tensors, given to every run as it is (the weights differ by seed, the input does not).
    """
    resolved = [_scheme(s, i, activation) for i, s in enumerate(schemes)]
    parts: dict[str, list[pd.DataFrame]] = {"layers": [], "params": [], "histograms": []}
    found = WarningCollector()
    for seed in seeds:
        for scheme in resolved:
            collector = found if seed == seeds[0] else None
            one = _run_one(factory, scheme, seed, input, backward, bins, train, collector)
            for key, frame in one.items():
                parts[key].append(frame.assign(scheme=scheme.name, seed=seed))
    return Results(
        _concat(parts["layers"], LAYERS_OUT),
        _concat(parts["params"], PARAMS_OUT),
        _concat(parts["histograms"], HISTS_OUT),
        found.table(),
    )


def build(factory: Factory, seed: int) -> nn.Module:
    """`factory()` with torch's global generator seeded as the zoo's `build_model` seeds it."""
    with seeded_global_rng(stream_seed(seed, "model")):
        model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"factory: returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _scheme(s: SchemeLike, index: int, activation: str) -> Scheme:
    if isinstance(s, Scheme):
        return s
    d = {"preset": s} if isinstance(s, str) else s
    return scheme_from_dict(d, f"schemes.{index}", activation)


def _run_one(
    factory: Factory,
    scheme: Scheme,
    seed: int,
    inputs: Any,
    backward: bool,
    bins: int,
    train: bool,
    found: WarningCollector | None,
) -> dict[str, pd.DataFrame]:
    """One (scheme, seed): as `initlab.experiment`'s run does it for a zoo model."""
    model = build(factory, seed)
    batch = inputs if isinstance(inputs, torch.Tensor) else None  # what LSUV rescales on
    params = apply_scheme(model, scheme, generator(seed, "init"), batch)
    if found is not None:
        found.add(scheme, model)
    weights = _weight_histograms(model, bins)
    measured = {name: summarize(p) for name, p in model.named_parameters()}
    result = probe(model, inputs, backward, generator(seed, "cotangent"), bins, train=train)
    params = params.assign(
        mean=params["param"].map(lambda p: measured[p].mean),
        std=params["param"].map(lambda p: measured[p].std),
        grad_var=params["param"].map(lambda p: result.param_grad_var.get(p, math.nan)),
    )
    histograms = pd.concat([weights, result.histograms], ignore_index=True)
    return {"layers": result.layers, "params": params, "histograms": histograms}


def _weight_histograms(model: nn.Module, bins: int) -> pd.DataFrame:
    hists = []
    for name, p in model.named_parameters():
        if "weight" in name.rsplit(".", 1)[-1] and p.dim() >= 2:
            hists.append(("weight", name, *histogram(p.detach(), bins)))
    return histogram_table(hists)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
