"""What the probe sees between modules: functional activations (`F.relu(self.conv1(x))`),
broadcasts (`tok + pos`), and dropout, switched off.

A `torch.overrides.TorchFunctionMode` is active during the probe's forward pass only. Every
torch function call passes through it, so it can record the output of a functional activation
called from a module's own `forward` (LeNet's `F.relu`, nanoGPT's `F.gelu`, Llama's `F.silu`)
without changing the model. Calls inside a leaf module are left to that module's own row (an
`nn.ReLU` calls `F.relu`; Hugging Face's `NewGELUActivation` calls `torch.tanh`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# torch function name (F.relu, torch.relu and Tensor.relu all arrive as "relu") -> the name a
# row gets, and the bounds where a bounded activation counts as saturated.
ACTIVATIONS: dict[str, tuple[str, tuple[float, float] | None]] = {
    "relu": ("relu", None),
    "relu_": ("relu", None),
    "relu6": ("relu6", (0.0, 6.0)),
    "leaky_relu": ("leaky_relu", None),
    "leaky_relu_": ("leaky_relu", None),
    "gelu": ("gelu", None),
    "silu": ("silu", None),
    "mish": ("mish", None),
    "elu": ("elu", None),
    "elu_": ("elu", None),
    "selu": ("selu", None),
    "selu_": ("selu", None),
    "celu": ("celu", None),
    "softplus": ("softplus", None),
    "tanh": ("tanh", (-1.0, 1.0)),
    "tanh_": ("tanh", (-1.0, 1.0)),
    "sigmoid": ("sigmoid", (0.0, 1.0)),
    "sigmoid_": ("sigmoid", (0.0, 1.0)),
    "hardtanh": ("hardtanh", (-1.0, 1.0)),
    "hardtanh_": ("hardtanh", (-1.0, 1.0)),
    "hardsigmoid": ("hardsigmoid", (0.0, 1.0)),
    "hardswish": ("hardswish", None),
    "softsign": ("softsign", (-1.0, 1.0)),
    "softmax": ("softmax", None),
}
DROPOUTS = {
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
}
# Elementwise ops and expansions whose output may be larger than an operand: the operand is
# then used once per copy, and its gradient is the sum over the copies.
BROADCASTS = {
    "add",
    "__add__",
    "__radd__",
    "__iadd__",
    "sub",
    "__sub__",
    "__rsub__",
    "mul",
    "__mul__",
    "__rmul__",
    "div",
    "__truediv__",
    "__rtruediv__",
    "expand",
    "expand_as",
    "broadcast_to",
}

OnActivation = Callable[[str, tuple[float, float] | None, torch.Tensor, Any], None]
OnBroadcast = Callable[[torch.Tensor, int], None]


class Observer(TorchFunctionMode):
    """Calls `on_activation(name, bounds, output, first_arg)` for a functional activation
    outside leaf modules, `on_broadcast(operand, copies)` when an operand is broadcast, and
    turns dropout into the identity unless `dropout` is True."""

    def __init__(
        self,
        in_leaf: Callable[[], bool],
        on_activation: OnActivation,
        on_broadcast: OnBroadcast,
        dropout: bool,
    ) -> None:
        super().__init__()
        self.in_leaf, self.on_activation = in_leaf, on_activation
        self.on_broadcast, self.dropout = on_broadcast, dropout

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if not self.dropout and name in DROPOUTS:
            return args[0] if args else kwargs["input"]
        if not self.dropout and name == "scaled_dot_product_attention":
            args, kwargs = args[:4], {**kwargs, "dropout_p": 0.0, **_sdpa_rest(args)}
        out = func(*args, **kwargs)
        if name in ACTIVATIONS and isinstance(out, torch.Tensor) and not self.in_leaf():
            self.on_activation(*ACTIVATIONS[name], out, args[0] if args else None)
        elif name in BROADCASTS and isinstance(out, torch.Tensor):
            self._broadcasts(args, out)
        return out

    def _broadcasts(self, args: tuple, out: torch.Tensor) -> None:
        for arg in args:
            if isinstance(arg, torch.Tensor) and 0 < arg.numel() < out.numel():
                self.on_broadcast(arg, out.numel() // arg.numel())


SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _sdpa_rest(args: tuple) -> dict[str, Any]:
    """scaled_dot_product_attention's positional arguments after (q, k, v, mask), as keywords,
    without dropout_p (the caller sets it to 0)."""
    rest = dict(zip(SDPA_ARGS[4:], args[4:], strict=False))
    rest.pop("dropout_p", None)
    return rest
