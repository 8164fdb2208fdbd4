"""``wsstorm simulate`` as a user runs it: the run folder it writes, the sweep chart, bad input (exit 2)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wsstorm.runfolder import schemas

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def simulate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsstorm", "simulate", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_simulated_run_folder(tmp_path):
    out = tmp_path / "run"
    p = simulate(
        "--scenario", "restart", "--policy", "full-jitter", "--clients", "3e3", "--seed", "3", "--out", str(out)
    )
    assert p.returncode == 0, p.stderr
    assert "SIMULATED" in p.stdout and "herd factor" in p.stdout and "T95" in p.stdout
    man = json.loads((out / "manifest.json").read_text())
    assert man["simulated"] is True and man["users"] == 3000 and man["policy"] == "full-jitter"
    assert man["target"]["capacity"] == 10000 and man["target"]["handshake_rate"] == 1500
    # the manifest is the contract's (runfolder.manifest.build_manifest), with the simulation's own block
    assert set(schemas.Manifest.__annotations__) <= set(man) and "simulation" in man
    assert man["host"] == "simulated" and man["embedded_target"] is False and "python" in man["versions"]
    rows = list(csv.DictReader((out / "series.csv").open()))
    assert len(rows) == 40 and int(rows[11]["connected"]) == 3000 and int(rows[12]["closes_1012"]) == 3000
    assert list(rows[0]) == [
        "s",
        *schemas.SERIES_CLIENT,
        "closes_1006",
        "closes_1012",
        "closes_1013",
        *schemas.SERIES_SERVER,
    ]
    for col in (
        "s",
        "connected",
        "attempts",
        "attempts_open",
        "attempts_1013",
        "attempts_refused",
        "attempts_http_503",
        "attempts_http_429",
        "attempts_http_other",
        "attempts_timeout",
        "attempts_other",
        "server_connections",
        "capacity",
        "handshake_rate",
        "server_rejected",
    ):
        assert col in rows[0], col
    assert sum(int(r["attempts"]) for r in rows) == sum(
        int(r[c]) for r in rows for c in rows[0] if c.startswith("attempts_")
    )
    downs = list(csv.DictReader((out / "downtimes.csv").open()))
    # the restart takes every client down for at least the 3 s down time (less the close pacing);
    # more, shorter downtimes come from the ramp, where Locust-style batches of 100 meet a bucket of 15
    long_downs = sorted(float(d["downtime_s"]) for d in downs)[-3000:]
    assert len(downs) >= 3000 and long_downs[0] >= 2.5
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert [f["fault"] for f in faults] == ["restart"]
    assert faults[0]["t"] == pytest.approx(man["started"] + 12)


def test_same_seed_same_series(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert (
            simulate(
                "--policy", "decorrelated-jitter", "--clients", "2000", "--seed", "5", "--out", str(out)
            ).returncode
            == 0
        )
    assert (a / "series.csv").read_bytes() == (b / "series.csv").read_bytes()


def test_sweep_chart_and_csv(tmp_path):
    out = tmp_path / "sweep"
    p = simulate("--sweep", "clients=1e3,3e3", "--policies", "immediate,full-jitter", "--out", str(out))
    assert p.returncode == 0, p.stderr
    png, table = out / "sweep.png", out / "sweep.csv"
    assert str(png) in p.stdout and str(table) in p.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert [(r["policy"], int(r["clients"])) for r in rows] == [
        ("immediate", 1000),
        ("immediate", 3000),
        ("full-jitter", 1000),
        ("full-jitter", 3000),
    ]
    herd = {(r["policy"], int(r["clients"])): float(r["herd_factor"]) for r in rows}
    assert herd[("immediate", 3000)] > herd[("full-jitter", 3000)]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--scenario", "no-such-scenario"], "unknown scenario"),
        (["--policy", "no-such-policy"], "unknown policy"),
        (["--clients", "0"], "--clients"),
        (["--clients", "many"], "not a number"),
        (["--clients", "1.5"], "--clients"),
        (["--sweep", "clients=1e4,,1e5"], "--sweep"),
        (["--sweep", "users=1e4"], "--sweep"),
        (["--sweep", "clients=1e4", "--policies", "full-jitter,bogus"], "unknown policy"),
        (["--dt", "0"], "--dt"),
        (["--handshake-service-ms", "-1"], "--handshake-service-ms"),
        (["--close-service-ms", "nan"], "--close-service-ms"),
        (["--probe", "--handshake-service-ms", "3"], "--probe"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    p = simulate(*args, "--out", str(tmp_path / "x"), timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()


def test_service_times_given_on_the_command_line_reach_the_model_and_the_manifest(tmp_path):
    out = tmp_path / "run"
    p = simulate(
        "--clients",
        "600",
        "--handshake-service-ms",
        "4.5",
        "--reject-service-ms",
        "1.25",
        "--close-service-ms",
        "0.4",
        "--out",
        str(out),
    )
    assert p.returncode == 0, p.stderr
    assert "handshake 4.5 ms, rejection 1.25 ms, close 0.4 ms" in p.stdout
    sim = json.loads((out / "manifest.json").read_text())["simulation"]
    assert (sim["handshake_service_ms"], sim["reject_service_ms"], sim["close_service_ms"]) == (4.5, 1.25, 0.4)
    assert sim["service_source"] == "given" and sim["probe"] is None


def test_the_printed_summary_is_the_reports_metrics_json(tmp_path):
    """One set of metrics: the simulator's summary and `python -m wsstorm.analysis` on its run folder agree."""
    from wsstorm.sim.summary import summary_from_metrics, summary_lines

    out = tmp_path / "run"
    p = simulate(
        "--scenario", "restart", "--policy", "exponential", "--clients", "2500", "--seed", "2", "--out", str(out)
    )
    assert p.returncode == 0, p.stderr
    a = subprocess.run(
        [sys.executable, "-m", "wsstorm.analysis", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert a.returncode == 0, a.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    expected = summary_lines(summary_from_metrics(metrics, 2500))
    printed = [ln for ln in p.stdout.splitlines() if ln.startswith(("2,500 clients", "  "))][: len(expected)]
    assert printed == expected
    # and the numbers behind them, as the manifest keeps them
    summary = json.loads((out / "manifest.json").read_text())["simulation"]["summary"]
    run = metrics["run"]
    for key in (
        "herd_factor",
        "recovery_T50_s",
        "recovery_T95_s",
        "recovery_T99_s",
        "downtime_p99_s",
        "wasted_attempts",
        "wasted_per_recovered",
        "overload_s",
        "goodput",
        "goodput_lost",
        "wasted_work_ms",
    ):
        assert summary[key] == pytest.approx(run[key]), key
    assert summary["metastable"] == run["metastable"]["flag"]


def test_sweep_against_a_fixed_deployment_and_its_tipping_lines(tmp_path):
    """A deployment sized for 1,000 clients (the metastable scenario's server: TLS, attempt work, a store of
    2 slots, session work, ~6.6 ms per handshake on one core) and clients that give up after 10 s: 1,000
    come back after a restart; 2,000 with `immediate` never do, while a capped full jitter still gets them in."""
    scen = tmp_path / "costly.toml"
    scen.write_text(COSTLY)
    out = tmp_path / "sweep"
    p = simulate(
        "--scenario",
        str(scen),
        "--sweep",
        "clients=1e3,2e3",
        "--policies",
        "immediate,full-jitter:cap=30",
        "--out",
        str(out),
        "--handshake-service-ms",
        "0.5",
        "--reject-service-ms",
        "0.5",
    )
    assert p.returncode == 0, p.stderr
    rows = {(r["policy"], int(r["clients"])): r for r in csv.DictReader((out / "sweep.csv").open())}
    assert {r["sized_for"] for r in rows.values()} == {"1000"}
    assert int(rows[("immediate", 1000)]["connected_end"]) == 1000
    assert int(rows[("immediate", 2000)]["connected_end"]) < 0.5 * 2000  # the server never recovers
    assert int(rows[("full-jitter:cap=30", 2000)]["connected_end"]) == 2000
    # the reports' verdict, as computed: only the fleet that never recovers is a metastable failure
    assert {k: r["metastable"] for k, r in rows.items()} == {
        ("immediate", 1000): "False",
        ("immediate", 2000): "True",
        ("full-jitter:cap=30", 1000): "False",
        ("full-jitter:cap=30", 2000): "False",
    }
    assert "deployment sized for 1,000 clients" in p.stdout and "full-jitter:cap=30" in p.stdout


def test_tipping_point_is_the_smallest_metastable_fleet():
    from wsstorm.sim.sweep import tipping_points

    rows = [
        {"policy": "a", "clients": 10, "metastable": False},
        {"policy": "a", "clients": 100, "metastable": True},
        {"policy": "a", "clients": 1000, "metastable": True},
        {"policy": "b", "clients": 10, "metastable": None},
        {"policy": "b", "clients": 100, "metastable": False},
    ]
    assert tipping_points(rows) == {"a": 100, "b": None}


COSTLY = """
name = "costly"
duration = 120
users = 1000
spawn_rate = 100
[target]
capacity = 5000
handshake_rate = 0
handshake_cost_ms = 0
attempt_cost_ms = 3
session_cost_ms = 2
store_concurrency = 2
store_ms = 4
tls = true
handshake_timeout = 30
overload = "close"
[client]
connect_timeout = 10
ping_interval = 5
pong_timeout = 5
[[faults]]
at = 15
action = "restart"
mode = "all"
down = 1
"""
