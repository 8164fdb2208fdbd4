"""The load side never imports numpy: a Locust process decides on plain floats (wsstorm.policies.numeric).

numpy is ~15 MiB of a Locust process's memory, and importing it in the middle of a storm
would stall every user for ~0.1 s. Both tests run in fresh interpreters, since this one has
numpy loaded already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEER = Path(__file__).parent / "peers" / "scripted_server.py"

# Every preset, bare and under each wrapper, through every kind of outcome: the scalar path in full.
DRIVE_EVERY_POLICY = """
import sys

import locust  # noqa: F401
import pkgutil, importlib
import locustfile  # noqa: F401
import wsstorm.load
for m in pkgutil.iter_modules(wsstorm.load.__path__):
    importlib.import_module("wsstorm.load." + m.name)
from wsstorm.policies import CATALOG, THROTTLES, Outcome, parse_policy

outcomes = [
    Outcome(fail="refused"), Outcome(fail="timeout"), Outcome(code=1013, uptime_s=0.2),
    Outcome(code=1012, uptime_s=90.0), Outcome(code=1000, uptime_s=3.0), Outcome(code=1006, uptime_s=0.0),
    Outcome(fail="http", status=503, retry_after=2.0), Outcome(fail="http", status=429, retry_after=float("inf")),
]
decisions = 0
for name in sorted(CATALOG):
    for wrapper in ["", "+budget:tokens=3,cost=1,refill=0.5,wait=1", *("+" + t for t in THROTTLES)]:
        for process_seed in (0, 5):
            c = parse_policy(name + wrapper).client(seed=3, process_seed=process_seed)
            for i in range(40):
                c.next_delay(outcomes[i % len(outcomes)])
                decisions += 1
                if i % 7 == 3:
                    c.opened()
            c.retries, c.skipped, c.state
print(decisions, "numpy" in sys.modules)
"""


def test_every_policy_decides_without_numpy():
    proc = subprocess.run(
        [sys.executable, "-c", DRIVE_EVERY_POLICY], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    decisions, has_numpy = proc.stdout.split()
    assert int(decisions) > 1000
    assert has_numpy == "False", "a module of the load side imported numpy"


PROBE = """
import json, os, sys
from locust import events

@events.quitting.add_listener
def _(environment, **kw):
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump({"numpy": "numpy" in sys.modules, "pandas": "pandas" in sys.modules}, f)
"""


@pytest.mark.e2e
def test_a_locust_run_that_reconnects_never_imports_numpy(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(PROBE))
    peer = subprocess.Popen([sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True)
    try:
        port = json.loads(peer.stdout.readline())["port"]
        run_dir = tmp_path / "run"
        cmd = [
            *(sys.executable, "-m", "locust", "-f", f"{ROOT / 'locustfile.py'},{probe}", "--headless"),
            *("-u", "8", "-r", "8", "-t", "3s", "--only-summary", "--stop-timeout", "2", "--exit-code-on-error", "0"),
            *("--host", f"ws://127.0.0.1:{port}/close/1013?after=0.05", "--run-dir", str(run_dir)),
            *("--policy", "full-jitter:base=0.05,cap=0.2+sre-throttle", "--message-rate", "2", "--seed", "7"),
        ]
        env = {**os.environ, "PROBE_OUT": str(tmp_path / "probe.json")}
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90, env=env)
    finally:
        peer.kill()
        peer.wait()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = [json.loads(line) for f in run_dir.glob("events-*.jsonl") for line in f.read_text().splitlines()]
    assert sum(e["event"] == "wait" for e in events) >= 16, "the users must have reconnected"
    assert json.loads((tmp_path / "probe.json").read_text()) == {"numpy": False, "pandas": False}
