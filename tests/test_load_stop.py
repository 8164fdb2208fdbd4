"""The edges of a run: an attempt in flight when the run stops still gets its outcome in the log
(``fail kind=stopped``, or ``open`` then ``close by=client``), so client and server counts match.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.test_user_e2e import LOCUST, PEER, locust_cmd, read_events

pytestmark = pytest.mark.e2e


def every_attempt_has_one_outcome(events: list[dict]) -> None:
    """Per user, each attempt is followed by exactly one open or fail before the next attempt."""
    by_user: dict[str, list[dict]] = {}
    for e in events:
        by_user.setdefault(e["user"], []).append(e)
    for user, evs in by_user.items():
        pending = None
        for e in evs:
            if e["event"] == "attempt":
                assert pending is None, f"{user}: attempt without outcome: {pending}"
                pending = e
            elif e["event"] in ("open", "fail"):
                assert pending is not None and pending["conn"] == e["conn"], (user, e)
                pending = None
        assert pending is None, f"{user}: the last attempt has no outcome"
        assert evs[-1]["event"] == "stop"


@pytest.fixture(scope="module")
def peer_runs(tmp_path_factory):
    peer = subprocess.Popen([sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True)
    said: list[dict] = []
    try:
        port = json.loads(peer.stdout.readline())["port"]
        reader = threading.Thread(target=lambda: said.extend(json.loads(x) for x in peer.stdout), daemon=True)
        reader.start()
        base = tmp_path_factory.mktemp("stop")
        cases = {"hang": "/hang", "slow": "/slow101?delay=1.6"}
        procs = {
            k: subprocess.Popen(
                locust_cmd(f"ws://127.0.0.1:{port}{path}", base / k, seconds=1),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for k, path in cases.items()
        }
        out = {}
        for k, p in procs.items():
            text, _ = p.communicate(timeout=90)
            out[k] = (read_events(base / k), text, p.returncode)
        yield out, said
    finally:
        peer.kill()
        peer.wait()


def test_no_answer_before_the_stop_is_fail_stopped(peer_runs):
    events, out, _ = peer_runs[0]["hang"]
    assert [e["event"] for e in events] == ["attempt", "fail", "stop"], out[-2000:]
    assert events[1]["kind"] == "stopped" and events[1]["conn"] == 1


def test_answer_during_the_stop_is_open_then_client_close(peer_runs):
    events, out, _ = peer_runs[0]["slow"]
    assert [e["event"] for e in events] == ["attempt", "open", "close", "stop"], out[-2000:]
    close = events[2]
    assert (close["by"], close["code"]) == ("client", 1000)
    assert Counter("accepted" in s for s in peer_runs[1])[True] == 1  # the one handshake the peer answered


SCENARIO = """
name = "stop-edges"
description = "over capacity: most clients open and get 1013 at once, and reconnect 20 times a second"
duration = 3
users = 25
spawn_rate = 100

[target]
capacity = 5
handshake_rate = 100000
handshake_cost_ms = 0
overload = "close"
"""


def test_embedded_target_counts_match_at_the_stop(tmp_path: Path) -> None:
    """Hundreds of attempts a second when the run stops: every attempt has an outcome, every
    handshake the server answered with 101 is an open in the log, every 1013 it sent is a close."""
    sc = tmp_path / "edges.toml"
    sc.write_text(SCENARIO)
    run_dir = tmp_path / "run"
    r = subprocess.run(
        [
            *LOCUST,
            "--headless",
            "-u",
            "25",
            "-r",
            "100",
            "-t",
            "3s",
            "--run-dir",
            str(run_dir),
            "--scenario",
            str(sc),
            "--policy",
            "fixed:delay=0.05",
            "--only-summary",
            "--message-rate",
            "0",
            "--ping-interval",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = read_events(run_dir)
    assert events, r.stdout[-2000:] + r.stderr[-3000:]
    every_attempt_has_one_outcome(events)
    ticks = [json.loads(x) for x in (run_dir / "server.jsonl").read_text().splitlines()]
    ticks = [t for t in ticks if t.get("type") == "tick"]
    answered = sum(t.get("accepted", 0) + t.get("rejected", {}).get("1013", 0) for t in ticks)
    opens = sum(e["event"] == "open" for e in events)
    assert opens > 100 and opens == answered, (opens, answered)
    sent_1013 = sum(t.get("closes_sent", {}).get("1013", 0) for t in ticks)
    got_1013 = sum(e["event"] == "close" and e["code"] == 1013 and e["by"] == "server" for e in events)
    assert got_1013 == sent_1013
