"""The event fields analysis reads, by event type: the one list both readers of an events shard (the columnar
one and the tolerant one) build the events frame from.  Imports nothing, so parsing can start first."""

from __future__ import annotations

# The fields analysis reads, by event type (f: a number, c: a category, o: a text); every event's
# t, conn and v are the first EVENT_FLOATS, its user and event the first EVENT_CATS.
BY_EVENT = {
    "attempt": {"scheduled_t": "f"},
    "fail": {"kind": "c", "status": "f"},
    "close": {"code": "f", "by": "c", "reason": "o", "uptime_s": "f"},
    "wait": {"delay": "f", "after_code": "c"},
    "echo": {"rtt_ms": "f"},
}
EVENT_FLOATS = ["t", "conn", "v", "scheduled_t", "status", "code", "uptime_s", "delay", "rtt_ms"]
EVENT_CATS = ["user", "event", "kind", "by", "after_code"]

__all__ = ["BY_EVENT", "EVENT_CATS", "EVENT_FLOATS"]
