"""The admin HTTP API of `wsstorm serve` and `wsstorm proxy`: tiny asyncio HTTP/1.1, loopback, Bearer token."""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Literal, overload

# A handler gets the JSON body (a dict) and returns (status, payload); payload is
# JSON-encoded unless it is a (content_type, text) tuple.
Handler = Callable[[dict], Awaitable[tuple[int, Any]]]

MAX_BODY = 64 * 1024
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


def new_token() -> str:
    """A fresh random admin token."""
    return secrets.token_urlsafe(18)


def authorized(headers: dict[str, str], token: str) -> bool:
    """True when the Authorization header carries the Bearer token (constant-time compare)."""
    value = headers.get("authorization", "")
    if not value.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(value[7:].strip().encode(), token.encode())


class BadRequest(Exception):
    """A client error in an admin call: answered with 400 and the message."""


# The overloads say what the body below does: an integer read is an int, and with a default given
# the result is never None (a missing or null key gives the default back).
@overload
def body_number(body: dict, key: str, default: int, *, minimum: float = ..., integer: Literal[True]) -> int: ...
@overload
def body_number(body: dict, key: str, default: float, *, minimum: float = ..., integer: bool = ...) -> float: ...
@overload
def body_number(
    body: dict, key: str, default: None = ..., *, minimum: float = ..., integer: bool = ...
) -> float | None: ...
def body_number(
    body: dict, key: str, default: float | None = None, *, minimum: float = 0.0, integer: bool = False
) -> float | int | None:
    """Read a number from an admin JSON body, raising BadRequest when it is of the wrong type/range."""
    if key not in body or body[key] is None:
        return default
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be a number")
    if value < minimum:
        raise BadRequest(f"{key} must be >= {minimum:g}")
    if integer:
        if int(value) != value:
            raise BadRequest(f"{key} must be an integer")
        return int(value)
    return float(value)


class AdminServer:
    """Routes (method, path) to async handlers; every request needs the token."""

    def __init__(self, token: str, routes: dict[tuple[str, str], Handler]) -> None:
        self.token = token
        self.routes = routes
        self.server: asyncio.base_events.Server | None = None

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:port; return the bound port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await asyncio.wait_for(self._handle(reader), 10)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            status, payload = 400, {"error": "bad request"}
        if isinstance(payload, tuple):
            ctype, text = payload
            data = text.encode() if isinstance(text, str) else text
        else:
            ctype, data = "application/json", json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n"
        )
        if status == 401:
            head += 'WWW-Authenticate: Bearer realm="wsstorm"\r\n'
        try:
            writer.write(head.encode() + b"\r\n" + data)
            await writer.drain()
            writer.close()
        except (ConnectionError, OSError):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        line = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
        if len(line) != 3:
            return 400, {"error": "bad request line"}
        method, target = line[0].upper(), line[1].split("?", 1)[0]
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readuntil(b"\r\n")
            if raw == b"\r\n":
                break
            if len(headers) > 100:
                return 400, {"error": "too many headers"}
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length < 0 or length > MAX_BODY:
            return 413, {"error": "body too large"}
        raw_body = await reader.readexactly(length) if length else b""
        if not authorized(headers, self.token):
            return 401, {"error": "missing or wrong Bearer token"}
        handler = self.routes.get((method, target))
        if handler is None:
            if any(path == target for _m, path in self.routes):
                return 405, {"error": f"{method} not allowed on {target}"}
            return 404, {"error": f"no such endpoint {target}"}
        try:
            body = json.loads(raw_body) if raw_body.strip() else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(body, dict):
            return 400, {"error": "body must be a JSON object"}
        try:
            return await handler(body)
        except BadRequest as exc:
            return 400, {"error": str(exc)}
