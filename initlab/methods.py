"""The method registry: every `torch.nn.init` initializer, plus LeCun, variance scaling and
`default`, each with its declared parameters, accepted tensor ranks, expected std and citation.

This is the single source of truth for validation, the UI's dropdowns and widgets, and code
export. A method is turned into a `Call` (a function name and keyword arguments); applying a
method and exporting it as code both go through that one `Call`, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab import initializers
from initlab.gains import TORCH_GAINS, estimated_gain, parse_gain, resolve_gain, split_gain
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


@dataclass(frozen=True)
class Method:
    """One tensor-level initializer and everything initlab knows about it."""

    name: str
    summary: str
    citation: str
    call: Callable[[Shape, Params], Call | None]  # None: keep the tensor as it is
    expected_std: Callable[[Shape, Params], float]
    params: tuple[Param, ...] = ()
    min_rank: int = 0
    max_rank: int | None = None
    rank_hint: str = ""
    check: Callable[[Params, str], None] | None = None  # constraints between parameters
    uses_fans: bool = False

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


def truncated_normal_std(mean: float, std: float, a: float, b: float) -> float:
    """Std of N(mean, std) truncated to [a, b] (absolute bounds, as in torch.nn.init).

    The mass between the cuts is taken from the upper tail with erfc, which stays accurate
    when both cuts are far out in one tail (erf would cancel to zero there).
    """
    alpha, beta = (a - mean) / std, (b - mean) / std
    if alpha + beta < 0:  # mirror into the upper tail; the std is symmetric
        alpha, beta = -beta, -alpha
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    tail = lambda x: 0.5 * math.erfc(x / math.sqrt(2))  # P(Z > x)  # noqa: E731
    z = tail(alpha) - tail(beta)
    if z <= 0.0:  # no mass between the cuts in float64: validation keeps this from happening
        return math.nan
    shift = (alpha * pdf(alpha) - beta * pdf(beta)) / z
    centre = (pdf(alpha) - pdf(beta)) / z
    return std * math.sqrt(max(1 + shift - centre**2, 0.0))


def kaiming_gain(p: Params) -> float:
    if p["nonlinearity"] in ("gelu", "silu", "elu", "mish"):
        return estimated_gain(p["nonlinearity"])
    return nn.init.calculate_gain(p["nonlinearity"], p["a"])


def _kaiming_std(shape: Shape, p: Params) -> float:
    return kaiming_gain(p) / math.sqrt(_fan(shape, p["mode"]))


def _kaiming_call(kind: str) -> Callable[[Shape, Params], Call]:
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


def _xavier_std(shape: Shape, p: Params) -> float:
    fan_in, fan_out = fans(shape)
    return resolve_gain(p["gain"]) * math.sqrt(2.0 / (fan_in + fan_out))


def _orthogonal_std(shape: Shape, p: Params) -> float:
    rows, cols = shape[0], math.prod(shape[1:])
    return abs(resolve_gain(p["gain"])) * math.sqrt(min(rows, cols) / (rows * cols))


def _dirac_std(shape: Shape, p: Params) -> float:
    out_per_group = shape[0] // p["groups"]
    return _bernoulli_std(min(out_per_group, shape[1]) * p["groups"], math.prod(shape))


def _sparse_std(shape: Shape, p: Params) -> float:
    zeros = math.ceil(p["sparsity"] * shape[0])
    return p["std"] * math.sqrt(1 - zeros / shape[0])


def _variance_scaling_std(shape: Shape, p: Params) -> float:
    return math.sqrt(p["factor"] / _fan(shape, p["mode"]))


def _variance_scaling_call(shape: Shape, p: Params) -> Call:
    # The spec-level `scale` multiplies any method's result, so Keras's `scale` is `factor` here.
    kwargs = {"scale": p["factor"], "mode": p["mode"], "distribution": p["distribution"]}
    return Call("variance_scaling_", kwargs)


def _with_gain(fn: str) -> Callable[[Shape, Params], Call]:
    return lambda shape, p: Call(fn, {"gain": resolve_gain(p["gain"])})


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


def _lecun(kind: str, summary: str, distribution: str) -> Method:
    """LeCun init is variance scaling with scale 1 on fan_in (JAX/Keras lecun_*)."""
    kwargs = {"scale": 1.0, "mode": "fan_in", "distribution": distribution}
    return Method(
        f"lecun_{kind}", summary,
        f"LeCun et al. 1998, Efficient BackProp (as in JAX/Keras lecun_{kind})",
        lambda s, p: Call("variance_scaling_", dict(kwargs)),
        lambda s, p: 1 / math.sqrt(fans(s)[0]), min_rank=2, rank_hint=FAN_RANK_HINT,
        uses_fans=True,
    )  # fmt: skip


# ---------------------------------------------------------------- parameter declarations

GAIN = Param("gain", "gain", 1.0, "scale factor: a number or a nonlinearity name")
MODE = Param("mode", "choice", "fan_in", "fan_in keeps forward variance, fan_out backward",
             choices=("fan_in", "fan_out"))  # fmt: skip
NONLINEARITY = Param(
    "nonlinearity", "choice", "leaky_relu", "activation after this layer (sets the gain)",
    choices=("linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu", "gelu", "silu", "elu",
             "mish", "conv1d", "conv2d", "conv3d"),
)  # fmt: skip
SLOPE = Param("a", "float", 0.0, "negative slope of leaky_relu (used only with leaky_relu)", low=0)
STD = Param("std", "float", 1.0, "standard deviation", low=0)
MEAN = Param("mean", "float", 0.0, "mean")

FAN_RANK_HINT = "it needs fan_in and fan_out; for biases and norms use zeros, ones, constant, "
FAN_RANK_HINT += "normal or uniform"
CONST_STD = lambda shape, p: 0.0  # noqa: E731
KEEP = lambda shape, p: None  # noqa: E731

_ENTRIES = [
    Method("default", "keep what the module's own reset_parameters() drew (PyTorch's default)",
           "torch.nn modules' reset_parameters", KEEP, lambda s, p: math.nan),
    Method("uniform", "U(a, b)", "torch.nn.init.uniform_",
           lambda s, p: Call("nn.init.uniform_", dict(p)), lambda s, p: (p["b"] - p["a"]) / 12**0.5,
           (Param("a", "float", 0.0, "lower bound"), Param("b", "float", 1.0, "upper bound")),
           check=_a_below_b),
    Method("normal", "N(mean, std²)", "torch.nn.init.normal_",
           lambda s, p: Call("nn.init.normal_", dict(p)), lambda s, p: p["std"], (MEAN, STD)),
    Method("trunc_normal", "N(mean, std²) redrawn until inside [a, b]",
           "torch.nn.init.trunc_normal_",
           lambda s, p: Call("nn.init.trunc_normal_", dict(p)),
           lambda s, p: truncated_normal_std(p["mean"], p["std"], p["a"], p["b"]),
           (MEAN, Param("std", "float", 1.0, "std before truncation", low=0, low_open=True),
            Param("a", "float", -2.0, "lower cut (absolute value)"),
            Param("b", "float", 2.0, "upper cut (absolute value)")), check=_trunc_reachable),
    Method("constant", "every element = val", "torch.nn.init.constant_",
           lambda s, p: Call("nn.init.constant_", dict(p), random=False), CONST_STD,
           (Param("val", "float", 0.0, "the value"),)),
    Method("ones", "every element = 1", "torch.nn.init.ones_",
           lambda s, p: Call("nn.init.ones_", {}, random=False), CONST_STD),
    Method("zeros", "every element = 0", "torch.nn.init.zeros_",
           lambda s, p: Call("nn.init.zeros_", {}, random=False), CONST_STD),
    Method("eye", "identity matrix (Linear layers keep their input)", "torch.nn.init.eye_",
           lambda s, p: Call("nn.init.eye_", {}, random=False),
           lambda s, p: _bernoulli_std(min(s), math.prod(s)), min_rank=2, max_rank=2,
           rank_hint="for convolutions use dirac"),
    Method("dirac", "identity convolution (keeps the input channels)", "torch.nn.init.dirac_",
           lambda s, p: Call("nn.init.dirac_", dict(p), random=False), _dirac_std,
           (Param("groups", "int", 1, "number of groups of the convolution", low=1),),
           min_rank=3, max_rank=5,
           rank_hint="for Linear weights use eye"),
    Method("xavier_uniform", "U(-b, b), b = gain·sqrt(6/(fan_in+fan_out))",
           "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward "
           "neural networks", _with_gain("nn.init.xavier_uniform_"), _xavier_std, (GAIN,),
           min_rank=2, rank_hint=FAN_RANK_HINT, uses_fans=True),
    Method("xavier_normal", "N(0, gain²·2/(fan_in+fan_out))",
           "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward "
           "neural networks", _with_gain("nn.init.xavier_normal_"), _xavier_std, (GAIN,),
           min_rank=2, rank_hint=FAN_RANK_HINT, uses_fans=True),
    Method("kaiming_uniform", "U(-b, b), b = gain·sqrt(3/fan)",
           "He et al. 2015, Delving Deep into Rectifiers", _kaiming_call("uniform"), _kaiming_std,
           (SLOPE, MODE, NONLINEARITY), min_rank=2, rank_hint=FAN_RANK_HINT, uses_fans=True),
    Method("kaiming_normal", "N(0, gain²/fan)",
           "He et al. 2015, Delving Deep into Rectifiers", _kaiming_call("normal"), _kaiming_std,
           (SLOPE, MODE, NONLINEARITY), min_rank=2, rank_hint=FAN_RANK_HINT, uses_fans=True),
    Method("orthogonal", "a (semi-)orthogonal matrix times gain",
           "Saxe et al. 2013, Exact solutions to the nonlinear dynamics of learning in deep "
           "linear neural networks", _with_gain("nn.init.orthogonal_"), _orthogonal_std, (GAIN,),
           min_rank=2, rank_hint="it flattens to rows × the rest"),
    Method("sparse", "N(0, std²) with a fraction `sparsity` of each column set to zero",
           "Martens 2010, Deep learning via Hessian-free optimization",
           lambda s, p: Call("sparse_", dict(p)), _sparse_std,
           (Param("sparsity", "float", 0.1, "fraction of zeros per column", low=0, high=1,
                  high_open=True), Param("std", "float", 0.01, "std of the non-zeros", low=0)),
           min_rank=2, max_rank=2, rank_hint="it works on Linear weights"),
    _lecun("normal", "truncated normal with std = 1/sqrt(fan_in)", "truncated_normal"),
    _lecun("uniform", "U(-b, b), b = sqrt(3/fan_in)", "uniform"),
    Method("variance_scaling", "std = sqrt(factor/n), n = fan_in | fan_out | fan_avg",
           "Keras/JAX VarianceScaling (its `scale` is `factor` here)", _variance_scaling_call,
           _variance_scaling_std,
           (Param("factor", "float", 1.0, "target variance × n (Keras's scale)", low=0,
                  low_open=True),
            Param("mode", "choice", "fan_in", "which fan n is", choices=("fan_in", "fan_out",
                                                                         "fan_avg")),
            Param("distribution", "choice", "truncated_normal", "shape of the distribution",
                  choices=("truncated_normal", "normal", "uniform"))),
           min_rank=2, rank_hint=FAN_RANK_HINT, uses_fans=True),
]  # fmt: skip

METHODS: dict[str, Method] = {m.name: m for m in _ENTRIES}

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
    params = check_params(method.params, given, where, f"method '{name}'")
    if method.check:
        method.check(params, where)
    return MethodSpec(name, tuple(params.items()), scale)


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
        raise ValueError(f"{where}.method: unknown method {shown(name)}; choose one of: "
                         f"{', '.join(METHODS)}")  # fmt: skip
    return key


def describe_gain(gain: Any) -> str:
    """A gain for display: 'tanh (1.667)' or '2'."""
    value = resolve_gain(parse_gain(gain))
    if isinstance(gain, str):
        name, _ = split_gain(gain)
        return f"{gain} ({value:.4g})" if name else f"{value:.4g}"
    return f"{value:.4g}"
