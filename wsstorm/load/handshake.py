"""The opening handshake, as bytes and rules: the request, the response head, its checks, TLS, deflate.

Ours rather than websocket-client's (same request, same checks, same exceptions), because
websocket-client reads the response one byte per recv call. Also the process's ssl contexts
(built once: loading a CA store costs milliseconds) and the permessage-deflate negotiation
(RFC 7692). Pure apart from name resolution and loading TLS files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websocket._exceptions import WebSocketException

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 65536  # a response head larger than this is not a WebSocket server's
_RECV = 65536
MAX_MESSAGE = 16 * 1024 * 1024  # bytes: a longer frame or message is refused (1009), never buffered
_MAX_BODY = 65536  # bytes of a rejection's body kept; the rest is not waited for
_DEFAULT_TLS: ssl.SSLContext | None = None  # built once: loading the CA store costs milliseconds
_TLS_CONTEXTS: dict[Any, ssl.SSLContext] = {}


_CACHE_MAX = 4096  # entries per cache below; cleared when full (templated URLs may vary per connection)
_RESOLVED: dict[str, tuple[str, int, bool, tuple[Any, ...]]] = {}


def resolve(url: str) -> tuple[str, int, bool, tuple[Any, ...]]:
    """URL -> (host, port, secure, sockaddr); raises ValueError for a bad URL or port, gaierror if unresolvable.

    Remembered per URL when the host is an IP literal (every attempt asks again: issue 16);
    names are resolved on every attempt."""
    hit = _RESOLVED.get(url)
    if hit is not None:
        return hit
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    literal = _literal(host, port)
    if literal is None:
        return host, port, secure, socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][4]
    if len(_RESOLVED) >= _CACHE_MAX:
        _RESOLVED.clear()
    out = _RESOLVED[url] = (host, port, secure, literal)
    return out


def _literal(host: str, port: int) -> tuple[Any, ...] | None:
    # An IP literal needs no resolver: under gevent getaddrinfo goes through a thread pool,
    # which cost more CPU than the rest of an open.
    try:
        socket.inet_pton(socket.AF_INET, host)
        return (host, port)
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return (host, port, 0, 0)
    except OSError:
        return None


def _default_tls() -> ssl.SSLContext:
    global _DEFAULT_TLS
    if _DEFAULT_TLS is None:
        _DEFAULT_TLS = ssl.create_default_context()
    return _DEFAULT_TLS


def tls_context(
    ca_file: str = "", insecure: bool = False, client_cert: str = "", client_key: str = ""
) -> ssl.SSLContext:
    """The process's ssl context for these settings, built once (loading a CA store costs milliseconds).

    ``ca_file``: trust this CA (instead of the system store); ``insecure``: no certificate or host
    name check; ``client_cert``/``client_key``: present a certificate (mutual TLS).
    Raises ssl.SSLError / OSError for files it cannot load.
    """
    key = (ca_file, insecure, client_cert, client_key)
    ctx = _TLS_CONTEXTS.get(key)
    if ctx is None:
        if not (ca_file or insecure or client_cert):
            ctx = _default_tls()
        else:
            ctx = ssl.create_default_context(cafile=ca_file or None)
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if client_cert:
                ctx.load_cert_chain(client_cert, client_key or None)
        _TLS_CONTEXTS[key] = ctx
    return ctx


def _resource(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


@dataclass(frozen=True)
class Deflate:
    """permessage-deflate as the server agreed to it (RFC 7692 7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


def parse_deflate(header: str | None) -> Deflate | None:
    """The server's Sec-WebSocket-Extensions answer to our offer -> Deflate, or None if it declined.

    Raises WebSocketException for an extension we did not offer or a parameter RFC 7692 forbids.
    """
    if header is None or not header.strip():
        return None
    offers = [x.strip() for x in header.split(",") if x.strip()]
    if len(offers) != 1:
        raise WebSocketException(f"server agreed to extensions we did not offer: {header[:80]!r}")
    name, *params = [p.strip() for p in offers[0].split(";")]
    if name.lower() != "permessage-deflate":
        raise WebSocketException(f"server agreed to an extension we did not offer: {name[:40]!r}")
    out: dict[str, Any] = {}
    for p in params:
        key, sep, value = (x.strip().strip('"') for x in p.partition("="))
        key = key.lower()
        if key in out:
            raise WebSocketException(f"permessage-deflate: {key} given twice")
        if key in ("server_no_context_takeover", "client_no_context_takeover") and not sep:
            out[key] = True
        elif (
            key in ("server_max_window_bits", "client_max_window_bits")
            and sep
            and value.isdigit()
            and 8 <= int(value) <= 15
        ):
            out[key] = int(value)
        else:
            raise WebSocketException(f"permessage-deflate: bad parameter {p[:40]!r}")
    # zlib cannot make raw deflate with an 8-bit window: 9 is the same on the wire (RFC 7692 7.1.2.2)
    for key in ("server_max_window_bits", "client_max_window_bits"):
        if out.get(key) == 8:
            out[key] = 9
    return Deflate(**out)


def handshake_request(
    url: str,
    host: str,
    port: int,
    key: str,
    cookie: str = "",
    *,
    query: str = "",
    protocols: tuple[str, ...] = (),
    extra: bytes = b"",
) -> bytes:
    """The client's opening handshake, as websocket-client sends it (no Origin header unless given).

    ``query``: more ``k=v&...`` (encoded) after the URL's own; ``protocols``: the subprotocols
    offered; ``extra``: more header lines, each ending in CRLF (already checked and rendered).
    """
    before, after = _request_parts(url, host, port, query, protocols)
    cookie_line = f"Cookie: {cookie}\r\n".encode() if cookie else b""
    return b"".join((before, key.encode("utf-8"), after, cookie_line, extra, b"\r\n"))


_REQUEST_PARTS: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}


def _request_parts(url: str, host: str, port: int, query: str, protocols: tuple[str, ...]) -> tuple[bytes, bytes]:
    """The request's lines before and after the key, built once per URL (every attempt sends them)."""
    k = (url, host, port, query, protocols)
    hit = _REQUEST_PARTS.get(k)
    if hit is not None:
        return hit
    hostport = f"[{host}]" if ":" in host else host
    if port not in (80, 443):
        hostport = f"{hostport}:{port}"
    resource = _resource(url)
    if query:
        resource += ("&" if "?" in resource else "?") + query
    before = f"GET {resource} HTTP/1.1\r\nUpgrade: websocket\r\nHost: {hostport}\r\nSec-WebSocket-Key: "
    after = "\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n"
    if protocols:
        after += f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n"
    if len(_REQUEST_PARTS) >= _CACHE_MAX:
        _REQUEST_PARTS.clear()
    out = _REQUEST_PARTS[k] = (before.encode("utf-8"), after.encode("utf-8"))
    return out


def parse_response_head(head: bytes) -> tuple[int, str | None, dict[str, str]]:
    """HTTP response head (without the blank line) -> (status, message, lower-cased headers).

    Same rules as websocket-client's ``read_headers``; raises WebSocketException when malformed.
    """
    status: int | None = None
    message = None
    headers: dict[str, str] = {}
    for raw in head.split(b"\n"):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise WebSocketException(f"Invalid header line, not valid UTF-8 at byte {e.start}: {raw!r}") from None
        if not line:
            break
        if status is None:
            info = line.split(" ", 2)
            try:
                status = int(info[1])
            except (IndexError, ValueError):
                raise WebSocketException(f"Invalid status line: {line!r}") from None
            if len(info) > 2:
                message = info[2]
        else:
            kv = line.split(":", 1)
            if len(kv) != 2:
                raise WebSocketException("Invalid header")
            key, value = kv[0].lower(), kv[1].strip()
            if key == "set-cookie" and headers.get("set-cookie"):
                headers[key] = headers[key] + "; " + value
            else:
                headers[key] = value
    if status is None:
        raise WebSocketException("Invalid status line: ''")
    return status, message, headers


def body_length(content_length: str | None) -> int | None:
    """Content-Length of a rejection -> bytes to read (capped at _MAX_BODY), None if absent.

    Raises WebSocketException for a value that is not a non-negative integer.
    """
    if not content_length:
        return None
    text = content_length.strip()
    if not text.isdigit() or not text.isascii():  # int() would take "-5", "+5", "1_0"
        raise WebSocketException(f"Invalid content-length header: {content_length[:40]!r}")
    return min(int(text[:20]), _MAX_BODY)  # 20 digits are past any cap; int() refuses >4300


def accept_ok(headers: dict[str, str], key: str) -> bool:
    """True if the 101 response upgrades to websocket and carries the right Sec-WebSocket-Accept."""
    for name, want in (("upgrade", "websocket"), ("connection", "upgrade")):
        value = headers.get(name)
        if not value or want not in [x.strip().lower() for x in value.split(",")]:
            return False
    got = headers.get("sec-websocket-accept")
    if not got:
        return False
    hashed = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).lower()
    return hmac.compare_digest(hashed, got.lower().encode("utf-8"))
