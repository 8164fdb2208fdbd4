"""Comparison report across run folders: compare.html + PNGs in an output folder.

Runs with the same policy and scenario are repeats: their metrics are shown as a
mean with a 95% t-interval.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from . import charts  # noqa: F401  (Agg backend, no mathtext)
from . import metrics as M
from .load import Run, load_run
from .report import CSS, data_uri, esc, fmt, jsonable
from wsstorm.errors import UsageError

COLUMNS = [  # (metric key, heading, unit); lower is better for all of them
    ("recovery_T95_s", "recovery T95", " s"),
    ("herd_factor", "herd factor (peak / budget)", "×"),
    ("wasted_per_recovered", "wasted attempts per recovery", ""),
    ("overload_s", "overload seconds", " s"),
    ("downtime_p99_s", "downtime p99", " s"),
]


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its t-interval (half-width NaN for one value; inf if any value is inf)."""
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if np.isinf(v).any():
        return math.inf, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), half


def group_runs(items: list[tuple[Run, dict]]) -> dict[tuple[str, str], list[tuple[Run, dict]]]:
    """Runs keyed by (policy, scenario name), in the order given."""
    groups: dict[tuple[str, str], list[tuple[Run, dict]]] = {}
    for run, m in items:
        scen = run.manifest.get("scenario") or {}
        key = (str(run.manifest.get("policy") or run.path.name),
               str(scen.get("name", "?")) if isinstance(scen, dict) else str(scen))
        groups.setdefault(key, []).append((run, m))
    return groups


def summarize(groups: dict[tuple[str, str], list[tuple[Run, dict]]]) -> list[dict]:
    """One row per group: mean and CI half-width of each column metric."""
    rows = []
    for (policy, scenario), members in groups.items():
        row: dict[str, Any] = {"policy": policy, "scenario": scenario, "runs": len(members),
                               "folders": [str(r.path) for r, _ in members]}
        for key, _, _ in COLUMNS:
            mean, half = mean_ci([m["run"].get(key, math.nan) for _, m in members])
            row[key], row[key + "_ci"] = mean, half
        rows.append(row)
    return rows


def _sort_key(r: dict) -> tuple:
    def v(k: str) -> float:
        x = r.get(k, math.nan)
        return math.inf if x is None or math.isnan(x) else x
    hf = r.get("herd_factor", math.nan)
    protected = not math.isnan(hf) and hf <= 1.0 and v("overload_s") == 0
    return (not protected, v("recovery_T95_s"), v("overload_s"), v("herd_factor"), v("wasted_per_recovered"))


def rank(rows: list[dict]) -> list[tuple[dict, str]]:
    """Rows best first, each with its reason in words: protection first, then recovery speed."""
    out = []
    for r in sorted(rows, key=_sort_key):
        hf, ov = r.get("herd_factor", math.nan), r.get("overload_s", math.nan)
        if math.isnan(hf):
            prot = "handshake budget unknown"
        elif hf <= 1.0 and ov == 0:
            prot = f"kept the peak within the handshake budget ({fmt(hf)}×) with no overload"
        else:
            prot = f"peaked at {fmt(hf)}× the handshake budget with {fmt(ov, ' s')} of overload"
        cost = (f"95% of clients back in {fmt(r.get('recovery_T95_s'), ' s')}, downtime p99 "
                f"{fmt(r.get('downtime_p99_s'), ' s')}, {fmt(r.get('wasted_per_recovered'))} wasted attempts per recovery")
        out.append((r, f"{prot}; {cost}."))
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x and lower y are better)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def pareto_chart(rows: list[dict], path: Path) -> Path:
    """Recovery T95 against peak load relative to the handshake budget, labelled by policy."""
    fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Recovery time vs peak load (lower left is better)", loc="left")
    ax.set_xlabel("peak attempt rate / handshake budget (herd factor, ×)")
    ax.set_ylabel("recovery T95 (s)")
    ax.grid(True, alpha=0.3)
    finite_y = [r["recovery_T95_s"] for r in rows if np.isfinite(r.get("recovery_T95_s", np.nan))]
    top = (max(finite_y) if finite_y else 1.0) * 1.15 + 1
    pts = []
    for r in rows:
        x = r.get("herd_factor", np.nan)
        y = r.get("recovery_T95_s", np.nan)
        pts.append((x if np.isfinite(x) else np.inf, y if np.isfinite(y) else np.inf))
    front = set(pareto_front(pts))
    cmap = matplotlib.colormaps["tab10"]
    for i, r in enumerate(rows):
        x, y = r.get("herd_factor", np.nan), r.get("recovery_T95_s", np.nan)
        if np.isnan(x):
            continue
        unrec = not np.isfinite(y)
        yy = top if unrec else y
        ax.errorbar(x, yy, xerr=None if np.isnan(r.get("herd_factor_ci", np.nan)) else r["herd_factor_ci"],
                    yerr=None if unrec or np.isnan(r.get("recovery_T95_s_ci", np.nan)) else r["recovery_T95_s_ci"],
                    fmt="^" if unrec else "o", ms=9, color=cmap(i % 10), capsize=3,
                    mec="black" if i in front else cmap(i % 10), mew=1.5)
        ax.annotate(r["policy"] + (" (not recovered)" if unrec else ""), (x, yy), xytext=(6, 4),
                    textcoords="offset points", fontsize=8)
    ax.axvline(1.0, color="red", lw=1, ls="--", label="handshake budget (herd factor 1)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0, top=top * 1.08)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path)
    return path


def overlay_chart(items: list[tuple[str, Run]], column: str, title: str, ylabel: str, path: Path) -> Path:
    """One curve per run of a series column, aligned on each run's first disruption (t = 0)."""
    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left")
    ax.set_xlabel("time since the first disruption (s)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    cmap = matplotlib.colormaps["tab10"]
    for i, (label, run) in enumerate(items):
        d0 = float(run.disruptions["t"].iloc[0]) if len(run.disruptions) else 0.0
        s = run.series
        ax.step(s.index.to_numpy() - math.floor(d0), s[column].to_numpy(), where="post", lw=1.4,
                color=cmap(i % 10), label=label)
    ax.axvline(0, color="black", ls="--", lw=1, label="first disruption")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.savefig(path)
    return path


def render_html(rows: list[dict], ranked: list[tuple[dict, str]], images: list[tuple[str, Path]],
                labels: list[tuple[str, Run, dict]]) -> str:
    """The comparison page (self-contained)."""
    repeated = any(r["runs"] > 1 for r in rows)
    head = "".join(f"<th>{esc(h)}</th>" for h in ["policy", "scenario", "runs", *[c[1] for c in COLUMNS]])
    body = []
    for r in rows:
        cells = [esc(r["policy"]), esc(r["scenario"]), str(r["runs"])]
        for key, _, unit in COLUMNS:
            v, ci = r.get(key), r.get(key + "_ci", math.nan)
            txt = fmt(v, unit) + (f" ± {fmt(ci, unit)}" if isinstance(ci, float) and not math.isnan(ci) else "")
            cells.append(f"<td class='num'>{esc(txt)}</td>")
        body.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>wsstorm comparison</title>",
             f"<style>{CSS}</style></head><body><h1>wsstorm comparison</h1>",
             f"<p class='sub'>{len(labels)} run(s), {len(rows)} policy/scenario group(s)</p>",
             "<h2>Ranking</h2><ol>"]
    parts += [f"<li><b>{esc(r['policy'])}</b> ({esc(r['scenario'])}): {esc(reason)}</li>" for r, reason in ranked]
    parts.append("</ol><p class='small'>Order: policies that kept the peak within the handshake budget without "
                 "overload come first; then faster recovery (T95), less overload, lower herd factor, fewer wasted "
                 "attempts.</p>")
    parts.append(f"<h2>Table</h2><table><tr>{head}</tr>{''.join(body)}</table>")
    if repeated:
        parts.append("<p class='small'>Repeated runs (same policy and scenario): mean ± half-width of the 95% "
                     "t-interval.</p>")
    warn = [(lab, w) for lab, run, m in labels for w in m.get("warnings", [])]
    if warn:
        parts.append("<div class='warn'><b>Warnings from the runs</b><ul>"
                     + "".join(f"<li>{esc(lab)}: {esc(w)}</li>" for lab, w in warn) + "</ul></div>")
    parts.append("<h2>Charts</h2>")
    for t, p in images:
        parts.append(f"<h3>{esc(t)}</h3><img alt='{esc(t)}' src='{data_uri(p)}'>")
    parts.append("<h2>Runs</h2>" + "<ul>" + "".join(f"<li>{esc(lab)}: {esc(run.path)}</li>" for lab, run, _ in labels)
                 + "</ul></body></html>")
    return "\n".join(parts)


def write_comparison(folders: list[str | Path], out: str | Path | None = None,
                     held_s: float = M.HELD_S) -> tuple[Path, list[tuple[str, dict]]]:
    """Load and compare run folders; writes compare.html, PNGs and compare.json into `out`."""
    if not folders:
        raise UsageError("compare needs at least one run folder")
    items = []
    for f in folders:
        run = load_run(f)
        m = M.compute(run, held_s)
        from .report import suspect_warnings
        m["warnings"] = suspect_warnings(run, m)
        items.append((run, m))
    out = Path(out) if out else Path("reports") / time.strftime("compare-%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    labels = []
    seen: dict[str, int] = {}
    for run, m in items:
        base = str(run.manifest.get("policy") or run.path.name)
        seen[base] = seen.get(base, 0) + 1
        labels.append((base if seen[base] == 1 else f"{base} #{seen[base]}", run, m))
    rows = summarize(group_runs(items))
    ranked = rank(rows)
    images = [("Recovery time vs peak load (Pareto)", pareto_chart(rows, out / "pareto.png")),
              ("Connected clients, aligned on the first disruption",
               overlay_chart([(lab, run) for lab, run, _ in labels], "connected", "Connected clients",
                             "connections", out / "connected_overlay.png")),
              ("Attempt rate, aligned on the first disruption",
               overlay_chart([(lab, run) for lab, run, _ in labels], "attempts", "Connect attempts per second",
                             "attempts per second", out / "attempts_overlay.png"))]
    page = out / "compare.html"
    page.write_text(render_html(rows, ranked, images, labels), encoding="utf-8")
    (out / "compare.json").write_text(json.dumps(jsonable({"groups": rows, "ranking": [
        {"policy": r["policy"], "scenario": r["scenario"], "reason": why} for r, why in ranked]}), indent=2))
    return page, [(lab, m) for lab, _, m in labels]
