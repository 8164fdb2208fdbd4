"""The parameter model of presets and wrappers: Param, value checks, canonical number text, PolicyError."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wsstorm.errors import UsageError


class PolicyError(UsageError):
    """A policy spec or policy file is invalid (one line, lists what is valid; exit 2)."""


@dataclass(frozen=True)
class Param:
    """One numeric preset parameter: default and allowed range."""

    name: str
    default: float
    lo: float = 0.0
    hi: float = math.inf
    allow_inf: bool = False
    choices: tuple[float, ...] = ()
    help: str = ""
    integer: bool = False  # a count (e.g. max_skips): a whole number

    def describe(self) -> str:
        """`name=default`, as error messages list valid parameters."""
        return f"{self.name}={fmt(self.default)}"


def fmt(v: float) -> str:
    """Shortest text that parses back to exactly v ('0.5', '30', 'inf')."""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(float(v))


def short(text: object, limit: int = 40) -> str:
    """User text quoted and cut to `limit` characters, safe for a one-line error."""
    s = str(text)
    return repr(s if len(s) <= limit else s[:limit] + "...")


def param_list(params: Sequence[Param]) -> str:
    """`base=1, cap=60, ...`: the valid parameters with their defaults."""
    return ", ".join(prm.describe() for prm in params)


def check_value(owner: str, prm: Param, raw: object) -> float:
    """One given value as a float within the parameter's range; PolicyError (one line) if not."""
    what = f"{owner}: {prm.name}"
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise PolicyError(f"{what}={short(raw)} is not a number")
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (ValueError, OverflowError):
        raise PolicyError(f"{what}={short(raw)} is not a number") from None
    if math.isnan(value):
        raise PolicyError(f"{what} must be a number, not NaN")
    if prm.choices:
        if value not in prm.choices:
            raise PolicyError(f"{what} must be one of {', '.join(fmt(c) for c in prm.choices)}")
        return value
    if math.isinf(value) and not (prm.allow_inf and value > 0):
        raise PolicyError(f"{what} must be finite" + (" or inf" if prm.allow_inf else ""))
    if prm.integer and not value.is_integer():
        raise PolicyError(f"{what} must be a whole number, got {fmt(value)}")
    if value < prm.lo:
        raise PolicyError(f"{what} must be >= {fmt(prm.lo)}, got {fmt(value)}")
    if value > prm.hi:
        raise PolicyError(f"{what} must be <= {fmt(prm.hi)}, got {fmt(value)}")
    return value


def resolve(owner: str, schema: Sequence[Param], given: Mapping[str, object]) -> dict[str, float]:
    """Every parameter of `schema`: the given values checked, defaults for the rest."""
    names = {prm.name: prm for prm in schema}
    for key in given:
        if key not in names:
            valid = f"valid: {param_list(schema)}" if schema else "it takes no parameters"
            raise PolicyError(f"{owner} has no parameter {short(key)}; {valid}")
    return {
        prm.name: (check_value(owner, prm, given[prm.name]) if prm.name in given else prm.default) for prm in schema
    }
