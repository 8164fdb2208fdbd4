"""The fault scheduler: real HTTP calls and real shell commands, fired on time, logged to faults.jsonl."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from wsstorm.errors import UsageError
from wsstorm.run import faults
from wsstorm.run import scenario as scenarios


def _scenario(body: str, duration: float = 10) -> scenarios.Scenario:
    return scenarios.parse(f"duration = {duration}\nusers = 1\n" + body, source="t.toml")


def _read(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((time.time(), self.command, self.path, dict(self.headers), body))
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_PUT = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_plan_expands_repeat_and_adds_heals():
    sc = _scenario(
        '[target]\nproxy = true\n'
        '[[faults]]\nat = 1\naction = "partition"\nduration = 2\nrepeat = 2\nevery = 4\n'
        '[[faults]]\nat = 2\naction = "latency"\nms = 200\nduration = 1\n'
    )
    got = [(f.offset, f.action, f.params.get("ms"), f.auto) for f in faults.plan(sc.faults)]
    assert got == [
        (1, "partition", None, False),
        (2, "latency", 200, False),
        (3, "heal", None, True),
        (3, "latency", 0, True),
        (5, "partition", None, False),
        (7, "heal", None, True),
    ]


@pytest.mark.integration
def test_shell_faults_fire_on_time_with_repeat(tmp_path: Path):
    marker = tmp_path / "marks"
    sc = _scenario(
        f'[[faults]]\nat = 0.3\naction = "shell"\ncommand = "echo $WSSTORM_FAULT_AT >> {marker}"\n'
        'repeat = 3\nevery = 0.25\n'
    )
    t0 = time.time()
    sched = faults.start_schedule(sc, None, tmp_path, t0)
    assert sched.wait(5)
    recs = _read(tmp_path)
    assert [r["fault"] for r in recs] == ["shell"] * 3 and all(r["ok"] for r in recs)
    for rec, offset in zip(recs, [0.3, 0.55, 0.8], strict=True):
        assert rec["at"] == pytest.approx(offset)
        assert 0 <= rec["t"] - (t0 + offset) < 0.1, rec  # fired within 100 ms of its time
        assert rec["v"] == 1 and "exit 0" in rec["detail"]
    assert marker.read_text().split() == ["0.3", "0.55", "0.8"]


@pytest.mark.integration
def test_failed_and_slow_shell_commands_are_recorded_not_fatal(tmp_path: Path):
    sc = _scenario(
        '[[faults]]\nat = 0\naction = "shell"\ncommand = "echo boom >&2; exit 3"\n'
        '[[faults]]\nat = 0.1\naction = "shell"\ncommand = "sleep 30"\ntimeout = 0.3\n'
        '[[faults]]\nat = 0.2\naction = "shell"\ncommand = "true"\n'
    )
    sched = faults.start_schedule(sc, None, tmp_path, time.time())
    assert sched.wait(5)
    by_at = {r["at"]: r for r in _read(tmp_path)}
    assert by_at[0]["ok"] is False and "exit 3" in by_at[0]["detail"] and "boom" in by_at[0]["detail"]
    assert by_at[0.1]["ok"] is False and "timed out" in by_at[0.1]["detail"]
    # the slow command did not hold up the one after it
    assert by_at[0.2]["ok"] is True and by_at[0.2]["late_ms"] < 100


@pytest.mark.integration
def test_http_faults_call_the_users_server(tmp_path: Path, http_server):
    url, seen = http_server
    sc = _scenario(
        f'[[faults]]\nat = 0.2\naction = "http"\nurl = "{url}/deploy"\nmethod = "PUT"\n'
        'body = "{\\"go\\": 1}"\nheaders = { X-Token = "abc" }\n'
        f'[[faults]]\nat = 0.3\naction = "http"\nurl = "{url}/fail"\n'
        '[[faults]]\nat = 0.4\naction = "http"\nurl = "http://127.0.0.1:9/closed"\ntimeout = 1\n'
    )
    t0 = time.time()
    sched = faults.start_schedule(sc, None, tmp_path, t0)
    assert sched.wait(5)
    first = seen[0]
    assert first[1:3] == ("PUT", "/deploy") and first[3]["X-Token"] == "abc" and first[4] == b'{"go": 1}'
    assert abs(first[0] - (t0 + 0.2)) < 0.1
    recs = {r["at"]: r for r in _read(tmp_path)}
    assert recs[0.2]["ok"] and recs[0.2]["detail"].startswith("HTTP 200")
    assert not recs[0.3]["ok"] and "HTTP 500" in recs[0.3]["detail"]
    assert not recs[0.4]["ok"] and "Error" in recs[0.4]["detail"]
    assert "headers" not in recs[0.2]["params"]  # secrets in headers stay out of the log


@pytest.mark.integration
def test_target_faults_post_the_admin_api(tmp_path: Path, http_server):
    url, seen = http_server
    sc = _scenario(
        '[target]\nproxy = true\n'
        '[[faults]]\nat = 0\naction = "restart"\nmode = "drain"\nbatch = 5\ninterval = 0.1\n'
        '[[faults]]\nat = 0.1\naction = "partition"\nduration = 0.1\n'
        '[[faults]]\nat = 0.3\naction = "capacity"\ncapacity = 7\n'
    )
    sched = faults.start_schedule(sc, (url, "s3cret"), tmp_path, time.time())
    assert sched.wait(5)
    calls = [(s[2], json.loads(s[4] or b"null"), s[3]["Authorization"]) for s in seen]
    assert calls == [
        ("/restart", {"mode": "drain", "batch": 5, "interval": 0.1, "down": 0.0}, "Bearer s3cret"),
        ("/partition", {}, "Bearer s3cret"),
        ("/heal", {}, "Bearer s3cret"),
        ("/capacity", {"capacity": 7}, "Bearer s3cret"),
    ]
    assert [r["fault"] for r in _read(tmp_path)] == ["restart", "partition", "heal", "capacity"]


@pytest.mark.integration
def test_stop_fires_nothing_more(tmp_path: Path):
    sc = _scenario(
        '[[faults]]\nat = 0.1\naction = "shell"\ncommand = "true"\n'
        '[[faults]]\nat = 3\naction = "shell"\ncommand = "true"\n'
    )
    sched = faults.start_schedule(sc, None, tmp_path, time.time())
    time.sleep(0.4)
    t = time.time()
    sched.stop()
    assert time.time() - t < 1 and sched.done
    assert [r["at"] for r in _read(tmp_path)] == [0.1]


def test_target_faults_without_admin_are_refused(tmp_path: Path):
    with pytest.raises(UsageError, match="admin API"):
        faults.start_schedule(scenarios.load("restart"), None, tmp_path, time.time())


def test_admin_endpoint_accepts_control_objects():
    from wsstorm.target.control import AdminClient

    assert faults.admin_endpoint(AdminClient("http://127.0.0.1:9/", "tok")) == ("http://127.0.0.1:9", "tok")
    assert faults.admin_endpoint(("http://x:1", "t")) == ("http://x:1", "t")
    assert faults.admin_endpoint(None) is None

    class FakeTarget:  # the attribute shape of control.TargetProcess, without a process
        url = "ws://127.0.0.1:5"
        admin_url = "http://127.0.0.1:6"
        token = "tt"
        admin = AdminClient("http://127.0.0.1:6", "tt")

    assert faults.admin_endpoint(FakeTarget()) == ("http://127.0.0.1:6", "tt")
