"""The server side of a run folder: server.jsonl ticks and fault lines, faults.jsonl, the server
columns of the series frame, the disruptions (with when each trigger ended) and the handshake
budget a target's cost model implies.  Tolerant like :mod:`.load`: problems become warnings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import number, read_jsonl

# Optional ServerTick counts of the cost model, and the series column each sums into.
COST_FIELDS = {
    "goodput": "server_goodput",
    "wasted_ms": "server_wasted_ms",
    "abandoned": "server_abandoned",
    "attempts": "server_attempts",
    "work_ms": "server_work_ms",
}
# session start versus resume (a target with resume_window): counts per tick, absent before they existed
SESSION_FIELDS = ("resumed", "session_starts", "session_refused")


def load_server(folder: Path, warnings: list[str]) -> tuple[pd.DataFrame | None, list[dict[str, Any]]]:
    """Server ticks as a frame, plus its fault lines."""
    p = folder / names.SERVER
    if not p.exists():
        warnings.append(
            f"no {names.SERVER}: server-side numbers (capacity, rejections) come from the manifest and the clients"
        )
        return None, []
    rows, faults = [], []
    for chunk in read_jsonl(p, warnings, "server log"):
        for r in chunk:
            if not isinstance(r.get("t"), (int, float)):
                continue
            if r.get("type") == "fault":
                faults.append(r)
            elif r.get("type", "tick") == "tick":
                rej = r.get("rejected") or {}
                rows.append(
                    {
                        "t": float(r["t"]),
                        "proc": r.get("proc", 0),
                        "state": str(r.get("state", "serving")),
                        "connections": number(r.get("connections")),
                        "capacity": number(r.get("capacity")),
                        "handshake_rate": number(r.get("handshake_rate")),
                        "accepted": number(r.get("accepted")),
                        "rejected": sum(number(v) or 0 for v in rej.values()) if isinstance(rej, dict) else number(rej),
                        "queue_depth": number(r.get("queue_depth")),
                        "cpu_pct": number(r.get("cpu_pct")),
                        # the cost model's counts: absent (None -> NaN) in runs that predate it
                        **{k: number(r.get(k)) for k in COST_FIELDS},
                        **{k: number(r.get(k)) for k in SESSION_FIELDS},
                    }
                )
    if not rows:
        warnings.append(f"{names.SERVER} has no tick lines")
        return None, faults
    return pd.DataFrame(rows), faults


def load_faults(folder: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """faults.jsonl lines (failed firings are kept out)."""
    p = folder / names.FAULTS
    if not p.exists():
        return []
    out = []
    for chunk in read_jsonl(p, warnings, "faults log"):
        for r in chunk:
            if isinstance(r.get("t"), (int, float)) and r.get("ok", True) is not False:
                out.append(r)
    return out


MAX_SPREAD_S = 10  # a tick late by more than this is attributed to its own second only


def _spread_ticks(sv: pd.DataFrame, counts: list[str]) -> pd.DataFrame:
    """One row per (tick, second it covers): a tick counts what happened since its process's previous
    tick, so a tick that came late (a busy server) covers the seconds it skipped, its counts split
    evenly over them; gauges (connections, capacity, state) are repeated."""
    sv = sv.sort_values(["proc", "t"], kind="stable")
    s = sv["s"].to_numpy()
    prev = sv.groupby("proc", sort=False)["s"].shift(1).to_numpy(dtype=float)
    first = np.where(np.isnan(prev), s, np.minimum(np.nan_to_num(prev, nan=0).astype(np.int64) + 1, s))
    first = np.maximum(first, s - MAX_SPREAD_S + 1)
    n = (s - first + 1).astype(np.int64)
    rows = sv.loc[sv.index.repeat(n)].reset_index(drop=True)
    rows["s"] = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, s, strict=False)]) if len(s) else s
    share = np.repeat(1.0 / n, n)
    for c in counts:
        if c in rows:
            rows[c] = rows[c] * share
    return rows


def add_server_columns(series: pd.DataFrame, server: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Add server_connections, capacity, handshake_rate, server_rejected, server_accepted, server_queue_depth,
    server_not_serving and the cost-model columns: gauges per process per second (its last tick), summed
    over processes; counts summed over ticks, a late tick's counts spread over the seconds it covers."""
    sv = server.copy()
    sv["s"] = np.floor(sv["t"] - t0).astype(np.int64)
    sv = sv[(sv["s"] >= 0) & (sv["s"] < len(series))]
    sv["not_serving"] = (sv["state"] != "serving").astype(int)
    counts = ["rejected", "accepted", *COST_FIELDS]
    sv = _spread_ticks(sv, counts)
    per_proc = sv.groupby(["s", "proc"]).agg(
        connections=("connections", "last"),
        capacity=("capacity", "max"),
        handshake_rate=("handshake_rate", "max"),
    )
    gauges = per_proc.groupby(level="s").sum(min_count=1)
    g = sv.groupby("s").agg(
        server_rejected=("rejected", "sum"),
        server_accepted=("accepted", "sum"),
        server_queue_depth=("queue_depth", "max"),
        server_not_serving=("not_serving", "max"),
    )
    g.insert(0, "server_connections", gauges["connections"])
    g.insert(1, "capacity", gauges["capacity"])
    g.insert(2, "handshake_rate", gauges["handshake_rate"])
    out = series.join(g, how="left")
    for field_, col in COST_FIELDS.items():
        if field_ in sv and sv[field_].notna().any():
            # min_count=1: a second in which no tick carried the field stays NaN, not 0
            out[col] = sv.groupby("s")[field_].sum(min_count=1).reindex(out.index)
            # a second no tick covers at all: nothing was counted (a missing tick is not missing data)
            out[col] = out[col].where(out[col].notna() | out.index.isin(sv["s"]), 0.0)
    return out


def _undoes(fault: str, params: dict[str, Any]) -> str | None:
    """The fault a line ends (partition <- heal, latency <- latency ms=0), if it is such an undo."""
    if fault == "heal":
        return "partition"
    if fault == "latency" and not (number(params.get("ms")) or 0):
        return "latency"
    return None


def disruptions_of(faults: list[dict[str, Any]], server_faults: list[dict[str, Any]], t0: float) -> pd.DataFrame:
    """Disruption times and the end of each trigger (columns t, end, fault, source; seconds since t0):
    faults.jsonl, else the server's fault lines, else none.  The trigger ends after the restart's or
    crash's down time (a lame duck's grace + closing window), at the heal of a partition, at the undo of
    a latency fault; others at once."""
    src, rows = names.FAULTS, faults
    if not rows:
        src, rows = names.SERVER, server_faults
    rows = sorted(rows, key=lambda r: float(r["t"]))
    recs: list[dict[str, Any]] = []
    for r in rows:
        fault = str(r.get("fault", "?"))
        params: dict[str, Any] = r["params"] if isinstance(r.get("params"), dict) else r
        if _undoes(fault, params) is not None:  # a heal ends a disruption; it is not one
            continue
        t = float(r["t"]) - t0
        down = number(params.get("down", params.get("down_s"))) or 0.0
        if fault == "lame-duck" and "down_s" not in params:  # faults.jsonl: serves again after grace + window
            down = (number(params.get("grace")) or 0.0) + (number(params.get("duration")) or 0.0)
        recs.append({"t": t, "end": t + max(down, 0.0), "fault": fault, "source": src})
    for r in rows:  # an undo line ends the latest earlier fault it undoes
        params = r["params"] if isinstance(r.get("params"), dict) else r
        undone = _undoes(str(r.get("fault", "?")), params)
        if undone is None:
            continue
        t = float(r["t"]) - t0
        for rec in reversed(recs):
            if rec["fault"] == undone and rec["t"] < t and rec["end"] == rec["t"]:
                rec["end"] = t
                break
    df = pd.DataFrame(recs, columns=["t", "end", "fault", "source"]).sort_values("t").reset_index(drop=True)
    return df


def _count_cpus(text: Any) -> int | None:
    """How many CPUs a list such as '1', '0-1' or '0,2-3' names (None if it is not such a list)."""
    n = 0
    for part in str(text).split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return None
        n += (int(hi) - int(lo) + 1) if hi else 1
    return n if n > 0 else None


def cost_budget(target: dict[str, Any]) -> float | None:
    """Handshakes per second the target's cost model can finish when its token bucket is off: serving
    processes (at most its pinned CPUs) x 1000 / CPU-ms per admitted attempt (attempt + handshake +
    session cost), capped by the dependency store's concurrency x 1000 / store_ms.  An estimate: TLS
    handshake CPU is not in it.  None when the target has no costs."""

    def ms(key: str) -> float:
        v = number(target.get(key))
        return v if v is not None and v > 0 else 0.0

    cpu_ms = ms("attempt_cost_ms") + ms("handshake_cost_ms") + ms("session_cost_ms")
    bounds = []
    if cpu_ms > 0:
        procs = int(number(target.get("workers")) or 1)
        cpus = _count_cpus(target["cpus"]) if target.get("cpus") not in (None, "") else None
        bounds.append(min(procs, cpus or procs) * 1000.0 / cpu_ms)
    conc, store = number(target.get("store_concurrency")), ms("store_ms")
    if conc and conc > 0 and store > 0:
        bounds.append(conc * 1000.0 / store)
    return min(bounds) if bounds else None
