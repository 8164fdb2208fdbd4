"""permessage-deflate (RFC 7692): the negotiation answer, compressed frames both ways, the inflate
limit, and end to end against the `websockets` library's own server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from websocket._exceptions import WebSocketException, WebSocketProtocolException

from tests.test_user_e2e import locust_cmd, read_events
from wsstorm.load.connection import MAX_MESSAGE, Deflate, MessageTooBig, WSConnection, parse_deflate

WS_PEER = Path(__file__).parent / "peers" / "ws_server.py"


@pytest.mark.parametrize(
    "header,want",
    [
        (None, None),
        ("", None),
        ("permessage-deflate", Deflate()),
        ("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", Deflate(False, False, 12, 12)),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover", Deflate(True, True, 15, 15)),
        ("permessage-deflate; client_max_window_bits=\"10\"", Deflate(False, False, 15, 10)),
        ("permessage-deflate; server_max_window_bits=8", Deflate(False, False, 9, 15)),
    ],
)
def test_negotiation_answer(header, want):
    assert parse_deflate(header) == want


@pytest.mark.parametrize(
    "header",
    [
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    ],
)
def test_bad_answers_fail_the_handshake(header):
    with pytest.raises(WebSocketException):
        parse_deflate(header)


def conn(deflate: Deflate) -> WSConnection:
    c = WSConnection("ws://127.0.0.1:1/", compression=True)
    c.deflate = deflate
    return c


@pytest.mark.parametrize("takeover", [False, True])
def test_compressed_both_ways_round_trip(takeover):
    c = conn(Deflate(takeover, takeover, 12, 12))
    for msg in (b"hello " * 50, b"", "héllo".encode() * 3, b"hello " * 50):
        wire = c._deflate(msg)
        assert not wire.endswith(b"\x00\x00\xff\xff")
        assert c._inflate(wire) == msg  # our inflater reads what a peer's deflater (same rules) wrote


def test_a_message_that_inflates_past_the_limit_is_too_big():
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = z.compress(b"\0" * (MAX_MESSAGE + 10)) + z.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(MessageTooBig):
        conn(Deflate())._inflate(bomb[:-4])
    with pytest.raises(WebSocketProtocolException):
        conn(Deflate())._inflate(b"\xff\xff\xff garbage")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("deflate")
    peers, said = [], {}
    try:
        ports = {}
        for key, args in (("on", ()), ("off", ("--no-compression",))):
            p = subprocess.Popen([sys.executable, str(WS_PEER), *args], stdout=subprocess.PIPE, text=True)
            peers.append(p)
            ports[key] = json.loads(p.stdout.readline())["port"]
            said[key] = []
            threading.Thread(
                target=lambda p=p, k=key: said[k].extend(json.loads(x) for x in p.stdout), daemon=True
            ).start()
        msg = ("--message-rate", "5", "--message-size", "3000")
        cases = {
            "agreed": ("on", ("--compression", "deflate", *msg)),
            "declined": ("off", ("--compression", "deflate", *msg)),
            "not_offered": ("on", msg),
        }
        procs = {
            k: (
                base / k,
                subprocess.Popen(
                    locust_cmd(f"ws://127.0.0.1:{ports[srv]}/", base / k, extra=extra),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
            for k, (srv, extra) in cases.items()
        }
        out = {}
        for k, (run_dir, p) in procs.items():
            text, _ = p.communicate(timeout=90)
            out[k] = (read_events(run_dir), text)
        yield out, said
    finally:
        for p in peers:
            p.kill()
            p.wait()


@pytest.mark.e2e
@pytest.mark.parametrize("key,agreed", [("agreed", True), ("declined", False), ("not_offered", None)])
def test_compression_against_websockets(runs, key, agreed):
    events, text = runs[0][key]
    assert [e["event"] for e in events if e["event"] != "echo"] == ["attempt", "open", "close", "stop"], text[-2000:]
    opened = events[1]
    assert opened.get("compression") is agreed
    echoes = [e for e in events if e["event"] == "echo"]
    assert len(echoes) >= 3, text[-2000:]
    close = next(e for e in events if e["event"] == "close")
    assert (close["code"], close["by"], close["clean"]) == (1000, "client", True)


@pytest.mark.e2e
def test_the_server_saw_compression_only_when_agreed(runs):
    said = runs[1]
    deadline = time.monotonic() + 5  # the server says so after each connection's close handshake
    while len([s for s in said["on"] if "extensions" in s]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    on = [s for s in said["on"] if "extensions" in s]
    assert sorted(s["extensions"] for s in on) == [[], ["PerMessageDeflate"]]
    assert all(s["messages"] >= 3 for s in on)
