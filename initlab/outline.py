"""A model's outline without allocating it: built on PyTorch's meta device, where parameters
have shapes but no storage, so even a very large zoo model is outlined in milliseconds."""

from __future__ import annotations

from typing import Any

import torch

from initlab.models import build_model


def meta_model(spec: dict[str, Any], allow_custom: bool | None = None) -> torch.nn.Module:
    """The model of a (validated) spec on the meta device: shapes without storage."""
    with torch.device("meta"):
        return build_model(spec, device="meta", allow_custom=allow_custom)
