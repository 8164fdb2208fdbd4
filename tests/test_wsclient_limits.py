"""wsclient size limits: a huge announced frame or body is refused, never buffered."""

from __future__ import annotations

import gevent

import socket
import struct

import pytest
from websocket._exceptions import WebSocketException

from wsstorm.load.connection import _GUID, MAX_MESSAGE, MessageTooBig, WSConnection, body_length, classify_exception


def _conn_with(buf: bytes) -> WSConnection:
    c = WSConnection("ws://127.0.0.1:9/")
    c._buf = bytearray(buf)
    return c


def test_huge_announced_frame_is_refused_before_buffering() -> None:
    c = _conn_with(b"\x82\x7f" + (2**62).to_bytes(8, "big"))
    with pytest.raises(MessageTooBig):
        c._frame_from_buf()
    c = _conn_with(b"\x82\x7f" + (MAX_MESSAGE + 1).to_bytes(8, "big") + b"\x00" * 10)
    with pytest.raises(MessageTooBig):
        c._frame_from_buf()


def test_frame_at_the_limit_waits_and_small_frames_parse_in_order() -> None:
    c = _conn_with(b"\x82\x7f" + MAX_MESSAGE.to_bytes(8, "big") + b"x" * 100)
    assert c._frame_from_buf() is None  # allowed, just not all here yet
    c = _conn_with(b"\x81\x02hi" + b"\x81\x03abc" + b"\x81")
    assert c._frame_from_buf().data == b"hi"
    assert c._frame_from_buf().data == b"abc"
    assert c._frame_from_buf() is None and bytes(c._buf) == b"\x81"


@pytest.mark.parametrize("value", ["-5", "abc", "1e3", " +7", "1_0", "٣"])
def test_bad_content_length_is_a_protocol_error(value: str) -> None:
    with pytest.raises(WebSocketException):
        body_length(value)
    assert classify_exception(WebSocketException("x")).kind == "protocol"


def test_body_length_is_capped() -> None:
    assert body_length(None) is None and body_length("") is None
    assert body_length("10") == 10
    assert body_length("9" * 5000) == 65536


def _serve_once(listener: socket.socket, reply) -> None:
    conn, _ = listener.accept()
    req = b""
    while b"\r\n\r\n" not in req:
        req += conn.recv(4096)
    key = next(ln.split(b":", 1)[1].strip() for ln in req.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key"))
    conn.sendall(reply(key))
    gevent.sleep(5)  # hold the connection open: the client must not wait for more
    conn.close()


def _listener() -> tuple[socket.socket, str]:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    return ls, f"ws://127.0.0.1:{ls.getsockname()[1]}/"


def test_huge_frame_on_a_real_socket_raises_message_too_big() -> None:
    import base64
    import hashlib

    def reply(key: bytes) -> bytes:
        acc = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        head = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n"
        )
        return head + struct.pack("!BBQ", 0x82, 127, 2**62) + b"y" * 200_000

    ls, url = _listener()
    g = gevent.spawn(_serve_once, ls, reply)
    c = WSConnection(url, 3.0)
    try:
        c.open()
        with pytest.raises(MessageTooBig):
            c.read(3.0)
        assert len(c._buf) < 2 * 65536  # not buffering the announced 2^62 bytes
    finally:
        c.abort()
        g.kill()
        ls.close()


def test_huge_content_length_rejection_is_read_capped_not_waited_for() -> None:
    def reply(_key: bytes) -> bytes:
        return b"HTTP/1.1 503 Busy\r\nContent-Length: 99999999999\r\nRetry-After: 4\r\n\r\n" + b"z" * 100_000

    ls, url = _listener()
    g = gevent.spawn(_serve_once, ls, reply)
    c = WSConnection(url, 3.0)
    try:
        with pytest.raises(Exception) as err:
            c.open()
        f = classify_exception(err.value)
        assert (f.kind, f.status, f.retry_after) == ("http_status", 503, 4.0)
        assert len(err.value.resp_body) == 65536
    finally:
        c.abort()
        g.kill()
        ls.close()


def test_a_read_timeout_returns_none_and_keeps_a_frame_split_across_it() -> None:
    """read(timeout) on a held plain connection: None when nothing comes in time, and the half of a
    frame that came before the timeout is kept for the next read (the deadline is ours, not the socket's)."""
    import base64
    import hashlib
    import time

    parts = [b"\x81\x05he", b"llo"]  # one text frame, "hello", sent in two halves 0.4 s apart

    def serve(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        req = b""
        while b"\r\n\r\n" not in req:
            req += conn.recv(4096)
        key = next(
            ln.split(b":", 1)[1].strip() for ln in req.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")
        )
        acc = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n"
        )
        gevent.sleep(0.3)
        conn.sendall(parts[0])
        gevent.sleep(0.4)
        conn.sendall(parts[1])
        gevent.sleep(5)
        conn.close()

    ls, url = _listener()
    g = gevent.spawn(serve, ls)
    c = WSConnection(url, 3.0)
    try:
        c.open()
        t = time.monotonic()
        assert c.read(0.1) is None  # nothing yet
        assert 0.09 <= time.monotonic() - t < 1.0
        assert c.read(0.4) is None  # the first half came, the rest not in time
        assert bytes(c._buf) == parts[0]
        inc = c.read(2.0)
        assert inc is not None and (inc.kind, inc.data) == ("message", b"hello")
        assert c._timeout is None  # under gevent the socket itself never timed out
    finally:
        c.abort()
        g.kill()
        ls.close()
