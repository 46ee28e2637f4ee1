"""The model zoo: name -> builder with declared parameters and the input it expects.

Every builder returns a fresh `nn.Module`; `build_model` seeds PyTorch's global generator
around the construction (and restores it), so a module's own default init is reproducible
without touching the caller's random state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from initlab.params import Param, check_params

Spec = dict[str, Any]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}
# The nonlinearity name (for calculate_gain) of each activation.
GAIN_OF_ACTIVATION = {name: name for name in ACTIVATIONS} | {"identity": "linear"}


@dataclass(frozen=True)
class ModelEntry:
    """One zoo model: how to build it and what it expects as input."""

    name: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[[Spec], nn.Module]
    input_shape: Callable[[Spec], tuple[int, ...]]
    activation: Callable[[Spec], str]  # nonlinearity name for presets' gains
    tokens: Callable[[Spec], int | None] = lambda spec: None  # vocab size for token inputs

    def normalize(self, spec: Spec, where: str = "model") -> Spec:
        """Validate a spec dict (without 'name'); return it with defaults filled in."""
        given = {k: v for k, v in spec.items() if k != "name"}
        if self.name == "mlp":
            given = _mlp_widths(given, where)
        checked = check_params(self.params, given, where, f"model '{self.name}'")
        return {"name": self.name, **checked}


# ---------------------------------------------------------------- mlp


def _mlp_widths(given: Spec, where: str) -> Spec:
    """`widths` (input width first) overrides depth and width; they must agree if given."""
    widths = given.get("widths")
    if widths is None:
        return {k: v for k, v in given.items() if k != "widths"}
    if not isinstance(widths, list | tuple) or len(widths) < 2:
        raise ValueError(f"{where}.widths: must list at least 2 widths (input first); "
                         f"got {widths!r}")  # fmt: skip
    if "depth" in given and given["depth"] != len(widths) - 1:
        raise ValueError(f"{where}.depth: {given['depth']} disagrees with widths, which give "
                         f"{len(widths) - 1} layers; give one or the other")  # fmt: skip
    return {**given, "depth": len(widths) - 1, "width": widths[0]}


def _norm(kind: str, width: int) -> nn.Module | None:
    return {"none": None, "batchnorm": nn.BatchNorm1d(width), "layernorm": nn.LayerNorm(width)}[
        kind
    ]


def build_mlp(spec: Spec) -> nn.Module:
    """depth × [Linear → (norm) → activation], no extra head: the signal-propagation network."""
    widths = list(spec.get("widths") or [spec["width"]] * (spec["depth"] + 1))
    layers: list[tuple[str, nn.Module]] = []
    for i in range(1, len(widths)):
        layers.append((f"fc{i}", nn.Linear(widths[i - 1], widths[i], bias=spec["bias"])))
        norm = _norm(spec["norm"], widths[i])
        if norm is not None:
            layers.append((f"norm{i}", norm))
        layers.append((f"act{i}", ACTIVATIONS[spec["activation"]]()))
    return nn.Sequential(OrderedDict(layers))


MLP_PARAMS = (
    Param("depth", "int", 20, "number of Linear → activation blocks", low=1, high=1000),
    Param("width", "int", 256, "units per layer (and input features)", low=1, high=100_000),
    Param("widths", "ints", None, "per-layer widths, input first (overrides depth and width)",
          low=1, high=100_000),
    Param("activation", "choice", "relu", "activation after every Linear",
          choices=tuple(ACTIVATIONS)),
    Param("bias", "bool", True, "Linear layers have a bias"),
    Param("norm", "choice", "none", "normalization between Linear and activation",
          choices=("none", "batchnorm", "layernorm")),
)  # fmt: skip


# ---------------------------------------------------------------- lenet


class LeNet(nn.Module):
    """The classic recipe's `Net`, layer for layer (CIFAR-10 sized input, functional ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# ---------------------------------------------------------------- the registry

MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(
        "mlp", "depth × [Linear → activation]: the network of the signal-propagation papers",
        MLP_PARAMS, build_mlp, lambda s: (s["widths"][0] if s.get("widths") else s["width"],),
        lambda s: GAIN_OF_ACTIVATION[s["activation"]],
    ),
    "lenet": ModelEntry(
        "lenet", "the recipe's Net: conv 3→6 5×5, pool, conv 6→16 5×5, pool, fc 400→120→84→10",
        (), lambda s: LeNet(), lambda s: (3, 32, 32), lambda s: "relu",
    ),
}  # fmt: skip


def model_entry(spec: Any, where: str = "model") -> ModelEntry:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{where}.name: missing; choose one of: {', '.join(MODELS)}")
    if spec["name"] not in MODELS:
        raise ValueError(f"{where}.name: unknown model '{spec['name']}'; choose one of: "
                         f"{', '.join(MODELS)}")  # fmt: skip
    return MODELS[spec["name"]]


def normalize_model_spec(spec: Any, where: str = "model") -> Spec:
    return model_entry(spec, where).normalize(spec, where)


def build_model(spec: Spec, seed: int | None = None, device: str = "cpu") -> nn.Module:
    """A fresh model from a zoo spec; with `seed`, its default init is reproducible."""
    spec = normalize_model_spec(spec)
    entry = MODELS[spec["name"]]
    if seed is None:
        return entry.build(spec).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return entry.build(spec).to(device)
