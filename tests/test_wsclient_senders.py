"""Frames stay whole when two greenlets send on one connection, with the write lock made only then."""

from __future__ import annotations

import gevent
import gevent.socket

import socket

from wsstorm.load.connection import WSConnection
from wsstorm.load.frames import OP_TEXT, mask


def _pair(sndbuf: int) -> tuple[WSConnection, socket.socket]:
    a, b = gevent.socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    c = WSConnection("ws://127.0.0.1:9/")
    c._sock = a
    c._open = True
    return c, b


def _frames(data: bytes) -> list[bytes]:
    """The payloads of a stream of masked client frames (7-, 16- or 64-bit lengths)."""
    out, i = [], 0
    while i < len(data):
        n, i = data[i + 1] & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        key, i = data[i : i + 4], i + 4
        out.append(mask(key, data[i : i + n]))
        i += n
    return out


def _read(b: socket.socket, total: int) -> bytes:
    got = bytearray()
    while len(got) < total:
        got += b.recv(65536)
    return bytes(got)


def test_a_frame_half_written_is_finished_before_another_greenlet_writes() -> None:
    c, b = _pair(4096)
    big = "x" * 1_000_000  # far more than the socket buffer: its sender waits half-way
    small = [f"m{i}" for i in range(20)]
    sizes = len(big) + 14 + sum(len(m) + 6 for m in small)
    first = gevent.spawn(c.send_frame, OP_TEXT, big.encode())
    gevent.sleep(0)  # the big frame is on its way and waits for room
    others = gevent.spawn(lambda: [c.send_frame(OP_TEXT, m.encode()) for m in small])
    reader = gevent.spawn(_read, b, sizes)
    gevent.joinall([first, others, reader], raise_error=True)
    assert _frames(reader.value) == [big.encode(), *(m.encode() for m in small)]
    assert c._wlock is not None and not c._sending  # they met: the lock exists, and is free
    c.send_frame(OP_TEXT, b"after")
    assert _frames(_read(b, 11)) == [b"after"]


def test_one_sender_makes_no_lock() -> None:
    c, b = _pair(1 << 16)
    for m in (b"a", b"bb", b"c" * 300):
        c.send_frame(OP_TEXT, m)
    assert _frames(_read(b, 3 + 4 + 310)) == [b"a", b"bb", b"c" * 300]
    assert c._wlock is None and not c._sending
