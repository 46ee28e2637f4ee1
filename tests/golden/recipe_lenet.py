# Weight initialization scheme 'The recipe' (preset recipe) for LeNet, exported by
#   initlab.
# Bit-identical to initlab's apply_scheme with an equal generator; needs torch >= 2.2
#   (generator= in torch.nn.init). The first matching rule decides a layer; parameters
#   no rule decides keep PyTorch's default.
#   rule 0 (Conv2d): weight xavier_normal(gain=1.0), bias zeros
#   rule 1 (BatchNorm2d): matches no layer of this model, left out
#   rule 2 (Linear): weight normal(mean=0.0, std=0.01), bias zeros

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def initialize_weights(
    model: nn.Module, generator: torch.Generator | None = None
) -> None:
    """Initialize `model` in place; a seeded `generator` reproduces it."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight, generator=generator)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01, generator=generator)
            nn.init.zeros_(m.bias)
