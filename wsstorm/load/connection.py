"""Frame-level WebSocket client: exact close codes and classified failures.

websocket-client validates Close frames itself and drops invalid ones (and plain
``recv()`` replaces the code), so frames are read here with our own frame buffer
and the Close payload is parsed by :func:`parse_close_payload`. The opening
handshake is ours too (same request, same checks, same exceptions), because
websocket-client reads the response one byte per recv call.
"""

from __future__ import annotations

import gevent
import gevent.lock
import gevent.monkey

import base64
import contextlib
import email.utils
import errno
import hashlib
import hmac
import os
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websocket import ABNF
from websocket._abnf import continuous_frame
from websocket._exceptions import (
    WebSocketAddressException,
    WebSocketBadStatusException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketProtocolException,
    WebSocketTimeoutException,
)
from websocket._handshake import CookieJar  # websocket-client's process-wide jar, kept as it was

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
        return Failure("tls", detail=f"{tls_reason(exc)}: {detail}"[:300])
    if isinstance(exc, (TimeoutError, socket.timeout, WebSocketTimeoutException)):
        return Failure("timeout", detail=detail)
    if isinstance(exc, ConnectionRefusedError):
        return Failure("refused", detail=detail)
    if isinstance(
        exc,
        (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, PeerEOF, WebSocketConnectionClosedException),
    ):
        return Failure("reset", detail=detail)
    if isinstance(exc, OSError):
        code = exc.errno
        if code in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH):
            return Failure("refused", detail=detail)
        if code == errno.ETIMEDOUT:
            return Failure("timeout", detail=detail)
        return Failure("reset", detail=detail)
    return Failure("protocol", detail=detail)  # WebSocketException, ValueError and anything else


class PeerEOF(ConnectionError):
    """The peer closed TCP (FIN) without a Close frame."""


class MessageTooBig(WebSocketProtocolException):
    """A frame or message larger than MAX_MESSAGE: the client fails the connection with 1009."""


@dataclass
class Incoming:
    """One thing read from an open connection."""

    kind: str  # message, pong, ping, close
    data: bytes = b""
    close: CloseInfo | None = None


def resolve(url: str) -> tuple[str, int, bool, tuple[Any, ...]]:
    """URL -> (host, port, secure, sockaddr); raises ValueError for a bad URL or port, gaierror if unresolvable."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    return host, port, secure, _sockaddr(host, port)


def _sockaddr(host: str, port: int) -> tuple[Any, ...]:
    # An IP literal needs no resolver: under gevent getaddrinfo goes through a thread pool,
    # which cost more CPU than the rest of an open. Names are resolved on every attempt.
    try:
        socket.inet_pton(socket.AF_INET, host)
        return (host, port)
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return (host, port, 0, 0)
    except OSError:
        pass
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][4]


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 65536  # a response head larger than this is not a WebSocket server's
_RECV = 65536
MAX_MESSAGE = 16 * 1024 * 1024  # bytes: a longer frame or message is refused (1009), never buffered
_MAX_BODY = 65536  # bytes of a rejection's body kept; the rest is not waited for
_DEFAULT_TLS: ssl.SSLContext | None = None  # built once: loading the CA store costs milliseconds
_TLS_CONTEXTS: dict[Any, ssl.SSLContext] = {}

# OpenSSL verify codes (X509_V_ERR_*) -> the reason a reader wants in a fail event's detail.
_VERIFY_REASONS = {
    2: "unknown CA",
    18: "unknown CA (self-signed certificate)",
    19: "unknown CA (self-signed CA in chain)",
    20: "unknown CA",
    21: "unknown CA",
    9: "certificate not yet valid",
    10: "certificate expired",
    62: "hostname mismatch",
    64: "IP address mismatch",
    23: "certificate revoked",
}


def tls_reason(exc: BaseException) -> str:
    """Why a TLS handshake failed, in words: unknown CA, hostname mismatch, certificate expired ..."""
    code = getattr(exc, "verify_code", None)
    if code in _VERIFY_REASONS:
        return _VERIFY_REASONS[code]
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate rejected"
    text = str(exc).lower()
    for needle, reason in (
        ("wrong version number", "not TLS (plain server?)"),
        ("alert unknown ca", "peer rejected our certificate (unknown CA)"),
        ("certificate required", "peer requires a client certificate"),
        ("alert bad certificate", "peer rejected our certificate"),
        ("handshake failure", "handshake failure"),
        ("eof occurred in violation", "connection closed during the TLS handshake"),
    ):
        if needle in text:
            return reason
    return "TLS error"


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
    hostport = f"[{host}]" if ":" in host else host
    if port not in (80, 443):
        hostport = f"{hostport}:{port}"
    resource = _resource(url)
    if query:
        resource += ("&" if "?" in resource else "?") + query
    lines = [
        f"GET {resource} HTTP/1.1",
        "Upgrade: websocket",
        f"Host: {hostport}",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Connection: Upgrade",
    ]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    return head + extra + b"\r\n"


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


def _data(frame: ABNF) -> bytes:
    """A frame's payload as bytes (ours are always bytes: this is for the type checker)."""
    d = frame.data
    return d if isinstance(d, bytes) else str(d).encode()


class WSConnection:
    """One client WebSocket connection: open, read frames, send, close, abort.

    The opening handshake is done here (websocket-client reads the response one byte per
    recv call, ~170 calls per open); frames are framed, masked and validated by websocket-client's
    ABNF, read from our own buffer with one recv per burst.
    """

    # one per connection attempt and per held connection: slots keep it small (issue 16)
    __slots__ = (
        "_buf",
        "_compressor",
        "_cont",
        "_decompressor",
        "_key",
        "_msg_compressed",
        "_open",
        "_sock",
        "_timeout",
        "_url_now",
        "_wlock",
        "close_sent",
        "compression",
        "connect_timeout",
        "deflate",
        "extra",
        "protocols",
        "query",
        "request_sent",
        "server_name",
        "source_address",
        "ssl_context",
        "subprotocol",
        "t0",
        "url",
    )

    def __init__(
        self,
        url: str,
        connect_timeout: float = 10.0,
        source_address: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str = "",
        *,
        query: str = "",
        protocols: tuple[str, ...] = (),
        extra: bytes = b"",
        compression: bool = False,
    ) -> None:
        self.url = url
        self.compression = compression  # offer permessage-deflate
        self.deflate: Deflate | None = None  # what the server agreed to, once open
        self._compressor: Any = None  # zlib objects, made on first use
        self._decompressor: Any = None
        self._msg_compressed = False
        self.query = query  # may carry a secret: never put into an exception's text
        self.protocols = protocols
        self.extra = extra  # rendered header lines (secrets too): same rule
        self.subprotocol: str | None = None  # the one the server chose
        self.request_sent = False  # the server may be answering: a stop must wait for the answer
        self._key = ""
        self._url_now = url
        self.t0 = 0.0
        self.connect_timeout = connect_timeout
        self.source_address = source_address
        self.ssl_context = ssl_context
        self.server_name = server_name  # SNI and the certificate's expected name, instead of the URL's host
        self._sock: socket.socket | None = None
        self._open = False
        self._buf = bytearray()  # del from the front is amortised O(1): no quadratic copying
        self._timeout: float | None = None  # the socket's current read timeout once open
        self._cont: continuous_frame | None = None
        self._wlock = gevent.lock.Semaphore()  # two greenlets send (pong/close vs. ping/message): whole frames
        self.close_sent = False

    def open(self) -> float:
        """Connect and handshake; returns connect time in ms. Raises on failure (see classify_exception)."""
        t0 = self.t0 = time.perf_counter()
        url = self.url
        try:
            for _ in range(4):  # websocket-client follows up to 3 redirects
                location = self._connect(url)
                if location is None:
                    break
                self.abort()
                url = location
            else:
                raise WebSocketException(f"too many redirects (last to {url!r})")
        except gevent.GreenletExit:
            # The run is stopping. A request on the wire may be admitted by the server: keep the
            # socket, so the caller can read the answer (finish_interrupted) and count it exactly.
            if not self.request_sent:
                self.abort()
            raise
        except BaseException:
            self.abort()
            raise
        return self._opened(t0)

    def _opened(self, t0: float) -> float:
        self._open = True
        self._cont = continuous_frame(False, True)
        return (time.perf_counter() - t0) * 1000.0

    def finish_interrupted(self, timeout: float) -> float | None:
        """After open() was interrupted (the run stopped): wait up to ``timeout`` s for the server's
        answer to the request already sent. Returns connect ms if it opened, None if there was no
        request on the wire or no answer in time (the socket is then closed); raises, as open()
        would, for a refusal (HTTP status, bad header), so it is recorded like any other."""
        if not self.request_sent or self._sock is None or self._open:
            self.abort()
            return None
        timer = gevent.Timeout(max(0.0, timeout))
        timer.start()
        try:
            if self._finish_handshake(self._url_now, self._key) is not None:
                self.abort()  # a redirect: not followed while stopping
                return None
        except gevent.Timeout as t:
            if t is not timer:
                raise
            self.abort()
            return None
        except BaseException:
            self.abort()
            raise
        finally:
            timer.close()
        return self._opened(self.t0)

    def _connect(self, url: str) -> str | None:
        """TCP (+TLS) connect and handshake to ``url``; returns a redirect's Location, else None.

        Under gevent one timer bounds the whole of it (not a timer per socket operation).
        """
        if not gevent.monkey.is_module_patched("socket"):
            return self._handshake(url, self.connect_timeout)
        timer = gevent.Timeout(self.connect_timeout)
        timer.start()
        try:
            return self._handshake(url, None)
        except gevent.Timeout as t:
            if t is not timer:
                raise
            raise WebSocketTimeoutException(f"timed out after {self.connect_timeout:g} s (TCP + handshake)") from None
        finally:
            timer.close()

    def _handshake(self, url: str, op_timeout: float | None) -> str | None:
        host, port, secure, addr = resolve(url)
        self.request_sent = False
        family = socket.AF_INET6 if len(addr) == 4 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock = sock
        self._buf = bytearray()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.source_address:
            # let connect() pick the port per 4-tuple, not bind() per source address
            sock.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT (Linux)
            sock.bind((self.source_address, 0))
        sock.settimeout(op_timeout)
        sock.connect(addr)
        if secure:
            ctx = self.ssl_context or _default_tls()
            sock = ctx.wrap_socket(sock, server_hostname=self.server_name or host)
            self._sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        request = handshake_request(
            url,
            host,
            port,
            key,
            CookieJar.get(host),
            query=self.query,
            protocols=self.protocols,
            extra=self.extra + _OFFER if self.compression else self.extra,
        )
        try:
            sock.sendall(request)
        except TimeoutError as exc:
            raise WebSocketTimeoutException(str(exc) or "timed out") from exc
        self.request_sent, self._key, self._url_now = True, key, url
        return self._finish_handshake(url, key)

    def _finish_handshake(self, url: str, key: str) -> str | None:
        """Read and check the server's answer to our request; a redirect's Location, else None."""
        sock = self._sock
        assert sock is not None
        try:
            head = self._read_head()
        except TimeoutError as exc:
            raise WebSocketTimeoutException(str(exc) or "timed out") from exc
        status, message, headers = parse_response_head(head)
        if status in _REDIRECTS:
            CookieJar.add(headers.get("set-cookie"))
            location = headers.get("location")
            if location is None:
                raise WebSocketException(f"Redirect response without Location header, status {status}")
            return location
        if status != 101:
            body = self._read_body(headers.get("content-length"))
            raise WebSocketBadStatusException(
                f"Handshake status {status} {message} -+-+- {headers} -+-+- "
                f"{body.decode('utf-8', errors='replace') if body else None}",
                status,
                message,
                headers,
                body,
            )
        if not accept_ok(headers, key):
            raise WebSocketException("Invalid WebSocket Header")
        if self.protocols:
            chosen = headers.get("sec-websocket-protocol")
            if chosen is not None and chosen.strip() not in self.protocols:
                raise WebSocketException(f"server chose a subprotocol we did not offer: {chosen[:60]!r}")
            self.subprotocol = chosen.strip() if chosen is not None else None
        if self.compression:
            self.deflate = parse_deflate(headers.get("sec-websocket-extensions"))
        CookieJar.add(headers.get("set-cookie"))
        sock.settimeout(None)
        return None

    def _fill(self) -> None:
        sock = self._sock
        if sock is None:
            raise WebSocketConnectionClosedException("socket is already closed.")
        data = sock.recv(_RECV)
        if not data:
            if not self._open:
                raise WebSocketConnectionClosedException("Connection to remote host was lost.")
            raise PeerEOF("peer closed TCP without a Close frame")
        self._buf += data

    def _read_head(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self._buf[: end + 2])
                del self._buf[: end + 4]
                return head
            nl = self._buf.find(b"\n\n")  # a bare-LF server (read_headers accepts it too)
            if nl >= 0:
                head = bytes(self._buf[: nl + 1])
                del self._buf[: nl + 2]
                return head
            if len(self._buf) > _MAX_HEAD:
                raise WebSocketException("Invalid header: response head too large")
            self._fill()

    def _read_body(self, content_length: str | None) -> bytes | None:
        """A rejection's body: at most _MAX_BODY bytes of it (the rest is never waited for)."""
        n = body_length(content_length)
        if n is None:
            return None
        try:
            while len(self._buf) < n:
                self._fill()
        except TimeoutError as exc:
            raise WebSocketTimeoutException(str(exc) or "timed out") from exc
        body = bytes(self._buf[:n])
        del self._buf[:n]
        return body

    def _frame_from_buf(self) -> ABNF | None:
        """The next whole frame in the buffer (consumed), or None if it is not all here yet."""
        buf = self._buf
        n = len(buf)
        if n < 2:
            return None
        b1, b2 = buf[0], buf[1]
        length = b2 & 0x7F
        pos = 2
        if length == 126:
            if n < 4:
                return None
            length, pos = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if n < 10:
                return None
            length, pos = int.from_bytes(buf[2:10], "big"), 10
        if length > MAX_MESSAGE:  # refused before any of it is buffered
            raise MessageTooBig(f"frame of {length} bytes exceeds the {MAX_MESSAGE}-byte limit")
        has_mask = b2 >> 7
        mask = b""
        if has_mask:
            if n < pos + 4:
                return None
            mask, pos = bytes(buf[pos : pos + 4]), pos + 4  # servers never mask: rare
        end = pos + length
        if n < end:
            return None
        payload = bytes(buf[pos:end])
        del buf[:end]
        if has_mask:
            payload = ABNF.mask(mask, payload)
        opcode = b1 & 0x0F
        rsv1 = b1 >> 6 & 1
        if rsv1 and self.deflate is not None and opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
            rsv1 = 0  # RFC 7692: RSV1 on a message's first frame = the message is compressed
            self._msg_compressed = True
        frame = ABNF(b1 >> 7, rsv1, b1 >> 5 & 1, b1 >> 4 & 1, opcode, has_mask, payload)
        if opcode != ABNF.OPCODE_CLOSE:  # Close frames are parsed by parse_close_payload
            frame.validate(True)
        return frame

    def read(self, timeout: float | None = None) -> Incoming | None:
        """Block for the next message, pong, ping or Close; None if ``timeout`` s pass first.

        Raises PeerEOF / OSError when TCP ends. A timeout never loses a partly received frame.
        """
        assert self._open and self._cont is not None
        cont = self._cont
        sock = self._sock
        if sock is not None and timeout != self._timeout:
            sock.settimeout(timeout)
            self._timeout = timeout
        while True:
            frame = self._frame_from_buf()
            if frame is None:
                try:
                    self._fill()
                except TimeoutError:
                    if timeout is None:
                        raise
                    return None
                continue
            op = frame.opcode
            if op in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
                cont.validate(frame)
                if cont.cont_data and len(cont.cont_data[1]) + len(frame.data) > MAX_MESSAGE:
                    raise MessageTooBig(f"fragmented message exceeds the {MAX_MESSAGE}-byte limit")
                cont.add(frame)
                if cont.is_fire(frame):
                    _op, whole = cont.extract(frame)
                    data = whole.data
                    data = data if isinstance(data, bytes) else str(data).encode()
                    if self._msg_compressed:
                        self._msg_compressed = False
                        data = self._inflate(data)
                    return Incoming("message", data)
            elif op == ABNF.OPCODE_CLOSE:
                return Incoming("close", close=parse_close_payload(_data(frame)))
            elif op == ABNF.OPCODE_PING:
                self.send_frame(ABNF.create_frame(frame.data, ABNF.OPCODE_PONG))
                return Incoming("ping", _data(frame))
            elif op == ABNF.OPCODE_PONG:
                return Incoming("pong", _data(frame))

    def send_frame(self, frame: ABNF) -> None:
        """Send one frame (masked by websocket-client's ABNF); never times out half-way."""
        if not self._open:
            raise PeerEOF("not open")
        sock = self._sock
        if sock is None:
            raise WebSocketConnectionClosedException("socket is already closed.")
        data = frame.format()
        with self._wlock:
            if self._timeout is None:
                sock.sendall(data)
            else:  # the read timeout must not cut a frame in two
                sock.settimeout(None)
                try:
                    sock.sendall(data)
                finally:
                    sock.settimeout(self._timeout)

    def send_text(self, text: str) -> None:
        """Send a text message (compressed when permessage-deflate was agreed)."""
        if self.deflate is None:
            self.send_frame(ABNF.create_frame(text, ABNF.OPCODE_TEXT))
            return
        frame = ABNF.create_frame(self._deflate(text.encode("utf-8")), ABNF.OPCODE_TEXT)
        frame.rsv1 = 1
        self.send_frame(frame)

    def _deflate(self, data: bytes) -> bytes:
        d = self.deflate
        assert d is not None
        c = self._compressor
        if c is None or d.client_no_context_takeover:
            c = self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -d.client_max_window_bits, 5
            )
        out: bytes = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out

    def _inflate(self, data: bytes) -> bytes:
        d = self.deflate
        assert d is not None
        z = self._decompressor
        if z is None or d.server_no_context_takeover:
            z = self._decompressor = zlib.decompressobj(-d.server_max_window_bits)
        try:
            out: bytes = z.decompress(data + b"\x00\x00\xff\xff", MAX_MESSAGE + 1)
        except zlib.error as exc:
            raise WebSocketProtocolException(f"bad compressed message: {exc}") from None
        if len(out) > MAX_MESSAGE or z.unconsumed_tail:  # a small frame can inflate to gigabytes
            raise MessageTooBig(f"compressed message inflates past the {MAX_MESSAGE}-byte limit")
        return out

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping."""
        self.send_frame(ABNF.create_frame(payload, ABNF.OPCODE_PING))

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """Send a Close frame once (code None: an empty Close); errors ignored, the socket may be gone."""
        if self.close_sent or not self._open:
            return
        self.close_sent = True
        payload = b"" if code is None else code.to_bytes(2, "big") + reason
        with contextlib.suppress(OSError, WebSocketException):
            self.send_frame(ABNF.create_frame(payload, ABNF.OPCODE_CLOSE))

    def abort(self) -> None:
        """Close the TCP socket now (no Close frame)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
