"""Comparison report across run folders: compare.html + PNGs + compare.json + result.json in an output
folder, and each run's own report.html (linked both ways, relatively, so the folder can move).

Runs with the same policy and scenario are repeats: their metrics are shown as a mean with a 95%
t-interval, and they rank on the means.  The order is :mod:`.ranking`'s: protection first, then cost.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from wsstorm.errors import UsageError
from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import jsonable
from wsstorm.runfolder.schemas import VERSION, AnalysisResult

from . import metrics as M
from . import png
from . import ranking as R
from .charts import plain
from .load import Run, load_run
from .report import CSS, build_report, data_uri, esc, fmt, suspect_warnings, write_result

# (metric key, heading, unit, scale); lower is better for all of them.  Protection first, then cost.
PROTECTION_COLUMNS = [
    ("overload_s", "overload seconds", " s", 1.0),
    ("herd_factor", "herd factor (peak / budget)", "×", 1.0),
    ("goodput_lost_frac", "goodput lost", "%", 100.0),
    ("wasted_work_frac", "wasted work share", "%", 100.0),
    ("rtt_inflation", "echo p99 inflation", "×", 1.0),
]
COST_COLUMNS = [
    ("recovery_T95_s", "recovery T95", " s", 1.0),
    ("downtime_p99_s", "downtime p99", " s", 1.0),
    ("wasted_per_recovered", "wasted attempts per recovery", "", 1.0),
]
COLUMNS = PROTECTION_COLUMNS + COST_COLUMNS
OPTIONAL = {"goodput_lost_frac", "wasted_work_frac", "rtt_inflation"}  # shown only when some run measured them


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its t-interval (half-width NaN for one value; inf if any value is inf)."""
    v = np.array([x for x in (R.num(x) for x in values) if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if np.isinf(v).any():
        return math.inf, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), half


def group_runs(items: list[tuple[Run, dict[str, Any]]]) -> dict[tuple[str, str], list[tuple[Run, dict[str, Any]]]]:
    """Runs keyed by (policy, scenario name), in the order given."""
    groups: dict[tuple[str, str], list[tuple[Run, dict[str, Any]]]] = {}
    for run, m in items:
        scen = run.manifest.get("scenario") or {}
        key = (
            str(run.manifest.get("policy") or run.path.name),
            str(scen.get("name", "?")) if isinstance(scen, dict) else str(scen),
        )
        groups.setdefault(key, []).append((run, m))
    return groups


def summarize(groups: dict[tuple[str, str], list[tuple[Run, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per group: mean and CI half-width of each column metric and of the protection score,
    and how many of its runs were metastable."""
    rows = []
    for (policy, scenario), members in groups.items():
        row: dict[str, Any] = {
            "policy": policy,
            "scenario": scenario,
            "runs": len(members),
            "folders": [str(r.path) for r, _ in members],
        }
        for key, _, _, _ in COLUMNS:
            mean, half = mean_ci([m["run"].get(key, math.nan) for _, m in members])
            row[key], row[key + "_ci"] = mean, half
        row["metastable_runs"] = sum(1 for _, m in members if (m["run"].get("metastable") or {}).get("flag"))
        row["metastable_judged"] = sum(1 for _, m in members if m["run"].get("metastable"))
        row["score"] = R.protection_score(row)  # on the means
        _, row["score_ci"] = mean_ci([R.protection_score(m["run"]) for _, m in members])
        rows.append(row)
    return rows


def _reason(r: dict[str, Any]) -> str:
    hf, ov = r.get("herd_factor", math.nan), r.get("overload_s", math.nan)
    if math.isnan(hf):
        prot = f"handshake budget unknown; {fmt(ov, ' s')} of overload"
    elif hf <= 1.0 and ov == 0:
        prot = f"kept the peak within the handshake budget ({fmt(hf)}×) with no overload"
    else:
        prot = f"peaked at {fmt(hf)}× the handshake budget with {fmt(ov, ' s')} of overload"
    if R.num(r.get("goodput_lost_frac")) >= 0:
        prot += f", lost {fmt(100 * r['goodput_lost_frac'], '%', 0)} of its goodput"
    if r.get("metastable_runs"):
        prot += f", metastable failure in {r['metastable_runs']} of {r['runs']} run(s)"
    prot += f" (protection score {fmt(r['score'])})"
    cost = (
        f"95% of clients back in {fmt(r.get('recovery_T95_s'), ' s')}, downtime p99 "
        f"{fmt(r.get('downtime_p99_s'), ' s')}, {fmt(r.get('wasted_per_recovered'))} wasted attempts per recovery"
    )
    return f"{prot}; {cost}."


def rank(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Rows best first (:func:`ranking.order`), each with its reason in words."""
    return [(rows[i], _reason(rows[i])) for i in R.order(rows)]


def indistinct(ranked: list[tuple[dict[str, Any], str]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Neighbours in the ranking whose intervals overlap on what ordered them (protection score when their
    bands differ, recovery T95 otherwise): repeated runs could not tell them apart."""
    out = []
    for (a, _), (b, _) in itertools.pairwise(ranked):
        if a["runs"] < 2 or b["runs"] < 2:
            continue
        key = "score" if R.band(a["score"]) != R.band(b["score"]) else "recovery_T95_s"
        if R.overlap((a[key], a[key + "_ci"]), (b[key], b[key + "_ci"])):
            out.append((a, b))
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x and lower y are better)."""
    return R.pareto_front(points)


def _front(rows: list[dict[str, Any]]) -> set[int]:
    """The Pareto front of (protection band, recovery T95): within a band the policies count as equally
    protective, so only a faster recovery or a better band is a real trade-off."""
    pts = [
        (
            R.band(r["score"]) if not math.isnan(r["score"]) else math.inf,
            R.num(r.get("recovery_T95_s")) if not math.isnan(R.num(r.get("recovery_T95_s"))) else math.inf,
        )
        for r in rows
    ]
    return set(pareto_front(pts))


def _names(rows: list[dict[str, Any]]) -> str:
    return ", ".join(r["policy"] for r in rows)


def verdict_text(rows: list[dict[str, Any]], ranked: list[tuple[dict[str, Any], str]]) -> list[str]:
    """The comparison's verdict in sentences (unescaped): who kept the server within its budget, who broke
    it, what the fastest protective policy cost clients, and the trade-offs worth considering."""
    if not ranked:
        return ["No runs to compare."]
    order = [r for r, _ in ranked]
    st = {id(r): R.standing(r) for r in order}
    within = [r for r in order if st[id(r)].within_budget]
    broke = [r for r in order if st[id(r)].broke]
    out = []
    if within:
        out.append(
            f"Kept the server within its budget (no overload, peak within the handshake budget): {_names(within)}."
        )
    else:
        out.append("No policy kept the server entirely within its budget.")
    if broke:
        out.append("Broke it: " + "; ".join(f"{r['policy']} ({st[id(r)].why})" for r in broke) + ".")
    best = order[0]
    protective = within or [r for r in order if R.band(r["score"]) == R.band(best["score"])]
    fastest = min(
        protective,
        key=lambda r: R.num(r.get("recovery_T95_s")) if not math.isnan(R.num(r.get("recovery_T95_s"))) else math.inf,
    )
    if math.isnan(R.num(fastest.get("recovery_T95_s"))):  # no disruption: no recovery to time
        fastest = protective[0]
        out.append(
            f"The most protective policy, {fastest['policy']}, cost clients a downtime p99 of "
            f"{fmt(fastest.get('downtime_p99_s'), ' s')} and {fmt(fastest.get('wasted_per_recovered'))} wasted "
            "attempts per recovery (no disruption, so no recovery time)."
        )
    else:
        out.append(
            f"The fastest protective policy, {fastest['policy']}, cost clients a recovery T95 of "
            f"{fmt(fastest.get('recovery_T95_s'), ' s')}, downtime p99 {fmt(fastest.get('downtime_p99_s'), ' s')} "
            f"and {fmt(fastest.get('wasted_per_recovered'))} wasted attempts per recovery."
        )
    quicker = [r for r in order if R.num(r.get("recovery_T95_s")) < R.num(fastest.get("recovery_T95_s"))]
    if quicker:
        q = min(quicker, key=lambda r: R.num(r.get("recovery_T95_s")))
        out.append(
            f"{q['policy']} recovered faster ({fmt(q.get('recovery_T95_s'), ' s')}) but protected the server "
            f"less (protection score {fmt(q['score'])} against {fmt(fastest['score'])})."
        )
    front = [rows[i] for i in sorted(_front(rows), key=lambda i: R.sort_key(rows[i]))]
    if len(front) > 1:
        out.append(
            f"Trade-offs worth considering (no other policy both protected the server better and "
            f"recovered faster): {_names(front)}."
        )
    elif front:
        out.append(f"{front[0]['policy']} is best on both protection and recovery: no trade-off to make.")
    return out


def pareto_chart(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write :func:`pareto_figure` to ``path``."""
    pareto_figure(rows).savefig(path)
    return path


def pareto_figure(rows: list[dict[str, Any]]) -> Figure:
    """Recovery T95 against peak load relative to the handshake budget, labelled by policy."""
    fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Recovery time vs peak load (lower left is better)", loc="left")
    ax.set_xlabel("peak attempt rate / handshake budget (herd factor, ×)")
    ax.set_ylabel("recovery T95 (s)")
    ax.grid(True, alpha=0.3)
    finite_y = [r["recovery_T95_s"] for r in rows if np.isfinite(r.get("recovery_T95_s", np.nan))]
    top = (max(finite_y) if finite_y else 1.0) * 1.15 + 1
    front = _front(rows)
    cmap = matplotlib.colormaps["tab10"]
    for i, r in enumerate(rows):
        x, y = r.get("herd_factor", np.nan), r.get("recovery_T95_s", np.nan)
        if np.isnan(x):
            continue
        unrec = not np.isfinite(y)
        yy = top if unrec else y
        ax.errorbar(
            x,
            yy,
            xerr=None if np.isnan(r.get("herd_factor_ci", np.nan)) else r["herd_factor_ci"],
            yerr=None if unrec or np.isnan(r.get("recovery_T95_s_ci", np.nan)) else r["recovery_T95_s_ci"],
            fmt="^" if unrec else "o",
            ms=9,
            color=cmap(i % 10),
            capsize=3,
            mec="black" if i in front else cmap(i % 10),
            mew=1.5,
        )
        ax.annotate(
            plain(r["policy"]) + (" (not recovered)" if unrec else ""),
            (x, yy),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax.axvline(1.0, color="red", lw=1, ls="--", label="handshake budget (herd factor 1)")
    ax.plot([], [], "o", mfc="white", mec="black", mew=1.5, label="Pareto front (protection band vs T95)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0, top=top * 1.08)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def overlay_chart(items: list[tuple[str, Run]], column: str, title: str, ylabel: str, path: Path) -> Path:
    """Write :func:`overlay_figure` to ``path``."""
    overlay_figure(items, column, title, ylabel).savefig(path)
    return path


def overlay_figure(items: list[tuple[str, Run]], column: str, title: str, ylabel: str) -> Figure:
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
        ax.step(
            s.index.to_numpy() - math.floor(d0),
            s[column].to_numpy(),
            where="post",
            lw=1.4,
            color=cmap(i % 10),
            label=plain(label),
        )
    ax.axvline(0, color="black", ls="--", lw=1, label="first disruption")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    return fig


def _cell(r: dict[str, Any], key: str, unit: str, scale: float) -> str:
    v, ci = R.num(r.get(key)), R.num(r.get(key + "_ci"))
    txt = fmt(v * scale if not math.isnan(v) else v, unit, 0 if unit == "%" else 2)
    if not math.isnan(ci):
        txt += f" ± {fmt(ci * scale, unit, 0 if unit == '%' else 2)}"
    return f"<td class='num'>{esc(txt)}</td>"


def comparison_figures(
    rows: list[dict[str, Any]], labels: list[tuple[str, Run, dict[str, Any]]]
) -> list[tuple[str, str, Figure]]:
    """Every chart of the comparison page as (file name, title, Figure), unsaved."""
    runs = [(lab, run) for lab, run, _ in labels]
    out = [
        ("pareto.png", "Recovery time vs peak load (Pareto)", pareto_figure(rows)),
        (
            "connected_overlay.png",
            "Connected clients, aligned on the first disruption",
            overlay_figure(runs, "connected", "Connected clients", "connections"),
        ),
        (
            "attempts_overlay.png",
            "Attempt rate, aligned on the first disruption",
            overlay_figure(runs, "attempts", "Connect attempts per second", "attempts per second"),
        ),
    ]
    measured = [(lab, run) for lab, run in runs if M.has_column(run.series, "server_goodput")]
    if measured:
        out.append(
            (
                "goodput_overlay.png",
                "Server goodput, aligned on the first disruption",
                overlay_figure(
                    measured, "server_goodput", "Server goodput (admissions that became held connections)", "per second"
                ),
            )
        )
    return out


def render_html(
    rows: list[dict[str, Any]],
    ranked: list[tuple[dict[str, Any], str]],
    images: list[tuple[str, Path]],
    labels: list[tuple[str, Run, dict[str, Any]]],
    out: Path,
    run_reports: dict[str, str] | None = None,
) -> str:
    """The comparison page (self-contained but for relative links to each run's report)."""
    run_reports = run_reports or {}
    repeated = any(r["runs"] > 1 for r in rows)
    cols = [c for c in COLUMNS if c[0] not in OPTIONAL or any(not math.isnan(R.num(r.get(c[0]))) for r in rows)]
    meta = any(r.get("metastable_judged") for r in rows)
    heads = ["policy", "scenario", "runs", "protection score", *[c[1] for c in cols], *(["metastable"] if meta else [])]
    head = "".join(f"<th>{esc(h)}</th>" for h in heads)
    body = []
    for r, _ in ranked:
        cells = [
            f"<td>{esc(r['policy'])}</td>",
            f"<td>{esc(r['scenario'])}</td>",
            f"<td class='num'>{r['runs']}</td>",
            _cell(r, "score", "", 1.0),
        ]
        cells += [_cell(r, key, unit, scale) for key, _, unit, scale in cols]
        if meta:
            cells.append(f"<td>{r['metastable_runs']} of {r['metastable_judged']}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    verdict = verdict_text(rows, ranked)
    bad = any(R.standing(r).broke for r in rows)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>wsstorm comparison</title>",
        f"<style>{CSS}</style></head><body><h1>wsstorm comparison</h1>",
        f"<p class='sub'>{len(labels)} run(s), {len(rows)} policy/scenario group(s)</p>",
        f"<div class='verdict {'bad' if bad else 'good'}'>" + "".join(f"<p>{esc(v)}</p>" for v in verdict) + "</div>",
        "<h2>Ranking</h2><ol>",
    ]
    parts += [f"<li><b>{esc(r['policy'])}</b> ({esc(r['scenario'])}): {esc(reason)}</li>" for r, reason in ranked]
    parts.append(f"</ol><p class='small'>{esc(R.RULE)} (docs/comparison.md)</p>")
    for a, b in indistinct(ranked):
        k = min(a["runs"], b["runs"])
        parts.append(
            f"<p class='small'>{esc(a['policy'])} and {esc(b['policy'])} are not distinguishable in "
            f"{k} runs: their 95% intervals overlap on what ordered them.</p>"
        )
    parts.append(f"<h2>Table</h2><div class='wide'><table><tr>{head}</tr>{''.join(body)}</table></div>")
    if repeated:
        parts.append(
            "<p class='small'>Repeated runs (same policy and scenario): mean ± half-width of the 95% "
            "t-interval; the ranking uses the means.</p>"
        )
    warn = [(lab, w) for lab, run, m in labels for w in m.get("warnings", [])]
    if warn:
        parts.append(
            "<div class='warn'><b>Warnings from the runs</b><ul>"
            + "".join(f"<li>{esc(lab)}: {esc(w)}</li>" for lab, w in warn)
            + "</ul></div>"
        )
    parts.append("<h2>Charts</h2>")
    for t, p in images:
        parts.append(f"<h3>{esc(t)}</h3><img alt='{esc(t)}' src='{data_uri(p)}'>")
    items = []
    for lab, run, _ in labels:
        link = run_reports.get(str(run.path))
        rel = os.path.relpath(run.path, out)
        items.append(
            f"<li><a href='{esc(link)}'>{esc(lab)}</a> ({esc(rel)})</li>"
            if link
            else f"<li>{esc(lab)}: {esc(rel)}</li>"
        )
    parts.append("<h2>Runs</h2><ul>" + "".join(items) + "</ul></body></html>")
    return "\n".join(parts)


def write_comparison(
    folders: list[str | Path], out: str | Path | None = None, held_s: float = M.HELD_S, run_reports: bool = True
) -> tuple[Path, list[tuple[str, dict[str, Any]]]]:
    """Load and compare run folders; writes compare.html, PNGs, compare.json and result.json into `out`,
    and (``run_reports``) each run's report.html, linked both ways."""
    if not folders:
        raise UsageError("compare needs at least one run folder")
    items = []
    for f in folders:
        run = load_run(f)
        m = M.compute(run, held_s)
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
    links: dict[str, str] = {}
    if run_reports:
        for _lab, run, m in labels:
            back = (os.path.relpath(out / names.COMPARE_HTML, run.path), "back to the comparison")
            page_path, _ = build_report(run, held_s, back=back, m=m)
            links[str(run.path)] = os.path.relpath(page_path, out)
    rows = summarize(group_runs(items))
    ranked = rank(rows)
    figs = comparison_figures(rows, labels)
    png.save_all([(fig, out / name) for name, _, fig in figs])
    images = [(title, out / name) for name, title, _ in figs]
    page = out / names.COMPARE_HTML
    page.write_text(render_html(rows, ranked, images, labels, out, links), encoding="utf-8")
    (out / names.COMPARE_JSON).write_text(
        json.dumps(
            jsonable(
                {
                    "groups": rows,
                    "verdict": verdict_text(rows, ranked),
                    "rule": R.RULE,
                    "ranking": [
                        {"policy": r["policy"], "scenario": r["scenario"], "reason": why, "score": r["score"]}
                        for r, why in ranked
                    ],
                    "not_distinguishable": [[a["policy"], b["policy"]] for a, b in indistinct(ranked)],
                }
            ),
            indent=2,
        )
    )
    write_result(
        out,
        AnalysisResult(
            v=VERSION,
            kind="comparison",
            report=names.COMPARE_HTML,
            metrics=names.COMPARE_JSON,
            runs=[os.path.relpath(run.path, out) for _, run, _ in labels],
            run_reports=[links[str(run.path)] for _, run, _ in labels if str(run.path) in links],
            warnings=[f"{lab}: {w}" for lab, _, m in labels for w in m.get("warnings", [])],
        ),
    )
    return page, [(lab, m) for lab, _, m in labels]
