"""The library's share of a handshake, from a probe, by running the fleet model on the probe itself.

Subtracting the cost model's nominal milliseconds from the probe's spacing of opens does not work
when the scenario has costs: the store's slots overlap the serving loop's work, and the clients see
opens in bursts, so the spacing came out below the nominal costs (5.1 ms against 10.2 ms on the
metastable pipeline) and the library's share clamped to 0, a server faster than the real one. Here
the model runs the probe's own scenario instead, and the library's share is the value at which the
model's server fills as fast as the real one did, by one measure on both sides: the area above
connected(t) before the restart (from the real clients' open times, and from the model's ticks).

The fill area is a measure of the order of service as much as of its speed: the real probe serves in
bursts (0, 28, 198, 74 handshakes per second), the model more evenly, so the area matched at 1.1 ms,
a server ~10% faster than the real one in a saturated return wave (fewer connect timeouts, a T95 a
third short on metastable with full-jitter). The library's share is therefore read from what the
probe's serving processes spent: their CPU over the fill (server ticks' cpu_pct) per handshake they
completed, less the cost model's own work on that CPU (TLS, attempt, session and handshake cost; the
store has its own process). The fill area stays as the fallback (a probe without CPU ticks) and as a
check in the calibration record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.runfolder import jsonl, names
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


def _num(v: Any) -> float | None:
    """A finite number from a JSON field, else None (a foreign or broken line is skipped)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def fill_cpu(ticks: list[dict[str, Any]], start: float, end: float) -> tuple[float, int]:
    """(CPU ms, completed handshakes) of the serving processes in the ticks that overlap [start, end]:
    a tick counts the second that ended with it (cpu_pct of one core over that second; goodput +
    abandoned are the handshakes finished in it). Partial ticks and other lines are left out."""
    cpu, done = 0.0, 0
    for r in ticks:
        t, pct = _num(r.get("t")), _num(r.get("cpu_pct"))
        if r.get("type") != "tick" or r.get("partial") or t is None or pct is None:
            continue
        if t - 1.0 < end and t > start:
            cpu += pct * 10.0  # % of one core over one second -> ms
            done += int(_num(r.get("goodput")) or 0) + int(_num(r.get("abandoned")) or 0)
    return cpu, done


def worker_ms(sc: Any) -> float:
    """The cost model's own ms per completed handshake on the serving process's CPU (not the store's)."""
    c = server_costs(sc)
    return (c.tls_ms if c.tls else 0.0) + c.attempt_cost_ms + c.session_cost_ms + float(sc.target.handshake_cost_ms)


def cpu_library_ms(sc: Any, ticks: list[dict[str, Any]], start: float, end: float) -> float | None:
    """The library's ms per handshake from the probe's CPU over its fill, or None without usable ticks
    (fewer completions than half the clients, or no CPU recorded)."""
    cpu, done = fill_cpu(ticks, start, end)
    if done < max(20, sc.users // 2) or cpu <= 0:
        return None
    return min(MAX_LIBRARY_MS, max(0.0, cpu / done - worker_ms(sc)))


def library_ms(probe_scenario: Path, probe_run: Path, close_ms: float | None, policy: Any) -> dict[str, Any]:
    """Calibrate on a real probe (its scenario file and run folder): the library's ms, and both fill areas."""
    from wsstorm.analysis.load import load_run
    from wsstorm.run import scenario as scenarios

    sc = scenarios.load(str(probe_scenario))
    run = load_run(probe_run)
    ev = run.events
    opens = ev[ev["event"] == "open"] if ev is not None else ev
    first = opens.groupby("user")["t"].min() if opens is not None and len(opens) else []
    first = np.asarray(first, dtype=float)
    target = fill_area(first - run.t0, sc.users, _restart_s(sc))
    by_fill = solve(sc, target, close_ms, policy)
    cpu_ms = None
    attempts = ev[ev["event"] == "attempt"]["t"] if ev is not None and len(ev) else []
    if len(first) and len(attempts):
        fill_end = float(np.sort(first)[: sc.users].max())
        ticks = list(jsonl.records(Path(probe_run) / names.SERVER))
        cpu_ms = cpu_library_ms(sc, ticks, float(np.min(attempts)), fill_end)
    ms = by_fill if cpu_ms is None else cpu_ms
    return {
        "library_ms": round(ms, 3),
        "source": "fill area" if cpu_ms is None else "cpu per handshake",
        "library_ms_fill": round(by_fill, 3),
        "fill_area_real": target,
        "fill_area_model": model_fill(sc, ms, close_ms, policy),
    }
