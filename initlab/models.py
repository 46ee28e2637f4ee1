"""The model zoo: name -> builder with declared parameters and the input it expects.

Every builder returns a fresh `nn.Module`; `build_model` seeds PyTorch's global generator
around the construction (and restores it), under one process-wide lock (`initlab.rng`), so a
module's own default init is reproducible, the same in every thread, and leaves the caller's
random state alone.

`hf` builds a Hugging Face architecture (`initlab.architectures`) by name from its config
class: no weights and no network, and `transformers` is imported only when one is built.

Zoo models use torchvision's and GPT-2's module names (`layer1.0.bn2`, `h.0.attn.c_proj`), so
a scheme written by name for the zoo also works on those models in the wild. `custom` imports
the user's own factory; it runs their code, so it is refused unless explicitly enabled.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from initlab import architectures
from initlab.params import Param, check_params, shown
from initlab.rng import seeded_global_rng

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
    prepare: Callable[[Spec, str], Spec] | None = None  # rewrites given fields before checks
    check: Callable[[Spec, str], None] | None = None  # constraints between parameters
    custom: bool = False  # imports and runs the user's code: refused unless enabled
    # Replaces the check of `params` where fields depend on another field (an architecture's)
    validate: Callable[[Spec, str], Spec] | None = None

    def normalize(self, spec: Spec, where: str = "model", allow_custom: bool = False) -> Spec:
        """Validate a spec dict; return it with defaults filled in."""
        given = {k: v for k, v in spec.items() if k != "name"}
        if self.custom:
            return _normalize_custom(given, where, allow_custom)
        if self.validate is not None:
            return self.validate(given, where)
        if self.prepare is not None:
            given = self.prepare(given, where)
        checked = check_params(self.params, given, where, f"model '{self.name}'")
        if self.check is not None:
            self.check(checked, where)
        return {"name": self.name, **checked}


# ---------------------------------------------------------------- mlp


MAX_MLP_DEPTH = 1000


def _mlp_widths(given: Spec, where: str) -> Spec:
    """`widths` (input width first) overrides depth and width; they must agree if given."""
    widths = given.get("widths")
    if widths is None:
        return {k: v for k, v in given.items() if k != "widths"}
    if not isinstance(widths, list | tuple) or not 2 <= len(widths) <= MAX_MLP_DEPTH + 1:
        raise ValueError(
            f"{where}.widths: must list 2 to {MAX_MLP_DEPTH + 1} widths (input "
            f"first); got {shown(widths)}"
        )
    widths = _param("mlp", "widths").check(list(widths), f"{where}.widths")
    for field, implied in (("depth", len(widths) - 1), ("width", widths[0])):
        if field in given and given[field] != implied:
            raise ValueError(
                f"{where}.{field}: {shown(given[field])} disagrees with widths, "
                f"which give {implied}; give one or the other"
            )
    return {**given, "widths": list(widths), "depth": len(widths) - 1, "width": widths[0]}


def _param(model: str, name: str) -> Param:
    return next(p for p in MODELS[model].params if p.name == name)


NORMS: dict[str, Callable[[int], nn.Module | None]] = {
    "none": lambda width: None,
    "batchnorm": nn.BatchNorm1d,
    "layernorm": nn.LayerNorm,
}


def build_mlp(spec: Spec) -> nn.Module:
    """depth × [Linear → (norm) → activation], no extra head: the signal-propagation network.

    With `head`, the last Linear is an output layer (no norm or activation after it), as a
    training task needs: logits and regression targets take any sign.
    """
    widths = list(spec.get("widths") or [spec["width"]] * (spec["depth"] + 1))
    layers: list[tuple[str, nn.Module]] = []
    for i in range(1, len(widths)):
        layers.append((f"fc{i}", nn.Linear(widths[i - 1], widths[i], bias=spec["bias"])))
        if spec.get("head") and i == len(widths) - 1:
            break
        norm = NORMS[spec["norm"]](widths[i])
        if norm is not None:
            layers.append((f"norm{i}", norm))
        layers.append((f"act{i}", ACTIVATIONS[spec["activation"]]()))
    return nn.Sequential(OrderedDict(layers))


MLP_PARAMS = (
    Param("depth", "int", 20, "number of Linear → activation blocks", low=1, high=1000),
    Param("width", "int", 256, "units per layer (and input features)", low=1, high=100_000),
    Param(
        "widths",
        "ints",
        None,
        "per-layer widths, input first (overrides depth and width)",
        low=1,
        high=100_000,
    ),
    Param(
        "activation", "choice", "relu", "activation after every Linear", choices=tuple(ACTIVATIONS)
    ),
    # No bias by default: the network of the signal-propagation papers (a bias sets a floor
    # under the variance that hides how the weights alone propagate the signal).
    Param("bias", "bool", False, "Linear layers have a bias"),
    Param(
        "norm",
        "choice",
        "none",
        "normalization between Linear and activation",
        choices=tuple(NORMS),
    ),
    Param("head", "bool", False, "the last Linear is an output layer: no activation after it"),
)


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


# ---------------------------------------------------------------- cnn


def build_cnn(spec: Spec) -> nn.Module:
    """depth × [Conv 3×3 → (BatchNorm) → activation], then global average pool and a Linear head.

    Flat names at the top level (`conv1`, `bn1`, `act1`, ...): a plain stack has no residual
    blocks, so name globs meant for them (`*.bn2`) must not match here.
    """
    layers: list[tuple[str, nn.Module]] = []
    channels, bn = spec["channels"], spec["batchnorm"]
    for i in range(1, spec["depth"] + 1):
        # Bias is redundant in front of BatchNorm, which subtracts the mean anyway.
        layers.append(
            (f"conv{i}", nn.Conv2d(3 if i == 1 else channels, channels, 3, padding=1, bias=not bn))
        )
        if bn:
            layers.append((f"bn{i}", nn.BatchNorm2d(channels)))
        layers.append((f"act{i}", ACTIVATIONS[spec["activation"]]()))
    layers += [
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(channels, NUM_CLASSES)),
    ]
    return nn.Sequential(OrderedDict(layers))


NUM_CLASSES = 10
IMAGE_SIZE = Param("image_size", "int", 32, "height and width of the RGB input", low=4, high=1024)
CNN_PARAMS = (
    Param("depth", "int", 8, "number of 3×3 conv layers", low=1, high=200),
    Param("channels", "int", 16, "channels of every conv layer", low=1, high=2048),
    Param(
        "activation", "choice", "relu", "activation after every conv", choices=tuple(ACTIVATIONS)
    ),
    Param("batchnorm", "bool", False, "BatchNorm between conv and activation"),
    IMAGE_SIZE,
)


# ---------------------------------------------------------------- resnet


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv3×3 → bn → relu → conv3×3 → bn, plus the shortcut, → relu.

    One `relu` module is called twice per block, as in torchvision (the probe sees two calls).
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()  # not inplace: the probe keeps hooks on outputs
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """A CIFAR-style ResNet with torchvision's names: stem `conv1/bn1/relu`, stages
    `layer{i}.{j}` of BasicBlocks (width doubling, stride 2 from the second stage), `fc` head."""

    def __init__(self, stages: int, blocks: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        cin = width
        for i in range(stages):
            cout = width * 2**i
            stride = 1 if i == 0 else 2
            stage = [
                BasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1)
                for j in range(blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, NUM_CLASSES)
        self.stages = stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


RESNET_PARAMS = (
    Param(
        "stages",
        "int",
        3,
        "stages; each doubles the width and halves the resolution",
        low=1,
        high=6,
    ),
    Param("blocks", "int", 2, "residual blocks per stage", low=1, high=100),
    Param("width", "int", 16, "channels of the stem and the first stage", low=1, high=512),
    IMAGE_SIZE,
)


# ---------------------------------------------------------------- transformer


class SelfAttention(nn.Module):
    """Causal multi-head self-attention: `c_attn` (d → 3d), SDPA, `c_proj` (d → d)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)  # a residual projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """`c_fc` (d → 4d) → gelu → `c_proj` (4d → d)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)  # a residual projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A GPT-2 / nanoGPT-shaped decoder with their module names, so name-based schemes written
    for those (such as the gpt2 preset's `*.c_proj`) apply unchanged."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        d = spec["d_model"]
        self.wte = nn.Embedding(spec["vocab_size"], d)
        self.wpe = nn.Embedding(spec["seq_len"], d)
        self.h = nn.ModuleList(Block(d, spec["n_heads"]) for _ in range(spec["n_layers"]))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, spec["vocab_size"], bias=False)
        if spec["tie_weights"]:
            self.lm_head.weight = self.wte.weight  # as GPT-2: initialized once, as wte

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _check_heads(spec: Spec, where: str) -> None:
    if spec["d_model"] % spec["n_heads"]:
        raise ValueError(
            f"{where}.n_heads: must divide d_model ({spec['d_model']}), so each "
            f"head gets d_model/n_heads dims; got {spec['n_heads']}"
        )


TRANSFORMER_PARAMS = (
    Param("n_layers", "int", 4, "transformer blocks", low=1, high=48),
    Param("d_model", "int", 128, "width of the residual stream", low=8, high=4096),
    Param("n_heads", "int", 4, "attention heads (must divide d_model)", low=1, high=128),
    Param("vocab_size", "int", 1000, "token vocabulary", low=2, high=262_144),
    Param("seq_len", "int", 32, "tokens per sample (and learned positions)", low=1, high=8192),
    Param("tie_weights", "bool", True, "lm_head shares the token embedding's weight (GPT-2)"),
)


# ---------------------------------------------------------------- custom (the user's own code)

# ---------------------------------------------------------------- rnn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Recurrent(nn.Module):
    """A stacked recurrent network over a sequence and a Linear head on every step.

    torch keeps each layer's input weights (`weight_ih_l{k}`) apart from its recurrent ones
    (`weight_hh_l{k}`), which is what the orthogonal-recurrent recipe initializes differently.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.rnn = CELLS[cell](input_size, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # the hidden state of every step; the final states are not used
        return self.head(out)


def build_rnn(spec: Spec) -> nn.Module:
    return Recurrent(spec["cell"], spec["input_size"], spec["hidden"], spec["layers"])


RNN_PARAMS = (
    Param("cell", "choice", "lstm", "the recurrent cell", choices=tuple(CELLS)),
    Param("layers", "int", 2, "stacked recurrent layers", low=1, high=32),
    Param("hidden", "int", 128, "hidden size of every layer", low=1, high=4096),
    Param("input_size", "int", 32, "features of each step of the input", low=1, high=4096),
    Param("seq_len", "int", 32, "steps of the input sequence", low=1, high=4096),
)


ALLOW_ENV = "INITLAB_ALLOW_CUSTOM_MODELS"
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
CUSTOM_PARAMS = (
    Param(
        "activation",
        "choice",
        "relu",
        "the model's main activation (sets presets' gains)",
        choices=tuple(ACTIVATIONS),
    ),
)


def custom_allowed(allow: bool | None = None) -> bool:
    """An explicit choice wins; None reads INITLAB_ALLOW_CUSTOM_MODELS=1 from the environment.

    There is deliberately no module-level switch: permission is passed from the boundary (CLI
    flag, the caller's argument, the environment) to the one place that imports user code.
    """
    if allow is not None:
        return allow
    return os.environ.get(ALLOW_ENV, "").strip() == "1"


def _refusal(given: Spec, where: str) -> ValueError:
    factory = given.get("factory")
    what = f" ({shown(factory)})" if isinstance(factory, str) else ""  # quoted, escaped, short
    return ValueError(
        f"{where}.name: a custom model{what} imports and runs your own code, so it is off by "
        f"default; enable it with the CLI flag --allow-custom-models, the environment variable "
        f"{ALLOW_ENV}=1, or allow_custom=True in Python"
    )


def import_factory(path: str, where: str = "model") -> Callable[..., Any]:
    """The callable named by 'package.module:attr' (attr may be dotted, e.g. 'Class.create')."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # the user's module may raise anything while importing
        raise ValueError(
            f"{where}.factory: cannot import '{path}': {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(obj):
        raise ValueError(f"{where}.factory: '{path}' is a {type(obj).__name__}, not a callable")
    return obj


def _normalize_custom(given: Spec, where: str, allow: bool) -> Spec:
    """Refuse unless allowed; check the factory path and kwargs; import it so typos fail now."""
    if not allow:
        raise _refusal(given, where)
    factory = given.get("factory")
    if not isinstance(factory, str) or not _FACTORY.fullmatch(factory):
        raise ValueError(
            f"{where}.factory: must be 'package.module:callable'; got {shown(factory)}"
        )
    kwargs = given.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(
            f"{where}.kwargs: must be an object of keyword arguments for the "
            f"factory; got {shown(kwargs)}"
        )
    import_factory(factory, where)
    rest = {k: v for k, v in given.items() if k not in ("factory", "kwargs")}
    checked = check_params(CUSTOM_PARAMS, rest, where, "model 'custom'")
    return {"name": "custom", "factory": factory, "kwargs": dict(kwargs), **checked}


def build_custom(spec: Spec) -> nn.Module:
    """Call the user's factory with its kwargs; whatever it raises is named in a ValueError."""
    factory = import_factory(spec["factory"])
    try:
        model = factory(**spec["kwargs"])
    except Exception as exc:
        raise ValueError(
            f"model.factory: '{spec['factory']}' raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model.factory: '{spec['factory']}' returned a "
            f"{type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _custom_input_shape(spec: Spec) -> tuple[int, ...]:
    raise ValueError(
        "input.shape: a custom model must declare its per-sample input shape, "
        "e.g. [3, 32, 32], or [seq_len] with input.distribution 'tokens'"
    )


# ---------------------------------------------------------------- the registry


def _gain(spec: Spec) -> str:
    return GAIN_OF_ACTIVATION[spec["activation"]]


def _image(spec: Spec) -> tuple[int, ...]:
    return (3, spec["image_size"], spec["image_size"])


def _mlp_input(spec: Spec) -> tuple[int, ...]:
    """One sample is a vector of the first layer's width (`widths[0]` when widths are given)."""
    return (spec["widths"][0] if spec.get("widths") else spec["width"],)


def build_resnet(spec: Spec) -> nn.Module:
    return ResNet(spec["stages"], spec["blocks"], spec["width"])


CUSTOM_SUMMARY = (
    'your own nn.Module from "factory": "package.module:callable" (+ "kwargs"); '
    "needs input.shape; runs your code, so only with --allow-custom-models"
)


def _arch(spec: Spec) -> architectures.Architecture:
    return architectures.ARCHITECTURES[spec["architecture"]]


def _hf_tokens(spec: Spec) -> int | None:
    return spec["vocab_size"] if _arch(spec).input == "tokens" else None


HF_PARAMS = (
    Param(
        "architecture",
        "choice",
        "gpt2",
        "the Hugging Face architecture; its own config fields follow",
        choices=tuple(architectures.ARCHITECTURES),
    ),
)
HF_SUMMARY = (
    "a Hugging Face architecture built by name from its config class (no weights, no "
    "network): " + ", ".join(architectures.ARCHITECTURES)
)


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(
        name="mlp",
        summary="depth × [Linear → activation]: the network of the signal-propagation papers",
        params=MLP_PARAMS,
        build=build_mlp,
        input_shape=_mlp_input,
        activation=_gain,
        prepare=_mlp_widths,
    ),
    "lenet": ModelEntry(
        name="lenet",
        summary="the recipe's Net: conv 3→6 5×5, pool, conv 6→16 5×5, pool, fc 400→120→84→10",
        params=(),
        build=lambda spec: LeNet(),
        input_shape=lambda spec: (3, 32, 32),
        activation=lambda spec: "relu",
    ),
    "cnn": ModelEntry(
        name="cnn",
        summary="plain VGG-style stack: depth × [conv 3×3 → (BatchNorm) → activation], pool, fc",
        params=CNN_PARAMS,
        build=build_cnn,
        input_shape=_image,
        activation=_gain,
    ),
    "resnet": ModelEntry(
        name="resnet",
        summary="CIFAR-style ResNet of BasicBlocks with BatchNorm (torchvision's names)",
        params=RESNET_PARAMS,
        build=build_resnet,
        input_shape=_image,
        activation=lambda spec: "relu",
    ),
    "transformer": ModelEntry(
        name="transformer",
        summary="pre-LN GPT-style decoder (nanoGPT/GPT-2 names) on random token ids",
        params=TRANSFORMER_PARAMS,
        build=Transformer,
        input_shape=lambda spec: (spec["seq_len"],),
        activation=lambda spec: "gelu",
        tokens=lambda spec: spec["vocab_size"],
        check=_check_heads,
    ),
    "rnn": ModelEntry(
        name="rnn",
        summary="stacked LSTM / GRU / RNN over a sequence, a Linear head on every step",
        params=RNN_PARAMS,
        build=build_rnn,
        input_shape=lambda spec: (spec["seq_len"], spec["input_size"]),
        activation=lambda spec: "tanh",  # the cells' own nonlinearity (and sigmoid gates)
    ),
    "hf": ModelEntry(
        name="hf",
        summary=HF_SUMMARY,
        params=HF_PARAMS,
        build=architectures.build,
        input_shape=lambda spec: _arch(spec).input_shape(spec),
        activation=lambda spec: _arch(spec).activation,
        tokens=_hf_tokens,
        validate=architectures.normalize,
    ),
    "custom": ModelEntry(
        name="custom",
        summary=CUSTOM_SUMMARY,
        params=CUSTOM_PARAMS,
        build=build_custom,
        input_shape=_custom_input_shape,
        activation=_gain,
        custom=True,
    ),
}


def model_entry(spec: Any, where: str = "model") -> ModelEntry:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{where}.name: missing; choose one of: {', '.join(MODELS)}")
    if spec["name"] not in MODELS:
        raise ValueError(
            f"{where}.name: unknown model {shown(spec['name'])}; choose one of: {', '.join(MODELS)}"
        )
    return MODELS[spec["name"]]


def normalize_model_spec(spec: Any, where: str = "model", allow_custom: bool | None = None) -> Spec:
    """Validate a model spec; `allow_custom` None reads INITLAB_ALLOW_CUSTOM_MODELS."""
    return model_entry(spec, where).normalize(spec, where, custom_allowed(allow_custom))


def build_model(
    spec: Spec, seed: int | None = None, device: str = "cpu", allow_custom: bool | None = None
) -> nn.Module:
    """A fresh model from a zoo spec; with `seed`, its default init is reproducible.

    A `custom` spec imports and runs the user's factory, so it needs `allow_custom=True` (or
    INITLAB_ALLOW_CUSTOM_MODELS=1).
    """
    spec = normalize_model_spec(spec, allow_custom=allow_custom)
    entry = MODELS[spec["name"]]
    if seed is None:
        return moved(entry.build(spec), torch.device(device))
    with seeded_global_rng(seed):
        return moved(entry.build(spec), torch.device(device))


def moved(model: nn.Module, device: torch.device) -> nn.Module:
    """`model.to(device)`, skipped where every parameter and buffer is there already: Module.to
    walks every module and tensor even when nothing moves (~0.5 ms a 20-layer MLP)."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return model if all(t.device == device for t in tensors) else model.to(device)
