"""Lame-duck mode of `wsstorm serve` (NATS's): refuse at once, wait the grace, close clients spread over the window."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time

import pytest

from tests.peers.wsclients import attempt, close_of, connect
from wsstorm.errors import UsageError
from wsstorm.run.scenario import from_dict
from wsstorm.target.control import AdminError, start_target
from wsstorm.target.options import check_lame_duck
from wsstorm.target.sessions import lame_duck_offsets


def test_offsets_spread_evenly_over_the_window():
    assert lame_duck_offsets(0, 5.0) == []
    assert lame_duck_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert lame_duck_offsets(1, 3.0) == [0.0]
    assert lame_duck_offsets(3, 0.0) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("grace", "duration", "code", "word"),
    [(-1, 1, 1001, "grace"), (0, -0.5, 1001, "duration"), (0, float("inf"), 1012, "duration"), (1, 1, 1000, "code")],
)
def test_bad_lame_duck_parameters_are_one_line_errors(grace, duration, code, word):
    with pytest.raises(UsageError, match=word):
        check_lame_duck(grace, duration, code)


def _scenario(fault: dict, duration: float = 30) -> dict:
    return {"duration": duration, "faults": [{"at": 1, "action": "lame-duck", **fault}]}


def test_scenario_lame_duck_fault_validated():
    sc = from_dict(_scenario({"grace": 2, "duration": 4, "code": 1012}))
    f = sc.faults[0]
    assert dict(f.params) == {"grace": 2.0, "duration": 4.0, "code": 1012}
    assert f.span() == 7.0  # serves again at 1 + 2 + 4
    assert sc.needs_target() and not sc.needs_proxy()
    with pytest.raises(UsageError, match="code must be 1001 or 1012"):
        from_dict(_scenario({"code": 4000}))
    with pytest.raises(UsageError, match="grace must be >= 0"):
        from_dict(_scenario({"grace": -1}))
    with pytest.raises(UsageError, match="serves again at"):
        from_dict(_scenario({"grace": 5, "duration": 30}))
    with pytest.raises(UsageError, match="unknown key 'down'"):
        from_dict(_scenario({"down": 3}))


def test_plan_keeps_the_lame_duck_window_as_a_parameter():
    from wsstorm.run.faults import plan

    sc = from_dict(_scenario({"grace": 1, "duration": 3, "code": 1001}))
    (firing,) = plan(sc.faults)  # no automatic heal: the window is the server's own parameter
    assert firing.action == "lame-duck" and firing.params == {"grace": 1.0, "duration": 3.0, "code": 1001}


def _read(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.e2e
def test_lame_duck_refuses_then_closes_spread_over_the_window_then_serves(tmp_path):
    out = tmp_path / "server.jsonl"
    n, grace, window = 6, 1.0, 2.0
    with start_target(capacity=50, metrics_out=out) as t:
        held = [connect(t.url) for _ in range(n)]
        closes: list[tuple[float, int | None]] = []
        lock = threading.Lock()

        def watch(ws):
            code, _ = close_of(ws, timeout=10)
            with lock:
                closes.append((time.monotonic(), code))

        threads = [threading.Thread(target=watch, args=(ws,), daemon=True) for ws in held]
        for th in threads:
            th.start()
        t0 = time.monotonic()
        answer = t.admin.lame_duck(grace=grace, duration=window, code=1012)
        assert answer["ok"] and answer["procs"] == [0]
        # during the grace: no new connection is accepted, nobody is closed yet (the admin call
        # returns once the command is on the pipe: give the serving process a moment to read it)
        time.sleep(0.3)
        kind, _ = attempt(t.url, timeout=2)
        assert kind == "refused"
        assert time.monotonic() - t0 < grace and not closes
        with pytest.raises(AdminError) as exc:  # a second lame duck while in one: nothing to do
            t.admin.lame_duck(grace=0, duration=0)
        assert exc.value.status == 409
        for th in threads:
            th.join(grace + window + 5)
        assert len(closes) == n and all(code == 1012 for _, code in closes)
        times = sorted(c - t0 for c, _ in closes)
        assert times[0] >= grace - 0.05  # nobody before the grace ended
        assert times[-1] <= grace + window + 0.5
        # spread: the i-th close near grace + window*i/n, not all at once
        assert times[-1] - times[0] >= window * (n - 1) / n - 0.4
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < 2 * window / n + 0.3
        # after the window it serves again
        ws = connect(t.url) if _serving_again(t.url, deadline=t0 + grace + window + 3) else None
        assert ws is not None
        ws.send("back")
        assert ws.recv() == "back"
        ws.close()
        faults = [r for r in _read(out) if r.get("type") == "fault"]
        (fault,) = [r for r in faults if r["fault"] == "lame-duck"]
        assert (fault["grace_s"], fault["duration_s"], fault["code"], fault["down_s"]) == (1.0, 2.0, 1012, 3.0)
        time.sleep(1.2)
        ticks = [r for r in _read(out) if r.get("type") == "tick"]
        assert any(tk["state"] == "lame-duck" and not tk["listening"] for tk in ticks)
        assert sum(tk["closes_sent"].get("1012", 0) for tk in ticks) == n


def _serving_again(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        kind, ws = attempt(url, timeout=1)
        if kind == "open":
            ws.close()
            return True
        time.sleep(0.1)
    return False


@pytest.mark.e2e
def test_sigusr2_starts_a_lame_duck_with_the_command_line_parameters(tmp_path):
    out = tmp_path / "server.jsonl"
    with start_target(
        capacity=10, metrics_out=out, lame_duck_grace=0.2, lame_duck_duration=0.4, lame_duck_code=1001
    ) as t:
        ws = connect(t.url)
        t.proc.send_signal(signal.SIGUSR2)
        code, reason = close_of(ws, timeout=5)
        assert (code, reason) == (1001, "lame duck")
        assert _serving_again(t.url, deadline=time.monotonic() + 4)
        assert any(r.get("fault") == "lame-duck" and r["code"] == 1001 for r in _read(out))


@pytest.mark.e2e
def test_bad_lame_duck_over_the_admin_api_is_a_400():
    with start_target(capacity=10) as t:
        for body in ({"code": 1013}, {"grace": -1}, {"duration": "x"}):
            with pytest.raises(AdminError) as exc:
                t.admin.call("POST", "/lame-duck", body)
            assert exc.value.status == 400


E2E_SCENARIO = """
name = "lame-duck-e2e"
duration = 6
users = 6
spawn_rate = 50

[target]
capacity = 50
handshake_cost_ms = 0
session_cost_ms = 5
resume_window = 10
resume_cost_ms = 1

[[faults]]
at = 1
action = "lame-duck"
grace = 0.5
duration = 1.5
code = 1012
"""


@pytest.mark.e2e
def test_locust_run_records_resumed_opens_after_a_lame_duck(tmp_path):
    """The embedded Locust user sends its identity by default; after the lame duck's 1012s the users
    come back and resume; open events, server ticks and the faults log agree."""
    import subprocess
    import sys
    from pathlib import Path

    from wsstorm.analysis.server_log import disruptions_of

    sc = tmp_path / "ld.toml"
    sc.write_text(E2E_SCENARIO)
    run_dir = tmp_path / "run"
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "locust", "-f", str(root / "locustfile.py"), "--headless", "-u", "6", "-r", "50"]
    cmd += ["-t", "6s", "--run-dir", str(run_dir), "--scenario", str(sc), "--policy", "fixed:delay=0.3"]
    cmd += ["--only-summary", "--stop-timeout", "2", "--message-rate", "0", "--ping-interval", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    events = []
    for shard in sorted(run_dir.glob("events-*.jsonl")):
        events += [json.loads(x) for x in shard.read_text().splitlines() if x.strip()]
    assert events, r.stdout[-2000:] + r.stderr[-3000:]
    opens = [e for e in events if e["event"] == "open"]
    assert all("resumed" in e for e in opens)
    assert sum(not e["resumed"] for e in opens) == 6  # each user's first session is new
    closes = [e for e in events if e["event"] == "close" and e["by"] == "server"]
    assert sum(e["code"] == 1012 for e in closes) == 6
    assert sum(e["resumed"] for e in opens) == 6  # every user came back within the window and resumed
    refused = [e for e in events if e["event"] == "fail" and e["kind"] == "refused"]
    assert refused  # retries during the lame duck met no listener
    ticks = [json.loads(x) for x in (run_dir / "server.jsonl").read_text().splitlines() if '"tick"' in x]
    assert sum(tk.get("resumed", 0) for tk in ticks) == 6
    assert sum(tk.get("session_starts", 0) for tk in ticks) == 6
    faults = [json.loads(x) for x in (run_dir / "faults.jsonl").read_text().splitlines()]
    assert [(f["fault"], f["ok"]) for f in faults] == [("lame-duck", True)]
    assert faults[0]["params"] == {"grace": 0.5, "duration": 1.5, "code": 1012}
    d = disruptions_of(faults, [], faults[0]["t"])
    assert list(d["fault"]) == ["lame-duck"]  # the analysis counts it as a disruption
    assert list(d["end"] - d["t"]) == [2.0]  # its trigger ends when the target serves again
    server_faults = [json.loads(x) for x in (run_dir / "server.jsonl").read_text().splitlines() if '"fault"' in x]
    assert list(disruptions_of([], server_faults, 0.0)["end"] - disruptions_of([], server_faults, 0.0)["t"]) == [2.0]
    from wsstorm.analysis.load import load_run
    from wsstorm.analysis.report import session_rows

    assert session_rows(load_run(run_dir)) == [("Sessions resumed / new / starts refused", "6 / 6 / 0 (50% resumed)")]


@pytest.mark.e2e
def test_a_freed_slot_does_not_reopen_a_lame_duck_in_refuse_mode():
    with start_target(capacity=2, overload="refuse") as t:
        held = [connect(t.url) for _ in range(2)]  # full: the refuse mode stops listening
        t.admin.lame_duck(grace=1.5, duration=0.2, code=1001)
        time.sleep(0.2)
        held.pop().close()  # a slot frees during the grace: refuse mode alone would listen again
        time.sleep(0.3)
        assert attempt(t.url, timeout=2)[0] == "refused"
        assert close_of(held[0], timeout=5)[0] == 1001
        assert _serving_again(t.url, deadline=time.monotonic() + 4)
