"""The Locust user end to end: each way a connection ends produces exactly the expected events.

Real Locust (``locust -f locustfile.py --headless``) runs as child processes, all at once,
against the scripted peer (tests/peers/scripted_server.py) on loopback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEER = Path(__file__).parent / "peers" / "scripted_server.py"
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py")]

pytestmark = pytest.mark.e2e


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_events(run_dir: Path) -> list[dict]:
    out = []
    for shard in sorted(run_dir.glob("events-*.jsonl")):
        text = shard.read_text(encoding="utf-8")
        assert text == "" or text.endswith("\n"), f"{shard} ends mid-line"
        out += [json.loads(line) for line in text.splitlines()]
    return out


def locust_cmd(host: str, run_dir: Path, users: int = 1, seconds: float = 2, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        *LOCUST,
        "--headless",
        "-u",
        str(users),
        "-r",
        str(max(users, 1)),
        "-t",
        f"{seconds}s",
        "--host",
        host,
        "--run-dir",
        str(run_dir),
        "--only-summary",
        "--seed",
        "7",
        "--policy",
        "fixed:delay=30",
        "--message-rate",
        "0",
        "--ping-interval",
        "0",
        "--stop-timeout",
        "2",
        *extra,
    ]


# path key -> (URL path, extra locust args)
CASES = {
    "1000": ("/close/1000?reason=bye", ()),
    "1001": ("/close/1001", ()),
    "1012": ("/close/1012", ()),
    "1013": ("/close/1013?reason=overloaded%3B%20retry-after%3D2", ()),
    "1005": ("/close-empty", ()),
    "invalid": ("/close/2000?reason=x", ()),
    "badutf8": ("/close-badutf8", ()),
    "rst": ("/rst", ()),
    "eof": ("/eof", ()),
    "ping_timeout": ("/silent", ("--ping-interval", "0.3", "--pong-timeout", "0.4")),
    "http503": ("/http/503?retry_after=7", ()),
    "refused": (None, ()),
    "echo": ("/echo", ("--message-rate", "5", "--ping-interval", "0.2", "--pong-timeout", "1")),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    peer = subprocess.Popen([sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True)
    try:
        port = json.loads(peer.stdout.readline())["port"]
        base = tmp_path_factory.mktemp("runs")
        procs = {}
        for key, (path, extra) in CASES.items():
            host = f"ws://127.0.0.1:{port}{path}" if path else f"ws://127.0.0.1:{free_port()}/"
            run_dir = base / key
            procs[key] = (
                run_dir,
                subprocess.Popen(
                    locust_cmd(host, run_dir, extra=extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                ),
            )
        results = {}
        for key, (run_dir, proc) in procs.items():
            out, _ = proc.communicate(timeout=90)
            results[key] = (read_events(run_dir), out, proc.returncode, run_dir)
        yield results
    finally:
        peer.kill()
        peer.wait()


def seq(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def one_user(results, key):
    events, out, _rc, _ = results[key]
    assert events, out[-3000:]
    assert {e["user"] for e in events} == {"local/1"}
    for e in events:
        assert e["v"] == 1 and e["worker"] == "local" and isinstance(e["t"], float) and e["run"]
    return events


@pytest.mark.parametrize("code", [1000, 1001, 1012, 1013])
def test_clean_close_codes(runs, code):
    ev = one_user(runs, str(code))
    assert seq(ev) == ["attempt", "open", "close", "wait", "stop"]
    close = ev[2]
    assert (close["code"], close["by"], close["clean"], close["conn"]) == (code, "server", True, 1)
    assert ev[3]["after_code"] == code and ev[3]["delay"] == 30 and ev[3]["policy"] == "fixed:delay=30"
    assert ev[0]["attempt"] == 1 and ev[0]["planned_delay"] == 0.0 and ev[0]["t"] >= ev[0]["scheduled_t"]
    assert ev[1]["connect_ms"] > 0 and close["uptime_s"] >= 0.15
    if code == 1013:
        assert close["reason"] == "overloaded; retry-after=2"
    if code == 1000:
        assert close["reason"] == "bye"


def test_no_code_is_1005(runs):
    ev = one_user(runs, "1005")
    assert seq(ev) == ["attempt", "open", "close", "wait", "stop"]
    assert (ev[2]["code"], ev[2]["by"]) == (1005, "server")


def test_invalid_code_is_protocol_error_with_raw_value(runs):
    ev = one_user(runs, "invalid")
    assert seq(ev) == ["attempt", "open", "close", "wait", "stop"]
    c = ev[2]
    assert (c["code"], c["raw_code"], c["raw_reason_hex"], c["clean"]) == (1002, 2000, "78", False)
    assert "2000" in c["protocol_error"]


def test_non_utf8_reason(runs):
    c = one_user(runs, "badutf8")[2]
    assert (c["code"], c["raw_code"], c["raw_reason_hex"]) == (1007, 1000, "fffe626164")


@pytest.mark.parametrize("key,how", [("rst", "reset"), ("eof", "eof")])
def test_tcp_end_without_close_is_1006(runs, key, how):
    ev = one_user(runs, key)
    assert seq(ev) == ["attempt", "open", "close", "wait", "stop"]
    assert (ev[2]["code"], ev[2]["how"], ev[2]["by"], ev[2]["clean"]) == (1006, how, "none", False)
    assert ev[3]["after_code"] == 1006


def test_ping_timeout_is_dead_then_1006(runs):
    ev = one_user(runs, "ping_timeout")
    assert seq(ev) == ["attempt", "open", "dead", "close", "wait", "stop"]
    assert 0.3 <= ev[2]["silence_s"] < 1.5
    assert (ev[3]["code"], ev[3]["how"]) == (1006, "ping_timeout")


def test_http_503_with_retry_after(runs):
    ev = one_user(runs, "http503")
    assert seq(ev) == ["attempt", "fail", "wait", "stop"]
    f = ev[1]
    assert (f["kind"], f["status"], f["retry_after"]) == ("http_status", 503, 7.0)
    assert ev[2]["after_code"] == "http_503" and ev[2]["conn"] == 1


def test_refused(runs):
    ev = one_user(runs, "refused")
    assert seq(ev) == ["attempt", "fail", "wait", "stop"]
    assert ev[1]["kind"] == "refused" and ev[2]["after_code"] == "refused"


def test_held_connection_closed_by_client_at_stop(runs):
    events, out, rc, run_dir = runs["echo"]
    echoes = [e for e in events if e["event"] == "echo"]
    assert seq([e for e in events if e["event"] != "echo"]) == ["attempt", "open", "close", "stop"]
    events = [e for e in events if e["event"] != "echo"]
    # every echo's round trip is an event of the open connection (collateral latency)
    assert len(echoes) >= 3 and all(e["conn"] == 1 and 0 < e["rtt_ms"] < 1000 for e in echoes)
    assert events[1]["t"] <= echoes[0]["t"] and echoes[-1]["t"] <= events[2]["t"]
    assert (events[2]["by"], events[2]["code"], events[2]["clean"]) == ("client", 1000, True)
    assert rc == 0, out[-2000:]
    # echo round trips and the connect reached Locust's own stats
    assert "WS       message" in out and "WS       connect" in out
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["ended"] >= m["started"] and m["workers"] == ["local"] and m["policy"] == "fixed:delay=30"
    assert m["seed"] == 7 and m["embedded_target"] is False


def test_locust_names_are_low_cardinality(runs):
    _, out, _, _ = runs["1013"]
    assert "close 1013" in out
    _, out, _, _ = runs["http503"]
    assert "fail http 503" in out
    _, out, _, _ = runs["refused"]
    assert "fail refused" in out


def test_bad_policy_is_one_line_exit_2(tmp_path):
    r = subprocess.run(
        [
            *LOCUST,
            "--headless",
            "-u",
            "1",
            "-t",
            "1s",
            "--host",
            "ws://127.0.0.1:9/",
            "--run-dir",
            str(tmp_path),
            "--policy",
            "no-such-policy",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "no-such-policy" in r.stderr


SCENARIO = """
name = "e2e"
description = "overload closes, then a restart (1012), then a crash (1006)"
duration = 6
users = 8
spawn_rate = 50

[target]
capacity = 6
handshake_rate = 500
handshake_cost_ms = 0
overload = "close"

[client]
message_rate = 1
ping_interval = 1
pong_timeout = 2

[[faults]]
at = 1.5
action = "restart"
mode = "all"
down = 0.5

[[faults]]
at = 3.5
action = "crash"
down = 0.5
"""


def test_embedded_target_closes_match_the_server(tmp_path):
    """No --host: the embedded target runs; the scenario's faults fire; closes the clients record
    by code equal the Close frames the server says it sent."""
    sc = tmp_path / "e2e.toml"
    sc.write_text(SCENARIO)
    run_dir = tmp_path / "run"
    r = subprocess.run(
        [
            *LOCUST,
            "--headless",
            "-u",
            "8",
            "-r",
            "50",
            "-t",
            "6s",
            "--run-dir",
            str(run_dir),
            "--scenario",
            str(sc),
            "--policy",
            "fixed:delay=0.3",
            "--only-summary",
            "--stop-timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = read_events(run_dir)
    assert events, r.stdout[-2000:] + r.stderr[-3000:]
    closes = [e for e in events if e["event"] == "close"]
    server = [json.loads(line) for line in (run_dir / "server.jsonl").read_text().splitlines()]
    # Exact, the crash included: what the killed process counted after its last tick is in
    # the supervisor's `partial` tick.
    assert any(r.get("partial") for r in server), "no partial tick after the crash"
    by_server = {}
    for e in closes:
        if e["by"] == "server":
            by_server[str(e["code"])] = by_server.get(str(e["code"]), 0) + 1
    sent = {}
    for rec in server:
        if rec.get("type") == "tick":
            for k, v in rec["closes_sent"].items():
                if v:
                    sent[k] = sent.get(k, 0) + v
    assert by_server == sent, (by_server, sent)
    assert by_server.get("1012", 0) >= 6 and by_server.get("1013", 0) >= 1
    crashed = [e for e in closes if e["code"] == 1006]
    assert len(crashed) >= 6 and {e["how"] for e in crashed} <= {"reset", "eof", "ping_timeout"}
    faults = [json.loads(x) for x in (run_dir / "faults.jsonl").read_text().splitlines()]
    assert [f["fault"] for f in faults] == ["restart", "crash"]
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["embedded_target"] is True and m["scenario"]["name"] == "e2e" and m["host"].startswith("ws://127.0.0.1:")
    # the run ended on time: no reader left blocked
    stops = [e for e in events if e["event"] == "stop"]
    assert len(stops) == 8
