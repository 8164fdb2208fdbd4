"""Calibrating the library's share of a handshake on a probe: the model run on the probe's own scenario."""

from __future__ import annotations

import numpy as np
import pytest

from wsstorm.run import scenario as scenarios
from wsstorm.sim.calibrate import cpu_library_ms, fill_area, fill_cpu, model_fill, solve, worker_ms
from wsstorm.sim.servicetime import probe_scenario
from wsstorm.sim.simulate import parse_policy_text

METASTABLE_COSTS = {
    "tls": True,
    "attempt_cost_ms": 3.0,
    "session_cost_ms": 2.0,
    "store_concurrency": 2,
    "store_ms": 4.0,
    "cpus": "1",
}


def test_fill_area_counts_client_seconds_not_connected_before_the_restart():
    # two of three clients in at 1 s and 2 s, the third not before the restart at 5 s
    assert fill_area(np.array([2.0, 1.0]), 3, 5.0) == pytest.approx(1 + 2 + 5)
    assert fill_area(np.array([1.0, 6.0, 0.5]), 3, 5.0) == pytest.approx(1 + 0.5 + 5)  # a late open is not in


@pytest.mark.parametrize("library", [0.6, 1.3, 3.0, 6.0])
def test_a_probe_the_model_made_gives_back_its_library_time(tmp_path, library):
    """What the model fills with a known library time, calibration recovers (the fill is monotone in it)."""
    f = tmp_path / "probe.toml"
    f.write_text(probe_scenario(300, 0.0, costs=METASTABLE_COSTS))
    sc = scenarios.load(str(f))
    policy = parse_policy_text("code-aware")
    target = model_fill(sc, library, 0.3, policy)
    ms = solve(sc, target, 0.3, policy)
    assert model_fill(sc, ms, 0.3, policy) == pytest.approx(target, rel=0.01)
    assert ms == pytest.approx(library, abs=0.1)
    assert model_fill(sc, 0.0, 0.3, policy) < target < model_fill(sc, 2 * library + 1, 0.3, policy)


def test_a_server_slower_than_the_cost_model_alone_calibrates_to_no_library_time(tmp_path):
    f = tmp_path / "probe.toml"
    f.write_text(probe_scenario(300, 0.0, costs=METASTABLE_COSTS))
    sc = scenarios.load(str(f))
    assert solve(sc, 0.0, 0.3, parse_policy_text("code-aware")) == 0.0


def _tick(t: float, cpu_pct: float, goodput: int, abandoned: int = 0, **kw) -> dict:
    return {"type": "tick", "t": t, "cpu_pct": cpu_pct, "goodput": goodput, "abandoned": abandoned, **kw}


def test_fill_cpu_sums_the_lines_that_overlap_the_fill():
    lines = [
        _tick(100.0, 5.0, 0),  # ended before the first attempt at 100.2: left out
        _tick(101.0, 70.0, 10),
        _tick(102.0, 60.0, 40, abandoned=5),
        _tick(103.0, 50.0, 30),  # the fill ended at 102.4, inside this tick's second
        _tick(104.0, 2.0, 0),  # after the fill
        {"type": "store", "t": 101.5, "cpu_ms": 400.0},  # the store's own CPU
        {"type": "store", "t": 99.5, "cpu_ms": 300.0},  # before the fill
        _tick(102.5, 99.0, 50, partial=True),  # a stopping process's remainder
        {"type": "tick", "t": 102.0, "cpu_pct": "x", "goodput": 3},  # broken: skipped
    ]
    f = fill_cpu(lines, 100.2, 102.4)
    assert (f.worker_ms, f.store_ms, f.done) == (pytest.approx(700.0 + 600.0 + 500.0), 400.0, 85)


def _probe(tmp_path, **costs):
    f = tmp_path / "probe.toml"
    f.write_text(probe_scenario(300, 0.0, costs={**METASTABLE_COSTS, **costs}))
    return scenarios.load(str(f))


def test_the_library_share_is_the_cpu_per_handshake_beyond_the_cost_model(tmp_path):
    """300 handshakes for 2,400 ms of the serving process's CPU: 8 ms each, 6.2 ms of them the cost
    model's (TLS 1.2, attempt 3, session 2; the store runs in its own process), 1.8 ms the library's.
    Unpinned (no `cpus`), the store's CPU says nothing about the server's core."""
    sc = _probe(tmp_path, cpus="")
    assert worker_ms(sc) == pytest.approx(6.2)
    lines = [
        _tick(1.0, 80.0, 100),
        _tick(2.0, 80.0, 100),
        _tick(3.0, 80.0, 100),
        {"type": "store", "t": 2.0, "cpu_ms": 1200.0},
    ]
    got = cpu_library_ms(sc, lines, 0.0, 3.0)
    assert got is not None and got["cpu"] == pytest.approx(1.8) and got["core_share"] == 1.0
    assert got["library_ms"] == pytest.approx(1.8)
    # a server cheaper than the cost model: no library time, not a negative one
    assert cpu_library_ms(sc, [_tick(1.0, 100.0, 300)], 0.0, 0.9)["library_ms"] == 0.0
    # too few handshakes finished (or no CPU recorded) to measure: None, the caller falls back
    assert cpu_library_ms(sc, [_tick(1.0, 80.0, 100)], 0.0, 0.9) is None
    assert cpu_library_ms(sc, [_tick(1.0, 0.0, 300)], 0.0, 0.9) is None


def test_a_pinned_store_and_server_pay_for_the_part_of_their_core_they_did_not_get(tmp_path):
    """Pinned to one core: 2,400 ms of the server's and 1,200 ms of the store's CPU over a saturated fill
    of 4 s is 90% of the core; a handshake took 12 ms of CPU but 12 / 0.9 ms of the core."""
    sc = _probe(tmp_path)
    lines = [_tick(float(t), 60.0, 75) for t in (1, 2, 3, 4)] + [{"type": "store", "t": 2.5, "cpu_ms": 1200.0}]
    got = cpu_library_ms(sc, lines, 0.0, 4.0)
    assert got["core_share"] == pytest.approx(0.9)
    assert got["cpu"] == pytest.approx(1.8)
    assert got["library_ms"] == pytest.approx(1.8 + 12.0 / 0.9 - 12.0)
    # the core never idle (or the ticks overlapping more than the fill): a share of 1, not more
    assert cpu_library_ms(sc, lines, 0.0, 3.0)["core_share"] == 1.0
