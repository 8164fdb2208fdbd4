"""Client-side throttles that wrap a preset: Google SRE adaptive throttling and gRPC retry throttling.

A throttle sees every decision of the preset it wraps and the opens (`opened()`), and keeps
its own per-client state: the `wrap` columns of PolicyState (vector) and ScalarState (scalar).

How "skip an attempt locally" is recorded: the policy folds every skipped attempt into the
delay it returns. A skipped attempt is a local failure (outcome code "throttled", never on the
wire): the wrapped preset decides the wait after it as after any failure, and the next check
comes at the end of that wait. The delay returned is the sum up to the first attempt that is
really sent, so the load side needs nothing new to obey it; `ClientPolicy.skipped` says how
many attempts the last decision skipped, for the event log. gRPC's throttle does not skip:
a throttled retry is not made and the failure goes back to the application, i.e. give up.

Each rule has a vector function and its scalar twin; tests/test_policies_scalar.py holds them
equal bit for bit (the same uniforms: column 2 + 3j is the j-th skip check, 3 + 3j and 4 + 3j
the wrapped preset's draws for the wait after that skip).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from wsstorm.policies.numeric import Arr, np
from wsstorm.policies.outcomes import FAIL_CODES
from wsstorm.policies.params import Param, fmt

if TYPE_CHECKING:
    from wsstorm.policies.core import PolicyState
    from wsstorm.policies.scalar import ScalarState
    from wsstorm.policies.spec import PolicySpec

THROTTLED = FAIL_CODES["throttled"]
SRE_BUCKETS = 12  # the window slides in window/12 steps (10 s for the book's 2 minutes)
_SRE_HEAD = 3  # wrap columns before the buckets: clock (s), current bucket index, skips of the last decision

# (spec, n, prev, code, uptime, hint, const, last, u2, reset) -> (delays, n, prev): one step of the wrapped preset
StepFn = Callable[["PolicySpec", Arr, Arr, Arr, Arr, Arr, Arr, Arr, Arr, bool], tuple[Arr, Arr, Arr]]
StepFn1 = Callable[
    ["PolicySpec", int, float, int, float, float, float, float, float, float, bool], tuple[float, int, float]
]


@dataclass(frozen=True)
class Throttle:
    """A kind of throttle: its name (the `+name` in a spec), parameters, rule and source."""

    name: str
    params: tuple[Param, ...]
    rule: str
    source: str
    doc: str = ""  # the rule in full, with its source


_SRE_DOC = """sre-throttle: client-side adaptive throttling, as Google runs it in front of its backends.

Each client counts, over the last `window` (120) s: requests, the attempts its application
layer made (failed attempts, opens, and the attempts it skipped itself: as the client starts
rejecting locally, requests keep exceeding accepts), and accepts, the attempts the backend
accepted (opens). Before each attempt it skips it locally with probability
max(0, (requests - K*accepts) / (requests + 1)), K = `k` (2; the book prefers 2x, lower K is
more aggressive). Here the window is 12 buckets (it slides in window/12 steps); a skip is a
local failure handed to the wrapped preset; at most `max_skips` per decision. An accept-then-
1013 counts as an accept: the throttle sees admissions, not application-level rejections.
Source: Beyer, Jones, Petoff, Murphy (eds.), Site Reliability Engineering (O'Reilly, 2016),
ch. 21 "Handling Overload", "Client-Side Throttling", Eq. 21-1 (sre.google/sre-book/
handling-overload). The book's text was not among the stored sources this was checked
against; the formula, the 2-minute window and K = 2 were checked against quotations of it.
"""

_GRPC_DOC = """grpc-throttle: gRPC retry throttling, per client (gRPC keeps one count per server name).

token_count starts at maxTokens (`max_tokens`, 10; an integer in (0, 1000]); every failed RPC
takes 1 (not below 0), every successful one adds tokenRatio (`token_ratio`, 0.1; not above
maxTokens). Failures are only those with a retryable status or pushback: here refused,
timeout, reset, HTTP 429 and 5xx, and a close with 1013 (not tls, dns, protocol, other HTTP).
While token_count <= maxTokens/2 retries are not attempted: "retry attempts are canceled
and the failure returned to the client application": the policy gives up. The first attempt
of a call is always sent: after a close the next attempt is a new call. The count is taken
after the failure is charged (grpc-go: tokens--, then tokens <= thresh). Source:
grpc/proposal A6-client-retries.md (commit 1fd061a), "Throttling Retry Attempts and Hedged
RPCs" and "Validation of retryThrottling"; grpc-go clientconn.go retryThrottler.throttle
and successfulRPC.
"""


THROTTLES: dict[str, Throttle] = {
    t.name: t
    for t in (
        Throttle(
            "sre-throttle",
            (
                Param("k", 2.0, lo=1.0, help="K: requests may reach K x accepts before attempts are skipped"),
                Param("window", 120.0, lo=1.0, help="s of history of requests and accepts"),
                Param("max_skips", 16.0, hi=64.0, integer=True, help="skips at most per decision; then it is sent"),
            ),
            "skip locally with p = max(0, (requests - K*accepts)/(requests + 1)) over the last 2 min",
            "Google SRE book, Handling Overload",
            _SRE_DOC,
        ),
        Throttle(
            "grpc-throttle",
            (
                Param("max_tokens", 10.0, lo=1.0, hi=1000.0, integer=True, help="maxTokens (the count starts there)"),
                Param("token_ratio", 0.1, lo=0.001, help="tokenRatio: tokens a success adds"),
            ),
            "tokens from 10: failure -1, open +0.1; no retry (give up) while tokens <= 5",
            "gRPC proposal A6 retry throttling",
            _GRPC_DOC,
        ),
    )
}


@dataclass(frozen=True)
class ThrottleSpec:
    """A chosen throttle: its name and full parameter set (validated by spec.parse_policy)."""

    name: str
    param_items: tuple[tuple[str, float], ...]

    @cached_property
    def p(self) -> dict[str, float]:
        """Every parameter, defaults included (read-only by convention)."""
        return dict(self.param_items)

    @property
    def kind(self) -> Throttle:
        """The throttle kind this spec configures."""
        return THROTTLES[self.name]

    @property
    def width(self) -> int:
        """State columns per client."""
        return _SRE_HEAD + 2 * SRE_BUCKETS if self.name == "sre-throttle" else 1

    @property
    def extra_draws(self) -> int:
        """Uniforms per decision beyond the preset's own: 3 per possible skip."""
        return 3 * int(self.p["max_skips"]) if self.name == "sre-throttle" else 0

    def cap(self, inner: float) -> float:
        """The largest delay, given the wrapped preset's largest: max_skips + 1 waits for the SRE throttle."""
        return inner * (int(self.p["max_skips"]) + 1) if self.name == "sre-throttle" else inner

    def __str__(self) -> str:
        parts = [f"{prm.name}={fmt(self.p[prm.name])}" for prm in self.kind.params if self.p[prm.name] != prm.default]
        return self.name + (":" + ",".join(parts) if parts else "")


def initial_wrap(t: ThrottleSpec | None, m: int) -> Arr:
    """The throttle state of m fresh clients: (m, width) floats; (m, 0) without a throttle."""
    if t is None:
        return np.zeros((m, 0))
    if t.name == "grpc-throttle":
        return np.full((m, 1), t.p["max_tokens"])  # A6: token_count starts at maxTokens
    return np.zeros((m, t.width))


def initial_wrap1(t: ThrottleSpec | None) -> tuple[float, ...]:
    """Scalar twin of :func:`initial_wrap`: one fresh client's throttle state."""
    if t is None:
        return ()
    if t.name == "grpc-throttle":
        return (float(t.p["max_tokens"]),)
    return (0.0,) * t.width


# ---------------------------------------------------------------------------
# gRPC retry throttling (A6)


def _server_failure(code: Arr) -> Arr:
    """Outcomes that count as failed RPCs: UNAVAILABLE-like (refused, timeout, reset, HTTP 429/5xx) and 1013."""
    out: Arr = (
        (code == -1) | (code == -2) | (code == -6) | (code == -429) | ((code <= -500) & (code >= -599)) | (code == 1013)
    )
    return out


def _server_failure1(code: int) -> bool:
    return code in (-1, -2, -6, -429, 1013) or -599 <= code <= -500


# ---------------------------------------------------------------------------
# Google SRE client-side adaptive throttling


def _rotate(req: Arr, acc: Arr, idx: Arr, t: Arr, width: float) -> tuple[Arr, Arr, Arr]:
    """Move each client's ring of buckets to time t: buckets that fell out of the window are emptied.

    Returns new arrays (the inputs are not changed).
    """
    new = np.floor(t / width)
    gap = new - idx
    req, acc = req.copy(), acc.copy()
    rows = np.flatnonzero(gap > 0)  # most checks stay within the current bucket
    if rows.size:
        g = gap[rows, None]
        j = np.arange(SRE_BUCKETS, dtype=np.float64)
        clear = (g >= SRE_BUCKETS) | (np.mod(j[None, :] - idx[rows, None] - 1.0, SRE_BUCKETS) < g)
        req[rows] = np.where(clear, 0.0, req[rows])
        acc[rows] = np.where(clear, 0.0, acc[rows])
    return req, acc, new


def _rotate1(req: list[float], acc: list[float], idx: float, t: float, width: float) -> float:
    """Scalar twin of :func:`_rotate` (mutates the lists, returns the new bucket index)."""
    new = float(math.floor(t / width))
    gap = new - idx
    if gap >= SRE_BUCKETS:
        req[:] = [0.0] * SRE_BUCKETS
        acc[:] = [0.0] * SRE_BUCKETS
    elif gap > 0:
        for j in range(SRE_BUCKETS):  # the vector test, term for term (exact even past 2**53)
            if (j - idx - 1.0) % SRE_BUCKETS < gap:
                req[j] = 0.0
                acc[j] = 0.0
    return new


def _count(ring: Arr, idx: Arr, rows: Arr) -> Arr:
    """One more in the current bucket of `rows` (a new array)."""
    out: Arr = ring.copy()
    i = np.flatnonzero(rows)
    out[i, np.mod(idx[i], SRE_BUCKETS).astype(np.int64)] += 1.0
    return out


def _skip_probability(req: Arr, acc: Arr, k: float) -> Arr:
    """SRE book Eq. 21-1: (requests - K*accepts) / (requests + 1); at or below 0, nothing is skipped."""
    rq = req.sum(axis=1)
    out: Arr = (rq - k * acc.sum(axis=1)) / (rq + 1.0)
    return out


def _skip_probability1(req: list[float], acc: list[float], k: float) -> float:
    rq = sum(req)
    return (rq - k * sum(acc)) / (rq + 1.0)


def _split(w: Arr) -> tuple[Arr, Arr, Arr, Arr, Arr]:
    b = _SRE_HEAD + SRE_BUCKETS
    return w[:, 0], w[:, 1], w[:, 2], w[:, _SRE_HEAD:b], w[:, b:]


def _join(clock: Arr, idx: Arr, skips: Arr, req: Arr, acc: Arr) -> Arr:
    return np.concatenate([clock[:, None], idx[:, None], skips[:, None], req, acc], axis=1)


# ---------------------------------------------------------------------------
# The wrapper entry points (vector, then scalar)


def on_open(spec: PolicySpec, wrap: Arr, last: Arr) -> Arr:
    """Pure: clients opened (an accepted request; gRPC: a successful RPC)."""
    t = spec.throttle
    assert t is not None
    if t.name == "grpc-throttle":
        out: Arr = np.minimum(t.p["max_tokens"], wrap + t.p["token_ratio"])
        return out
    clock, idx, skips, req, acc = _split(wrap)
    at = clock + np.nan_to_num(last)  # the attempt that opened started after the last wait
    req, acc, idx = _rotate(req, acc, idx, at, t.p["window"] / SRE_BUCKETS)
    yes = np.ones(idx.shape, dtype=bool)
    return _join(clock, idx, skips, _count(req, idx, yes), _count(acc, idx, yes))


def decide(
    spec: PolicySpec,
    s: PolicyState,
    d: Arr,
    n: Arr,
    prev: Arr,
    code: Arr,
    uptime: Arr,
    u: Arr,
    step: StepFn,
) -> tuple[Arr, Arr, Arr, Arr]:
    """Pure: apply the throttle to the wrapped preset's decision d -> (delays, n, prev, wrap)."""
    t = spec.throttle
    assert t is not None
    if t.name == "grpc-throttle":
        tokens = s.wrap[:, 0]
        tokens = np.where(_server_failure(code), np.maximum(tokens - 1.0, 0.0), tokens)
        # the attempt after a failed one is a retry; after a close it is a new call, always sent
        throttled = (code < 0) & (tokens <= t.p["max_tokens"] / 2)
        return np.where(throttled, np.nan, d), n, prev, tokens[:, None]
    k, width, max_skips = t.p["k"], t.p["window"] / SRE_BUCKETS, int(t.p["max_skips"])
    clock, idx, _, req, acc = _split(s.wrap)
    now = clock + np.nan_to_num(s.last) + np.maximum(uptime, 0.0)
    req, acc, idx = _rotate(req, acc, idx, now, width)
    req = _count(req, idx, code < 0)  # the attempt that failed was a request
    total, last, check_t = d.copy(), d.copy(), now + np.nan_to_num(d)
    n, prev = n.copy(), prev.copy()
    skips = np.zeros(d.shape[0])
    ix = np.flatnonzero(~np.isnan(d))  # the clients whose next attempt is checked
    for j in range(max_skips):
        if ix.size == 0:
            break
        r2, a2, i2 = _rotate(req[ix], acc[ix], idx[ix], check_t[ix], width)
        req[ix], acc[ix], idx[ix] = r2, a2, i2
        ix = ix[u[ix, 2 + 3 * j] < _skip_probability(r2, a2, k)]  # skipped: a local failure
        if ix.size == 0:
            break
        req[ix] = _count(req[ix], idx[ix], np.ones(ix.size, dtype=bool))
        m = ix.size
        throttled, zeros, nohint = np.full(m, THROTTLED, dtype=np.int64), np.zeros(m), np.full(m, np.nan)
        dj, n[ix], prev[ix] = step(
            spec, n[ix], prev[ix], throttled, zeros, nohint, s.const[ix], last[ix], u[ix, 3 + 3 * j : 5 + 3 * j], False
        )
        skips[ix] += 1.0
        live = ~np.isnan(dj)
        total[ix] = np.where(live, total[ix] + dj, np.nan)
        ix, dj = ix[live], dj[live]
        check_t[ix] += dj
        last[ix] = dj
    return np.minimum(total, spec.cap), n, prev, _join(now, idx, skips, req, acc)


def on_open1(spec: PolicySpec, wrap: tuple[float, ...], last: float) -> tuple[float, ...]:
    """Scalar twin of :func:`on_open`."""
    t = spec.throttle
    assert t is not None
    if t.name == "grpc-throttle":
        tokens = wrap[0] + t.p["token_ratio"]
        return (tokens if tokens < t.p["max_tokens"] else t.p["max_tokens"],)
    req, acc = list(wrap[_SRE_HEAD : _SRE_HEAD + SRE_BUCKETS]), list(wrap[_SRE_HEAD + SRE_BUCKETS :])
    at = wrap[0] + (0.0 if last != last else last)
    idx = _rotate1(req, acc, wrap[1], at, t.p["window"] / SRE_BUCKETS)
    pos = int(idx % SRE_BUCKETS)
    req[pos] += 1.0
    acc[pos] += 1.0
    return (wrap[0], idx, wrap[2], *req, *acc)


def decide1(
    spec: PolicySpec,
    s: ScalarState,
    d: float,
    n: int,
    prev: float,
    code: int,
    uptime: float,
    extra: Sequence[float],
    step: StepFn1,
) -> tuple[float, int, float, tuple[float, ...]]:
    """Scalar twin of :func:`decide`; `extra` holds the uniforms after the preset's two."""
    t = spec.throttle
    assert t is not None
    if t.name == "grpc-throttle":
        tokens = s.wrap[0]
        if _server_failure1(code):
            tokens = tokens - 1.0
            if tokens < 0.0:
                tokens = 0.0
        if code < 0 and tokens <= t.p["max_tokens"] / 2:
            d = math.nan
        return d, n, prev, (tokens,)
    k, width, max_skips = t.p["k"], t.p["window"] / SRE_BUCKETS, int(t.p["max_skips"])
    w = s.wrap
    req, acc = list(w[_SRE_HEAD : _SRE_HEAD + SRE_BUCKETS]), list(w[_SRE_HEAD + SRE_BUCKETS :])
    last = s.last
    now = w[0] + (0.0 if last != last else last) + (uptime if uptime > 0.0 else 0.0)
    idx = _rotate1(req, acc, w[1], now, width)
    if code < 0:
        req[int(idx % SRE_BUCKETS)] += 1.0
    total = last = d
    skips = 0.0
    if d == d:
        check_t = now + d
        for j in range(max_skips):
            idx = _rotate1(req, acc, idx, check_t, width)
            if not extra[3 * j] < _skip_probability1(req, acc, k):
                break
            req[int(idx % SRE_BUCKETS)] += 1.0
            dj, n, prev = step(
                spec, n, prev, THROTTLED, 0.0, math.nan, s.const, last, extra[3 * j + 1], extra[3 * j + 2], False
            )
            skips += 1.0
            if dj != dj:
                total = math.nan
                break
            total = total + dj
            check_t = check_t + dj
            last = dj
    cap = spec.cap
    if total > cap:
        total = cap
    return total, n, prev, (now, idx, skips, *req, *acc)
