"""The model against real runs of the shipped `metastable` scenario (TLS, attempt work, a store and session
work on one pinned core; clients that give up after 1 s).

The server's service time is measured first with short probes of that very pipeline (`wsstorm simulate
--probe`, the median of three); then each policy runs for real (embedded target + Locust; the recovering ones
three times, see `REAL_SEEDS`) and in the model (nine seeds), both sides are summarised alike (`expectation`:
mean curves, median T95), and the reports' own metrics judge both. The verdict must agree: `immediate`
collapses into a metastable failure in every real run and in the model, `full-jitter:cap=30` and `code-aware`
do not; and for those two the model's connected(t), goodput(t) and T95 must come within 15% of the real runs'
(see `gaps`).
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
TOLERANCE = 0.15  # issue 14: the recovering runs' curves and T95 within 15%
# 300 clients make one run's T95 a noisy draw, on both sides (full-jitter:cap=30: model seeds 6.7-7.5 s, six
# real runs 6.6-8.4 s), so each side is summarised over several seeds (`expectation`) and the two summaries
# are compared. The scenario keeps the return wave clear of the server's edge (its store at 3 ms; at 4 ms a
# server 4% slower moved the model's code-aware T95 by 29% and real runs recovered in 5.5 s or in 14 s):
# T95 near a tipping point follows the machine's noise, not the model.
MODEL_SEEDS = range(1, 10)
# The real runs per policy: immediate's verdict is all that is checked, so one run; the recovering
# policies' curves and T95 are compared, so three (about a minute each: `make validate` stays ~10 min).
REAL_SEEDS = {"immediate": (1,), "full-jitter:cap=30": (1, 2, 3), "code-aware": (1, 2, 3)}
PROBES = 3  # service-time probes (~15 s each); the median one calibrates the model


def wsstorm(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsstorm", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def gaps(real: dict, model: dict, users: int) -> dict[str, float]:
    """How far the model is from the real run, from the disruption on, each as a fraction:
    connected(t): the mean gap, of the fleet; goodput(t): the largest gap of the cumulative goodput, of the
    real total; T95: of the real T95.  A server tick counts the second that ended with it, so the series
    files a count up to a second late: the real cumulative goodput at t lies between its values at t and
    t + 1, and only what falls outside that band is a gap."""
    a, n = real["s_d"], min(real["connected"].size, model["connected"].size)
    conn = float(np.abs(real["connected"][a:n] - model["connected"][a:n]).mean() / users)
    g_real, g_model = np.cumsum(real["goodput"][a:n]), np.cumsum(model["goodput"][a:n])
    g_next = np.append(g_real[1:], g_real[-1])
    outside = np.maximum(np.maximum(g_real - g_model, g_model - g_next), 0.0)
    good = float(outside.max() / max(g_real[-1], 1.0))
    t95 = abs(model["T95"] - real["T95"]) / real["T95"] if real["T95"] > 0 else math.inf
    return {"connected": conn, "goodput": good, "T95": float(t95)}


def expectation(runs: list[dict]) -> dict:
    """Runs of one policy over several seeds, summarised: mean connected(t) and goodput(t), median T95,
    majority verdict (the model's prediction, and the real runs' measurement, alike)."""
    n = min(r["connected"].size for r in runs)
    verdicts = [r["metastable"] for r in runs]
    return {
        "connected": np.mean([r["connected"][:n] for r in runs], axis=0),
        "goodput": np.mean([r["goodput"][:n] for r in runs], axis=0),
        "T95": float(np.median([r["T95"] for r in runs])),
        "s_d": runs[0]["s_d"],
        "metastable": max(set(verdicts), key=verdicts.count) if verdicts else None,
    }


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
@pytest.mark.timeout(900)  # ~9.5 min: seven real runs of ~65 s each, three probes, 27 model runs
def test_simulation_and_real_runs_reach_the_same_metastable_verdict(tmp_path):
    from wsstorm.run import scenario as scenarios

    if "metastable" not in scenarios.shipped():
        pytest.fail("the metastable scenario is not shipped")
    users = scenarios.load("metastable").users
    # 1. the service times of this machine's target with the scenario's cost pipeline, from the median of
    # PROBES probes: one probe is a few seconds on a shared machine, and one that shared its core with other
    # work once calibrated the library's share to 7.6 ms instead of ~1.1 (the model then took 22-26 s to recover)
    probes = []
    for k in range(PROBES):
        probe_out = tmp_path / f"probe-{k}"
        p = wsstorm(
            "simulate", "--scenario", "metastable", "--policy", "code-aware", "--probe", "--out", str(probe_out),
            timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
        probes.append(json.loads((probe_out / "manifest.json").read_text())["simulation"])
    sim = sorted(probes, key=lambda s: s["handshake_service_ms"])[len(probes) // 2]  # one probe's times, together
    times = [
        "--handshake-service-ms",
        str(sim["handshake_service_ms"]),
        "--reject-service-ms",
        str(sim["reject_service_ms"]),
        "--close-service-ms",
        str(sim["close_service_ms"]),
    ]
    each = ", ".join(f"{s['handshake_service_ms']:.2f}" for s in probes)
    cal = sim["probe"].get("calibration", {})
    lines = [
        f"probe: library {sim['handshake_service_ms']:.2f} ms per handshake (median of {each}; "
        f"{cal.get('source', '?')}; by the fill area {cal.get('library_ms_fill', math.nan):.2f}); whole pipeline "
        f"{sim['probe']['handshake_service_ms']:.2f} ms"
    ]
    wrong: list[str] = []
    for policy, collapses in POLICIES.items():
        reals = []
        for seed in REAL_SEEDS[policy]:
            real_out = tmp_path / f"real-{policy}" / f"seed-{seed}"
            p = wsstorm(
                "run", "--scenario", "metastable", "--policy", policy, "--out", str(real_out),
                "--no-report", "--plain", "--seed", str(seed), timeout=150,
            )  # fmt: skip
            assert p.returncode == 0, p.stderr[-2000:]
            reals.append(figures(next(d for d in real_out.iterdir() if d.is_dir())))
        runs = []
        for seed in MODEL_SEEDS:
            out = tmp_path / f"sim-{policy}" / f"seed-{seed}"
            p = wsstorm(
                "simulate", "--scenario", "metastable", "--policy", policy, "--seed", str(seed),
                "--out", str(out), *times, timeout=120,
            )  # fmt: skip
            assert p.returncode == 0, p.stderr[-2000:]
            runs.append(figures(out))
        real, model = expectation(reals), expectation(runs)
        gap = gaps(real, model, users)
        verdicts = [r["metastable"] for r in reals]
        each = ", ".join(f"{r['T95']:.1f}" for r in reals)
        lines.append(
            f"{policy:<20} metastable real {'/'.join(map(str, verdicts))} sim {model['metastable']}; T95 real "
            f"{real['T95']:.1f} s ({each}) sim {model['T95']:.1f} s "
            f"({gap['T95']:.0%}); connected gap {gap['connected']:.0%} of the fleet; cumulative goodput gap "
            f"{gap['goodput']:.0%}"
        )
        if any(v is not collapses for v in verdicts) or model["metastable"] is not collapses:
            wrong.append(f"{policy}: verdict")
        elif not collapses and max(gap.values()) > TOLERANCE:
            wrong.append(f"{policy}: not within {TOLERANCE:.0%}")
    report = "\n".join(lines)
    print(report)
    assert not wrong, report
