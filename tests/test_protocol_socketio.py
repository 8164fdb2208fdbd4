"""Socket.IO v5 over WebSocket: the adapter's packets (pure), and Locust against a real python-socketio server.

The server's own counts (namespace connects, CONNECT_ERRORs, disconnects) must equal what the harness
recorded (ready events, fail kind=protocol, closes of ready connections)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_user_e2e import locust_cmd, read_events
from wsstorm.load.protocols import SocketIO, compile_app

PEER = Path(__file__).parent / "peers" / "socketio_server.py"


def test_socketio_url_and_packets():
    spec = compile_app("socketio", "", "", None, ["token=abc{n}"], "")
    assert spec.url("ws://127.0.0.1:5/") == "ws://127.0.0.1:5/socket.io/?EIO=4&transport=websocket"
    assert spec.url("ws://h:5/io/?x=1") == "ws://h:5/io/?EIO=4&transport=websocket&x=1"
    a = spec.adapter("local/1", 3, 1, "r")
    assert isinstance(a, SocketIO) and a.gated and not a.ws_pings and a.hello() == []
    step = a.on_text(b'0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')
    assert step.replies == ('40{"token":"abc3"}',) and a.dead_after == 45.0
    assert a.on_text(b"2").replies == ("3",)
    assert a.on_text(b'40{"sid":"y"}').ready and a.ready
    assert not a.on_text(b'40{"sid":"y"}').ready  # only once
    assert a.message(7, 16).startswith('42["message", "7 ')
    assert a.on_text(b'42["message","7 xxxxxxxxxxxx"]').echo == 7
    assert a.on_text(b'421["message","8 xx"]').echo == 8  # an ack id before the array
    assert a.on_text(b'42["other",{"a":1}]').message
    fail = a.on_text(b'44{"message":"bad token"}').fail
    assert fail == "Socket.IO CONNECT_ERROR: bad token"
    assert a.close_reason(1000, None) == "transport close"
    assert a.on_text(b"41").end
    assert a.close_reason(1005, None) == "io server disconnect"
    assert a.close_reason(1006, "ping_timeout") == "ping timeout"
    assert a.on_text(b"0 not json").fail  # a broken open packet is a protocol failure
    assert a.on_text(b"").replies == () and a.on_text(b"42 garbage").echo is None


@pytest.mark.parametrize(
    "packet",
    [
        b'0{"pingInterval":"nan","pingTimeout":1}',
        b'0{"pingInterval":1e400,"pingTimeout":1}',
        b"0[1]",
        b'0{"pingInterval":-5000,"pingTimeout":1000}',
        b'0{"pingInterval":1000}',
    ],
)
def test_a_bad_open_packet_is_a_protocol_failure(packet):
    a = SocketIO({})
    assert a.on_text(packet).fail and a.dead_after is None


@given(st.binary(max_size=300))
def test_any_packet_is_read_without_raising(data):
    a = SocketIO({"token": "x"})
    for d in (data, b"4" + data, b"42" + data, b"0" + data):
        step = a.on_text(d)
        assert all(isinstance(r, str) for r in step.replies)


class Peer:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([sys.executable, str(PEER), *args], stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert line, "the Socket.IO peer did not start"
        self.port = json.loads(line)["port"]
        self.url = f"ws://127.0.0.1:{self.port}/"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read())

    def settled(self, want_disconnects: int) -> dict:
        """The counts once the server has seen every disconnect (bounded wait)."""
        end = time.monotonic() + 5
        s = self.stats()
        while sum(s["disconnects"].values()) < want_disconnects and time.monotonic() < end:
            time.sleep(0.1)
            s = self.stats()
        return s

    def stop(self) -> None:
        self.p.kill()
        self.p.wait(5)


def run(peer: Peer, run_dir: Path, users: int, seconds: int, *extra: str) -> list[dict]:
    r = subprocess.run(
        locust_cmd(peer.url, run_dir, users=users, seconds=seconds, extra=extra),
        capture_output=True,
        text=True,
        timeout=90,
    )
    events = read_events(run_dir)
    assert events, r.stdout[-2000:] + r.stderr[-3000:]
    return events


def per_conn(events: list[dict]) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = {}
    for e in events:
        if e["event"] in ("open", "ready", "fail", "close"):
            out.setdefault((e["user"], e["conn"]), []).append(e["event"])
    return out


@pytest.mark.e2e
def test_socketio_against_python_socketio(tmp_path, monkeypatch):
    """Ready = the namespace CONNECT ack; heartbeats answered (the server's 1 s pings never drop anyone);
    events echo; a server-side DISCONNECT (41) is `io server disconnect` and the client closes the socket,
    as socket.io-client's Manager does; the counts reconcile exactly."""
    monkeypatch.setenv("SIO_TOKEN", "s3cret-sio-token")
    peer = Peer("--token", "s3cret-sio-token", "--ping-interval", "1", "--ping-timeout", "1", "--kick-after", "1.5")
    try:
        events = run(
            peer,
            tmp_path / "run",
            3,
            4,
            "--protocol",
            "socketio",
            "--init-payload",
            "token={env:SIO_TOKEN}",
            "--message-rate",
            "4",
            "--policy",
            "socketio",
        )
        closes = [e for e in events if e["event"] == "close"]
        stats = peer.settled(len(closes))
    finally:
        peer.stop()
    ready = [e for e in events if e["event"] == "ready"]
    assert len(ready) >= 6, per_conn(events)  # 3 users, then again after the kick
    assert all(e["ready_ms"] >= 0 for e in ready)
    assert stats["connects"] == len(ready), (stats, per_conn(events))
    assert stats["rejected"] == 0 and not [e for e in events if e["event"] == "fail"]
    assert sum(stats["disconnects"].values()) == len(closes), (stats, closes)
    assert stats["kicked"] == 3
    kicked = [e for e in closes if e.get("app_reason") == "io server disconnect"]
    assert len(kicked) == 3, closes
    assert not [e for e in events if e["event"] == "dead"]  # pings answered: never a ping timeout
    echoes = [e for e in events if e["event"] == "echo"]
    assert len(echoes) >= 10 and stats["messages"] >= len(echoes)
    for seq in per_conn(events).values():
        assert seq[:2] == ["open", "ready"] and seq[-1] == "close", seq
    # the token never reached the run folder
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert b"s3cret-sio-token" not in f.read_bytes(), f


@pytest.mark.e2e
def test_socketio_connect_error_is_a_failure(tmp_path):
    """A refused namespace connect (CONNECT_ERROR 44) is `fail kind=protocol` after `open`; the client then
    closes; the server's count of refusals equals the harness's."""
    peer = Peer("--token", "right-token")
    try:
        events = run(
            peer,
            tmp_path / "run",
            2,
            3,
            "--protocol",
            "socketio",
            "--init-payload",
            "token=wrong",
            "--policy",
            "fixed:delay=0.5",
        )
        stats = peer.stats()
    finally:
        peer.stop()
    fails = [e for e in events if e["event"] == "fail"]
    assert fails and {e["kind"] for e in fails} == {"protocol"}
    assert all("CONNECT_ERROR" in e["detail"] for e in fails)
    # a refusal crossing the stop is not recorded as a failure: the server's count may not exceed ours by more
    assert stats["connects"] == 0 and not [e for e in events if e["event"] == "ready"]
    assert stats["rejected"] == len(fails), (stats, per_conn(events))
    waits = [e for e in events if e["event"] == "wait"]
    assert waits and all(e["after_code"] == "protocol" for e in waits)
    for seq in per_conn(events).values():
        assert seq in (["open", "fail", "close"], ["open", "close"]), seq
