"""Live counters of a running storm, from the event records, server ticks and fault lines.

Pure (no Locust, no I/O): the web-UI tab (:mod:`wsstorm.load.webui`) feeds it what the run
records and shows its :meth:`LiveStats.snapshot`. Outcomes follow the analysis series frame's
definitions (:mod:`wsstorm.runfolder.schemas`), so the live figures and the report agree.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wsstorm.runfolder.schemas import DISRUPTIONS, QUICK_1013_S, close_code_label, fail_outcome

WINDOW_S = 300  # seconds of per-second history kept
SCHED_WINDOW_S = 10.0  # scheduling error p99 over this many recent seconds
LAG_S = 2  # the newest complete second: events reach the master up to ~1 s after they happen


@dataclass
class Disruption:
    """The last disruption seen: when, what, and how many clients were connected just before."""

    t: float
    fault: str
    before: int
    t50: float | None = None  # seconds after t until 50% of `before` were connected again
    t95: float | None = None


@dataclass
class LiveStats:
    """Running counts of one run; feed events, ticks and faults in any order of arrival."""

    window_s: int = WINDOW_S
    gated: bool = False  # a ready condition: a connection counts from its `ready`, as analysis counts it
    open_users: set[str] = field(default_factory=set)
    pending: dict[str, int] = field(default_factory=dict)  # user -> second of its attempt in flight
    opened: dict[tuple[str, int], int] = field(default_factory=dict)  # (user, conn) -> attempt second
    attempts: dict[int, Counter[str]] = field(default_factory=dict)  # second -> outcome counts
    started: Counter[int] = field(default_factory=Counter)  # second -> attempts started (outcome or not yet)
    closes: dict[int, Counter[int]] = field(default_factory=dict)  # second -> close code counts
    connected: dict[int, int] = field(default_factory=dict)  # second -> connected at its end
    sched: deque[tuple[float, float]] = field(default_factory=deque)  # (t, scheduling error s)
    totals: Counter[str] = field(default_factory=Counter)  # every event by name, for reconciling
    close_totals: Counter[int] = field(default_factory=Counter)
    server: dict[int, dict[str, Any]] = field(default_factory=dict)  # proc -> its newest tick
    disruption: Disruption | None = None
    t0: float | None = None

    # -- feeding ------------------------------------------------------------------------
    def add_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Count event records (the dicts of the event log)."""
        for e in events:
            try:
                self._event(e)
            except (KeyError, TypeError, ValueError):
                self.totals["unreadable"] += 1  # a foreign line is counted, never fatal

    def _event(self, e: dict[str, Any]) -> None:
        name, t, user = e["event"], float(e["t"]), str(e["user"])
        sec = int(t)
        if self.t0 is None or t < self.t0:
            self.t0 = t
        self.totals[name] += 1
        if name == "attempt":
            self.pending[user] = sec
            self.started[sec] += 1
            sched = e.get("scheduled_t")
            if isinstance(sched, (int, float)) and math.isfinite(sched):
                self.sched.append((t, t - float(sched)))
        elif name == ("ready" if self.gated else "open"):
            asec = self.pending.pop(user, sec)
            self._count(asec, "open")
            self.opened[(user, int(e.get("conn", 0)))] = asec
            self.open_users.add(user)
        elif name == "fail":
            asec = self.pending.pop(user, sec)
            self._count(asec, fail_outcome(e.get("kind"), e.get("status")))
        elif name == "close":
            code = int(e.get("code", 1006))
            self.closes.setdefault(sec, Counter())[code] += 1
            self.close_totals[code] += 1
            asec_open = self.opened.pop((user, int(e.get("conn", 0))), None)
            uptime = float(e.get("uptime_s") or 0.0)
            if asec_open is not None and code == 1013 and e.get("by") == "server" and uptime <= QUICK_1013_S:
                bucket = self.attempts.setdefault(asec_open, Counter())
                if bucket["open"] > 0:  # the same reclassification analysis makes
                    bucket["open"] -= 1
                    bucket["1013"] += 1
            self.open_users.discard(user)
        elif name == "stop":
            self.open_users.discard(user)
            self.pending.pop(user, None)
        self.connected[sec] = len(self.open_users)

    def _count(self, sec: int, outcome: str) -> None:
        self.attempts.setdefault(sec, Counter())[outcome] += 1

    def add_ticks(self, records: Iterable[dict[str, Any]]) -> None:
        """Take server.jsonl records: the newest tick of each process, and the server's own faults."""
        for r in records:
            if r.get("type") == "tick" and not r.get("partial"):
                self.server[int(r.get("proc", 0))] = r
            elif r.get("type") == "fault" and r.get("fault") in DISRUPTIONS:
                self._disrupted(float(r.get("t", 0.0)), str(r["fault"]))

    def add_faults(self, records: Iterable[dict[str, Any]]) -> None:
        """Take faults.jsonl lines: the disruptions the scheduler fired."""
        for r in records:
            if r.get("fault") in DISRUPTIONS and r.get("ok", True):
                self._disrupted(float(r.get("t", 0.0)), str(r["fault"]))

    def _disrupted(self, t: float, fault: str) -> None:
        if self.disruption is not None and abs(self.disruption.t - t) < 1.0:
            return  # the scheduler's line and the server's own line name the same disruption
        self.disruption = Disruption(t, fault, self._connected_before(int(t)))

    def _connected_before(self, sec: int) -> int:
        earlier = [s for s in self.connected if s < sec]
        return self.connected[max(earlier)] if earlier else len(self.open_users)

    # -- reading ------------------------------------------------------------------------
    def prune(self, now: float) -> None:
        """Forget per-second history older than the window."""
        cut = int(now) - self.window_s
        for d in (self.attempts, self.closes, self.started):
            for s in [s for s in d if s < cut]:
                del d[s]
        keep = [s for s in self.connected if s < cut]
        if keep:  # keep the newest old value: it is "connected before" for a later disruption
            last = max(keep)
            for s in keep:
                if s != last:
                    del self.connected[s]
        while self.sched and self.sched[0][0] < now - 2 * SCHED_WINDOW_S:
            self.sched.popleft()

    def snapshot(self, now: float) -> dict[str, Any]:
        """The live view at wall time ``now``: current values, recent per-second series, totals."""
        self.prune(now)
        sec = int(now) - LAG_S
        capacity = sum(int(t.get("capacity") or 0) for t in self.server.values()) or None
        budget = max((float(t.get("handshake_rate") or 0) for t in self.server.values()), default=0.0) or None
        server_conns = sum(int(t.get("connections") or 0) for t in self.server.values()) if self.server else None
        errs = sorted(err for t, err in self.sched if t >= now - SCHED_WINDOW_S)
        d = self.disruption
        since = int(d.t) if d else (min(self.started) if self.started else sec)
        peak = max((n for s, n in self.started.items() if since <= s <= sec), default=0)
        connected_now = len(self.open_users)
        recovery: dict[str, Any] | None = None
        if d is not None:
            self._recovery_marks(d)
            share = connected_now / d.before if d.before else None
            recovery = {
                "fault": d.fault,
                "t": d.t,
                "before": d.before,
                "connected": connected_now,
                "share": share,
                "t50_s": d.t50,
                "t95_s": d.t95,
                "since_s": max(0.0, now - d.t),
            }
        return {
            "t": now,
            "second": sec,
            "connected": connected_now,
            "server_connections": server_conns,
            "capacity": capacity,
            "handshake_budget": budget,
            "attempts": dict(self.attempts.get(sec, Counter())),
            "closes": {str(k): v for k, v in self.closes.get(sec, Counter()).items()},
            "herd_factor": (peak / budget) if budget else None,
            "peak_attempts_per_s": peak,
            "recovery": recovery,
            "sched_error_p99_ms": _p99(errs) * 1000 if errs else None,
            "series": self._series(sec),
            "totals": dict(self.totals),
            "close_totals": {str(k): v for k, v in self.close_totals.items()},
        }

    def _recovery_marks(self, d: Disruption) -> None:
        if not d.before:
            return
        for s in sorted(s for s in self.connected if s >= int(d.t)):
            share = self.connected[s] / d.before
            if d.t50 is None and share >= 0.5:
                d.t50 = max(0.0, s + 1 - d.t)
            if d.t95 is None and share >= 0.95:
                d.t95 = max(0.0, s + 1 - d.t)

    def _series(self, sec: int, n: int = 60) -> list[dict[str, Any]]:
        out, last = [], self._connected_before(sec - n + 1)
        for s in range(sec - n + 1, sec + 1):
            last = self.connected.get(s, last)
            out.append({"s": s, "connected": last, "attempts": self.started.get(s, 0)})
        return out

    def rows(self, snap: dict[str, Any]) -> list[dict[str, str]]:
        """The snapshot as (metric, value) rows for the web UI's table; codes named, nothing from the server's text."""

        def num(v: Any, fmt: str = "{:,.0f}") -> str:
            return "n/a" if v is None else fmt.format(v)

        cap = snap["capacity"]
        rows = [
            {"metric": "connected clients", "value": num(snap["connected"]) + (f" of capacity {cap:,}" if cap else "")}
        ]
        if snap["server_connections"] is not None:
            rows.append({"metric": "server-side connections", "value": num(snap["server_connections"])})
        att = snap["attempts"]
        labels = {
            "open": "opened",
            "1013": "1013 after open",
            "refused": "refused",
            "http_503": "HTTP 503",
            "http_429": "HTTP 429",
            "http_other": "other HTTP",
            "timeout": "timeout",
            "other": "other failure",
        }
        rows.append(
            {
                "metric": "attempts/s (last complete second)",
                "value": ", ".join(f"{labels.get(k, k)} {v}" for k, v in sorted(att.items()) if v) or "0",
            }
        )
        rows.append(
            {
                "metric": "closes/s by code",
                "value": ", ".join(f"{close_code_label(k)}: {v}" for k, v in sorted(snap["closes"].items())) or "0",
            }
        )
        hf = snap["herd_factor"]
        rows.append(
            {
                "metric": "herd factor so far",
                "value": "n/a (no handshake budget known)"
                if hf is None
                else f"{hf:.2f}x (peak {snap['peak_attempts_per_s']:,}/s vs budget {snap['handshake_budget']:,.0f}/s)",
            }
        )
        rec = snap["recovery"]
        if rec is None:
            rows.append({"metric": "recovery", "value": "no disruption yet"})
        else:
            share = "n/a" if rec["share"] is None else f"{100 * rec['share']:.0f}%"
            marks = ", ".join(f"{k} {rec[k]:.0f} s" for k in ("t50_s", "t95_s") if rec[k] is not None)
            rows.append(
                {
                    "metric": f"recovery after {rec['fault']} ({rec['since_s']:.0f} s ago)",
                    "value": f"{share} of {rec['before']:,} back" + (f"; {marks.replace('_s', '')}" if marks else ""),
                }
            )
        p99 = snap["sched_error_p99_ms"]
        rows.append(
            {
                "metric": "scheduling error p99, last 10 s",
                "value": "n/a"
                if p99 is None
                else f"{p99:,.1f} ms" + (" (harness is late: figures describe it)" if p99 > 50 else ""),
            }
        )
        return rows


def _p99(sorted_values: list[float]) -> float:
    """The 99th percentile (nearest rank) of sorted values."""
    k = max(0, math.ceil(0.99 * len(sorted_values)) - 1)
    return sorted_values[k]
