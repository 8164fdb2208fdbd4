"""Socket helpers shared by the serving processes and the fault proxy."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any


def linger_rst(transport: asyncio.BaseTransport | Any) -> None:
    """Close a transport with RST instead of FIN (SO_LINGER on, timeout 0), as a refusing server or a cut wire does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
