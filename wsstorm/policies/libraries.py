"""Presets that copy real client libraries: socket.io, reconnecting-websocket, SignalR, Phoenix, gRPC,
centrifuge, python websockets, ably, pusher (each docstring cites the source file and defaults it follows).

Each rule comes as a pair: `_d_*` on numpy arrays (a fleet) and `_s_*` on plain floats (one
client); tests/test_policies_scalar.py holds every pair equal bit for bit.
"""

from __future__ import annotations

import math

from wsstorm.policies.draws import stream_unit
from wsstorm.policies.numeric import Arr, grow, grow1, np
from wsstorm.policies.outcomes import FAIL_CODES
from wsstorm.policies.params import Param
from wsstorm.policies.rules import (
    P_ATTEMPTS,
    P_FACTOR,
    Params,
    Preset,
    capped,
    closes_never_count,
    need,
    reset_by_param,
    reset_on_open,
)


def _d_socketio(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
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
    ms = grow(p["base"] * 1000.0, p["factor"], k - 1, math.inf)
    dev = np.floor(r * p["jitter"] * ms)
    minus = (np.floor(r * 10).astype(np.int64) & 1) == 0
    ms = np.where(minus, ms - dev, ms + dev)
    d = np.trunc(np.minimum(ms, p["cap"] * 1000.0)) / 1000.0
    return np.where(k > p["attempts"], np.nan, d)


def _s_socketio(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    if k > p["attempts"]:
        return math.nan
    ms = grow1(p["base"] * 1000.0, p["factor"], k - 1, math.inf)
    dev = float(math.floor(u0 * p["jitter"] * ms))
    ms = ms - dev if math.floor(u0 * 10) & 1 == 0 else ms + dev
    cap = p["cap"] * 1000.0
    return float(math.trunc(ms if ms <= cap else cap)) / 1000.0


def _d_rws(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """reconnecting-websocket 4.4: min(max, min*1.3^(k-1)).

    min = minReconnectionDelay = 1000 + Math.random()*4000 ms, evaluated ONCE when the module
    loads, so every client of one process shares it and processes differ (here: drawn from the
    process seed). The retry count resets only when a connection stays up minUptime (5 s);
    a server that accepts then closes within 5 s sees the count keep growing.
    Defaults: maxReconnectionDelay 10000, reconnectionDelayGrowFactor 1.3, minUptime 5000,
    maxRetries Infinity. Source: pladaria/reconnecting-websocket reconnecting-websocket.ts.
    """
    d = grow(const, p["factor"], k - 1, p["cap"])
    return np.where(k > p["attempts"], np.nan, d)


def _s_rws(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    return math.nan if k > p["attempts"] else grow1(const, p["factor"], k - 1, p["cap"])


_SIGNALR = (0.0, 2.0, 10.0, 30.0)


def _d_signalr(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """signalr: [0, 2, 10, 30] s, then give up (null).

    The retry count restarts when the connection is re-established. Source: ASP.NET Core
    SignalR DefaultReconnectPolicy, DEFAULT_RETRY_DELAYS_IN_MILLISECONDS = [0, 2000, 10000,
    30000, null] (JavaScript client; the .NET client uses the same table).
    """
    idx = np.clip(k - 1, 0, len(_SIGNALR) - 1)
    return np.where(k <= len(_SIGNALR), np.asarray(_SIGNALR)[idx], np.nan)


def _s_signalr(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    return _SIGNALR[k - 1] if k <= len(_SIGNALR) else math.nan


_PHX_SOCKET = tuple(ms / 1000.0 for ms in (10, 50, 100, 150, 200, 250, 500, 1000, 2000))
_PHX_REJOIN = tuple(ms / 1000.0 for ms in (1000, 2000, 5000))


def _d_phoenix(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """phoenix: socket reconnectAfterMs [10,50,100,150,200,250,500,1000,2000][tries-1] || 5000 ms.

    The socket does not reconnect after a close with code 1000 (onConnClose checks
    `closeCode !== 1000`) and resets its timer on open. `rejoin=1` uses the channel rejoin
    timer instead ([1000,2000,5000][tries-1] || 10000 ms), which phoenix applies to channel
    joins once the socket is up, not to the socket itself. Source: phoenix.js socket.js,
    constructor defaults and onConnOpen/onConnClose.
    """
    table, after = (_PHX_REJOIN, 10.0) if p["rejoin"] else (_PHX_SOCKET, 5.0)
    idx = np.clip(k - 1, 0, len(table) - 1)
    d = np.where(k <= len(table), np.asarray(table)[idx], after)
    return np.where(code == 1000, np.nan, d)


def _s_phoenix(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    if code == 1000:
        return math.nan
    table, after = (_PHX_REJOIN, 10.0) if p["rejoin"] else (_PHX_SOCKET, 5.0)
    return table[k - 1] if k <= len(table) else after


def _d_grpc(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """grpc: first retry after INITIAL_BACKOFF, then min(b*1.6, MAX) with +-JITTER.

    k=1: base exactly; k>=2: min(max, base*1.6^(k-1)) * (1 + U(-jitter, jitter)): the jitter
    is applied after the cap, so delays reach cap*(1+jitter) = 144 s. Resets when a
    connection becomes READY. The spec measures the backoff from the start of the failed
    attempt (SleepUntil(deadline)); here it is the wait after the failure. MIN_CONNECT_TIMEOUT
    (20 s) is the connect timeout, not a delay, and is not modelled. Source: grpc/grpc
    doc/connection-backoff.md (INITIAL_BACKOFF 1 s, MULTIPLIER 1.6, JITTER 0.2, MAX_BACKOFF
    120 s); grpc-go internal/backoff.
    """
    b = grow(p["base"], p["factor"], k - 1, p["cap"])
    return np.where(k == 1, p["base"], b * (1 + p["jitter"] * (2 * u[:, 0] - 1)))


def _s_grpc(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    if k == 1:
        return p["base"]
    return grow1(p["base"], p["factor"], k - 1, p["cap"]) * (1 + p["jitter"] * (2 * u0 - 1))


def _d_centrifuge(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """centrifuge: min(max, min + randomInt(0, min(max, min*2^(k-1)))) in whole ms.

    Full jitter on top of a floor of `base` (minReconnectDelay 500 ms, maxReconnectDelay
    20000 ms); the step is capped at 31; resets when connected. Close codes 3500-3999 and
    4500-4999 mean "do not reconnect" to centrifuge clients: give up. Source: centrifuge-js
    src/utils.ts backoff(), client defaults.
    """
    lo_ms, hi_ms = p["base"] * 1000.0, p["cap"] * 1000.0
    top = np.minimum(hi_ms, grow(lo_ms, 2.0, np.minimum(k - 1, 31), math.inf))
    d = np.minimum(hi_ms, lo_ms + np.floor(u[:, 0] * (top + 1))) / 1000.0
    permanent = ((code >= 3500) & (code <= 3999)) | ((code >= 4500) & (code <= 4999))
    return np.where(permanent, np.nan, d)


def _s_centrifuge(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    if 3500 <= code <= 3999 or 4500 <= code <= 4999:
        return math.nan
    lo_ms, hi_ms = p["base"] * 1000.0, p["cap"] * 1000.0
    top = grow1(lo_ms, 2.0, k - 1 if k - 1 < 31 else 31, math.inf)
    if top > hi_ms:
        top = hi_ms
    d = lo_ms + float(math.floor(u0 * (top + 1)))
    return (d if d <= hi_ms else hi_ms) / 1000.0


def _d_websockets(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
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
    later = grow(p["base"], p["factor"], k - 2, p["cap"])
    d = np.where(closed, 0.0, np.where(k <= 1, first, later))
    retryable = (code == -500) | (code == -502) | (code == -503) | (code == -504)
    http = (code <= -100) & ~retryable
    fatal = http | (code == FAIL_CODES["protocol"])
    return np.where(fatal, np.nan, d)


def _s_websockets(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    if code == -5 or (code <= -100 and code not in (-500, -502, -503, -504)):  # -5: protocol
        return math.nan
    if code >= 0:
        return 0.0
    return u0 * p["initial"] if k <= 1 else grow1(p["base"], p["factor"], k - 2, p["cap"])


_ABLY_AUTO_GAP_MS = 1000.0  # ably-js notifyState: a second auto reconnect waits until 1 s after the first


def _d_ably(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr, *, up: Arr, last: Arr) -> Arr:
    """ably: ably-js ConnectionManager, the disconnected and suspended states.

    A close of an open connection (connected -> disconnected) reconnects at once, unless the
    last automatic reconnect was under 1 s ago: then it waits until 1 s after it (here: the
    connection was opened by a reconnect that waited < 1 s and stayed up `uptime`; the wait is
    1000 - (uptime_ms + 1) ms, as notifyState computes it). A failed attempt (connecting ->
    disconnected) waits getRetryTime(disconnectedRetryTimeout, n) = 15 s * min((n+2)/3, 2) *
    (1 - U*0.2), n = disconnectedRetryCount, which counts every entry to disconnected since
    the last connected (the close included) and resets on connected or suspended. After
    connectionStateTtl (120 s) without a connection the suspend timer moves the client to
    suspended, and it retries every suspendedRetryTimeout (30 s, no jitter) until it connects;
    the timer fires during a wait, so a wait that crosses the 120 s ends 30 s after it. Time
    in the outage is the sum of this policy's waits since the first reconnect attempt (attempt
    durations are not known to a policy). The close code does not matter (every WebSocket close
    -> disconnected). Not modelled: fallback hosts, the connectivity check, token errors, the
    failed state. Source: ably/ably-js 2.26.0 (commit 7fa7dc5),
    src/common/lib/transport/connectionmanager.ts notifyState/startSuspendTimer,
    src/common/lib/util/utils.ts getRetryTime, src/common/lib/util/defaults.ts TIMEOUTS.
    """
    since_ms = np.maximum(up, 0.0) * 1000.0 + 1.0
    auto = last < 1.0  # NaN (no attempt yet) is not an auto reconnect
    immediate = np.where(auto & (since_ms < _ABLY_AUTO_GAP_MS), (_ABLY_AUTO_GAP_MS - since_ms) / 1000.0, 0.0)
    waited = np.nan_to_num(prev, nan=0.0)
    timed = p["disconnected"] * np.minimum((k + 2) / 3, 2.0) * (1 - u[:, 0] * 0.2)
    suspend_in = p["ttl"] - waited
    failed = np.where(
        waited >= p["ttl"], p["suspended"], np.where(timed >= suspend_in, suspend_in + p["suspended"], timed)
    )
    d: Arr = np.where(code >= 0, immediate, failed)
    return d


def _s_ably(
    p: Params,
    k: int,
    prev: float,
    code: int,
    hint: float,
    const: float,
    u0: float,
    u1: float,
    *,
    up: float,
    last: float,
) -> float:
    if code >= 0:
        since_ms = (up if up > 0.0 else 0.0) * 1000.0 + 1.0
        if last < 1.0 and since_ms < _ABLY_AUTO_GAP_MS:
            return (_ABLY_AUTO_GAP_MS - since_ms) / 1000.0
        return 0.0
    waited = 0.0 if prev != prev else prev
    ttl = p["ttl"]
    if waited >= ttl:
        return p["suspended"]
    c = (k + 2) / 3
    timed = p["disconnected"] * (c if c < 2.0 else 2.0) * (1 - u0 * 0.2)
    suspend_in = ttl - waited
    return suspend_in + p["suspended"] if timed >= suspend_in else timed


def _ably_remember(prev: Arr, d: Arr, code: Arr) -> Arr:
    """ably's `prev` is the time waited in this outage: a close starts it (the suspend timer starts at
    the first reconnect attempt), each failed attempt's wait adds to it."""
    waited = np.where(code >= 0, 0.0, np.nan_to_num(prev, nan=0.0) + d)
    out: Arr = np.where(np.isnan(d), prev, waited)
    return out


def _ably_remember1(prev: float, d: float, code: int) -> float:
    if d != d:
        return prev
    if code >= 0:
        return 0.0
    return (0.0 if prev != prev else prev) + d


_PUSHER_CLOSED_MS = 1000.0  # connection_manager.ts: the `closed` callback and the backoff action: retryIn(1000)


def _d_pusher(p: Params, k: Arr, prev: Arr, code: Arr, hint: Arr, const: Arr, u: Arr) -> Arr:
    """pusher: pusher-js ConnectionManager + its WebSocket strategy loop.

    A close of an open connection maps its code to an action (Protocol.getCloseAction):
    4000 tls_only and 4200-4299 retry reconnect at once (retryIn(0)); 4001-4099 and >= 4300
    refused: no reconnect (disconnect()); 4100-4199 and 1002-1004 backoff, and every other
    code (1000, 1001, 1005, 1006, ...), wait 1 s (retryIn(1000): "backoff" is a fixed 1 s).
    A failed attempt does not end the connect(): the SequentialStrategy loop waits for the
    attempt's timeout (15 s, then doubling to timeoutLimit 60 s) before the next try, so the
    k-th failure since the last connect() waits min(60, 15 * 2^(k-1)) s (counted from the
    start of the attempt in pusher-js, from its failure here). Closes do not advance the count;
    it resets on open (a new connect() starts the loop over). Not modelled: the HTTP
    fallbacks (xhr streaming/polling, delayed 2-5 s), the transport cache, the unavailable
    state (a label after 10 s, no change in timing). Source: pusher/pusher-js 8.6.0 (commit
    f53faf9), src/core/connection/protocol/protocol.ts getCloseAction,
    src/core/connection/connection_manager.ts buildErrorCallbacks/buildConnectionCallbacks,
    src/core/strategies/sequential_strategy.ts, src/runtimes/isomorphic/default_strategy.ts.
    """
    refused = ((code >= 4001) & (code <= 4099)) | (code >= 4300)
    at_once = (code == 4000) | ((code >= 4200) & (code <= 4299))
    on_close = np.where(refused, np.nan, np.where(at_once, 0.0, _PUSHER_CLOSED_MS / 1000.0))
    timed = grow(p["timeout"], 2.0, k - 1, p["timeout_limit"])
    d: Arr = np.where(code >= 0, on_close, timed)
    return d


def _s_pusher(p: Params, k: int, prev: float, code: int, hint: float, const: float, u0: float, u1: float) -> float:
    if code >= 0:
        if 4001 <= code <= 4099 or code >= 4300:
            return math.nan
        if code == 4000 or 4200 <= code <= 4299:
            return 0.0
        return _PUSHER_CLOSED_MS / 1000.0
    return grow1(p["timeout"], 2.0, k - 1, p["timeout_limit"])


def _rws_min(p: Params, process_seed: int) -> float:
    """Per-process minReconnectionDelay: min_delay + U(0, min_spread), one draw per process seed."""
    return p["min_delay"] + p["min_spread"] * stream_unit(process_seed ^ _RWS_TAG, 1)


_RWS_TAG = 0x525753  # "RWS": this draw's own stream, apart from the clients' (client_uniforms)


PRESETS: list[Preset] = [
    Preset(
        "socketio",
        "base*2^n +/- 50% jitter, THEN min(5 s); reset every close",
        "socket.io-client backo2",
        "on open and on every close",
        (
            Param("base", 1.0, help="reconnectionDelay, s"),
            Param("cap", 5.0, help="reconnectionDelayMax, s"),
            P_FACTOR,
            Param("jitter", 0.5, hi=1.0, help="randomizationFactor"),
            P_ATTEMPTS,
        ),
        _d_socketio,
        capped,
        reset_on_open,
        check=need("cap", "base"),
        scalar=_s_socketio,
    ),
    Preset(
        "reconnecting-websocket",
        "min(10 s, m*1.3^n), m = 1 s + U(0,4 s) once per process",
        "reconnecting-websocket 4.4",
        "after min_uptime (5 s)",
        (
            Param("min_delay", 1.0, help="minReconnectionDelay low end, s"),
            Param("min_spread", 4.0, help="random part of minReconnectionDelay, s"),
            Param("factor", 1.3, lo=1.0, help="reconnectionDelayGrowFactor"),
            Param("cap", 10.0, help="maxReconnectionDelay, s"),
            Param("min_uptime", 5.0, allow_inf=True, help="minUptime, s"),
            P_ATTEMPTS,
        ),
        _d_rws,
        capped,
        reset_by_param,
        const=_rws_min,
        check=need("cap", "min_delay"),
        scalar=_s_rws,
    ),
    Preset(
        "signalr",
        "[0, 2, 10, 30] s, then give up",
        "ASP.NET Core SignalR DefaultReconnectPolicy",
        "on open",
        (),
        _d_signalr,
        lambda p: 30.0,
        reset_on_open,
        scalar=_s_signalr,
    ),
    Preset(
        "phoenix",
        "[10,50,100,150,200,250,500,1000,2000] ms, then 5 s; none after 1000",
        "phoenix.js Socket",
        "on open",
        (Param("rejoin", 0.0, choices=(0.0, 1.0), help="1: the channel rejoin timer [1,2,5] s then 10 s"),),
        _d_phoenix,
        lambda p: 10.0 if p["rejoin"] else 5.0,
        reset_on_open,
        scalar=_s_phoenix,
    ),
    Preset(
        "grpc",
        "1 s, then min(120 s, 1.6^n) * (1 +/- 0.2)",
        "gRPC connection-backoff spec",
        "on open (READY)",
        (
            Param("base", 1.0, help="INITIAL_BACKOFF, s"),
            Param("factor", 1.6, lo=1.0, help="MULTIPLIER"),
            Param("jitter", 0.2, hi=1.0, help="JITTER"),
            Param("cap", 120.0, help="MAX_BACKOFF, s"),
        ),
        _d_grpc,
        lambda p: p["cap"] * (1 + p["jitter"]),
        reset_on_open,
        check=need("cap", "base"),
        scalar=_s_grpc,
    ),
    Preset(
        "centrifuge",
        "min(20 s, 0.5 s + U(0, min(20 s, 0.5 s*2^n))); none after 3500-3999/4500-4999",
        "centrifuge-js",
        "on open",
        (Param("base", 0.5, help="minReconnectDelay, s"), Param("cap", 20.0, help="maxReconnectDelay, s")),
        _d_centrifuge,
        capped,
        reset_on_open,
        check=need("cap", "base"),
        scalar=_s_centrifuge,
    ),
    Preset(
        "websockets-py",
        "close: 0 s; failures: U(0,5), then 3.1 s x1.618 to 90 s",
        "python websockets client",
        "on open",
        (
            Param("initial", 5.0, help="BACKOFF_INITIAL_DELAY, s"),
            Param("base", 3.1, help="BACKOFF_MIN_DELAY, s"),
            Param("factor", 1.618, lo=1.0, help="BACKOFF_FACTOR"),
            Param("cap", 90.0, help="BACKOFF_MAX_DELAY, s"),
        ),
        _d_websockets,
        lambda p: max(p["cap"], p["initial"]),
        reset_on_open,
        counts=closes_never_count,
        check=need("cap", "base"),
        scalar=_s_websockets,
    ),
    Preset(
        "ably",
        "close: at once (>= 1 s after the last); failures: 15 s*min((n+2)/3,2)*(1-U*0.2); after 120 s: 30 s",
        "ably-js ConnectionManager",
        "on open (connected)",
        (
            Param("disconnected", 15.0, help="disconnectedRetryTimeout, s"),
            Param("suspended", 30.0, help="suspendedRetryTimeout, s"),
            Param("ttl", 120.0, help="connectionStateTtl: s without a connection before suspended"),
        ),
        _d_ably,
        lambda p: max(2.0 * p["disconnected"], p["ttl"] + p["suspended"], 1.0),
        reset_on_open,
        scalar=_s_ably,
        context=True,
        remember=_ably_remember,
        remember1=_ably_remember1,
    ),
    Preset(
        "pusher",
        "close 4000/42xx: 0 s; 40xx/43xx+: none; others: 1 s; failures: 15 s x2 to 60 s",
        "pusher-js ConnectionManager",
        "on open",
        (
            Param("timeout", 15.0, help="strategy timeout of the first attempt, s"),
            Param("timeout_limit", 60.0, help="timeoutLimit, s"),
        ),
        _d_pusher,
        lambda p: max(p["timeout_limit"], _PUSHER_CLOSED_MS / 1000.0),
        reset_on_open,
        counts=closes_never_count,
        check=need("timeout_limit", "timeout"),
        scalar=_s_pusher,
    ),
]
