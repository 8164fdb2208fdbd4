"""The model against a measured run: the server's service times are measured first with a short
probe (``wsstorm simulate --probe``), the model predicts a restart of 1,000 real clients, then the
harness runs it (embedded target + Locust); connected(t), the peak attempt rate and recovery T95,
computed by the same analysis code for both, must agree within 15%.

The scenario is one the harness on this shared 2-core machine can run faithfully: the handshake
budget (150/s), not the machine's CPU, shapes the recovery, and a capped backoff keeps the
recovery's tail (and so T95) from hanging on a few clients in long waits.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.15
USERS, DURATION = 1000, 30
POLICY = "full-jitter:base=2,cap=8"

SCENARIO = f"""
name = "restart-1k"
description = "validation of the fleet model: 1,000 clients, budget 150/s, everyone closed with 1012, 3 s down"
duration = {DURATION}
users = {USERS}
spawn_rate = 125

[target]
capacity = 1500
handshake_rate = 150
handshake_cost_ms = 2
overload = "http"

[client]
message_rate = 0.1
ping_interval = 5
pong_timeout = 5

[[faults]]
at = 10
action = "restart"
mode = "all"
down = 3
"""


def figures(folder: Path) -> dict:
    """connected(t), the peak attempt rate after the disruption and T95, the same way for both runs (analysis)."""
    from wsstorm.analysis import metrics as M
    from wsstorm.analysis.load import load_run

    run = load_run(folder)
    s = run.series
    d = run.disruptions
    assert len(d) and (d["source"] == "faults.jsonl").all(), d  # the fault's own time, on both sides
    s_d = math.floor(float(d["t"].iloc[0]))
    end = int(s.index.max()) + 1
    return {
        "connected": s["connected"].reindex(range(end), fill_value=0).to_numpy(dtype=float),
        "s_d": s_d,
        "peak": M.peak_attempt_rate(s, s_d, end),
        "T95": M.recovery_from_series(s, s_d, end, (0.95,))["T95"],
    }


@pytest.mark.e2e
@pytest.mark.timeout(170)
def test_simulation_predicts_a_measured_restart(tmp_path):
    scen = tmp_path / "restart-1k.toml"
    scen.write_text(SCENARIO)
    real_out, sim_out = tmp_path / "real", tmp_path / "sim"
    # 1. measure this machine's service times (a separate short run), and predict
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsstorm",
            "simulate",
            "--scenario",
            str(scen),
            "--policy",
            POLICY,
            "--out",
            str(sim_out),
            "--seed",
            "1",
            "--probe",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    sim_block = json.loads((sim_out / "manifest.json").read_text())["simulation"]
    assert sim_block["service_source"].startswith("probe") and sim_block["probe"]["opens"] >= 500
    # 2. the measured run
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsstorm",
            "run",
            "--scenario",
            str(scen),
            "--policy",
            POLICY,
            "--out",
            str(real_out),
            "--no-report",
            "--plain",
            "--seed",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    real_dir = next(d for d in real_out.iterdir() if d.is_dir())
    # 3. the same figures for both
    real, sim = figures(real_dir), figures(sim_out)
    assert real["s_d"] == sim["s_d"] == 10
    a = real["s_d"]
    gap = np.abs(real["connected"][a:DURATION] - sim["connected"][a:DURATION]).mean() / USERS
    report = (
        f"service times (probe): handshake {sim_block['handshake_service_ms']:.2f} ms, "
        f"close {sim_block['close_service_ms']:.2f} ms; connected gap {gap:.1%} of the fleet; "
        f"peak attempts/s real {real['peak']:.0f} sim {sim['peak']:.0f}; "
        f"T95 real {real['T95']:.0f} s sim {sim['T95']:.0f} s"
    )
    print(report)
    assert gap <= TOLERANCE, report
    assert sim["peak"] == pytest.approx(real["peak"], rel=TOLERANCE), report
    assert sim["T95"] == pytest.approx(real["T95"], rel=TOLERANCE), report
