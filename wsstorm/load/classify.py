"""What ended a connection or an attempt: Close frames parsed exactly, failures classified.

websocket-client validates Close frames itself and drops invalid ones (and plain ``recv()``
replaces the code), so the Close payload is parsed here (:func:`parse_close_payload`): the
recorded code, the wire value and the protocol error. Failures before open become a
:class:`Failure` kind (refused, timeout, http_status, tls, dns, protocol, reset), TLS ones with
their reason in words (:func:`tls_reason`). Pure apart from the exception types it knows.
"""

from __future__ import annotations

import email.utils
import errno
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from websocket._exceptions import (
    WebSocketAddressException,
    WebSocketBadStatusException,
    WebSocketConnectionClosedException,
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


def close_fields(info: CloseInfo, by: str) -> dict[str, Any]:
    """The `close` event fields of a Close frame read (``by`` who closed first); protocol errors kept raw."""
    out: dict[str, Any] = {"code": info.code, "reason": info.reason, "by": by, "clean": info.error is None}
    if info.error is not None:
        out.update(raw_code=info.raw_code, raw_reason_hex=info.raw_reason_hex, protocol_error=info.error)
    return out


def abnormal(how: str, detail: str | None = None) -> dict[str, Any]:
    """The close fields of a connection that ended without a Close frame (1006, ``how`` it ended)."""
    out: dict[str, Any] = {"code": 1006, "reason": "", "by": "none", "clean": False, "how": how}
    if detail is not None:
        out["detail"] = detail[:200]
    return out
