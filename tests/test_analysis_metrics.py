"""Metrics on synthetic run folders whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wsstorm.analysis import metrics as M
from wsstorm.analysis.load import load_run
from tests.synth import SynthRun, herd, restart_storm, wasted_loop


def test_herd_factor_1000_opens_in_one_second_vs_budget_100(tmp_path):
    run = load_run(herd(n=1000, at=5.0, budget=100).write(tmp_path / "r"))
    m = M.compute(run)
    assert m["run"]["peak_attempts_per_s"] == 1000
    assert m["run"]["herd_factor"] == pytest.approx(10.0)
    assert m["disruptions"][0]["herd_factor"] == pytest.approx(10.0)


def test_restart_then_uniform_reopen_over_10s(tmp_path):
    run = load_run(restart_storm(n=1000, t_restart=10.0, spread=10.0).write(tmp_path / "r"))
    m = M.compute(run)
    d = m["disruptions"][0]
    assert d["connected_before"] == 1000 and d["recovered"] == 1000
    assert d["recovery_T50_s"] == pytest.approx(5.0, abs=0.02)
    assert d["recovery_T95_s"] == pytest.approx(9.5, abs=0.02)
    assert d["recovery_T99_s"] == pytest.approx(9.9, abs=0.02)
    # downtime of client i is 10*(i+1)/1000: uniform on (0, 10]
    assert d["downtime_p50_s"] == pytest.approx(5.0, abs=0.02)
    assert d["downtime_max_s"] == pytest.approx(10.0, abs=1e-6)
    assert d["wasted_attempts"] == 0
    assert m["run"]["herd_factor"] == pytest.approx(1.0)  # 100 reopen per second vs budget 100
    assert m["run"]["sched_err_max_ms"] == pytest.approx(2.0, abs=0.01)


def test_wasted_attempts_and_downtime_of_a_1013_loop(tmp_path):
    run = load_run(wasted_loop(n=100, loops=4).write(tmp_path / "r"))
    m = M.compute(run)
    d = m["disruptions"][0]
    assert d["wasted_attempts"] == 500            # 1 refused + 4 accepted-then-1013, per client
    assert d["wasted_per_recovered"] == pytest.approx(5.0)
    assert m["run"]["wasted_per_recovered"] == pytest.approx(5.0)
    assert d["downtime_p99_s"] == pytest.approx(3.0, abs=1e-6)  # one episode per client, not one per 1013
    assert d["downtime_episodes"] == 100
    assert d["recovery_T95_s"] == pytest.approx(3.0, abs=1e-6)
    assert m["run"]["attempts_1013"] == 400 and m["run"]["attempts_refused"] == 100
    assert m["run"]["overload_s"] == 2  # no server log: seconds with client-side 1013s


def test_unrecovered_clients_make_quantiles_not_reached(tmp_path):
    r = SynthRun()
    for i in range(10):
        r.connect(f"local/{i}", 0.1)
    r.fault(5.0, "crash")
    for i in range(10):
        r.close(f"local/{i}", 5.0, code=1006, by="none", how="eof")
    for i in range(9):  # one client never comes back
        r.connect(f"local/{i}", 6.0)
    run = load_run(r.write(tmp_path / "r", duration_s=30))
    d = M.compute(run)["disruptions"][0]
    assert d["recovery_T50_s"] == pytest.approx(1.0)
    assert d["recovery_T99_s"] == math.inf
    assert d["not_recovered"] == 1
    assert d["downtime_max_s"] == pytest.approx(25.0)  # to the end of the run (a lower bound)


def test_server_overload_seconds_from_ticks(tmp_path):
    r = restart_storm(n=50, end=20)
    r.ticks = []
    for s in range(20):
        r.tick(s, connections=50, rejected_1013=5 if s in (11, 12, 13) else 0)
    r.tick(14, connections=0, refused=7, state="restarting")  # a down server refusing is not overload
    run = load_run(r.write(tmp_path / "r"))
    assert M.compute(run)["run"]["overload_s"] == 3


def test_disruptions_fall_back_to_server_fault_lines(tmp_path):
    r = restart_storm(n=20)
    r.faults = []
    r.server_fault(10.0, "restart", mode="all", down_s=0)
    run = load_run(r.write(tmp_path / "r"))
    assert run.disruptions["source"].tolist() == ["server.jsonl"]
    r.server_faults = []
    run = load_run(r.write(tmp_path / "r2", server_log=False))
    m = M.compute(run)
    assert m["disruptions"] == [] and m["run"]["downtime_episodes"] == 20


def test_quantile_reached_and_percentiles_are_pure():
    assert M.quantile_reached(np.arange(1, 101, dtype=float), 0.95) == 95.0
    assert math.isnan(M.quantile_reached(np.array([]), 0.5))
    p = M.percentiles(np.array([1.0, 2.0, 3.0]))
    assert p["p50"] == 2.0 and p["max"] == 3.0


def test_simulated_run_goes_through_the_same_metrics(tmp_path):
    import pandas as pd
    s = np.arange(30)
    connected = np.where(s < 10, 1000, np.minimum(1000, (s - 9) * 100))
    attempts = np.where((s >= 10) & (s < 20), 100, 0)
    df = pd.DataFrame({"s": s, "connected": connected, "attempts": attempts, "attempts_open": attempts})
    df.to_csv(tmp_path / "series.csv", index=False)
    pd.DataFrame({"downtime_s": np.linspace(0.1, 10, 100)}).to_csv(tmp_path / "downtimes.csv", index=False)
    (tmp_path / "manifest.json").write_text('{"simulated": true, "policy": "immediate", "started": 0, '
                                            '"target": {"handshake_rate": 50, "capacity": 1000}}')
    (tmp_path / "faults.jsonl").write_text('{"v":1,"t":10.0,"fault":"restart","params":{},"ok":true}\n')
    run = load_run(tmp_path)
    assert run.simulated
    m = M.compute(run)
    assert m["run"]["herd_factor"] == pytest.approx(2.0)
    assert m["disruptions"][0]["recovery_T50_s"] == pytest.approx(5.0)
    assert m["run"]["downtime_max_s"] == pytest.approx(10.0)
