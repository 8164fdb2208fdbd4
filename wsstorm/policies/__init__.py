"""Reconnect policies: pure, seeded rules for the delay before the next attempt (docs/contracts.md).

The core is one pure function, :func:`decide`: policy state + outcome + uniform draws in,
delays + new state out, on numpy arrays; :class:`VectorPolicy` (a fleet) wraps it. Its scalar
twin :func:`decide_scalar` (plain floats, each preset's `_s_*` next to its `_d_*`) gives the same
floats for one client in microseconds; :class:`ClientPolicy` wraps that, because a Locust
process decides thousands of reconnects at once and must not measure itself.
tests/test_policies_scalar.py holds the twins equal, step by step, for every preset.
"""

from __future__ import annotations

import math
import random
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from wsstorm.errors import UsageError

__all__ = [
    "CATALOG",
    "FAIL_CODES",
    "ClientPolicy",
    "Outcome",
    "PolicyError",
    "PolicySpec",
    "PolicyState",
    "Preset",
    "ScalarState",
    "VectorPolicy",
    "client_uniforms",
    "code_label",
    "decide",
    "decide_scalar",
    "hint_from_reason",
    "initial_scalar_state",
    "load_policy_file",
    "on_open_scalar",
    "outcome_code",
    "parse_code",
    "parse_policy",
]


class PolicyError(UsageError):
    """A policy spec or policy file is invalid (one line, lists what is valid; exit 2)."""


# ---------------------------------------------------------------------------
# Outcomes and their integer encoding (the vector API's `code` convention)

# code >= 0: close code of an open connection. code < 0: the attempt failed before open.
FAIL_CODES: dict[str, int] = {"refused": -1, "timeout": -2, "tls": -3, "dns": -4, "protocol": -5, "reset": -6}
_FAIL_NAMES = {v: k for k, v in FAIL_CODES.items()}
HTTP_UNKNOWN = 599  # an http_status failure without a status is encoded as -599


@dataclass(frozen=True)
class Outcome:
    """What ended the last connection (`code`) or attempt (`fail`, `status`, `retry_after`)."""

    code: int | None = None
    fail: str | None = None
    status: int | None = None
    retry_after: float | None = None
    uptime_s: float = 0.0


def outcome_code(outcome: Outcome) -> int:
    """Encode an outcome as one int: close code, -1..-6 for failure kinds, -status for HTTP."""
    if outcome.code is not None:
        return int(outcome.code)
    if outcome.fail is None:
        return 1006  # nothing known: treat like an abnormal closure
    if outcome.fail == "http_status":
        status = outcome.status
        return -int(status) if status is not None and 100 <= int(status) <= 999 else -HTTP_UNKNOWN
    return FAIL_CODES.get(outcome.fail, FAIL_CODES["protocol"])


def code_label(code: int) -> str:
    """The event log's `after_code` text for an encoded outcome: '1013', 'refused', 'http_503'."""
    code = int(code)
    if code >= 0:
        return str(code)
    if code in _FAIL_NAMES:
        return _FAIL_NAMES[code]
    return f"http_{-code}"


def parse_code(text: str) -> int:
    """Parse an outcome given by the user ('1013', 'refused', 'http_503') into its int encoding."""
    t = str(text).strip().lower()
    if t in FAIL_CODES:
        return FAIL_CODES[t]
    m = re.fullmatch(r"http_?(\d{3})", t)
    if m:
        return -int(m.group(1))
    if re.fullmatch(r"\d{1,4}", t) and 1000 <= int(t) <= 4999:
        return int(t)
    raise PolicyError(
        f"invalid outcome {text[:40]!r}; valid: a close code 1000-4999, "
        f"{', '.join(FAIL_CODES)}, or http_<status> (e.g. http_503)"
    )


# the number must end there: "retry-after=1e3" is no hint, not a hint of 1 s
_HINT_RE = re.compile(r"retry-after\s*=\s*([0-9]{1,9}(?:\.[0-9]{1,9})?)(?![0-9.eE])", re.IGNORECASE)


def hint_from_reason(reason: str | None) -> float | None:
    """Read a `retry-after=<seconds>` delay hint from a close reason (untrusted text), or None."""
    if not reason or not isinstance(reason, str):
        return None
    m = _HINT_RE.search(reason[:1024])
    if not m:
        return None
    value = float(m.group(1))
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------
# Parameters and presets


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

    def describe(self) -> str:
        return f"{self.name}={_fmt(self.default)}"


def _fmt(v: float) -> str:
    """Shortest text that parses back to exactly v ('0.5', '30', 'inf')."""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(float(v))


Arr = np.ndarray
DelayFn = Callable[..., Arr]  # (p, k, prev, code, hint, const, u) -> delays, NaN = give up

_MAX_DELAY = 1e12  # s; every delay is clamped here so it stays finite even with cap=inf


@dataclass(frozen=True)
class Preset:
    """A named policy: its delay rule, reset rule, parameters, cap and source."""

    name: str
    rule: str
    source: str
    reset: str
    params: tuple[Param, ...]
    delay: DelayFn
    cap: Callable[[Mapping[str, float]], float]
    reset_uptime: Callable[[Mapping[str, float]], float]
    counts: Callable[[Arr], Arr] | None = None  # which outcomes advance the retry count
    const: Callable[[Mapping[str, float], Arr], Arr] | None = None  # per-process constant
    check: Callable[[Mapping[str, float]], str | None] | None = None
    # scalar twin of `delay` (p, k, prev, code, hint, const, u0, u1) -> float, NaN = give up; the
    # same rule on plain floats for ClientPolicy (tests/test_policies_scalar.py holds them equal)
    scalar: Callable[..., float] | None = None

    @property
    def doc(self) -> str:
        return (self.delay.__doc__ or "").strip()


def _grow(base: Arr | float, factor: Arr | float, exp: Arr, cap: float) -> Arr:
    """min(cap, base * factor**exp), exact for small exponents, never NaN (0*inf) and never inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.fmin(np.multiply(base, np.power(float(factor), exp, dtype=np.float64)), 1e300)
    v = np.where(np.greater(base, 0), v, 0.0)  # fmin turned 0*inf (NaN) into 1e300
    return np.minimum(v, cap)



_POW_TABLE_TOP = 1024  # exponents -1.._POW_TABLE_TOP come from the table; beyond (rare), one numpy call


@lru_cache(maxsize=64)
def _pow_table(factor: float) -> tuple[float, ...]:
    """factor**e for e = -1.._POW_TABLE_TOP, computed by numpy so the scalar twin matches it bit for bit.

    numpy's vectorised power is not libm's pow (they differ in the last bit for ~5% of inputs),
    so the scalar path must not use `**` or math.pow.
    """
    with np.errstate(over="ignore"):
        return tuple(np.power(float(factor), np.arange(-1, _POW_TABLE_TOP + 1), dtype=np.float64).tolist())


def _grow1(base: float, factor: float, exp: int, cap: float) -> float:
    """Scalar twin of :func:`_grow` (same floats, bit for bit)."""
    if -1 <= exp <= _POW_TABLE_TOP:
        pw = _pow_table(factor)[exp + 1]
    else:
        with np.errstate(over="ignore"):
            pw = float(np.power(float(factor), np.array([exp], dtype=np.int64), dtype=np.float64)[0])
    if not base > 0:
        return 0.0 if cap >= 0.0 else cap
    v = base * pw
    if not v <= 1e300:  # also NaN (0*inf), as np.fmin does
        v = 1e300
    return v if v <= cap else cap


def _nan(k: Arr) -> Arr:
    return np.full(k.shape, np.nan)


def _d_none(p, k, prev, code, hint, const, u):
    """none: never reconnect (baseline: how many clients a disruption loses for good)."""
    return _nan(k)


def _s_none(p, k, prev, code, hint, const, u0, u1):
    return math.nan


def _d_immediate(p, k, prev, code, hint, const, u):
    """immediate: reconnect at once, every time (the anti-pattern)."""
    return np.zeros(k.shape)


def _s_immediate(p, k, prev, code, hint, const, u0, u1):
    return 0.0


def _d_fixed(p, k, prev, code, hint, const, u):
    """fixed: a constant `delay` after every close or failure."""
    return np.full(k.shape, p["delay"])


def _s_fixed(p, k, prev, code, hint, const, u0, u1):
    return p["delay"]


def _d_exponential(p, k, prev, code, hint, const, u):
    """exponential: min(cap, base*factor^(k-1)), no jitter.

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (Marc Brooker, 2015).
    """
    return _grow(p["base"], p["factor"], k - 1, p["cap"])


def _s_exponential(p, k, prev, code, hint, const, u0, u1):
    return _grow1(p["base"], p["factor"], k - 1, p["cap"])


def _d_full(p, k, prev, code, hint, const, u):
    """full-jitter: U(0, min(cap, base*factor^(k-1))).

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015), "Full Jitter".
    """
    return u[:, 0] * _grow(p["base"], p["factor"], k - 1, p["cap"])


def _s_full(p, k, prev, code, hint, const, u0, u1):
    return u0 * _grow1(p["base"], p["factor"], k - 1, p["cap"])


def _d_equal(p, k, prev, code, hint, const, u):
    """equal-jitter: t = min(cap, base*factor^(k-1)); t/2 + U(0, t/2).

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015), "Equal Jitter".
    """
    t = _grow(p["base"], p["factor"], k - 1, p["cap"])
    return t / 2 + u[:, 0] * t / 2


def _s_equal(p, k, prev, code, hint, const, u0, u1):
    t = _grow1(p["base"], p["factor"], k - 1, p["cap"])
    return t / 2 + u0 * t / 2


def _d_decorrelated(p, k, prev, code, hint, const, u):
    """decorrelated-jitter: min(cap, U(base, 3*previous)), previous = base after a reset.

    Source: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015), "Decorrelated Jitter".
    """
    base = p["base"]
    prevb = np.where(np.isnan(prev), base, prev)
    hi = np.minimum(3 * prevb, _MAX_DELAY)
    return np.minimum(p["cap"], base + u[:, 0] * (hi - base))


def _s_decorrelated(p, k, prev, code, hint, const, u0, u1):
    base = p["base"]
    hi = 3 * (base if prev != prev else prev)
    if hi > _MAX_DELAY:
        hi = _MAX_DELAY
    d = base + u0 * (hi - base)
    cap = p["cap"]
    return d if d <= cap else cap


def _d_code_aware(p, k, prev, code, hint, const, u):
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
    t = _grow(p["base"], 2.0, k - 1, p["cap"])
    u0 = u[:, 0]
    restart = p["restart_min"] + u0 * (p["restart_max"] - p["restart_min"])
    overload = (code == 1013) | (code == FAIL_CODES["refused"]) | (code == -503) | (code == -429)
    restarting = (code == 1012) | (code == 1001)
    d = np.where(restarting, restart, np.where(overload, t / 2 + u0 * t / 2, u0 * t))
    has_hint = np.isfinite(hint) & (hint >= 0)
    honoured = np.minimum(p["hint_cap"], np.where(has_hint, hint, 0.0) * (1 + p["hint_jitter"] * u[:, 1]))
    return np.where(has_hint, honoured, d)


def _s_code_aware(p, k, prev, code, hint, const, u0, u1):
    if hint >= 0 and hint != math.inf:  # NaN (no hint) fails the first test
        v = hint * (1 + p["hint_jitter"] * u1)
        cap = p["hint_cap"]
        return v if v <= cap else cap
    if code == 1012 or code == 1001:
        return p["restart_min"] + u0 * (p["restart_max"] - p["restart_min"])
    t = _grow1(p["base"], 2.0, k - 1, p["cap"])
    if code == 1013 or code == -1 or code == -503 or code == -429:  # -1: refused
        return t / 2 + u0 * t / 2
    return u0 * t


def _d_socketio(p, k, prev, code, hint, const, u):
    """socketio: backo2 as used by the socket.io-client Manager.

    ms = base*factor^(k-1); r = U(0,1); dev = floor(r*jitter*ms); ms -/+ dev (minus when
    floor(r*10) is even: the same draw picks the sign and the size); then min(ms, cap),
    truncated to whole ms. The cap is applied AFTER the jitter, so from the 4th retry on
    (defaults) most delays are exactly 5 s: the jitter is lost. The Manager resets the backoff
    on every close and every successful (re)connect, and gives up after `attempts`.
    Defaults: reconnectionDelay 1000, reconnectionDelayMax 5000, randomizationFactor 0.5,
    reconnectionAttempts Infinity. Source: socket.io-client lib/manager.ts, backo2 duration().
    """
    r = u[:, 0]
    ms = _grow(p["base"] * 1000.0, p["factor"], k - 1, math.inf)
    dev = np.floor(r * p["jitter"] * ms)
    minus = (np.floor(r * 10).astype(np.int64) & 1) == 0
    ms = np.where(minus, ms - dev, ms + dev)
    d = np.trunc(np.minimum(ms, p["cap"] * 1000.0)) / 1000.0
    return np.where(k > p["attempts"], np.nan, d)


def _s_socketio(p, k, prev, code, hint, const, u0, u1):
    if k > p["attempts"]:
        return math.nan
    ms = _grow1(p["base"] * 1000.0, p["factor"], k - 1, math.inf)
    dev = float(math.floor(u0 * p["jitter"] * ms))
    ms = ms - dev if math.floor(u0 * 10) & 1 == 0 else ms + dev
    cap = p["cap"] * 1000.0
    return float(math.trunc(ms if ms <= cap else cap)) / 1000.0


def _d_rws(p, k, prev, code, hint, const, u):
    """reconnecting-websocket 4.4: min(max, min*1.3^(k-1)).

    min = minReconnectionDelay = 1000 + Math.random()*4000 ms, evaluated ONCE when the module
    loads, so every client of one process shares it and processes differ (here: drawn from the
    process seed). The retry count resets only when a connection stays up minUptime (5 s);
    a server that accepts then closes within 5 s sees the count keep growing.
    Defaults: maxReconnectionDelay 10000, reconnectionDelayGrowFactor 1.3, minUptime 5000,
    maxRetries Infinity. Source: pladaria/reconnecting-websocket reconnecting-websocket.ts.
    """
    d = _grow(const, p["factor"], k - 1, p["cap"])
    return np.where(k > p["attempts"], np.nan, d)


def _s_rws(p, k, prev, code, hint, const, u0, u1):
    return math.nan if k > p["attempts"] else _grow1(const, p["factor"], k - 1, p["cap"])


_SIGNALR = np.array([0.0, 2.0, 10.0, 30.0])


def _d_signalr(p, k, prev, code, hint, const, u):
    """signalr: [0, 2, 10, 30] s, then give up (null).

    The retry count restarts when the connection is re-established. Source: ASP.NET Core
    SignalR DefaultReconnectPolicy, DEFAULT_RETRY_DELAYS_IN_MILLISECONDS = [0, 2000, 10000,
    30000, null] (JavaScript client; the .NET client uses the same table).
    """
    idx = np.clip(k - 1, 0, len(_SIGNALR) - 1)
    return np.where(k <= len(_SIGNALR), _SIGNALR[idx], np.nan)


_SIGNALR_1 = tuple(_SIGNALR.tolist())


def _s_signalr(p, k, prev, code, hint, const, u0, u1):
    return _SIGNALR_1[k - 1] if k <= len(_SIGNALR_1) else math.nan


_PHX_SOCKET = np.array([10, 50, 100, 150, 200, 250, 500, 1000, 2000]) / 1000.0
_PHX_REJOIN = np.array([1000, 2000, 5000]) / 1000.0


def _d_phoenix(p, k, prev, code, hint, const, u):
    """phoenix: socket reconnectAfterMs [10,50,100,150,200,250,500,1000,2000][tries-1] || 5000 ms.

    The socket does not reconnect after a close with code 1000 (onConnClose checks
    `closeCode !== 1000`) and resets its timer on open. `rejoin=1` uses the channel rejoin
    timer instead ([1000,2000,5000][tries-1] || 10000 ms), which phoenix applies to channel
    joins once the socket is up, not to the socket itself. Source: phoenix.js socket.js,
    constructor defaults and onConnOpen/onConnClose.
    """
    table, after = (_PHX_REJOIN, 10.0) if p["rejoin"] else (_PHX_SOCKET, 5.0)
    idx = np.clip(k - 1, 0, len(table) - 1)
    d = np.where(k <= len(table), table[idx], after)
    return np.where(code == 1000, np.nan, d)


_PHX_SOCKET_1, _PHX_REJOIN_1 = tuple(_PHX_SOCKET.tolist()), tuple(_PHX_REJOIN.tolist())


def _s_phoenix(p, k, prev, code, hint, const, u0, u1):
    if code == 1000:
        return math.nan
    table, after = (_PHX_REJOIN_1, 10.0) if p["rejoin"] else (_PHX_SOCKET_1, 5.0)
    return table[k - 1] if k <= len(table) else after


def _d_grpc(p, k, prev, code, hint, const, u):
    """grpc: first retry after INITIAL_BACKOFF, then min(b*1.6, MAX) with +-JITTER.

    k=1: base exactly; k>=2: min(max, base*1.6^(k-1)) * (1 + U(-jitter, jitter)): the jitter
    is applied after the cap, so delays reach cap*(1+jitter) = 144 s. Resets when a
    connection becomes READY. The spec measures the backoff from the start of the failed
    attempt (SleepUntil(deadline)); here it is the wait after the failure. MIN_CONNECT_TIMEOUT
    (20 s) is the connect timeout, not a delay, and is not modelled. Source: grpc/grpc
    doc/connection-backoff.md (INITIAL_BACKOFF 1 s, MULTIPLIER 1.6, JITTER 0.2, MAX_BACKOFF
    120 s); grpc-go internal/backoff.
    """
    b = _grow(p["base"], p["factor"], k - 1, p["cap"])
    return np.where(k == 1, p["base"], b * (1 + p["jitter"] * (2 * u[:, 0] - 1)))


def _s_grpc(p, k, prev, code, hint, const, u0, u1):
    if k == 1:
        return p["base"]
    return _grow1(p["base"], p["factor"], k - 1, p["cap"]) * (1 + p["jitter"] * (2 * u0 - 1))


def _d_centrifuge(p, k, prev, code, hint, const, u):
    """centrifuge: min(max, min + randomInt(0, min(max, min*2^(k-1)))) in whole ms.

    Full jitter on top of a floor of `base` (minReconnectDelay 500 ms, maxReconnectDelay
    20000 ms); the step is capped at 31; resets when connected. Close codes 3500-3999 and
    4500-4999 mean "do not reconnect" to centrifuge clients: give up. Source: centrifuge-js
    src/utils.ts backoff(), client defaults.
    """
    lo_ms, hi_ms = p["base"] * 1000.0, p["cap"] * 1000.0
    top = np.minimum(hi_ms, _grow(lo_ms, 2.0, np.minimum(k - 1, 31), math.inf))
    d = np.minimum(hi_ms, lo_ms + np.floor(u[:, 0] * (top + 1))) / 1000.0
    permanent = ((code >= 3500) & (code <= 3999)) | ((code >= 4500) & (code <= 4999))
    return np.where(permanent, np.nan, d)


def _s_centrifuge(p, k, prev, code, hint, const, u0, u1):
    if 3500 <= code <= 3999 or 4500 <= code <= 4999:
        return math.nan
    lo_ms, hi_ms = p["base"] * 1000.0, p["cap"] * 1000.0
    top = _grow1(lo_ms, 2.0, k - 1 if k - 1 < 31 else 31, math.inf)
    if top > hi_ms:
        top = hi_ms
    d = lo_ms + float(math.floor(u0 * (top + 1)))
    return (d if d <= hi_ms else hi_ms) / 1000.0


def _d_websockets(p, k, prev, code, hint, const, u):
    """websockets-py: python websockets' `async for ws in connect(...)` reconnect loop.

    Backoff applies to failed connection attempts only: the 1st after a success waits
    U(0, BACKOFF_INITIAL_DELAY=5) s, then BACKOFF_MIN_DELAY 3.1 s x BACKOFF_FACTOR 1.618 up to
    BACKOFF_MAX_DELAY 90 s. After a close of an open connection the documented loop
    (`except ConnectionClosed: continue`) reconnects at once: delay 0, and the backoff was
    already reset by the successful open. Fatal (give up): HTTP statuses other than
    500/502/503/504 (so 429 too) and protocol errors. Source: websockets 17 client.py
    backoff() / process_exception(), asyncio/client.py connect.__aiter__.
    """
    closed = code >= 0
    first = u[:, 0] * p["initial"]
    later = _grow(p["base"], p["factor"], k - 2, p["cap"])
    d = np.where(closed, 0.0, np.where(k <= 1, first, later))
    retryable = (code == -500) | (code == -502) | (code == -503) | (code == -504)
    http = (code <= -100) & ~retryable
    fatal = http | (code == FAIL_CODES["protocol"])
    return np.where(fatal, np.nan, d)


def _s_websockets(p, k, prev, code, hint, const, u0, u1):
    if code == -5 or (code <= -100 and code not in (-500, -502, -503, -504)):  # -5: protocol
        return math.nan
    if code >= 0:
        return 0.0
    return u0 * p["initial"] if k <= 1 else _grow1(p["base"], p["factor"], k - 2, p["cap"])


def _rws_min(p: Mapping[str, float], process_seeds: Arr) -> Arr:
    """Per-process minReconnectionDelay: min_delay + U(0, min_spread), one draw per process seed."""
    out = np.empty(process_seeds.shape, dtype=np.float64)
    for s in np.unique(process_seeds):
        rng = np.random.default_rng(np.random.SeedSequence([int(s) % 2**64, 0x525753]))
        out[process_seeds == s] = p["min_delay"] + p["min_spread"] * rng.random()
    return out


def _need(a: str, b: str) -> Callable[[Mapping[str, float]], str | None]:
    def check(p: Mapping[str, float]) -> str | None:
        return f"{a} ({_fmt(p[a])}) must be >= {b} ({_fmt(p[b])})" if p[a] < p[b] else None

    return check


def _checks(*fns: Callable[[Mapping[str, float]], str | None]) -> Callable[[Mapping[str, float]], str | None]:
    def check(p: Mapping[str, float]) -> str | None:
        for fn in fns:
            msg = fn(p)
            if msg:
                return msg
        return None

    return check


def _on_open(p: Mapping[str, float]) -> float:
    return 0.0


def _by_param(p: Mapping[str, float]) -> float:
    return p["min_uptime"]


def _closes_never_count(code: Arr) -> Arr:
    return code < 0


_P_BASE = Param("base", 1.0, help="first delay scale, s")
_P_CAP = Param("cap", 60.0, allow_inf=True, help="largest delay, s")
_P_FACTOR = Param("factor", 2.0, lo=1.0, help="growth per retry")
_P_UPTIME0 = Param("min_uptime", 0.0, allow_inf=True, help="uptime (s) that resets the count; 0 = on open, inf = never")
_P_ATTEMPTS = Param("attempts", math.inf, allow_inf=True, help="give up after this many retries")


def _capped(p: Mapping[str, float]) -> float:
    return p["cap"]


_PRESETS: list[Preset] = [
    Preset("none", "never reconnect", "baseline", "-", (), _d_none, lambda p: 0.0, _on_open, scalar=_s_none),
    Preset(
        "immediate", "0 s, always", "the anti-pattern", "on open",
        (), _d_immediate, lambda p: 0.0, _on_open, scalar=_s_immediate,
    ),
    Preset(
        "fixed", "constant delay", "-", "on open",
        (Param("delay", 1.0, help="delay, s"),), _d_fixed, lambda p: p["delay"], _on_open,
        scalar=_s_fixed,
    ),
    Preset(
        "exponential", "min(cap, base*2^n), no jitter", "AWS Arch. Blog 2015", "after min_uptime (0: on open)",
        (_P_BASE, _P_CAP, _P_FACTOR, _P_UPTIME0), _d_exponential, _capped, _by_param, check=_need("cap", "base"),
        scalar=_s_exponential,
    ),
    Preset(
        "full-jitter", "U(0, min(cap, base*2^n))", "AWS Arch. Blog 2015", "after min_uptime (0: on open)",
        (_P_BASE, _P_CAP, _P_FACTOR, _P_UPTIME0), _d_full, _capped, _by_param, check=_need("cap", "base"),
        scalar=_s_full,
    ),
    Preset(
        "equal-jitter", "t=min(cap, base*2^n); t/2 + U(0, t/2)", "AWS Arch. Blog 2015",
        "after min_uptime (0: on open)",
        (_P_BASE, _P_CAP, _P_FACTOR, _P_UPTIME0), _d_equal, _capped, _by_param, check=_need("cap", "base"),
        scalar=_s_equal,
    ),
    Preset(
        "decorrelated-jitter", "min(cap, U(base, 3*previous))", "AWS Arch. Blog 2015",
        "after min_uptime (0: on open)",
        (_P_BASE, _P_CAP, _P_UPTIME0), _d_decorrelated, _capped, _by_param, check=_need("cap", "base"),
        scalar=_s_decorrelated,
    ),
    Preset(
        "code-aware", "1012: U(1,5); 1013/503/refused: equal jitter; 1006: full jitter; hint wins",
        "close-code guidance", "after min_uptime (10 s)",
        (
            _P_BASE,
            _P_CAP,
            Param("restart_min", 1.0, help="1012 delay low, s"),
            Param("restart_max", 5.0, help="1012 delay high, s"),
            Param("hint_cap", 60.0, help="largest honoured server hint, s"),
            Param("hint_jitter", 0.1, hi=1.0, help="spread added to a hint, fraction"),
            Param("min_uptime", 10.0, allow_inf=True, help="uptime (s) that resets the count"),
        ),
        _d_code_aware,
        lambda p: max(p["cap"], p["restart_max"], p["hint_cap"]),
        _by_param,
        check=_checks(_need("cap", "base"), _need("restart_max", "restart_min")),
        scalar=_s_code_aware,
    ),
    Preset(
        "socketio", "base*2^n +/- 50% jitter, THEN min(5 s); reset every close", "socket.io-client backo2",
        "on open and on every close",
        (
            Param("base", 1.0, help="reconnectionDelay, s"),
            Param("cap", 5.0, help="reconnectionDelayMax, s"),
            _P_FACTOR,
            Param("jitter", 0.5, hi=1.0, help="randomizationFactor"),
            _P_ATTEMPTS,
        ),
        _d_socketio, _capped, _on_open, check=_need("cap", "base"),
        scalar=_s_socketio,
    ),
    Preset(
        "reconnecting-websocket", "min(10 s, m*1.3^n), m = 1 s + U(0,4 s) once per process",
        "reconnecting-websocket 4.4", "after min_uptime (5 s)",
        (
            Param("min_delay", 1.0, help="minReconnectionDelay low end, s"),
            Param("min_spread", 4.0, help="random part of minReconnectionDelay, s"),
            Param("factor", 1.3, lo=1.0, help="reconnectionDelayGrowFactor"),
            Param("cap", 10.0, help="maxReconnectionDelay, s"),
            Param("min_uptime", 5.0, allow_inf=True, help="minUptime, s"),
            _P_ATTEMPTS,
        ),
        _d_rws, _capped, _by_param, const=_rws_min, check=_need("cap", "min_delay"),
        scalar=_s_rws,
    ),
    Preset(
        "signalr", "[0, 2, 10, 30] s, then give up", "ASP.NET Core SignalR DefaultReconnectPolicy", "on open",
        (), _d_signalr, lambda p: 30.0, _on_open,
        scalar=_s_signalr,
    ),
    Preset(
        "phoenix", "[10,50,100,150,200,250,500,1000,2000] ms, then 5 s; none after 1000", "phoenix.js Socket",
        "on open",
        (Param("rejoin", 0.0, choices=(0.0, 1.0), help="1: the channel rejoin timer [1,2,5] s then 10 s"),),
        _d_phoenix, lambda p: 10.0 if p["rejoin"] else 5.0, _on_open,
        scalar=_s_phoenix,
    ),
    Preset(
        "grpc", "1 s, then min(120 s, 1.6^n) * (1 +/- 0.2)", "gRPC connection-backoff spec", "on open (READY)",
        (
            Param("base", 1.0, help="INITIAL_BACKOFF, s"),
            Param("factor", 1.6, lo=1.0, help="MULTIPLIER"),
            Param("jitter", 0.2, hi=1.0, help="JITTER"),
            Param("cap", 120.0, help="MAX_BACKOFF, s"),
        ),
        _d_grpc, lambda p: p["cap"] * (1 + p["jitter"]), _on_open, check=_need("cap", "base"),
        scalar=_s_grpc,
    ),
    Preset(
        "centrifuge", "min(20 s, 0.5 s + U(0, min(20 s, 0.5 s*2^n))); none after 3500-3999/4500-4999",
        "centrifuge-js", "on open",
        (Param("base", 0.5, help="minReconnectDelay, s"), Param("cap", 20.0, help="maxReconnectDelay, s")),
        _d_centrifuge, _capped, _on_open, check=_need("cap", "base"),
        scalar=_s_centrifuge,
    ),
    Preset(
        "websockets-py", "close: 0 s; failures: U(0,5), then 3.1 s x1.618 to 90 s", "python websockets client",
        "on open",
        (
            Param("initial", 5.0, help="BACKOFF_INITIAL_DELAY, s"),
            Param("base", 3.1, help="BACKOFF_MIN_DELAY, s"),
            Param("factor", 1.618, lo=1.0, help="BACKOFF_FACTOR"),
            Param("cap", 90.0, help="BACKOFF_MAX_DELAY, s"),
        ),
        _d_websockets, lambda p: max(p["cap"], p["initial"]), _on_open,
        counts=_closes_never_count, check=_need("cap", "base"),
        scalar=_s_websockets,
    ),
]

CATALOG: dict[str, Preset] = {p.name: p for p in _PRESETS}


@dataclass(frozen=True)
class BudgetSpec:
    """A retry budget (token bucket): `tokens` capacity, `cost` per retry, `refund` per open, `refill`/s."""

    tokens: float = 10.0
    cost: float = 1.0
    refund: float = 1.0
    refill: float = 0.0
    wait: float = 0.0  # 0: give up when the bucket is short; 1: wait until it has refilled

    def __str__(self) -> str:
        parts = [
            f"{prm.name}={_fmt(getattr(self, prm.name))}"
            for prm in BUDGET_PARAMS
            if getattr(self, prm.name) != prm.default
        ]
        return "budget" + (":" + ",".join(parts) if parts else "")


BUDGET_PARAMS: tuple[Param, ...] = (
    Param("tokens", 10.0, lo=1e-9, help="bucket capacity (starts full)"),
    Param("cost", 1.0, help="tokens a retry takes"),
    Param("refund", 1.0, help="tokens a successful open gives back"),
    Param("refill", 0.0, help="tokens per second of elapsed time"),
    Param("wait", 0.0, choices=(0.0, 1.0), help="0: give up when short; 1: wait for refill"),
)


# ---------------------------------------------------------------------------
# Specs: parsing, canonical text, validation


@dataclass(frozen=True)
class PolicySpec:
    """A validated policy choice: preset name, full parameter set, optional retry budget."""

    name: str
    param_items: tuple[tuple[str, float], ...]
    budget: BudgetSpec | None = None

    @property
    def preset(self) -> Preset:
        return CATALOG[self.name]

    @property
    def params(self) -> dict[str, float]:
        """Every parameter of the preset, defaults included."""
        return dict(self.param_items)

    @cached_property
    def _p(self) -> dict[str, float]:
        # read-only by convention: the hot path must not rebuild the dict per decision
        return dict(self.param_items)

    @property
    def cap(self) -> float:
        """The largest delay this spec can return (inf if unbounded)."""
        c = min(float(self.preset.cap(self.params)), _MAX_DELAY)
        if self.budget is not None and self.budget.wait and self.budget.refill > 0:
            c = min(max(c, self.budget.cost / self.budget.refill), _MAX_DELAY)
        return c

    def __str__(self) -> str:
        p = self.params
        parts = [f"{prm.name}={_fmt(p[prm.name])}" for prm in self.preset.params if p[prm.name] != prm.default]
        text = self.name + (":" + ",".join(parts) if parts else "")
        return text + (f"+{self.budget}" if self.budget is not None else "")

    def client(self, seed: int = 0, process_seed: int = 0) -> ClientPolicy:
        """One client's stateful policy with its own RNG (seed) and per-process draws (process_seed)."""
        return ClientPolicy(self, seed, process_seed)

    def vector(self, n: int, seed: int = 0, process_seed: int | Sequence[int] | Arr = 0) -> VectorPolicy:
        """n clients' policies as arrays (fleet simulation); process_seed: one int or one per client."""
        return VectorPolicy(self, n, seed, process_seed)


def _short(text: object, limit: int = 40) -> str:
    s = str(text)
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _valid_names() -> str:
    return ", ".join(CATALOG)


def _param_list(params: Sequence[Param]) -> str:
    return ", ".join(prm.describe() for prm in params)


def _check_value(owner: str, prm: Param, raw: object) -> float:
    what = f"{owner}: {prm.name}"
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise PolicyError(f"{what}={_short(raw)} is not a number")
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (ValueError, OverflowError):
        raise PolicyError(f"{what}={_short(raw)} is not a number") from None
    if math.isnan(value):
        raise PolicyError(f"{what} must be a number, not NaN")
    if prm.choices:
        if value not in prm.choices:
            raise PolicyError(f"{what} must be one of {', '.join(_fmt(c) for c in prm.choices)}")
        return value
    if math.isinf(value) and not (prm.allow_inf and value > 0):
        raise PolicyError(f"{what} must be finite" + (" or inf" if prm.allow_inf else ""))
    if value < prm.lo:
        raise PolicyError(f"{what} must be >= {_fmt(prm.lo)}, got {_fmt(value)}")
    if value > prm.hi:
        raise PolicyError(f"{what} must be <= {_fmt(prm.hi)}, got {_fmt(value)}")
    return value


def _resolve(owner: str, schema: Sequence[Param], given: Mapping[str, object]) -> dict[str, float]:
    names = {prm.name: prm for prm in schema}
    for key in given:
        if key not in names:
            valid = f"valid: {_param_list(schema)}" if schema else "it takes no parameters"
            raise PolicyError(f"{owner} has no parameter {_short(key)}; {valid}")
    return {prm.name: (_check_value(owner, prm, given[prm.name]) if prm.name in given else prm.default) for prm in schema}


def _make_spec(name: object, given: Mapping[str, object], budget: Mapping[str, object] | None) -> PolicySpec:
    if not isinstance(name, str) or name not in CATALOG:
        raise PolicyError(f"unknown policy {_short(name)}; valid: {_valid_names()}")
    preset = CATALOG[name]
    params = _resolve(name, preset.params, given)
    if preset.check is not None:
        msg = preset.check(params)
        if msg:
            raise PolicyError(f"{name}: {msg}")
    bspec = None
    if budget is not None:
        b = _resolve("budget", BUDGET_PARAMS, budget)
        bspec = BudgetSpec(**b)
    return PolicySpec(name, tuple(params.items()), bspec)


_KEY_RE = re.compile(r"[a-z_][a-z0-9_]*")


def _split_part(part: str, whole: str) -> tuple[str, dict[str, str]]:
    name, sep, rest = part.partition(":")
    name = name.strip()
    given: dict[str, str] = {}
    if sep:
        if not rest.strip():
            raise PolicyError(f"empty parameter list after {_short(name + ':')} in {_short(whole)}; write NAME or NAME:key=value,...")
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not _KEY_RE.fullmatch(key) or not value.strip():
                raise PolicyError(f"bad parameter {_short(item.strip())} in {_short(whole)}; write key=value, e.g. base=0.5")
            if key in given:
                raise PolicyError(f"parameter {_short(key)} given twice in {_short(whole)}")
            given[key] = value.strip()
    return name, given


def parse_policy(text: str) -> PolicySpec:
    """Parse `NAME[:key=value,...][+budget[:key=value,...]]`; PolicyError (one line) if invalid."""
    if not isinstance(text, str) or not text.strip():
        raise PolicyError(f"empty policy spec; valid: {_valid_names()}")
    whole = text.strip()
    parts = whole.split("+")
    name, given = _split_part(parts[0], whole)
    budget: dict[str, str] | None = None
    if len(parts) > 2:
        raise PolicyError(f"at most one '+budget:...' may follow the policy in {_short(whole)}")
    if len(parts) == 2:
        bname, budget = _split_part(parts[1], whole)
        if bname != "budget":
            raise PolicyError(f"unknown wrapper {_short(bname)} in {_short(whole)}; valid: budget")
    if not name:
        raise PolicyError(f"empty policy name in {_short(whole)}; valid: {_valid_names()}")
    return _make_spec(name, given, budget)


def load_policy_file(path: str | Path) -> PolicySpec:
    """Read a policy from TOML: `[policy]` with `name` and parameters, optional `[policy.budget]`."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"policy file {_short(str(p), 80)} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {_short(str(p), 80)}: {type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {_short(str(p), 80)} is not valid TOML: {str(exc).splitlines()[0]}") from None
    table = data.get("policy")
    if not isinstance(table, dict):
        raise PolicyError(f"policy file {_short(str(p), 80)} needs a [policy] table with name = \"...\"")
    table = dict(table)
    name = table.pop("name", None)
    if name is None:
        raise PolicyError(f"policy file {_short(str(p), 80)}: [policy] needs name = \"...\"; valid: {_valid_names()}")
    budget = table.pop("budget", None)
    if budget is not None and not isinstance(budget, dict):
        raise PolicyError("[policy.budget] must be a table of numbers")
    return _make_spec(name, table, budget)


# ---------------------------------------------------------------------------
# The pure core


class PolicyState(NamedTuple):
    """Per-client state arrays: retries n, previous delay, last delay, budget tokens, per-process constant."""

    n: Arr
    prev: Arr
    last: Arr
    tokens: Arr
    const: Arr


NDRAWS = 2  # uniforms drawn per decision and client


def initial_state(spec: PolicySpec, process_seeds: Arr) -> PolicyState:
    """The state of fresh clients (one per process seed given)."""
    m = process_seeds.shape[0]
    const = spec.preset.const(spec.params, process_seeds) if spec.preset.const else np.zeros(m)
    tokens = np.full(m, spec.budget.tokens if spec.budget else 0.0)
    return PolicyState(np.zeros(m, np.int64), np.full(m, np.nan), np.full(m, np.nan), tokens, const)


def on_open(spec: PolicySpec, s: PolicyState) -> PolicyState:
    """Pure: a connection opened. Reset rules that fire on open; the budget refunds."""
    n, prev, tokens = s.n, s.prev, s.tokens
    if spec.preset.reset_uptime(spec._p) <= 0:
        n, prev = np.zeros_like(n), np.full_like(prev, np.nan)
    if spec.budget is not None:
        tokens = np.minimum(spec.budget.tokens, tokens + spec.budget.refund)
    return PolicyState(n, prev, s.last, tokens, s.const)


def decide(
    spec: PolicySpec, s: PolicyState, code: Arr, uptime: Arr, hint: Arr, u: Arr, reset: bool = True
) -> tuple[Arr, PolicyState]:
    """Pure: state + outcome (encoded code, uptime s, hint s or NaN) + uniforms (m, NDRAWS) -> delays (NaN = give up), new state."""
    preset, p = CATALOG[spec.name], spec._p
    n, prev = s.n, s.prev
    if reset:
        closed_long = (code >= 0) & (uptime >= preset.reset_uptime(p))
        n = np.where(closed_long, 0, n)
        prev = np.where(closed_long, np.nan, prev)
    k = n + 1
    d = np.minimum(preset.delay(p, k, prev, code, hint, s.const, u), _MAX_DELAY)
    n_new = np.where(preset.counts(code), k, n) if preset.counts else k
    prev_new = np.where(np.isnan(d), prev, d)
    tokens = s.tokens
    if spec.budget is not None:
        b = spec.budget
        elapsed = np.nan_to_num(s.last) + np.maximum(uptime, 0.0)
        tokens = np.minimum(b.tokens, tokens + b.refill * elapsed)
        live = ~np.isnan(d)
        short = live & (tokens < b.cost)
        if b.wait and b.refill > 0:
            with np.errstate(over="ignore"):  # a tiny refill: the wait is clamped like every delay
                need = np.minimum((b.cost - tokens) / b.refill, _MAX_DELAY)
            d = np.where(short, np.maximum(d, need), d)
        else:
            d = np.where(short, np.nan, d)
        tokens = np.where(~np.isnan(d), tokens - b.cost, tokens)
    return d, PolicyState(n_new, prev_new, d, tokens, s.const)


class ScalarState(NamedTuple):
    """One client's state as plain Python numbers: the scalar twin of :class:`PolicyState`."""

    n: int
    prev: float
    last: float
    tokens: float
    const: float


def initial_scalar_state(spec: PolicySpec, process_seed: int) -> ScalarState:
    """A fresh client's state; `const` comes from :func:`initial_state`, so it equals the vector API's."""
    s = initial_state(spec, np.array([int(process_seed) % 2**63], dtype=np.int64))
    return ScalarState(0, math.nan, math.nan, float(s.tokens[0]), float(s.const[0]))


def on_open_scalar(spec: PolicySpec, s: ScalarState) -> ScalarState:
    """Scalar twin of :func:`on_open`."""
    n, prev, tokens = s.n, s.prev, s.tokens
    if spec.preset.reset_uptime(spec._p) <= 0:
        n, prev = 0, math.nan
    b = spec.budget
    if b is not None:
        tokens = tokens + b.refund
        if tokens > b.tokens:
            tokens = b.tokens
    return ScalarState(n, prev, s.last, tokens, s.const)


def decide_scalar(
    spec: PolicySpec, s: ScalarState, code: int, uptime: float, hint: float, u0: float, u1: float, reset: bool = True
) -> tuple[float, ScalarState]:
    """Scalar twin of :func:`decide` for one client (plain floats, ~10x faster than 1-element arrays).

    Same rules and the same floats bit for bit as `decide` given the same uniforms (u0, u1) =
    u[i, 0], u[i, 1]; tests/test_policies_scalar.py checks it step by step for every preset.
    """
    preset, p = spec.preset, spec._p
    n, prev = s.n, s.prev
    if reset and code >= 0 and uptime >= preset.reset_uptime(p):
        n, prev = 0, math.nan
    k = n + 1
    d = preset.scalar(p, k, prev, code, hint, s.const, u0, u1)  # type: ignore[misc]
    if d > _MAX_DELAY:
        d = _MAX_DELAY
    n_new = k if preset.counts is None or preset.counts(code) else n
    prev_new = prev if d != d else d
    tokens = s.tokens
    b = spec.budget
    if b is not None:
        last = s.last
        if last != last:
            last = 0.0
        elif last == math.inf:  # as np.nan_to_num
            last = _FLOAT_MAX
        tokens = tokens + b.refill * (last + (uptime if uptime > 0.0 else 0.0))
        if tokens > b.tokens:  # not `min`: a NaN must stay NaN, as in np.minimum
            tokens = b.tokens
        if d == d and tokens < b.cost:
            if b.wait and b.refill > 0:
                need = (b.cost - tokens) / b.refill
                if need > _MAX_DELAY:
                    need = _MAX_DELAY
                if need > d:
                    d = need
            else:
                d = math.nan
        if d == d:
            tokens = tokens - b.cost
    return d, ScalarState(n_new, prev_new, d, tokens, s.const)


_FLOAT_MAX = float(np.finfo(np.float64).max)


def _seed_seq(seed: int, process_seed: int, tag: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) % 2**64, int(process_seed) % 2**64, tag])


def client_uniforms(seed: int = 0, process_seed: int = 0) -> Callable[[], float]:
    """The uniform source of `spec.client(seed, process_seed)`: NDRAWS calls per decision, in order."""
    words = _seed_seq(seed, process_seed, 1).generate_state(8, np.uint32).tolist()
    return random.Random(sum(w << (32 * i) for i, w in enumerate(words))).random


class ClientPolicy:
    """One client's policy: thin stateful wrapper over :func:`decide_scalar` with its own seeded RNG."""

    def __init__(self, spec: PolicySpec, seed: int = 0, process_seed: int = 0) -> None:
        self.spec = spec
        self._uniform = client_uniforms(seed, process_seed)
        self._s = initial_scalar_state(spec, process_seed)

    @property
    def retries(self) -> int:
        """Retry count n since the last reset."""
        return self._s.n

    @property
    def state(self) -> ScalarState:
        """The current state (plain numbers)."""
        return self._s

    @property
    def _state(self) -> PolicyState:
        # the state as 1-element arrays, for code written against the array core
        s = self._s
        n = np.array([s.n], dtype=np.int64)
        return PolicyState(n, np.array([s.prev]), np.array([s.last]), np.array([s.tokens]), np.array([s.const]))

    def opened(self) -> None:
        """A connection opened: apply reset rules that fire on open (and the budget's refund)."""
        self._s = on_open_scalar(self.spec, self._s)

    def next_delay(self, outcome: Outcome) -> float | None:
        """Seconds to wait before the next attempt after `outcome`, or None to give up."""
        hint = outcome.retry_after
        h = math.nan if hint is None else float(hint)
        if h == math.inf or h == -math.inf:
            h = math.nan
        up = float(outcome.uptime_s or 0.0)
        if up != up or up == math.inf or up == -math.inf:
            up = 0.0
        draw = self._uniform
        u0 = draw()  # NDRAWS = 2 uniforms per decision, whatever the preset uses
        d, self._s = decide_scalar(self.spec, self._s, outcome_code(outcome), up, h, u0, draw())
        return None if d != d else d


class VectorPolicy:
    """n clients' policies as numpy arrays; same rules as ClientPolicy, one RNG for the fleet."""

    def __init__(self, spec: PolicySpec, n: int, seed: int = 0, process_seed: int | Sequence[int] | Arr = 0) -> None:
        if int(n) < 0:
            raise PolicyError(f"vector size must be >= 0, got {n}")
        self.spec = spec
        self.n = int(n)
        ps = np.asarray(process_seed)
        if ps.ndim == 0:
            ps = np.full(self.n, int(ps) % 2**63, dtype=np.int64)
            first = int(process_seed)  # type: ignore[arg-type]
        elif ps.shape != (self.n,):
            raise PolicyError(f"process_seed must be one int or {self.n} ints, got shape {ps.shape}")
        else:
            ps = np.asarray([int(x) % 2**63 for x in ps.tolist()], dtype=np.int64) if ps.dtype.kind != "i" else ps.astype(np.int64)
            first = 0
        self._rng = np.random.default_rng(_seed_seq(seed, first, 2))
        self._state = initial_state(spec, ps)

    @property
    def retries(self) -> Arr:
        """Retry count n since the last reset, per client (a read-only view)."""
        v = self._state.n.view()
        v.flags.writeable = False
        return v

    @property
    def const(self) -> Arr:
        """The per-client constant of the preset (reconnecting-websocket: its minimum delay), else 0."""
        return self._state.const.copy()

    def _idx(self, idx: Arr | Sequence[int] | slice | None) -> Arr:
        if idx is None:
            return np.arange(self.n)
        if isinstance(idx, slice):
            return np.arange(self.n)[idx]
        return np.asarray(idx, dtype=np.int64).reshape(-1)

    def opened(self, idx: Arr | Sequence[int] | slice | None = None) -> None:
        """Clients `idx` opened a connection."""
        i = self._idx(idx)
        sub = PolicyState(*(a[i] for a in self._state))
        new = on_open(self.spec, sub)
        for a, b in zip(self._state, new):
            a[i] = b

    def next_delays(
        self,
        idx: Arr | Sequence[int] | slice | None,
        code: Arr | int,
        uptime_s: Arr | float = 0.0,
        retry_after: Arr | float | None = None,
        *,
        reset: bool = True,
    ) -> Arr:
        """Delays (s, NaN = give up) for clients `idx` (no repeats) after encoded outcomes `code`.

        code: close code (>= 0), or -1 refused, -2 timeout, -3 tls, -4 dns, -5 protocol,
        -6 reset, -status for an HTTP status (see FAIL_CODES). retry_after: hints, NaN = none.
        reset=False skips the reset rule (used to trace the n-th consecutive retry).
        """
        i = self._idx(idx)
        m = i.shape[0]
        c = np.broadcast_to(np.asarray(code, dtype=np.int64), (m,))
        up = np.broadcast_to(np.nan_to_num(np.asarray(uptime_s, dtype=np.float64), nan=0.0, posinf=0.0), (m,))
        if retry_after is None:
            h = np.full(m, np.nan)
        else:
            h = np.broadcast_to(np.asarray(retry_after, dtype=np.float64), (m,))
            h = np.where(np.isfinite(h), h, np.nan)
        sub = PolicyState(*(a[i] for a in self._state))
        d, new = decide(self.spec, sub, c, up, h, self._rng.random((m, NDRAWS)), reset=reset)
        for a, b in zip(self._state, new):
            a[i] = b
        return d
