"""The presets' registry as plain data: for each preset its title, one-line "why", source and
rules (rule dicts, built for a model's activation). `initlab.presets` turns them into schemes;
this module knows nothing of `Scheme`, so `initlab.schemes` can check a preset key against it.

A preset is built for a model's activation (the nonlinearity name its gain comes from), so
"Kaiming" on a tanh MLP uses tanh's gain. The papers' own schemes stay as published: Xavier is
Glorot & Bengio's gain 1 (as in Keras and JAX), and the activation-gain variants are presets of
their own. On SELU every activation gain is `linear` (1), as torch's calculate_gain docs say
self-normalizing networks need. Presets select layers by family and, where a recipe
singles some out, by the module names the original code uses (GPT-2's `*.c_proj`, torchvision's
`*.bn2`), so they apply to those models in the wild, not only to initlab's zoo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from initlab import architectures
from initlab.methods import SCALE_BY_MATCHES
from initlab.params import shown

Spec = dict[str, Any]
ModelOutline = Callable[[Spec], Any]  # a model spec -> its nn.Module on the meta device

WEIGHTED = ("Linear", "Conv", "ConvTranspose")  # families a fan-based preset initializes
NORMS = ("BatchNorm", "LayerNorm", "GroupNorm")


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    why: str
    source: str
    rules: Callable[[str], list[dict]]  # activation -> rule dicts
    # (activation, model spec, its outline) -> rule dicts, where the preset means something
    # model-specific (a Hugging Face architecture's residual projections); else `rules`
    for_model: Callable[[str, Spec, ModelOutline], list[dict]] | None = None


def rules_for(entry: Preset, activation: str, model: Spec | None, outline: ModelOutline) -> list:
    """The preset's rule dicts for a model spec (None: the model-independent rules)."""
    if model is None or entry.for_model is None:
        return entry.rules(activation)
    return entry.for_model(activation, model, outline)


def check_preset_name(value: Any, where: str) -> str:
    """A preset key, checked against the registry (the message lists every preset)."""
    if not isinstance(value, str) or value not in PRESETS:
        raise ValueError(
            f"{where}: unknown preset {shown(value)}; choose one of: {', '.join(PRESETS)}"
        )
    return value


# torch's calculate_gain docs: for self-normalizing networks use nonlinearity='linear', not
# 'selu'. SELU's fixed point at variance 1 needs weights of variance 1/fan_in; the 3/4 of
# calculate_gain('selu') gives 9/16 of that, and a deep SELU MLP shrinks (×0.90 per layer over
# 30 layers, to a variance near 0.02).
SELF_NORMALIZING = {"selu": "linear"}


def gain_name(activation: str) -> str:
    """The nonlinearity name a preset's gain uses for this activation."""
    return SELF_NORMALIZING.get(activation, activation)


def _kaiming_nonlinearity(activation: str) -> dict:
    name = gain_name(activation)
    if name == "leaky_relu":
        return {"nonlinearity": "leaky_relu", "a": 0.01}
    return {"nonlinearity": name, "a": 0.0}


def _all_weighted(weight: dict, bias: dict | str = "zeros") -> list[dict]:
    return [{"layers": fam, "weight": weight, "bias": bias} for fam in WEIGHTED]


def _norms_identity() -> list[dict]:
    return [{"layers": fam, "weight": "ones", "bias": "zeros"} for fam in NORMS]


def _no_rules(act: str) -> list[dict]:
    return []


def _kaiming(mode: str) -> Callable[[str], list[dict]]:
    def rules(act: str) -> list[dict]:
        weight = {"method": "kaiming_normal", "mode": mode, **_kaiming_nonlinearity(act)}
        return _all_weighted(weight) + _norms_identity()

    return rules


def _xavier(kind: str, with_gain: bool) -> Callable[[str], list[dict]]:
    """Glorot & Bengio's scheme (gain 1), or torch's usage with the activation's gain."""

    def rules(act: str) -> list[dict]:
        gain = gain_name(act) if with_gain else 1.0
        return _all_weighted({"method": f"xavier_{kind}", "gain": gain})

    return rules


def _orthogonal(act: str) -> list[dict]:
    return _all_weighted({"method": "orthogonal", "gain": gain_name(act)})


def _plain(weight: dict | str) -> Callable[[str], list[dict]]:
    return lambda act: [*_all_weighted(weight), {"layers": "Embedding", "weight": weight}]


def _orthogonal_recurrent(act: str) -> list[dict]:
    """Keras's recurrent defaults: the recurrent weights orthogonal, the input weights and the
    head Glorot uniform, biases 0. The `param` glob rule comes first, so it takes weight_hh_l*
    and leaves the cell's other parameters to the family rule."""
    xavier = {"method": "xavier_uniform", "gain": 1.0}
    return [
        {"layers": "RNN", "param": "weight_hh_l*", "weight": {"method": "orthogonal"}},
        {"layers": "RNN", "weight": xavier, "bias": "zeros"},
        *_all_weighted(xavier),
    ]


GPT2_STD = 0.02  # GPT-2's initializer_range
# Hugging Face's GPT-2 uses `Conv1D` (a Linear with its weight stored transposed, (in, out)).
GPT2_LINEAR = ("Linear",)  # the Linear family holds transformers' Conv1D too


def _gpt2(act: str) -> list[dict]:
    """GPT-2 / nanoGPT: N(0, 0.02) everywhere; the residual projections (`*.c_proj`, two per
    block) scaled by 1/sqrt(their count) = 1/sqrt(2·n_layers), counted from the model."""
    normal = {"method": "normal", "mean": 0.0, "std": GPT2_STD}
    residual = {**normal, "scale": SCALE_BY_MATCHES}
    projections = [
        {"layers": fam, "name": "*.c_proj", "weight": residual, "bias": "zeros"}
        for fam in GPT2_LINEAR
    ]
    linear = [{"layers": fam, "weight": normal, "bias": "zeros"} for fam in GPT2_LINEAR]
    return [
        *projections,
        *linear,
        {"layers": "Embedding", "weight": normal},
        {"layers": "LayerNorm", "weight": "ones", "bias": "zeros"},
    ]


def _residual_scaled(act: str) -> list[dict]:
    """Without a model to ask: GPT-2's names and std (the zoo's transformer, nanoGPT), the
    projections counted from the model, so 1/sqrt(2·n_layers)."""
    weight = {"method": "normal", "mean": 0.0, "std": GPT2_STD, "scale": SCALE_BY_MATCHES}
    return [{"layers": fam, "name": "*.c_proj", "weight": weight} for fam in GPT2_LINEAR]


def _is_hf(model: Spec) -> bool:
    return model.get("name") == "hf"


def _residual_for_model(act: str, model: Spec, outline: ModelOutline) -> list[dict]:
    """A Hugging Face architecture's own residual globs, initializer_range and n_layers."""
    if _is_hf(model):
        return architectures.residual_rules(model)
    return _residual_scaled(act)


def _torch_default_for_model(act: str, model: Spec, outline: ModelOutline) -> list[dict]:
    """A zoo model's constructor is its modules' reset_parameters(): no rules. A Hugging Face
    model's constructor runs its own `_init_weights`, so the default is drawn again."""
    if _is_hf(model):
        return architectures.torch_default_rules(outline(model))
    return []


def _zero_init_residual_for_model(act: str, model: Spec, outline: ModelOutline) -> list[dict]:
    """On a Hugging Face ResNet the block's last norm is its own name, not torchvision's bn2."""
    rules = _zero_init_residual(act)
    globs = architectures.residual_norm_globs(model) if _is_hf(model) else []
    last = [{"layers": "BatchNorm", "name": g, "weight": "zeros", "bias": "zeros"} for g in globs]
    return last + rules


def _zero_init_residual(act: str) -> list[dict]:
    """torchvision's ResNet init with zero_init_residual=True. BasicBlock's last norm is `bn2`;
    Bottleneck blocks (ResNet-50 and up) end with `bn3` and would need a "*.bn3" rule."""
    conv = {"method": "kaiming_normal", "mode": "fan_out", **_kaiming_nonlinearity(act)}
    return [
        {"layers": "BatchNorm", "name": "*.bn2", "weight": "zeros", "bias": "zeros"},
        {"layers": "Conv", "weight": conv, "bias": "zeros"},
        {"layers": "BatchNorm", "weight": "ones", "bias": "zeros"},
        {"layers": "GroupNorm", "weight": "ones", "bias": "zeros"},
    ]


def _recipe(act: str) -> list[dict]:
    small_normal = {"method": "normal", "mean": 0.0, "std": 0.01}
    return [
        {"layers": "Conv2d", "weight": "xavier_normal", "bias": "zeros"},
        {"layers": "BatchNorm2d", "weight": "ones", "bias": "zeros"},
        {"layers": "Linear", "weight": small_normal, "bias": "zeros"},
    ]


_ENTRIES = [
    Preset(
        name="pytorch_default",
        title="PyTorch default",
        why="every module's own reset_parameters() (Linear/Conv kaiming_uniform a=√5, biases "
        "U(±1/√fan_in), Embedding N(0, 1), norms 1/0): no rules on the zoo; on a Hugging Face "
        "model, whose constructor runs its own init instead, those draws made again",
        source="torch.nn module defaults",
        rules=_no_rules,
        for_model=_torch_default_for_model,
    ),
    Preset(
        name="as_constructed",
        title="As constructed",
        why="no rules: the model's own initialization, as its constructor runs it (a Hugging "
        "Face model's _init_weights with its initializer_range; a zoo model's reset_parameters)",
        source="the model's own code (transformers' PreTrainedModel._init_weights)",
        rules=_no_rules,
    ),
    Preset(
        name="residual_scaled",
        title="Residual × 1/√(2·n_layers)",
        why="the residual projections N(0, initializer_range) × 1/√(2·n_layers), everything "
        "else as constructed: each block adds two branches, so the stream's variance stays "
        "put with depth (GPT-2's *.c_proj, Llama's o_proj/down_proj, BERT's and ViT's output "
        "projections)",
        source="Radford et al. 2019, GPT-2 (section 2.3), generalized; Megatron-LM",
        rules=_residual_scaled,
        for_model=_residual_for_model,
    ),
    Preset(
        name="recipe",
        title="The recipe",
        why="the classic two-step recipe: Conv2d xavier_normal, BatchNorm2d 1/0, Linear N(0, 0.01)",
        source="the PyTorch weight-initialization recipe this tool grew from",
        rules=_recipe,
    ),
    Preset(
        name="kaiming_normal",
        title="Kaiming normal",
        why="keeps forward variance constant through rectifiers: std = gain/√fan_in; on SELU "
        "the 'linear' gain, as torch's docs advise (calculate_gain('selu') = 3/4 shrinks "
        "the signal layer after layer)",
        source="He et al. 2015, Delving Deep into Rectifiers",
        rules=_kaiming("fan_in"),
    ),
    Preset(
        name="kaiming_normal_fan_out",
        title="Kaiming normal (fan_out)",
        why="keeps backward (gradient) variance constant: std = gain/√fan_out "
        "(on SELU the 'linear' gain 1, as torch's docs advise)",
        source="He et al. 2015; torchvision's ResNet init",
        rules=_kaiming("fan_out"),
    ),
    Preset(
        name="xavier_normal",
        title="Xavier normal",
        why="the paper's scheme, gain 1: std = √(2/(fan_in+fan_out)), derived for linear "
        "units (it halves the variance per ReLU layer)",
        source="Glorot & Bengio 2010 (as in Keras glorot_normal and JAX)",
        rules=_xavier("normal", with_gain=False),
    ),
    Preset(
        name="xavier_uniform",
        title="Xavier uniform",
        why="the paper's scheme, gain 1: U(±√(6/(fan_in+fan_out)))",
        source="Glorot & Bengio 2010, eq. 16 (as in Keras glorot_uniform and JAX)",
        rules=_xavier("uniform", with_gain=False),
    ),
    Preset(
        name="xavier_normal_gain",
        title="Xavier normal (activation gain)",
        why="Xavier normal times the activation's calculate_gain: std = "
        "gain·√(2/(fan_in+fan_out)) (on SELU the 'linear' gain)",
        source="Glorot & Bengio 2010; the gain is PyTorch's usage (torch.nn.init docs)",
        rules=_xavier("normal", with_gain=True),
    ),
    Preset(
        name="xavier_uniform_gain",
        title="Xavier uniform (activation gain)",
        why="Xavier uniform times the activation's calculate_gain: bound = "
        "gain·√(6/(fan_in+fan_out)) (on SELU the 'linear' gain)",
        source="Glorot & Bengio 2010; the gain is PyTorch's usage (torch.nn.init docs)",
        rules=_xavier("uniform", with_gain=True),
    ),
    Preset(
        name="lecun_normal",
        title="LeCun normal",
        why="std = 1/√fan_in (truncated normal): what SELU self-normalization assumes",
        source="LeCun et al. 1998; Klambauer et al. 2017",
        rules=_plain("lecun_normal"),
    ),
    Preset(
        name="orthogonal",
        title="Orthogonal",
        why="orthogonal weights with the activation's gain: dynamical isometry in deep nets",
        source="Saxe et al. 2013",
        rules=_orthogonal,
    ),
    Preset(
        name="orthogonal_recurrent",
        title="Orthogonal recurrent",
        why="an RNN's recurrent weights (weight_hh) orthogonal, its input weights (weight_ih) "
        "and the other layers Xavier uniform, biases 0: the recurrence neither grows nor "
        "shrinks the state at the start (Keras also sets the LSTM forget-gate bias to 1)",
        source="Saxe et al. 2013; Keras LSTM/GRU defaults (recurrent_initializer='orthogonal')",
        rules=_orthogonal_recurrent,
    ),
    Preset(
        name="gpt2",
        title="GPT-2",
        why="N(0, 0.02) for Linear/Conv1D/Embedding; residual projections *.c_proj × "
        "1/√(2·n_layers), so the residual stream's variance does not grow with depth",
        source="Radford et al. 2019, GPT-2 (section 2.3); nanoGPT and Hugging Face _init_weights",
        rules=_gpt2,
    ),
    Preset(
        name="zero_init_residual",
        title="Zero-init residual",
        why="Kaiming fan_out convs, BatchNorm 1/0, and each residual block's last BatchNorm "
        "(*.bn2) at 0: every block starts as the identity",
        source="Goyal et al. 2017, Accurate, Large Minibatch SGD; torchvision's zero_init_residual",
        rules=_zero_init_residual,
        for_model=_zero_init_residual_for_model,
    ),
    Preset(
        name="zeros",
        title="All zeros",
        why="every weight 0: the symmetry every unit shares and gradient descent cannot break",
        source="any deep learning course",
        rules=_plain("zeros"),
    ),
    Preset(
        name="too_small",
        title="Too small: N(0, 0.01)",
        why="a fixed small std: activations vanish layer after layer",
        source="Glorot & Bengio 2010, section 4",
        rules=_plain({"method": "normal", "std": 0.01}),
    ),
    Preset(
        name="too_large",
        title="Too large: N(0, 1)",
        why="a fixed std of 1: activations explode (or saturate) layer after layer",
        source="Glorot & Bengio 2010, section 4",
        rules=_plain({"method": "normal", "std": 1.0}),
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _ENTRIES}
