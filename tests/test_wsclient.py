"""wsclient: Close payload parsing, failure classification, and real frames from a scripted peer."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsstorm.load.connection import (
    PeerEOF,
    WSConnection,
    answer_code,
    classify_exception,
    is_valid_wire_code,
    parse_close_payload,
    parse_retry_after,
)

PEER = Path(__file__).parent / "peers" / "scripted_server.py"


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_codes_kept(code: int) -> None:
    info = parse_close_payload(struct.pack("!H", code) + "héllo".encode())
    assert (info.code, info.reason, info.error) == (code, "héllo", None)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_codes_are_protocol_errors(code: int) -> None:
    info = parse_close_payload(struct.pack("!H", code) + b"why")
    assert info.code == 1002 and info.raw_code == code and info.raw_reason_hex == b"why".hex()
    assert info.error == f"invalid close code {code}"


def test_empty_close_is_1005_and_answered_empty() -> None:
    info = parse_close_payload(b"")
    assert (info.code, info.error) == (1005, None)
    assert answer_code(info) is None


def test_non_utf8_reason_is_1007_with_raw_bytes() -> None:
    info = parse_close_payload(struct.pack("!H", 1000) + b"\xff\xfe")
    assert (info.code, info.raw_code, info.raw_reason_hex, info.error) == (1007, 1000, "fffe", "close reason not UTF-8")


def test_one_byte_payload() -> None:
    assert parse_close_payload(b"\x03").code == 1002


@given(st.binary(max_size=125))
def test_parse_never_raises_and_code_is_answerable(payload: bytes) -> None:
    info = parse_close_payload(payload)
    assert info.code == 1005 or is_valid_wire_code(info.code)
    assert (info.error is None) == (info.raw_code is None and info.raw_reason_hex is None)


def test_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


def test_classify_plain_errors() -> None:
    assert classify_exception(ConnectionRefusedError()).kind == "refused"
    assert classify_exception(TimeoutError()).kind == "timeout"
    assert classify_exception(socket.gaierror(-2, "Name or service not known")).kind == "dns"
    assert classify_exception(ConnectionResetError()).kind == "reset"
    assert classify_exception(ValueError("bad")).kind == "protocol"


@pytest.fixture(scope="module")
def peer():
    proc = subprocess.Popen([sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True)
    port = json.loads(proc.stdout.readline())["port"]
    yield f"ws://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def _read_close(url: str):
    c = WSConnection(url, 5.0)
    c.open()
    try:
        while True:
            inc = c.read()
            if inc.kind == "close":
                return inc.close
    finally:
        c.abort()


@pytest.mark.parametrize("code", [1000, 1001, 1012, 1013, 4000])
def test_exact_code_and_reason_from_the_wire(peer: str, code: int) -> None:
    info = _read_close(f"{peer}/close/{code}?after=0&reason=busy%3B%20retry-after%3D2")
    assert (info.code, info.reason, info.error) == (code, "busy; retry-after=2", None)


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 2000, 5000])
def test_invalid_code_on_the_wire(peer: str, code: int) -> None:
    info = _read_close(f"{peer}/close/{code}?after=0")
    assert (info.code, info.raw_code) == (1002, code)


def test_empty_close_and_bad_utf8(peer: str) -> None:
    assert _read_close(f"{peer}/close-empty?after=0").code == 1005
    assert _read_close(f"{peer}/close-badutf8?after=0").code == 1007


def test_eof_and_reset(peer: str) -> None:
    for path, exc in (("/eof?after=0", PeerEOF), ("/rst?after=0.05", ConnectionResetError)):
        c = WSConnection(peer + path, 5.0)
        c.open()
        with pytest.raises(exc):
            while True:
                c.read()
        c.abort()


def test_http_503_with_retry_after(peer: str) -> None:
    c = WSConnection(f"{peer}/http/503?retry_after=7", 5.0)
    with pytest.raises(Exception) as err:
        c.open()
    f = classify_exception(err.value)
    assert (f.kind, f.status, f.retry_after) == ("http_status", 503, 7.0)


def test_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(Exception) as err:
        WSConnection(f"ws://127.0.0.1:{port}/", 5.0).open()
    assert classify_exception(err.value).kind == "refused"


def test_echo_and_source_address(peer: str) -> None:
    c = WSConnection(peer + "/echo", 5.0, source_address="127.9.0.1")
    c.open()
    assert c._sock.getsockname()[0] == "127.9.0.1"
    c.send_text("1 hello")
    assert c.read().data == b"1 hello"
    c.ping(b"p")
    assert c.read().kind == "pong"
    c.send_close(1000)
    assert c.read().close.code == 1000
    c.abort()
