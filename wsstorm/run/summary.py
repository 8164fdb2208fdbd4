"""What a command prints and leaves at the end: the summary table, and the demo's index.html linking
every comparison and every run report (relative links, so the folder opens from disk when moved).
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsstorm.run.procs import RunResult
from wsstorm.run.progress import Progress, RunMonitor, codes_text
from wsstorm.runfolder import names
from wsstorm.runfolder.schemas import AnalysisResult

SUMMARY_METRICS = [
    ("herd_factor", "herd", "{:.1f}"),
    ("recovery_T95_s", "T95 s", "{:.1f}"),
    ("downtime_p99_s", "down p99 s", "{:.1f}"),
    ("wasted_per_recovered", "wasted/rec", "{:.1f}"),
    ("overload_s", "overload s", "{:.0f}"),
    ("goodput_lost_frac", "gp lost", "{:.0%}"),
]


def summary_rows(results: list[RunResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (pure)."""
    several = len({r.scenario for r in results}) > 1
    named = len(results) > 1  # a single run's folder is printed under the table instead
    header = [
        *(["run"] if named else []),
        *(["scenario"] if several else []),
        "policy",
        "opens",
        "closes",
        "fails",
        "dead",
        "peak conn",
    ]
    metric_cols = [m for m in SUMMARY_METRICS if any(m[0] in r.metrics for r in results)]
    header += [label for _, label, _ in metric_cols]
    meta = any(isinstance(r.metrics.get("metastable"), dict) or r.metrics.get("metastable_judged") for r in results)
    if meta:
        header.append("metastable")
    rows = []
    for r in results:
        mon = r.monitor or RunMonitor(r.run_dir)
        fails = " ".join(f"{k}x{n}" for k, n in mon.fails.most_common(3)) or "-"
        row = [
            *([r.run_dir.name] if named else []),
            *([r.scenario] if several else []),
            r.policy + (" (interrupted)" if r.interrupted else ""),
            str(mon.events.get("open", 0)),
            codes_text(mon.closes, 4),
            fails,
            str(mon.events.get("dead", 0)),
            str(mon.peak_connected),
        ]
        for key, _, fmt in metric_cols:
            v = r.metrics.get(key)
            row.append(fmt.format(v) if isinstance(v, (int, float)) and math.isfinite(v) else "-")
        if meta:
            row.append(metastable_cell(r.metrics))
        rows.append(row)
    return header, rows


def metastable_cell(metrics: dict[str, Any]) -> str:
    """'YES' / 'no' for a run's metastable verdict, 'k/K' for a comparison group, '-' if not judged."""
    if "metastable_runs" in metrics:
        judged = metrics.get("metastable_judged") or 0
        return f"{metrics['metastable_runs']}/{metrics.get('runs', judged)}" if judged else "-"
    ms = metrics.get("metastable")
    return "-" if not isinstance(ms, dict) else ("YES" if ms.get("flag") else "no")


def print_summary(results: list[RunResult], progress: Progress) -> None:
    """The short table that ends every command."""
    from rich.table import Table

    header, rows = summary_rows(results)
    table = Table(show_lines=False)
    for h in header:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*[_esc(c) for c in row])
    progress.console.print(table)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def compare_metrics(folder: Path, run_dir: Path, result: AnalysisResult | None) -> dict[str, Any]:
    """The metrics of run_dir's group (policy) in the comparison that ``result`` (its result.json) names, or {}."""
    if result is None or result.get("kind") != "comparison":
        return {}
    try:
        data = json.loads((folder / result["metrics"]).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError):
        return {}
    groups = data.get("groups") if isinstance(data, dict) else None
    for group in groups if isinstance(groups, list) else []:
        folders = group.get("folders", []) if isinstance(group, dict) else []
        if any(Path(f).resolve() == run_dir.resolve() for f in folders if isinstance(f, str)):
            return dict(group)
    return {}


@dataclass
class ScenarioReports:
    """What one scenario of a command built: its comparison page and each run's report."""

    scenario: str
    report: Path | None = None  # compare.html
    error: str = ""
    runs: list[tuple[str, Path]] = field(default_factory=list)  # (label, report.html)


def write_index(top: Path, reports: list[ScenarioReports]) -> Path:
    """index.html in ``top`` linking each scenario's comparison and each of its run reports (relative links)."""
    items = []
    for sr in reports:
        if sr.report is not None:
            rel = os.path.relpath(sr.report, top)
            line = f'<li><a href="{html.escape(rel)}">{html.escape(sr.scenario)}</a>: comparison'
        else:
            line = f"<li>{html.escape(sr.scenario)}: no comparison {html.escape(sr.error)}"
        if sr.runs:
            line += (
                "<ul>"
                + "".join(
                    f'<li><a href="{html.escape(os.path.relpath(p, top))}">{html.escape(lab)}</a></li>'
                    for lab, p in sr.runs
                )
                + "</ul>"
            )
        items.append(line + "</li>")
    page = (
        "<!doctype html><meta charset=utf-8><title>wsstorm demo</title>"
        "<h1>wsstorm: reconnect policies compared</h1>"
        "<p>Each scenario's comparison ranks the policies (protection first, then what clients paid); "
        "each run's own report is linked below it.</p><ul>" + "".join(items) + "</ul>\n"
    )
    path = top / names.INDEX_HTML
    path.write_text(page, encoding="utf-8")
    return path
