"""The least a gevent client does for one connection of bench_vs_peers' workload; records nothing.

Connect, send the upgrade, read the 101, then ``echoes`` times: wait ``every`` s, send one masked
text frame, read its echo; then send a Close, read the server's, close the socket. Used by
bench_floor's ``--workload peers`` as the floor, in a bare gevent process and inside a minimal
Locust user (floor_locustfile.py). Import it after gevent's monkey patching.
"""

from __future__ import annotations

import gevent

import base64
import os
import socket
import sys

_ORDER = sys.byteorder


def _masked(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One masked client frame of at most 125 bytes (RFC 6455 5.2)."""
    n = len(payload)
    keys = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, _ORDER) ^ int.from_bytes(keys, _ORDER)).to_bytes(n, _ORDER) if n else b""
    return bytes((0x80 | opcode, 0x80 | n)) + key + body


def _read_frame(s: socket.socket, buf: bytes) -> bytes:
    """Read until one whole server frame (unmasked, < 126 bytes) is in ``buf``; the bytes after it."""
    while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        buf += chunk
    return buf[2 + (buf[1] & 0x7F) :]


def _send(s: socket.socket, data: bytes) -> None:
    """send, then sendall for any rest: gevent's sendall asks the kernel for SO_SNDBUF on every call."""
    n = s.send(data)
    if n < len(data):
        s.sendall(data[n:])


def read_head(s: socket.socket) -> tuple[bytes, bytes]:
    """The HTTP response head of a handshake, and the bytes received after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def open_ws(host: str, port: int) -> tuple[socket.socket, bytes]:
    """TCP connect and the upgrade; the socket and any bytes read after the 101's head."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    _send(
        s,
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode(),
    )
    head, rest = read_head(s)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head[:40]!r}")
    return s, rest


def echo_session(host: str, port: int, echoes: int, every: float, message: bytes) -> None:
    """One connection of the workload: open, ``echoes`` echoes ``every`` s apart, Close, close."""
    s, buf = open_ws(host, port)
    try:
        keys = os.urandom(4 * (echoes + 1))  # fresh masking keys (RFC 6455 10.3), one draw per connection
        for k in range(echoes):
            gevent.sleep(every)
            _send(s, _masked(0x1, message, keys[4 * k : 4 * k + 4]))
            buf = _read_frame(s, buf)
        _send(s, _masked(0x8, (1000).to_bytes(2, "big"), keys[-4:]))
        _read_frame(s, buf)  # the server's Close
    finally:
        s.close()
