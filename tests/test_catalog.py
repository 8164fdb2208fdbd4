"""`wsstorm policies` end to end: the real CLI in a child process (list, show, --json, --plot, bad input)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from wsstorm.policies import CATALOG, parse_code, parse_policy
from wsstorm.policies.catalog import distribution

pytestmark = pytest.mark.integration


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsstorm", "policies", *args], capture_output=True, text=True, timeout=120
    )


def test_list_is_an_aligned_table_of_every_preset():
    res = run()
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[0] == "NAME"
    names = [line.split()[0] for line in lines[1:]]
    assert names == [*CATALOG, "+budget", "+sre-throttle", "+grpc-throttle"]  # the presets, then the wrappers
    col = lines[0].index("RULE")
    assert all(line[col - 2 : col] == "  " for line in lines[1:])  # columns line up
    assert "socket.io-client" in res.stdout and "phoenix.js" in res.stdout
    assert "ably-js" in res.stdout and "pusher-js" in res.stdout and "gRPC proposal A6" in res.stdout


def test_show_prints_ten_retries():
    res = run("show", "signalr")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == [str(i) for i in range(1, 11)]
    assert [r[1] for r in rows[:4]] == ["0.000", "2.000", "10.000", "30.000"]
    assert rows[4][1] == "-" and rows[4][4] == "100.0%"


def test_show_json_is_seeded_and_matches_the_formula():
    res = run("show", "full-jitter:base=0.5,cap=30", "--json", "--seed", "3", "--code", "refused")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["policy"] == "full-jitter:base=0.5,cap=30" and data["after"] == "refused" and data["draws"] == 10000
    assert [r["retry"] for r in data["retries"]] == list(range(1, 11))
    for r in data["retries"]:
        top = min(30.0, 0.5 * 2 ** (r["retry"] - 1))
        assert r["median"] == pytest.approx(top / 2, rel=0.05)
        assert r["p5"] == pytest.approx(0.05 * top, rel=0.15) and r["p95"] == pytest.approx(0.95 * top, rel=0.05)
    assert run("show", "full-jitter:base=0.5,cap=30", "--json", "--seed", "3", "--code", "refused").stdout == res.stdout


def test_show_a_throttled_policy():
    data = json.loads(run("show", "fixed:delay=1+grpc-throttle", "--code", "refused", "--json").stdout)
    assert data["policy"] == "fixed+grpc-throttle"
    # tokens 10 -> 6 after four failures: four retries; the fifth failure leaves 5 <= 5: no retry
    assert [r["median"] for r in data["retries"][:4]] == [1.0] * 4
    assert [r["giveup"] for r in data["retries"][4:]] == [1.0] * 6


def test_show_from_a_policy_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[policy]\nname = "exponential"\nbase = 0.25\ncap = 2\n')
    data = json.loads(run("show", "--file", str(f), "--json").stdout)
    assert [r["median"] for r in data["retries"]][:5] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_show_plot_writes_a_real_png(tmp_path):
    out = tmp_path / "socketio.png"
    res = run("show", "socketio", "--plot", str(out))
    assert res.returncode == 0, res.stderr
    blob = out.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[0] >= 300 and img.shape[1] >= 500
    assert img[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize(
    "args",
    [
        ("show", "bogus"),
        ("show", "full-jitter:base=-1"),
        ("show", "full-jitter:cap=nan"),
        ("show", "full-jitter:base=2,cap=1"),
        ("show", "signalr", "--code", "bogus"),
        ("show", "signalr", "--seed", "x"),
        ("show", "--file", "/nonexistent/p.toml"),
        ("show",),
        ("show", "full-jitter\nInjected: line"),
    ],
)
def test_bad_input_exits_2_with_one_line(args):
    res = run(*args)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, res.stderr
    assert err[0].startswith("wsstorm policies: error:")
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_show_is_fast():
    # the vectorised 10,000 x 10 draws, in process (no interpreter start-up)
    worst = 0.0
    for name in CATALOG:
        t0 = time.perf_counter()
        distribution(parse_policy(name), parse_code("1006"), seed=0)
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 1.0, f"slowest show took {worst:.2f} s"
