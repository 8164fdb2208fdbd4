"""What a preset is (Preset: rule, reset, parameters, cap, source) and helpers the rule modules share."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wsstorm.policies.numeric import Arr
from wsstorm.policies.params import Param, fmt

Params = Mapping[str, float]  # a preset's resolved parameters (read-only by convention)
DelayFn = Callable[..., Arr]  # (p, k, prev, code, hint, const, u) -> delays, NaN = give up


@dataclass(frozen=True)
class Preset:
    """A named policy: its delay rule, reset rule, parameters, cap and source."""

    name: str
    rule: str
    source: str
    reset: str
    params: tuple[Param, ...]
    delay: DelayFn
    cap: Callable[[Params], float]
    reset_uptime: Callable[[Params], float]
    counts: Callable[[Arr | int], Arr | bool] | None = (
        None  # which outcomes advance the retry count (vector or scalar code)
    )
    const: Callable[[Params, int], float] | None = None  # per-process constant, from the process seed
    check: Callable[[Params], str | None] | None = None
    # scalar twin of `delay` (p, k, prev, code, hint, const, u0, u1) -> float, NaN = give up; the
    # same rule on plain floats for ClientPolicy (tests/test_policies_scalar.py holds them equal)
    scalar: Callable[..., float] | None = None
    # the rule also reads the uptime and the last delay returned: delay(..., up=, last=) (ably)
    context: bool = False
    # what `prev` holds after a decision, (prev, d, code) -> prev; default: the delay (NaN keeps prev)
    remember: Callable[[Arr, Arr, Arr], Arr] | None = None
    remember1: Callable[[float, float, int], float] | None = None  # its scalar twin

    @property
    def doc(self) -> str:
        """The rule's full description (the vector rule's docstring)."""
        return (self.delay.__doc__ or "").strip()


def need(a: str, b: str) -> Callable[[Params], str | None]:
    """A parameter check: `a` must be >= `b` (e.g. cap >= base)."""

    def check(p: Params) -> str | None:
        return f"{a} ({fmt(p[a])}) must be >= {b} ({fmt(p[b])})" if p[a] < p[b] else None

    return check


def checks(*fns: Callable[[Params], str | None]) -> Callable[[Params], str | None]:
    """Several parameter checks in order; the first message wins."""

    def check(p: Params) -> str | None:
        for fn in fns:
            msg = fn(p)
            if msg:
                return msg
        return None

    return check


def reset_on_open(p: Params) -> float:
    """Reset rule: the retry count restarts as soon as a connection opens."""
    return 0.0


def reset_by_param(p: Params) -> float:
    """Reset rule: the count restarts once a connection has stayed up `min_uptime` s."""
    return p["min_uptime"]


def closes_never_count(code: Arr | int) -> Arr | bool:
    """Only failed attempts (code < 0) advance the retry count; closes do not."""
    return code < 0


P_BASE = Param("base", 1.0, help="first delay scale, s")
P_CAP = Param("cap", 60.0, allow_inf=True, help="largest delay, s")
P_FACTOR = Param("factor", 2.0, lo=1.0, help="growth per retry")
P_UPTIME0 = Param("min_uptime", 0.0, allow_inf=True, help="uptime (s) that resets the count; 0 = on open, inf = never")
P_ATTEMPTS = Param("attempts", math.inf, allow_inf=True, help="give up after this many retries")


def capped(p: Params) -> float:
    """The largest delay is the `cap` parameter."""
    return p["cap"]
