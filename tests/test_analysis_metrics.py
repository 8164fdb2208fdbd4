"""Metrics on synthetic run folders whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from tests.synth import SynthRun, herd, restart_storm, wasted_loop
from wsstorm.analysis import metrics as M
from wsstorm.analysis.load import load_run


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
    assert d["wasted_attempts"] == 500  # 1 refused + 4 accepted-then-1013, per client
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
    (tmp_path / "manifest.json").write_text(
        '{"simulated": true, "policy": "immediate", "started": 0, "target": {"handshake_rate": 50, "capacity": 1000}}'
    )
    (tmp_path / "faults.jsonl").write_text('{"v":1,"t":10.0,"fault":"restart","params":{},"ok":true}\n')
    run = load_run(tmp_path)
    assert run.simulated
    m = M.compute(run)
    assert m["run"]["herd_factor"] == pytest.approx(2.0)
    assert m["disruptions"][0]["recovery_T50_s"] == pytest.approx(5.0)
    assert m["run"]["downtime_max_s"] == pytest.approx(10.0)


def test_recovery_from_counts_is_interpolated_within_the_second_that_reaches_it():
    # 100 connected; all lost at second 10; 40 by the end of second 11, 90 by 12, 100 by 13
    s = pd.DataFrame({"connected": [100] * 10 + [0, 40, 90, 100, 100]}, index=range(15))
    r = M.recovery_from_series(s, 10, 15)
    assert r["T50"] == pytest.approx(2.2)  # 50 lies 10 of the 50 gained in second 12 past its start (time 12)
    assert r["T95"] == pytest.approx(3.5)
    assert r["T99"] == pytest.approx(3.9)
    # within the disruption's own second only that second's end is known
    assert M.recovery_from_series(pd.DataFrame({"connected": [100, 100]}, index=[0, 1]), 1, 2)["T95"] == 1.0


@settings(max_examples=examples(200), deadline=None)
@given(
    before=st.integers(1, 10_000),
    counts=st.lists(st.integers(0, 10_000), min_size=1, max_size=30),
    q=st.sampled_from(M.QS),
)
def test_interpolated_recovery_lies_in_the_second_whose_count_reaches_the_level(before, counts, q):
    s = pd.DataFrame({"connected": [before, *counts]}, index=range(len(counts) + 1))
    t = M.recovery_from_series(s, 1, len(counts) + 1, (q,))[f"T{round(q * 100)}"]
    reached = [i for i, c in enumerate(counts) if c >= q * before]
    if not reached:
        assert t == math.inf
    else:
        assert reached[0] < t <= reached[0] + 1  # whole seconds would give reached[0] + 1


# -- the cost model: goodput, wasted work, collateral latency, metastable failure --------------


def test_metastable_storm_is_flagged_with_its_trigger_end_and_goodput(tmp_path):
    from tests.synth import metastable_storm

    run = load_run(metastable_storm(n=200, t_restart=10.0, down=3.0, end=60.0).write(tmp_path / "r"))
    assert run.disruptions[["t", "end"]].values.tolist() == [[10.0, 13.0]]  # the restart's down time
    m = M.compute(run)
    ms = m["run"]["metastable"]
    assert ms["flag"] is True and ms["trigger_end_s"] == 13.0 and ms["window_s"] == 30
    assert ms["goodput_before"] == 100.0 and ms["goodput_after"] == 0.0
    d = m["disruptions"][0]
    # after the trigger every second 200 clients try; the server could have held 100 of them: all lost
    assert d["goodput_lost"] == 100.0 * (59 - 13) and d["goodput_lost_frac"] == 1.0
    assert m["run"]["wasted_work_ms"] == 5.0 * 200 * (60 - 13)
    assert m["run"]["abandoned"] == 200 * (60 - 13)
    assert m["run"]["overload_s"] == 60 - 13  # every second it finished handshakes for clients already gone
    # collateral latency: the 20 clients never cut off echo in 5 ms before, 50 ms during and after
    assert (d["rtt_before_p99_ms"], d["rtt_during_p99_ms"], d["rtt_after_p99_ms"]) == (5.0, 50.0, 50.0)
    assert d["rtt_inflation"] == 10.0
    assert run.series.loc[5, "rtt_p50_ms"] == 5.0 and run.series.loc[20, "rtt_n"] == 20


def test_a_server_that_recovers_is_not_metastable(tmp_path):
    from tests.synth import metastable_storm

    run = load_run(metastable_storm(recovers=True).write(tmp_path / "r"))
    m = M.compute(run)
    ms = m["run"]["metastable"]
    assert ms["flag"] is False and ms["connected_after_max"] == ms["connected_before"]
    assert m["run"]["goodput_lost_frac"] == 0.0 and m["run"]["wasted_work_ms"] == 0.0


def per_second(n: int, **columns: object) -> pd.DataFrame:
    """A series of n seconds (index `s`) with these columns."""
    return pd.DataFrame(columns, index=pd.RangeIndex(n, name="s"))


def test_metastable_needs_the_whole_window_and_goodput_counts():
    s = np.arange(40)
    series = per_second(
        40,
        connected=np.where(s < 10, 100, 0),
        attempts=np.where(s < 10, 10, 100),
        server_goodput=np.where(s < 10, 10.0, 0.0),
    )
    short = M.metastable(series, 10.0, 12.0)  # 28 s of window left: cannot be judged as a failure
    assert short["flag"] is False and short["window_s"] == 28
    assert M.metastable(series, 5.0, 8.0)["flag"] is False  # window [8, 38) holds seconds with goodput 10 (>= 20%)
    assert M.metastable(series.drop(columns="server_goodput"), 10.0, 12.0) is None
    assert math.isnan(M.goodput_level(series.assign(server_goodput=0.0), 10))
    lost, frac = M.goodput_lost(series, 10, 20, 10.0)
    assert lost == 100.0 and frac == 1.0


def test_goodput_the_clients_never_saw_held_is_wasted_work():
    """A 101 that crossed the client's timeout: the server booked goodput, the client saw a timeout."""
    s = np.arange(60)
    series = per_second(
        60,
        connected=np.where(s < 10, 100, 0),
        attempts=np.where(s < 10, 10, 300),
        attempts_open=np.where(s < 10, 10, 0),
        server_goodput=np.full(60, 10.0),  # the server went on sending 101s after the fault
        server_work_ms=np.full(60, 100.0),
        server_wasted_ms=np.where(s < 10, 0.0, 20.0),
    )
    assert M.wasted_work(series, 0, 10) == (0.0, 0.0)  # every 101 before the fault was held
    assert M.wasted_work(series, 12, 42) == (100.0 * 30, 1.0)  # none after: all of that work went to nobody
    assert M.wasted_work(series.drop(columns="attempts_open"), 12, 42) == (20.0 * 30, 0.2)  # the server's view
    ms = M.metastable(series, 10.0, 12.0)
    assert ms["flag"] is True and ms["goodput_after"] == 0.0 and ms["wasted_share"] == 1.0
    # the same server, its 101s held by the clients: no waste beyond its own count, and no failure
    held = series.assign(attempts_open=10, connected=np.where(s < 10, 100, np.minimum(10 * (s - 9), 100)))
    assert M.wasted_work(held, 12, 42) == (20.0 * 30, 0.2)
    assert M.metastable(held, 10.0, 12.0)["flag"] is False


def test_old_runs_without_the_cost_model_load_with_null_metrics(tmp_path):
    import json

    folder = restart_storm(n=50).write(tmp_path / "r")
    run = load_run(folder)
    assert "server_goodput" not in run.series and "rtt_p50_ms" not in run.series
    m = M.compute(run)
    r = m["run"]
    assert math.isnan(r["wasted_work_ms"]) and math.isnan(r["goodput_lost"]) and r["metastable"] is None
    from wsstorm.runfolder.jsonl import jsonable

    assert json.loads(json.dumps(jsonable(r)))["metastable"] is None


def test_a_budget_from_the_cost_model_when_the_token_bucket_is_off(tmp_path):
    from wsstorm.analysis.load import cost_budget

    assert cost_budget({"attempt_cost_ms": 3, "handshake_cost_ms": 2, "workers": 2, "cpus": "1"}) == 200.0
    assert cost_budget({"attempt_cost_ms": 1, "store_concurrency": 4, "store_ms": 20}) == 200.0
    assert cost_budget({"handshake_rate": 0}) is None
    r = herd(n=500, at=5.0, budget=0)
    r.manifest_extra = {"target": {"handshake_rate": 0, "handshake_cost_ms": 10, "workers": 1}}
    run = load_run(r.write(tmp_path / "r"))
    m = M.compute(run)
    assert run.budget == 100.0 and m["run"]["budget_source"] == "cost model (estimate)"
    assert m["run"]["herd_factor"] == pytest.approx(5.0)


def test_a_late_tick_covers_the_seconds_it_skipped_and_two_ticks_in_a_second_do_not_double_the_budget(tmp_path):
    r = restart_storm(n=50, end=20)
    r.ticks = []
    for s in range(20):
        if s in (12, 13):
            continue  # a busy server ticked late: the tick at 14 counts seconds 12-14
        r.tick(s + (0.05 if s != 14 else 0.9), connections=50, rejected_1013=30 if s == 14 else 0)
    r.tick(14.95, connections=50, rejected_1013=3)  # and a second tick in the same second
    run = load_run(r.write(tmp_path / "r"))
    s = run.series
    assert s.loc[12:14, "server_rejected"].tolist() == [10.0, 10.0, 13.0]
    assert s["handshake_rate"].max() == 100 and run.budget == 100  # not 200
    assert M.compute(run)["run"]["overload_s"] == 3


def test_goodput_no_client_saw_is_not_goodput(tmp_path):
    # a busy server that finishes sessions for clients who already timed out may count them as goodput;
    # the clients' own opens bound it, so the storm is still metastable and all of its goodput lost
    from tests.synth import metastable_storm

    r = metastable_storm(n=200, end=60.0)
    for tick in r.ticks:
        if tick["t"] - r.t0 >= 13:
            tick["goodput"] = 60  # above 20% of the pre-fault 100/s, yet no client ever opened
    run = load_run(r.write(tmp_path / "r"))
    m = M.compute(run)
    assert m["run"]["metastable"]["flag"] is True and m["run"]["metastable"]["goodput_after"] == 0.0
    assert m["disruptions"][0]["goodput_lost_frac"] == 1.0
