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


def test_fill_cpu_sums_the_ticks_that_overlap_the_fill():
    ticks = [
        _tick(100.0, 5.0, 0),  # ended before the first attempt at 100.2: left out
        _tick(101.0, 70.0, 10),
        _tick(102.0, 60.0, 40, abandoned=5),
        _tick(103.0, 50.0, 30),  # the fill ended at 102.4, inside this tick's second
        _tick(104.0, 2.0, 0),  # after the fill
        {"type": "store", "t": 101.5, "cpu_ms": 400.0},  # the store's own line: not the serving process
        _tick(102.5, 99.0, 50, partial=True),  # a stopping process's remainder
        {"type": "tick", "t": 102.0, "cpu_pct": "x", "goodput": 3},  # broken: skipped
    ]
    assert fill_cpu(ticks, 100.2, 102.4) == (pytest.approx(700.0 + 600.0 + 500.0), 85)


def test_the_library_share_is_the_cpu_per_handshake_beyond_the_cost_model(tmp_path):
    """300 handshakes for 2,400 ms of the serving process's CPU: 8 ms each, 6.2 ms of them the cost
    model's (TLS 1.2, attempt 3, session 2; the store runs in its own process), 1.8 ms the library's."""
    f = tmp_path / "probe.toml"
    f.write_text(probe_scenario(300, 0.0, costs=METASTABLE_COSTS))
    sc = scenarios.load(str(f))
    assert worker_ms(sc) == pytest.approx(6.2)
    ticks = [_tick(1.0, 80.0, 100), _tick(2.0, 80.0, 100), _tick(3.0, 80.0, 100)]
    assert cpu_library_ms(sc, ticks, 0.0, 2.9) == pytest.approx(1.8)
    # a server cheaper than the cost model: no library time, not a negative one
    assert cpu_library_ms(sc, [_tick(1.0, 100.0, 300)], 0.0, 0.9) == 0.0
    # too few handshakes finished (or no CPU recorded) to measure: None, the caller falls back
    assert cpu_library_ms(sc, [_tick(1.0, 80.0, 100)], 0.0, 0.9) is None
    assert cpu_library_ms(sc, [_tick(1.0, 0.0, 300)], 0.0, 0.9) is None
