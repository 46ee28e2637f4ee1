"""Architectures: real model families built by name from their Hugging Face config classes.

Each entry names a config class and a model class inside `transformers` (looked up only when a
model is built: `import transformers` takes seconds, and a page that shows the zoo must not pay
for it), the few config fields offered as parameters with small defaults, the input the model
takes, its activation (for presets' gains) and the qualified-name globs of its residual
projections. A model is built from its config alone: no weights, no download, no network, so a
link or an uploaded file may name an architecture without any code being imported from it.

The names of the fields are the config's own (`n_layer` for GPT-2, `num_hidden_layers` for
Llama), so a spec reads like the `transformers` code it stands for.
"""

from __future__ import annotations

import fnmatch
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from initlab.params import Param, check_params, shown

Spec = dict[str, Any]
NUM_LABELS = 10  # the vision models' classifier, as the zoo's
INIT_RANGE = Param(
    "initializer_range", "float", 0.02, "std of the model's own normal init", low=0, high=1
)


def _int(name: str, default: int, help: str, low: int = 1, high: int = 4096) -> Param:
    return Param(name, "int", default, help, low=low, high=high)


SEQ_LEN = _int("seq_len", 32, "tokens per sample (at most the positions)", high=8192)
VOCAB = _int("vocab_size", 1000, "token vocabulary", low=2, high=262_144)


@dataclass(frozen=True)
class Architecture:
    """One Hugging Face model family: how to build it small, what it takes, what it names."""

    name: str
    summary: str
    config_class: str  # a class name inside `transformers`
    model_class: str
    params: tuple[Param, ...]
    input: str  # "tokens" (token ids) or "pixels" (RGB images)
    activation: str  # the nonlinearity name its presets' gains use
    layers_field: str  # the config field that counts its blocks
    # (layers, glob) of its residual projections, for a spec: what 1/sqrt(2·n_layers) scales
    residual: Callable[[Spec], tuple[tuple[str, str], ...]]
    init_range: str | None = "initializer_range"  # None: the config has no initializer_range
    fixed: dict[str, Any] = field(default_factory=dict)  # config fields set on every build
    input_fields: tuple[str, ...] = ()  # parameters that size the input, not the config
    check: Callable[[Spec, str], None] | None = None  # constraints between fields

    def config_fields(self, spec: Spec) -> dict[str, Any]:
        """The keyword arguments of the config class for a normalized spec."""
        skip = {"name", "architecture", *self.input_fields}
        given = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()}
        return {**self.fixed, **{k: v for k, v in given.items() if k not in skip}}

    def input_shape(self, spec: Spec) -> tuple[int, ...]:
        if self.input == "tokens":
            return (spec["seq_len"],)
        return (3, spec["image_size"], spec["image_size"])

    def n_layers(self, spec: Spec) -> int:
        value = spec[self.layers_field]
        return sum(value) if isinstance(value, list | tuple) else int(value)


# ---------------------------------------------------------------- constraints between fields


def _divides(width: str, heads: str) -> Callable[[Spec, str], None]:
    def check(spec: Spec, where: str) -> None:
        if spec[width] % spec[heads]:
            raise ValueError(
                f"{where}.{heads}: must divide {width} ({spec[width]}), so each head gets "
                f"{width}/{heads} dims; got {spec[heads]}"
            )

    return check


def _at_most(field_name: str, limit: str) -> Callable[[Spec, str], None]:
    def check(spec: Spec, where: str) -> None:
        if spec[field_name] > spec[limit]:
            raise ValueError(
                f"{where}.{field_name}: at most {limit} ({spec[limit]}); got {spec[field_name]}"
            )

    return check


def _all(*checks: Callable[[Spec, str], None]) -> Callable[[Spec, str], None]:
    def check(spec: Spec, where: str) -> None:
        for one in checks:
            one(spec, where)

    return check


def _same_length(spec: Spec, where: str) -> None:
    if len(spec["hidden_sizes"]) != len(spec["depths"]):
        raise ValueError(
            f"{where}.depths: one depth per stage of hidden_sizes "
            f"({len(spec['hidden_sizes'])} stages); got {shown(list(spec['depths']))}"
        )


# ---------------------------------------------------------------- the entries


def _fixed_residual(*pairs: tuple[str, str]) -> Callable[[Spec], tuple[tuple[str, str], ...]]:
    return lambda spec: pairs


def _resnet_residual(spec: Spec) -> tuple[tuple[str, str], ...]:
    """A ResNet block's branch ends in its last conv layer: `layer.1` in a basic block,
    `layer.2` in a bottleneck; that conv and its BatchNorm are what the residual adds."""
    last = 1 if spec["layer_type"] == "basic" else 2
    glob = f"*.layers.*.layer.{last}"
    return (("Conv", f"{glob}.convolution"), ("BatchNorm", f"{glob}.normalization"))


def _transformer_params(
    layers: str, width: str, heads: str, *, width_default: int = 64
) -> tuple[Param, ...]:
    return (
        _int(layers, 4, "transformer blocks", high=48),
        _int(width, width_default, "width of the residual stream", low=8),
        _int(heads, 4, "attention heads (must divide the width)", high=128),
    )


_ENTRIES = [
    Architecture(
        name="gpt2",
        summary="GPT-2 (GPT2LMHeadModel): pre-LN decoder, Conv1D projections, gelu_new, tied head",
        config_class="GPT2Config",
        model_class="GPT2LMHeadModel",
        params=(
            *_transformer_params("n_layer", "n_embd", "n_head"),
            VOCAB,
            _int("n_positions", 64, "learned positions", high=8192),
            SEQ_LEN,
            INIT_RANGE,
        ),
        input="tokens",
        activation="gelu",  # gelu_new is the tanh approximation of gelu
        layers_field="n_layer",
        residual=_fixed_residual(("Conv1D", "*.c_proj")),
        fixed={"bos_token_id": 0, "eos_token_id": 0},  # GPT-2's 50256 is outside a small vocab
        input_fields=("seq_len",),
        check=_all(_divides("n_embd", "n_head"), _at_most("seq_len", "n_positions")),
    ),
    Architecture(
        name="llama",
        summary="Llama (LlamaForCausalLM): pre-RMSNorm decoder, rotary positions, SwiGLU (silu)",
        config_class="LlamaConfig",
        model_class="LlamaForCausalLM",
        params=(
            *_transformer_params("num_hidden_layers", "hidden_size", "num_attention_heads"),
            _int("num_key_value_heads", 4, "key/value heads (divide the attention heads)"),
            _int("intermediate_size", 172, "width of the SwiGLU MLP", high=16_384),
            VOCAB,
            _int("max_position_embeddings", 64, "positions the rotary embedding covers", 1, 8192),
            SEQ_LEN,
            INIT_RANGE,
        ),
        input="tokens",
        activation="silu",
        layers_field="num_hidden_layers",
        residual=_fixed_residual(("Linear", "*.o_proj"), ("Linear", "*.down_proj")),
        fixed={"bos_token_id": 0, "eos_token_id": 0},
        input_fields=("seq_len",),
        check=_all(
            _divides("hidden_size", "num_attention_heads"),
            _divides("num_attention_heads", "num_key_value_heads"),
            _at_most("seq_len", "max_position_embeddings"),
        ),
    ),
    Architecture(
        name="bert",
        summary="BERT (BertForMaskedLM): post-LN encoder with its tied masked-LM head, gelu",
        config_class="BertConfig",
        model_class="BertForMaskedLM",
        params=(
            *_transformer_params("num_hidden_layers", "hidden_size", "num_attention_heads"),
            _int("intermediate_size", 256, "width of the MLP", high=16_384),
            VOCAB,
            _int("max_position_embeddings", 64, "learned positions", 1, 8192),
            SEQ_LEN,
            INIT_RANGE,
        ),
        input="tokens",
        activation="gelu",
        layers_field="num_hidden_layers",
        # `*.output.dense` is both the attention's output (attention.output.dense) and the
        # block's MLP output (layer.N.output.dense): 2 per block.
        residual=_fixed_residual(("Linear", "*.output.dense")),
        input_fields=("seq_len",),
        check=_all(
            _divides("hidden_size", "num_attention_heads"),
            _at_most("seq_len", "max_position_embeddings"),
        ),
    ),
    Architecture(
        name="vit",
        summary="ViT (ViTForImageClassification, 10 labels): pre-LN encoder on image patches",
        config_class="ViTConfig",
        model_class="ViTForImageClassification",
        params=(
            *_transformer_params("num_hidden_layers", "hidden_size", "num_attention_heads"),
            _int("intermediate_size", 256, "width of the MLP", high=16_384),
            _int("image_size", 32, "height and width of the RGB input", low=4, high=1024),
            _int("patch_size", 4, "height and width of a patch (divides image_size)", high=256),
            INIT_RANGE,
        ),
        input="pixels",
        activation="gelu",
        layers_field="num_hidden_layers",
        residual=_fixed_residual(("Linear", "*.attention.o_proj"), ("Linear", "*.mlp.fc2")),
        fixed={"num_labels": NUM_LABELS},
        check=_all(
            _divides("hidden_size", "num_attention_heads"), _divides("image_size", "patch_size")
        ),
    ),
    Architecture(
        name="resnet",
        summary="ResNet (ResNetForImageClassification, 10 labels): BatchNorm residual blocks",
        config_class="ResNetConfig",
        model_class="ResNetForImageClassification",
        params=(
            _int("embedding_size", 16, "channels of the stem", high=1024),
            Param("hidden_sizes", "ints", (16, 32, 64), "channels of each stage", low=1, high=4096),
            Param("depths", "ints", (2, 2, 2), "residual blocks of each stage", low=1, high=64),
            Param(
                "layer_type",
                "choice",
                "basic",
                "basic (two 3×3 convs) or bottleneck blocks",
                choices=("basic", "bottleneck"),
            ),
            _int("image_size", 32, "height and width of the RGB input", low=8, high=1024),
        ),
        input="pixels",
        activation="relu",
        layers_field="depths",
        residual=_resnet_residual,
        init_range=None,  # Kaiming fan_out convs and BatchNorm 1/0, no initializer_range
        fixed={"num_labels": NUM_LABELS},
        input_fields=("image_size",),
        check=_same_length,
    ),
]

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in _ENTRIES}


# ---------------------------------------------------------------- specs and building


def architecture(spec: Spec, where: str = "model") -> Architecture:
    name = spec.get("architecture", "gpt2")
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(
            f"{where}.architecture: unknown architecture {shown(name)}; choose one of: "
            + ", ".join(ARCHITECTURES)
        )
    return ARCHITECTURES[name]


def normalize(given: Spec, where: str = "model") -> Spec:
    """An `hf` spec validated against its architecture's fields, defaults filled in."""
    arch = architecture(given, where)
    fields = {k: v for k, v in given.items() if k not in ("name", "architecture")}
    checked = check_params(arch.params, fields, where, f"architecture '{arch.name}'")
    if arch.check is not None:
        arch.check(checked, where)
    return {"name": "hf", "architecture": arch.name, **checked}


def transformers_class(name: str) -> type:
    """A class of `transformers` by its fixed name (the import happens here, once)."""
    return getattr(importlib.import_module("transformers"), name)


def config_of(spec: Spec) -> Any:
    arch = ARCHITECTURES[spec["architecture"]]
    return transformers_class(arch.config_class)(**arch.config_fields(spec))


def build(spec: Spec) -> nn.Module:
    """The model of a normalized spec, from its config alone: the constructor's own init."""
    arch = ARCHITECTURES[spec["architecture"]]
    return transformers_class(arch.model_class)(config_of(spec))


# ---------------------------------------------------------------- presets' rules


def residual_rules(spec: Spec, where: str = "preset residual_scaled") -> list[dict]:
    """N(0, initializer_range) × 1/sqrt(2·n_layers) on the residual projections' weights; their
    biases and every other parameter keep what the constructor drew."""
    arch = ARCHITECTURES[spec["architecture"]]
    if arch.init_range is None:
        with_range = [a.name for a in ARCHITECTURES.values() if a.init_range is not None]
        raise ValueError(
            f"{where}: architecture '{arch.name}' has no initializer_range (its init is Kaiming "
            f"fan_out convs and BatchNorm 1/0), so there is no N(0, initializer_range) to scale; "
            f"it applies to {', '.join(with_range)}; for a ResNet use zero_init_residual"
        )
    std = float(spec[arch.init_range])
    scale = 1.0 / math.sqrt(2 * arch.n_layers(spec))
    weight = {"method": "normal", "mean": 0.0, "std": std, "scale": scale}
    return [
        {"layers": layers, "name": glob, "weight": weight} for layers, glob in arch.residual(spec)
    ]


def residual_norm_globs(spec: Spec) -> list[str]:
    """The globs of the norms that end a residual branch (a ResNet block's last BatchNorm)."""
    arch = ARCHITECTURES[spec["architecture"]]
    return [glob for layers, glob in arch.residual(spec) if layers == "BatchNorm"]


WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
A_SQRT5 = {"method": "kaiming_uniform", "a": math.sqrt(5), "nonlinearity": "leaky_relu"}


def torch_default_rules(model: nn.Module) -> list[dict]:
    """Rules that draw what every torch.nn module's own reset_parameters() draws, from the
    scheme's generator: Linear and Conv weights kaiming_uniform(a=√5), their biases
    U(±1/√fan_in) (one rule per group of same-named layers, since the bound depends on the
    layer's fan_in), Embedding N(0, 1), norms 1/0; Hugging Face's Conv1D (no reset_parameters)
    what its own constructor draws, N(0, 0.02) and zero bias."""
    rules: list[dict] = [
        {"layers": "Conv1D", "weight": {"method": "normal", "std": 0.02}, "bias": "zeros"}
    ]
    for glob, fan_in, family in _bias_groups(model):
        bound = 1.0 / math.sqrt(fan_in)
        bias = {"method": "uniform", "a": -bound, "b": bound}
        rules.append({"layers": family, "name": glob, "weight": A_SQRT5, "bias": bias})
    rules += [{"layers": fam, "weight": A_SQRT5} for fam in ("Linear", "Conv")]
    rules.append({"layers": "Embedding", "weight": {"method": "normal", "std": 1.0}})
    norms = ("LayerNorm", "RMSNorm", "BatchNorm", "GroupNorm")
    return rules + [{"layers": fam, "weight": "ones", "bias": "zeros"} for fam in norms]


def _bias_groups(model: nn.Module) -> list[tuple[str, int, str]]:
    """(glob, fan_in, family) per group of biased Linear/Conv layers whose names differ only
    in their indices (`h.*.mlp.c_fc`). A glob's `*` also crosses dots, so if any layer's first
    matching glob is not its own group's, or a group's fans differ, exact names are used."""
    layers = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, WEIGHTED) and m.bias is not None
    ]
    globs: dict[str, set[int]] = {}
    for name, module in layers:
        globs.setdefault(_indices_starred(name), set()).add(_fan_in(module))
    exact = any(len(fans) > 1 for fans in globs.values()) or not all(
        _first_match(name, globs) == _indices_starred(name) for name, _ in layers
    )
    found: dict[str, tuple[int, str]] = {}
    for name, module in layers:
        key = name if exact else _indices_starred(name)
        found.setdefault(key, (_fan_in(module), _family(module)))
    return [(glob, fan_in, family) for glob, (fan_in, family) in found.items()]


def _indices_starred(name: str) -> str:
    """`h.0.mlp.c_fc` -> `h.*.mlp.c_fc`: each part of the name that is an index (fc1 stays)."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def _first_match(name: str, globs: dict[str, set[int]]) -> str | None:
    return next((glob for glob in globs if fnmatch.fnmatchcase(name, glob)), None)


def _family(module: nn.Module) -> str:
    return "Linear" if isinstance(module, nn.Linear) else "Conv"


def _fan_in(module: nn.Module) -> int:
    weight = module.weight
    return weight.shape[1] * math.prod(weight.shape[2:])
