"""Measure the embedded target's service times on this machine: ms of wall time per handshake, per close sent.

A short harness run (the probe) opens ``users`` connections faster than one serving process can
accept them, with no handshake budget, then restarts the server while the clients reconnect with
the policy under study; the open (before the restart) and 1012-close timestamps of its event log
give the throughput of the whole pipeline (server, kernel, Locust client) on this machine right
now. The fleet model takes these as inputs (``--handshake-service-ms``, ``--close-service-ms``). The
probe's target has the scenario's cost model (TLS, attempt and session cost, the store), so what it
measures is that whole pipeline.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.runfolder import jsonl, names

# The middle of the storm: leave out the first and last 10% (start-up and stragglers).
TRIM = 0.1


# The scenario's cost model, copied into the probe's [target] so the probe measures that pipeline.
COST_KEYS = ("tls", "attempt_cost_ms", "session_cost_ms", "store_concurrency", "store_ms", "cpus")


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{v:g}"


def probe_scenario(
    users: int = 600,
    handshake_cost_ms: float = 2.0,
    restart_at: float | None = None,
    message_rate: float = 0.0,
    ping_interval: float = 5.0,
    pong_timeout: float = 5.0,
    costs: dict[str, Any] | None = None,
) -> str:
    """TOML of the probe: ``users`` clients spawned at once, no budget, one restart (all, 0.5 s down)
    once they are all in (at twice the expected cost per handshake, and at least 6 ms: slower than this
    machine has been seen to be). ``costs``: the scenario's cost-model keys (COST_KEYS), measured too."""
    costs = {k: v for k, v in (costs or {}).items() if k in COST_KEYS and v not in (None, "", 0, False)}
    expect_ms = (
        1.5 + handshake_cost_ms + float(costs.get("attempt_cost_ms", 0)) + float(costs.get("session_cost_ms", 0))
    )
    expect_ms += 1.5 if costs.get("tls") else 0.0
    if restart_at is None:
        restart_at = round(1.0 + users * max(0.006, 2 * expect_ms / 1000.0), 1)
    extra = "".join(f"{k} = {_toml(v)}\n" for k, v in costs.items())
    return f"""
name = "service-probe"
description = "measures handshake and close service times: {users} clients at once, no budget, one restart"
duration = {restart_at + 2.5:g}
users = {users}
spawn_rate = {users * 2}

[target]
capacity = {users * 10}
handshake_rate = 1000000
handshake_cost_ms = {handshake_cost_ms:g}
overload = "close"
{extra}
[client]
message_rate = {message_rate:g}
ping_interval = {ping_interval:g}
pong_timeout = {pong_timeout:g}
connect_timeout = {max(60.0, restart_at * 2):g}

[[faults]]
at = {restart_at:g}
action = "restart"
mode = "all"
down = 0.5
"""


def _spacing_ms(times: list[float]) -> float:
    """Mean gap (ms) between consecutive events within the trimmed middle of ``times``."""
    ts = sorted(times)
    if len(ts) < 20:
        return math.nan
    lo, hi = int(len(ts) * TRIM), int(len(ts) * (1 - TRIM)) - 1
    return (ts[hi] - ts[lo]) / (hi - lo) * 1000.0


def service_times(run_dir: str | Path) -> dict[str, Any]:
    """Handshake and close service times (ms) from a probe run folder's event log."""
    opens: list[float] = []
    closes: list[float] = []
    run_dir = Path(run_dir)
    files = names.event_shards(run_dir)
    if not files:
        raise UsageError(f"{run_dir}: no {names.EVENTS_GLOB} (not a probe run folder)")
    fault_t = math.inf
    for f in jsonl.records(run_dir / names.FAULTS):
        if f.get("fault") == "restart":
            t = jsonl.number(f.get("scheduled_t")) or jsonl.number(f.get("t"))
            if t is not None:
                fault_t = min(fault_t, t)
    for path in files:
        for e in jsonl.records(path):
            t = jsonl.number(e.get("t"))
            if t is None:
                continue
            if e.get("event") == "open":
                opens.append(t)
            elif e.get("event") == "close" and e.get("code") == 1012:
                closes.append(t)
    # reconnects after the restart meet a server that just came back: only the first fill counts
    opens = [t for t in opens if t < fault_t]
    hs, cl = _spacing_ms(opens), _spacing_ms(closes)
    first_close_ms = (min(closes) - fault_t) * 1000.0 if closes and math.isfinite(fault_t) else math.nan
    if not math.isfinite(hs):
        raise UsageError(f"{run_dir}: too few opens ({len(opens)}) to measure the handshake service time")
    return {
        "handshake_service_ms": round(hs, 3),
        "close_service_ms": round(cl, 3) if math.isfinite(cl) else None,
        "opens": len(opens),
        "closes_1012": len(closes),
        "first_close_ms": round(first_close_ms, 1) if math.isfinite(first_close_ms) else None,
    }


def probe(
    out: str | Path,
    users: int = 600,
    handshake_cost_ms: float = 2.0,
    policy: str = "full-jitter",
    client: dict[str, float] | None = None,
    timeout: float = 90.0,
    costs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the probe (``wsstorm run`` in a child process, clients reconnecting with ``policy``) into ``out``;
    return its service times. The clients' own work shares this machine with the server, as in a real run
    here, so give it the scenario's users and client settings (``client``: message_rate, ping_interval,
    pong_timeout)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scen = out / "service-probe.toml"
    scen.write_text(probe_scenario(users, handshake_cost_ms, costs=costs, **(client or {})), encoding="utf-8")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsstorm",
            "run",
            "--scenario",
            str(scen),
            "--policy",
            policy,
            "--out",
            str(out / "runs"),
            "--no-report",
            "--plain",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if p.returncode != 0:
        raise UsageError(f"service probe failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    run_dir = next(d for d in sorted((out / "runs").iterdir()) if d.is_dir())
    return {
        **service_times(run_dir),
        "users": users,
        "handshake_cost_ms": handshake_cost_ms,
        "policy": policy,
        "costs": dict(costs or {}),
        "run": str(run_dir),
        "scenario": str(scen),
    }
