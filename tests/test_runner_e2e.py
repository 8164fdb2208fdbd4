"""`wsstorm run` end to end at small scale: every shipped scenario produces the close codes it is meant to;
an interrupted run leaves no process behind; bad input stops before anything starts."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
WSSTORM = [sys.executable, "-m", "wsstorm"]


def _run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(WSSTORM + args, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _events(run_dir: Path) -> list[dict]:
    out = []
    for shard in sorted(run_dir.glob("events-*.jsonl")):
        out += [json.loads(line) for line in shard.read_text().splitlines() if line.strip()]
    return out


def _faults(run_dir: Path) -> list[dict]:
    path = run_dir / "faults.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _one_run(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


# scenario -> (users, duration, extra args)
SIZES = {
    "steady": (100, 5, ["--spawn-rate", "50"]),  # within the handshake budget: nothing may close
    "overload": (200, 6, ["--processes", "2"]),
    "restart": (100, 10, []),
    "drain-restart": (100, 10, []),
    "rolling-restart": (120, 10, []),
    "crash": (100, 8, []),
    "partition": (60, 14, []),
    "flapping": (80, 14, []),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(SIZES))
def test_shipped_scenario_end_to_end(name: str, tmp_path: Path):
    users, duration, extra = SIZES[name]
    report = name == "restart"  # one run builds the full report; the others only record (time)
    args = [
        "run",
        "--scenario",
        name,
        "--policy",
        "full-jitter:base=0.2,cap=2",
        "--users",
        str(users),
        "--duration",
        str(duration),
        "--out",
        str(tmp_path),
        "--plain",
        *(extra if "--spawn-rate" in extra else ["--spawn-rate", "200", *extra]),
    ]
    proc = _run(args + ([] if report else ["--no-report"]))
    run_dir = _one_run(tmp_path)
    assert proc.returncode == 0, (
        proc.stdout[-2000:],
        proc.stderr[-2000:],
        (run_dir / "locust.log").read_text()[-3000:],
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["scenario"]["name"] == name and manifest["users"] == users
    assert (run_dir / "locust_stats.csv").exists() and (run_dir / "locust.html").exists()
    assert (run_dir / "server.jsonl").stat().st_size > 0
    events = _events(run_dir)
    opens = sum(e["event"] == "open" for e in events)
    Counter(e["code"] for e in events if e["event"] == "close")
    server_closes = Counter(e["code"] for e in events if e["event"] == "close" and e["by"] != "client")
    fired = _faults(run_dir)
    assert all(f["ok"] for f in fired), fired
    assert all(f["late_ms"] < 100 for f in fired), fired  # fired on time
    assert opens >= users
    if name == "steady":
        assert fired == [] and opens == users and not server_closes
    elif name == "overload":
        assert server_closes[1013] >= users // 4
        assert len(list(run_dir.glob("events-*.jsonl"))) >= 2  # one shard per Locust process
    elif name in ("restart", "drain-restart"):
        assert [f["fault"] for f in fired] == ["restart"]
        assert server_closes[1012] >= 0.8 * users
        assert opens >= users + 0.8 * users  # they came back
    elif name == "rolling-restart":
        assert [f["params"].get("proc") for f in fired] == [0, 1, 2]
        assert server_closes[1012] >= 0.8 * users
    elif name == "crash":
        assert [f["fault"] for f in fired] == ["crash"]
        assert server_closes[1006] >= 0.8 * users
    elif name == "partition":
        assert [f["fault"] for f in fired] == ["partition", "heal"]
        dead = [e for e in events if e["event"] == "dead"]
        pings = [e for e in events if e["event"] == "close" and e.get("how") == "ping_timeout"]
        assert len(dead) >= 0.8 * users and len(pings) >= 0.8 * users
        assert all(e["code"] == 1006 for e in pings)
    elif name == "flapping":
        assert [f["fault"] for f in fired] == ["crash"] * 4
        assert server_closes[1006] > users  # clients were hit by more than one outage
    if report:
        assert (run_dir / "report.html").exists(), proc.stdout[-2000:]
        assert f"report: {run_dir / 'report.html'}" in proc.stdout
        assert "opens" in proc.stdout and "1012x" in proc.stdout  # the summary table


@pytest.mark.e2e
def test_interrupted_run_leaves_no_process_and_a_readable_folder(tmp_path: Path):
    proc = subprocess.Popen(
        [
            *WSSTORM,
            "run",
            "--scenario",
            "restart",
            "--users",
            "50",
            "--duration",
            "40",
            "--out",
            str(tmp_path),
            "--plain",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    me = psutil.Process(proc.pid)
    seen: dict[int, float] = {}
    deadline = time.time() + 40
    run_dir = None
    # wait until Locust, the target and its serving process are up and clients connected
    while time.time() < deadline:
        for kid in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                seen.setdefault(kid.pid, kid.create_time())
        dirs = [d for d in tmp_path.iterdir() if d.is_dir()]
        if dirs and any(e["event"] == "open" for e in _events(dirs[0])) and len(seen) >= 3:
            run_dir = dirs[0]
            break
        time.sleep(0.2)
    assert run_dir is not None, proc.communicate(timeout=30)
    for kid in me.children(recursive=True):
        seen.setdefault(kid.pid, kid.create_time())
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:]
    alive = []
    for pid, created in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p.cmdline())
        except psutil.Error:
            pass
    assert alive == []
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["ended"] is not None
    assert any(e["event"] == "open" for e in _events(run_dir))
    assert "SIGINT" in out and f"run folder: {run_dir}" in out


def _no_run_started(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.e2e
def test_bad_input_exits_2_with_one_line_before_anything_starts(tmp_path: Path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("duration = 10\nusers = = 3\n")
    late = tmp_path / "late.toml"
    late.write_text('duration = 10\n[[faults]]\nat = 12\naction = "crash"\n')
    zero = tmp_path / "zero.toml"
    zero.write_text("duration = 10\n[target]\ncapacity = 0\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    out = tmp_path / "out"
    cases = [
        (["run", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["run", "--scenario", "restart", "--policy", "bogus-policy"], "bogus-policy"),
        (["run", "--scenario", str(bad_toml)], "malformed TOML"),
        (["run", "--scenario", str(late)], "after the end of the run"),
        (["run", "--scenario", str(zero)], "capacity must be >= 1"),
        (["run", "--scenario", "steady", "--port", str(busy.getsockname()[1])], "is in use"),
        (["run", "--scenario", "restart", "--host", "ws://127.0.0.1:9"], "use http or shell faults"),
        (["run", "--scenario", "steady", "--users", "0"], "--users must be >= 1"),
        (["compare", "--scenario", "restart", "--policies", "immediate,nope"], "nope"),
        (["demo", "--scenarios", "restart,nope"], "unknown scenario 'nope'"),
    ]
    try:
        for args, expect in cases:
            proc = _run([*args, "--out", str(out)], timeout=30)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert proc.stderr.count("\n") == 1 and expect in proc.stderr, (args, proc.stderr)
            _no_run_started(out)
    finally:
        busy.close()


@pytest.mark.e2e
def test_compare_runs_each_policy_on_the_same_schedule_and_compares(tmp_path: Path):
    proc = _run(
        [
            "compare",
            "--scenario",
            "restart",
            "--policies",
            "immediate,full-jitter:base=0.2,cap=2",
            "--users",
            "40",
            "--duration",
            "8",
            "--spawn-rate",
            "200",
            "--seed",
            "7",
            "--out",
            str(tmp_path),
            "--plain",
        ],
        timeout=120,
    )
    folder = _one_run(tmp_path)
    runs = sorted(d for d in folder.iterdir() if d.is_dir())
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-2000:])
    assert [d.name for d in runs] == ["01-immediate", "02-full-jitter_base_0.2_cap_2"]
    manifests = [json.loads((d / "manifest.json").read_text()) for d in runs]
    assert [m["seed"] for m in manifests] == [7, 7]
    assert (runs[0] / "scenario.toml").read_text() == (runs[1] / "scenario.toml").read_text()
    assert [[f["at"] for f in _faults(d)] for d in runs] == [[2.4], [2.4]]
    for d in runs:
        assert Counter(e["code"] for e in _events(d) if e["event"] == "close")[1012] >= 30
    report = next(p for p in folder.glob("*.html"))
    assert f"comparison report: {report}" in proc.stdout
    assert "immediate" in proc.stdout and "full-jitter:base=0.2,cap=2" in proc.stdout  # summary rows
    assert report.name == "compare.html"
    for d in runs:  # each run's own report, linked from the comparison
        assert (d / "report.html").is_file() and f"{d.name}/report.html" in report.read_text(encoding="utf-8")


@pytest.mark.e2e
def test_demo_builds_every_report_and_an_index_that_links_them(tmp_path: Path):
    import re

    proc = _run(
        [
            "demo",
            "--scenarios",
            "restart",
            "--policies",
            "immediate,code-aware",
            "--users",
            "30",
            "--duration",
            "8",
            "--spawn-rate",
            "200",
            "--out",
            str(tmp_path),
            "--plain",
        ],
        timeout=150,
    )
    top = _one_run(tmp_path)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-2000:])
    index = top / "index.html"
    assert f"index of all reports: {index}" in proc.stdout
    hrefs = re.findall(r'href="([^"]+)"', index.read_text())
    assert len(hrefs) == 3 and all(not h.startswith(("/", "file:")) for h in hrefs)  # 1 comparison + 2 runs
    for href in hrefs:
        page = (top / href).resolve()
        assert page.is_file(), href
        for link in re.findall(r"href='([^']+)'", page.read_text(encoding="utf-8")):
            assert (page.parent / link).is_file(), (href, link)  # compare <-> run reports, relative
    runs = sorted(d for d in (top / "restart").iterdir() if d.is_dir())
    assert [d.name for d in runs] == ["01-immediate", "02-code-aware"]
    for d in runs:
        assert json.loads((d / "result.json").read_text())["report"] == "report.html"
        assert "metastable" in json.loads((d / "metrics.json").read_text())["run"]
