"""Charts of one run (matplotlib, Agg, PNG): each ``*_figure`` function builds one Figure (or None
when the run has no data for it); :func:`draw` saves them (a forked child, then this process too).

Uses matplotlib's object API (Figure, no pyplot state), so it is safe in any process.  Mathtext stays
on (matplotlib's own tick labels need it); text that came from the run folder (policy specs, fault
names, close codes and fail kinds) goes through :func:`plain`, which escapes ``$`` so it can never be
read as mathtext.  Log axes get plain number formatters, so every tick label is a number.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from wsstorm.runfolder import schemas

from . import metrics as M
from . import png

DPI = 100
SIZE = (10, 4.2)
# Label and colour of each client-side outcome; the columns themselves come from the schema.
_OUTCOME_LOOK = {
    "open": ("opened (held)", "#2ca02c"),
    "1013": ("opened, then 1013 within 1 s", "#ff7f0e"),
    "refused": ("refused", "#d62728"),
    "http_503": ("HTTP 503", "#9467bd"),
    "http_429": ("HTTP 429", "#e377c2"),
    "http_other": ("other HTTP status", "#8c564b"),
    "timeout": ("timeout", "#7f7f7f"),
    "other": ("other failure / unknown", "#bcbd22"),
}
OUTCOME_STYLE = [  # (column, label, colour), in schema order
    (col, *_OUTCOME_LOOK.get(o, (o, "#17becf")))
    for o, col in zip(schemas.OUTCOMES, schemas.OUTCOME_COLUMNS, strict=False)
]


def plain(text: Any) -> str:
    """Run-folder text made safe for a matplotlib label: ``$`` escaped, so it is never mathtext."""
    return str(text).replace("$", r"\$")


def _number(x: float, _pos: Any = None) -> str:
    """A tick label as a plain number (no mathtext): 0.1, 1, 10, 1,000, 1e+06."""
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.0e}"
    return f"{x:,.10g}" if abs(x) >= 1 else f"{x:.3g}"


def plain_log_ticks(axis: Any) -> None:
    """Plain number tick labels on a log/symlog axis (its default formatter writes mathtext)."""
    axis.set_major_formatter(FuncFormatter(_number))
    axis.set_minor_formatter(FuncFormatter(lambda x, pos: ""))


def code_label(code: Any) -> str:
    """'1012 Service Restart' for a close code (the names' one home: schemas.close_code_label, graphql-ws's
    44xx included), or the fail kind as given (escaped: it is run text)."""
    try:
        int(float(code))
    except (TypeError, ValueError, OverflowError):
        return plain(code)
    return schemas.close_code_label(code)


def _fig(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = SIZE) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    # y given: the title sits at the top of the axes without matplotlib measuring every tick label to see
    # whether a top axis is in its way (there never is one here): the same pixels, ~70 ms less per chart
    ax.set_title(title, fontsize=12, loc="left", y=1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _mark_disruptions(ax: Any, run: Any) -> None:
    for i, (t, fault) in enumerate(zip(run.disruptions["t"], run.disruptions["fault"], strict=False)):
        ax.axvline(t, color="black", ls="--", lw=1, alpha=0.7, label="disruption" if i == 0 else None)
        ax.annotate(
            plain(fault),
            (t, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -14),
            textcoords="offset points",
            fontsize=8,
            rotation=0,
            alpha=0.8,
        )


Chart = Callable[..., "Figure | None"]


def connected_figure(run: Any) -> Figure:
    """Connected clients (and the server's count) against capacity, disruptions marked."""
    s = run.series
    fig, ax = _fig("Connected clients vs capacity", "time since start (s)", "connections")
    ax.step(s.index, s["connected"], where="post", color="#1f77b4", lw=1.8, label="connected (clients' view)")
    if "server_connections" in s and s["server_connections"].notna().any():
        ax.step(
            s.index,
            s["server_connections"],
            where="post",
            color="#17becf",
            lw=1,
            alpha=0.8,
            label="connections (server's view)",
        )
    cap = run.capacity
    if "capacity" in s and s["capacity"].notna().any():
        ax.step(s.index, s["capacity"], where="post", color="red", lw=1.2, label="server capacity")
    elif cap:
        ax.axhline(cap, color="red", lw=1.2, label="server capacity")
    _mark_disruptions(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    return fig


def attempts_figure(run: Any) -> Figure:
    """Connect attempts per second by outcome (stacked) against the handshake budget."""
    s = run.series
    fig, ax = _fig("Connect attempts per second, by outcome", "time since start (s)", "attempts per second")
    cols = [(c, lab, col) for c, lab, col in OUTCOME_STYLE if c in s and s[c].sum() > 0]
    if cols:
        x = s.index.to_numpy()
        ax.stackplot(
            x,
            *[s[c].to_numpy() for c, _, _ in cols],
            labels=[lab for _, lab, _ in cols],
            colors=[col for _, _, col in cols],
            step="post",
            alpha=0.85,
        )
    budget = run.budget
    if budget:
        ax.axhline(budget, color="black", lw=1.5, ls="-", label=f"handshake budget ({budget:g}/s)")
    _mark_disruptions(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9, ncol=2)
    return fig


def closes_figure(run: Any) -> Figure | None:
    """Closes per second by close code (stacked)."""
    s = run.series
    cols = [c for c in s.columns if c.startswith("closes_") and s[c].sum() > 0]
    if not cols:
        return None
    cols.sort(key=lambda c: -s[c].sum())
    fig, ax = _fig("Connection closes per second, by close code", "time since start (s)", "closes per second")
    cmap = matplotlib.colormaps["tab10"]
    ax.stackplot(
        s.index.to_numpy(),
        *[s[c].to_numpy() for c in cols],
        labels=[code_label(c.split("_", 1)[1]) for c in cols],
        colors=[cmap(i % 10) for i in range(len(cols))],
        step="post",
        alpha=0.85,
    )
    _mark_disruptions(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return fig


def downtime_figure(run: Any, held_s: float = M.HELD_S) -> Figure | None:
    """CDF of client downtime (close to the next connection held >= held_s)."""
    if run.conns is not None:
        d = M.run_episodes(run, held_s)["downtime"].to_numpy()
    elif run.downtimes is not None:
        d = run.downtimes
    else:
        return None
    d = np.sort(d[np.isfinite(d)])
    if len(d) == 0:
        return None
    fig, ax = _fig(
        f"Client downtime (close → next connection held ≥ {held_s:g} s)", "downtime (s)", "fraction of outages"
    )
    y = np.arange(1, len(d) + 1) / len(d)
    # every point: drawn through Agg's path simplification a 10^5-point staircase costs ~10 ms, and a
    # rank-decimated one (1/4 px steps) was no faster yet drew a visibly heavier line
    ax.step(d, y, where="post", color="#1f77b4", lw=1.8, label=f"{len(d):,} outages")
    for q, ls in ((0.5, ":"), (0.95, "--"), (0.99, "-.")):
        v = float(np.quantile(d, q))
        ax.axvline(v, color="gray", ls=ls, lw=1, label=f"p{round(q * 100)} = {v:.2f} s")
    if d[-1] > 0 and d[0] >= 0 and d[-1] / max(d[d > 0].min() if (d > 0).any() else 1, 1e-3) > 100:
        ax.set_xscale("symlog", linthresh=0.1)
        plain_log_ticks(ax.xaxis)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    return fig


def delay_figure(run: Any, top: int = 6) -> Figure | None:
    """Histogram of the delays the policy chose, per close code / failure it answered."""
    ev = run.events
    if ev is None:
        return None
    d, groups = wait_delays(ev)
    if len(d) == 0:
        return None
    order = sorted(groups, key=lambda g: -int(groups[g].sum()))[:top]  # stable: ties keep first appearance
    hi = float(np.quantile(d, 0.999)) if len(d) else 1.0
    bins = np.linspace(0, max(hi, 1e-3), 60)
    fig, ax = _fig("Reconnect delays chosen by the policy, by what they answered", "delay (s)", "waits")
    cmap = matplotlib.colormaps["tab10"]
    for i, code in enumerate(order):
        vals = d[groups[code]]
        ax.hist(
            np.clip(vals, 0, bins[-1]),
            bins=bins,
            histtype="step",
            lw=1.6,
            color=cmap(i % 10),
            label=f"after {code_label(code)} (n={len(vals):,})",
        )
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return fig


def wait_delays(ev: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The delays of the wait events that have one, and a mask over them per what they answered
    (``after_code`` as text, "?" when absent), in order of first appearance; on the categorical's codes."""
    sel = M.is_value(ev["event"], "wait")
    d = ev["delay"].to_numpy(dtype=float)[sel]
    has = ~np.isnan(d)
    d = d[has]
    after = ev["after_code"][sel][has]
    if isinstance(after.dtype, pd.CategoricalDtype):
        codes = after.cat.codes.to_numpy()
        labels = [str(c) for c in after.cat.categories] + ["?"]  # code -1 (absent): the last label
        first = pd.unique(codes)
        groups: dict[str, np.ndarray] = {}
        for c in first.tolist():
            lab = labels[c]
            mask = codes == c
            groups[lab] = groups[lab] | mask if lab in groups else mask
        return d, groups
    text = after.astype(object).fillna("?")
    return d, {lab: (text == lab).to_numpy() for lab in pd.unique(text)}


def sched_figure(run: Any) -> Figure | None:
    """Histogram of the harness's scheduling error (actual - scheduled attempt time)."""
    if run.events is None:
        return None
    err = M.scheduling_error(run.events, errors=M.run_sched_errors(run)) * 1000
    if len(err) == 0:
        return None
    fig, ax = _fig("Harness scheduling error (actual − scheduled attempt time)", "scheduling error (ms)", "attempts")
    hi = max(float(np.quantile(err, 0.999)), 60.0)
    bins = np.linspace(min(float(err.min()), 0.0), hi, 80)
    ax.hist(np.clip(err, bins[0], bins[-1]), bins=bins, color="#1f77b4", alpha=0.85, label=f"{len(err):,} attempts")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    p50, p99 = np.quantile(err, [0.5, 0.99])
    ax.axvline(p50, color="gray", ls=":", label=f"p50 = {p50:.1f} ms")
    ax.axvline(p99, color="gray", ls="--", label=f"p99 = {p99:.1f} ms")
    ax.axvline(50, color="red", lw=1.2, label="50 ms: above this p99 the run measured the harness")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return fig


def goodput_figure(run: Any) -> Figure | None:
    """The server's goodput (admissions that became held connections) and wasted work per second."""
    s = run.series
    if not M.has_column(s, "server_goodput"):
        return None
    fig, ax = _fig("Server goodput and wasted work", "time since start (s)", "held admissions per second")
    ax.step(s.index, s["server_goodput"].fillna(0), where="post", color="#2ca02c", lw=1.8, label="goodput")
    ax.step(s.index, s["attempts"], where="post", color="#7f7f7f", lw=1, alpha=0.8, label="attempts (clients)")
    if M.has_column(s, "attempts_open"):
        ax.step(
            s.index,
            s["attempts_open"],
            where="post",
            color="#1f77b4",
            lw=1,
            ls="--",
            label="opened and held (clients' view)",
        )
    for i, (t_d, end) in enumerate(
        zip(run.disruptions["t"], run.disruptions.get("end", run.disruptions["t"]), strict=False)
    ):
        level = M.goodput_level(s, int(np.floor(t_d)))
        if level > 0 and i == 0:
            ax.axhline(
                level * M.METASTABLE_FRACTION,
                color="#d62728",
                ls=":",
                lw=1,
                label=f"{M.METASTABLE_FRACTION:.0%} of the pre-fault level ({level:g}/s)",
            )
        if end > t_d:
            ax.axvspan(t_d, end, color="black", alpha=0.06, label="trigger" if i == 0 else None)
    if M.has_column(s, "server_wasted_ms"):
        ax2 = ax.twinx()
        ax2.step(
            s.index,
            s["server_wasted_ms"].fillna(0),
            where="post",
            color="#d62728",
            lw=1.2,
            alpha=0.8,
            label="wasted work (CPU-ms, right axis)",
        )
        ax2.set_ylabel("wasted CPU-ms per second")
        ax2.set_ylim(bottom=0)
        ax2.legend(loc="upper left", fontsize=8, framealpha=0.9)
    _mark_disruptions(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return fig


def latency_figure(run: Any) -> Figure | None:
    """Echo round trip p50/p99 per second of the clients that stayed connected (collateral latency)."""
    s = run.series
    p50, p99, _ = schemas.SERIES_LATENCY
    if not M.has_column(s, p99):
        return None
    fig, ax = _fig(
        "Collateral latency: echo round trip of connected clients", "time since start (s)", "round trip (ms)"
    )
    ax.plot(s.index, s[p50], color="#1f77b4", lw=1.4, marker=".", ms=3, label="p50 per second")
    ax.plot(s.index, s[p99], color="#d62728", lw=1.4, marker=".", ms=3, label="p99 per second")
    for i, (t_d, end) in enumerate(
        zip(run.disruptions["t"], run.disruptions.get("end", run.disruptions["t"]), strict=False)
    ):
        if end > t_d:
            ax.axvspan(t_d, end, color="black", alpha=0.06, label="trigger" if i == 0 else None)
    _mark_disruptions(ax, run)
    hi = float(np.nanmax(s[p99].to_numpy(dtype=float)))
    lo = float(np.nanmin(s[p50].to_numpy(dtype=float)))
    if lo > 0 and hi / lo > 50:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(run.end, 1))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return fig


CHARTS: list[tuple[str, str, Chart]] = [  # (file name, title for the report, figure builder)
    ("connected.png", "Connected clients vs capacity", connected_figure),
    ("attempts.png", "Attempt rate by outcome vs handshake budget", attempts_figure),
    ("goodput.png", "Server goodput and wasted work", goodput_figure),
    ("latency.png", "Collateral latency (echo round trip)", latency_figure),
    ("closes.png", "Close codes over time", closes_figure),
    ("downtime_cdf.png", "Client downtime (CDF)", downtime_figure),
    ("delays.png", "Reconnect delays by close code", delay_figure),
    ("sched_error.png", "Harness scheduling error", sched_figure),
]


def figures(run: Any, held_s: float = M.HELD_S) -> list[tuple[str, str, Figure]]:
    """Every chart that has data, as (file name, title, Figure), unsaved."""
    out = []
    for name, title, fn in CHARTS:
        fig = _build(fn, run, held_s)
        if fig is not None:
            out.append((name, title, fig))
    return out


def draw(run: Any, out: Path, held_s: float = M.HELD_S) -> Charts:
    """Begin drawing every chart that has data into ``out``: forked children build and save them while this
    process goes on (the report's metrics); :meth:`Charts.wait` returns the (title, path) of those drawn."""
    jobs: list[png.Job] = [(functools.partial(_build, fn, run, held_s), out / name) for name, _, fn in CHARTS]
    return Charts(png.start(jobs, dpi=DPI), {out / name: title for name, title, _ in CHARTS})


def _build(fn: Chart, run: Any, held_s: float) -> Figure | None:
    return fn(run, held_s=held_s) if fn is downtime_figure else fn(run)


@dataclass
class Charts:
    """A run's charts being drawn (see :func:`draw`)."""

    drawing: png.Drawing
    titles: dict[Path, str]

    def wait(self) -> list[tuple[str, Path]]:
        """The (title, path) of every chart drawn, in the report's order, once all are written."""
        return [(self.titles[p], p) for p in self.drawing.wait()]

    def abandon(self) -> None:
        """Reap the children: the report failed meanwhile."""
        self.drawing.abandon()


__all__ = [
    "CHARTS",
    "Charts",
    "attempts_figure",
    "closes_figure",
    "code_label",
    "connected_figure",
    "delay_figure",
    "downtime_figure",
    "draw",
    "figures",
    "goodput_figure",
    "latency_figure",
    "plain",
    "plain_log_ticks",
    "sched_figure",
]
