"""graphql-transport-ws: the adapter's messages (pure), its close codes named in reports, and Locust against
a real GraphQL server (ariadne under uvicorn): acks, closes and subscriptions reconcile with the harness."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_user_e2e import locust_cmd, read_events
from wsstorm.analysis import charts
from wsstorm.load.protocols import GRAPHQL_SUBPROTOCOL, GraphQLWS, compile_app
from wsstorm.runfolder import schemas

PEER = Path(__file__).parent / "peers" / "graphql_server.py"


def test_graphql_ws_messages():
    spec = compile_app("graphql-ws", "", "", None, ["token=t-{user}"], "subscription { ticks }")
    assert spec.subprotocols(()) == (GRAPHQL_SUBPROTOCOL,)
    assert spec.subprotocols(("x", GRAPHQL_SUBPROTOCOL)) == ("x", GRAPHQL_SUBPROTOCOL)
    assert spec.url("ws://h:1/graphql") == "ws://h:1/graphql"
    a = spec.adapter("w/1", 1, 1, "r")
    assert isinstance(a, GraphQLWS) and a.gated and a.ws_pings
    assert json.loads(a.hello()[0]) == {"type": "connection_init", "payload": {"token": "t-w/1"}}
    assert a.secrets == ("t-w/1",)
    step = a.on_text(b'{"type":"connection_ack"}')
    assert step.ready and json.loads(step.replies[0])["type"] == "subscribe"
    assert not a.on_text(b'{"type":"connection_ack"}').ready
    assert a.on_text(b'{"type":"ping"}').replies == ('{"type":"pong"}',)
    assert a.message(1, 64) == a.message(2, 64) == '{"type":"ping"}'
    assert a.on_text(b'{"type":"pong"}').echo == 1 and a.on_text(b'{"type":"pong"}').echo == 2
    assert a.on_text(b'{"type":"pong"}').echo is None  # an unsolicited pong echoes nothing
    assert a.on_text(b'{"type":"next","id":"1","payload":{}}').message
    assert a.on_text(b"not json").replies == () and a.on_text(b"[1]").echo is None
    assert a.close_reason(4403, None) == "Forbidden" and a.close_reason(1000, None) is None
    assert compile_app("graphql-ws", "", "", None, [], "").adapter("u", 1, 1, "r").hello() == [
        '{"type":"connection_init"}'
    ]


@pytest.mark.parametrize("code", [4400, 4401, 4403, 4406, 4408, 4409, 4429, 4500])
def test_graphql_close_codes_are_named_in_reports(code):
    label = schemas.close_code_label(code)
    assert label.startswith(f"{code} ") and "graphql-ws" in label
    assert charts.code_label(code) == label  # the charts and the report use the one table


@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.text(max_size=10) | st.integers(),
            lambda c: st.lists(c) | st.dictionaries(st.text(max_size=5), c),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_message_is_read_without_raising(data):
    a = GraphQLWS({}, "subscription { ticks }")
    a.message(1, 64)
    step = a.on_text(data)
    assert all(isinstance(r, str) for r in step.replies)


class Peer:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([sys.executable, str(PEER), *args], stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert line, "the GraphQL peer did not start"
        self.port = json.loads(line)["port"]
        self.url = f"ws://127.0.0.1:{self.port}/graphql"
        self._wait_listening()

    def _wait_listening(self) -> None:
        end = time.monotonic() + 10
        while True:
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read())

    def settled(self, closes: int) -> dict:
        end = time.monotonic() + 5
        s = self.stats()
        while s["disconnects"] < closes and time.monotonic() < end:
            time.sleep(0.1)
            s = self.stats()
        return s

    def stop(self) -> None:
        self.p.kill()
        self.p.wait(5)


def run(peer: Peer, run_dir: Path, users: int, seconds: int, *extra: str) -> tuple[list[dict], str]:
    r = subprocess.run(
        locust_cmd(peer.url, run_dir, users=users, seconds=seconds, extra=extra),
        capture_output=True,
        text=True,
        timeout=90,
    )
    events = read_events(run_dir)
    assert events, r.stdout[-2000:] + r.stderr[-3000:]
    return events, r.stdout + r.stderr


def count(events: list[dict], name: str) -> int:
    return sum(1 for e in events if e["event"] == name)


@pytest.mark.e2e
def test_graphql_ws_against_ariadne(tmp_path, monkeypatch):
    """connection_init with a templated token, connection_ack = ready, a subscription whose `next`
    messages count as messages, protocol pings as the echo; the server's counts equal the harness's."""
    monkeypatch.setenv("GQL_TOKEN", "gql-s3cret-token")
    peer = Peer("--token", "gql-s3cret-token")
    try:
        events, out = run(
            peer,
            tmp_path / "run",
            3,
            3,
            "--protocol",
            "graphql-ws",
            "--init-payload",
            "token={env:GQL_TOKEN}",
            "--subscribe",
            "subscription { ticks }",
            "--message-rate",
            "4",
        )
        stats = peer.settled(count(events, "close"))
    finally:
        peer.stop()
    opens = [e for e in events if e["event"] == "open"]
    assert opens and all(e["subprotocol"] == GRAPHQL_SUBPROTOCOL for e in opens)
    assert stats["sockets"] == len(opens)
    assert stats["acks"] == count(events, "ready") == len(opens) and stats["rejected"] == 0
    assert stats["subscriptions"] == len(opens)
    assert stats["disconnects"] == count(events, "close"), stats
    assert count(events, "echo") >= 10  # ping -> pong round trips
    assert count(events, "fail") == 0
    # Locust's "message" entries: every echo, and every `next` of the subscriptions (5 per second each)
    m = re.search(r"^\s*WS\s+message\s+(\d+)\s", out, re.MULTILINE)
    assert m and int(m.group(1)) >= count(events, "echo") + 5 * len(opens), out[-3000:]
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert b"gql-s3cret-token" not in f.read_bytes(), f


@pytest.mark.e2e
def test_graphql_ws_forbidden_is_named(tmp_path):
    """A refused connection_init: the server closes with 4403; the harness keeps the exact code, names
    it (app_reason), never records ready; the counts reconcile."""
    peer = Peer("--token", "right")
    try:
        events, _ = run(
            peer,
            tmp_path / "run",
            2,
            3,
            "--protocol",
            "graphql-ws",
            "--init-payload",
            "token=wrong",
            "--policy",
            "fixed:delay=0.5",
        )
        stats = peer.settled(count(events, "close"))
    finally:
        peer.stop()
    closes = [e for e in events if e["event"] == "close"]
    refused = [e for e in closes if e["code"] == 4403]
    assert refused and all(e["by"] == "server" and e["app_reason"] == "Forbidden" for e in refused)
    assert count(events, "ready") == 0 and stats["acks"] == 0
    assert stats["rejected"] == len(refused) and stats["sockets"] == count(events, "open")
    assert stats["disconnects"] == len(closes)
    waits = [e for e in events if e["event"] == "wait"]
    assert {w["after_code"] for w in waits} == {4403}
    attempts = [e["attempt"] for e in events if e["event"] == "attempt" and e["user"] == events[0]["user"]]
    assert attempts[:3] == [1, 2, 3]  # never ready: each attempt counts on from the last connected one
