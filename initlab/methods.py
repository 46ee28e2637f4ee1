"""The method registry: every `torch.nn.init` initializer, plus LeCun, variance scaling and
`default`, each with its declared parameters, accepted tensor ranks, expected std and citation.

This is the single source of truth for validation, the UI's dropdowns and widgets, and code
export. A method is turned into a `Call` (a function name and keyword arguments); applying a
method and exporting it as code both go through that one `Call`, so they cannot drift apart.

Each method's `doc` gives its paper, formula and an example, in the manner of
`torch.nn.init`'s docstrings; `apply_method` initializes one tensor with one method:

>>> w = apply_method(torch.empty(3, 3), "eye")
>>> w.diagonal().tolist()
[1.0, 1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab import initializers
from initlab.gains import (
    ESTIMATED,
    TORCH_GAINS,
    estimated_gain,
    parse_gain,
    resolve_gain,
    split_gain,
)
from initlab.params import Param, check_params, shown

Shape = tuple[int, ...]
Params = dict[str, Any]


SWAPPED_MODE = {"fan_in": "fan_out", "fan_out": "fan_in"}


@dataclass(frozen=True)
class Call:
    """One initializer call: `fn(tensor, **kwargs, generator=generator)`."""

    fn: str  # "nn.init.xavier_normal_" or the name of a function in initlab.initializers
    kwargs: dict[str, Any]
    random: bool = True

    def transposed(self) -> Call:
        """The call for a weight stored (in, out), like Hugging Face's Conv1D: torch reads
        fan_in from dim 1, which there holds the outputs, so fan_in and fan_out swap."""
        kwargs = dict(self.kwargs)
        if kwargs.get("mode") in SWAPPED_MODE:
            kwargs["mode"] = SWAPPED_MODE[kwargs["mode"]]
        return Call(self.fn, kwargs, self.random)

    def run(self, tensor: torch.Tensor, generator: torch.Generator | None) -> None:
        fn = _resolve(self.fn)
        extra = {"generator": generator} if self.random else {}
        fn(tensor, **self.kwargs, **extra)


def _resolve(name: str) -> Callable[..., Any]:
    if name.startswith("nn.init."):
        return getattr(nn.init, name.removeprefix("nn.init."))
    return getattr(initializers, name)


CallFor = Callable[[Shape, Params], Call | None]  # a method's call for a shape and its params


@dataclass(frozen=True)
class Method:
    """One tensor-level initializer and everything initlab knows about it."""

    name: str
    summary: str
    citation: str
    call: CallFor  # None: keep the tensor as it is
    expected_std: Callable[[Shape, Params], float]
    params: tuple[Param, ...] = ()
    min_rank: int = 0
    max_rank: int | None = None
    rank_hint: str = ""
    check: Callable[[Params, str], None] | None = None  # constraints between parameters
    uses_fans: bool = False
    data_dependent: bool = False  # needs the model and a data batch: apply_scheme runs it
    doc: str = ""  # paper, formula and a doctest example, as torch.nn.init's docstrings

    def accepts_rank(self, rank: int) -> bool:
        return rank >= self.min_rank and (self.max_rank is None or rank <= self.max_rank)

    def ranks_text(self) -> str:
        if self.max_rank is None:
            return f">= {self.min_rank}-D" if self.min_rank else "any rank"
        if self.max_rank == self.min_rank:
            return f"{self.min_rank}-D"
        return f"{self.min_rank}- to {self.max_rank}-D"


# ---------------------------------------------------------------- fans and closed forms


def fans(shape: Shape) -> tuple[int, int]:
    """fan_in, fan_out exactly as torch.nn.init computes them (dim 1 is in, dim 0 is out)."""
    if len(shape) < 2:
        raise ValueError("fan_in and fan_out need a tensor with at least 2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: Shape, mode: str) -> float:
    fan_in, fan_out = fans(shape)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


def _bernoulli_std(ones: int, numel: int) -> float:
    """Population std of a tensor holding `ones` ones and zeros elsewhere."""
    p = ones / numel
    return math.sqrt(p * (1 - p))


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _upper_tail(x: float) -> float:
    """P(Z > x) for Z ~ N(0, 1)."""
    return 0.5 * math.erfc(x / math.sqrt(2))


def truncated_normal_std(mean: float, std: float, a: float, b: float) -> float:
    """Std of N(mean, std) truncated to [a, b] (absolute bounds, as in torch.nn.init).

    The mass between the cuts is taken from the upper tail with erfc, which stays accurate
    when both cuts are far out in one tail (erf would cancel to zero there).
    """
    alpha, beta = (a - mean) / std, (b - mean) / std
    if alpha + beta < 0:  # mirror into the upper tail; the std is symmetric
        alpha, beta = -beta, -alpha
    z = _upper_tail(alpha) - _upper_tail(beta)
    if z <= 0.0:  # no mass between the cuts in float64: validation keeps this from happening
        return math.nan
    shift = (alpha * _pdf(alpha) - beta * _pdf(beta)) / z
    centre = (_pdf(alpha) - _pdf(beta)) / z
    return std * math.sqrt(max(1 + shift - centre**2, 0.0))


def kaiming_gain(p: Params) -> float:
    if p["nonlinearity"] in ("gelu", "silu", "elu", "mish"):
        return estimated_gain(p["nonlinearity"])
    return nn.init.calculate_gain(p["nonlinearity"], p["a"])


# ---------------------------------------------------------------- expected stds


def _nan_std(shape: Shape, p: Params) -> float:
    return math.nan  # 'default': the module's own init, which `layers.default_std` knows


def _constant_std(shape: Shape, p: Params) -> float:
    return 0.0


def _uniform_std(shape: Shape, p: Params) -> float:
    return (p["b"] - p["a"]) / 12**0.5


def _normal_std(shape: Shape, p: Params) -> float:
    return p["std"]


def _trunc_normal_std(shape: Shape, p: Params) -> float:
    return truncated_normal_std(p["mean"], p["std"], p["a"], p["b"])


def _eye_std(shape: Shape, p: Params) -> float:
    return _bernoulli_std(min(shape), math.prod(shape))


def _dirac_std(shape: Shape, p: Params) -> float:
    out_per_group = shape[0] // p["groups"]
    return _bernoulli_std(min(out_per_group, shape[1]) * p["groups"], math.prod(shape))


def _xavier_std(shape: Shape, p: Params) -> float:
    fan_in, fan_out = fans(shape)
    return resolve_gain(p["gain"]) * math.sqrt(2.0 / (fan_in + fan_out))


def _kaiming_std(shape: Shape, p: Params) -> float:
    return kaiming_gain(p) / math.sqrt(_fan(shape, p["mode"]))


def _orthogonal_std(shape: Shape, p: Params) -> float:
    rows, cols = shape[0], math.prod(shape[1:])
    return abs(resolve_gain(p["gain"])) * math.sqrt(min(rows, cols) / (rows * cols))


def _sparse_std(shape: Shape, p: Params) -> float:
    zeros = math.ceil(p["sparsity"] * shape[0])
    return p["std"] * math.sqrt(1 - zeros / shape[0])


def _lecun_std(shape: Shape, p: Params) -> float:
    return 1 / math.sqrt(fans(shape)[0])


def _variance_scaling_std(shape: Shape, p: Params) -> float:
    return math.sqrt(p["factor"] / _fan(shape, p["mode"]))


# ---------------------------------------------------------------- calls


def _keep(shape: Shape, p: Params) -> None:
    return None  # 'default' leaves the tensor as the module's reset_parameters() drew it


def _with_params(fn: str, random: bool = True) -> CallFor:
    """A call of `fn` with the method's own parameters, unchanged."""

    def call(shape: Shape, p: Params) -> Call:
        return Call(fn, dict(p), random)

    return call


def _with_gain(fn: str) -> CallFor:
    """A call of `fn` with the gain resolved to a number (a name such as 'tanh' is ours)."""

    def call(shape: Shape, p: Params) -> Call:
        return Call(fn, {"gain": resolve_gain(p["gain"])})

    return call


def _kaiming_call(kind: str) -> CallFor:
    def call(shape: Shape, p: Params) -> Call:
        if p["nonlinearity"] in TORCH_GAINS:
            return Call(f"nn.init.kaiming_{kind}_", dict(p))
        # torch rejects this nonlinearity: the same formula with the estimated gain.
        std = _kaiming_std(shape, p)
        if kind == "normal":
            return Call("nn.init.normal_", {"mean": 0.0, "std": std})
        bound = math.sqrt(3.0) * std
        return Call("nn.init.uniform_", {"a": -bound, "b": bound})

    return call


def _lecun_call(distribution: str) -> CallFor:
    """LeCun init is variance scaling with scale 1 on fan_in (JAX/Keras lecun_*)."""

    def call(shape: Shape, p: Params) -> Call:
        kwargs = {"scale": 1.0, "mode": "fan_in", "distribution": distribution}
        return Call("variance_scaling_", kwargs)

    return call


def _lsuv_call(shape: Shape, p: Params) -> Call:
    """The orthonormal draw LSUV starts from; the rescaling needs data (initlab.lsuv)."""
    return Call("nn.init.orthogonal_", {})  # gain 1


def _variance_scaling_call(shape: Shape, p: Params) -> Call:
    # The spec-level `scale` multiplies any method's result, so Keras's `scale` is `factor` here.
    kwargs = {"scale": p["factor"], "mode": p["mode"], "distribution": p["distribution"]}
    return Call("variance_scaling_", kwargs)


# ---------------------------------------------------------------- constraints between params


def _a_below_b(p: Params, where: str) -> None:
    if not p["a"] < p["b"]:
        raise ValueError(f"{where}: a must be smaller than b; got a={p['a']}, b={p['b']}")


TRUNC_REACH = 3.0  # stds: torch's inverse-CDF sampler is only accurate near the mean


def _trunc_reachable(p: Params, where: str) -> None:
    _a_below_b(p, where)
    low, high = p["a"] - TRUNC_REACH * p["std"], p["b"] + TRUNC_REACH * p["std"]
    if not low <= p["mean"] <= high:
        raise ValueError(
            f"{where}.mean: {p['mean']} is more than {TRUNC_REACH:g} std outside [a, b] = "
            f"[{p['a']}, {p['b']}]; torch's trunc_normal_ cannot sample that, so keep the mean "
            f"within [{low:g}, {high:g}]"
        )


def _dirac_groups(shape: Shape, p: Params) -> str | None:
    if shape[0] % p["groups"]:
        return f"dirac with groups={p['groups']} needs dim 0 ({shape[0]}) divisible by groups"
    return None


# ---------------------------------------------------------------- parameter declarations

MAX_LSUV_ITER = 100  # each iteration is a forward pass: the guard counts them

GAIN = Param("gain", "gain", 1.0, "scale factor: a number or a nonlinearity name")
MODE = Param(
    "mode",
    "choice",
    "fan_in",
    "fan_in keeps forward variance, fan_out backward",
    choices=("fan_in", "fan_out"),
)
NONLINEARITY_CHOICES = (
    *("linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu"),
    *ESTIMATED,  # the gains initlab estimates: gelu, silu, elu, mish
    *("conv1d", "conv2d", "conv3d"),
)
NONLINEARITY = Param(
    "nonlinearity",
    "choice",
    "leaky_relu",
    "activation after this layer (sets the gain)",
    choices=NONLINEARITY_CHOICES,
)
SLOPE = Param("a", "float", 0.0, "negative slope of leaky_relu (used only with leaky_relu)", low=0)
STD = Param("std", "float", 1.0, "standard deviation", low=0)
MEAN = Param("mean", "float", 0.0, "mean")
UNIFORM_PARAMS = (Param("a", "float", 0.0, "lower bound"), Param("b", "float", 1.0, "upper bound"))
TRUNC_NORMAL_PARAMS = (
    MEAN,
    Param("std", "float", 1.0, "std before truncation", low=0, low_open=True),
    Param("a", "float", -2.0, "lower cut (absolute value)"),
    Param("b", "float", 2.0, "upper cut (absolute value)"),
)
SPARSE_PARAMS = (
    Param("sparsity", "float", 0.1, "fraction of zeros per column", low=0, high=1, high_open=True),
    Param("std", "float", 0.01, "std of the non-zeros", low=0),
)
VARIANCE_SCALING_PARAMS = (
    Param("factor", "float", 1.0, "target variance × n (Keras's scale)", low=0, low_open=True),
    Param("mode", "choice", "fan_in", "which fan n is", choices=("fan_in", "fan_out", "fan_avg")),
    Param(
        "distribution",
        "choice",
        "truncated_normal",
        "shape of the distribution",
        choices=("truncated_normal", "normal", "uniform"),
    ),
)

LSUV_PARAMS = (
    Param("tol", "float", 0.1, "stop once |Var(output) - 1| < tol", low=0, low_open=True),
    Param("max_iter", "int", 10, "most rescalings per layer", low=1, high=MAX_LSUV_ITER),
)

FAN_RANK_HINT = (
    "it needs fan_in and fan_out; for biases and norms use zeros, ones, constant, normal or uniform"
)
GLOROT = (
    "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural "
    "networks"
)
HE = "He et al. 2015, Delving Deep into Rectifiers"
MISHKIN = "Mishkin & Matas 2015, All you need is a good init"
SAXE = (
    "Saxe et al. 2013, Exact solutions to the nonlinear dynamics of learning in deep linear "
    "neural networks"
)


# ---------------------------------------------------------------- the registry
# Each doc gives the method's formula and an example that runs as a doctest
# (tests/test_docstrings.py): a seeded generator, and statistics rounded so they print the same.

_ENTRIES = [
    Method(
        name="default",
        summary="keep what the module's own reset_parameters() drew (PyTorch's default)",
        citation="torch.nn modules' reset_parameters",
        call=_keep,
        expected_std=_nan_std,
        doc="""default: leave the tensor as the module's own ``reset_parameters()`` drew it.

        For Linear and Conv weights that is ``kaiming_uniform_(a=√5)``, U(-b, b) with
        b = 1 / √fan_in, so

            std = 1 / √(3 · fan_in)

        The method alone cannot know the module, so its ``expected_std`` is NaN; the params
        table takes it from ``initlab.layers.default_std``.

        >>> w = torch.ones(2, 3)
        >>> apply_method(w, "default").sum().item()
        6.0
        >>> from initlab.layers import default_std
        >>> linear = torch.nn.Linear(128, 256, device="meta")  # shapes only, nothing drawn
        >>> round(default_std(linear, "weight", (256, 128)), 4), round(1 / math.sqrt(3 * 128), 4)
        (0.051, 0.051)
        """,
    ),
    Method(
        name="uniform",
        summary="U(a, b)",
        citation="torch.nn.init.uniform_",
        call=_with_params("nn.init.uniform_"),
        expected_std=_uniform_std,
        params=UNIFORM_PARAMS,
        check=_a_below_b,
        doc="""uniform: every element drawn from U(a, b), as ``torch.nn.init.uniform_``.

            std = (b - a) / √12

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(256, 128), "uniform", a=-0.5, b=0.5, generator=g)
        >>> round(w.std().item(), 3), round(1 / math.sqrt(12), 3)  # sample, formula
        (0.288, 0.289)
        """,
    ),
    Method(
        name="normal",
        summary="N(mean, std²)",
        citation="torch.nn.init.normal_",
        call=_with_params("nn.init.normal_"),
        expected_std=_normal_std,
        params=(MEAN, STD),
        doc="""normal: every element drawn from N(mean, std²), as ``torch.nn.init.normal_``.

            std = std (the parameter itself)

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(256, 128), "normal", std=0.02, generator=g)
        >>> round(w.std().item(), 3)
        0.02
        """,
    ),
    Method(
        name="trunc_normal",
        summary="N(mean, std²) redrawn until inside [a, b]",
        citation="torch.nn.init.trunc_normal_",
        call=_with_params("nn.init.trunc_normal_"),
        expected_std=_trunc_normal_std,
        params=TRUNC_NORMAL_PARAMS,
        check=_trunc_reachable,
        doc="""trunc_normal: N(mean, std²) restricted to [a, b], as ``torch.nn.init.trunc_normal_``.

        a and b are absolute values, not multiples of std: with std = 0.02 the default
        [-2, 2] lies 100 std from the mean and cuts nothing. With α = (a - mean) / std,
        β = (b - mean) / std, φ the standard normal density and Z = Φ(β) - Φ(α):

            std_out = std · √(1 + (α·φ(α) - β·φ(β)) / Z - ((φ(α) - φ(β)) / Z)²)

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(256, 128), "trunc_normal", std=0.02, generator=g)
        >>> round(w.std().item(), 3), w.abs().max().item() < 0.2  # [-2, 2] is far away
        (0.02, True)
        >>> w = apply_method(torch.empty(256, 128), "trunc_normal", generator=g)  # std 1, cut at ±2
        >>> round(w.std().item(), 2), round(truncated_normal_std(0.0, 1.0, -2.0, 2.0), 2)
        (0.88, 0.88)
        """,
    ),
    Method(
        name="constant",
        summary="every element = val",
        citation="torch.nn.init.constant_",
        call=_with_params("nn.init.constant_", random=False),
        expected_std=_constant_std,
        params=(Param("val", "float", 0.0, "the value"),),
        doc="""constant: every element = val, as ``torch.nn.init.constant_``.

            std = 0

        >>> apply_method(torch.empty(2, 3), "constant", val=0.5).tolist()
        [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
        """,
    ),
    Method(
        name="ones",
        summary="every element = 1",
        citation="torch.nn.init.ones_",
        call=_with_params("nn.init.ones_", random=False),
        expected_std=_constant_std,
        doc="""ones: every element = 1, as ``torch.nn.init.ones_`` (a norm's weight).

            std = 0

        >>> apply_method(torch.empty(2, 2), "ones").tolist()
        [[1.0, 1.0], [1.0, 1.0]]
        """,
    ),
    Method(
        name="zeros",
        summary="every element = 0",
        citation="torch.nn.init.zeros_",
        call=_with_params("nn.init.zeros_", random=False),
        expected_std=_constant_std,
        doc="""zeros: every element = 0, as ``torch.nn.init.zeros_`` (a bias).

            std = 0

        >>> apply_method(torch.empty(2, 2), "zeros").tolist()
        [[0.0, 0.0], [0.0, 0.0]]
        """,
    ),
    Method(
        name="eye",
        summary="identity matrix (Linear layers keep their input)",
        citation="torch.nn.init.eye_",
        call=_with_params("nn.init.eye_", random=False),
        expected_std=_eye_std,
        min_rank=2,
        max_rank=2,
        rank_hint="for convolutions use dirac",
        doc="""eye: the identity matrix (2-D only), as ``torch.nn.init.eye_``: a Linear layer
        passes its first min(rows, cols) inputs through. With p the fraction of ones,

            std = √(p · (1 - p)), p = min(rows, cols) / (rows · cols)

        >>> w = apply_method(torch.empty(2, 3), "eye")
        >>> w.tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
        >>> round(w.std(correction=0).item(), 4), round(math.sqrt(1 / 3 * (1 - 1 / 3)), 4)
        (0.4714, 0.4714)
        """,
    ),
    Method(
        name="dirac",
        summary="identity convolution (keeps the input channels)",
        citation="torch.nn.init.dirac_",
        call=_with_params("nn.init.dirac_", random=False),
        expected_std=_dirac_std,
        params=(Param("groups", "int", 1, "number of groups of the convolution", low=1),),
        min_rank=3,
        max_rank=5,
        rank_hint="for Linear weights use eye",
        doc="""dirac: the identity convolution (3- to 5-D), as ``torch.nn.init.dirac_``: output
        channel i of each group has a 1 at its kernel's centre for input channel i, so the
        convolution passes its input channels through. With p the fraction of ones,

            std = √(p · (1 - p)), p = groups · min(out_channels / groups, in_channels) / numel

        >>> w = apply_method(torch.empty(2, 2, 3), "dirac")
        >>> w[:, :, 1].tolist(), w.sum().item()
        ([[1.0, 0.0], [0.0, 1.0]], 2.0)
        >>> round(w.std(correction=0).item(), 4), round(math.sqrt(2 / 12 * (1 - 2 / 12)), 4)
        (0.3727, 0.3727)
        """,
    ),
    Method(
        name="xavier_uniform",
        summary="U(-b, b), b = gain·sqrt(6/(fan_in+fan_out))",
        citation=GLOROT,
        call=_with_gain("nn.init.xavier_uniform_"),
        expected_std=_xavier_std,
        params=(GAIN,),
        min_rank=2,
        rank_hint=FAN_RANK_HINT,
        uses_fans=True,
        doc="""xavier_uniform: U(-b, b) that keeps the variance of both the forward signal and
        the backward gradient on average (Glorot & Bengio 2010), as
        ``torch.nn.init.xavier_uniform_``; the gain may be a nonlinearity name.

            b = gain · √(6 / (fan_in + fan_out)), std = gain · √(2 / (fan_in + fan_out))

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(256, 128), "xavier_uniform", gain="tanh", generator=g)
        >>> round(w.std().item(), 3), round(5 / 3 * math.sqrt(2 / (128 + 256)), 3)
        (0.12, 0.12)
        """,
    ),
    Method(
        name="xavier_normal",
        summary="N(0, gain²·2/(fan_in+fan_out))",
        citation=GLOROT,
        call=_with_gain("nn.init.xavier_normal_"),
        expected_std=_xavier_std,
        params=(GAIN,),
        min_rank=2,
        rank_hint=FAN_RANK_HINT,
        uses_fans=True,
        doc="""xavier_normal: N(0, std²) that keeps the variance of both the forward signal and
        the backward gradient on average (Glorot & Bengio 2010), as
        ``torch.nn.init.xavier_normal_``; the gain may be a nonlinearity name.

            std = gain · √(2 / (fan_in + fan_out))

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(256, 128), "xavier_normal", gain=1.0, generator=g)
        >>> round(w.std().item(), 3), round(math.sqrt(2 / (128 + 256)), 3)
        (0.072, 0.072)
        """,
    ),
    Method(
        name="kaiming_uniform",
        summary="U(-b, b), b = gain·sqrt(3/fan)",
        citation=HE,
        call=_kaiming_call("uniform"),
        expected_std=_kaiming_std,
        params=(SLOPE, MODE, NONLINEARITY),
        min_rank=2,
        rank_hint=FAN_RANK_HINT,
        uses_fans=True,
        doc="""kaiming_uniform: U(-b, b) that keeps the variance through a rectifier (He et al.
        2015), as ``torch.nn.init.kaiming_uniform_``. fan_mode is fan_in (mode='fan_in', the
        forward signal) or fan_out (the backward gradient); gain = calculate_gain(nonlinearity,
        a), √(2 / (1 + a²)) for leaky_relu; gelu, silu, elu and mish get an estimated gain.

            b = gain · √(3 / fan_mode), std = gain / √fan_mode

        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.empty(256, 128)
        >>> w = apply_method(w, "kaiming_uniform", nonlinearity="relu", generator=g)
        >>> round(w.std().item(), 3), round(math.sqrt(2) / math.sqrt(128), 3)
        (0.125, 0.125)
        """,
    ),
    Method(
        name="kaiming_normal",
        summary="N(0, gain²/fan)",
        citation=HE,
        call=_kaiming_call("normal"),
        expected_std=_kaiming_std,
        params=(SLOPE, MODE, NONLINEARITY),
        min_rank=2,
        rank_hint=FAN_RANK_HINT,
        uses_fans=True,
        doc="""kaiming_normal: N(0, std²) that keeps the variance through a rectifier (He et al.
        2015), as ``torch.nn.init.kaiming_normal_``. fan_mode is fan_in (mode='fan_in', the
        forward signal) or fan_out (the backward gradient); gain = calculate_gain(nonlinearity,
        a), √(2 / (1 + a²)) for leaky_relu; gelu, silu, elu and mish get an estimated gain.

            std = gain / √fan_mode

        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.empty(256, 128)
        >>> w = apply_method(w, "kaiming_normal", mode="fan_out", nonlinearity="relu", generator=g)
        >>> round(w.std().item(), 3), round(math.sqrt(2) / math.sqrt(256), 3)
        (0.088, 0.088)
        """,
    ),
    Method(
        name="orthogonal",
        summary="a (semi-)orthogonal matrix times gain",
        citation=SAXE,
        call=_with_gain("nn.init.orthogonal_"),
        expected_std=_orthogonal_std,
        params=(GAIN,),
        min_rank=2,
        rank_hint="it flattens to rows × the rest",
        doc="""orthogonal: a (semi-)orthogonal matrix times gain (Saxe et al. 2013), as
        ``torch.nn.init.orthogonal_``: the tensor, flattened to rows × cols (cols = numel /
        rows), has orthonormal rows or columns, whichever are fewer. Its root mean square is

            std = |gain| · √(min(rows, cols) / (rows · cols))

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(64, 128), "orthogonal", generator=g)
        >>> torch.allclose(w @ w.T, torch.eye(64), atol=1e-5)
        True
        >>> round(w.pow(2).mean().sqrt().item(), 4), round(math.sqrt(64 / (64 * 128)), 4)
        (0.0884, 0.0884)
        """,
    ),
    Method(
        name="lsuv",
        summary="orthonormal, then rescaled until the layer's output has variance 1 on a batch",
        citation=MISHKIN,
        call=_lsuv_call,
        expected_std=_nan_std,
        params=LSUV_PARAMS,
        min_rank=2,
        rank_hint="it rescales a layer's weight (Linear, Conv) by the layer's output",
        data_dependent=True,
        doc="""lsuv: layer-sequential unit variance (Mishkin & Matas 2015, Algorithm 1). The
        weight is drawn orthonormal (``orthogonal_``, gain 1); then, layer by layer in forward
        order, divided by √Var(output) on a data batch until |Var(output) − 1| < tol or
        `max_iter` rescalings (``initlab.lsuv``). The std depends on the data, so
        ``expected_std`` is NaN; it needs a model and a batch, so ``apply_scheme`` runs it.

        >>> from initlab.schemes import Scheme, apply_scheme
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(),
        ...                             torch.nn.Linear(128, 32))
        >>> rule = {"layers": "Linear", "weight": {"method": "lsuv", "tol": 0.01}, "bias": "zeros"}
        >>> scheme = Scheme.from_dict({"name": "LSUV", "rules": [rule]})
        >>> x = torch.randn(256, 64, generator=torch.Generator().manual_seed(1))
        >>> g = torch.Generator().manual_seed(0)
        >>> _ = apply_scheme(model, scheme, generator=g, batch=x)
        >>> [abs(out.var().item() - 1) < 0.01 for out in (model[0](x), model(x))]
        [True, True]
        """,
    ),
    Method(
        name="sparse",
        summary="N(0, std²) with a fraction `sparsity` of each column set to zero",
        citation="Martens 2010, Deep learning via Hessian-free optimization",
        call=_with_params("sparse_"),
        expected_std=_sparse_std,
        params=SPARSE_PARAMS,
        min_rank=2,
        max_rank=2,
        rank_hint="it works on Linear weights",
        doc="""sparse: N(0, std²) with ⌈sparsity · rows⌉ elements of each column set to zero
        (Martens 2010), as ``torch.nn.init.sparse_`` but with the zeros drawn from the
        generator too, so the pattern is reproducible.

            std_out = std · √(1 - ⌈sparsity · rows⌉ / rows)

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(400, 300), "sparse", sparsity=0.25, std=0.1, generator=g)
        >>> (w == 0).sum(dim=0).unique().tolist()
        [100]
        >>> round(w.std().item(), 3), round(0.1 * math.sqrt(1 - 100 / 400), 3)
        (0.087, 0.087)
        """,
    ),
    Method(
        name="lecun_normal",
        summary="truncated normal with std = 1/sqrt(fan_in)",
        citation="LeCun et al. 1998, Efficient BackProp (as in JAX/Keras lecun_normal)",
        call=_lecun_call("truncated_normal"),
        expected_std=_lecun_std,
        min_rank=2,
        rank_hint=FAN_RANK_HINT,
        uses_fans=True,
        doc="""lecun_normal: a truncated normal with variance 1 / fan_in (LeCun et al. 1998), as
        JAX's and Keras's lecun_normal: N(0, s²) cut at ±2s, s = std / 0.8796 (0.8796 is the
        std of N(0, 1) cut at ±2), so that after the cut

            std = 1 / √fan_in

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(256, 128), "lecun_normal", generator=g)
        >>> round(w.std().item(), 3), round(1 / math.sqrt(128), 3)
        (0.088, 0.088)
        """,
    ),
    Method(
        name="lecun_uniform",
        summary="U(-b, b), b = sqrt(3/fan_in)",
        citation="LeCun et al. 1998, Efficient BackProp (as in JAX/Keras lecun_uniform)",
        call=_lecun_call("uniform"),
        expected_std=_lecun_std,
        min_rank=2,
        rank_hint=FAN_RANK_HINT,
        uses_fans=True,
        doc="""lecun_uniform: U(-b, b) with variance 1 / fan_in (LeCun et al. 1998), as JAX's
        and Keras's lecun_uniform.

            b = √(3 / fan_in), std = 1 / √fan_in

        >>> g = torch.Generator().manual_seed(0)
        >>> w = apply_method(torch.empty(256, 128), "lecun_uniform", generator=g)
        >>> round(w.std().item(), 3), round(1 / math.sqrt(128), 3)
        (0.088, 0.088)
        """,
    ),
    Method(
        name="variance_scaling",
        summary="std = sqrt(factor/n), n = fan_in | fan_out | fan_avg",
        citation="Keras/JAX VarianceScaling (its `scale` is `factor` here)",
        call=_variance_scaling_call,
        expected_std=_variance_scaling_std,
        params=VARIANCE_SCALING_PARAMS,
        min_rank=2,
        rank_hint=FAN_RANK_HINT,
        uses_fans=True,
        doc="""variance_scaling: Keras's and JAX's VarianceScaling, whose ``scale`` is called
        ``factor`` here (a rule's ``scale`` multiplies any method). n is fan_in, fan_out or
        (fan_in + fan_out) / 2 (mode='fan_avg'); the distribution is a normal truncated at ±2
        std and rescaled (as lecun_normal), a normal, or U(-√3 · std, √3 · std).

            std = √(factor / n)

        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.empty(256, 128)
        >>> w = apply_method(w, "variance_scaling", factor=2.0, mode="fan_avg", generator=g)
        >>> round(w.std().item(), 3), round(math.sqrt(2.0 / ((128 + 256) / 2)), 3)
        (0.102, 0.102)
        """,
    ),
]

METHODS: dict[str, Method] = {m.name: m for m in _ENTRIES}
# doctest.testmod(initlab.methods) runs every method's examples, not only the functions'.
__test__ = {f"METHODS[{name!r}]": m.doc for name, m in METHODS.items()}

SCALE = Param("scale", "float", 1.0, "multiplies the initialized tensor (e.g. 1/sqrt(2·n_layers))")
# A scale counted from the model itself: 1/sqrt(number of modules the rule matches, in any rule
# order). GPT-2 scales its residual projections by 1/sqrt(2·n_layers), and "*.c_proj" matches
# exactly 2·n_layers modules in GPT-2, nanoGPT and the zoo's transformer.
SCALE_BY_MATCHES = "1/sqrt(matches)"


def scale_for_matches(matches: int) -> float:
    """The number `SCALE_BY_MATCHES` resolves to (generated code uses the same expression)."""
    return 1.0 / math.sqrt(matches)


# ---------------------------------------------------------------- method specs


@dataclass(frozen=True)
class MethodSpec:
    """A method with validated parameters: what a rule gives to a weight or a bias."""

    method: str = "default"
    params: tuple[tuple[str, Any], ...] = field(default=())
    scale: float | str = 1.0  # a number, or SCALE_BY_MATCHES until resolved for a model

    @property
    def counted(self) -> bool:
        """True while the scale is SCALE_BY_MATCHES, i.e. depends on the model."""
        return isinstance(self.scale, str)

    def for_matches(self, matches: int) -> MethodSpec:
        """This spec with a counted scale resolved for a rule matching `matches` modules."""
        if not self.counted:
            return self
        return MethodSpec(self.method, self.params, scale_for_matches(matches))

    @property
    def kwargs(self) -> Params:
        return dict(self.params)

    @property
    def entry(self) -> Method:
        return METHODS[self.method]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, **self.kwargs}
        if self.scale != 1.0:
            out["scale"] = self.scale
        return out

    def label(self) -> str:
        """Short text such as `xavier_normal(gain='tanh')` for tables and legends."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        factor = self.scale if self.counted else f"{self.scale:g}"
        scale = f" × {factor}" if self.scale != 1.0 else ""
        return f"{self.method}({args}){scale}" if args else f"{self.method}{scale}"

    def call(self, shape: Shape) -> Call | None:
        return self.entry.call(shape, self.kwargs)

    def expected_std(self, shape: Shape) -> float:
        if self.counted:
            return math.nan  # unknown until resolved for a model (`for_matches`)
        return abs(self.scale) * self.entry.expected_std(shape, self.kwargs)

    def gain(self) -> float:
        """The numeric gain this spec uses (NaN for methods without one)."""
        kwargs = self.kwargs
        if "gain" in kwargs:
            return resolve_gain(kwargs["gain"])
        if "nonlinearity" in kwargs:
            return kaiming_gain(kwargs)
        return math.nan

    def rank_problem(self, shape: Shape) -> str | None:
        """Why this method cannot initialize a tensor of this shape, or None if it can."""
        m = self.entry
        if not m.accepts_rank(len(shape)):
            hint = f"; {m.rank_hint}" if m.rank_hint else ""
            return f"{m.name} needs a {m.ranks_text()} tensor{hint}"
        if m.name == "dirac":
            return _dirac_groups(shape, self.kwargs)
        return None


def method_names() -> list[str]:
    return list(METHODS)


def parse_method_spec(value: Any, where: str) -> MethodSpec:
    """Validate a method spec from JSON: 'default', a method name, or {'method': ..., params}."""
    if value is None or value == "default":
        return MethodSpec()
    if isinstance(value, str):
        value = {"method": value}
    if not isinstance(value, dict):
        raise ValueError(
            f"{where}: must be a method name or an object with 'method'; got {shown(value)}"
        )
    given = dict(value)
    name = _method_name(given.pop("method", None), where)
    scale = _parse_scale(given.pop("scale", 1.0), f"{where}.scale")
    if name == "default" and scale != 1.0:
        raise ValueError(
            f"{where}.scale: 'default' keeps PyTorch's values untouched, so it "
            "takes no scale; pick a method to scale"
        )
    method = METHODS[name]
    if method.data_dependent and scale != 1.0:
        raise ValueError(
            f"{where}.scale: '{name}' sets the weight's scale from the data, so it takes no "
            "scale; use tol to set how close to variance 1 it stops"
        )
    params = check_params(method.params, given, where, f"method '{name}'")
    if method.check:
        method.check(params, where)
    return MethodSpec(name, tuple(params.items()), scale)


def apply_method(
    tensor: torch.Tensor, method: str, generator: torch.Generator | None = None, **params: Any
) -> torch.Tensor:
    """Initialize `tensor` in place with one method, exactly as a rule would; return it.

    `params` are the method's parameters (and `scale`), validated as in an experiment file.

    >>> g = torch.Generator().manual_seed(0)
    >>> w = apply_method(torch.empty(4, 8), "normal", std=0.5, scale=0.0, generator=g)
    >>> w.abs().max().item()
    0.0
    """
    spec = parse_method_spec({"method": method, **params}, "method")
    if spec.entry.data_dependent:
        raise ValueError(
            f"method: '{spec.method}' rescales a layer by its output on data, so it needs the "
            "model and a batch: apply_scheme(model, scheme, generator, batch=x)"
        )
    if spec.counted:
        raise ValueError(f"method.scale: {SCALE_BY_MATCHES!r} needs a model; give a number")
    shape = tuple(tensor.shape)
    problem = spec.rank_problem(shape)
    if problem is not None:
        raise ValueError(f"method: {problem}; got a tensor of shape {shape}")
    call = spec.call(shape)
    with torch.no_grad():
        if call is not None:
            call.run(tensor, generator)
        if spec.scale != 1.0:
            tensor.mul_(spec.scale)
    return tensor


def _parse_scale(value: Any, where: str) -> float | str:
    if isinstance(value, str) and value.replace(" ", "") == SCALE_BY_MATCHES:
        return SCALE_BY_MATCHES
    try:
        return SCALE.check(value, where)
    except ValueError:
        got = shown(value)
        raise ValueError(f"{where}: must be a number or '{SCALE_BY_MATCHES}'; got {got}") from None


def _method_name(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{where}.method: missing; choose one of: {', '.join(METHODS)}")
    key = name.strip().removesuffix("_")
    if key not in METHODS:
        raise ValueError(
            f"{where}.method: unknown method {shown(name)}; choose one of: {', '.join(METHODS)}"
        )
    return key


def describe_gain(gain: Any) -> str:
    """A gain for display: 'tanh (1.667)' or '2'."""
    value = resolve_gain(parse_gain(gain))
    if isinstance(gain, str):
        name, _ = split_gain(gain)
        return f"{gain} ({value:.4g})" if name else f"{value:.4g}"
    return f"{value:.4g}"
