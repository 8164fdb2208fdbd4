"""The application handshake on plain WebSocket: --ready-send / --ready-match / --ready-timeout.

Pure parts (the match rules, the option checks, the manifest's redaction) and Locust end to end against
the `websockets` library's echo server: `ready` {ready_ms} after `open`, or `fail kind=ready_timeout` and
the client's close; the server's own count of connections equals the harness's opens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_user_e2e import locust_cmd, read_events
from wsstorm.errors import UsageError
from wsstorm.load.options import redacted_options
from wsstorm.load.protocols import ReadyWS, compile_app, parse_matcher

WS_PEER = Path(__file__).parent / "peers" / "ws_server.py"
SECRET = "ready-s3cret-token"


@pytest.mark.parametrize(
    "spec,msg,want",
    [
        ("json:type=connection_ack", b'{"type":"connection_ack"}', True),
        ("json:type=connection_ack", b'{"type":"ka"}', False),
        ("json:type", b'{"type":null}', True),
        ("json:payload.status=ok", b'{"payload":{"status":"ok"}}', True),
        ("json:payload.status=ok", b'{"payload":"status"}', False),
        ("json:ok=true", b'{"ok":true}', True),
        ("json:ok=true", b'{"ok":"true"}', True),
        ("json:n=3", b'{"n":3}', True),
        ("json:list.1=b", b'{"list":["a","b"]}', True),
        ("json:type=x", b"not json", False),
        ("json:type=x", b"[1,2]", False),
        ("re:^welcome \\d+$", b"welcome 42", True),
        ("re:^welcome", b"hello", False),
        ("re:caf\u00e9", "caf\u00e9".encode(), True),
    ],
)
def test_ready_match(spec, msg, want):
    assert parse_matcher(spec).matches(msg) is want


@given(st.binary(max_size=200))
def test_a_match_never_raises(data):
    for spec in ("json:a.b=c", "json:a", "re:x+"):
        assert parse_matcher(spec).matches(data) in (True, False)


@pytest.mark.parametrize(
    "args,text",
    [
        (("ws", "", "xml:type=ack", None, [], ""), "--ready-match must be"),
        (("ws", "", "re:(", None, [], ""), "bad regex"),
        (("ws", "", "json:a..b=1", None, [], ""), "empty field"),
        (("ws", "", "", 0, [], ""), "--ready-timeout must be > 0"),
        (("ws", "", "", float("inf"), [], ""), "--ready-timeout must be > 0"),
        (("mqtt", "", "", None, [], ""), "--protocol must be one of"),
        (("socketio", "hi", "", None, [], ""), "are for --protocol ws"),
        (("ws", "", "", None, ["a=b"], ""), "--init-payload is for"),
        (("socketio", "", "", None, ["novalue"], ""), "must be 'key=value'"),
        (("ws", "", "", None, [], "subscription { x }"), "--subscribe is for"),
        (("ws", "hi {nope}", "", None, [], ""), "unknown field"),
    ],
)
def test_bad_application_options_are_one_line_errors(args, text):
    with pytest.raises(UsageError, match=text.replace("(", r"\(")) as exc:
        compile_app(*args)
    assert "\n" not in str(exc.value)


def test_plain_ws_has_no_adapter_and_gating_follows_the_match():
    assert not compile_app("", "", "", None, [], "").active  # the hot path stays untouched
    send_only = compile_app("ws", "hello", "", None, [], "")
    assert send_only.active and not send_only.gated
    spec = compile_app("ws", "auth {n} {env:HOME}", "json:type=ack", 2.5, [], "")
    assert spec.gated and spec.ready_timeout == 2.5
    a = spec.adapter("w/3", 3, 1, "r")
    assert isinstance(a, ReadyWS) and a.hello()[0].startswith("auth 3 ")
    assert a.on_text(b"5 xxx").echo == 5 and not a.ready  # an echo before ready is still an echo
    assert a.on_text(b'{"type":"ack"}').ready and a.ready
    assert not a.on_text(b'{"type":"ack"}').ready  # ready once


def test_ready_send_and_payload_are_redacted_in_the_manifest():
    opts = SimpleNamespace(ready_send="auth s3cret", init_payload=["token=s3cret"], ready_match="json:type=ack")
    out = redacted_options(opts)
    assert out["ready_send"] == "<redacted>" and out["init_payload"] == ["token=<redacted>"]
    assert out["ready_match"] == "json:type=ack"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ready")
    p = subprocess.Popen([sys.executable, str(WS_PEER)], stdout=subprocess.PIPE, text=True)
    said: list[dict] = []
    try:
        port = json.loads(p.stdout.readline())["port"]
        threading.Thread(target=lambda: said.extend(json.loads(x) for x in p.stdout), daemon=True).start()
        host = f"ws://127.0.0.1:{port}/"
        cases = {
            # the echo server echoes the hello: it is the ready reply
            "ready": ("--ready-send", "hello {n}", "--ready-match", r"re:^hello \d+$", "--message-rate", "5"),
            "timeout": (
                "--ready-send",
                '{{"type":"subscribe","token":"{env:READY_TOKEN}"}}',
                "--ready-match",
                "json:type=ack",
                "--ready-timeout",
                "0.4",
                "--message-rate",
                "5",
                "--policy",
                "fixed:delay=0.3",
            ),
        }
        procs = {
            k: subprocess.Popen(
                locust_cmd(host, base / k, users=2, seconds=3, extra=extra),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=dict(os.environ, READY_TOKEN=SECRET),
            )
            for k, extra in cases.items()
        }
        out = {}
        for k, proc in procs.items():
            text, _ = proc.communicate(timeout=90)
            out[k] = (read_events(base / k), text, base / k)
        opens = sum(1 for events, _, _ in out.values() for e in events if e["event"] == "open")
        deadline = time.monotonic() + 5  # the server prints each connection after its close handshake
        while len(said) < opens and time.monotonic() < deadline:
            time.sleep(0.05)
        yield out, said
    finally:
        p.kill()
        p.wait()


def by_conn(events: list[dict]) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for e in events:
        if e["event"] in ("open", "ready", "fail", "close"):
            out.setdefault((e["user"], e["conn"]), []).append(e)
    return out


@pytest.mark.e2e
def test_ready_after_open_then_messages(runs):
    events, text, _ = runs[0]["ready"]
    conns = by_conn(events)
    assert len(conns) == 2, text[-2000:]
    for seq in conns.values():
        assert [e["event"] for e in seq] == ["open", "ready", "close"]
        assert 0 <= seq[1]["ready_ms"] < 2000 and seq[1]["t"] >= seq[0]["t"]
        assert (seq[2]["by"], seq[2]["code"]) == ("client", 1000)
    echoes = [e for e in events if e["event"] == "echo"]
    assert len(echoes) >= 10  # the messages start once ready
    first_ready = min(e["t"] for e in events if e["event"] == "ready")
    assert all(e["t"] >= first_ready for e in echoes)


@pytest.mark.e2e
def test_ready_timeout_is_a_failure_then_the_client_closes(runs):
    events, text, run_dir = runs[0]["timeout"]
    conns = by_conn(events)
    assert len(conns) >= 4, text[-2000:]  # 2 users, each timed out and retried at least once
    timed_out = 0
    for seq in conns.values():
        kinds = [e["event"] for e in seq]
        assert kinds in (["open", "fail", "close"], ["open", "close"]), kinds  # the last may end at the stop
        if kinds[1] == "fail":
            timed_out += 1
            fail, close = seq[1], seq[2]
            assert fail["kind"] == "ready_timeout" and fail["status"] is None
            assert 0.35 <= fail["t"] - seq[0]["t"] < 2.0
            assert (close["code"], close["by"]) == (1000, "client")
    assert timed_out >= 4 and not [e for e in events if e["event"] == "ready"]
    assert not [e for e in events if e["event"] == "echo"]  # no messages before ready
    waits = [e for e in events if e["event"] == "wait"]
    assert waits and {w["after_code"] for w in waits} == {"ready_timeout"}
    attempts = [e["attempt"] for e in events if e["event"] == "attempt" and e["user"] == events[0]["user"]]
    assert attempts[:3] == [1, 2, 3]  # never ready: the attempt count goes on
    assert SECRET not in text
    for f in run_dir.rglob("*"):  # the token sent in the hello reaches no file of the run folder
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["options"]["ready_send"] == "<redacted>"


@pytest.mark.e2e
def test_server_connections_equal_the_harness_opens(runs):
    out, said = runs
    opens = sum(1 for events, _, _ in out.values() for e in events if e["event"] == "open")
    assert len(said) == opens


def _opts(**kw):
    import argparse

    base = dict(
        policy="full-jitter",
        policy_file="",
        message_rate=None,
        message_size=64,
        ping_interval=None,
        pong_timeout=None,
        connect_timeout=None,
        seed=3,
    )
    base.update(kw)
    return argparse.Namespace(**base)


def test_scenario_client_keys_and_command_line_precedence():
    from wsstorm.load.options import resolve_config, scenario_into_options

    client = SimpleNamespace(
        protocol="graphql-ws", init_payload=["token=abc"], subscribe="subscription { t }", ready_timeout=3
    )
    scenario = SimpleNamespace(client=client)
    o = _opts()
    scenario_into_options(o, scenario)  # what a worker receives with the master's options
    cfg = resolve_config(o)
    assert cfg.app.protocol == "graphql-ws" and cfg.app.ready_timeout == 3.0 and cfg.app.subscribe
    assert [k for k, _ in cfg.app.payload] == ["token"]
    o = _opts(protocol="ws", ready_match="re:ok", ready_timeout=1.5, init_payload=[], subscribe="x")
    with pytest.raises(UsageError, match="--subscribe is for"):  # the command line chose ws: no subscription
        resolve_config(o, scenario)
    o = _opts(protocol="ws", ready_match="re:ok", ready_timeout=1.5)
    cfg = resolve_config(o, SimpleNamespace(client=SimpleNamespace(ready_timeout=9)))
    assert cfg.app.gated and cfg.app.ready_timeout == 1.5  # the command line wins
    assert not resolve_config(_opts()).app.active  # nothing given: no adapter
