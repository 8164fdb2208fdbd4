"""The textbook presets: none, immediate, fixed, the AWS backoff-and-jitter family, and code-aware.

Each rule comes as a pair: `_d_*` on numpy arrays (a fleet) and `_s_*` on plain floats (one
client); tests/test_policies_scalar.py holds every pair equal bit for bit.
"""

from __future__ import annotations

import math

from wsstorm.policies.numeric import MAX_DELAY, Arr, grow, grow1, nan_like, np
from wsstorm.policies.outcomes import FAIL_CODES
from wsstorm.policies.params import Param
from wsstorm.policies.rules import (
    P_BASE,
    P_CAP,
    P_FACTOR,
    P_UPTIME0,
    Params,
    Preset,
    capped,
    checks,
    need,
    reset_by_param,
    reset_on_open,
)


def _d_none(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """none: never reconnect (baseline: how many clients a disruption loses for good)."""
    return nan_like(k)


def _s_none(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    return math.nan


def _d_immediate(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """immediate: reconnect at once, every time (the anti-pattern)."""
    return np.zeros(k.shape)


def _s_immediate(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    return 0.0


def _d_fixed(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """fixed: a constant `delay` after every close or failure."""
    return np.full(k.shape, p["delay"])


def _s_fixed(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    return p["delay"]


def _d_exponential(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """exponential: min(cap, base*factor^(k-1)), no jitter.

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (Marc Brooker, 2015).
    """
    return grow(p["base"], p["factor"], k - 1, p["cap"])


def _s_exponential(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    return grow1(p["base"], p["factor"], k - 1, p["cap"])


def _d_full(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """full-jitter: U(0, min(cap, base*factor^(k-1))).

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015), "Full Jitter".
    """
    d: Arr = u[:, 0] * grow(p["base"], p["factor"], k - 1, p["cap"])
    return d


def _s_full(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    return u0 * grow1(p["base"], p["factor"], k - 1, p["cap"])


def _d_equal(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """equal-jitter: t = min(cap, base*factor^(k-1)); t/2 + U(0, t/2).

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015), "Equal Jitter".
    """
    t = grow(p["base"], p["factor"], k - 1, p["cap"])
    d: Arr = t / 2 + u[:, 0] * t / 2
    return d


def _s_equal(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    t = grow1(p["base"], p["factor"], k - 1, p["cap"])
    return t / 2 + u0 * t / 2


def _d_decorrelated(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """decorrelated-jitter: min(cap, U(base, 3*previous)), previous = base after a reset.

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015), "Decorrelated Jitter".
    """
    base = p["base"]
    prevb = np.where(np.isnan(prev), base, prev)
    hi = np.minimum(3 * prevb, MAX_DELAY)
    d: Arr = np.minimum(p["cap"], base + u[:, 0] * (hi - base))
    return d


def _s_decorrelated(
    p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float
) -> float:
    base = p["base"]
    hi = 3 * (base if prev != prev else prev)
    if hi > MAX_DELAY:
        hi = MAX_DELAY
    d = base + u0 * (hi - base)
    cap = p["cap"]
    return d if d <= cap else cap


def _d_code_aware(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """code-aware: reads the close code and server hints.

    1012 Service Restart (and 1001 Going Away): U(restart_min, restart_max) s.
    1013 Try Again Later, refused, HTTP 503/429: equal jitter over base*2^(k-1) capped at
    `cap` (a floor of t/2 so "later" really is later). 1006 and everything else: full jitter
    over the same curve. A server hint (Retry-After on a 503/429 handshake, or
    `retry-after=` in the close reason) wins: min(hint_cap, hint*(1+U(0,hint_jitter))).
    The retry count resets only after `min_uptime` s of uptime, so accept-then-1013 keeps
    backing off. Source: the close-code guidance this project started from (RFC 6455 7.2.3,
    RFC 6455/IANA 1012/1013), AWS jitter formulas.
    """
    t = grow(p["base"], 2.0, k - 1, p["cap"])
    u0 = u[:, 0]
    restart = p["restart_min"] + u0 * (p["restart_max"] - p["restart_min"])
    overload = (code == 1013) | (code == FAIL_CODES["refused"]) | (code == -503) | (code == -429)
    restarting = (code == 1012) | (code == 1001)
    d = np.where(restarting, restart, np.where(overload, t / 2 + u0 * t / 2, u0 * t))
    has_hint = np.isfinite(hint) & (hint >= 0)
    honoured = np.minimum(p["hint_cap"], np.where(has_hint, hint, 0.0) * (1 + p["hint_jitter"] * u[:, 1]))
    return np.where(has_hint, honoured, d)


def _s_code_aware(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    if hint >= 0 and hint != math.inf:  # NaN (no hint) fails the first test
        v = hint * (1 + p["hint_jitter"] * u1)
        cap = p["hint_cap"]
        return v if v <= cap else cap
    if code == 1012 or code == 1001:
        return p["restart_min"] + u0 * (p["restart_max"] - p["restart_min"])
    t = grow1(p["base"], 2.0, k - 1, p["cap"])
    if code == 1013 or code == -1 or code == -503 or code == -429:  # -1: refused
        return t / 2 + u0 * t / 2
    return u0 * t


PRESETS: list[Preset] = [
    Preset("none", "never reconnect", "baseline", "-", (), _d_none, lambda p: 0.0, reset_on_open, scalar=_s_none),
    Preset(
        "immediate",
        "0 s, always",
        "the anti-pattern",
        "on open",
        (),
        _d_immediate,
        lambda p: 0.0,
        reset_on_open,
        scalar=_s_immediate,
    ),
    Preset(
        "fixed",
        "constant delay",
        "-",
        "on open",
        (Param("delay", 1.0, help="delay, s"),),
        _d_fixed,
        lambda p: p["delay"],
        reset_on_open,
        scalar=_s_fixed,
    ),
    Preset(
        "exponential",
        "min(cap, base*2^n), no jitter",
        "AWS Arch. Blog 2015",
        "after min_uptime (0: on open)",
        (P_BASE, P_CAP, P_FACTOR, P_UPTIME0),
        _d_exponential,
        capped,
        reset_by_param,
        check=need("cap", "base"),
        scalar=_s_exponential,
    ),
    Preset(
        "full-jitter",
        "U(0, min(cap, base*2^n))",
        "AWS Arch. Blog 2015",
        "after min_uptime (0: on open)",
        (P_BASE, P_CAP, P_FACTOR, P_UPTIME0),
        _d_full,
        capped,
        reset_by_param,
        check=need("cap", "base"),
        scalar=_s_full,
    ),
    Preset(
        "equal-jitter",
        "t=min(cap, base*2^n); t/2 + U(0, t/2)",
        "AWS Arch. Blog 2015",
        "after min_uptime (0: on open)",
        (P_BASE, P_CAP, P_FACTOR, P_UPTIME0),
        _d_equal,
        capped,
        reset_by_param,
        check=need("cap", "base"),
        scalar=_s_equal,
    ),
    Preset(
        "decorrelated-jitter",
        "min(cap, U(base, 3*previous))",
        "AWS Arch. Blog 2015",
        "after min_uptime (0: on open)",
        (P_BASE, P_CAP, P_UPTIME0),
        _d_decorrelated,
        capped,
        reset_by_param,
        check=need("cap", "base"),
        scalar=_s_decorrelated,
    ),
    Preset(
        "code-aware",
        "1012: U(1,5); 1013/503/refused: equal jitter; 1006: full jitter; hint wins",
        "close-code guidance",
        "after min_uptime (10 s)",
        (
            P_BASE,
            P_CAP,
            Param("restart_min", 1.0, help="1012 delay low, s"),
            Param("restart_max", 5.0, help="1012 delay high, s"),
            Param("hint_cap", 60.0, help="largest honoured server hint, s"),
            Param("hint_jitter", 0.1, hi=1.0, help="spread added to a hint, fraction"),
            Param("min_uptime", 10.0, allow_inf=True, help="uptime (s) that resets the count"),
        ),
        _d_code_aware,
        lambda p: max(p["cap"], p["restart_max"], p["hint_cap"]),
        reset_by_param,
        check=checks(need("cap", "base"), need("restart_max", "restart_min")),
        scalar=_s_code_aware,
    ),
]
