"""Server-side metrics of `wsstorm serve`: per-second ticks in, running totals and Prometheus text out."""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

EMPTY_REJECTED = {"1013": 0, "http_503": 0, "refused": 0, "timeout": 0}
EMPTY_CLOSES = {"1012": 0, "1013": 0, "1000": 0, "1009": 0}
EMPTY_BAD = {"bad_handshake": 0, "aborted_handshake": 0, "bad_tls": 0}
# Why a handshake failed --auth-token (each one is also counted in rejected.http_401). A group only
# ticks that count one carry: runs without a token keep their tick shape.
AUTH_REASONS = ("missing", "wrong")

# The counts a serving process also keeps as running totals in shared memory: what it counted
# after its last tick then survives a SIGKILL (a crash), and the supervisor writes that remainder.
# Keys outside this list (rare close codes) are counted per tick only.
LEDGER = (
    "accepted",
    "abnormal",
    "messages",
    "attempts",
    "goodput",
    "abandoned",
    "store_calls",
    "wasted_ms",
    "work_ms",
    "resumed",
    "session_starts",
    "session_refused",
    *(f"rejected.{k}" for k in EMPTY_REJECTED),
    *(f"closes_sent.{c}" for c in ("1000", "1001", "1002", "1007", "1008", "1009", "1011", "1012", "1013")),
    *(f"closes_received.{c}" for c in ("1000", "1001")),
    *(f"bad_input.{k}" for k in EMPTY_BAD),
    "rejected.http_401",
    *(f"auth_rejected.{k}" for k in AUTH_REASONS),
)
# CPU-ms fields: the ledger (integers) keeps them in microseconds, ticks carry milliseconds.
MS_FIELDS = ("wasted_ms", "work_ms")
_MS_SCALE = 1000
_SLOT = {name: i for i, name in enumerate(LEDGER)}
_GROUPS = ("rejected", "closes_sent", "closes_received", "bad_input")
_OPTIONAL_GROUPS = ("auth_rejected",)  # in a tick (and the totals) only once something was counted
_SCALARS = (
    "attempts",
    "goodput",
    "abandoned",
    "store_calls",
    "wasted_ms",
    "work_ms",
    "resumed",
    "session_starts",
    "session_refused",
)
# (totals key, metric, help) for the cost model's counters; CPU ms are exported as seconds
_COST_COUNTERS = (
    ("attempts", "wsstorm_attempts", "Connect attempts accepted by TCP"),
    ("goodput", "wsstorm_goodput", "Admissions that became held connections"),
    ("abandoned", "wsstorm_abandoned", "Handshakes finished after the client had left"),
    ("store_calls", "wsstorm_store_calls", "Lookups in the dependency store"),
    ("wasted_ms", "wsstorm_wasted_cpu_seconds", "CPU spent on attempts that could not succeed"),
    ("work_ms", "wsstorm_attempt_cpu_seconds", "CPU spent on all attempts (the cost model)"),
    ("resumed", "wsstorm_sessions_resumed", "Admissions that resumed a session closed within the resume window"),
    ("session_starts", "wsstorm_session_starts", "Admissions that started a new session"),
    ("session_refused", "wsstorm_session_starts_refused", "Session starts refused by the session start rate"),
)

# (metric, help, label, key in the totals) for the counters broken down by one label
_LABELLED_COUNTERS = (
    ("wsstorm_handshakes_rejected", "Handshakes rejected, by kind", "kind", "rejected"),
    ("wsstorm_closes_sent", "Close frames the server initiated, by code", "code", "closes_sent"),
    ("wsstorm_closes_received", "Closes the client initiated, by code", "code", "closes_received"),
    ("wsstorm_bad_input", "Bad input from clients, by kind", "kind", "bad_input"),
    ("wsstorm_auth_rejected", "Handshakes refused by --auth-token (401), by reason", "reason", "auth_rejected"),
    ("wsstorm_faults", "Faults applied to the server, by kind", "fault", "faults"),
)


def add_counts(total: dict[str, int], delta: dict[str, int]) -> None:
    """total[k] += delta[k] for every k (in place)."""
    for key, value in delta.items():
        total[key] = total.get(key, 0) + int(value)


def empty_counts() -> dict[str, Any]:
    """The count fields of a tick, all zero."""
    return {
        "accepted": 0,
        "abnormal": 0,
        "messages": 0,
        "attempts": 0,
        "goodput": 0,
        "abandoned": 0,
        "store_calls": 0,
        "wasted_ms": 0,
        "work_ms": 0,
        "resumed": 0,
        "session_starts": 0,
        "session_refused": 0,
        "rejected": dict(EMPTY_REJECTED),
        "closes_sent": dict(EMPTY_CLOSES),
        "closes_received": {},
        "bad_input": dict(EMPTY_BAD),
    }


class Tally:
    """One serving process's counts for its next tick, mirrored as running totals in `ledger`."""

    def __init__(self, ledger: Any, proc: int) -> None:
        self.ledger, self.base = ledger, proc * len(LEDGER)
        self.counts = empty_counts()
        self.lock = threading.Lock()  # the serving process counts on its loop and ticks from a thread

    def add(self, group: str, key: str | None = None, n: int = 1) -> None:
        """Count n: a scalar field (`accepted`) or one key of a group (`closes_sent`, `1013`)."""
        name = group if key is None else f"{group}.{key}"
        slot = _SLOT.get(name)
        with self.lock:
            if key is None:
                self.counts[group] += n
            else:
                d = self.counts.setdefault(group, {})  # an optional group appears with its first count
                d[key] = d.get(key, 0) + n
            if slot is not None:
                self.ledger[self.base + slot] += n

    def add_ms(self, name: str, ms: float) -> None:
        """Add CPU milliseconds to `wasted_ms` or `work_ms` (kept as whole microseconds, so ticks and
        the crash remainder add up exactly)."""
        us = max(0, round(ms * _MS_SCALE))
        with self.lock:
            self.counts[name] += us
            self.ledger[self.base + _SLOT[name]] += us

    def take(self) -> dict[str, Any]:
        """This tick's counts (CPU fields in ms); the next tick starts from zero."""
        with self.lock:
            counts, self.counts = self.counts, empty_counts()
        for name in MS_FIELDS:
            counts[name] = counts[name] / _MS_SCALE
        return counts


def ledger_counts(tick: dict) -> dict[str, int]:
    """The ledger keys' values in a tick's count fields."""
    out = {}
    for name in LEDGER:
        group, _, key = name.partition(".")
        value = tick.get(group, 0)
        if key:
            value = value.get(key, 0) if isinstance(value, dict) else 0
        if name in MS_FIELDS:
            value = round(float(value) * _MS_SCALE)
        if value:
            out[name] = int(value)
    return out


def remainder(totals: list[int], reported: dict[str, int]) -> dict[str, Any] | None:
    """A process's counts after its last tick: ledger `totals` minus what its ticks `reported`; None if none."""
    counts, any_left = empty_counts(), False
    for name, total in zip(LEDGER, totals, strict=False):
        left = int(total) - reported.get(name, 0)
        if left <= 0:
            continue
        any_left = True
        group, _, key = name.partition(".")
        if key:
            d = counts.setdefault(group, {})
            d[key] = d.get(key, 0) + left
        else:
            counts[group] += left
    for name in MS_FIELDS:
        counts[name] = counts[name] / _MS_SCALE
    return counts if any_left else None


class MetricsBook:
    """Keeps the last tick of each serving process and the totals since start."""

    def __init__(self, procs: int) -> None:
        self.last: list[dict | None] = [None] * procs
        self.totals: dict[str, Any] = {
            "accepted": 0,
            "rejected": dict(EMPTY_REJECTED),
            "closes_sent": dict(EMPTY_CLOSES),
            "closes_received": {},
            "abnormal": 0,
            "bad_input": {},
            "messages": 0,
            "faults": {},
            **{k: 0 for k in _SCALARS},
        }

    def tick(self, tick: dict) -> None:
        """Fold one worker tick (deltas) into the totals."""
        self.last[tick["proc"]] = tick
        t = self.totals
        t["accepted"] += tick.get("accepted", 0)
        t["abnormal"] += tick.get("abnormal", 0)
        t["messages"] += tick.get("messages", 0)
        for key in _SCALARS:
            t[key] = t[key] + tick.get(key, 0)
        for key in _GROUPS:
            add_counts(t[key], tick.get(key, {}))
        for key in _OPTIONAL_GROUPS:
            if tick.get(key):
                add_counts(t.setdefault(key, {}), tick[key])

    def fault(self, record: dict) -> None:
        add_counts(self.totals["faults"], {record["fault"]: 1})

    def down(self, proc: int) -> None:
        last = self.last[proc]
        if last is not None:
            self.last[proc] = {**last, "state": "down", "connections": 0, "queue_depth": 0}

    def down_tick(self, proc: int, capacity: int, rate: float) -> dict:
        """The tick line of a process that is not running (crashed, waiting to be brought back)."""
        return {
            "v": 1,
            "type": "tick",
            "t": round(time.time(), 3),
            "proc": proc,
            "state": "down",
            "connections": 0,
            "capacity": capacity,
            "handshake_rate": rate,
            "accepted": 0,
            "rejected": dict(EMPTY_REJECTED),
            "closes_sent": dict(EMPTY_CLOSES),
            "queue_depth": 0,
            "cpu_pct": 0.0,
            "rss_bytes": 0,
        }

    def totals_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.totals.items()}

    def prometheus(self, states: list[str], capacity: int, rate: float) -> str:
        """Prometheus text exposition of the current totals and gauges."""
        book = self

        class Collector:
            def collect(self):
                t = book.totals
                c = CounterMetricFamily("wsstorm_handshakes_accepted", "Handshakes admitted", labels=[])
                c.add_metric([], t["accepted"])
                yield c
                for name, help_text, label, key in _LABELLED_COUNTERS:
                    c = CounterMetricFamily(name, help_text, labels=[label])
                    for k, v in sorted(t.get(key, {}).items()):
                        c.add_metric([k], v)
                    yield c
                c = CounterMetricFamily("wsstorm_abnormal_closes", "Connections that ended without a Close frame")
                c.add_metric([], t["abnormal"])
                yield c
                for key, name, help_text in _COST_COUNTERS:
                    c = CounterMetricFamily(name, help_text)
                    c.add_metric([], t[key] / 1000.0 if key in MS_FIELDS else t[key])
                    yield c
                g = GaugeMetricFamily("wsstorm_connections", "Open connections, by serving process", labels=["proc"])
                q = GaugeMetricFamily(
                    "wsstorm_queue_depth", "Handshakes in progress, by serving process", labels=["proc"]
                )
                r = GaugeMetricFamily("wsstorm_rss_bytes", "Resident memory, by serving process", labels=["proc"])
                cpu = GaugeMetricFamily("wsstorm_cpu_percent", "CPU percent, by serving process", labels=["proc"])
                up = GaugeMetricFamily(
                    "wsstorm_serving", "1 when the process serves, 0 restarting/down", labels=["proc"]
                )
                for i, last in enumerate(book.last):
                    label = [str(i)]
                    up.add_metric(label, 1.0 if states[i] == "serving" else 0.0)
                    if last is None:
                        continue
                    g.add_metric(label, last.get("connections", 0))
                    q.add_metric(label, last.get("queue_depth", 0))
                    r.add_metric(label, last.get("rss_bytes", 0))
                    cpu.add_metric(label, last.get("cpu_pct", 0.0))
                yield from (g, q, r, cpu, up)
                g = GaugeMetricFamily("wsstorm_capacity", "Configured max concurrent connections")
                g.add_metric([], capacity)
                yield g
                g = GaugeMetricFamily("wsstorm_handshake_rate", "Configured handshakes per second")
                g.add_metric([], rate)
                yield g

        registry = CollectorRegistry()
        registry.register(Collector())
        return generate_latest(registry).decode()
