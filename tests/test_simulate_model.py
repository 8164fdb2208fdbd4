"""The fleet model on small cases whose answers are known by construction, determinism, and the
fleet-scale ratios (the contention experiment is in test_simulate_contention.py)."""

from __future__ import annotations

import numpy as np
import pytest

from wsstorm.run import scenario as scenarios
from wsstorm.sim.fleetmodel import FleetModel
from wsstorm.sim.simulate import build_config, fleet_policy, parse_policy_text, run_model, summarize


def scenario(
    faults: str = "",
    users: int = 200,
    capacity: int = 1000,
    rate: float = 500,
    duration: float = 20,
    overload: str = "close",
    spawn_rate: float = 1000,
    client: str = "",
) -> scenarios.Scenario:
    return scenarios.parse(f"""
name = "t"
duration = {duration}
users = {users}
spawn_rate = {spawn_rate}
[target]
capacity = {capacity}
handshake_rate = {rate}
handshake_cost_ms = 0
overload = "{overload}"
[client]
ping_interval = 2
pong_timeout = 3
{client}
{faults}
""")


def run(sc: scenarios.Scenario, policy: str, clients: int | None = None, seed: int = 1, service_ms: float = 0.0):
    # no server time per handshake or close: the server is limited only by capacity and budget
    cfg, _ = build_config(
        sc,
        clients or sc.users,
        seed=seed,
        handshake_service_ms=service_ms,
        reject_service_ms=service_ms,
        close_service_ms=0.0,
    )
    model = FleetModel(cfg, fleet_policy(parse_policy_text(policy), cfg.clients, seed))
    return cfg, model.run()


RESTART = """
[[faults]]
at = 5
action = "restart"
mode = "all"
down = {down}
"""


def test_restart_with_fixed_delay_longer_than_down_everyone_attempts_at_t_plus_delay():
    sc = scenario(RESTART.format(down=1.5), rate=5000)  # a bucket of 500: room for everyone at once
    _cfg, res = run(sc, "fixed:delay=2")
    s = res.series
    assert s["connected"][4] == 200  # all in before the fault
    assert s["closes_1012"][5] == 200  # the restart closes every one of them
    assert s["attempts"][5:7].sum() == 0  # nobody tries while they wait
    assert s["attempts"][7] == 200 and s["attempts_open"][7] == 200  # all at t+2 s, all admitted
    assert s["connected"][7] == 200


def test_immediate_policy_after_restart_with_down_d_all_reconnect_at_t_plus_d():
    sc = scenario(RESTART.format(down=2))
    _cfg, res = run(sc, "immediate")
    k0, k1 = int(5 / res.dt), int(7 / res.dt)
    assert res.connected_tick[k0 - 1] == 200
    assert res.connected_tick[k0:k1].max() == 0  # refused for exactly `down` seconds ...
    s = res.series
    assert s["attempts_refused"][5:7].sum() > 0 and s["attempts_open"][5:7].sum() == 0
    # ... then all of them are in within the first tick the budget allows (burst 50, then 500/s)
    assert res.connected_tick[k1 + 1] > 0
    assert s["attempts_open"][7] == 200


def test_capacity_is_never_exceeded_and_the_rest_get_1013():
    sc = scenario(users=300, capacity=120, rate=1000, duration=10)
    _cfg, res = run(sc, "full-jitter:base=0.2,cap=2")
    s = res.series
    assert s["server_connections"].max() <= 120
    assert res.connected_tick.max() == 120
    assert s["attempts_1013"].sum() > 0 and s["closes_1013"].sum() == s["attempts_1013"].sum()


def test_handshake_budget_caps_admissions_per_second():
    sc = scenario(users=2000, rate=100, duration=8, spawn_rate=2000)
    _cfg, res = run(sc, "full-jitter:base=0.5,cap=4")
    opens = res.series["attempts_open"]
    # a token bucket of rate 100/s and size 10 admits at most 110 in any second
    assert opens.max() <= 110
    assert opens[1:7].min() >= 90  # and under a herd it is used to the full


def test_overload_http_mode_gives_503_not_opens():
    sc = scenario(users=300, capacity=100, rate=1000, duration=6, overload="http")
    _cfg, res = run(sc, "fixed:delay=1")
    s = res.series
    assert s["attempts_http_503"].sum() > 0 and s["attempts_1013"].sum() == 0
    assert res.connected_tick.max() == 100


def test_crash_counts_1006_for_everyone_connected():
    sc = scenario(
        """
[[faults]]
at = 4
action = "crash"
down = 1
""",
        rate=5000,
    )
    _cfg, res = run(sc, "fixed:delay=0.5")
    s = res.series
    assert s["connected"][3] == 200
    assert s["closes_1006"][4] == 200 and s["closes_1012"].sum() == 0
    assert s["attempts_refused"][4] == 200  # the retry at 4.5 s finds it down
    assert s["connected"][6] == 200  # back after down + a retry


def test_partition_is_noticed_after_ping_interval_plus_pong_timeout():
    sc = scenario(
        """
[[faults]]
at = 4
action = "partition"
duration = 10
""",
        duration=20,
        rate=5000,
    )
    _cfg, res = run(sc, "fixed:delay=30")
    s = res.series
    assert s["connected"][4] == 200 - s["closes_1006"][4]
    closes = s["closes_1006"]
    # ping every 2 s, pong timeout 3 s: each client notices between 3 and 5 s after the cut
    assert closes[:7].sum() == 0 and closes[7:10].sum() == 200
    assert res.connected_tick[int(6.99 / res.dt)] == 200


def test_partition_shorter_than_detection_loses_nobody():
    sc = scenario(
        """
[[faults]]
at = 4
action = "partition"
duration = 2
""",
        rate=5000,
    )
    _cfg, res = run(sc, "fixed:delay=1")
    assert res.series["closes_1006"].sum() == 0
    assert res.connected_tick[int(4 / res.dt) :].min() == 200


def test_none_policy_gives_up_and_downtimes_are_censored():
    sc = scenario(RESTART.format(down=1), rate=5000)
    _cfg, res = run(sc, "none")
    assert res.totals["gaveup"] == 200
    assert res.connected_tick[-1] == 0
    assert res.recovered.sum() == 0 and res.downtimes.size == 200
    assert np.allclose(res.downtimes, 15.0)


def test_downtimes_are_from_close_to_the_open_that_holds():
    sc = scenario(RESTART.format(down=1.5), rate=5000)
    _cfg, res = run(sc, "fixed:delay=2")
    assert res.recovered.all() and res.downtimes.size == 200
    assert np.allclose(res.downtimes, 2.0)


def test_drain_closes_in_batches():
    sc = scenario(
        """
[[faults]]
at = 4
action = "restart"
mode = "drain"
batch = 50
interval = 1
""",
        duration=12,
        rate=5000,
    )
    _cfg, res = run(sc, "fixed:delay=30")
    closes = res.series["closes_1012"]
    assert closes[4:8].tolist() == [50, 50, 50, 50]


def test_same_seed_same_series_other_seed_other_series():
    sc = scenario(RESTART.format(down=1), users=500, rate=100)
    _, a = run(sc, "full-jitter:base=0.5,cap=10", seed=7)
    _, b = run(sc, "full-jitter:base=0.5,cap=10", seed=7)
    _, c = run(sc, "full-jitter:base=0.5,cap=10", seed=8)
    for col in a.series:
        assert np.array_equal(a.series[col], b.series[col]), col
    assert np.array_equal(a.downtimes, b.downtimes)
    assert not np.array_equal(a.series["attempts"], c.series["attempts"])


def test_scaling_keeps_the_ratios_so_herd_factor_is_size_free():
    sc = scenarios.load("restart")
    small, _ = build_config(sc, 3000)
    big, k = build_config(sc, 300000)
    assert k == 1000
    assert big.capacity == 1000 * sc.target.capacity and big.handshake_rate == 1000 * sc.target.handshake_rate
    s1 = summarize(run_model(small, parse_policy_text("full-jitter")), small)
    s2 = summarize(run_model(big, parse_policy_text("full-jitter")), big)
    assert s2["herd_factor"] == pytest.approx(s1["herd_factor"], rel=0.05)
    assert s2["recovery_T95_s"] == pytest.approx(s1["recovery_T95_s"], rel=0.1)


def test_handshake_service_time_caps_the_open_rate_when_the_budget_does_not():
    # 10 ms per handshake on one serving process: 100 opens/s, however many arrive and whatever the budget
    sc = scenario(users=600, rate=100000, spawn_rate=600, capacity=10000)
    _, res = run(sc, "fixed:delay=30", service_ms=10.0)
    opens = res.series["server_accepted"]  # by the second the handshake finished
    assert opens[0] == pytest.approx(100, abs=2) and opens[1:5].tolist() == [100, 100, 100, 100]
    assert res.series["connected"][5] == 600


def test_close_service_time_paces_a_restart():
    # 1 ms per close: 400 clients are told 1012 over 0.4 s, not in one instant
    sc = scenario(RESTART.format(down=1), users=400, rate=100000)
    cfg, _ = build_config(sc, 400, handshake_service_ms=0.0, reject_service_ms=0.0, close_service_ms=1.0)
    res = FleetModel(cfg, fleet_policy(parse_policy_text("fixed:delay=30"), 400, 1)).run()
    k = round(5 / res.dt)
    drop = np.flatnonzero(res.connected_tick[k:] == 0)[0]
    assert res.connected_tick[k] < 400 and 0.35 <= drop * res.dt <= 0.45


def test_service_times_from_a_probe_event_log(tmp_path):
    """The probe's reading of an event log: opens before the restart, 1012 closes after it, trimmed mean spacing."""
    import json

    from wsstorm.sim.servicetime import service_times

    t0 = 1_700_000_000.0
    lines = [{"event": "open", "t": t0 + 0.004 * i} for i in range(500)]  # 4 ms apart
    lines += [{"event": "open", "t": t0 + 5.6 + 0.0001 * i} for i in range(100)]  # reconnects: left out
    lines += [{"event": "close", "code": 1012, "t": t0 + 5.05 + 0.0005 * i} for i in range(500)]
    lines.append({"event": "close", "code": 1000, "t": t0 + 6})
    (tmp_path / "events-local.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    fault = {"fault": "restart", "t": t0 + 5.01, "scheduled_t": t0 + 5}
    (tmp_path / "faults.jsonl").write_text(json.dumps(fault) + "\n")
    m = service_times(tmp_path)
    assert m["handshake_service_ms"] == pytest.approx(4.0) and m["close_service_ms"] == pytest.approx(0.5)
    assert m["opens"] == 500 and m["closes_1012"] == 500 and m["first_close_ms"] == pytest.approx(50, abs=0.1)


def test_a_fleet_in_lock_step_gets_the_same_delays_through_the_whole_state_path():
    """Asked for every client at once, the fleet hands the policy its whole state (a slice): the delays
    are the policy's own, in the clients' order (exactly so for a deterministic policy)."""
    from wsstorm.policies import parse_code

    spec = parse_policy_text("exponential:base=0.5,cap=30")
    fast, plain = fleet_policy(spec, 2000, 1), fleet_policy(spec, 2000, 1)
    idx = np.random.default_rng(5).permutation(2000)
    for _ in range(4):
        a = fast.next_delays(idx, "refused", np.zeros(2000), None)
        b = np.asarray(plain.vec.next_delays(idx, parse_code("refused"), np.zeros(2000), retry_after=None))
        assert np.array_equal(a, b)
    fast.opened(idx)
    plain.vec.opened(idx)
    assert np.array_equal(
        fast.next_delays(idx, "1012", np.full(2000, 9.0), None),
        np.asarray(plain.vec.next_delays(idx, 1012, np.full(2000, 9.0), retry_after=None)),
    )


def test_presets_said_to_draw_nothing_give_the_same_delays_whatever_the_uniforms():
    """The simulator skips the draws of a rule whose code never names its uniforms; hold that reading honest:
    such a rule's delays do not move when the uniforms do, over every outcome and retry count."""
    from wsstorm.policies import CATALOG, decide, initial_state, parse_code, parse_policy
    from wsstorm.sim.simulate import _reads_draws

    free = [name for name, p in CATALOG.items() if not _reads_draws(p.delay)]
    assert {"immediate", "fixed", "exponential"} <= set(free)  # the ones the fast path is for
    assert "full-jitter" not in free and "decorrelated-jitter" not in free
    rng = np.random.default_rng(3)
    codes = np.array([parse_code(c) for c in ("1006", "1012", "1013", "refused", "http_503", "timeout")] * 50)
    n = codes.size
    for name in free:
        spec = parse_policy(name)
        a = b = initial_state(spec, np.arange(n, dtype=np.int64))
        for _ in range(12):  # retries in a row: the count grows, the delays must not depend on u
            up, hint = rng.uniform(0, 30, n), np.where(rng.random(n) < 0.3, rng.uniform(0, 5, n), np.nan)
            da, a = decide(spec, a, codes, up, hint, rng.random((n, 2)))
            db, b = decide(spec, b, codes, up, hint, rng.random((n, 2)))
            np.testing.assert_array_equal(da, db, err_msg=name)
