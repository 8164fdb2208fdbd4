"""Socket helpers shared by the serving processes and the fault proxy."""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import os
import socket
import struct
from typing import Any


def linger_rst(transport: asyncio.WriteTransport | Any) -> None:
    """Close a transport with RST instead of FIN (SO_LINGER on, timeout 0), as a refusing server or a cut wire does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def peer_closed(transport: asyncio.BaseTransport | Any) -> bool:
    """True when the peer has already closed its side (a FIN waits unread in the socket): the server
    would be answering a client that is gone. Peeks without consuming; False when it cannot tell."""
    raw = transport.get_extra_info("socket") if transport is not None else None
    if raw is None:
        return False
    try:
        # the C socket type: a cooperative (gevent) socket would wait on MSG_DONTWAIT instead of answering
        probe = _socket.socket(fileno=os.dup(raw.fileno()))
    except OSError:
        return False
    try:
        return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # nothing to read: the peer is still there
    except OSError as exc:
        return exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN)
    finally:
        probe.close()
