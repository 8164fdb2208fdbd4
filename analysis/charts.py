"""Charts of one run (matplotlib, Agg, PNG); each function writes one file or returns None.

Uses matplotlib's object API (Figure, no pyplot state), so it is safe in any process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
# Labels carry text from the run folder (policy specs, fault names): never read it as mathtext.
matplotlib.rcParams["text.parse_math"] = False
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import metrics as M  # noqa: E402

DPI = 100
SIZE = (10, 4.2)
CODE_NAMES = {1000: "Normal", 1001: "Going Away", 1002: "Protocol Error", 1005: "No Status", 1006: "Abnormal",
              1007: "Bad Data", 1008: "Policy Violation", 1009: "Too Big", 1011: "Internal Error",
              1012: "Service Restart", 1013: "Try Again Later", 1014: "Bad Gateway"}
OUTCOME_STYLE = [  # (column, label, colour)
    ("attempts_open", "opened (held)", "#2ca02c"),
    ("attempts_1013", "opened, then 1013 within 1 s", "#ff7f0e"),
    ("attempts_refused", "refused", "#d62728"),
    ("attempts_http_503", "HTTP 503", "#9467bd"),
    ("attempts_http_429", "HTTP 429", "#e377c2"),
    ("attempts_http_other", "other HTTP status", "#8c564b"),
    ("attempts_timeout", "timeout", "#7f7f7f"),
    ("attempts_other", "other failure / unknown", "#bcbd22"),
]


def code_label(code: Any) -> str:
    """'1012 Service Restart' for a close code, or the fail kind as given."""
    try:
        c = int(float(code))
    except (TypeError, ValueError):
        return str(code)
    return f"{c} {CODE_NAMES.get(c, '')}".strip()


def _fig(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = SIZE) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=12, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _mark_disruptions(ax: Any, run: Any) -> None:
    for i, (t, fault) in enumerate(zip(run.disruptions["t"], run.disruptions["fault"])):
        ax.axvline(t, color="black", ls="--", lw=1, alpha=0.7, label="disruption" if i == 0 else None)
        ax.annotate(str(fault), (t, 1), xycoords=("data", "axes fraction"), xytext=(3, -14),
                    textcoords="offset points", fontsize=8, rotation=0, alpha=0.8)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def connected_chart(run: Any, path: Path) -> Path:
    """Connected clients (and the server's count) against capacity, disruptions marked."""
    s = run.series
    fig, ax = _fig("Connected clients vs capacity", "time since start (s)", "connections")
    ax.step(s.index, s["connected"], where="post", color="#1f77b4", lw=1.8, label="connected (clients' view)")
    if "server_connections" in s and s["server_connections"].notna().any():
        ax.step(s.index, s["server_connections"], where="post", color="#17becf", lw=1, alpha=0.8,
                label="connections (server's view)")
    cap = run.capacity
    if "capacity" in s and s["capacity"].notna().any():
        ax.step(s.index, s["capacity"], where="post", color="red", lw=1.2, label="server capacity")
    elif cap:
        ax.axhline(cap, color="red", lw=1.2, label="server capacity")
    _mark_disruptions(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    return _save(fig, path)


def attempts_chart(run: Any, path: Path) -> Path:
    """Connect attempts per second by outcome (stacked) against the handshake budget."""
    s = run.series
    fig, ax = _fig("Connect attempts per second, by outcome", "time since start (s)", "attempts per second")
    cols = [(c, lab, col) for c, lab, col in OUTCOME_STYLE if c in s and s[c].sum() > 0]
    if cols:
        x = s.index.to_numpy()
        ax.stackplot(x, *[s[c].to_numpy() for c, _, _ in cols], labels=[lab for _, lab, _ in cols],
                     colors=[col for _, _, col in cols], step="post", alpha=0.85)
    budget = run.budget
    if budget:
        ax.axhline(budget, color="black", lw=1.5, ls="-", label=f"handshake budget ({budget:g}/s)")
    _mark_disruptions(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9, ncol=2)
    return _save(fig, path)


def closes_chart(run: Any, path: Path) -> Path | None:
    """Closes per second by close code (stacked)."""
    s = run.series
    cols = [c for c in s.columns if c.startswith("closes_") and s[c].sum() > 0]
    if not cols:
        return None
    cols.sort(key=lambda c: -s[c].sum())
    fig, ax = _fig("Connection closes per second, by close code", "time since start (s)", "closes per second")
    cmap = matplotlib.colormaps["tab10"]
    ax.stackplot(s.index.to_numpy(), *[s[c].to_numpy() for c in cols],
                 labels=[code_label(c.split("_", 1)[1]) for c in cols],
                 colors=[cmap(i % 10) for i in range(len(cols))], step="post", alpha=0.85)
    _mark_disruptions(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return _save(fig, path)


def downtime_chart(run: Any, path: Path, held_s: float = M.HELD_S) -> Path | None:
    """CDF of client downtime (close to the next connection held >= held_s)."""
    if run.conns is not None:
        d = M.downtime_episodes(run.conns, run.t0 + run.end, held_s)["downtime"].to_numpy()
    elif run.downtimes is not None:
        d = run.downtimes
    else:
        return None
    d = np.sort(d[np.isfinite(d)])
    if len(d) == 0:
        return None
    fig, ax = _fig(f"Client downtime (close → next connection held ≥ {held_s:g} s)", "downtime (s)",
                   "fraction of outages")
    y = np.arange(1, len(d) + 1) / len(d)
    ax.step(d, y, where="post", color="#1f77b4", lw=1.8, label=f"{len(d):,} outages")
    for q, ls in ((0.5, ":"), (0.95, "--"), (0.99, "-.")):
        v = float(np.quantile(d, q))
        ax.axvline(v, color="gray", ls=ls, lw=1, label=f"p{round(q * 100)} = {v:.2f} s")
    if d[-1] > 0 and d[0] >= 0 and d[-1] / max(d[d > 0].min() if (d > 0).any() else 1, 1e-3) > 100:
        ax.set_xscale("symlog", linthresh=0.1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    return _save(fig, path)


def delay_chart(run: Any, path: Path, top: int = 6) -> Path | None:
    """Histogram of the delays the policy chose, per close code / failure it answered."""
    ev = run.events
    if ev is None:
        return None
    w = ev.loc[(ev["event"] == "wait").to_numpy(), ["delay", "after_code"]].dropna(subset=["delay"])
    if w.empty:
        return None
    after = w["after_code"].astype(object).fillna("?")
    order = after.value_counts().head(top).index.tolist()
    d = w["delay"].to_numpy(dtype=float)
    hi = float(np.quantile(d, 0.999)) if len(d) else 1.0
    bins = np.linspace(0, max(hi, 1e-3), 60)
    fig, ax = _fig("Reconnect delays chosen by the policy, by what they answered", "delay (s)", "waits")
    cmap = matplotlib.colormaps["tab10"]
    for i, code in enumerate(order):
        vals = d[(after == code).to_numpy()]
        ax.hist(np.clip(vals, 0, bins[-1]), bins=bins, histtype="step", lw=1.6, color=cmap(i % 10),
                label=f"after {code_label(code)} (n={len(vals):,})")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return _save(fig, path)


def sched_chart(run: Any, path: Path) -> Path | None:
    """Histogram of the harness's scheduling error (actual - scheduled attempt time)."""
    if run.events is None:
        return None
    err = M.scheduling_error(run.events) * 1000
    if len(err) == 0:
        return None
    fig, ax = _fig("Harness scheduling error (actual − scheduled attempt time)", "scheduling error (ms)",
                   "attempts")
    hi = max(float(np.quantile(err, 0.999)), 60.0)
    bins = np.linspace(min(float(err.min()), 0.0), hi, 80)
    ax.hist(np.clip(err, bins[0], bins[-1]), bins=bins, color="#1f77b4", alpha=0.85, label=f"{len(err):,} attempts")
    ax.set_yscale("log")
    p50, p99 = np.quantile(err, [0.5, 0.99])
    ax.axvline(p50, color="gray", ls=":", label=f"p50 = {p50:.1f} ms")
    ax.axvline(p99, color="gray", ls="--", label=f"p99 = {p99:.1f} ms")
    ax.axvline(50, color="red", lw=1.2, label="50 ms: above this p99 the run measured the harness")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return _save(fig, path)


CHARTS = [  # (file name, title for the report, function)
    ("connected.png", "Connected clients vs capacity", connected_chart),
    ("attempts.png", "Attempt rate by outcome vs handshake budget", attempts_chart),
    ("closes.png", "Close codes over time", closes_chart),
    ("downtime_cdf.png", "Client downtime (CDF)", downtime_chart),
    ("delays.png", "Reconnect delays by close code", delay_chart),
    ("sched_error.png", "Harness scheduling error", sched_chart),
]


def render_all(run: Any, out: Path, held_s: float = M.HELD_S) -> list[tuple[str, Path]]:
    """Write every chart that has data into `out`; returns (title, path) pairs."""
    done = []
    for name, title, fn in CHARTS:
        kw = {"held_s": held_s} if fn is downtime_chart else {}
        p = fn(run, out / name, **kw)
        if p is not None:
            done.append((title, p))
    return done


__all__ = ["render_all", "CHARTS", "code_label", "connected_chart", "attempts_chart", "closes_chart",
           "downtime_chart", "delay_chart", "sched_chart"]
