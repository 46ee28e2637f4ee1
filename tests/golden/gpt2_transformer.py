# Weight initialization scheme 'GPT-2' (preset gpt2) for Transformer, exported by
#   initlab.
# Bit-identical to initlab's apply_scheme with an equal generator; needs torch >= 2.2
#   (generator= in torch.nn.init). The first matching rule decides a layer; parameters
#   no rule decides keep PyTorch's default.
#   rule 0 (Linear named '*.c_proj'): weight normal(mean=0.0, std=0.02) × 1/√(number of
#     modules this rule matches) = 1/√(2·n_layers) in GPT-2; 8 in this model, bias zeros
#   rule 1 (Linear): weight normal(mean=0.0, std=0.02), bias zeros
#   rule 2 (Embedding): weight normal(mean=0.0, std=0.02), bias PyTorch's default
#   rule 3 (LayerNorm): weight ones, bias zeros

from __future__ import annotations

import fnmatch
import math

import torch
from torch import nn


@torch.no_grad()
def initialize_weights(
    model: nn.Module, generator: torch.Generator | None = None
) -> None:
    """Initialize `model` in place; a seeded `generator` reproduces it."""
    # A scale of 1/√(modules its rule matches) needs the count first.
    matches = {
        0: sum(
            isinstance(m, nn.Linear) and fnmatch.fnmatchcase(name, "*.c_proj")
            for name, m in model.named_modules()
        ),
    }
    for name, m in model.named_modules():
        if name == "lm_head":
            # tied: its tensors belong to an earlier module and are initialized there
            continue
        if isinstance(m, nn.Linear) and fnmatch.fnmatchcase(name, "*.c_proj"):
            nn.init.normal_(m.weight, std=0.02, generator=generator)
            m.weight.mul_(1.0 / math.sqrt(matches[0]))
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02, generator=generator)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
