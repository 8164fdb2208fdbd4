"""A simulated run's numbers, computed by the reports' own functions (wsstorm.analysis.metrics).

The model's result becomes exactly what ``wsstorm report`` would load from the run folder the
simulator writes (the same series frame, disruptions, downtimes and target settings), and
``metrics.compute`` turns it into herd factor, recovery, downtime, wasted attempts, overload,
goodput and the metastable verdict: one definition of each, for simulated and real runs alike.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.runfolder import schemas
from wsstorm.sim.fleetmodel import SERIES_COLUMNS, ModelConfig, ModelResult

DOWNTIME_SAMPLE = 100_000  # downtimes.csv keeps a seeded sample of this many (a 10^6 fleet has millions)
FLOAT_DECIMALS = 3  # float series columns as written to series.csv


def fault_lines(res: ModelResult, started: float) -> list[schemas.FaultLine]:
    """faults.jsonl of the run: one line per fault the model fired."""
    return [
        {
            "v": schemas.VERSION,
            "t": started + f["at"],
            "fault": f["fault"],
            "params": f["params"],
            "ok": f["ok"],
            "detail": f["detail"] or "simulated",
            "at": f["at"],
        }
        for f in res.faults
    ]


def downtime_sample(res: ModelResult, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(downtimes s rounded to ms, recovered) as downtimes.csv holds them: all, or a seeded sample."""
    d, rec = res.downtimes, res.recovered
    if d.size > DOWNTIME_SAMPLE:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(d.size, DOWNTIME_SAMPLE, replace=False))
        d, rec = d[pick], rec[pick]
    return np.round(d, 3), rec


def series_values(col: np.ndarray) -> np.ndarray:
    """A series column as written: integers as such, floats to FLOAT_DECIMALS."""
    return np.round(col, FLOAT_DECIMALS) if col.dtype.kind == "f" else col


def target_block(cfg: ModelConfig) -> dict[str, Any]:
    """The manifest's ``target``: the simulated server's settings, scaled to the fleet (``workers`` is the
    fleet's server CPU in cores), so the reports' budget estimate sees the server the model ran."""
    return {
        "capacity": cfg.capacity,
        "handshake_rate": cfg.handshake_rate,
        "handshake_burst": cfg.burst,
        "handshake_cost_ms": cfg.handshake_cost_ms,
        "overload": cfg.overload,
        "workers": cfg.cpu_ms_per_s / 1000.0,
        "cpus": None,
        "tls": cfg.tls_ms > 0,
        "tls_ms": cfg.tls_ms,
        "attempt_cost_ms": cfg.attempt_cost_ms,
        "session_cost_ms": cfg.session_cost_ms,
        "store_concurrency": cfg.store_concurrency,
        "store_ms": cfg.store_ms,
        "handshake_timeout": cfg.handshake_timeout,
        "connect_timeout": cfg.connect_timeout,
    }


def analysis_run(
    res: ModelResult, cfg: ModelConfig, manifest: dict[str, Any], started: float, path: Path | None = None
) -> Any:
    """The analysis ``Run`` that loading the written run folder gives (series frame, disruptions, downtimes)."""
    import pandas as pd

    from wsstorm.analysis.load import Run, disruptions_of

    frame = pd.DataFrame({c: series_values(res.series[c]) for c in SERIES_COLUMNS}).set_index("s").sort_index()
    frame.index.name = "s"
    end = float(frame.index.max() + 1) if len(frame) else 0.0
    d, _ = downtime_sample(res, cfg)
    return Run(
        path=path or Path(manifest.get("run", "simulated")),
        manifest=manifest,
        events=None,
        conns=None,
        server=None,
        disruptions=disruptions_of([dict(f) for f in fault_lines(res, started)], [], started),
        series=frame,
        t0=started,
        end=end,
        downtimes=d,
    )


def compute_metrics(
    res: ModelResult, cfg: ModelConfig, manifest: dict[str, Any] | None = None, started: float = 0.0
) -> dict[str, Any]:
    """``wsstorm.analysis.metrics.compute`` of the simulated run (what its metrics.json will say)."""
    from wsstorm.analysis import metrics

    man = manifest if manifest is not None else {"simulated": True, "target": target_block(cfg)}
    out: dict[str, Any] = metrics.compute(analysis_run(res, cfg, man, started))
    return out


def _num(v: Any) -> float:
    """A metric as a float: metrics.json writes NaN as null and inf as "not reached"."""
    if v is None:
        return math.nan
    if isinstance(v, str):
        return math.inf if v == "not reached" else math.nan
    return float(v)


def summary_from_metrics(m: dict[str, Any], clients: int) -> dict[str, Any]:
    """The simulator's summary: run-level figures of a metrics dict (``compute``'s, or metrics.json's)."""
    r = m["run"]
    per = m.get("disruptions") or []
    meta = r.get("metastable")
    out: dict[str, Any] = {
        "clients": clients,
        "disruption": per[0]["fault"] if per else None,
        "disruption_at": _num(per[0]["t_s"]) if per else math.nan,
        "metastable": (bool(meta["flag"]) if isinstance(meta, dict) else None),
        "trigger_end_s": _num(meta.get("trigger_end_s")) if isinstance(meta, dict) else math.nan,
        "goodput_after": _num(meta.get("goodput_after")) if isinstance(meta, dict) else math.nan,
    }
    for key in (
        "peak_attempts_per_s",
        "budget_per_s",
        "herd_factor",
        "recovery_T50_s",
        "recovery_T95_s",
        "recovery_T99_s",
        "downtime_p50_s",
        "downtime_p99_s",
        "wasted_attempts",
        "wasted_per_recovered",
        "overload_s",
        "goodput",
        "goodput_before",
        "goodput_lost",
        "goodput_lost_frac",
        "wasted_work_ms",
        "abandoned",
    ):
        out[key] = _num(r.get(key))
    return out


def summarize(
    res: ModelResult, cfg: ModelConfig, manifest: dict[str, Any] | None = None, started: float = 0.0
) -> dict[str, Any]:
    """The summary of a simulated run, from the reports' metrics, plus the model's own totals."""
    s = summary_from_metrics(compute_metrics(res, cfg, manifest, started), cfg.clients)
    s.update(
        attempts=res.totals["attempts"],
        opens=res.totals["opens"],
        gave_up=res.totals["gaveup"],
        connected_end=int(res.connected_tick[-1]) if res.connected_tick.size else 0,
    )
    return s


def _fmt(x: float, unit: str = "", nd: int = 2) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "not reached"
    return f"{x:,.{nd}f}{unit}"


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The short printed summary of one simulated run (every figure as the run's report computes it)."""
    head = f"{s['clients']:,} clients"
    lines = [
        f"{head}, {s['disruption']} at {s['disruption_at']:g} s"
        if s["disruption"]
        else f"{head}: no disruption in this scenario"
    ]
    lines.append(
        f"  peak attempt rate {_fmt(s['peak_attempts_per_s'], '/s', 0)}; herd factor "
        f"{_fmt(s['herd_factor'], 'x', 1)} (handshake budget {_fmt(s['budget_per_s'], '/s', 0)})"
    )
    if s["disruption"]:
        lines.append(
            f"  recovery T50 {_fmt(s['recovery_T50_s'], ' s')}, T95 {_fmt(s['recovery_T95_s'], ' s')}, "
            f"T99 {_fmt(s['recovery_T99_s'], ' s')}"
        )
    lines.append(
        f"  downtime p50 {_fmt(s['downtime_p50_s'], ' s')}, p99 {_fmt(s['downtime_p99_s'], ' s')}; "
        f"wasted attempts {_fmt(s['wasted_attempts'], '', 0)} ({_fmt(s['wasted_per_recovered'])} per "
        f"recovered client); overload {_fmt(s['overload_s'], ' s', 0)}"
    )
    lines.append(
        f"  goodput {_fmt(s['goodput'], '', 0)} admissions held; lost {_fmt(s['goodput_lost'], '', 0)}; "
        f"wasted work {_fmt(s['wasted_work_ms'] / 1000.0, ' CPU-s', 1)}; "
        f"abandoned handshakes {_fmt(s['abandoned'], '', 0)}"
    )
    if s["metastable"] is not None:
        verdict = (
            f"METASTABLE FAILURE: goodput stayed at {_fmt(s['goodput_after'], '/s', 1)} after the trigger "
            f"ended at {_fmt(s['trigger_end_s'], ' s', 1)}"
            if s["metastable"]
            else "no metastable failure: goodput came back after the trigger ended"
        )
        lines.append(f"  {verdict}")
    return lines
