"""Calibrating the library's share of a handshake on a probe: the model run on the probe's own scenario."""

from __future__ import annotations

import numpy as np
import pytest

from wsstorm.run import scenario as scenarios
from wsstorm.sim.calibrate import fill_area, model_fill, solve
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
