"""The model against real runs of the shipped `metastable` scenario (TLS, attempt work, a store and session
work on one pinned core; clients that give up after 2 s).

The server's service time is measured first with a short probe of that very pipeline (`wsstorm simulate
--probe`); then each policy runs for real (embedded target + Locust) and in the model, and the reports'
own metrics judge both. The verdict must agree: `immediate` collapses into a metastable failure,
`full-jitter:cap=30` and `code-aware` do not. How close the recovering runs' connected(t), goodput(t)
and T95 come is printed (issue 14 asks for 15%; see the README for where the model stands).
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
POLICIES = {"immediate": True, "full-jitter:cap=30": False, "code-aware": False}  # policy -> collapses


def wsstorm(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsstorm", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def figures(folder: Path) -> dict:
    """connected(t), goodput(t), T95 and the metastable verdict, by the reports' own code."""
    from wsstorm.analysis import metrics as M
    from wsstorm.analysis.load import load_run

    run = load_run(folder)
    m = M.compute(run)
    s = run.series
    end = int(s.index.max()) + 1
    meta = m["run"].get("metastable")
    return {
        "connected": s["connected"].reindex(range(end), fill_value=0).to_numpy(dtype=float),
        "goodput": s["server_goodput"].reindex(range(end), fill_value=0).fillna(0).to_numpy(dtype=float),
        "T95": m["run"].get("recovery_T95_s", math.nan),
        "s_d": math.floor(float(run.disruptions["t"].iloc[0])),
        "metastable": meta["flag"] if isinstance(meta, dict) else None,
    }


@pytest.mark.e2e
@pytest.mark.validation  # minutes of real runs: `make validate`, not `make test`
@pytest.mark.timeout(480)
def test_simulation_and_real_runs_reach_the_same_metastable_verdict(tmp_path):
    from wsstorm.run import scenario as scenarios

    if "metastable" not in scenarios.shipped():
        pytest.fail("the metastable scenario is not shipped")
    users = scenarios.load("metastable").users
    # 1. the service times of this machine's target with the scenario's cost pipeline
    probe_out = tmp_path / "probe-sim"
    p = wsstorm(
        "simulate",
        "--scenario",
        "metastable",
        "--policy",
        "code-aware",
        "--probe",
        "--out",
        str(probe_out),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    sim = json.loads((probe_out / "manifest.json").read_text())["simulation"]
    times = [
        "--handshake-service-ms",
        str(sim["handshake_service_ms"]),
        "--reject-service-ms",
        str(sim["reject_service_ms"]),
        "--close-service-ms",
        str(sim["close_service_ms"]),
    ]
    lines, wrong = [f"probe: {sim['probe']['handshake_service_ms']:.2f} ms per handshake, whole pipeline"], []
    for policy, collapses in POLICIES.items():
        real_out, sim_out = tmp_path / f"real-{policy}", tmp_path / f"sim-{policy}"
        p = wsstorm(
            "run",
            "--scenario",
            "metastable",
            "--policy",
            policy,
            "--out",
            str(real_out),
            "--no-report",
            "--plain",
            "--seed",
            "1",
            timeout=150,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        p = wsstorm(
            "simulate",
            "--scenario",
            "metastable",
            "--policy",
            policy,
            "--seed",
            "1",
            "--out",
            str(sim_out),
            *times,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        real = figures(next(d for d in real_out.iterdir() if d.is_dir()))
        model = figures(sim_out)
        a, n = real["s_d"], min(real["connected"].size, model["connected"].size)
        gap_c = np.abs(real["connected"][a:n] - model["connected"][a:n]).mean() / users
        gap_g = np.abs(real["goodput"][a:n] - model["goodput"][a:n]).sum() / max(real["goodput"][a:n].sum(), 1.0)
        lines.append(
            f"{policy:<20} metastable real {real['metastable']} sim {model['metastable']}; T95 real "
            f"{real['T95']:.1f} s sim {model['T95']:.1f} s; connected gap {gap_c:.0%} of the fleet; "
            f"goodput gap {gap_g:.0%}"
        )
        if real["metastable"] is not collapses or model["metastable"] is not collapses:
            wrong.append(policy)
    report = "\n".join(lines)
    print(report)
    assert not wrong, report
