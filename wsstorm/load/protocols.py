"""Application protocols on top of WebSocket: a ready condition, Socket.IO v5 and graphql-transport-ws.

An :class:`AppSpec` (compiled once per process from the options) makes one :class:`Adapter` per
connection. The adapter says what to send once the socket opens (:meth:`Adapter.hello`), reads
every text message (:meth:`Adapter.on_text` -> :class:`Step`: replies, ready, an echoed sequence
number, a protocol failure, a disconnect reason), wraps the user's periodic messages
(:meth:`Adapter.message`) and names the protocol's reason for a close (:meth:`Adapter.close_reason`).
Plain ``ws`` without a ready condition has no adapter at all: the hot path stays as it was.
Pure: no sockets; the user (wsstorm.load.user) does the I/O.

Behaviour follows the real clients: socket.io-client / engine.io-client v4 (``EIO=4``, open packet
``0{...}``, dead when no packet for pingInterval + pingTimeout, ``2`` answered by ``3``, namespace
CONNECT ``40`` with the auth payload, CONNECT_ERROR ``44``, DISCONNECT ``41``, events ``42[...]``)
and the graphql-transport-ws spec (enisdenjo/graphql-ws PROTOCOL.md).
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wsstorm.errors import UsageError
from wsstorm.load.template import Template, compile_template
from wsstorm.runfolder.schemas import CLOSE_CODE_NAMES

PROTOCOLS = ("ws", "socketio", "graphql-ws")
GRAPHQL_SUBPROTOCOL = "graphql-transport-ws"
DEFAULT_READY_TIMEOUT = 10.0
_DETAIL = 200  # chars of untrusted server text kept in a detail


@dataclass(frozen=True, slots=True)
class Step:
    """What one received text message means to the user."""

    replies: tuple[str, ...] = ()  # text messages to send back now (pong, namespace connect ...)
    ready: bool = False  # the application's ready reply
    echo: int | None = None  # the sequence number of one of our messages, echoed back
    fail: str | None = None  # a protocol-level refusal (detail): recorded as `fail kind=protocol`
    message: bool = False  # an application message (counts in Locust's "message" entry)
    end: bool = False  # the protocol ended the session: the client closes the socket (1000), as the real client


NOTHING = Step()


@dataclass(frozen=True, slots=True)
class Matcher:
    """A ready condition: ``json:a.b=value`` (a field of a JSON object), ``json:a.b`` (present) or ``re:REGEX``."""

    source: str
    path: tuple[str, ...] = ()
    value: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, data: bytes) -> bool:
        """True if the message ``data`` is the ready reply."""
        text = data.decode("utf-8", errors="replace")
        if self.regex is not None:
            return self.regex.search(text) is not None
        try:
            obj: Any = json.loads(text)
        except ValueError:
            return False
        for key in self.path:
            if isinstance(obj, dict) and key in obj:
                obj = obj[key]
            elif isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
                obj = obj[int(key)]
            else:
                return False
        if self.value is None:
            return True
        return (obj if isinstance(obj, str) else json.dumps(obj)) == self.value


def parse_matcher(text: str) -> Matcher:
    """Compile ``--ready-match``; UsageError (one line) for a bad one."""
    kind, sep, rest = text.partition(":")
    if kind == "re" and sep:
        try:
            return Matcher(text, regex=re.compile(rest))
        except re.error as exc:
            raise UsageError(f"--ready-match: bad regex: {exc}") from None
    if kind == "json" and sep and rest:
        path, eq, value = rest.partition("=")
        keys = tuple(k for k in path.strip().split("."))
        if not all(keys):
            raise UsageError(f"--ready-match {text[:60]!r}: empty field name in the path")
        return Matcher(text, keys, value if eq else None)
    raise UsageError(f"--ready-match must be 'json:FIELD=VALUE', 'json:FIELD' or 're:REGEX', got {text[:60]!r}")


@dataclass(frozen=True)
class AppSpec:
    """The application layer of a run (compiled options): protocol, ready condition, payloads."""

    protocol: str = "ws"
    ready_send: Template | None = None
    ready_match: Matcher | None = None
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    payload: tuple[tuple[str, Template], ...] = ()  # connection_init payload / Socket.IO auth
    subscribe: str = ""  # graphql-ws: a subscription query sent after the ack

    @property
    def active(self) -> bool:
        """True if connections need an adapter (a protocol, or a ready condition)."""
        return self.protocol != "ws" or self.ready_match is not None or self.ready_send is not None

    @property
    def gated(self) -> bool:
        """True if a connection counts as connected only once ready (``ready`` events are written)."""
        return self.protocol != "ws" or self.ready_match is not None

    def url(self, url: str) -> str:
        """The URL to connect to: Socket.IO's endpoint (``/socket.io/?EIO=4&transport=websocket``)."""
        if self.protocol != "socketio":
            return url
        u = urlsplit(url)
        path = u.path if u.path not in ("", "/") else "/socket.io/"
        query = "EIO=4&transport=websocket" + (f"&{u.query}" if u.query else "")
        return urlunsplit((u.scheme, u.netloc, path, query, u.fragment))

    def subprotocols(self, offered: tuple[str, ...]) -> tuple[str, ...]:
        """The subprotocols to offer: graphql-ws always offers ``graphql-transport-ws``."""
        if self.protocol == "graphql-ws" and GRAPHQL_SUBPROTOCOL not in offered:
            return (GRAPHQL_SUBPROTOCOL, *offered)
        return offered

    def adapter(self, user: str, n: int, conn: int, run: str) -> Adapter:
        """A fresh adapter for one connection, its templates rendered for this user and connection."""
        send = self.ready_send.render(user, n, conn, run) if self.ready_send is not None else None
        payload = {k: t.render(user, n, conn, run) for k, t in self.payload}
        if self.protocol == "socketio":
            return SocketIO(payload)
        if self.protocol == "graphql-ws":
            return GraphQLWS(payload, self.subscribe)
        return ReadyWS(send, self.ready_match)


def compile_app(
    protocol: str,
    ready_send: str,
    ready_match: str,
    ready_timeout: float | None,
    payload: list[str],
    subscribe: str,
) -> AppSpec:
    """Check and compile the application options (one-line UsageError, never a value in it)."""
    protocol = (protocol or "ws").strip().lower()
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol[:40]!r}")
    if protocol != "ws" and (ready_send or ready_match):
        raise UsageError(f"--ready-send/--ready-match are for --protocol ws; {protocol} has its own ready reply")
    if payload and protocol == "ws":
        raise UsageError("--init-payload is for --protocol socketio or graphql-ws")
    if subscribe and protocol != "graphql-ws":
        raise UsageError("--subscribe is for --protocol graphql-ws")
    timeout = DEFAULT_READY_TIMEOUT if ready_timeout is None else float(ready_timeout)
    if not (0 < timeout < float("inf")):
        raise UsageError(f"--ready-timeout must be > 0, got {timeout}")
    items = []
    for i, kv in enumerate(payload, 1):
        key, sep, value = str(kv).partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--init-payload #{i} must be 'key=value'")
        items.append((key.strip(), compile_template(value, f"--init-payload #{i} ({key.strip()})")))
    return AppSpec(
        protocol=protocol,
        ready_send=compile_template(ready_send, "--ready-send") if ready_send else None,
        ready_match=parse_matcher(ready_match) if ready_match else None,
        ready_timeout=timeout,
        payload=tuple(items),
        subscribe=subscribe,
    )


class Adapter:
    """One connection's application protocol (the base: plain messages, nothing to wait for)."""

    gated = False  # a ready reply is awaited before the connection counts as connected
    ws_pings = True  # WebSocket ping/pong is the dead-peer rule (else: dead_after)
    dead_after: float | None = None  # seconds without any message after which the peer is dead
    ready = False
    secrets: tuple[str, ...] = ()  # rendered payload values, scrubbed from anything recorded

    def hello(self) -> list[str]:
        """Text messages to send once the socket is open."""
        return []

    def on_text(self, data: bytes) -> Step:
        """Read one received message."""
        return NOTHING

    def message(self, seq: int, size: int) -> str:
        """The user's periodic message number ``seq`` (``size`` bytes of text at least)."""
        return plain_message(seq, size)

    def close_reason(self, code: int, how: str | None) -> str | None:
        """The protocol's name for why the connection ended (``app_reason``), or None."""
        return None


def plain_message(seq: int, size: int) -> str:
    """``"<seq> xxx..."``: the echo message (its sequence number keys the round trip)."""
    head = f"{seq} "
    return head + "x" * max(0, size - len(head))


def echo_seq(data: bytes | str) -> int | None:
    """The sequence number at the head of an echoed message, or None."""
    head = data[:24].split(b" ", 1)[0] if isinstance(data, bytes) else data[:24].split(" ", 1)[0]
    try:
        return int(head)
    except ValueError:
        return None


class ReadyWS(Adapter):
    """Plain WebSocket with an application handshake: send a hello, wait for the matching reply."""

    def __init__(self, send: str | None, match: Matcher | None) -> None:
        self.send = send
        self.match = match
        self.gated = match is not None
        self.secrets = (send,) if send and len(send) >= 4 else ()

    def hello(self) -> list[str]:
        return [self.send] if self.send is not None else []

    def on_text(self, data: bytes) -> Step:
        if not self.ready and self.match is not None and self.match.matches(data):
            self.ready = True
            return Step(ready=True)
        seq = echo_seq(data)
        return Step(echo=seq) if seq is not None else NOTHING


def _payload_secrets(payload: dict[str, str]) -> tuple[str, ...]:
    return tuple(v for v in payload.values() if len(v) >= 4)


class SocketIO(Adapter):
    """Engine.IO v4 + Socket.IO v5 over WebSocket, namespace ``/`` (socket.io-client's defaults)."""

    ws_pings = False  # engine.io-client never sends WebSocket pings: the server pings with "2"
    gated = True

    def __init__(self, auth: dict[str, str]) -> None:
        self.connect = "40" + (json.dumps(auth, separators=(",", ":")) if auth else "")
        self.secrets = _payload_secrets(auth)
        self.reason: str | None = None  # set by a DISCONNECT or close packet from the server

    def on_text(self, data: bytes) -> Step:
        if not data:
            return NOTHING
        kind = data[:1]
        if kind == b"2":  # ping: answer at once (a probe's payload is echoed)
            return Step(replies=("3" + data[1:].decode("utf-8", errors="replace"),))
        if kind == b"4":
            return self._socket_packet(data[1:])
        if kind == b"0":  # the open packet: the heartbeat rule, then the namespace connect
            try:
                hs = json.loads(data[1:])
                dead_after = (float(hs["pingInterval"]) + float(hs["pingTimeout"])) / 1000.0
            except (ValueError, KeyError, TypeError):
                dead_after = -1.0
            if not 0 < dead_after < 1e7:  # untrusted numbers: NaN, inf or <= 0 would break the rule
                return Step(fail=f"Engine.IO: bad open packet {data[:60]!r}")
            self.dead_after = dead_after
            return Step(replies=(self.connect,))
        if kind == b"1":  # the server closes the Engine.IO session
            self.reason = self.reason or "io server disconnect"
        return NOTHING

    def _socket_packet(self, p: bytes) -> Step:
        kind = p[:1]
        if kind == b"2":  # EVENT: 42["message", "<seq> ..."] (an ack id may come before the array)
            start = p.find(b"[")
            try:
                args = json.loads(p[start:]) if start >= 0 else []
            except ValueError:
                args = []
            if not isinstance(args, list):
                args = []
            seq = echo_seq(args[1]) if len(args) > 1 and isinstance(args[1], str) else None
            return Step(echo=seq, message=seq is None)
        if kind == b"0":  # CONNECT ack: 40{"sid": ...}
            if not self.ready:
                self.ready = True
                return Step(ready=True)
            return NOTHING
        if kind == b"4":  # CONNECT_ERROR: 44{"message": ...}
            try:
                msg = json.loads(p[1:]).get("message", "")
            except (ValueError, AttributeError):
                msg = p[1:].decode("utf-8", errors="replace")
            return Step(fail=f"Socket.IO CONNECT_ERROR: {str(msg)[:_DETAIL]}")
        if kind == b"1":  # DISCONNECT of the namespace: socket.io-client's Manager then closes the engine
            self.reason = "io server disconnect"
            return Step(end=True)
        return NOTHING

    def message(self, seq: int, size: int) -> str:
        return "42" + json.dumps(["message", plain_message(seq, size)])

    def close_reason(self, code: int, how: str | None) -> str | None:
        if how == "ping_timeout":
            return "ping timeout"
        return self.reason or "transport close"


class GraphQLWS(Adapter):
    """graphql-transport-ws: connection_init, connection_ack = ready, ping/pong, an optional subscription.

    The user's periodic messages are protocol pings; each pong (answered in order) is the echo."""

    gated = True

    def __init__(self, payload: dict[str, str], subscribe: str) -> None:
        init: dict[str, Any] = {"type": "connection_init"}
        if payload:
            init["payload"] = payload
        self.init = json.dumps(init, separators=(",", ":"))
        self.subscribe = subscribe
        self.secrets = _payload_secrets(payload)
        self.pings: deque[int] = deque(maxlen=1000)

    def hello(self) -> list[str]:
        return [self.init]

    def on_text(self, data: bytes) -> Step:
        try:
            msg = json.loads(data)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            return NOTHING
        if kind == "next":
            return Step(message=True)
        if kind == "ping":
            return Step(replies=('{"type":"pong"}',))
        if kind == "pong":
            return Step(echo=self.pings.popleft()) if self.pings else NOTHING
        if kind == "connection_ack" and not self.ready:
            self.ready = True
            if self.subscribe:
                sub = {"id": "1", "type": "subscribe", "payload": {"query": self.subscribe}}
                return Step(replies=(json.dumps(sub),), ready=True)
            return Step(ready=True)
        if kind == "error":  # an operation's errors (not fatal to the socket)
            return Step(message=True)
        return NOTHING

    def message(self, seq: int, size: int) -> str:
        self.pings.append(seq)
        return '{"type":"ping"}'

    def close_reason(self, code: int, how: str | None) -> str | None:
        name = CLOSE_CODE_NAMES.get(code, "")
        return name.replace(" (graphql-ws)", "") if 4400 <= code <= 4499 or code == 4500 else None
