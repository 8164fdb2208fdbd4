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
store has its own process), plus, when the store shares the server's one core, the part of that core
neither process got while the fill kept it saturated (the probe's core share, ~0.95: a saturated
return wave on metastable also runs the core at 90-96% by the same ticks). The fill area stays as the
fallback (a probe without CPU ticks) and as a check in the calibration record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.runfolder import jsonl, names
from wsstorm.sim.config import build_config, server_costs, setting, store_on_server_cpus
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


@dataclass(frozen=True)
class FillCpu:
    """What the probe's serving processes spent over its fill (server.jsonl lines overlapping it)."""

    worker_ms: float  # the serving processes' CPU (ticks' cpu_pct)
    store_ms: float  # the dependency store's CPU (its own lines' cpu_ms)
    done: int  # handshakes finished (goodput + abandoned)


def fill_cpu(lines: list[dict[str, Any]], start: float, end: float) -> FillCpu:
    """The serving processes' and the store's CPU, and the handshakes finished, in the lines that overlap
    [start, end]: a line counts the second that ended with it (a tick's cpu_pct is % of one core over that
    second). Partial ticks, broken lines and other kinds are left out."""
    worker, store, done = 0.0, 0.0, 0
    for r in lines:
        t = jsonl.number(r.get("t"))
        if t is None or r.get("partial") or not (t > start and t - 1.0 < end):
            continue
        if r.get("type") == "tick" and (pct := jsonl.number(r.get("cpu_pct"))) is not None:
            worker += pct * 10.0  # % of one core over one second -> ms
            done += int(jsonl.number(r.get("goodput")) or 0) + int(jsonl.number(r.get("abandoned")) or 0)
        elif r.get("type") == "store" and (ms := jsonl.number(r.get("cpu_ms"))) is not None:
            store += ms
    return FillCpu(worker, store, done)


def worker_ms(sc: Any) -> float:
    """The cost model's own ms per completed handshake on the serving process's CPU (not the store's)."""
    c = server_costs(sc)
    return (c.tls_ms if c.tls else 0.0) + c.attempt_cost_ms + c.session_cost_ms + float(sc.target.handshake_cost_ms)


def shares_one_core(sc: Any) -> bool:
    """The store and the serving process pinned to one core (one worker, a store, `cpus` set): the
    model then runs both on one CPU budget, and the probe's fill shows how much of that core they got."""
    return store_on_server_cpus(server_costs(sc), sc.target) and int(setting(sc.target, "workers", 1) or 1) == 1


def cpu_library_ms(sc: Any, lines: list[dict[str, Any]], start: float, end: float) -> dict[str, float] | None:
    """The library's ms per handshake from the probe's CPU over its fill (start: first attempt, end: last
    open), or None without usable lines (fewer completions than half the clients, or no CPU recorded).

    cpu: the serving process's CPU per handshake beyond the cost model's work. core_share: with the store
    on the same core, the part of that core's wall time over the saturated fill the two processes got
    ((worker + store CPU) / fill time: ~0.95 here; the rest is the kernel's loopback traffic, the
    supervisor, the store's event loop, none of them in the cost model). The model's server has the
    whole core, so a handshake costs it 1/core_share times its CPU, and the library's share carries that
    (as WEBSOCKETS_HANDSHAKE_MS carries "the kernel and the event loop")."""
    f = fill_cpu(lines, start, end)
    if f.done < max(20, sc.users // 2) or f.worker_ms <= 0:
        return None
    cpu = max(0.0, f.worker_ms / f.done - worker_ms(sc))
    share = 1.0
    if shares_one_core(sc) and f.store_ms > 0 and end > start:
        share = min(1.0, (f.worker_ms + f.store_ms) / ((end - start) * 1000.0))
    lost = (1.0 / share - 1.0) * (f.worker_ms + f.store_ms) / f.done if share > 0 else MAX_LIBRARY_MS
    return {"cpu": cpu, "core_share": share, "library_ms": min(MAX_LIBRARY_MS, cpu + lost)}


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
    ms = by_fill if cpu_ms is None else cpu_ms["library_ms"]
    return {
        "library_ms": round(ms, 3),
        "source": "fill area" if cpu_ms is None else "cpu per handshake",
        "library_cpu_ms": None if cpu_ms is None else round(cpu_ms["cpu"], 3),
        "core_share": None if cpu_ms is None else round(cpu_ms["core_share"], 4),
        "library_ms_fill": round(by_fill, 3),
        "fill_area_real": target,
        "fill_area_model": model_fill(sc, ms, close_ms, policy),
    }
