"""The wsstorm tab in Locust's web UI, end to end: real Locust with its web UI, the embedded
target, a restart; headless Chromium renders the tab, and the tab's data endpoint agrees with
the event log of the same run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.browser import chromium
from wsstorm.run.plan import free_port
from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import records

ROOT = Path(__file__).resolve().parent.parent
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py")]

pytestmark = pytest.mark.e2e
VIEW = ("--window-size=1280,900", "--virtual-time-budget=6000")  # the React page polls: let it render

SCENARIO = """
name = "live"
description = "a restart under the live view"
duration = 8
users = 20
spawn_rate = 40

[target]
capacity = 100
handshake_rate = 400
handshake_cost_ms = 0
overload = "close"

[client]
message_rate = 1
ping_interval = 1
pong_timeout = 2

[[faults]]
at = 3
action = "restart"
mode = "all"
down = 0.5
"""


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


@pytest.mark.parametrize("processes", [0, 2], ids=["local", "distributed"])
def test_live_tab_renders_and_agrees_with_the_event_log(tmp_path, processes):
    """Locally, and on a master whose two workers send their events over Locust's message channel."""
    sc = tmp_path / "live.toml"
    sc.write_text(SCENARIO)
    run_dir = tmp_path / "run"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            *LOCUST,
            "--autostart",
            "--autoquit",
            "20",
            "-u",
            "20",
            "-r",
            "40",
            "-t",
            "8s",
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(port),
            "--run-dir",
            str(run_dir),
            "--scenario",
            str(sc),
            "--policy",
            "fixed:delay=0.3",
            "--stop-timeout",
            "2",
            *(["--processes", str(processes), "--expect-workers", str(processes)] if processes else []),
        ],
        stdout=(tmp_path / "locust.out").open("w"),  # a file: a full pipe would stall Locust
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                live = json.loads(get(base + "/wsstorm/live"))
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "locust.out").read_text()[
                    -3000:
                ]
                time.sleep(0.3)
        time.sleep(6)  # past the restart: the tab has something to show
        # The table rows travel in /stats/requests, which the UI polls.
        stats = json.loads(get(base + "/stats/requests"))
        rows = {
            r["metric"]: r["value"] for tab in stats["extended_stats"] if tab["key"] == "wsstorm" for r in tab["data"]
        }
        assert "connected clients" in rows and "herd factor so far" in rows
        assert any(k.startswith("recovery after restart") for k in rows), rows
        during = json.loads(get(base + "/wsstorm/live"))
        assert during["capacity"] == 100 and during["connected"] > 0
        if shutil.which("chromium") or shutil.which("chromium-browser"):
            dom = chromium(base + "/?tab=wsstorm", tmp_path / "profile", *VIEW, "--dump-dom").stdout
            assert "herd factor so far" in dom and "scheduling error p99" in dom, dom[-2000:]
            shot = tmp_path / "tab.png"
            chromium(base + "/?tab=wsstorm", tmp_path / "profile", *VIEW, f"--screenshot={shot}")
            assert shot.exists() and shot.stat().st_size > 5000
        # After the run (users stopped, every event flushed), the endpoint's totals are the log's.
        time.sleep(5)
        live = json.loads(get(base + "/wsstorm/live"))
        logged = [e for p in names.event_shards(run_dir) for e in records(p)]
        assert logged
        if processes:  # every worker's events came over the message channel into the master's folder
            assert len(names.event_shards(run_dir)) == processes
        assert live["totals"] == dict(Counter(e["event"] for e in logged))
        closes = Counter(str(e["code"]) for e in logged if e["event"] == "close")
        assert live["close_totals"] == dict(closes) and "1012" in closes
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
