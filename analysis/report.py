"""One self-contained report.html per run (images as data: URIs), plus PNGs, metrics.csv, metrics.json
and result.json (what was built, for the runner).

Every piece of text that came from outside (close reasons, manifest strings,
headers) goes through :func:`html.escape` before it reaches the page.  The only links are
relative ones to sibling reports (the comparison that built this one), so a folder of reports
opens from disk wherever it is moved.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import jsonable
from wsstorm.runfolder.schemas import VERSION, AnalysisResult

from . import charts
from . import metrics as M
from .load import Run, load_run
from .scenario_view import scenario_html

SCHED_P99_LIMIT_MS = 50.0

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0} table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left;vertical-align:top} th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.1em;padding:.6em 1em;border-radius:6px}
.good{background:#e6f4ea} .bad{background:#fdecea}
.warn{background:#fff4e5;border:1px solid #f0c36d;padding:.6em 1em;border-radius:6px}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em;white-space:pre-wrap}
.small{font-size:.85em;color:#555} details{margin:.6em 0} .wide{overflow-x:auto;font-size:.9em}
"""


def esc(x: Any) -> str:
    """HTML-escape anything (quotes included)."""
    return html.escape(str(x), quote=True)


def fmt(v: Any, unit: str = "", digits: int = 2) -> str:
    """A number for humans: n/a for NaN/None, 'not reached' for inf."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "not reached"
        if v.is_integer():
            return f"{int(v):,}{unit}"
        return f"{v:,.{digits}f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return str(v)


def data_uri(path: Path) -> str:
    """A PNG file as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def suspect_warnings(run: Run, m: dict[str, Any]) -> list[str]:
    """Everything that makes the numbers suspect, in plain words (unescaped)."""
    out = []
    if run.simulated:
        out.append(
            "This is a SIMULATED run (wsstorm simulate): the numbers come from a model of the fleet, "
            "not from real connections."
        )
    cpu = run.manifest.get("cpu_warnings") or []
    if isinstance(cpu, list) and cpu:
        peak = max(
            (w.get("cpu", 0) for w in cpu if isinstance(w, dict) and isinstance(w.get("cpu"), (int, float))),
            default=0,
        )
        workers = sorted({str(w.get("worker")) for w in cpu if isinstance(w, dict)})
        out.append(
            f"The harness ran hot: {len(cpu)} CPU warning(s), up to {peak:.0f}% "
            f"(worker(s) {', '.join(workers)}); timings may measure the harness, not the server."
        )
    p99 = m["run"].get("sched_err_p99_ms", math.nan)
    if isinstance(p99, float) and p99 > SCHED_P99_LIMIT_MS:
        out.append(
            f"Scheduling error p99 is {p99:.0f} ms (> {SCHED_P99_LIMIT_MS:.0f} ms): attempts left later than "
            "the policy asked, so this run measured the harness more than the policy."
        )
    opts = run.manifest.get("options")
    if isinstance(opts, dict) and opts.get("insecure"):
        out.append(
            "TLS certificates were NOT checked (--insecure): the clients would have trusted any server, "
            "so this run says nothing about the certificate path your clients take."
        )
    out.extend(run.warnings)
    return out


def metastable_text(ms: dict[str, Any] | None) -> str:
    """The metastable verdict in words ('' when it could not be judged)."""
    if not ms:
        return ""
    if ms.get("flag"):
        return (
            f"Metastable failure: the trigger ended at {fmt(ms.get('trigger_end_s'), ' s', 1)}, yet for "
            f"{ms.get('window_s', M.METASTABLE_WINDOW_S)} s after it the server's goodput stayed at "
            f"{fmt(ms.get('goodput_after'), '/s', 1)}, below {M.METASTABLE_FRACTION:.0%} of its pre-fault "
            f"{fmt(ms.get('goodput_before'), '/s', 1)}, while clients were still locked out: the server did "
            "not recover on its own."
        )
    if ms.get("window_s", 0) < M.METASTABLE_WINDOW_S:
        return (
            f"Metastable failure cannot be ruled out: the run ended {ms.get('window_s', 0)} s after the "
            f"trigger, less than the {M.METASTABLE_WINDOW_S} s needed to judge it."
        )
    return (
        f"No metastable failure: after the trigger ended ({fmt(ms.get('trigger_end_s'), ' s', 1)}) the server's "
        f"goodput came back (mean {fmt(ms.get('goodput_after'), '/s', 1)} against a pre-fault "
        f"{fmt(ms.get('goodput_before'), '/s', 1)}) or the clients were back."
    )


def verdict(m: dict[str, Any]) -> tuple[str, bool]:
    """One paragraph: did the policy protect capacity (metastable failure first), and what did clients pay."""
    r = m["run"]
    hf, t95, dp99 = r.get("herd_factor", math.nan), r.get("recovery_T95_s", math.nan), r.get("downtime_p99_s", math.nan)
    ms = r.get("metastable")
    if isinstance(hf, float) and not math.isnan(hf):
        ok = hf <= 1.0 and r.get("overload_s", 0) == 0
        head = (
            f"Protected: the peak attempt rate stayed within the handshake budget ({fmt(hf)}×)."
            if ok
            else f"Not protected: the peak attempt rate reached {fmt(hf)}× the handshake budget"
            f" and the server was overloaded for {r.get('overload_s', 0)} s."
        )
    else:
        ok, head = True, "The handshake budget is unknown, so protection cannot be judged."
    if ms and ms.get("flag"):
        ok = False
    meta = metastable_text(ms)
    lost = r.get("goodput_lost_frac", math.nan)
    if isinstance(lost, float) and not math.isnan(lost):
        head += f" The server lost {fmt(lost * 100, '%', 0)} of the goodput it could have delivered after the trigger."
    cost = (
        f" Clients paid: recovery T95 {fmt(t95, ' s')}, downtime p99 {fmt(dp99, ' s')}, "
        f"{fmt(r.get('wasted_per_recovered', math.nan))} wasted attempts per recovered client."
    )
    return (meta + " " if ms and ms.get("flag") else "") + head + cost + (
        " " + meta if meta and not (ms and ms.get("flag")) else ""
    ), ok


def _triple(r: dict[str, Any], keys: tuple[str, ...], unit: str) -> str:
    return " / ".join(fmt(r.get(k), unit) for k in keys)


def headline_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the headline table (values unescaped); cost-model rows only when measured."""
    r = m["run"]
    budget = r.get("budget_per_s")
    rows = [
        (
            "Peak attempt rate after a disruption" if m.get("disruptions") else "Peak attempt rate (no disruption)",
            f"{fmt(r.get('peak_attempts_per_s'), '/s')} vs handshake budget "
            f"{fmt(budget, '/s') if budget else 'unknown'}"
            + (
                " (estimated from the target's cost model: its token bucket is off)"
                if budget and r.get("budget_source") == "cost model (estimate)"
                else ""
            ),
        ),
        ("Herd factor (peak / budget)", fmt(r.get("herd_factor"), "×")),
        ("Recovery T50 / T95 / T99", " / ".join(fmt(r.get(f"recovery_T{q}_s"), " s") for q in (50, 95, 99))),
        (
            "Client downtime p50 / p95 / p99 / max",
            " / ".join(fmt(r.get(f"downtime_{k}_s"), " s") for k in ("p50", "p95", "p99", "max")),
        ),
        (f"Wasted attempts per recovered client (held < {m['held_s']:g} s)", fmt(r.get("wasted_per_recovered"))),
        ("Overload seconds", fmt(r.get("overload_s"), " s")),
    ]
    if _known(r.get("goodput")):
        rows.append(("Goodput (admissions that became held connections)", fmt(r.get("goodput"))))
    if _known(r.get("goodput_lost")):
        rows.append(
            (
                "Goodput lost after the trigger (vs pre-fault level)",
                f"{fmt(r.get('goodput_lost'))} ({fmt(100 * r['goodput_lost_frac'], '%', 0)} of the demand "
                f"the server could have met at {fmt(r.get('goodput_before'), '/s')})",
            )
        )
    if _known(r.get("wasted_work_ms")):
        frac = r.get("wasted_work_frac")
        rows.append(
            (
                "Wasted work (rejected attempts, clients already gone)",
                f"{fmt(r.get('wasted_work_ms'), ' CPU-ms', 0)}"
                + (f" ({fmt(100 * frac, '%', 0)} of attempt work)" if _known(frac) else "")
                + (
                    f"; {fmt(r.get('abandoned'))} handshakes finished for clients already gone"
                    if _known(r.get("abandoned"))
                    else ""
                ),
            )
        )
    if _known(r.get("rtt_p99_ms")):
        rows.append(("Collateral latency p50 / p99 (whole run)", _triple(r, ("rtt_p50_ms", "rtt_p99_ms"), " ms")))
        if _known(r.get("rtt_before_p99_ms")) or _known(r.get("rtt_after_p99_ms")):
            rows.append(
                (
                    "Collateral latency p99 before / during / after a disruption",
                    _triple(r, ("rtt_before_p99_ms", "rtt_during_p99_ms", "rtt_after_p99_ms"), " ms"),
                )
            )
    ms = r.get("metastable")
    if ms:
        rows.append(
            (
                "Metastable failure",
                ("YES" if ms.get("flag") else "no")
                + f" (trigger ended {fmt(ms.get('trigger_end_s'), ' s', 1)}; goodput before "
                f"{fmt(ms.get('goodput_before'), '/s', 1)}, after {fmt(ms.get('goodput_after'), '/s', 1)})",
            )
        )
    rows.append(
        (
            "Scheduling error p50 / p99 / max",
            " / ".join(fmt(r.get(f"sched_err_{k}_ms"), " ms") for k in ("p50", "p99", "max")),
        )
    )
    return rows


def session_rows(run: Any) -> list[tuple[str, str]]:
    """The resumed-against-new-sessions row, from the server ticks, when the target resumes sessions."""
    sv = run.server
    if sv is None or "resumed" not in sv or not sv["resumed"].notna().any():
        return []
    resumed, starts, refused = (int(sv[c].sum()) for c in ("resumed", "session_starts", "session_refused"))
    target = run.manifest.get("target")
    if not (resumed or refused or (isinstance(target, dict) and target.get("resume_window"))):
        return []  # resume off: every admission is a new session; nothing to compare
    total = resumed + starts
    share = f" ({fmt(100 * resumed / total, '%', 0)} resumed)" if total else ""
    return [("Sessions resumed / new / starts refused", f"{resumed} / {starts} / {refused}{share}")]


def _known(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def disruption_rows(m: dict[str, Any]) -> list[list[str]]:
    """One row per disruption."""
    rows = []
    for d in m["disruptions"]:
        ms = d.get("metastable")
        rows.append(
            [
                fmt(d["t_s"], " s"),
                d["fault"],
                fmt(d.get("trigger_end_s"), " s", 1),
                fmt(d.get("connected_before")),
                fmt(d.get("peak_attempts_per_s"), "/s"),
                fmt(d.get("herd_factor"), "×"),
                fmt(d.get("recovery_T50_s"), " s"),
                fmt(d.get("recovery_T95_s"), " s"),
                fmt(d.get("recovery_T99_s"), " s"),
                fmt(d.get("downtime_p99_s"), " s"),
                fmt(d.get("wasted_per_recovered")),
                fmt(d.get("overload_s"), " s"),
                fmt(100 * d["goodput_lost_frac"], "%", 0) if _known(d.get("goodput_lost_frac")) else "n/a",
                fmt(d.get("wasted_work_ms"), " ms", 0),
                " / ".join(fmt(d.get(f"rtt_{w}_p99_ms"), " ms", 0) for w in ("before", "during", "after")),
                "n/a" if not ms else ("YES" if ms.get("flag") else "no"),
                fmt(d.get("sched_err_p99_ms"), " ms"),
            ]
        )
    return rows


DISRUPTION_HEADER = [
    "at",
    "fault",
    "trigger ended",
    "connected before",
    "peak attempts",
    "herd factor",
    "T50",
    "T95",
    "T99",
    "downtime p99",
    "wasted / recovered",
    "overload",
    "goodput lost",
    "wasted work",
    "echo p99 before / during / after",
    "metastable",
    "sched. err p99",
]


def policy_text(spec: str) -> str:
    """The policy's canonical text, with the catalog's rule when wsstorm.policies knows it."""
    try:
        from wsstorm.policies import CATALOG, parse_policy  # pure module; optional for analysis

        name = parse_policy(spec).name
        entry = CATALOG.get(name) if isinstance(CATALOG, dict) else None
        desc = (
            getattr(entry, "description", None)
            or getattr(entry, "rule", None)
            or (entry if isinstance(entry, str) else "")
        )
        return f"{spec} — {desc}" if desc else spec
    except Exception:
        return spec


def render_html(
    run: Run,
    m: dict[str, Any],
    images: list[tuple[str, Path]],
    reasons: pd.DataFrame,
    back: tuple[str, str] | None = None,
) -> str:
    """The report page as a string (self-contained; ``back`` = (relative href, label) of the comparison)."""
    man = run.manifest
    scen = man.get("scenario") or {}
    scen_name = scen.get("name", "?") if isinstance(scen, dict) else str(scen)
    policy = str(man.get("policy") or "unknown")
    title = f"wsstorm report — {man.get('run', run.path.name)}"
    text, ok = verdict(m)
    warns = suspect_warnings(run, m)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        *([f"<p class='small'><a href='{esc(back[0])}'>← {esc(back[1])}</a></p>"] if back else []),
        f"<h1>{esc(title)}</h1>",
        f"<p class='sub'>policy <b>{esc(policy)}</b> · scenario <b>{esc(scen_name)}</b> · "
        f"{fmt(run.end, ' s', 0)} · {fmt(run.counts.get('users', man.get('users', '?')))} users"
        f"{' · <b>SIMULATED</b>' if run.simulated else ''}</p>",
        f"<p class='verdict {'good' if ok else 'bad'}'>{esc(text)}</p>",
        "<h2>Headline</h2>",
        "<table>"
        + "".join(
            f"<tr><th>{esc(k)}</th><td class='num'>{esc(v)}</td></tr>"
            for k, v in [*headline_rows(m), *session_rows(run)]
        )
        + "</table>",
    ]
    if warns:
        parts.append(
            "<div class='warn'><b>Warnings — these numbers may be suspect</b><ul>"
            + "".join(f"<li>{esc(w)}</li>" for w in warns)
            + "</ul></div>"
        )
    parts.append("<h2>Charts</h2>")
    for t, p in images:
        parts.append(f"<h3>{esc(t)}</h3><img alt='{esc(t)}' src='{data_uri(p)}'>")
    if m["disruptions"]:
        parts.append("<h2>Per disruption</h2>")
        parts.append(_table(DISRUPTION_HEADER, disruption_rows(m)))
    else:
        parts.append(
            "<p class='small'>No disruptions recorded (no faults.jsonl, no server fault lines): "
            "whole-run metrics only.</p>"
        )
    if len(reasons):
        parts.append(
            "<h2>Top close reasons</h2><p class='small'>Reasons are server text, shown verbatim (escaped).</p>"
        )
        parts.append(
            _table(
                ["code", "reason", "count"],
                [
                    [charts.code_label(c) if pd.notna(c) else "?", r, f"{n:,}"]
                    for c, r, n in reasons.itertuples(index=False)
                ],
            )
        )
    parts.append("<h2>Scenario</h2>")
    parts.append(scenario_html(scen, _read_text(run.path / names.SCENARIO), run.disruptions))
    parts.append(f"<h2>Policy</h2><p>{esc(policy_text(policy))}</p>")
    r = m["run"]
    parts.append("<h2>Run</h2>")
    info = [
        ["run folder", str(run.path)],
        ["events", fmt(run.counts.get("events"))],
        ["attempts", fmt(run.counts.get("attempts", r.get("attempts")))],
        ["held threshold N", f"{m['held_s']:g} s"],
        ["seed", man.get("seed", "?")],
        ["host", man.get("host", "?")],
        ["versions", json.dumps(man.get("versions", {}), default=str)],
        ["machine", json.dumps(man.get("machine", {}), default=str)],
        ["target", json.dumps(man.get("target", {}), default=str)],
    ]
    parts.append(_table(["", ""], info))
    parts.append(
        "<p class='small'>Definitions: recovery T<i>q</i> = time from the disruption until <i>q</i> of the "
        "clients connected just before it hold a connection again (held ≥ N s); downtime = per client, from "
        "a close to its next connection held ≥ N s (never recovered: to the end of the run); wasted attempt = "
        "an attempt that did not lead to a connection held ≥ N s; herd factor = peak attempts in one second "
        "after a disruption / the server's handshake budget; overload second = a second in which the serving "
        "server rejected or used its whole handshake budget with a queue left (without a server log: "
        "client-side 1013/503/429/timeouts); goodput = admissions that became held connections (server "
        "count); goodput lost = after the trigger ended, the attempts the server could have served at its "
        "pre-fault goodput level but did not; wasted work = server CPU spent on rejected attempts and on "
        "handshakes finished for clients already gone; collateral latency = echo round trip of clients "
        f"that stayed connected; metastable = the trigger ended, yet for {M.METASTABLE_WINDOW_S} s goodput "
        f"stayed below {M.METASTABLE_FRACTION:.0%} of its pre-fault level while clients were still out.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def flat_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    """metrics.csv rows: one per scope (the run, then each disruption)."""
    rows = [{"scope": "run", **m["run"]}]
    rows += [{"scope": f"disruption {i + 1}", **d} for i, d in enumerate(m["disruptions"])]
    return rows


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def build_report(
    run: Run, held_s: float = M.HELD_S, back: tuple[str, str] | None = None, m: dict[str, Any] | None = None
) -> tuple[Path, dict[str, Any]]:
    """Write report.html, the PNGs, metrics.csv, metrics.json and result.json into the run's folder."""
    out = run.path
    drawing = charts.draw(run, out, held_s)  # the charts are drawn in children while the metrics are computed
    try:
        m = m if m is not None else M.compute(run, held_s)
        reasons = M.top_close_reasons(run.conns)
        warnings = suspect_warnings(run, m)
        m_out = {
            **m,
            "warnings": warnings,
            "counts": run.counts,
            "simulated": run.simulated,
            "policy": run.manifest.get("policy"),
            "run_id": run.manifest.get("run", run.path.name),
        }
        (out / names.METRICS_JSON).write_text(json.dumps(jsonable(m_out), indent=2, default=str))
        pd.DataFrame([jsonable(r) for r in flat_rows(m)]).to_csv(out / names.METRICS_CSV, index=False)
    except BaseException:
        drawing.abandon()
        raise
    images = drawing.wait()
    page = out / names.REPORT_HTML
    page.write_text(render_html(run, m, images, reasons, back), encoding="utf-8")
    write_result(
        out,
        AnalysisResult(v=VERSION, kind="run", report=names.REPORT_HTML, metrics=names.METRICS_JSON, warnings=warnings),
    )
    return page, m_out


def write_result(folder: Path, result: AnalysisResult) -> Path:
    """result.json: what this analysis built, paths relative to ``folder`` (the runner reads it)."""
    path = folder / names.RESULT_JSON
    path.write_text(json.dumps(jsonable(dict(result)), indent=2), encoding="utf-8")
    return path


def write_report(folder: str | Path, held_s: float = M.HELD_S) -> tuple[Path, dict[str, Any]]:
    """Load a run folder and write report.html, the PNGs, metrics.csv and metrics.json beside it."""
    return build_report(load_run(folder), held_s)
