"""One self-contained report.html per run (images as data: URIs), plus PNGs, metrics.csv, metrics.json.

Every piece of text that came from outside (close reasons, manifest strings,
headers) goes through :func:`html.escape` before it reaches the page.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from . import charts, metrics as M
from .load import Run, load_run

SCHED_P99_LIMIT_MS = 50.0

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0} table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left;vertical-align:top} th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums} .verdict{font-size:1.1em;padding:.6em 1em;border-radius:6px}
.good{background:#e6f4ea} .bad{background:#fdecea} .warn{background:#fff4e5;border:1px solid #f0c36d;padding:.6em 1em;border-radius:6px}
img{max-width:100%;border:1px solid #eee;margin:.4em 0} pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em;white-space:pre-wrap}
.small{font-size:.85em;color:#555}
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


def jsonable(v: Any) -> Any:
    """NaN -> null, inf -> "not reached", numpy scalars -> Python."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "not reached"
    return v


def data_uri(path: Path) -> str:
    """A PNG file as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def suspect_warnings(run: Run, m: dict) -> list[str]:
    """Everything that makes the numbers suspect, in plain words (unescaped)."""
    out = []
    if run.simulated:
        out.append("This is a SIMULATED run (wsstorm simulate): the numbers come from a model of the fleet, "
                   "not from real connections.")
    cpu = run.manifest.get("cpu_warnings") or []
    if isinstance(cpu, list) and cpu:
        peak = max((w.get("cpu", 0) for w in cpu if isinstance(w, dict) and isinstance(w.get("cpu"), (int, float))),
                   default=0)
        workers = sorted({str(w.get("worker")) for w in cpu if isinstance(w, dict)})
        out.append(f"The harness ran hot: {len(cpu)} CPU warning(s), up to {peak:.0f}% "
                   f"(worker(s) {', '.join(workers)}); timings may measure the harness, not the server.")
    p99 = m["run"].get("sched_err_p99_ms", math.nan)
    if isinstance(p99, float) and p99 > SCHED_P99_LIMIT_MS:
        out.append(f"Scheduling error p99 is {p99:.0f} ms (> {SCHED_P99_LIMIT_MS:.0f} ms): attempts left later than "
                   "the policy asked, so this run measured the harness more than the policy.")
    out.extend(run.warnings)
    return out


def verdict(m: dict) -> tuple[str, bool]:
    """One sentence: did the policy protect capacity, and what did clients pay."""
    r = m["run"]
    hf, t95, dp99 = r.get("herd_factor", math.nan), r.get("recovery_T95_s", math.nan), r.get("downtime_p99_s", math.nan)
    if isinstance(hf, float) and not math.isnan(hf):
        ok = hf <= 1.0 and r.get("overload_s", 0) == 0
        head = (f"Protected: the peak attempt rate stayed within the handshake budget ({fmt(hf)}×)." if ok else
                f"Not protected: the peak attempt rate reached {fmt(hf)}× the handshake budget"
                f" and the server was overloaded for {r.get('overload_s', 0)} s.")
    else:
        ok, head = True, "The handshake budget is unknown, so protection cannot be judged."
    cost = f" Clients paid: recovery T95 {fmt(t95, ' s')}, downtime p99 {fmt(dp99, ' s')}, " \
           f"{fmt(r.get('wasted_per_recovered', math.nan))} wasted attempts per recovered client."
    return head + cost, ok


def headline_rows(m: dict) -> list[tuple[str, str]]:
    """(label, value) rows of the headline table (values unescaped)."""
    r = m["run"]
    budget = r.get("budget_per_s")
    return [
        ("Peak attempt rate after a disruption" if m.get("disruptions") else "Peak attempt rate (no disruption)",
         f"{fmt(r.get('peak_attempts_per_s'), '/s')} vs handshake budget "
         f"{fmt(budget, '/s') if budget else 'unknown'}"),
        ("Herd factor (peak / budget)", fmt(r.get("herd_factor"), "×")),
        ("Recovery T50 / T95 / T99", " / ".join(fmt(r.get(f"recovery_T{q}_s"), " s") for q in (50, 95, 99))),
        ("Client downtime p50 / p95 / p99 / max", " / ".join(fmt(r.get(f"downtime_{k}_s"), " s")
                                                              for k in ("p50", "p95", "p99", "max"))),
        (f"Wasted attempts per recovered client (held < {m['held_s']:g} s)", fmt(r.get("wasted_per_recovered"))),
        ("Overload seconds", fmt(r.get("overload_s"), " s")),
        ("Scheduling error p50 / p99 / max", " / ".join(fmt(r.get(f"sched_err_{k}_ms"), " ms")
                                                         for k in ("p50", "p99", "max"))),
    ]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def disruption_rows(m: dict) -> list[list[str]]:
    """One row per disruption."""
    return [[fmt(d["t_s"], " s"), d["fault"], fmt(d.get("connected_before")), fmt(d.get("peak_attempts_per_s"), "/s"),
             fmt(d.get("herd_factor"), "×"), fmt(d.get("recovery_T50_s"), " s"), fmt(d.get("recovery_T95_s"), " s"),
             fmt(d.get("recovery_T99_s"), " s"), fmt(d.get("downtime_p99_s"), " s"),
             fmt(d.get("wasted_per_recovered")), fmt(d.get("overload_s"), " s"), fmt(d.get("sched_err_p99_ms"), " ms")]
            for d in m["disruptions"]]


def policy_text(spec: str) -> str:
    """The policy's canonical text, with the catalog's rule when wsstorm.policies knows it."""
    try:
        from wsstorm.policies import CATALOG, parse_policy  # pure module; optional for analysis
        name = parse_policy(spec).name
        entry = CATALOG.get(name) if isinstance(CATALOG, dict) else None
        desc = getattr(entry, "description", None) or getattr(entry, "rule", None) or (entry if isinstance(entry, str) else "")
        return f"{spec} — {desc}" if desc else spec
    except Exception:  # noqa: BLE001 - any failure: just show the text we have
        return spec


def render_html(run: Run, m: dict, images: list[tuple[str, Path]], reasons: pd.DataFrame) -> str:
    """The report page as a string (self-contained)."""
    man = run.manifest
    scen = man.get("scenario") or {}
    scen_name = scen.get("name", "?") if isinstance(scen, dict) else str(scen)
    policy = str(man.get("policy") or "unknown")
    title = f"wsstorm report — {man.get('run', run.path.name)}"
    text, ok = verdict(m)
    warns = suspect_warnings(run, m)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p class='sub'>policy <b>{esc(policy)}</b> · scenario <b>{esc(scen_name)}</b> · "
             f"{fmt(run.end, ' s', 0)} · {fmt(run.counts.get('users', man.get('users', '?')))} users"
             f"{' · <b>SIMULATED</b>' if run.simulated else ''}</p>",
             f"<p class='verdict {'good' if ok else 'bad'}'>{esc(text)}</p>",
             "<h2>Headline</h2>",
             "<table>" + "".join(f"<tr><th>{esc(k)}</th><td class='num'>{esc(v)}</td></tr>"
                                 for k, v in headline_rows(m)) + "</table>"]
    if warns:
        parts.append("<div class='warn'><b>Warnings — these numbers may be suspect</b><ul>"
                     + "".join(f"<li>{esc(w)}</li>" for w in warns) + "</ul></div>")
    parts.append("<h2>Charts</h2>")
    for t, p in images:
        parts.append(f"<h3>{esc(t)}</h3><img alt='{esc(t)}' src='{data_uri(p)}'>")
    if m["disruptions"]:
        parts.append("<h2>Per disruption</h2>")
        parts.append(_table(["at", "fault", "connected before", "peak attempts", "herd factor", "T50", "T95", "T99",
                             "downtime p99", "wasted / recovered", "overload", "sched. err p99"], disruption_rows(m)))
    else:
        parts.append("<p class='small'>No disruptions recorded (no faults.jsonl, no server fault lines): "
                     "whole-run metrics only.</p>")
    if len(reasons):
        parts.append("<h2>Top close reasons</h2><p class='small'>Reasons are server text, shown verbatim (escaped).</p>")
        parts.append(_table(["code", "reason", "count"],
                            [[charts.code_label(c) if pd.notna(c) else "?", r, f"{n:,}"]
                             for c, r, n in reasons.itertuples(index=False)]))
    parts.append("<h2>Scenario</h2>")
    parts.append(f"<pre>{esc(json.dumps(scen, indent=2, default=str))}</pre>")
    parts.append(f"<h2>Policy</h2><p>{esc(policy_text(policy))}</p>")
    r = m["run"]
    parts.append("<h2>Run</h2>")
    info = [["run folder", str(run.path)], ["events", fmt(run.counts.get("events"))],
            ["attempts", fmt(run.counts.get("attempts", r.get("attempts")))],
            ["held threshold N", f"{m['held_s']:g} s"], ["seed", man.get("seed", "?")],
            ["host", man.get("host", "?")], ["versions", json.dumps(man.get("versions", {}), default=str)],
            ["machine", json.dumps(man.get("machine", {}), default=str)],
            ["target", json.dumps(man.get("target", {}), default=str)]]
    parts.append(_table(["", ""], info))
    parts.append("<p class='small'>Definitions: recovery T<i>q</i> = time from the disruption until <i>q</i> of the "
                 "clients connected just before it hold a connection again (held ≥ N s); downtime = per client, from "
                 "a close to its next connection held ≥ N s (never recovered: to the end of the run); wasted attempt = "
                 "an attempt that did not lead to a connection held ≥ N s; herd factor = peak attempts in one second "
                 "after a disruption / the server's handshake budget; overload second = a second in which the serving "
                 "server rejected or used its whole handshake budget with a queue left (without a server log: "
                 "client-side 1013/503/429/timeouts).</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def flat_rows(m: dict) -> list[dict]:
    """metrics.csv rows: one per scope (the run, then each disruption)."""
    rows = [{"scope": "run", **m["run"]}]
    rows += [{"scope": f"disruption {i + 1}", **d} for i, d in enumerate(m["disruptions"])]
    return rows


def write_report(folder: str | Path, held_s: float = M.HELD_S) -> tuple[Path, dict]:
    """Load a run folder and write report.html, the PNGs, metrics.csv and metrics.json beside it."""
    run = load_run(folder)
    m = M.compute(run, held_s)
    out = run.path
    images = charts.render_all(run, out, held_s)
    reasons = M.top_close_reasons(run.conns)
    m_out = {**m, "warnings": suspect_warnings(run, m), "counts": run.counts, "simulated": run.simulated,
             "policy": run.manifest.get("policy"), "run_id": run.manifest.get("run", run.path.name)}
    (out / "metrics.json").write_text(json.dumps(jsonable(m_out), indent=2, default=str))
    pd.DataFrame([jsonable(r) for r in flat_rows(m)]).to_csv(out / "metrics.csv", index=False)
    page = out / "report.html"
    page.write_text(render_html(run, m, images, reasons), encoding="utf-8")
    return page, m_out
