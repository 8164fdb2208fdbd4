"""Frame-level WebSocket client connection: open, read frames, send, close, abort.

Frames are read from our own buffer with one recv per burst and checked by websocket-client's
ABNF, and written by :mod:`wsstorm.load.frames`; Close payloads are parsed by
:mod:`wsstorm.load.classify` (exact codes), the handshake's bytes and rules live in
:mod:`wsstorm.load.handshake`. The names of both stay importable from here (the connection's
public API).
"""

from __future__ import annotations

import gevent
import gevent.lock
import gevent.monkey
import gevent.socket

import base64
import contextlib
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any

from websocket import ABNF
from websocket._abnf import continuous_frame
from websocket._exceptions import (
    WebSocketBadStatusException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketProtocolException,
    WebSocketTimeoutException,
)
from websocket._handshake import CookieJar  # websocket-client's process-wide jar, kept as it was

from wsstorm.load import frames
from wsstorm.load.classify import (
    CloseInfo,
    Failure,
    MessageTooBig,
    PeerEOF,
    answer_code,
    classify_exception,
    is_valid_wire_code,
    parse_close_payload,
    parse_retry_after,
    tls_reason,
)
from wsstorm.load.handshake import (
    _GUID,  # noqa: F401  (re-exported: tests compute accept keys)
    _MAX_HEAD,
    _OFFER,
    _RECV,
    _REDIRECTS,
    MAX_MESSAGE,
    Deflate,
    _default_tls,
    accept_ok,
    body_length,
    handshake_request,
    parse_deflate,
    parse_response_head,
    resolve,
    tls_context,
)

__all__ = [
    "MAX_MESSAGE",
    "CloseInfo",
    "Deflate",
    "Failure",
    "Incoming",
    "MessageTooBig",
    "PeerEOF",
    "WSConnection",
    "accept_ok",
    "answer_code",
    "body_length",
    "classify_exception",
    "handshake_request",
    "is_valid_wire_code",
    "parse_close_payload",
    "parse_deflate",
    "parse_response_head",
    "parse_retry_after",
    "resolve",
    "tls_context",
    "tls_reason",
]


@dataclass
class Incoming:
    """One thing read from an open connection."""

    kind: str  # message, pong, ping, close
    data: bytes = b""
    close: CloseInfo | None = None


_WHOLE = frozenset((0x81, 0x82))  # first byte of a whole (FIN) text/binary frame with no RSV bits


def _readable(watcher: Any, timeout: float) -> bool:
    """Wait until ``watcher``'s socket is readable (True) or ``timeout`` s pass (False).

    What a held connection does between its pings and messages (issue 16): gevent's recv with a
    timeout makes, starts and cancels a Timeout per wait, tries a recv that fails first, and
    raises on expiry; this is one timer and a switch. Another greenlet waiting on the same
    socket (none does: one greenlet per connection) gets gevent's own path instead."""
    if timeout <= 0:
        return False
    if watcher.active:
        try:
            gevent.socket.wait_read(watcher.fd, timeout)
        except TimeoutError:
            return False
        return True
    hub = gevent.get_hub()
    me = gevent.getcurrent()
    loop = hub.loop
    timer = loop.timer(timeout)
    loop.update_now()  # as gevent.sleep: the timeout counts from now, not the loop's cached time
    watcher.start(me.switch, True)
    timer.start(me.switch, False)
    try:
        ready: bool = hub.switch()
        return ready
    finally:
        watcher.stop()
        timer.close()


def _send_all(sock: socket.socket, data: bytes) -> None:
    """sendall, cheaper for what fits the socket's buffer at once (a frame, a request): gevent's
    sendall pays for chunking and deadlines on every call (issue 16)."""
    n = sock.send(data)
    if n < len(data):
        sock.sendall(data[n:])


def _data(frame: ABNF) -> bytes:
    """A frame's payload as bytes (ours are always bytes: this is for the type checker)."""
    d = frame.data
    return d if isinstance(d, bytes) else str(d).encode()


class WSConnection:
    """One client WebSocket connection: open, read frames, send, close, abort.

    The opening handshake is done here (websocket-client reads the response one byte per
    recv call, ~170 calls per open); frames received are validated by websocket-client's ABNF, read
    from our own buffer with one recv per burst; frames sent are written by wsstorm.load.frames.
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
        "_sending",
        "_sock",
        "_timeout",
        "_url_now",
        "_watch",
        "_wlock",
        "close_sent",
        "compression",
        "connect_timeout",
        "deflate",
        "extra",
        "protocols",
        "query",
        "request_sent",
        "resumed",
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
        self.resumed: bool | None = None  # the embedded target's X-WSStorm-Resumed on the 101, if sent
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
        self._watch: Any = None  # the socket's read watcher, once open on plain TCP under gevent
        # Whole frames when two greenlets send: made at the first such meeting (see send_frame).
        self._wlock: gevent.lock.Semaphore | None = None
        self._sending = False  # a frame is being written without the lock
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
        sock = self._sock
        if type(sock) is gevent.socket.socket:  # not TLS: its own buffer may hold data no watcher sees
            self._watch = getattr(sock, "_read_event", None)
        # Held for the connection's life (issue 16): no key, no continuation state until a frame
        # needs it, and no buffer sized for the handshake's response head.
        self._key = ""
        if not self._buf:
            self._buf = bytearray()
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
        if op_timeout is not None or sock.gettimeout() is not None:  # a call per attempt saved (issue 16)
            sock.settimeout(op_timeout)
        sock.connect(addr)
        if secure:
            ctx = self.ssl_context or _default_tls()
            sock = ctx.wrap_socket(sock, server_hostname=self.server_name or host)
            self._sock = sock
        key = base64.b64encode(frames.random_bytes(16)).decode()
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
            _send_all(sock, request)
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
        if "x-wsstorm-resumed" in headers:  # wsstorm.target.sessions.RESUMED_HEADER
            self.resumed = headers["x-wsstorm-resumed"].strip() == "1"
        CookieJar.add(headers.get("set-cookie"))
        if sock.gettimeout() is not None:
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
        assert self._open
        cont = self._cont  # made by the first frame the shortcut below does not take
        sock = self._sock
        watch = self._watch if timeout is not None else None
        deadline = 0.0
        if watch is not None and timeout is not None:  # the deadline is ours: the socket never times out
            deadline = time.monotonic() + timeout
            timeout = None
        if sock is not None and timeout != self._timeout:
            sock.settimeout(timeout)
            self._timeout = timeout
        buf = self._buf
        while True:
            if len(buf) >= 2 and buf[0] in _WHOLE and buf[1] < 126 and (cont is None or cont.cont_data is None):
                # The common frame (issue 16): one whole, short, unmasked text or binary message
                # with none in progress. The ABNF/continuation path would find it valid and leave
                # its state as it was: the same payload, without an ABNF and four checks per message.
                end = 2 + buf[1]
                if len(buf) >= end:
                    data = bytes(buf[2:end])
                    del buf[:end]
                    return Incoming("message", data)
            frame = self._frame_from_buf()
            if frame is None:
                if watch is not None and not _readable(watch, deadline - time.monotonic()):
                    return None
                try:
                    self._fill()
                except TimeoutError:
                    if timeout is None:
                        raise
                    return None
                continue
            op = frame.opcode
            if op in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
                if cont is None:
                    cont = self._cont = continuous_frame(False, True)
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
                self.send_frame(frames.OP_PONG, _data(frame))
                return Incoming("ping", _data(frame))
            elif op == ABNF.OPCODE_PONG:
                return Incoming("pong", _data(frame))

    def send_frame(self, opcode: int, payload: bytes, rsv1: bool = False) -> None:
        """Send one whole frame (masked, :mod:`wsstorm.load.frames`); never times out half-way."""
        if not self._open:
            raise PeerEOF("not open")
        sock = self._sock
        if sock is None:
            raise WebSocketConnectionClosedException("socket is already closed.")
        data = frames.encode(opcode, payload, rsv1=rsv1)
        lock = self._wlock
        if lock is None and not self._sending:
            # No lock until a second greenlet finds a frame half-written (issue 16: a Semaphore,
            # ~150 B, on every held connection, where one greenlet does all the sending). That
            # one makes the lock already taken, and this frame's end hands it over.
            self._sending = True
            try:
                self._write(sock, data)
            finally:
                self._sending = False
                if self._wlock is not None:
                    self._wlock.release()
            return
        if lock is None:
            lock = self._wlock = gevent.lock.Semaphore(0)
        with lock:
            self._write(sock, data)

    def _write(self, sock: socket.socket, data: bytes) -> None:
        if self._timeout is None:
            _send_all(sock, data)
        else:  # the read timeout must not cut a frame in two
            sock.settimeout(None)
            try:
                _send_all(sock, data)
            finally:
                sock.settimeout(self._timeout)

    def send_text(self, text: str) -> None:
        """Send a text message (compressed when permessage-deflate was agreed)."""
        if self.deflate is None:
            self.send_frame(frames.OP_TEXT, text.encode("utf-8"))
        else:
            self.send_frame(frames.OP_TEXT, self._deflate(text.encode("utf-8")), rsv1=True)

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
        self.send_frame(frames.OP_PING, payload)

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """Send a Close frame once (code None: an empty Close); errors ignored, the socket may be gone."""
        if self.close_sent or not self._open:
            return
        self.close_sent = True
        payload = b"" if code is None else code.to_bytes(2, "big") + reason
        with contextlib.suppress(OSError, WebSocketException):
            self.send_frame(frames.OP_CLOSE, payload)

    def abort(self) -> None:
        """Close the TCP socket now (no Close frame)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
