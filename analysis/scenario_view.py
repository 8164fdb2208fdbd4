"""The scenario section of a run report: a readable table of what the run was asked to do
(target, client settings, faults with their times), the faults as fired, and the raw TOML
behind a ``<details>`` element.  All scenario text is run-folder text: escaped here.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import pandas as pd

# Labels for the scenario keys a reader meets most; any other key is shown under its own name.
TARGET_LABELS = {
    "capacity": "connection capacity",
    "handshake_rate": "token bucket (handshakes/s; 0 = off)",
    "handshake_cost_ms": "CPU per admitted handshake (ms)",
    "attempt_cost_ms": "CPU per attempt, before admission (ms)",
    "session_cost_ms": "CPU per session setup (ms)",
    "store_concurrency": "dependency store: concurrent calls",
    "store_ms": "dependency store: ms per call",
    "handshake_timeout": "server handshake timeout (s)",
    "overload": "overload answer",
    "workers": "serving processes",
    "proxy": "fault proxy in front",
    "tls": "TLS (wss://)",
    "cpus": "pinned to CPUs",
}
CLIENT_LABELS = {
    "message_rate": "messages per second per user",
    "ping_interval": "ping interval (s)",
    "pong_timeout": "pong timeout (s)",
    "connect_timeout": "connect timeout (s)",
}


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer():
        return f"{int(v)}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _kv_rows(data: dict[str, Any], labels: dict[str, str]) -> list[tuple[str, str]]:
    known = [(labels[k], _value(data[k])) for k in labels if k in data and data[k] is not None]
    other = [(str(k), _value(v)) for k, v in data.items() if k not in labels and v is not None]
    return known + other


def fault_text(f: dict[str, Any]) -> str:
    """One scheduled fault's parameters in words: 'mode all, down 3 s' (repeat/every spelled out)."""
    params = [(k, v) for k, v in f.items() if k not in ("at", "action", "repeat", "every")]
    units = {"down": " s", "duration": " s", "interval": " s", "timeout": " s", "ms": " ms"}
    parts = [f"{k} {_value(v)}{units.get(k, '')}" for k, v in params if k != "headers"]
    if "headers" in f:
        parts.append("headers (not shown)")
    if int(f.get("repeat", 1) or 1) > 1:
        parts.append(f"{f['repeat']} times, every {_value(f.get('every'))} s")
    return ", ".join(parts) or "-"


def _table(rows: list[list[str]], header: list[str] | None = None) -> str:
    th = ("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>") if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{th}{body}</table>"


def scenario_html(scen: Any, raw: str | None, disruptions: pd.DataFrame) -> str:
    """The scenario section (HTML; everything escaped). ``raw``: the scenario.toml text, if the folder has one."""
    parts: list[str] = []
    if isinstance(scen, dict) and scen:
        head = [["name", _value(scen.get("name", "?"))]]
        if scen.get("description"):
            head.append(["description", _value(scen["description"])])
        for key, label in (("users", "users"), ("duration", "duration (s)"), ("spawn_rate", "spawn rate (users/s)")):
            if scen.get(key) is not None:
                head.append([label, _value(scen[key])])
        parts.append(_table(head))
        target = scen.get("target") if isinstance(scen.get("target"), dict) else {}
        client = scen.get("client") if isinstance(scen.get("client"), dict) else {}
        if target:
            parts.append("<h3>Target</h3>" + _table([list(r) for r in _kv_rows(target, TARGET_LABELS)]))
        if client:
            parts.append("<h3>Client settings</h3>" + _table([list(r) for r in _kv_rows(client, CLIENT_LABELS)]))
        faults = [f for f in scen.get("faults") or [] if isinstance(f, dict)]
        if faults:
            parts.append(
                "<h3>Faults (as scheduled)</h3>"
                + _table(
                    [[f"{_value(f.get('at', '?'))} s", _value(f.get("action", "?")), fault_text(f)] for f in faults],
                    ["at", "action", "parameters"],
                )
            )
        else:
            parts.append("<p class='small'>No faults scheduled.</p>")
    elif scen:
        parts.append(f"<p>Scenario <b>{_esc(scen)}</b> (its content was not recorded).</p>")
    else:
        parts.append("<p class='small'>No scenario recorded in the manifest.</p>")
    if len(disruptions):
        rows = []
        for t, end, fault, src in zip(
            disruptions["t"],
            disruptions.get("end", disruptions["t"]),
            disruptions["fault"],
            disruptions["source"],
            strict=False,
        ):
            ended = f"{end:.1f} s" if isinstance(end, float) and math.isfinite(end) and end > t else "at once"
            rows.append([f"{t:.1f} s", _value(fault), ended, _value(src)])
        parts.append("<h3>Faults as fired</h3>" + _table(rows, ["at", "fault", "trigger ended", "recorded in"]))
    if raw is None and isinstance(scen, dict) and scen:
        raw, what = json.dumps(scen, indent=2, default=str), "raw scenario (JSON, from the manifest)"
    else:
        what = "raw scenario (TOML)"
    if raw:
        parts.append(f"<details><summary>{_esc(what)}</summary><pre>{_esc(raw)}</pre></details>")
    return "\n".join(parts)
