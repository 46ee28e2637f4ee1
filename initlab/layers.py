"""Layer families and roles: how initlab names and classifies modules.

A rule's `layers` is a family from FAMILIES or an exact class name. A probe row's `role` says
whether a module's output is a pre-activation (a layer with weights), a normalization, an
activation or something else; it selects the rows of "variance by depth".
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn.modules import activation as _activation
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

FAMILIES: dict[str, tuple[type[nn.Module], ...]] = {
    "Linear": (nn.Linear, nn.Bilinear),
    "Conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "ConvTranspose": (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
    "BatchNorm": (_BatchNorm,),
    "LayerNorm": (nn.LayerNorm,),
    "GroupNorm": (nn.GroupNorm,),
    "InstanceNorm": (_InstanceNorm,),
    "RMSNorm": (nn.RMSNorm,),
    "Embedding": (nn.Embedding, nn.EmbeddingBag),
    "RNN": (nn.RNNBase, nn.RNNCellBase),
    "MultiheadAttention": (nn.MultiheadAttention,),
}
NORM_FAMILIES = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm")
NORMS = tuple(cls for fam in NORM_FAMILIES for cls in FAMILIES[fam])
# Members outside torch.nn, known by class name so that initlab never imports their library:
# Hugging Face's Conv1D (GPT-2) is a Linear with its weight stored (in, out), and its RMSNorms
# (LlamaRMSNorm, MistralRMSNorm, ...: one class per model, none a torch.nn.RMSNorm) are
# RMSNorms. A class name that ends with a suffix of SUFFIX_MEMBERS counts.
NAMED_MEMBERS: dict[str, tuple[str, ...]] = {"Linear": ("Conv1D",)}
SUFFIX_MEMBERS: dict[str, str] = {"RMSNorm": "RMSNorm"}
# Activation modules of Hugging Face models (gelu_new, SiLU, ...): role "activation".
ACTIVATION_MODULES = (_activation.__name__, "transformers.activations")
# Bounded activations: where their outputs count as saturated (within 1% of a bound).
SATURATION: dict[type[nn.Module], tuple[float, float]] = {
    nn.Tanh: (-1.0, 1.0),
    nn.Sigmoid: (0.0, 1.0),
    nn.Hardtanh: (-1.0, 1.0),
    nn.Softsign: (-1.0, 1.0),
    nn.Hardsigmoid: (0.0, 1.0),
}


# Modules whose 2-D weight is stored (in, out) instead of torch's (out, in): Hugging Face's
# Conv1D (GPT-2). Their fans are read from the transposed shape.
TRANSPOSED = ("Conv1D",)


def is_transposed(module: nn.Module, tensor: torch.Tensor) -> bool:
    return type(module).__name__ in TRANSPOSED and tensor.dim() == 2


def family_of(module: nn.Module) -> str:
    """The family a module belongs to, or its class name when it is in none."""
    for family in FAMILIES:
        if _type_matches(type(module), family):
            return family
    return type(module).__name__


def _named_member(cls: type, family: str) -> bool:
    """True when `cls` (or a base) is a member of `family` by class name (NAMED_MEMBERS)."""
    names, suffix = NAMED_MEMBERS.get(family, ()), SUFFIX_MEMBERS.get(family)
    return any(c.__name__ in names or (suffix and c.__name__.endswith(suffix)) for c in cls.__mro__)


def matches_layers(module: nn.Module, layers: str) -> bool:
    """True when `module` is in family `layers`, or is an instance of the class `layers` names
    (a subclass counts, as with `isinstance`: the recipe's `isinstance(m, nn.Conv2d)` also
    initializes subclasses of Conv2d). A torch.nn class (`Conv2d`, `torch.nn.Conv2d`) means
    that very class; another name means any class of that name among the module's bases, and a
    dotted one its full path, `package.module.Class`."""
    return _type_matches(type(module), layers)


# Every walk of a model asks this for each (module, rule): answered once per (class, text).
@functools.lru_cache(maxsize=65_536)
def _type_matches(cls: type, layers: str) -> bool:
    if layers in FAMILIES:
        return issubclass(cls, FAMILIES[layers]) or _named_member(cls, layers)
    classes = torch_class(layers)
    if classes is not None:
        return issubclass(cls, classes)
    name = class_path if "." in layers else _class_name
    return any(name(c) == layers for c in cls.__mro__)


def torch_class(layers: str) -> tuple[type[nn.Module]] | None:
    """The torch.nn module class `layers` names, as `X`, `nn.X` or `torch.nn.X`, if any."""
    head, _, last = layers.rpartition(".")
    found = getattr(nn, last, None) if head in ("", "nn", "torch.nn") else None
    return (found,) if isinstance(found, type) and issubclass(found, nn.Module) else None


def _class_name(cls: type) -> str:
    return cls.__name__


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def role_of(module: nn.Module) -> str:
    """'norm', 'weight', 'activation' or 'other' (see the module docstring)."""
    if isinstance(module, NORMS) or family_of(module) in NORM_FAMILIES:
        return "norm"
    if any("weight" in name for name, _ in module.named_parameters(recurse=False)):
        return "weight"
    if type(module).__module__ in ACTIVATION_MODULES:
        return "activation"
    return "other"


def saturation_bounds(module: nn.Module) -> tuple[float, float] | None:
    if isinstance(module, nn.Hardtanh):  # also ReLU6: its own min_val/max_val, e.g. (0, 6)
        return float(module.min_val), float(module.max_val)
    for cls, bounds in SATURATION.items():
        if isinstance(module, cls):
            return bounds
    return None


def default_std(module: nn.Module, param: str, shape: tuple[int, ...]) -> float:
    """The std PyTorch's own reset_parameters gives this parameter, where it is known."""
    if isinstance(module, NORMS) or family_of(module) in NORM_FAMILIES:
        return 0.0  # weight 1, bias 0
    if isinstance(module, nn.Embedding):
        return 1.0
    if isinstance(module, nn.MultiheadAttention):
        # _reset_parameters: xavier_uniform_ on in_proj_weight, zeros on in_proj_bias.
        return math.sqrt(2.0 / sum(shape[:2])) if "weight" in param and len(shape) == 2 else 0.0
    if isinstance(module, nn.RNNBase):
        # reset_parameters: every weight and bias U(±1/sqrt(hidden_size)).
        return 1.0 / math.sqrt(3.0 * module.hidden_size)
    if type(module).__name__ == "NonDynamicallyQuantizableLinear" and "bias" in param:
        return 0.0  # MultiheadAttention zeroes its out_proj.bias
    if isinstance(module, (nn.Linear, *FAMILIES["Conv"], *FAMILIES["ConvTranspose"])):
        # kaiming_uniform_(a=sqrt(5)) on weights and U(±1/sqrt(fan_in)) on biases: both
        # are uniform with bound 1/sqrt(fan_in), i.e. std 1/sqrt(3·fan_in).
        weight = module.weight
        fan_in = weight.shape[1] * math.prod(weight.shape[2:])
        # torch: bound = 1/sqrt(fan_in) if fan_in > 0 else 0, so no inputs means a zero bias
        return 1.0 / math.sqrt(3.0 * fan_in) if fan_in > 0 else 0.0
    return math.nan


def parameter_slots(model: nn.Module) -> dict[str, dict[str, object]]:
    """What a scheme editor needs: for each family with parameters, its class names and the
    tensor ranks of its weight and bias parameters ({"classes": [...], "weight": {2}, ...})."""
    slots: dict[str, dict[str, object]] = {}
    for module in model.modules():
        own = list(module.named_parameters(recurse=False))
        if not own:
            continue
        slot = slots.setdefault(family_of(module), {"classes": [], "weight": set(), "bias": set()})
        if type(module).__name__ not in slot["classes"]:
            slot["classes"].append(type(module).__name__)
        for name, tensor in own:
            kind = "weight" if "weight" in name else "bias" if "bias" in name else None
            if kind:
                slot[kind].add(tensor.dim())
    return slots
