"""The metrics of design.md, as small pure functions on DataFrames and arrays.

Conventions: times in seconds; ``N`` (default :data:`HELD_S` = 5 s) is how long
a connection must be held to count as a recovery: long enough to outlive an
accept-then-1013 loop (which closes within a second) and one ping interval.
A quantile that was never reached is ``inf`` (shown as "not reached").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

HELD_S = 5.0
BEFORE_S = 0.5  # "connected just before" a disruption: at t_d - 0.5 s, so closes logged a hair early still count
QS = (0.5, 0.95, 0.99)
CLIENT_REJECT_COLS = ["attempts_1013", "attempts_http_503", "attempts_http_429", "attempts_timeout"]


# -- generic -----------------------------------------------------------------------

def quantile_reached(times: np.ndarray, q: float) -> float:
    """Smallest time by which a fraction q of the items is done (inf entries never are)."""
    times = np.sort(np.asarray(times, dtype=float))
    if len(times) == 0:
        return math.nan
    return float(times[max(math.ceil(q * len(times)) - 1, 0)])


def percentiles(values: np.ndarray, qs: tuple[float, ...] = QS) -> dict[str, float]:
    """p50/p95/p99/max of finite-or-inf values (linear interpolation); NaN when empty."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    out = {f"p{round(q * 100)}": (float(np.quantile(v, q)) if len(v) else math.nan) for q in qs}
    out["max"] = float(v.max()) if len(v) else math.nan
    return out


def window_mask(t: pd.Series | np.ndarray, start: float, end: float) -> np.ndarray:
    """Boolean mask of start <= t < end."""
    t = np.asarray(t, dtype=float)
    return (t >= start) & (t < end)


# -- series-based (events and simulated runs alike) ----------------------------------

def peak_attempt_rate(series: pd.DataFrame, s_from: int = 0, s_to: int | None = None) -> float:
    """Largest number of attempts in one second within [s_from, s_to)."""
    a = series["attempts"].loc[s_from:(s_to - 1) if s_to is not None else None]
    return float(a.max()) if len(a) else 0.0


def herd_factor(peak_rate: float, budget: float | None) -> float:
    """Peak attempt rate / the server's handshake budget (NaN if the budget is unknown)."""
    return peak_rate / budget if budget else math.nan


def overload_mask(series: pd.DataFrame) -> np.ndarray:
    """Seconds the server was overloaded: it rejected while serving, or handled its whole
    handshake budget with a queue left over.  Without a server log: seconds with client-side
    rejections (1013-after-open, 503/429, timeouts; refusals are left out, a down server refuses)."""
    if "server_rejected" in series and series["server_rejected"].notna().any():
        rej = series["server_rejected"].fillna(0) > 0
        serving = series.get("server_not_serving", pd.Series(0, index=series.index)).fillna(0) == 0
        full = pd.Series(False, index=series.index)
        if {"server_accepted", "handshake_rate", "server_queue_depth"} <= set(series.columns):
            full = (series["handshake_rate"].fillna(0) > 0) & (series["server_accepted"].fillna(0) >= series["handshake_rate"]) \
                & (series["server_queue_depth"].fillna(0) > 0)
        return ((rej & serving) | full).to_numpy()
    cols = [c for c in CLIENT_REJECT_COLS if c in series]
    return (series[cols].sum(axis=1) > 0).to_numpy() if cols else np.zeros(len(series), bool)


def overload_seconds(series: pd.DataFrame, s_from: int = 0, s_to: int | None = None) -> int:
    """Number of overloaded seconds within [s_from, s_to)."""
    m = overload_mask(series)
    idx = series.index.to_numpy()
    sel = (idx >= s_from) & (idx < (s_to if s_to is not None else idx.max() + 1 if len(idx) else 0))
    return int(m[sel].sum())


def recovery_from_series(series: pd.DataFrame, s_d: int, s_to: int, qs: tuple[float, ...] = QS) -> dict[str, float]:
    """T_q from counts only (simulated runs): first second after s_d where connected >= q * connected before."""
    c = series["connected"]
    before = float(c.loc[:s_d - 1].iloc[-1]) if len(c.loc[:s_d - 1]) else 0.0
    after = c.loc[s_d:s_to - 1]
    out = {}
    for q in qs:
        hit = after[after >= q * before]
        # a count at second s means "by the end of second s": hence +1
        out[f"T{round(q * 100)}"] = float(hit.index[0] - s_d + 1) if len(hit) and before > 0 else (math.nan if before == 0 else math.inf)
    return out


# -- event-based ------------------------------------------------------------------------

def held(conns: pd.DataFrame, n_s: float = HELD_S, until: float = math.inf) -> np.ndarray:
    """Connections that count as recovered: held >= n_s, still open at `until`, or ended by the client."""
    close_t = conns["close_t"].to_numpy(dtype=float)
    return ((conns["uptime"].to_numpy(dtype=float) >= n_s) | np.isnan(close_t) | (close_t >= until)
            | (conns["by"].astype(object) == "client").to_numpy())


def _next_held_open(lost: pd.DataFrame, conns: pd.DataFrame, ok: np.ndarray) -> np.ndarray:
    """For each row of lost (user, close_t): open_t of that user's next held connection (NaN if none)."""
    if len(lost) == 0:
        return np.array([], dtype=float)
    left = pd.DataFrame({"u": lost["user"].cat.codes.to_numpy(), "k": lost["close_t"].to_numpy(dtype=float),
                         "i": np.arange(len(lost))}).sort_values("k", kind="stable")
    h = conns[ok]
    right = pd.DataFrame({"u": h["user"].cat.codes.to_numpy(), "k": h["open_t"].to_numpy(dtype=float)})
    right["open_t"] = right["k"]
    right = right.sort_values("k", kind="stable")
    m = pd.merge_asof(left, right, on="k", by="u", direction="forward")
    out = np.full(len(lost), np.nan)
    out[m["i"].to_numpy()] = m["open_t"].to_numpy(dtype=float)
    return out


def connected_at(conns: pd.DataFrame, t: float) -> np.ndarray:
    """Mask of connections open at absolute time t."""
    o = conns["open_t"].to_numpy(dtype=float)
    c = conns["close_t"].to_numpy(dtype=float)
    return (o <= t) & (np.isnan(c) | (c > t))


def recovery_times(conns: pd.DataFrame, t_d: float, until: float, n_s: float = HELD_S) -> np.ndarray:
    """Per client connected just before t_d: seconds from t_d to its next held open (0 if never
    lost before `until`, inf if not recovered before `until`)."""
    before = conns[connected_at(conns, t_d - BEFORE_S)]
    close_t = before["close_t"].to_numpy(dtype=float)
    lost = ~np.isnan(close_t) & (close_t < until) & (before["by"].astype(object) != "client").to_numpy()
    out = np.zeros(len(before))
    nxt = _next_held_open(before[lost], conns, held(conns, n_s, until))
    rec = nxt - t_d
    rec[np.isnan(rec) | (nxt >= until)] = math.inf
    out[lost] = np.maximum(rec, 0.0)
    return out


def downtime_episodes(conns: pd.DataFrame, end_abs: float, n_s: float = HELD_S) -> pd.DataFrame:
    """One row per close not made by the client: close_t, downtime (s) to the next held open, recovered.
    Unrecovered episodes run to the end of the run (a lower bound)."""
    ep = conns[conns["close_t"].notna() & (conns["by"].astype(object) != "client").to_numpy()]
    nxt = _next_held_open(ep, conns, held(conns, n_s))
    df = pd.DataFrame({"user": ep["user"].cat.codes.to_numpy(), "close_t": ep["close_t"].to_numpy(dtype=float),
                       "next_open": nxt, "code": ep["code"].to_numpy()})
    # closes during a downtime (1013 loops, retries) belong to the episode that began at the first one
    df = df.sort_values("close_t", kind="stable").drop_duplicates(["user", "next_open"])
    rec = df["next_open"].notna().to_numpy()
    close_t = df["close_t"].to_numpy()
    down = np.where(rec, df["next_open"].to_numpy() - close_t, end_abs - close_t)
    return pd.DataFrame({"close_t": close_t, "downtime": down, "recovered": rec, "code": df["code"].to_numpy()})


def wasted_attempts(attempts: pd.DataFrame, conns: pd.DataFrame, t_from: float, t_to: float, n_s: float = HELD_S) -> int:
    """Attempts in [t_from, t_to) that did not lead to a connection held >= n_s."""
    n_att = int(window_mask(attempts["t"], t_from, t_to).sum())
    good = int((held(conns, n_s) & window_mask(conns["open_t"], t_from, t_to)).sum())
    return max(n_att - good, 0)


def scheduling_error(events: pd.DataFrame, t_from: float = -math.inf, t_to: float = math.inf) -> np.ndarray:
    """t - scheduled_t (seconds) of the attempts in [t_from, t_to)."""
    a = events[(events["event"] == "attempt").to_numpy()]
    a = a[window_mask(a["t"], t_from, t_to)]
    err = (a["t"] - a["scheduled_t"]).to_numpy(dtype=float)
    return err[~np.isnan(err)]


# -- one scope (the run, or one disruption) ------------------------------------------------

def _ms(p: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}_ms": v * 1000 for k, v in p.items()}


def scope_metrics(run: Any, s_from: float, s_to: float, t_d: float | None, n_s: float = HELD_S) -> dict[str, Any]:
    """Metrics of the window [s_from, s_to) (seconds since start); t_d: the disruption, if any."""
    series, budget = run.series, run.budget
    i_from, i_to = int(math.floor(s_from)), int(math.ceil(s_to))
    peak = peak_attempt_rate(series, i_from, i_to)
    m: dict[str, Any] = {"from_s": s_from, "to_s": s_to, "peak_attempts_per_s": peak, "budget_per_s": budget,
                         "herd_factor": herd_factor(peak, budget), "capacity": run.capacity,
                         "overload_s": overload_seconds(series, i_from, i_to)}
    win = series.loc[i_from:i_to - 1]
    m["attempts"] = int(win["attempts"].sum())
    if run.conns is not None:
        t0 = run.t0
        a_from, a_to = t0 + s_from, t0 + s_to
        if t_d is not None:
            rt = recovery_times(run.conns, t0 + t_d, a_to, n_s)
            m["connected_before"] = len(rt)
            m["lost"] = int((rt > 0).sum())
            m["recovered"] = int(((rt > 0) & np.isfinite(rt)).sum())
            for q in QS:
                m[f"recovery_T{round(q * 100)}_s"] = quantile_reached(rt, q) if len(rt) else math.nan
        ep = downtime_episodes(run.conns, t0 + run.end, n_s)
        ep = ep[window_mask(ep["close_t"], a_from, a_to)]
        m.update({f"downtime_{k}_s": v for k, v in percentiles(ep["downtime"].to_numpy()).items()})
        m["downtime_episodes"] = len(ep)
        m["not_recovered"] = int((~ep["recovered"]).sum())
        wasted = wasted_attempts(run.attempts, run.conns, a_from, a_to, n_s)
        denom = m["recovered"] if t_d is not None else int(ep["recovered"].sum())
        m["wasted_attempts"] = wasted
        m["wasted_per_recovered"] = wasted / denom if denom else math.nan
        m.update(_ms(percentiles(scheduling_error(run.events, a_from, a_to), (0.5, 0.99)), "sched_err"))
    else:  # simulated: counts only
        if t_d is not None:
            before = series["connected"].loc[:int(t_d) - 1]
            m["connected_before"] = int(before.iloc[-1]) if len(before) else 0
            m.update({f"recovery_{k}_s": v for k, v in recovery_from_series(series, int(t_d), i_to).items()})
        wasted = int(win["attempts"].sum() - win["attempts_open"].sum())
        m["wasted_attempts"] = wasted
        d = run.downtimes if run.downtimes is not None else np.array([])
        m.update({f"downtime_{k}_s": v for k, v in percentiles(d).items()})
        m["downtime_episodes"] = len(d)
        denom = m.get("connected_before") or len(d)
        m["wasted_per_recovered"] = wasted / denom if denom else math.nan
    return m


def compute(run: Any, n_s: float = HELD_S) -> dict[str, Any]:
    """All metrics: {"run": {...}, "disruptions": [{...}, ...], "held_s": n_s}.
    Run-level herd factor and recovery are the worst over disruptions (whole run if none)."""
    end = float(run.end)
    d = run.disruptions[(run.disruptions["t"] >= 0) & (run.disruptions["t"] < end)]
    times = d["t"].tolist()
    per = []
    for i, (t_d, fault) in enumerate(zip(times, d["fault"])):
        t_next = times[i + 1] if i + 1 < len(times) else end
        m = scope_metrics(run, t_d, max(t_next, t_d + 1e-9), t_d, n_s)
        per.append({"t_s": t_d, "fault": fault, **m})
    whole = scope_metrics(run, 0.0, end, None, n_s)
    if per:
        whole["peak_attempts_per_s"] = max(p["peak_attempts_per_s"] for p in per)
        whole["herd_factor"] = herd_factor(whole["peak_attempts_per_s"], run.budget)
        for q in QS:
            k = f"recovery_T{round(q * 100)}_s"
            vals = [p.get(k, math.nan) for p in per]
            vals = [v for v in vals if not math.isnan(v)]
            whole[k] = max(vals) if vals else math.nan
        rec = sum(p.get("recovered", p.get("connected_before", 0)) for p in per)
        if run.conns is not None:
            whole["recovered"] = rec
    whole["peak_connected"] = int(run.series["connected"].max()) if len(run.series) else 0
    for o in ["open", "1013", "refused", "http_503", "http_429", "http_other", "timeout", "other"]:
        c = f"attempts_{o}"
        whole[c] = int(run.series[c].sum()) if c in run.series else 0
    if run.events is not None:
        whole.update(_ms(percentiles(scheduling_error(run.events), (0.5, 0.99)), "sched_err"))
    return {"held_s": n_s, "run": whole, "disruptions": per}


def top_close_reasons(conns: pd.DataFrame | None, n: int = 10) -> pd.DataFrame:
    """The most frequent (code, reason) pairs of closes (reasons are untrusted text)."""
    if conns is None:
        return pd.DataFrame(columns=["code", "reason", "count"])
    c = conns.dropna(subset=["close_t"])
    g = c.groupby([c["code"].astype("Int64"), c["reason"].astype(object).fillna("")], dropna=False).size()
    g = g.sort_values(ascending=False).head(n)
    return g.rename("count").reset_index().rename(columns={"level_0": "code", "level_1": "reason"})
