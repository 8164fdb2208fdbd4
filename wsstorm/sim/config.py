"""Scenario -> fleet model: every per-server quantity of a scenario scaled to the fleet size.

The server's cost model is read from the same scenario keys as the embedded target's
([target] tls, attempt_cost_ms, session_cost_ms, store_concurrency, store_ms, handshake_rate,
handshake_timeout; [client] connect_timeout), absent keys meaning what they mean there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.sim.fleetmodel import FaultAt, ModelConfig

DEFAULT_CONNECT_TIMEOUT = 10.0  # the harness's --connect-timeout default
DEFAULT_HANDSHAKE_TIMEOUT = 10.0  # the embedded target's --open-timeout default
# Server time per handshake on top of the scenario's handshake_cost_ms: the websockets handshake
# itself in Python (accept, parse, upgrade) plus the kernel and the event loop. Measured with
# wsstorm.sim.servicetime against the embedded target on this project's shared 2-core machine:
# 3.2-3.9 ms per handshake with handshake_cost_ms = 2. Measure your own with the probe
# (`wsstorm simulate --probe`) or pass --handshake-service-ms.
WEBSOCKETS_HANDSHAKE_MS = 1.5
# Server time per close frame sent (a restart's 1012s): 0.16-0.5 ms measured the same way.
CLOSE_SERVICE_MS = 0.3
# Server CPU of one TLS 1.3 handshake with the embedded target's RSA-2048 certificate (Python ssl,
# OpenSSL): 1.19-1.26 ms measured on this machine (thread CPU time of the server side, 300 handshakes).
TLS_HANDSHAKE_MS = 1.2


@dataclass(frozen=True)
class ServerCosts:
    """The cost model of one serving process and the clients' patience (scenario keys, unscaled)."""

    tls: bool = False
    tls_ms: float = TLS_HANDSHAKE_MS
    attempt_cost_ms: float = 0.0
    session_cost_ms: float = 0.0
    store_concurrency: int = 0
    store_ms: float = 0.0
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def nominal_ms(self) -> float:
        """The cost model's own ms per admitted attempt (TLS, attempt, session and store work)."""
        tls = self.tls_ms if self.tls else 0.0
        store = self.store_ms if self.store_concurrency > 0 else 0.0
        return tls + self.attempt_cost_ms + self.session_cost_ms + store


def setting(obj: Any, key: str, default: Any) -> Any:
    """A scenario setting, tolerant of scenario versions without it (attribute or dict key; None = absent)."""
    v = obj.get(key, None) if isinstance(obj, dict) else getattr(obj, key, None)
    return default if v is None else v


def store_on_server_cpus(costs: ServerCosts, tg: Any) -> bool:
    """The store pinned with the serving processes (a store, and ``cpus`` set): its CPU comes out of theirs."""
    return bool(costs.store_concurrency and costs.store_ms and setting(tg, "cpus", None))


def server_costs(sc: Any, tls_ms: float | None = None) -> ServerCosts:
    """The scenario's cost model ([target] and [client] keys); absent keys: off / the embedded defaults."""
    tg, cl = sc.target, sc.client
    costs = ServerCosts(
        tls=bool(setting(tg, "tls", False)),
        tls_ms=float(TLS_HANDSHAKE_MS if tls_ms is None else tls_ms),
        attempt_cost_ms=float(setting(tg, "attempt_cost_ms", 0.0)),
        session_cost_ms=float(setting(tg, "session_cost_ms", 0.0)),
        store_concurrency=int(setting(tg, "store_concurrency", 0)),
        store_ms=float(setting(tg, "store_ms", 0.0)),
        handshake_timeout=float(setting(tg, "handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)),
        connect_timeout=float(setting(cl, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
    )
    check_costs(costs)
    return costs


def check_costs(c: ServerCosts) -> None:
    """Costs are finite milliseconds >= 0, timeouts finite seconds > 0 (UsageError, one line)."""
    for name in ("tls_ms", "attempt_cost_ms", "session_cost_ms", "store_ms"):
        v = getattr(c, name)
        if not (math.isfinite(v) and 0 <= v <= 60_000):
            raise UsageError(f"{name} must be between 0 and 60000 ms, got {v:g}")
    if c.store_concurrency < 0:
        raise UsageError(f"store_concurrency must be >= 0, got {c.store_concurrency}")
    if not (math.isfinite(c.connect_timeout) and c.connect_timeout > 0):
        raise UsageError(f"connect_timeout must be > 0 seconds, got {c.connect_timeout:g}")
    if not (math.isfinite(c.handshake_timeout) and c.handshake_timeout >= 0):
        raise UsageError(f"handshake_timeout must be >= 0 seconds, got {c.handshake_timeout:g}")


def build_config(
    sc: Any,
    clients: int,
    seed: int = 1,
    dt: float = 0.01,
    connect_timeout: float | None = None,
    handshake_service_ms: float | None = None,
    reject_service_ms: float | None = None,
    close_service_ms: float | None = None,
    retry_after: float | None = None,
    costs: ServerCosts | None = None,
    sized_for: int | None = None,
) -> tuple[ModelConfig, float]:
    """The model for a scenario scaled to ``clients`` (every per-server quantity times clients/users).

    Returns (config, scale).

    Service times (ms of one serving process per handshake / rejection / close) default to
    handshake_cost_ms + WEBSOCKETS_HANDSHAKE_MS, WEBSOCKETS_HANDSHAKE_MS and CLOSE_SERVICE_MS.
    ``costs`` (default: read from the scenario) adds the cost model of issue 12 on top.

    ``sized_for``: a fixed deployment, sized for that many clients (its CPU, handshake budget, store
    and the rate it lets clients join at), facing ``clients``; connection slots still grow with the
    fleet. The ramp then takes clients / sized_for times as long, and the faults move with its end.
    """
    k = clients / sc.users
    ks = k if sized_for is None else sized_for / sc.users  # the server side's scale
    tg, cl = sc.target, sc.client
    costs = server_costs(sc) if costs is None else costs
    check_costs(costs)
    hs = float(tg.handshake_cost_ms) + WEBSOCKETS_HANDSHAKE_MS if handshake_service_ms is None else handshake_service_ms
    rj = max(0.0, hs - float(tg.handshake_cost_ms)) if reject_service_ms is None else reject_service_ms
    cs = CLOSE_SERVICE_MS if close_service_ms is None else close_service_ms
    for name, v in (("handshake service", hs), ("reject service", rj), ("close service", cs)):
        if not (math.isfinite(v) and 0 <= v <= 10_000):
            raise UsageError(f"{name} time must be between 0 and 10000 ms, got {v:g}")
    if retry_after is None and tg.overload == "http":
        retry_after = 1.0  # the embedded target's Retry-After when it has no hint configured
    rate = float(tg.handshake_rate or 0.0) * ks
    # a longer ramp (a fixed deployment lets clients in at its own rate): everything after it moves along
    shift = float(math.ceil(sc.users / sc.spawn_rate * (k / ks - 1.0) - 1e-9)) if ks != k else 0.0
    faults: list[FaultAt] = []
    for f in sc.faults:
        params = dict(f.params)
        if "batch" in params:
            params["batch"] = max(1, round(params["batch"] * ks))
        if "capacity" in params:
            params["capacity"] = max(1, round(params["capacity"] * k))
        if "handshake_rate" in params:
            params["handshake_rate"] = params["handshake_rate"] * ks
        for at in f.times():
            faults.append(FaultAt(float(at) + shift, f.action, params))
    ct = costs.connect_timeout if connect_timeout is None else connect_timeout
    cfg = ModelConfig(
        clients=clients,
        duration=float(sc.duration) + shift,
        spawn_rate=sc.spawn_rate * ks,
        capacity=max(1, round(tg.capacity * k)),
        handshake_rate=rate,
        burst=max(1.0, rate / 10.0),
        handshake_service_ms=hs,
        reject_service_ms=rj,
        close_service_ms=cs,
        handshake_cost_ms=float(tg.handshake_cost_ms),
        cpu_ms_per_s=1000.0 * tg.workers * ks,
        workers=tg.workers,
        overload=tg.overload,
        retry_after=retry_after,
        connect_timeout=ct,
        ping_interval=float(cl.ping_interval or 5.0),
        pong_timeout=float(cl.pong_timeout or 5.0),
        tls_ms=costs.tls_ms if costs.tls else 0.0,
        attempt_cost_ms=costs.attempt_cost_ms,
        session_cost_ms=costs.session_cost_ms,
        # more servers, more stores: the store's slots scale with the fleet like the server's CPU
        store_concurrency=max(1, round(costs.store_concurrency * ks)) if costs.store_concurrency else 0,
        store_ms=costs.store_ms,
        handshake_timeout=costs.handshake_timeout,
        store_cpu_share=(
            costs.store_concurrency / (costs.store_concurrency + tg.workers) if store_on_server_cpus(costs, tg) else 0.0
        ),
        faults=tuple(faults),
        dt=dt,
        seed=seed,
    )
    return cfg, k
