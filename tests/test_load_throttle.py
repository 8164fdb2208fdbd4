"""A client-side throttle (sre-throttle) skips attempts locally: the wait event says how many."""

from __future__ import annotations

import subprocess

import pytest

from tests.test_user_e2e import free_port, locust_cmd, read_events

pytestmark = pytest.mark.e2e


def test_wait_carries_the_skipped_attempts(tmp_path):
    run_dir = tmp_path / "run"
    argv = locust_cmd(f"ws://127.0.0.1:{free_port()}/", run_dir, seconds=2)
    argv[argv.index("fixed:delay=30")] = "fixed:delay=0.05+sre-throttle"
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    events = read_events(run_dir)
    waits = [e for e in events if e["event"] == "wait"]
    assert waits, r.stdout[-2000:] + r.stderr[-2000:]
    assert all(e["policy"] == "fixed:delay=0.05+sre-throttle" for e in waits)
    skipped = [e["skipped"] for e in waits if "skipped" in e]
    assert skipped and all(isinstance(n, int) and n >= 1 for n in skipped)
    # each skipped attempt waited its own delay: the wait holds them all
    assert all(e["delay"] >= 0.05 * (1 + e.get("skipped", 0)) - 1e-9 for e in waits)
    fails = [e for e in events if e["event"] == "fail"]
    assert len(fails) == len(waits) and {e["kind"] for e in fails} == {"refused"}
