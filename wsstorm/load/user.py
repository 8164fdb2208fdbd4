"""The Locust WebSocket user: holds a connection, pings, messages, reconnects per policy, records all.

Owns :class:`WebSocketUser` (one greenlet per user: connect, hold, wait, reconnect) and the typed
:class:`AttemptResult` it hands to the reconnect policy. Run-level state and hooks live in
:mod:`wsstorm.load.session`, options in :mod:`wsstorm.load.options`, frames in
:mod:`wsstorm.load.connection`. Importing this module registers all of them with Locust.
"""

from __future__ import annotations

import gevent
from locust import User, task

import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.load import sockets as sockets_mod
from wsstorm.load.classify import abnormal as _abnormal
from wsstorm.load.classify import close_fields as _close_fields
from wsstorm.load.connection import CloseInfo, MessageTooBig, PeerEOF, WSConnection, answer_code, classify_exception
from wsstorm.load.options import derive_seed
from wsstorm.load.protocols import Adapter, echo_seq, plain_message
from wsstorm.load.protocols_user import AppUserMixin, WSFailure
from wsstorm.load.session import SESSION, ensure_recorder, log
from wsstorm.load.template import Rendered, scrub
from wsstorm.policies import Outcome, hint_from_reason, stream_unit

# Every user is a greenlet: gevent's spawn-tree tracking (the spawning stack's frames, tree locals)
# is debugging aid kept on each of them, ~0.5 KiB per held connection (issue 16). Read per spawn.
gevent.config.track_greenlet_tree = False

MAX_PENDING = 1000  # messages awaiting their echo per connection; the oldest are forgotten past it
FAILURE_CODES = frozenset({1002, 1006, 1007, 1011, 1013})  # closes that are failures by nature
CLIENT_STOP_WAIT = 0.3  # seconds a stopping user waits for the server's Close reply
STOP_HANDSHAKE_WAIT = 2.0  # seconds a stopping user waits for the answer to a handshake it sent
INF = float("inf")
# A held connection's wake-ups more than WAKE_COALESCE_AFTER s away are rounded up to a grid of
# the monotonic clock shared by every connection (issue 16): 10,000 connections with seeded message
# phases otherwise each wake the event loop on its own (an epoll_wait and a loop turn per
# message); on the grid the wakes due within one slot are served by one turn. The grid is
# WAKE_SLACK * 2^k, the coarsest not over WAKE_SHARE of the wait (10 ms for waits of 1-2 s, 40 ms
# for 4-8 s), so nothing is sent more than 1% of its wait late; a coarser grid's points are points
# of every finer one, so waits of different lengths still share turns. On bench_vs_peers' workload
# at 10,000 (a message every 5 s) 40 ms rather than 10 took 13.31 -> 12.48 CPU-s (medians of 7 pairs).
WAKE_SLACK = 0.01
WAKE_SHARE = 0.01
_WAKE_DOUBLINGS = 10  # the coarsest grid: ~10 s (for waits of over 17 minutes)
WAKE_COALESCE_AFTER = 1.0
_NO_EXTRAS = Rendered()


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one attempt ended: what the policy is told, and what the wait/giveup events say."""

    after: int | str  # the close code, or the fail kind (refused, http_503, timeout ...)
    closed: bool  # it opened and then closed: the conn number moves on
    outcome: Outcome
    ready: bool = True  # it was connected (ready, where a ready reply is awaited): the attempt count resets


_POLICY_ERRORS_LOGGED = [False]


def _policy_failed(exc: BaseException) -> str:
    """Short text for a policy that raised; logged (with traceback) once per process."""
    if not _POLICY_ERRORS_LOGGED[0]:
        _POLICY_ERRORS_LOGGED[0] = True
        log.error("wsstorm: the reconnect policy failed; the user gives up", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"[:200]


def policy_decision(policy: Any, outcome: Outcome | Mapping[str, Any]) -> tuple[float | None, str | None]:
    """The policy's next delay after an outcome, guarded: (delay, None), (None, None) to give up,
    or (None, error text) when the policy raised or gave no finite delay >= 0.

    ``outcome`` is an :class:`Outcome`, or its fields as a mapping (checked here, so a bad one
    is a policy error too)."""
    try:
        if not isinstance(outcome, Outcome):
            outcome = Outcome(**outcome)
        delay = policy.next_delay(outcome)
        if delay is None:
            return None, None
        delay = float(delay)
    except Exception as exc:
        return None, _policy_failed(exc)
    if not (0 <= delay < INF):
        return None, _policy_failed(ValueError(f"policy returned delay {delay!r}"))
    return delay, None


@dataclass(slots=True)
class _Conn:
    """State of one open connection (read, pinged and recorded by its user's greenlet)."""

    c: WSConnection
    opened_mono: float
    last_rx: float
    result: dict[str, Any] | None = None  # close fields once the connection ended
    ping_sent: float | None = None
    # Messages awaiting their echo, seq -> perf_counter at send: the newest in two slots, older
    # ones (there are rarely any: an echo is back long before the next send) in a dict made when
    # first needed. A dict per connection held ~220 B on every held connection (issue 16).
    last_seq: int = 0  # 0: none (seqs start at 1)
    last_sent: float = 0.0
    pending: dict[int, float] | None = None
    app: Adapter | None = None  # the application protocol / ready condition, if any
    app_fail: str | None = None  # fail kind recorded after open (ready_timeout, protocol): the policy's outcome

    def sent(self, seq: int, t: float) -> None:
        """Message ``seq`` was sent at ``t``; of all awaited, the oldest are dropped past MAX_PENDING."""
        if self.last_seq:
            older = self.pending
            if older is None:
                older = self.pending = {}
            older[self.last_seq] = self.last_sent
            if len(older) >= MAX_PENDING:
                older.pop(next(iter(older)))
        self.last_seq, self.last_sent = seq, t

    def echoed(self, seq: int) -> float | None:
        """The send time of ``seq`` if its echo was awaited (then no longer), else None."""
        if seq and seq == self.last_seq:
            self.last_seq = 0
            return self.last_sent
        older = self.pending
        return older.pop(seq, None) if older else None


class WebSocketUser(AppUserMixin, User):
    """A WebSocket client: connect, hold, ping, message; on close wait per policy and reconnect."""

    abstract = False
    host = None
    wsstorm_user = True  # session.mark_stopping may stop it without Locust's greenlet per user

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        s = SESSION
        if s.cfg is None:  # Environment API without Locust's CLI: defaults only
            raise UsageError(
                "wsstorm.load.user needs Locust's command-line options (run with `locust -f locustfile.py`)"
            )
        self.cfg = s.cfg
        self.index = s.users
        self.user_id = s.next_user()
        self.number = s.user_number()  # n of {n} and {file:PATH} templates
        self._extras: Rendered | None = None  # this user's rendered headers/query, unless per connection
        self._secrets: tuple[str, ...] = ()  # the values of the attempt in flight, scrubbed from details
        # Memory per held connection (issue 16): no Random per user (2.5 KiB of Mersenne state) for
        # the message phase, and the policy (~0.45 KiB with its RNG) made at its first decision.
        self._phase_seed = derive_seed(self.cfg.seed, self.user_id)
        self._policy: Any = None
        self._opens_pending = 0  # opens the policy has not been told of yet (it did not exist)
        self.policy_text = _policy_text(self.cfg.policy)
        self.throttled = getattr(self.cfg.policy, "throttle", None) is not None  # sre-throttle may skip attempts
        self.conn_no = 1
        self.live: _Conn | None = None
        self.opening: WSConnection | None = None  # the attempt in flight, until it opened or failed
        self.stopped = False
        self.source: str | None = None
        self.url = ""  # set in on_start, once the host is known
        self.app = self.cfg.app if self.cfg.app.active else None  # None: plain ws, nothing extra per message
        self.protocols = self.cfg.app.subprotocols(self.cfg.extras.subprotocols)

    # -- helpers

    @property
    def policy(self) -> Any:
        """This user's reconnect policy, made on first use: a held connection that never closes
        carries none. The same seeds as ever, and the opens it missed replayed in order, so its
        decisions are exactly those of a policy made at spawn (its open rule is pure)."""
        p = self._policy
        if p is None:
            cfg = self.cfg
            p = self._policy = cfg.policy.client(
                seed=derive_seed(cfg.seed, self.user_id, "policy"), process_seed=_process_seed(cfg.seed)
            )
            for _ in range(self._opens_pending):
                p.opened()
            self._opens_pending = 0
        return p

    def _policy_opened(self) -> None:
        """Tell the policy a connection opened (counted until the policy exists)."""
        if self._policy is None:
            self._opens_pending += 1
        else:
            self._policy.opened()

    def _rec(self, event: str, **fields: Any) -> None:
        rec = SESSION.recorder or ensure_recorder(self.environment)
        rec.emit(self.user_id, self.conn_no, event, fields)

    def _report(self, name: str, ms: float, exc: Exception | None = None, length: int = 0) -> None:
        self.environment.events.request.fire(
            request_type="WS", name=name, response_time=ms, response_length=length, exception=exc, context={}
        )

    # -- the lifecycle

    def on_start(self) -> None:
        host = self.host or self.environment.host or ""
        self.url = self.cfg.app.url(host)
        if _on_loopback(host):
            self.source = sockets_mod.source_address(
                self.index, sockets_mod.process_slot(), always=SESSION.role == "worker"
            )

    @task
    def lifecycle(self) -> None:
        """Connect, hold, wait, reconnect, until the run stops (never returns)."""
        delay = 0.0
        scheduled = time.time()
        attempt = 0
        while True:
            now = time.time()
            if scheduled > now:
                _sleep_first(scheduled - now)
            attempt += 1
            self._rec("attempt", attempt=attempt, planned_delay=delay, scheduled_t=scheduled)
            result = self._try_once()
            if result.closed and result.ready:  # connected and then closed
                attempt = 0
            after = result.after
            next_delay: float | None = None
            try:
                next_delay, error = policy_decision(self.policy, result.outcome)
                if next_delay is None:
                    self._giveup(after, error)
                else:
                    skipped = self.policy.skipped if self.throttled else 0
                    if skipped:  # a client-side throttle skipped attempts locally; the delay holds their waits
                        self._rec("wait", delay=next_delay, policy=self.policy_text, after_code=after, skipped=skipped)
                    else:
                        self._rec("wait", delay=next_delay, policy=self.policy_text, after_code=after)
            except Exception as exc:  # the event could not be recorded: give up rather than spin
                next_delay = None
                with contextlib.suppress(Exception):
                    self._giveup(after, _policy_failed(exc))
            finally:  # the conn number moves on after a close whatever happened here
                if result.closed:
                    self.conn_no += 1
            if next_delay is None:
                while True:
                    gevent.sleep(3600)
            delay = float(next_delay)
            scheduled = time.time() + delay

    def _giveup(self, after: Any, error: str | None) -> None:
        extra = {"policy_error": error} if error else {}
        self._rec("giveup", policy=self.policy_text, after_code=after, retries=self.policy.retries, **extra)

    def _try_once(self) -> AttemptResult:
        """One attempt: a classified failure, or an open connection held until it ends."""
        c = self._connection()
        t0 = time.perf_counter()
        self.opening = c  # a stop landing in the handshake is resolved by on_stop
        try:
            connect_ms = c.open()
        except gevent.GreenletExit:
            raise
        except Exception as exc:  # every failure before open is classified, none escapes
            self.opening = None
            return self._failed(exc, t0)
        self.opening = None
        live = self._opened(c, connect_ms)
        _yield()
        self._report("connect", connect_ms)
        if live.app is None or not live.app.gated:  # else at the ready reply
            self._policy_opened()
        return self._hold(live)

    def _connection(self) -> WSConnection:
        cfg = self.cfg
        ex = cfg.extras
        r = _NO_EXTRAS
        if not ex.empty:
            cached = self._extras
            r = (
                cached
                if cached is not None and not ex.per_conn
                else ex.render(self.user_id, self.number, self.conn_no, SESSION.run)
            )
            if not ex.per_conn:
                self._extras = r
            self._secrets = r.secrets
        return WSConnection(
            self.url,
            cfg.connect_timeout,
            self.source,
            SESSION.tls,
            cfg.tls.server_name,
            query=r.query,
            protocols=self.protocols,
            extra=r.headers,
            compression=cfg.compression,
        )

    def _failed(self, exc: BaseException, t0: float) -> AttemptResult:
        """Record an attempt that failed before open (classified) and say what the policy is told."""
        f = classify_exception(exc)
        ms = (time.perf_counter() - t0) * 1000.0
        detail = scrub(f.detail, self._secrets) if self._secrets else f.detail  # a server may echo our token
        self._rec("fail", kind=f.kind, status=f.status, retry_after=f.retry_after, detail=detail)
        name = f"fail http {f.status}" if f.kind == "http_status" else f"fail {f.kind}"
        self._report(name, ms, WSFailure(name))
        after = f"http_{f.status}" if f.kind == "http_status" else f.kind
        return AttemptResult(after, False, Outcome(fail=f.kind, status=f.status, retry_after=f.retry_after))

    def _opened(self, c: WSConnection, connect_ms: float) -> _Conn:
        """Record the open of ``c`` and make it the live connection (before any yield: a stop
        landing after this closes a connection whose open is on record)."""
        now = time.monotonic()
        live = _Conn(c, now, now)
        if self.app is not None:
            live.app = self.app.adapter(self.user_id, self.number, self.conn_no, SESSION.run)
        if c.protocols or c.compression or c.resumed is not None:  # only then: the common open stays small
            extra: dict[str, Any] = {}
            if c.resumed is not None:
                extra["resumed"] = c.resumed
            if c.protocols:
                extra["subprotocol"] = c.subprotocol
            if c.compression:
                extra["compression"] = c.deflate is not None
            self._rec("open", t=time.time(), connect_ms=round(connect_ms, 3), **extra)
        else:
            self._rec("open", t=time.time(), connect_ms=round(connect_ms, 3))
        self.live = live
        return live

    def _on_message(self, live: _Conn, data: bytes) -> None:
        if live.app is not None:
            seq = self._on_app(live, data)
        else:
            seq = echo_seq(data)
        if seq is None:
            return
        sent = live.echoed(seq)
        if sent is not None:
            # collateral latency: every echo's round trip is an event (keyed by seq: no clock on the wire)
            rtt_ms = (time.perf_counter() - sent) * 1000.0
            self._rec("echo", rtt_ms=round(rtt_ms, 3))
            self._report("message", rtt_ms, length=len(data))

    def _on_frame(self, live: _Conn, inc: Any) -> bool:
        """Handle one thing read; True when the connection has ended (a Close frame)."""
        live.last_rx = time.monotonic()
        kind = inc.kind
        if kind == "pong":
            live.ping_sent = None
        elif kind == "message":
            self._on_message(live, inc.data)
        elif kind == "close":
            info: CloseInfo = inc.close
            if live.result is None:
                live.c.send_close(answer_code(info))
                live.result = _close_fields(info, by="server")
            elif live.result.get("by") == "client" and info.code not in (live.result["code"], 1005):
                # Not a reply (those echo our code, or are empty): the server's own Close crossed
                # ours (it had closed, e.g. with 1013, before it read our stop). Record what the
                # server did, so its count of closes sent matches ours.
                live.result = _close_fields(info, by="server")
            else:  # the reply to our own Close
                live.result["clean"] = True
            return True
        return False

    def _hold(self, live: _Conn) -> AttemptResult:
        """Read, ping and message on ``live`` in this one greenlet until it ends; record the close.

        One greenlet per connection: reads block with a timeout that ends at the next ping,
        message, pong or ready deadline, so a held connection costs no timer while nothing is due.
        An application protocol (live.app) may replace WebSocket pings by its own dead-peer rule
        and holds the messages back until its ready reply.
        """
        cfg = self.cfg
        c = live.c
        app = live.app
        start = time.monotonic()
        next_ping = start + cfg.ping_interval if cfg.ping_interval > 0 and (app is None or app.ws_pings) else INF
        msg_gap = 1.0 / cfg.message_rate if cfg.message_rate > 0 else INF
        next_msg = start + _unit(self._phase_seed, self.conn_no) * msg_gap if msg_gap != INF else INF
        give_up = INF  # after a failed send: how long the read may still explain the end
        ready_by = INF  # a gated connection's ready deadline
        seq = 0
        try:
            if app is not None:
                for text in app.hello():
                    c.send_text(text)
                if app.gated:
                    ready_by, held_msg, next_msg = start + cfg.app.ready_timeout, next_msg, INF
            while True:
                now = time.monotonic()
                deadline = live.ping_sent + cfg.pong_timeout if live.ping_sent is not None else INF
                if app is not None:
                    if app.dead_after is not None:  # the protocol's rule: no packet for this long
                        deadline = min(deadline, live.last_rx + app.dead_after)
                    if ready_by != INF and app.ready:  # ready: the messages start
                        ready_by, next_msg = INF, max(now, held_msg)
                    if live.result is not None and give_up == INF:  # we closed: await the reply
                        give_up = now + CLIENT_STOP_WAIT
                if now >= give_up:
                    break
                try:
                    if now >= deadline and live.result is None:
                        silence = now - live.last_rx
                        live.result = _abnormal("ping_timeout")
                        self._rec("dead", silence_s=round(silence, 3))
                        self._report("dead", silence * 1000.0, WSFailure("dead: no pong"))
                        break
                    if now >= ready_by and live.result is None:
                        self._app_fail(live, "ready_timeout", f"no ready reply within {cfg.app.ready_timeout:g} s")
                        continue
                    if now >= next_ping:
                        if live.ping_sent is None:
                            live.ping_sent = now
                            deadline = now + cfg.pong_timeout
                            c.ping(b"")
                        next_ping = now + cfg.ping_interval
                    if now >= next_msg:
                        seq += 1
                        live.sent(seq, time.perf_counter())
                        c.send_text(app.message(seq, cfg.message_size) if app else plain_message(seq, cfg.message_size))
                        next_msg = now + msg_gap
                except Exception:
                    # a send failed: reading on sees the same end of TCP and records it (1 s at most)
                    if give_up == INF:
                        give_up = now + 1.0
                    next_ping = next_msg = ready_by = INF
                wake = min(next_ping, next_msg, deadline, give_up, ready_by)
                inc = c.read(None if wake == INF else max(0.001, _coalesced(wake, now) - now))
                if inc is not None:
                    if inc.kind == "close":
                        try:
                            _yield()
                        except gevent.GreenletExit:  # the server's Close is read: record it, not ours
                            self._on_frame(live, inc)
                            raise
                    ended = self._on_frame(live, inc)
                    inc = None  # not kept through the next wait (its message, ~150 B per held connection)
                    if ended:
                        break
        except gevent.GreenletExit:
            raise  # the run is stopping: on_stop closes this connection
        except PeerEOF as exc:
            if live.result is None:
                live.result = _abnormal("eof", str(exc))
        except (OSError, ConnectionError) as exc:
            if live.result is None:
                live.result = _abnormal("reset", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a broken frame: we fail the connection, 1009 if too big, else 1002
            if live.result is None:
                code = 1009 if isinstance(exc, MessageTooBig) else 1002
                c.send_close(code)
                error = f"{type(exc).__name__}: {exc}"[:200]
                live.result = {"code": code, "reason": "", "by": "client", "clean": False, "protocol_error": error}
        c.abort()
        return self._finish(live)

    def _finish(self, live: _Conn) -> AttemptResult:
        self.live = None
        return self._record_close(live)

    def _record_close(self, live: _Conn) -> AttemptResult:
        """Record the end of ``live`` (event + Locust entry); returns the policy outcome."""
        res = live.result or {"code": 1006, "reason": "", "by": "none", "clean": False, "how": "reset"}
        live.result = res
        uptime = time.monotonic() - live.opened_mono
        fields = {k: v for k, v in res.items() if k != "detail"}
        code = int(res["code"])
        app = live.app
        reason = app.close_reason(code, res.get("how")) if app is not None else None
        if reason is not None:  # the protocol's own name for the disconnect
            fields["app_reason"] = reason
        self._rec("close", **fields, uptime_s=round(uptime, 3))
        name = f"close {code}"
        failure = code in FAILURE_CODES or "protocol_error" in res
        exc = None
        if failure:
            text = f"close {code}"
            if "how" in res:
                text += f" ({res['how']})"
            if "protocol_error" in res:
                text += f": protocol error: {res['protocol_error']}"
            exc = WSFailure(text)
        self._report(name, 0.0, exc)
        if live.app_fail is not None:  # failed after open: the policy sees a failed attempt
            kind = "timeout" if live.app_fail == "ready_timeout" else live.app_fail
            return AttemptResult(live.app_fail, True, Outcome(fail=kind, uptime_s=uptime), ready=False)
        hint = hint_from_reason(res.get("reason") or "") if res.get("by") == "server" else None
        connected = app is None or not app.gated or app.ready
        return AttemptResult(code, True, Outcome(code=code, retry_after=hint, uptime_s=uptime), ready=connected)

    def on_stop(self) -> None:
        # The user greenlet may have been killed anywhere: an attempt in flight gets its outcome,
        # and a connection not yet recorded as closed is closed (by us, with 1000) and recorded
        # here, exactly once, so the client's counts match the server's.
        opening, self.opening = self.opening, None
        if opening is not None:
            self._finish_in_flight(opening)
        live, self.live = self.live, None
        if live is not None:
            if live.result is None:
                live.result = {"code": 1000, "reason": "", "by": "client", "clean": False}
                live.c.send_close(1000)
                self._await_close_reply(live)
            live.c.abort()
            self._record_close(live)
        self._rec("stop")

    def _finish_in_flight(self, c: WSConnection) -> None:
        """The run stopped during ``c``'s attempt: wait (bounded) for the server's answer to a
        request already sent; record ``open`` (closed next by on_stop), its refusal, or ``fail
        kind=stopped``."""
        t0 = c.t0
        left = min(STOP_HANDSHAKE_WAIT, c.connect_timeout - (time.perf_counter() - t0))
        try:
            connect_ms = c.finish_interrupted(left)
        except Exception as exc:
            self._failed(exc, t0)
            return
        if connect_ms is None:
            self._rec(
                "fail",
                kind="stopped",
                status=None,
                retry_after=None,
                detail="the run stopped during the attempt" + (" (no answer yet)" if c.request_sent else ""),
            )
            return
        self._opened(c, connect_ms)

    def _await_close_reply(self, live: _Conn) -> None:
        """Read (at most CLIENT_STOP_WAIT s) until the server answers our Close or TCP ends."""
        end = time.monotonic() + CLIENT_STOP_WAIT
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return
                inc = live.c.read(left)
                if inc is None or self._on_frame(live, inc):
                    return
        except Exception:  # TCP ended or a broken frame: the close stays unclean
            return


_LOOPBACK: dict[str, bool] = {}


def _on_loopback(host: str) -> bool:
    """True if the URL ``host`` names a loopback address; parsed once per URL, not per user
    (urlsplit and ipaddress took ~30 us of each user's start, issue 16)."""
    v = _LOOPBACK.get(host)
    if v is None:
        from urllib.parse import urlsplit

        v = _LOOPBACK[host] = sockets_mod.is_loopback(urlsplit(host).hostname or "")
    return v


_POLICY_TEXTS: dict[int, tuple[Any, str]] = {}


def _policy_text(spec: Any) -> str:
    """``str(spec)``, one string per spec shared by its users, not one made per user (~60 B each)."""
    hit = _POLICY_TEXTS.get(id(spec))
    if hit is None or hit[0] is not spec:  # the spec is kept in the entry: its id cannot be reused
        hit = _POLICY_TEXTS[id(spec)] = (spec, str(spec))
    return hit[1]


_PROCESS_SEEDS: dict[Any, int] = {}


def _process_seed(seed: Any) -> int:
    """The policy's process seed of this process (one sha256 per run seed, not per user)."""
    key = (seed, SESSION.worker)
    v = _PROCESS_SEEDS.get(key)
    if v is None:
        v = _PROCESS_SEEDS[key] = derive_seed(seed, SESSION.worker)
    return v


def _unit(seed: int, k: int) -> float:
    """A uniform in [0, 1) for the ``k``-th draw of ``seed``, seeded and stateless (a user's message
    phase per connection, without a Random object per user)."""
    return stream_unit(seed, k + 1)


def _coalesced(wake: float, now: float) -> float:
    """``wake`` rounded up onto the wake grid (see WAKE_SHARE) if it is over WAKE_COALESCE_AFTER s
    after ``now`` (both time.monotonic()), else ``wake`` itself."""
    gap = wake - now
    if gap <= WAKE_COALESCE_AFTER:
        return wake
    slack = wake_grid(gap)
    return max(wake, math.ceil(wake / slack) * slack)  # max: never early by a rounding


def wake_grid(gap: float) -> float:
    """The grid a wait of ``gap`` s (over WAKE_COALESCE_AFTER) ends on: WAKE_SLACK * 2^k, the
    coarsest not over WAKE_SHARE of ``gap`` (and never finer than WAKE_SLACK)."""
    k = int(gap * WAKE_SHARE / WAKE_SLACK).bit_length() - 1
    return WAKE_SLACK * (1 << max(0, min(_WAKE_DOUBLINGS, k)))


def _sleep_first(seconds: float) -> None:
    """gevent.sleep at the loop's highest priority: a due attempt starts before the socket
    callbacks of the same loop iteration."""
    hub = gevent.get_hub()
    loop = hub.loop
    with loop.timer(seconds, priority=2) as t:
        loop.update_now()  # as gevent.sleep: the delay counts from now, not the loop's cached time
        hub.wait(t)


def _yield() -> None:
    """Finish a close or an open as a loop callback, not inside the socket's I/O callback.

    gevent runs callbacks in slices of ~5 ms and polls timers between slices, while one
    epoll batch of I/O callbacks (thousands of closes in a storm) runs without a break:
    this keeps attempts due during a storm from waiting behind the whole batch.
    """
    gevent.sleep(0)
