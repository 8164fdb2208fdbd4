"""LiveStats: the live view's counts follow the event log's definitions (pure, no Locust)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from wsstorm.load.livestats import LiveStats

T0 = 1_700_000_000.0


def ev(t, user, event, conn=1, **kw):
    return {"v": 1, "t": T0 + t, "run": "r", "worker": "local", "user": user, "conn": conn, "event": event, **kw}


def test_outcomes_connected_closes_and_quick_1013():
    s = LiveStats()
    s.add_events(
        [
            ev(0.1, "u1", "attempt", scheduled_t=T0 + 0.1),
            ev(0.2, "u1", "open"),
            ev(0.1, "u2", "attempt", scheduled_t=T0 + 0.05),
            ev(0.3, "u2", "open"),
            ev(0.6, "u2", "close", code=1013, by="server", uptime_s=0.3),  # accepted, then 1013 at once
            ev(0.2, "u3", "attempt", scheduled_t=T0 + 0.2),
            ev(0.4, "u3", "fail", kind="http_status", status=503),
            ev(0.2, "u4", "attempt", scheduled_t=T0 + 0.2),
            ev(0.5, "u4", "fail", kind="refused"),
        ]
    )
    snap = s.snapshot(T0 + 2.5)  # second 0 is the newest complete one
    assert snap["connected"] == 1
    assert snap["attempts"] == {"open": 1, "1013": 1, "http_503": 1, "refused": 1}
    assert snap["closes"] == {"1013": 1}
    assert snap["totals"]["attempt"] == 4 and snap["close_totals"] == {"1013": 1}
    assert abs(snap["sched_error_p99_ms"] - 50.0) < 1e-3  # u2 was 50 ms late (epoch floats: ~0.1 us)
    assert snap["herd_factor"] is None  # no server ticks: no budget known


def test_herd_factor_and_recovery_after_a_restart():
    s = LiveStats()
    s.add_events([ev(0.5, f"u{i}", "attempt", scheduled_t=T0 + 0.5) for i in range(10)])
    s.add_events([ev(0.6, f"u{i}", "open") for i in range(10)])
    s.add_ticks([{"type": "tick", "t": T0 + 1, "proc": 0, "capacity": 100, "handshake_rate": 5, "connections": 10}])
    s.add_faults([{"t": T0 + 3.0, "fault": "restart", "ok": True}])
    s.add_ticks([{"type": "fault", "t": T0 + 3.01, "proc": 0, "fault": "restart"}])  # same disruption
    s.add_events([ev(3.1, f"u{i}", "close", code=1012, by="server", uptime_s=2.5) for i in range(10)])
    s.add_events([ev(4.2, f"u{i}", "attempt", conn=2, scheduled_t=T0 + 4.2) for i in range(10)])
    s.add_events([ev(4.5, f"u{i}", "open", conn=2) for i in range(6)])
    snap = s.snapshot(T0 + 6.5)
    rec = snap["recovery"]
    assert rec["before"] == 10 and rec["connected"] == 6 and abs(rec["share"] - 0.6) < 1e-9
    assert rec["t50_s"] == 2.0 and rec["t95_s"] is None  # second 4 ends 2 s after the restart at 3.0
    assert snap["peak_attempts_per_s"] == 10 and snap["herd_factor"] == 2.0  # 10/s against a budget of 5/s
    assert snap["capacity"] == 100 and snap["server_connections"] == 10
    rows = {r["metric"]: r["value"] for r in s.rows(snap)}
    assert rows["connected clients"] == "6 of capacity 100"
    assert any("1012 Service Restart: 10" in v for v in rows.values()) is False  # second 4 has no closes
    assert rows["herd factor so far"].startswith("2.00x")


def test_foreign_lines_are_counted_not_fatal():
    s = LiveStats()
    s.add_events([{"event": "open"}, {"t": "x", "user": "u", "event": "open"}, ev(0, "u", "open")])
    assert s.totals["unreadable"] == 2 and s.snapshot(T0 + 3)["connected"] == 1


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["open", "close", "stop"]), st.floats(0, 30)), max_size=80)
)
def test_connected_is_the_open_users(steps):
    """Whatever the order, connected equals the users whose last open was not followed by a close/stop."""
    s = LiveStats()
    state: dict[str, bool] = {}
    for u, name, t in steps:
        s.add_events([ev(t, f"u{u}", name, code=1000, by="client")])
        state[f"u{u}"] = name == "open"
    assert s.snapshot(T0 + 40)["connected"] == sum(state.values())


def test_with_a_ready_condition_only_ready_clients_are_connected():
    s = LiveStats(gated=True)
    s.add_events(
        [
            ev(0.1, "u1", "attempt"),
            ev(0.2, "u1", "open"),
            ev(0.4, "u1", "ready", ready_ms=200.0),
            ev(0.1, "u2", "attempt"),
            ev(0.2, "u2", "open"),
            ev(0.9, "u2", "fail", kind="ready_timeout"),
            ev(0.95, "u2", "close", code=1000, by="client"),
        ]
    )
    snap = s.snapshot(T0 + 2.5)
    assert snap["connected"] == 1 and snap["attempts"] == {"open": 1, "timeout": 1}
