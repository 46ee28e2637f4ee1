"""Gains: a number, or a nonlinearity name resolved the way `torch.nn.init.calculate_gain` does.

torch knows 12 names. For gelu, silu, elu and mish, which it rejects, initlab estimates the gain
once by seeded Monte Carlo with the definition that reproduces torch's relu gain:
``gain = 1 / sqrt(E[f(z)^2])`` for ``z ~ N(0, 1)`` (relu gives sqrt(2), identity 1). The estimate
uses 2**22 float64 samples from a generator seeded with 0, so it is the same on every machine
(standard error about 0.05%).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

TORCH_GAINS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
)
ESTIMATED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "silu": F.silu,
    "elu": F.elu,
    "mish": F.mish,
}
GAIN_NAMES = (*TORCH_GAINS, *ESTIMATED)
MAX_GAIN = 1e30  # a gain (or slope) beyond this overflows float32 weights or calculate_gain
DEFAULT_SLOPE = 0.01  # torch's default negative slope for leaky_relu
_LEAKY = re.compile(r"^leaky_relu\s*[(:]\s*([-+0-9.eE]+)\s*\)?$")


def parse_gain(value: object) -> float | str:
    """Validate a gain: a finite number, a name from GAIN_NAMES, or 'leaky_relu(slope)'."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int | float):
        x = float(value)  # OverflowError for a huge int: the caller reports it as invalid
        if not math.isfinite(x) or x < 0 or x > MAX_GAIN:  # negative breaks xavier's bounds
            raise ValueError(value)
        return x
    if not isinstance(value, str):
        raise TypeError(value)
    name = value.strip().lower()
    if name in GAIN_NAMES:
        return name
    match = _LEAKY.match(name)
    if match is None:
        raise ValueError(value)
    slope = float(match.group(1))
    if not math.isfinite(slope) or abs(slope) > MAX_GAIN:  # calculate_gain squares it
        raise ValueError(value)
    return f"leaky_relu({slope!r})"


def split_gain(gain: str) -> tuple[str, float | None]:
    """'leaky_relu(0.2)' -> ('leaky_relu', 0.2); other names -> (name, None)."""
    match = _LEAKY.match(gain)
    if match:
        return "leaky_relu", float(match.group(1))
    return gain, None


def resolve_gain(gain: float | str) -> float:
    """The numeric gain of a validated gain value."""
    if isinstance(gain, float | int):
        return float(gain)
    name, slope = split_gain(gain)
    if name in ESTIMATED:
        return estimated_gain(name)
    return torch.nn.init.calculate_gain(name, slope)


@functools.cache
def estimated_gain(name: str, samples: int = 2**22, seed: int = 0) -> float:
    """Monte Carlo gain 1/sqrt(E[f(z)^2]) of an activation torch's calculate_gain rejects."""
    fn = ESTIMATED.get(name) or {"relu": F.relu, "linear": lambda z: z}[name]
    z = torch.randn(samples, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    # numpy's pairwise sum is single-threaded: torch's reduction order (and so the last bit
    # of the gain, and of every weight drawn with it) would depend on the thread count.
    second_moment = float(np.mean(fn(z).pow(2).numpy()))
    return 1.0 / math.sqrt(second_moment)
