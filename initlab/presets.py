"""Presets: named schemes that ship with initlab, each with a one-line "why" and its source.

The registry itself (titles, reasons, sources, rule dicts) is plain data in
`initlab.preset_rules`; here a preset becomes a `Scheme` for a model's activation, and a scheme
dict that names only a preset (`{"name": ..., "preset": "kaiming_normal"}`, no rules) is read
with that preset's rules: `scheme_from_dict`, what the experiment reader uses.
"""

from __future__ import annotations

from typing import Any

from initlab.outline import meta_model
from initlab.params import shown
from initlab.preset_rules import PRESETS, Preset, check_preset_name, gain_name, rules_for
from initlab.schemes import Scheme

__all__ = ["PRESETS", "Preset", "check_preset_name", "gain_name", "preset", "scheme_from_dict"]


def preset(name: str, activation: str = "relu", model: dict[str, Any] | None = None) -> Scheme:
    """The scheme of preset `name`, with gains for `activation`; with `model` (a normalized
    model spec), for that model where the preset depends on it (a Hugging Face
    architecture's residual projections, its PyTorch default)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {shown(name)}; choose one of: {', '.join(PRESETS)}")
    entry = PRESETS[name]
    rules = rules_for(entry, activation, model, meta_model)
    scheme = Scheme.from_dict({"name": entry.title, "rules": rules}, f"preset {name}")
    return Scheme(scheme.name, scheme.rules, name)


def scheme_from_dict(
    d: Any, where: str = "scheme", activation: str = "relu", model: dict[str, Any] | None = None
) -> Scheme:
    """Validate a scheme dict; `{"preset": ...}` without rules takes the preset's rules (with
    gains for `activation`, and for `model` where the preset depends on it) and, unless the
    dict names it, the preset's title."""
    if isinstance(d, dict) and "rules" not in d and isinstance(d.get("preset"), str):
        key = d["preset"]
        if key in PRESETS:  # an unknown key is refused below, with the field named
            scheme = _preset_at(key, activation, model, f"{where}.preset")
            rules = [rule.to_dict() for rule in scheme.rules]
            d = {"name": scheme.name, **d, "rules": rules}
    return Scheme.from_dict(d, where)


def _preset_at(key: str, activation: str, model: dict[str, Any] | None, where: str) -> Scheme:
    """`preset`, with a refusal's message starting at the scheme's field."""
    try:
        return preset(key, activation, model)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
