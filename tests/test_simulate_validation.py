"""The model against a measured run: 2,000 real clients (embedded target + Locust) through a restart,
and the same scenario simulated; connected(t), peak attempt rate and recovery T95 must agree within 15%."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.15

SCENARIO = """
name = "restart-2k"
description = "validation of the fleet model: 2,000 clients, everyone closed with 1012, 3 s down"
duration = 30
users = 2000
spawn_rate = 500

[target]
capacity = 3000
handshake_rate = 400
handshake_cost_ms = 2
overload = "close"

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
    """connected(t), the peak attempt rate after the restart and T95, the same way for both runs (analysis)."""
    from analysis import metrics as M
    from analysis.load import load_run

    run = load_run(folder)
    s = run.series
    s_d = int(math.floor(float(run.disruptions["t"].iloc[0])))
    end = int(s.index.max()) + 1
    return {"connected": s["connected"].reindex(range(end), fill_value=0).to_numpy(dtype=float), "s_d": s_d,
            "peak": M.peak_attempt_rate(s, s_d, end),
            "T95": M.recovery_from_series(s, s_d, end, (0.95,))["T95"]}


@pytest.mark.e2e
@pytest.mark.timeout(170)
def test_simulation_agrees_with_a_measured_restart(tmp_path):
    scen = tmp_path / "restart-2k.toml"
    scen.write_text(SCENARIO)
    real_out, sim_out = tmp_path / "real", tmp_path / "sim"
    p = subprocess.run([sys.executable, "-m", "wsstorm", "run", "--scenario", str(scen), "--policy", "full-jitter",
                        "--out", str(real_out), "--no-report", "--plain", "--seed", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, p.stderr[-2000:]
    real_dir = next(d for d in real_out.iterdir() if d.is_dir())
    p = subprocess.run([sys.executable, "-m", "wsstorm", "simulate", "--scenario", str(scen), "--policy",
                        "full-jitter", "--out", str(sim_out), "--seed", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    real, sim = figures(real_dir), figures(sim_out)
    assert real["s_d"] == sim["s_d"]
    # connected(t) from the restart to the end of the scenario: mean gap, as a share of the fleet
    a, b = real["s_d"], 30
    gap = np.abs(real["connected"][a:b] - sim["connected"][a:b]).mean() / 2000
    report = (f"connected gap {gap:.1%}; peak attempts/s real {real['peak']:.0f} sim {sim['peak']:.0f}; "
              f"T95 real {real['T95']:.0f} s sim {sim['T95']:.0f} s")
    print(report)
    assert gap <= TOLERANCE, report
    assert sim["peak"] == pytest.approx(real["peak"], rel=TOLERANCE), report
    assert sim["T95"] == pytest.approx(real["T95"], rel=TOLERANCE), report
