"""The fleet model's server mechanisms (issue 12): work paid by every attempt, the dependency store,
the optional token bucket, the server's handshake timeout, clients that give up and the work the
server finishes for them anyway; and the metastable failure they make possible."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from wsstorm.errors import UsageError
from wsstorm.run import scenario as scenarios
from wsstorm.sim.config import TLS_HANDSHAKE_MS, ServerCosts, build_config, server_costs
from wsstorm.sim.fleetmodel import FleetModel
from wsstorm.sim.simulate import fleet_policy, parse_policy_text


def scenario(
    users: int = 500,
    capacity: int = 100_000,
    rate: float = 0.0,
    duration: float = 20,
    overload: str = "http",
    spawn_rate: float = 100_000,
    faults: str = "",
) -> scenarios.Scenario:
    sc = scenarios.parse(f"""
name = "t"
duration = {duration}
users = {users}
spawn_rate = {spawn_rate}
[target]
capacity = {capacity}
handshake_rate = {rate or 1}
handshake_cost_ms = 0
overload = "{overload}"
[client]
ping_interval = 5
pong_timeout = 5
{faults}
""")
    # handshake_rate 0 (the bucket off) may not parse yet in every scenario version: set it on the dataclass
    return dataclasses.replace(sc, target=dataclasses.replace(sc.target, handshake_rate=rate))


def run(sc, policy: str, costs: ServerCosts, service_ms: float = 0.0, seed: int = 1):
    cfg, _ = build_config(
        sc,
        sc.users,
        seed=seed,
        handshake_service_ms=service_ms,
        reject_service_ms=service_ms,
        close_service_ms=0.0,
        costs=costs,
    )
    return cfg, FleetModel(cfg, fleet_policy(parse_policy_text(policy), cfg.clients, seed)).run()


def test_every_attempt_pays_the_pre_admission_work_and_a_rejection_wastes_it():
    # 300 arrive at once; capacity 100; 5 ms of attempt work each (one core: 200/s): 100 open, 200 get 503
    sc = scenario(users=300, capacity=100)
    _, res = run(sc, "fixed:delay=100", ServerCosts(attempt_cost_ms=5.0))
    s = res.series
    assert s["attempts_open"].sum() == 100 and s["attempts_http_503"].sum() == 200
    assert s["server_goodput"].sum() == 100 and s["server_rejected"].sum() == 200
    assert s["server_wasted_ms"].sum() == pytest.approx(200 * 5.0)
    # one core does 1000 ms of work per second: all 300 are through in 1.5 s
    assert s["attempts"][:2].sum() == 300 and s["server_accepted"][0] + s["server_rejected"][0] == 200


def test_tls_adds_its_handshake_cpu_to_every_attempt_and_runs_first():
    """1,000 connections at once, 2 ms of attempt work each: all in after 2 s; with TLS after 3.2 s, and, as in
    an event loop, every TLS handshake that is ready runs before the upgrade requests that follow them."""
    sc = scenario(users=1000)
    done = {}
    for tls in (False, True):
        _, res = run(sc, "fixed:delay=100", ServerCosts(tls=tls, attempt_cost_ms=2.0))
        done[tls] = res

    def all_in(res):
        return int(np.flatnonzero(res.connected_tick == 1000)[0]) * res.dt

    assert all_in(done[False]) == pytest.approx(2.0, abs=0.02)
    assert all_in(done[True]) == pytest.approx(2.0 + 1000 * TLS_HANDSHAKE_MS / 1000, abs=0.02)
    k = round(TLS_HANDSHAKE_MS / done[True].dt)  # 1.2 s: every TLS handshake done, no upgrade yet
    assert done[True].connected_tick[k - 1] < 0.01 * 1000 and done[False].connected_tick[k - 1] > 0.5 * 1000


def test_the_store_bounds_admissions_by_its_concurrency():
    # 4 slots of 20 ms: 200 lookups per second, however cheap the server's own work
    sc = scenario(users=1000)
    _, res = run(
        sc, "fixed:delay=100", ServerCosts(store_concurrency=4, store_ms=20.0, connect_timeout=30, handshake_timeout=30)
    )
    opens = res.series["server_goodput"]
    assert opens[1:4].tolist() == pytest.approx([200, 200, 200], abs=2)
    assert res.series["connected"][5] == 1000 and res.series["server_wasted_ms"].sum() == 0


def test_store_waits_grow_with_the_herd():
    """Twice the clients at once: the last one waits twice as long for the store."""
    costs = ServerCosts(store_concurrency=2, store_ms=10.0, connect_timeout=60, handshake_timeout=60)
    done = []
    for users in (400, 800):
        _, res = run(scenario(users=users), "fixed:delay=100", costs)
        done.append(int(np.flatnonzero(res.connected_tick == users)[0]) * res.dt)
    assert done[0] == pytest.approx(2.0, abs=0.05) and done[1] == pytest.approx(4.0, abs=0.05)


def test_clients_that_give_up_are_served_anyway_abandoned_equals_client_timeouts():
    # 10 ms per attempt on one core: 100/s; 500 at once, connect timeout 2 s, the server never sheds
    sc = scenario(users=500)
    _, res = run(sc, "fixed:delay=100", ServerCosts(attempt_cost_ms=10.0, connect_timeout=2.0, handshake_timeout=0))
    s = res.series
    timeouts = int(s["attempts_timeout"].sum())
    assert timeouts == int(s["server_abandoned"].sum())  # exact: every client that left was served later
    assert timeouts == pytest.approx(300, abs=2) and s["server_goodput"].sum() == 500 - timeouts
    assert s["server_wasted_ms"].sum() == pytest.approx(10.0 * timeouts)
    assert s["server_accepted"].sum() == 500  # the server admitted them all, for nothing for 300 of them


def test_the_server_handshake_timeout_sheds_attempts_it_has_not_started():
    sc = scenario(users=500)
    _, res = run(sc, "fixed:delay=100", ServerCosts(attempt_cost_ms=10.0, connect_timeout=5.0, handshake_timeout=1.0))
    s = res.series
    assert s["server_goodput"].sum() == pytest.approx(100, abs=2)
    assert s["attempts_other"].sum() == 500 - s["server_goodput"].sum()  # cut by the server, not timed out
    assert s["attempts_timeout"].sum() == 0 and s["server_abandoned"].sum() == 0
    assert s["server_wasted_ms"].sum() == 0  # shed before any work was done on them


def test_a_handshake_rate_of_zero_turns_the_bucket_off():
    sc_off, sc_on = scenario(users=1000), scenario(users=1000, rate=100)
    _, off = run(sc_off, "fixed:delay=100", ServerCosts(connect_timeout=30))
    _, on = run(sc_on, "fixed:delay=100", ServerCosts(connect_timeout=30))
    assert off.series["attempts_open"][0] == 1000 and off.series["handshake_rate"].max() == 0
    assert on.series["attempts_open"][0] <= 110


def test_server_costs_read_the_scenario_keys_tolerantly():
    old = SimpleNamespace(target=SimpleNamespace(capacity=10), client=SimpleNamespace())
    assert server_costs(old) == ServerCosts()
    new = SimpleNamespace(
        target={
            "tls": True,
            "attempt_cost_ms": 3,
            "session_cost_ms": 1,
            "store_concurrency": 8,
            "store_ms": 5,
            "handshake_timeout": 4,
        },
        client={"connect_timeout": 2},
    )
    c = server_costs(new)
    assert (
        c.tls,
        c.attempt_cost_ms,
        c.session_cost_ms,
        c.store_concurrency,
        c.store_ms,
        c.handshake_timeout,
        c.connect_timeout,
    ) == (True, 3.0, 1.0, 8, 5.0, 4.0, 2.0)
    with pytest.raises(UsageError, match="attempt_cost_ms"):
        server_costs(SimpleNamespace(target={"attempt_cost_ms": -1}, client={}))
    with pytest.raises(UsageError, match="connect_timeout"):
        server_costs(SimpleNamespace(target={}, client={"connect_timeout": 0}))


def test_the_store_scales_with_the_fleet():
    sc = scenario(users=100)
    cfg, k = build_config(sc, 100_000, costs=ServerCosts(store_concurrency=4, store_ms=10))
    assert k == 1000 and cfg.store_concurrency == 4000 and cfg.cpu_ms_per_s == 1000 * 1000


METASTABLE = """
[[faults]]
at = 15
action = "restart"
mode = "all"
down = 2
"""


@pytest.mark.parametrize("policy, collapses", [("immediate", True), ("full-jitter:cap=30", False)])
def test_work_that_outlives_client_timeouts_collapses_goodput_for_immediate_only(policy, collapses):
    """The shipped metastable scenario's server (TLS 1.2 ms, 3 ms of attempt work, a store of 2 x 4 ms, 2 ms of
    session work on one core) and clients that give up after 2 s: after the restart, the herd's work takes
    longer than that, so the server ends up working for clients that already left while the ones waiting
    wait behind it. Immediate retries keep it there for good; a capped full jitter lets it drain."""
    sc = scenario(users=400, duration=60, spawn_rate=40, overload="close", faults=METASTABLE)
    costs = ServerCosts(
        tls=True,
        attempt_cost_ms=3.0,
        session_cost_ms=2.0,
        store_concurrency=2,
        store_ms=4.0,
        connect_timeout=2.0,
        handshake_timeout=30,
    )
    _, res = run(sc, policy, costs, service_ms=0.5)
    s = res.series
    level = s["server_goodput"][:15].max()
    after = s["server_goodput"][17 + 5 :].mean()  # from 5 s after the trigger ended
    assert s["connected"][14] == 400 and level >= 40
    if collapses:
        assert after < 0.2 * level and s["connected"][-1] < 0.5 * 400
        assert s["server_abandoned"][17:].sum() > 1000 and s["server_wasted_ms"][25:].mean() > 500
    else:
        assert s["connected"][-1] == 400 and s["server_wasted_ms"][-20:].max() == 0
    # the target's counts, second by second: every attempt that reached it, and all its work, waste included
    # (the client counts an attempt once it ends: those still in flight at the end are the server's alone)
    reached = s["attempts"].sum() - s["attempts_refused"].sum()
    assert reached <= s["server_attempts"].sum() <= reached + 400
    assert (s["server_work_ms"] >= s["server_wasted_ms"] - 1e-9).all()
    admitted_ms = 1.2 + 3.0 + 4.0 + 2.0 + 0.5  # TLS, attempt work, store, session work, library (this test's)
    useful = s["server_work_ms"].sum() - s["server_wasted_ms"].sum()
    assert useful == pytest.approx(s["server_goodput"].sum() * admitted_ms, rel=0.05)


def test_a_store_pinned_to_the_servers_core_takes_its_cpu_from_the_server():
    """5 ms of attempt work and one store slot of 5 ms: on its own core the store works beside the server
    (200 handshakes/s); pinned with it to one core ([target] cpus), each handshake costs that core 10 ms."""
    sc = scenario(users=1000)
    costs = ServerCosts(
        attempt_cost_ms=5.0, store_concurrency=1, store_ms=5.0, connect_timeout=60, handshake_timeout=60
    )
    done = {}
    for cpus in (None, "0"):
        s2 = dataclasses.replace(sc, target=dataclasses.replace(sc.target, cpus=cpus))
        cfg, res = run(s2, "fixed:delay=100", costs)
        assert (cfg.store_cpu_share > 0) == (cpus is not None)
        done[cpus] = int(np.flatnonzero(res.connected_tick == 1000)[0]) * res.dt
    assert done[None] == pytest.approx(5.0, rel=0.05) and done["0"] == pytest.approx(10.0, rel=0.05)
