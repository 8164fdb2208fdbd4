"""Server-side metrics of `wsstorm serve`: per-second ticks in, running totals and Prometheus text out."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

EMPTY_REJECTED = {"1013": 0, "http_503": 0, "refused": 0, "timeout": 0}
EMPTY_CLOSES = {"1012": 0, "1013": 0, "1000": 0, "1009": 0}

# (metric, help, label, key in the totals) for the counters broken down by one label
_LABELLED_COUNTERS = (
    ("wsstorm_handshakes_rejected", "Handshakes rejected, by kind", "kind", "rejected"),
    ("wsstorm_closes_sent", "Close frames the server initiated, by code", "code", "closes_sent"),
    ("wsstorm_closes_received", "Closes the client initiated, by code", "code", "closes_received"),
    ("wsstorm_bad_input", "Bad input from clients, by kind", "kind", "bad_input"),
    ("wsstorm_faults", "Faults applied to the server, by kind", "fault", "faults"),
)


def add_counts(total: dict[str, int], delta: dict[str, int]) -> None:
    """total[k] += delta[k] for every k (in place)."""
    for key, value in delta.items():
        total[key] = total.get(key, 0) + int(value)


class MetricsBook:
    """Keeps the last tick of each serving process and the totals since start."""

    def __init__(self, procs: int) -> None:
        self.last: list[dict | None] = [None] * procs
        self.totals: dict[str, Any] = {"accepted": 0, "rejected": dict(EMPTY_REJECTED), "closes_sent": dict(EMPTY_CLOSES),
                                       "closes_received": {}, "abnormal": 0, "bad_input": {}, "messages": 0,
                                       "faults": {}}

    def tick(self, tick: dict) -> None:
        """Fold one worker tick (deltas) into the totals."""
        self.last[tick["proc"]] = tick
        t = self.totals
        t["accepted"] += tick.get("accepted", 0)
        t["abnormal"] += tick.get("abnormal", 0)
        t["messages"] += tick.get("messages", 0)
        for key in ("rejected", "closes_sent", "closes_received", "bad_input"):
            add_counts(t[key], tick.get(key, {}))

    def fault(self, record: dict) -> None:
        add_counts(self.totals["faults"], {record["fault"]: 1})

    def down(self, proc: int) -> None:
        if self.last[proc] is not None:
            self.last[proc] = {**self.last[proc], "state": "down", "connections": 0, "queue_depth": 0}

    def down_tick(self, proc: int, capacity: int, rate: float) -> dict:
        """The tick line of a process that is not running (crashed, waiting to be brought back)."""
        return {"v": 1, "type": "tick", "t": round(time.time(), 3), "proc": proc, "state": "down",
                "connections": 0, "capacity": capacity, "handshake_rate": rate, "accepted": 0,
                "rejected": dict(EMPTY_REJECTED), "closes_sent": dict(EMPTY_CLOSES), "queue_depth": 0,
                "cpu_pct": 0.0, "rss_bytes": 0}

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
                    for k, v in sorted(t[key].items()):
                        c.add_metric([k], v)
                    yield c
                c = CounterMetricFamily("wsstorm_abnormal_closes", "Connections that ended without a Close frame")
                c.add_metric([], t["abnormal"])
                yield c
                g = GaugeMetricFamily("wsstorm_connections", "Open connections, by serving process", labels=["proc"])
                q = GaugeMetricFamily("wsstorm_queue_depth", "Handshakes in progress, by serving process", labels=["proc"])
                r = GaugeMetricFamily("wsstorm_rss_bytes", "Resident memory, by serving process", labels=["proc"])
                cpu = GaugeMetricFamily("wsstorm_cpu_percent", "CPU percent, by serving process", labels=["proc"])
                up = GaugeMetricFamily("wsstorm_serving", "1 when the process serves, 0 restarting/down", labels=["proc"])
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
