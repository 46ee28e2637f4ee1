"""Declared parameters: one `Param` per knob of a method or a zoo model.

The same declaration drives validation (library, CLI, UI) and widget generation (UI), so a
range or a choice is written down exactly once.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any, Literal

from initlab.gains import GAIN_NAMES, parse_gain

Kind = Literal["float", "int", "bool", "choice", "gain", "ints"]


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type, default, valid range and a one-line help."""

    name: str
    kind: Kind
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is not allowed
    high_open: bool = False
    choices: tuple[Any, ...] = field(default=())

    def describe(self) -> str:
        """What is allowed, in words, for error messages and `--help` style listings."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "gain":
            return "a number >= 0 or a nonlinearity name (" + ", ".join(GAIN_NAMES) + ")"
        noun = {"float": "a number", "int": "a whole number", "ints": "a list of whole numbers"}
        return noun[self.kind] + (self._range_text() or f" within ±{MAX_MAGNITUDE:g}")

    def _range_text(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_fmt(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_fmt(self.high)}")
        return (" " + " and ".join(parts)) if parts else ""

    def check(self, value: Any, where: str) -> Any:
        """Return `value` normalised to the declared kind, or raise ValueError naming `where`."""
        if value is None and self.default is None:
            return None  # an optional parameter left out
        try:
            return _CHECKS[self.kind](self, value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{where}: must be {self.describe()}; got {shown(value)}") from None


MAX_MAGNITUDE = 1e30  # beyond this a float32 init overflows; no sane parameter is near it
SHOWN_CHARS = 60


# reprlib bounds the depth and the items it looks at, so a 5000-deep list is shown as
# [[[...]]] instead of exhausting the stack, and a 10 MB string costs nothing to show.
def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 4, 4, 4, 4
    r.maxstring = r.maxlong = r.maxother = SHOWN_CHARS
    return r


_REPR = _bounded_repr()


def shown(value: Any) -> str:
    """A value for an error message: strings quoted, anything long cut (never the whole input)."""
    if isinstance(value, str):  # the start of a long text is what a reader recognises
        text = repr(value[: SHOWN_CHARS + 1])  # quoted, control characters escaped
    elif isinstance(value, int) and value.bit_length() > 4 * SHOWN_CHARS:
        text = f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    else:
        text = _REPR.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _number(value: Any) -> float:
    # bool is an int in Python; a checkbox value is never a number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    x = float(value)  # OverflowError for an int beyond float range: caught by Param.check
    if not math.isfinite(x) or abs(x) > MAX_MAGNITUDE:
        raise ValueError(value)
    return x


def _in_range(p: Param, x: float) -> float:
    if p.low is not None and (x < p.low or (p.low_open and x == p.low)):
        raise ValueError(x)
    if p.high is not None and (x > p.high or (p.high_open and x == p.high)):
        raise ValueError(x)
    return x


def _check_float(p: Param, value: Any) -> float:
    return _in_range(p, _number(value))


def _check_int(p: Param, value: Any) -> int:
    x = _number(value)
    if not x.is_integer():
        raise ValueError(value)
    return int(_in_range(p, x))


def _check_ints(p: Param, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise TypeError(value)
    return tuple(_check_int(p, v) for v in value)


def _check_bool(p: Param, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _check_choice(p: Param, value: Any) -> Any:
    if value not in p.choices:
        raise ValueError(value)
    return value


def _check_gain(p: Param, value: Any) -> float | str:
    return parse_gain(value)


_CHECKS = {
    "float": _check_float,
    "int": _check_int,
    "ints": _check_ints,
    "bool": _check_bool,
    "choice": _check_choice,
    "gain": _check_gain,
}


def check_params(
    declared: tuple[Param, ...], given: dict[str, Any], where: str, what: str
) -> dict[str, Any]:
    """Validate `given` against `declared`: unknown keys are reported, missing ones defaulted."""
    names = [p.name for p in declared]
    unknown = [k for k in given if k not in names]
    if unknown:
        allowed = ", ".join(names) if names else "no parameters"
        raise ValueError(
            f"{where}: unknown parameter {shown(unknown[0])} for {what}; allowed: {allowed}"
        )
    return {p.name: p.check(given.get(p.name, p.default), f"{where}.{p.name}") for p in declared}
