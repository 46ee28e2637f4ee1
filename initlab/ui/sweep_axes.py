"""The Sweep view's axes: which dotted paths of this experiment are offered, how each reads on
the page, the values it starts with, and the typed text as the sweep file's axis.

No streamlit here. The typed values become exactly what a sweep file holds (a list, or
`{"logspace": [a, b, n]}`), and `initlab.sweep` checks them, so the page's errors read as the
command line's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from initlab.params import shown
from initlab.sweep import axis_values

MAX_RULE_AXES = 12  # scheme parameters offered (a preset of many rules would list dozens)
RULE_PARAMS = ("std", "gain")  # what sets a weight's or a bias's scale
SPACED = re.compile(r"^\s*(linspace|logspace)\s*[(:]?(.*?)\)?\s*$", re.IGNORECASE)
SPLIT = re.compile(r"[,;\s]+")
FORMS = "a list such as 10, 20, 50, or logspace(a, b, n) (10^a to 10^b), or linspace(a, b, n)"


@dataclass(frozen=True)
class Axis:
    """One path the page offers: its label, and the values it starts with (as text)."""

    path: str
    label: str
    default: str


def offered(base: dict[str, Any]) -> list[Axis]:
    """The useful axes of this experiment: the model's depth and width where it has them, the
    std and gain of each scheme's rules (what the phase diagram's σ_w² and σ_b² follow), and
    the seeds."""
    model = base.get("model", {})
    found = [
        Axis(f"model.{name}", f"model {name}", _around(model[name], whole=True))
        for name in ("depth", "width")
        if isinstance(model.get(name), int) and not isinstance(model.get(name), bool)
    ]
    found += _rule_axes(base.get("schemes", []))[:MAX_RULE_AXES]
    return [*found, Axis("seeds", "seeds", "0, 1, 2")]


def _rule_axes(schemes: list[dict[str, Any]]) -> list[Axis]:
    found = []
    for i, scheme in enumerate(schemes):
        for j, rule in enumerate(scheme.get("rules", [])):
            where = rule["layers"] + (f" {rule['name']}" if rule.get("name") else "")
            for slot in ("weight", "bias"):
                spec = rule.get(slot)
                for param in RULE_PARAMS if isinstance(spec, dict) else ():
                    if param in spec:
                        label = f"{scheme['name']}: {where} {slot} {param}"
                        path = f"schemes.{i}.rules.{j}.{slot}.{param}"
                        found.append(Axis(path, label, _around(spec[param], whole=False)))
    return found


def _around(value: Any, whole: bool) -> str:
    """Half, the value and twice it: a grid that brackets what the page has now."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return "0.5, 1, 2"
    if whole:
        return ", ".join(str(v) for v in sorted({max(1, value // 2), value, 2 * value}))
    return ", ".join(f"{v:.3g}" for v in (value / 2, value, 2 * value))


def axis_spec(path: str, text: str) -> list[Any] | dict[str, list[Any]]:
    """Typed text as the sweep file's axis: a list of numbers, or {"logspace": [a, b, n]}
    (likewise linspace), checked as `initlab.sweep` checks a file (ValueError naming the axis
    and what is allowed)."""
    spaced = SPACED.match(text)
    body = spaced[2] if spaced else text
    values = [_number(path, part) for part in SPLIT.split(body.strip()) if part]
    if not values and not spaced:
        raise ValueError(f"axes.{path}: no values; type {FORMS}")
    spec: list[Any] | dict[str, list[Any]] = {spaced[1].lower(): values} if spaced else values
    axis_values(path, spec)  # the file's own checks: the count, [start, stop, count]
    return spec


def _number(path: str, part: str) -> int | float:
    """A whole number as an int (a depth, a seed), else a float; anything else is refused."""
    try:
        return int(part)
    except ValueError:
        pass
    try:
        value = float(part)
    except ValueError:
        raise ValueError(f"axes.{path}: {shown(part)} is not a number; type {FORMS}") from None
    if not math.isfinite(value):
        raise ValueError(f"axes.{path}: {shown(part)} is not a finite number; type {FORMS}")
    return value
