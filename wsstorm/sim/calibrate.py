"""The library's share of a handshake, from a probe, by running the fleet model on the probe itself.

Subtracting the cost model's nominal milliseconds from the probe's spacing of opens does not work
when the scenario has costs: the store's slots overlap the serving loop's work, and the clients see
opens in bursts, so the spacing came out below the nominal costs (5.1 ms against 10.2 ms on the
metastable pipeline) and the library's share clamped to 0, a server faster than the real one. Here
the model runs the probe's own scenario instead, and the library's share is the value at which the
model's server fills as fast as the real one did, by one measure on both sides: the area above
connected(t) before the restart (from the real clients' open times, and from the model's ticks).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.sim.config import build_config, server_costs
from wsstorm.sim.fleetmodel import FleetModel

MAX_LIBRARY_MS = 50.0  # a handshake the library needs longer than this for is no handshake to model
STEPS = 14  # bisection steps: 50 ms / 2**14 is 3 microseconds


def fill_area(open_s: np.ndarray, users: int, until_s: float) -> float:
    """Client-seconds not yet connected before until_s, from the seconds (since the start) at which the
    clients first opened: the area above connected(t) while the probe's clients come in."""
    t = np.sort(np.asarray(open_s, dtype=float))[:users]
    t = t[t < until_s]
    return float(t.sum() + (users - t.size) * until_s)


def _restart_s(sc: Any) -> float:
    """When the probe's restart fires: the fill ends there."""
    at = [float(f.at) for f in sc.faults if getattr(f, "action", None) == "restart"]
    return min(at) if at else float(sc.duration)


def model_fill(sc: Any, library_ms: float, close_ms: float | None, policy: Any, seed: int = 1) -> float:
    """The fill area of the fleet model on the probe scenario with the library taking library_ms."""
    from wsstorm.sim.simulate import fleet_policy  # the simulator's own policy adapter

    hs_cost = float(sc.target.handshake_cost_ms)
    cfg, _ = build_config(
        sc,
        sc.users,
        seed=seed,
        handshake_service_ms=library_ms + hs_cost,
        reject_service_ms=library_ms,
        close_service_ms=close_ms,
        costs=server_costs(sc),
    )
    res = FleetModel(cfg, fleet_policy(policy, cfg.clients, seed)).run()
    until = _restart_s(sc)
    n = min(res.connected_tick.size, math.ceil(until / res.dt - 1e-9))
    missing = np.clip(sc.users - res.connected_tick[:n].astype(float), 0.0, None)
    return float(missing.sum() * res.dt)


def solve(sc: Any, target: float, close_ms: float | None, policy: Any) -> float:
    """The library's ms per handshake at which the model's fill area on scenario sc is target (bisection:
    the fill is slower the longer a handshake takes; clamped to [0, MAX_LIBRARY_MS])."""
    lo, hi = 0.0, MAX_LIBRARY_MS
    if model_fill(sc, lo, close_ms, policy) >= target:
        return lo  # the cost model alone already fills as slowly as the real server
    if model_fill(sc, hi, close_ms, policy) < target:
        return hi
    for _ in range(STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if model_fill(sc, mid, close_ms, policy) < target else (lo, mid)
    return (lo + hi) / 2


def library_ms(probe_scenario: Path, probe_run: Path, close_ms: float | None, policy: Any) -> dict[str, Any]:
    """Calibrate on a real probe (its scenario file and run folder): the library's ms, and both fill areas."""
    from wsstorm.analysis.load import load_run
    from wsstorm.run import scenario as scenarios

    sc = scenarios.load(str(probe_scenario))
    run = load_run(probe_run)
    ev = run.events
    opens = ev[ev["event"] == "open"] if ev is not None else ev
    first = opens.groupby("user")["t"].min() if opens is not None and len(opens) else []
    target = fill_area(np.asarray(first, dtype=float) - run.t0, sc.users, _restart_s(sc))
    ms = solve(sc, target, close_ms, policy)
    return {
        "library_ms": round(ms, 3),
        "fill_area_real": target,
        "fill_area_model": model_fill(sc, ms, close_ms, policy),
    }
