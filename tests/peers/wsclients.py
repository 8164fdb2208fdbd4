"""Test clients for the target tests: websocket-client connections that report the exact close code."""

from __future__ import annotations

import contextlib
import socket
import struct

import websocket


def connect(url: str, timeout: float = 5.0) -> websocket.WebSocket:
    """Open a WebSocket (websocket-client), raising on any failure."""
    return websocket.create_connection(url, timeout=timeout, enable_multithread=False)


def close_of(ws: websocket.WebSocket, timeout: float = 5.0) -> tuple[int | None, str]:
    """Read until the server's Close frame; (code, reason), or (1006, how) if TCP ended without one."""
    ws.settimeout(timeout)
    while True:
        try:
            opcode, frame = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            return 1006, "eof"
        except ConnectionResetError:
            return 1006, "reset"
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            # answer the Close as RFC 6455 says, so the server's count is final at once
            with contextlib.suppress(Exception):
                ws.send_close(code if code != 1005 else 1000)
            ws.shutdown()
            return code, data[2:].decode("utf-8", "replace")


def attempt(url: str, timeout: float = 5.0) -> tuple[str, object]:
    """One connect attempt classified: ('open', ws) | ('refused', None) | ('http', status) | ('reset', None)."""
    try:
        return "open", connect(url, timeout)
    except ConnectionRefusedError:
        return "refused", None
    except websocket.WebSocketBadStatusException as exc:
        return "http", exc
    except (ConnectionResetError, websocket.WebSocketConnectionClosedException, BrokenPipeError):
        return "reset", None


def host_port(url: str) -> tuple[str, int]:
    hostport = url.split("//", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def raw_socket(url: str, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(host_port(url), timeout=timeout)
