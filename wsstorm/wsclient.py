"""Frame-level WebSocket client: exact close codes and classified failures.

websocket-client validates Close frames itself and drops invalid ones (and plain
``recv()`` replaces the code), so frames are read here with our own frame buffer
and the Close payload is parsed by :func:`parse_close_payload`.
"""

from __future__ import annotations

import email.utils
import errno
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websocket import ABNF, WebSocket
from websocket._abnf import frame_buffer
from websocket._exceptions import (
    WebSocketAddressException,
    WebSocketBadStatusException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketProtocolException,
    WebSocketTimeoutException,
)

# RFC 6455 7.4 + IANA "WebSocket Close Code Number Registry": codes a peer may send.
# 1004 is reserved; 1005, 1006 and 1015 must never be on the wire; 1016-2999 are
# unassigned or reserved for the protocol; 3000-3999 IANA-registered, 4000-4999 private.
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def is_valid_wire_code(code: int) -> bool:
    """True if ``code`` may legally appear in a Close frame."""
    return code in _WIRE_CODES or 3000 <= code <= 4999


@dataclass(frozen=True)
class CloseInfo:
    """A parsed Close frame: the code to record, its reason, and any protocol error."""

    code: int  # what is recorded: the wire code, 1005 for none, or our answer on error
    reason: str
    raw_code: int | None = None
    raw_reason_hex: str | None = None
    error: str | None = None  # short text when the frame broke the protocol


def parse_close_payload(payload: bytes) -> CloseInfo:
    """Parse a Close frame payload into code, reason and protocol error (RFC 6455 5.5.1)."""
    if not payload:
        return CloseInfo(1005, "")
    if len(payload) == 1:
        return CloseInfo(1002, "", None, payload.hex(), "close payload of 1 byte")
    raw = int.from_bytes(payload[:2], "big")
    reason_bytes = payload[2:]
    try:
        reason = reason_bytes.decode("utf-8")
        utf8_ok = True
    except UnicodeDecodeError:
        reason = reason_bytes.decode("utf-8", "replace")
        utf8_ok = False
    if len(payload) > 125:
        return CloseInfo(1002, reason, raw, reason_bytes.hex(), "close payload over 125 bytes")
    if not is_valid_wire_code(raw):
        return CloseInfo(1002, reason, raw, reason_bytes.hex(), f"invalid close code {raw}")
    if not utf8_ok:
        return CloseInfo(1007, reason, raw, reason_bytes.hex(), "close reason not UTF-8")
    return CloseInfo(raw, reason)


def answer_code(info: CloseInfo) -> int | None:
    """The code our reply Close frame carries (None: an empty Close, answering 1005)."""
    return None if info.code == 1005 and info.error is None else info.code


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After header (delta seconds or HTTP date) -> seconds, or None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN / inf
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Failure:
    """A connect attempt that failed before open, classified."""

    kind: str  # refused, timeout, http_status, tls, dns, protocol, reset
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return None


def classify_exception(exc: BaseException) -> Failure:
    """Map an exception raised while connecting to a failure kind."""
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, WebSocketBadStatusException):
        headers = getattr(exc, "resp_headers", None)
        return Failure("http_status", int(exc.status_code), parse_retry_after(_header(headers, "retry-after")), detail)
    if isinstance(exc, (socket.gaierror, WebSocketAddressException)):
        return Failure("dns", detail=detail)
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return Failure("tls", detail=detail)
    if isinstance(exc, (TimeoutError, socket.timeout, WebSocketTimeoutException)):
        return Failure("timeout", detail=detail)
    if isinstance(exc, ConnectionRefusedError):
        return Failure("refused", detail=detail)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, PeerEOF,
                        WebSocketConnectionClosedException)):
        return Failure("reset", detail=detail)
    if isinstance(exc, OSError):
        code = exc.errno
        if code in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH):
            return Failure("refused", detail=detail)
        if code == errno.ETIMEDOUT:
            return Failure("timeout", detail=detail)
        return Failure("reset", detail=detail)
    if isinstance(exc, (WebSocketProtocolException, WebSocketException, ValueError)):
        return Failure("protocol", detail=detail)
    return Failure("protocol", detail=detail)


class PeerEOF(ConnectionError):
    """The peer closed TCP (FIN) without a Close frame."""


class _FrameBuffer(frame_buffer):
    """websocket-client's frame buffer, minus its Close-frame validation (we parse those)."""

    def recv_frame(self) -> ABNF:
        with self.lock:
            if self.needs_header():
                self.recv_header()
            fin, rsv1, rsv2, rsv3, opcode, has_mask, _ = self.header
            if self.needs_length():
                self.recv_length()
            length = self.length
            if self.needs_mask():
                self.recv_mask()
            mask_value = self.mask_value
            payload = self.recv_strict(length)
            if has_mask:
                payload = ABNF.mask(mask_value, payload)
            self.clear()
            frame = ABNF(fin, rsv1, rsv2, rsv3, opcode, has_mask, payload)
            if opcode != ABNF.OPCODE_CLOSE:
                frame.validate(self.skip_utf8_validation)
        return frame


@dataclass
class Incoming:
    """One thing read from an open connection."""

    kind: str  # message, pong, ping, close
    data: bytes = b""
    close: CloseInfo | None = None


def resolve(url: str, timeout: float) -> tuple[str, int, bool, tuple]:
    """URL -> (host, port, secure, sockaddr); raises UsageError-free socket errors (gaierror)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    return host, port, secure, infos[0][4]


class WSConnection:
    """One client WebSocket connection: open, read frames, send, close, abort."""

    def __init__(self, url: str, connect_timeout: float = 10.0, source_address: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.source_address = source_address
        self.ssl_context = ssl_context
        self.ws: WebSocket | None = None
        self._sock: socket.socket | None = None
        self.close_sent = False

    def open(self) -> float:
        """Connect and handshake; returns connect time in ms. Raises on failure (see classify_exception)."""
        t0 = time.perf_counter()
        host, port, secure, addr = resolve(self.url, self.connect_timeout)
        family = socket.AF_INET6 if len(addr) == 4 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.source_address:
                # let connect() pick the port per 4-tuple, not bind() per source address
                sock.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT (Linux)
                sock.bind((self.source_address, 0))
            sock.settimeout(self.connect_timeout)
            sock.connect(addr)
            if secure:
                ctx = self.ssl_context or ssl.create_default_context()
                sock = ctx.wrap_socket(sock, server_hostname=host)
                self._sock = sock
            ws = WebSocket(skip_utf8_validation=True)
            ws.frame_buffer = _FrameBuffer(self._recv, True)
            ws.connect(self.url, socket=sock, timeout=self.connect_timeout,
                       suppress_origin=True)
            sock.settimeout(None)
            self.ws = ws
        except BaseException:
            self.abort()
            raise
        return (time.perf_counter() - t0) * 1000.0

    def _recv(self, bufsize: int) -> bytes:
        sock = self._sock
        if sock is None:
            raise PeerEOF("socket closed")
        data = sock.recv(bufsize)
        if not data:
            raise PeerEOF("peer closed TCP without a Close frame")
        return data

    def read(self) -> Incoming:
        """Block for the next message, pong, ping or Close. Raises PeerEOF / OSError when TCP ends."""
        assert self.ws is not None
        ws = self.ws
        while True:
            frame = ws.frame_buffer.recv_frame()
            op = frame.opcode
            if op in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
                ws.cont_frame.validate(frame)
                ws.cont_frame.add(frame)
                if ws.cont_frame.is_fire(frame):
                    _op, whole = ws.cont_frame.extract(frame)
                    data = whole.data
                    return Incoming("message", data if isinstance(data, bytes) else str(data).encode())
            elif op == ABNF.OPCODE_CLOSE:
                return Incoming("close", close=parse_close_payload(bytes(frame.data)))
            elif op == ABNF.OPCODE_PING:
                self.send_frame(ABNF.create_frame(frame.data, ABNF.OPCODE_PONG))
                return Incoming("ping", bytes(frame.data))
            elif op == ABNF.OPCODE_PONG:
                return Incoming("pong", bytes(frame.data))

    def send_frame(self, frame: ABNF) -> None:
        """Send one frame (masking done by websocket-client)."""
        if self.ws is None:
            raise PeerEOF("not open")
        self.ws.send_frame(frame)

    def send_text(self, text: str) -> None:
        """Send a text message."""
        self.send_frame(ABNF.create_frame(text, ABNF.OPCODE_TEXT))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping."""
        self.send_frame(ABNF.create_frame(payload, ABNF.OPCODE_PING))

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """Send a Close frame once (code None: an empty Close); errors ignored, the socket may be gone."""
        if self.close_sent or self.ws is None:
            return
        self.close_sent = True
        payload = b"" if code is None else code.to_bytes(2, "big") + reason
        try:
            self.send_frame(ABNF.create_frame(payload, ABNF.OPCODE_CLOSE))
        except (OSError, WebSocketException):
            pass

    def abort(self) -> None:
        """Close the TCP socket now (no Close frame)."""
        sock, self._sock = self._sock, None
        if self.ws is not None:
            self.ws.sock = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
