"""THE metric definitions of wsstorm, as small pure functions on DataFrames and arrays.

Herd factor, recovery T50/T95/T99, downtime, wasted attempts, overload seconds, goodput (and
goodput lost), wasted work, collateral latency and the metastable flag live here and nowhere
else; the series-based ones take only the per-second series frame, so the simulator's summary
calls the same functions.  Imports numpy and pandas only (no plotting, no I/O).

Conventions: times in seconds; ``N`` (default :data:`HELD_S` = 5 s) is how long
a connection must be held to count as a recovery: long enough to outlive an
accept-then-1013 loop (which closes within a second) and one ping interval.
A quantile that was never reached is ``inf`` (shown as "not reached").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, TypedDict, TypeVar

import numpy as np
import pandas as pd

from wsstorm.runfolder import schemas

HELD_S = 5.0
BEFORE_S = 0.5  # "connected just before" a disruption: at t_d - 0.5 s, so closes logged a hair early still count
QS = (0.5, 0.95, 0.99)
CLIENT_REJECT_COLS = [f"attempts_{o}" for o in schemas.REJECT_OUTCOMES]
METASTABLE_WINDOW_S = 30  # goodput must stay down this long after the trigger ended ...
METASTABLE_FRACTION = 0.2  # ... below this fraction of its pre-fault level ...
RECOVERED_FRACTION = 0.95  # ... while fewer than this fraction of the clients are back ...
BUSY_WASTED_SHARE = 0.25  # ... and this share of its attempt work was wasted: busy, not idle (a wait wastes ~0)
RTT_BEFORE_S = 10.0  # collateral latency "before": the 10 s before a disruption
RTT_AFTER_S = 30.0  # ... "after": up to 30 s after the trigger ended

_T = TypeVar("_T")


def derived(run: Any, key: Hashable, make: Callable[[], _T]) -> _T:
    """``make()``, computed once per run: a table every scope (and chart) needs is kept in ``run.derived``
    (a run-like object without that dict, e.g. the simulator's, computes it each time)."""
    store = getattr(run, "derived", None)
    if not isinstance(store, dict):
        return make()
    if key not in store:
        store[key] = make()
    out: _T = store[key]
    return out


def is_value(col: pd.Series, value: str) -> np.ndarray:
    """Mask of rows equal to ``value`` (missing: False), on a categorical's codes where it is one
    (an object comparison of every row costs ~20x more)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = col.cat.categories
        if value not in cats:
            return np.zeros(len(col), dtype=bool)
        out: np.ndarray = col.cat.codes.to_numpy() == cats.get_loc(value)
        return out
    eq: np.ndarray = (col.astype(object) == value).to_numpy()
    return eq


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
    a = series["attempts"].loc[s_from : (s_to - 1) if s_to is not None else None]
    return float(a.max()) if len(a) else 0.0


def herd_factor(peak_rate: float, budget: float | None) -> float:
    """Peak attempt rate / the server's handshake budget (NaN if the budget is unknown)."""
    return peak_rate / budget if budget else math.nan


def overload_mask(series: pd.DataFrame) -> np.ndarray:
    """Seconds the server was overloaded: it rejected while serving, handled its whole handshake
    budget with a queue left over, or (cost model) finished handshakes for clients that had already
    given up: it fell behind their patience.  Without a server log: seconds with client-side
    rejections (1013-after-open, 503/429, timeouts; refusals are left out, a down server refuses)."""
    if "server_rejected" in series and series["server_rejected"].notna().any():
        rej = series["server_rejected"].fillna(0) > 0
        serving = series.get("server_not_serving", pd.Series(0, index=series.index)).fillna(0) == 0
        full = pd.Series(False, index=series.index)
        if {"server_accepted", "handshake_rate", "server_queue_depth"} <= set(series.columns):
            full = (
                (series["handshake_rate"].fillna(0) > 0)
                & (series["server_accepted"].fillna(0) >= series["handshake_rate"])
                & (series["server_queue_depth"].fillna(0) > 0)
            )
        late = series["server_abandoned"].fillna(0) > 0 if "server_abandoned" in series else False
        mask: np.ndarray = ((rej & serving) | full | (late & serving)).to_numpy()
        return mask
    cols = [c for c in CLIENT_REJECT_COLS if c in series]
    return (series[cols].sum(axis=1) > 0).to_numpy() if cols else np.zeros(len(series), bool)


def overload_seconds(series: pd.DataFrame, s_from: int = 0, s_to: int | None = None) -> int:
    """Number of overloaded seconds within [s_from, s_to)."""
    m = overload_mask(series)
    idx = series.index.to_numpy()
    sel = (idx >= s_from) & (idx < (s_to if s_to is not None else idx.max() + 1 if len(idx) else 0))
    return int(m[sel].sum())


def recovery_from_series(series: pd.DataFrame, s_d: int, s_to: int, qs: tuple[float, ...] = QS) -> dict[str, float]:
    """T_q from counts only (simulated runs): when connected first reaches q * connected before s_d,
    interpolated linearly within the second that reaches it."""
    c = series["connected"]
    before = float(c.loc[: s_d - 1].iloc[-1]) if len(c.loc[: s_d - 1]) else 0.0
    after = c.loc[s_d : s_to - 1]
    out = {}
    for q in qs:
        hit = after[after >= q * before]
        if not len(hit) or before <= 0:
            out[f"T{round(q * 100)}"] = math.nan if before == 0 else math.inf
            continue
        s = int(hit.index[0])
        # a count at second s is the count at its end (time s + 1), so the level was reached within (s, s + 1]:
        # whole seconds would put a 5.6 s recovery at 6 s (17% of it). Within the disruption's own second the
        # count before it is the pre-fault one, so only that second's end bounds it.
        t = float(s - s_d + 1)
        if s > s_d and s - 1 in after.index:
            prev, cur = float(after.loc[s - 1]), float(hit.iloc[0])
            t -= 1.0 - (q * before - prev) / (cur - prev)
        out[f"T{round(q * 100)}"] = t
    return out


# -- the server's useful and wasted work (series columns of the cost model) --------------


class Metastable(TypedDict):
    """The metastable-failure verdict of one disruption (see :func:`metastable`)."""

    flag: bool  # the trigger ended, yet goodput stayed down (and clients out) for the whole window
    trigger_end_s: float  # when the disruption's trigger ended (s since start)
    goodput_before: float  # the pre-fault level: the most admissions-to-held the server made in one second
    goodput_after: float  # mean goodput per second over the window after the trigger ended
    window_s: int  # seconds of that window the run covered (the flag needs METASTABLE_WINDOW_S)
    connected_before: float
    connected_after_max: float  # the most clients connected within the window
    wasted_share: float | None  # wasted work / all attempt work within the window (None: not measured)


def has_column(series: pd.DataFrame, col: str) -> bool:
    """True if the series carries column ``col`` with at least one value (old runs lack the cost model)."""
    return col in series and bool(series[col].notna().any())


def _window(series: pd.DataFrame, col: str, s_from: int, s_to: int | None) -> pd.Series:
    idx = series.index.to_numpy()
    sel = (idx >= s_from) & (idx < (s_to if s_to is not None else (idx.max() + 1 if len(idx) else 0)))
    return series[col][sel]


def goodput_level(series: pd.DataFrame, s_d: int) -> float:
    """The pre-fault goodput level: the highest goodput (admissions that became held connections) in one
    second before second s_d; NaN without goodput counts or when the server never admitted anyone."""
    if not has_column(series, "server_goodput"):
        return math.nan
    g = _window(series, "server_goodput", 0, s_d).dropna()
    return float(g.max()) if len(g) and g.max() > 0 else math.nan


def _held_opens(series: pd.DataFrame) -> pd.Series | None:
    """The clients' own count of admissions that became held connections (attempts_open), if known."""
    return series["attempts_open"] if has_column(series, "attempts_open") else None


def goodput_lost(series: pd.DataFrame, s_from: int, s_to: int | None, level: float) -> tuple[float, float]:
    """(admissions lost, fraction lost) in [s_from, s_to): each second the server could have turned
    min(level, attempts) into held connections (the demand); what it did not deliver is lost.  Demand-
    aware, so a policy that spreads its clients out is not charged for the attempts it did not make.
    Delivered = the server's goodput, but never more than the clients saw open and held (a session set
    up for a client that had already left is no goodput).  Totals over the window, so an admission and
    its open falling in neighbouring seconds do not count as a loss.  NaN if unknown."""
    if not has_column(series, "server_goodput") or not (level > 0):
        return math.nan, math.nan
    a = _window(series, "attempts", s_from, s_to).fillna(0).to_numpy(dtype=float)
    delivered = float(_window(series, "server_goodput", s_from, s_to).fillna(0).sum())
    if _held_opens(series) is not None:
        delivered = min(delivered, float(_window(series, "attempts_open", s_from, s_to).fillna(0).sum()))
    total = float(np.minimum(level, a).sum())
    lost = max(total - delivered, 0.0)
    return lost, (lost / total if total > 0 else 0.0)


def wasted_work(series: pd.DataFrame, s_from: int = 0, s_to: int | None = None) -> tuple[float, float]:
    """(CPU-ms, fraction of all attempt work) the server spent in [s_from, s_to) on attempts that could
    not succeed (rejected attempts' pre-admission work, handshakes finished for clients already gone).

    The server books as wasted what it finished for a client it saw leave. A 101 that crossed the
    client's timeout (sent, then read by nobody) it books as goodput; the clients' own count of held
    opens (attempts_open) tells: the goodput they did not see held is wasted too, at the window's
    average work per goodput (as goodput_lost does, totals over the window)."""
    if not has_column(series, "server_wasted_ms"):
        return math.nan, math.nan
    wasted = float(_window(series, "server_wasted_ms", s_from, s_to).fillna(0).sum())
    if not has_column(series, "server_work_ms"):
        return wasted, math.nan
    work = float(_window(series, "server_work_ms", s_from, s_to).fillna(0).sum())
    if _held_opens(series) is not None and has_column(series, "server_goodput"):
        goodput = float(_window(series, "server_goodput", s_from, s_to).fillna(0).sum())
        seen = float(_window(series, "attempts_open", s_from, s_to).fillna(0).sum())
        if goodput > seen:
            wasted += max(work - wasted, 0.0) * (goodput - seen) / goodput
    return wasted, (min(wasted / work, 1.0) if work > 0 else 0.0)


def metastable(
    series: pd.DataFrame, t_d: float, trigger_end: float, window_s: int = METASTABLE_WINDOW_S
) -> Metastable | None:
    """Metastable failure after the disruption at t_d: its trigger ended at trigger_end, yet over the
    window_s seconds after it the goodput stayed below METASTABLE_FRACTION of its pre-fault level (on
    average: the first reconnect wave always lets a few in, and one wave is no recovery), fewer than
    RECOVERED_FRACTION of the clients connected before were back, and the server was busy, not idle:
    at least BUSY_WASTED_SHARE of its attempt work was wasted (where the server measures work; a
    policy that merely waits long is no metastable failure; `wasted_work`, so a session set up for a
    client that had already given up is waste). Goodput here is the server's count, but
    never more than the clients saw open and held: a session finished for a client that already left
    is no goodput. None when it cannot be judged (no goodput counts, or no goodput before the fault)."""
    s_d = math.floor(t_d)
    level = goodput_level(series, s_d)
    if math.isnan(level):
        return None
    c = series["connected"]
    before_c = c.loc[: s_d - 1]
    connected_before = float(before_c.iloc[-1]) if len(before_c) else 0.0
    s_end = math.ceil(trigger_end)
    g = series["server_goodput"].fillna(0).astype(float)
    opens = _held_opens(series)  # what the clients saw held bounds what the server may call goodput
    win = (series.index >= s_end) & (series.index < s_end + window_s)
    n = int(win.sum())
    after = float(g[win].mean()) if n else math.nan
    if opens is not None and n:
        after = min(after, float(opens[win].fillna(0).mean()))
    conn_after = float(c[win].max()) if n else 0.0
    down = bool(n and after < METASTABLE_FRACTION * level)
    out_clients = connected_before > 0 and conn_after < RECOVERED_FRACTION * connected_before
    share: float | None = None
    if has_column(series, "server_wasted_ms") and has_column(series, "server_work_ms"):
        share = wasted_work(series, s_end, s_end + window_s)[1]
    busy = share is None or share >= BUSY_WASTED_SHARE
    return Metastable(
        flag=bool(n >= window_s and down and out_clients and busy),
        trigger_end_s=float(trigger_end),
        goodput_before=level,
        goodput_after=after,
        window_s=n,
        connected_before=connected_before,
        connected_after_max=conn_after,
        wasted_share=share,
    )


def rtt_percentiles(t: np.ndarray, rtt_ms: np.ndarray, start: float, end: float) -> dict[str, float]:
    """p50/p99 (ms) and count of the echo round trips with start <= t < end (collateral latency)."""
    sel = window_mask(t, start, end)
    v = np.asarray(rtt_ms, dtype=float)[sel]
    v = v[~np.isnan(v)]
    return {
        "p50": float(np.quantile(v, 0.5)) if len(v) else math.nan,
        "p99": float(np.quantile(v, 0.99)) if len(v) else math.nan,
        "n": float(len(v)),
    }


def collateral(t: np.ndarray, rtt_ms: np.ndarray, t_d: float, trigger_end: float, t_next: float) -> dict[str, float]:
    """Echo RTT p50/p99 of the clients that stayed connected, before / during / after one disruption:
    the RTT_BEFORE_S before it, from it to its trigger's end (at least 1 s), and up to RTT_AFTER_S after
    (never past the next disruption).  Keys rtt_{before,during,after}_{p50,p99}_ms, plus rtt_inflation:
    the worst p99 during/after over the p99 before (NaN when either is unknown)."""
    during_end = max(trigger_end, t_d + 1.0)
    out: dict[str, float] = {}
    for name, (a, b) in {
        "before": (t_d - RTT_BEFORE_S, t_d),
        "during": (t_d, during_end),
        "after": (during_end, min(during_end + RTT_AFTER_S, max(t_next, during_end))),
    }.items():
        p = rtt_percentiles(t, rtt_ms, a, b)
        out[f"rtt_{name}_p50_ms"], out[f"rtt_{name}_p99_ms"] = p["p50"], p["p99"]
    worst = np.nanmax([out["rtt_during_p99_ms"], out["rtt_after_p99_ms"], -math.inf])
    before = out["rtt_before_p99_ms"]
    out["rtt_inflation"] = float(worst / before) if before > 0 and math.isfinite(worst) else math.nan
    return out


# -- event-based ------------------------------------------------------------------------


def held(conns: pd.DataFrame, n_s: float = HELD_S, until: float = math.inf) -> np.ndarray:
    """Connections that count as recovered: held >= n_s, still open at `until`, or ended by the client."""
    close_t = conns["close_t"].to_numpy(dtype=float)
    by_client = is_value(conns["by"], "client")
    ok: np.ndarray = (conns["uptime"].to_numpy(dtype=float) >= n_s) | np.isnan(close_t) | by_client
    if until < math.inf:  # (close_t >= inf is never true)
        ok |= close_t >= until
    return ok


def _next_held_open(lost: pd.DataFrame, conns: pd.DataFrame, ok: np.ndarray) -> np.ndarray:
    """For each row of lost (user, close_t): open_t of that user's next held connection (NaN if none)."""
    if len(lost) == 0:
        return np.array([], dtype=float)
    left = pd.DataFrame(
        {"u": lost["user"].cat.codes.to_numpy(), "k": lost["close_t"].to_numpy(dtype=float), "i": np.arange(len(lost))}
    ).sort_values("k", kind="stable")
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
    o: np.ndarray = conns["open_t"].to_numpy(dtype=float)
    c: np.ndarray = conns["close_t"].to_numpy(dtype=float)
    mask: np.ndarray = (o <= t) & (np.isnan(c) | (c > t))
    return mask


def recovery_times(
    conns: pd.DataFrame, t_d: float, until: float, n_s: float = HELD_S, held_ok: np.ndarray | None = None
) -> np.ndarray:
    """Per client connected just before t_d: seconds from t_d to its next held open (0 if never
    lost before `until`, inf if not recovered before `until`); ``held_ok``: ``held(conns, n_s)``, if known."""
    before = conns[connected_at(conns, t_d - BEFORE_S)]
    close_t = before["close_t"].to_numpy(dtype=float)
    lost = ~np.isnan(close_t) & (close_t < until) & ~is_value(before["by"], "client")
    out = np.zeros(len(before))
    ok = held(conns, n_s, until) if held_ok is None else held_ok | (conns["close_t"].to_numpy(dtype=float) >= until)
    nxt = _next_held_open(before[lost], conns, ok)
    rec = nxt - t_d
    rec[np.isnan(rec) | (nxt >= until)] = math.inf
    out[lost] = np.maximum(rec, 0.0)
    return out


def downtime_episodes(
    conns: pd.DataFrame, end_abs: float, n_s: float = HELD_S, held_ok: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per close not made by the client: close_t, downtime (s) to the next held open, recovered.
    Unrecovered episodes run to the end of the run (a lower bound); ``held_ok``: ``held(conns, n_s)``, if known."""
    ep = conns[conns["close_t"].notna().to_numpy() & ~is_value(conns["by"], "client")]
    nxt = _next_held_open(ep, conns, held(conns, n_s) if held_ok is None else held_ok)
    df = pd.DataFrame(
        {
            "user": ep["user"].cat.codes.to_numpy(),
            "close_t": ep["close_t"].to_numpy(dtype=float),
            "next_open": nxt,
            "code": ep["code"].to_numpy(),
        }
    )
    # closes during a downtime (1013 loops, retries) belong to the episode that began at the first one
    df = df.sort_values("close_t", kind="stable").drop_duplicates(["user", "next_open"])
    rec = df["next_open"].notna().to_numpy()
    close_t = df["close_t"].to_numpy()
    down = np.where(rec, df["next_open"].to_numpy() - close_t, end_abs - close_t)
    return pd.DataFrame({"close_t": close_t, "downtime": down, "recovered": rec, "code": df["code"].to_numpy()})


def wasted_attempts(
    attempts: pd.DataFrame,
    conns: pd.DataFrame,
    t_from: float,
    t_to: float,
    n_s: float = HELD_S,
    held_ok: np.ndarray | None = None,
) -> int:
    """Attempts in [t_from, t_to) that did not lead to a connection held >= n_s (``held_ok``: ``held(conns,
    n_s)``, if known)."""
    n_att = int(window_mask(attempts["t"], t_from, t_to).sum())
    ok = held(conns, n_s) if held_ok is None else held_ok
    good = int((ok & window_mask(conns["open_t"], t_from, t_to)).sum())
    return max(n_att - good, 0)


def attempt_errors(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(t, t - scheduled_t) of every attempt event, in event order (NaN where it was not scheduled)."""
    sel = is_value(events["event"], "attempt")
    t = events["t"].to_numpy(dtype=float)[sel]
    return t, t - events["scheduled_t"].to_numpy(dtype=float)[sel]


def scheduling_error(
    events: pd.DataFrame,
    t_from: float = -math.inf,
    t_to: float = math.inf,
    errors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """t - scheduled_t (seconds) of the attempts in [t_from, t_to) (``errors``: ``attempt_errors(events)``,
    if known)."""
    t, err = attempt_errors(events) if errors is None else errors
    if t_from > -math.inf or t_to < math.inf:
        err = err[window_mask(t, t_from, t_to)]
    out: np.ndarray = err[~np.isnan(err)]
    return out


# -- one scope (the run, or one disruption) ------------------------------------------------


def _ms(p: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}_ms": v * 1000 for k, v in p.items()}


def echo_rtts(events: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """(t, rtt_ms) of the run's echo events (empty arrays without any)."""
    if events is None or "rtt_ms" not in events:
        return np.array([]), np.array([])
    sel = is_value(events["event"], "echo")
    return events["t"].to_numpy(dtype=float)[sel], events["rtt_ms"].to_numpy(dtype=float)[sel]


def run_episodes(run: Any, n_s: float = HELD_S) -> pd.DataFrame:
    """The run's downtime episodes (:func:`downtime_episodes` to the end of the run), built once per run."""
    return derived(
        run,
        ("episodes", n_s),
        lambda: downtime_episodes(
            run.conns, run.t0 + run.end, n_s, derived(run, ("held", n_s), lambda: held(run.conns, n_s))
        ),
    )


def run_sched_errors(run: Any) -> tuple[np.ndarray, np.ndarray]:
    """The run's :func:`attempt_errors`, built once per run."""
    return derived(run, "attempt_errors", lambda: attempt_errors(run.events))


def server_work_metrics(
    series: pd.DataFrame, i_from: int, i_to: int, t_d: float | None, trigger_end: float | None
) -> dict[str, Any]:
    """Goodput, goodput lost, wasted work, abandoned handshakes and the metastable verdict of the window
    [i_from, i_to) (s since start); values are NaN/None in runs without the cost model's counts."""
    m: dict[str, Any] = {}
    wms, wfrac = wasted_work(series, i_from, i_to)
    m["wasted_work_ms"], m["wasted_work_frac"] = wms, wfrac
    for col, key in (("server_goodput", "goodput"), ("server_abandoned", "abandoned")):
        m[key] = float(_window(series, col, i_from, i_to).fillna(0).sum()) if has_column(series, col) else math.nan
    if t_d is not None:
        end = trigger_end if trigger_end is not None else t_d
        level = goodput_level(series, math.floor(t_d))
        lost, frac = goodput_lost(series, math.ceil(end), i_to, level)
        demand = lost / frac if frac and frac > 0 else (0.0 if frac == 0 else math.nan)
        m.update(
            trigger_end_s=end, goodput_before=level, goodput_lost=lost, goodput_lost_frac=frac, goodput_demand=demand
        )
        m["metastable"] = metastable(series[series.index < i_to], t_d, end)
    return m


def scope_metrics(
    run: Any, s_from: float, s_to: float, t_d: float | None, n_s: float = HELD_S, trigger_end: float | None = None
) -> dict[str, Any]:
    """Metrics of the window [s_from, s_to) (seconds since start); t_d: the disruption, if any, whose
    trigger ended at trigger_end (default t_d)."""
    series, budget = run.series, run.budget
    i_from, i_to = math.floor(s_from), math.ceil(s_to)
    peak = peak_attempt_rate(series, i_from, i_to)
    m: dict[str, Any] = {
        "from_s": s_from,
        "to_s": s_to,
        "peak_attempts_per_s": peak,
        "budget_per_s": budget,
        "herd_factor": herd_factor(peak, budget),
        "capacity": run.capacity,
        "overload_s": overload_seconds(series, i_from, i_to),
    }
    win = series.loc[i_from : i_to - 1]
    m["attempts"] = int(win["attempts"].sum())
    m.update(server_work_metrics(series, i_from, i_to, t_d, trigger_end))
    rt_t, rtt = derived(run, "echo_rtts", lambda: echo_rtts(getattr(run, "events", None)))
    if len(rt_t):
        t0 = run.t0
        if t_d is not None:
            m.update(collateral(rt_t, rtt, t0 + t_d, t0 + (trigger_end if trigger_end is not None else t_d), t0 + s_to))
        p = rtt_percentiles(rt_t, rtt, t0 + s_from, t0 + s_to)
        m["rtt_p50_ms"], m["rtt_p99_ms"], m["echoes"] = p["p50"], p["p99"], int(p["n"])
    if run.conns is not None:
        t0 = run.t0
        a_from, a_to = t0 + s_from, t0 + s_to
        held_ok = derived(run, ("held", n_s), lambda: held(run.conns, n_s))
        if t_d is not None:
            rt = recovery_times(run.conns, t0 + t_d, a_to, n_s, held_ok)
            m["connected_before"] = len(rt)
            m["lost"] = int((rt > 0).sum())
            m["recovered"] = int(((rt > 0) & np.isfinite(rt)).sum())
            for q in QS:
                m[f"recovery_T{round(q * 100)}_s"] = quantile_reached(rt, q) if len(rt) else math.nan
        ep = run_episodes(run, n_s)
        ep = ep[window_mask(ep["close_t"], a_from, a_to)]
        m.update({f"downtime_{k}_s": v for k, v in percentiles(ep["downtime"].to_numpy()).items()})
        m["downtime_episodes"] = len(ep)
        m["not_recovered"] = int((~ep["recovered"]).sum())
        wasted = wasted_attempts(run.attempts, run.conns, a_from, a_to, n_s, held_ok)
        denom = m["recovered"] if t_d is not None else int(ep["recovered"].sum())
        m["wasted_attempts"] = wasted
        m["wasted_per_recovered"] = wasted / denom if denom else math.nan
        errors = run_sched_errors(run)
        m.update(_ms(percentiles(scheduling_error(run.events, a_from, a_to, errors), (0.5, 0.99)), "sched_err"))
    else:  # simulated: counts only
        if t_d is not None:
            before = series["connected"].loc[: int(t_d) - 1]
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
    ends = d["end"].tolist() if "end" in d else times
    per = []
    for i, (t_d, fault) in enumerate(zip(times, d["fault"], strict=False)):
        t_next = times[i + 1] if i + 1 < len(times) else end
        m = scope_metrics(run, t_d, max(t_next, t_d + 1e-9), t_d, n_s, trigger_end=float(ends[i]))
        per.append({"t_s": t_d, "fault": fault, **m})
    whole = scope_metrics(run, 0.0, end, None, n_s)
    whole.update(combine_disruptions(per))
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
    whole["budget_source"] = getattr(run, "budget_source", "unknown")
    whole["peak_connected"] = int(run.series["connected"].max()) if len(run.series) else 0
    for c in schemas.OUTCOME_COLUMNS:
        whole[c] = int(run.series[c].sum()) if c in run.series else 0
    if run.events is not None:
        whole.update(
            _ms(percentiles(scheduling_error(run.events, errors=run_sched_errors(run)), (0.5, 0.99)), "sched_err")
        )
    return {"held_s": n_s, "run": whole, "disruptions": per}


def combine_disruptions(per: list[dict[str, Any]]) -> dict[str, Any]:
    """Run-level goodput lost, collateral latency and metastable verdict from the per-disruption ones:
    lost admissions add up; latency and inflation take the worst; the run is metastable if any
    disruption was (else the last verdict that could be judged; None if none could)."""
    out: dict[str, Any] = {}
    if not per:
        out["metastable"] = None
        return out
    lost = [p.get("goodput_lost", math.nan) for p in per]
    demand = [p.get("goodput_demand", math.nan) for p in per]
    known = [(x, y) for x, y in zip(lost, demand, strict=False) if not (math.isnan(x) or math.isnan(y))]
    out["goodput_lost"] = sum(x for x, _ in known) if known else math.nan
    tot = sum(y for _, y in known)
    out["goodput_lost_frac"] = (out["goodput_lost"] / tot if tot > 0 else 0.0) if known else math.nan
    out["goodput_before"] = per[0].get("goodput_before", math.nan)
    for k in ("rtt_during_p50_ms", "rtt_during_p99_ms", "rtt_after_p50_ms", "rtt_after_p99_ms", "rtt_inflation"):
        vals = [p[k] for p in per if k in p and not math.isnan(p[k])]
        if vals:
            out[k] = max(vals)
    if "rtt_before_p99_ms" in per[0]:
        out["rtt_before_p50_ms"], out["rtt_before_p99_ms"] = per[0]["rtt_before_p50_ms"], per[0]["rtt_before_p99_ms"]
    verdicts: list[Metastable] = [p["metastable"] for p in per if p.get("metastable") is not None]
    flagged = [v for v in verdicts if v["flag"]]
    out["metastable"] = flagged[0] if flagged else (verdicts[-1] if verdicts else None)
    return out


def top_close_reasons(conns: pd.DataFrame | None, n: int = 10) -> pd.DataFrame:
    """The most frequent (code, reason) pairs of closes (reasons are untrusted text)."""
    if conns is None:
        return pd.DataFrame(columns=["code", "reason", "count"])
    c = conns.dropna(subset=["close_t"])
    g = c.groupby([c["code"].astype("Int64"), c["reason"].astype(object).fillna("")], dropna=False).size()
    g = g.sort_values(ascending=False).head(n)
    return g.rename("count").reset_index().rename(columns={"level_0": "code", "level_1": "reason"})
