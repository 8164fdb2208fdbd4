"""One serving process of `wsstorm serve`: echo WebSocket server with real attempt costs, overload and restart.

The supervisor (wsstorm.target.supervisor) spawns N of these on one port (SO_REUSEPORT). They share the
capacity count, the handshake token bucket and the live settings through shared memory, and
talk to the supervisor over a pipe (commands in, ticks out).

Every attempt pays real work (wsstorm.target.costs): the TLS handshake, the attempt cost and the
store lookup before the admission decision, the session cost after it. The server never checks
whether the client is still there before doing that work; when it finishes, it books the work as
goodput, a rejection, or abandoned (the client had left), in the tick counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import random
import signal
import socket
import sys
import threading
import time
from typing import Any

from wsstorm.target import sessions
from wsstorm.target.costs import ABANDONED, GOODPUT, KILLED, LOST, REJECTED, SHED, AttemptCost, account, cpu_work
from wsstorm.target.lifecycle import LifecycleMixin
from wsstorm.target.metrics import Tally
from wsstorm.target.netio import linger_rst, peer_closed
from wsstorm.target.settings import OVERLOAD_MODES
from wsstorm.target.shm import (  # refill: re-exported
    B_LAST,
    B_TOKENS,
    CFG_ATTEMPT,
    CFG_BURST,
    CFG_CAPACITY,
    CFG_COST,
    CFG_HINT,
    CFG_MODE,
    CFG_RATE,
    CFG_REFUSE_CODE,
    CFG_RESUME_COST,
    CFG_RESUME_WINDOW,
    CFG_SESSION,
    refill,
)
from wsstorm.target.store import StoreClient, percentile
from wsstorm.target.tls import TLS_BAD, TLS_SHED


def retry_reason(base: str, hint: float) -> str:
    """A close reason / body carrying the contract's hint format (`retry-after=<s>`) when hint >= 0."""
    return f"{base}; retry-after={hint:g}" if hint >= 0 else base


def auth_failure(token: str | None, values: list[str]) -> str | None:
    """Why a handshake fails --auth-token: None (no token required, or exactly one `Bearer <token>`),
    "missing" (no Authorization header) or "wrong" (anything else). Constant-time compare."""
    if not token:
        return None
    if not values:
        return "missing"
    if len(values) != 1:
        return "wrong"
    given = values[0].encode("utf-8", "surrogateescape")
    return None if hmac.compare_digest(given, b"Bearer " + token.encode()) else "wrong"


def _set_pdeathsig() -> None:
    # Die with the supervisor even when it is SIGKILLed (Linux only; harmless elsewhere).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Worker(LifecycleMixin):
    """The serving process's state: listener, admitted connections, counters for the next tick."""

    def __init__(
        self,
        proc: int,
        port: int,
        host: str,
        pipe: Any,
        cfg: Any,
        bucket: Any,
        held: Any,
        lock: Any,
        ledger: Any,
        opts: dict,
        sessions: tuple[Any, Any] | None = None,
    ) -> None:
        self.proc, self.port, self.host, self.pipe = proc, port, host, pipe
        self.sessions = sessions  # the shared session table (keys, times); None: no resume possible
        self.cfg, self.bucket, self.held, self.lock = cfg, bucket, held, lock
        self.opts = opts
        self.state = "serving"
        self.ws_server: Any = None
        self.paused = False  # refuse mode: not listening while full
        self.open_conns: set = set()
        self.handshaking: set = set()  # attempts accepted by TCP whose handshake has not ended
        self.tally = Tally(ledger, proc)
        self.store_waits: list[float] = []  # ms each lookup of this tick waited (queue + work)
        self.store: StoreClient | None = None
        self.ssl_context: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by main(); use self.loop
        self.stopping = asyncio.Event()
        self.ticker_stop = threading.Event()
        self.send_lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop main() runs on; everything that schedules work runs after main() set it."""
        if self._loop is None:
            raise RuntimeError("Worker.loop used before Worker.main() started the event loop")
        return self._loop

    # --- shared state -------------------------------------------------------------------

    def held_total(self) -> int:
        return int(sum(self.held[:]))

    def mode(self) -> str:
        return OVERLOAD_MODES[int(self.cfg[CFG_MODE])]

    def take_token(self) -> bool:
        if self.cfg[CFG_RATE] <= 0:
            return True  # the bucket is off
        with self.lock:
            now = time.monotonic()
            tokens = refill(self.bucket[B_TOKENS], self.bucket[B_LAST], now, self.cfg[CFG_RATE], self.cfg[CFG_BURST])
            self.bucket[B_LAST] = now
            if tokens >= 1.0:
                self.bucket[B_TOKENS] = tokens - 1.0
                return True
            self.bucket[B_TOKENS] = tokens
            return False

    def tokens_available(self) -> bool:
        if self.cfg[CFG_RATE] <= 0:
            return True
        now = time.monotonic()
        return refill(self.bucket[B_TOKENS], self.bucket[B_LAST], now, self.cfg[CFG_RATE], self.cfg[CFG_BURST]) >= 1.0

    # --- listening ----------------------------------------------------------------------

    async def start_listening(self) -> None:
        from websockets.asyncio.server import serve

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        sock.listen(self.opts["backlog"])
        sock.setblocking(False)
        extra = {"ssl": self.ssl_context} if self.ssl_context is not None else {}
        self.ws_server = await serve(
            self.handler,
            sock=sock,
            process_request=self.process_request,
            process_response=self.process_response,
            create_connection=self.conn_class,
            max_size=self.opts["max_size"],
            open_timeout=self.opts["open_timeout"],
            ping_interval=None,
            close_timeout=self.opts["close_timeout"],
            compression=None,
            max_queue=4,
            server_header=None,
            **extra,
        )

    def stop_listening(self, keep_inflight: bool = False) -> None:
        # Close only the listening socket: the kernel then refuses (RST) new connections, and
        # the connections already open are left alone.
        if self.ws_server is not None:
            if keep_inflight:
                # websockets answers 503 to handshakes still in flight once its server stops
                # serving; when we only pause (refuse mode), the admitted ones must still open.
                self.ws_server.is_serving = lambda: True
            self.ws_server.server.close()
            self.ws_server = None

    # --- admission ----------------------------------------------------------------------

    async def process_request(self, conn: Any, request: Any) -> Any:
        """The attempt's work in order (attempt cost, store lookup, decision, session cost); books it at the end."""
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        cost: AttemptCost = conn.wss_cost  # its TLS part is booked by finish
        conn.wss_in_process = True
        conn.wss_outcome = REJECTED  # booked by process_response, once the final answer is known
        if self.state != "serving":
            self.tally.add("rejected", "http_503")
            return Response(503, "Service Unavailable", Headers([("Retry-After", "1"), ("Content-Length", "0")]), b"")
        cost.attempt_ms = cpu_work(self.cfg[CFG_ATTEMPT])  # e.g. authentication: real CPU, every attempt
        reason = auth_failure(self.opts.get("auth_token"), request.headers.get_all("Authorization"))
        if reason is not None:
            # The pre-admission check failed: its work so far (TLS, attempt cost) is wasted, no store lookup.
            self.tally.add("rejected", "http_401")
            self.tally.add("auth_rejected", reason)
            return Response(
                401,
                "Unauthorized",
                Headers([("WWW-Authenticate", "Bearer"), ("Content-Length", "0")]),
                b"",
            )
        if self.store is not None:
            try:
                waited_ms, cost.store_ms = await self.store.lookup()
            except (ConnectionError, OSError):
                self.tally.add("rejected", "http_503")
                return Response(503, "Service Unavailable", Headers([("Content-Length", "0")]), b"")
            self.tally.add("store_calls")
            with self.tally.lock:
                self.store_waits.append(waited_ms)
            if self.state != "serving":  # a restart began while it waited
                self.tally.add("rejected", "http_503")
                return Response(503, "Service Unavailable", Headers([("Content-Length", "0")]), b"")
        conn.wss_session = sessions.session_key(request.headers.get(sessions.SESSION_HEADER))
        response = self.decide(conn)
        if getattr(conn, "wss_admitted", False):
            conn.wss_outcome = GOODPUT
            # a resumed session costs resume_cost_ms instead of session_cost_ms (the handshake cost either way)
            session = self.cfg[CFG_RESUME_COST] if conn.wss_resumed else self.cfg[CFG_SESSION]
            cost.session_ms = cpu_work(session + self.cfg[CFG_COST])
        return response

    def process_response(self, conn: Any, request: Any, response: Any) -> None:
        """websockets calls this right after process_request, with the final answer: book the attempt.

        Only a 101 to an admitted attempt is goodput (a request that is no valid upgrade gets a 400
        from websockets even when admitted). Nothing yields between here and the 101 going out, so
        `wss_gone` (the server has seen the client leave) decides abandoned exactly.
        """
        outcome = getattr(conn, "wss_outcome", REJECTED)
        if outcome == GOODPUT and response.status_code == 101 and self.cfg[CFG_RESUME_WINDOW] > 0:
            response.headers[sessions.RESUMED_HEADER] = "1" if conn.wss_resumed else "0"
        if outcome == GOODPUT and response.status_code != 101:
            outcome = REJECTED
        if outcome == GOODPUT and not conn.wss_gone and peer_closed(conn.transport):
            # The client gave up while we worked; its FIN is still unread. The 101 goes out all the same
            # (the server does not look), but it reaches nobody: that is abandoned work, not goodput.
            conn.wss_gone = True
        self.finish(conn, outcome)
        return None

    def decide(self, conn: Any) -> Any:
        """The admission decision: admit (None: the 101 goes out), or reject the way the overload mode says."""
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        mode = self.mode()
        hint = self.cfg[CFG_HINT]
        if self.held_total() < self.cfg[CFG_CAPACITY] and self.take_token():
            if not self.session_gate(conn):
                # Over the session start rate: the upgrade completes, then the close with the refuse code.
                conn.wss_reject = True
                conn.wss_reject_code = int(self.cfg[CFG_REFUSE_CODE])
                self.tally.add("rejected", "session_start")
                return None
            conn.wss_admitted = conn.wss_holding = True
            self.held[self.proc] += 1
            self.tally.add("accepted")
            if mode == "refuse" and not self.can_admit():
                self.pause()  # before the 101 goes out, so the client's next SYN already meets no listener
            return None
        if mode == "http":
            self.tally.add("rejected", "http_503")
            after = f"{hint:g}" if hint >= 0 else "1"
            body = retry_reason("overloaded", hint).encode() + b"\n"
            return Response(
                503,
                "Service Unavailable",
                Headers([("Retry-After", after), ("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]),
                body,
            )
        if mode == "refuse":
            # It slipped in before we stopped listening: reset it, then stop listening.
            self.tally.add("rejected", "refused")
            conn.wss_cut = "refuse"
            linger_rst(conn.transport)
            self.pause()
            return Response(503, "Service Unavailable", Headers([("Content-Length", "0")]), b"")
        conn.wss_reject = True
        self.tally.add("rejected", "1013")
        return None

    def finish(self, conn: Any, outcome: str) -> None:
        """Book an attempt's work once, by how it ended (the client may have left meanwhile: abandoned)."""
        if conn.wss_done:
            return
        conn.wss_done = True
        self.handshaking.discard(conn)
        # Its TLS handshake's CPU (kept current by tls.instrument_server_tls), booked here for every end:
        # after the request, in TLS, or between the two (e.g. cut by a restart).
        conn.wss_cost.tls_ms = conn.wss_tls_ms
        cut = conn.wss_cut
        if cut == "restart":
            outcome = KILLED
        elif outcome in (GOODPUT, REJECTED) and conn.wss_gone and cut is None:
            outcome = ABANDONED  # finished the work for a client that had already gone
        booked = account(conn.wss_cost, outcome)
        self.tally.add_ms("work_ms", booked.work_ms)
        self.tally.add_ms("wasted_ms", booked.wasted_ms)
        if booked.goodput:
            self.tally.add("goodput")
        if booked.abandoned:
            self.tally.add("abandoned")
        if outcome != GOODPUT:
            self.release(conn)

    def release(self, conn: Any) -> None:
        """Give back an admitted connection's capacity slot (once)."""
        if getattr(conn, "wss_holding", False):
            conn.wss_holding = False
            self.held[self.proc] -= 1

    def on_tls_lost(self, conn: Any, tls_ms: float, did_crypto: bool, how: str) -> None:
        """A TLS handshake ended before the WebSocket layer saw the connection (see tls.instrument_server_tls)."""
        conn.wss_tls_ms = tls_ms
        if how == TLS_SHED:
            self.tally.add("rejected", "timeout")
            self.finish(conn, SHED)
        elif how == TLS_BAD:
            self.tally.add("bad_input", "bad_tls")
            self.finish(conn, LOST)
        elif did_crypto and conn.wss_cut != "restart":
            conn.wss_gone = True
            self.finish(conn, REJECTED)  # becomes ABANDONED: the server did its part for a client gone
        else:
            # (also a restart's: it marked this one mid-TLS, so finish books it KILLED, and it is counted
            # as aborted like the handshakes the restart aborted itself, not as abandoned)
            self.tally.add("bad_input", "aborted_handshake")
            self.finish(conn, LOST)

    def can_admit(self) -> bool:
        return self.held_total() < self.cfg[CFG_CAPACITY] and self.tokens_available()

    def pause(self) -> None:
        if self.paused or self.state != "serving" or self.mode() != "refuse" or self.can_admit():
            return
        self.paused = True
        self.stop_listening(keep_inflight=True)
        self.loop.create_task(self._resume_when_free())

    async def _resume_when_free(self) -> None:
        while self.paused and self.state == "serving":
            await asyncio.sleep(0.02)
            if not self.paused or self.state != "serving":
                break  # a restart or lame duck began meanwhile: it owns the listener now
            if self.mode() != "refuse" or self.can_admit():
                self.paused = False
                await self.start_listening()
                return
        self.paused = False

    async def handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        ws.wss_opened = True
        if getattr(ws, "wss_reject", False):
            if ws.wss_reject_code:  # a session start over the session start rate
                await ws.close(ws.wss_reject_code, "session start rate limited")
            else:
                await ws.close(1013, retry_reason("overloaded", self.cfg[CFG_HINT]))
            return
        self.open_conns.add(ws)
        expiry = None
        max_s = self.opts.get("session_max_s") or 0
        if max_s > 0:
            # Sessions end by themselves (a connection max age, as load balancers impose): the steady
            # churn that gives goodput a level before any fault. Uniform in [0.5, 1.5] x max_s.
            expiry = self.loop.call_later(
                max_s * random.uniform(0.5, 1.5), lambda: self.loop.create_task(ws.close(1001, "session expired"))
            )
        try:
            async for message in ws:
                self.tally.add("messages")
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            if expiry is not None:
                expiry.cancel()
            self.session_closed(ws)
            self.open_conns.discard(ws)
            await ws.wait_closed()

    def conn_lost(self, conn: Any) -> None:
        """Classify how a TCP connection ended; release its capacity slot."""
        conn.wss_gone = True
        self.session_closed(conn)
        if not getattr(conn, "wss_in_process", False) and not conn.wss_done:
            # Its handshake never reached process_request: garbage, or the client left (a timeout
            # was booked as shed when it fired).
            if not getattr(conn, "wss_opened", False) and conn.request is None:
                # Only a parse error from before the TCP end is garbage: the EOF fed at the end
                # makes a half request fail too, and that one is an abort.
                kind = "bad_handshake" if conn.wss_exc_before_eof is not None else "aborted_handshake"
                self.tally.add("bad_input", kind)
                self.finish(conn, LOST)
            elif conn.request is None:
                self.finish(conn, LOST)
        if conn.wss_done and getattr(conn, "wss_holding", False) and conn.wss_cut != "refuse":
            self.release(conn)
            if self.paused and self.can_admit():
                pass  # the resume poller picks it up
        proto = conn.protocol
        if not getattr(conn, "wss_opened", False):
            return
        sent, rcvd = proto.close_sent, proto.close_rcvd
        if sent is not None and (rcvd is None or proto.close_rcvd_then_sent is False):
            self.tally.add("closes_sent", str(sent.code))
        elif rcvd is not None:
            self.tally.add("closes_received", str(rcvd.code))
        else:
            self.tally.add("abnormal")

    @property
    def conn_class(self) -> type:
        if not hasattr(self, "_conn_class"):
            from websockets.asyncio.server import ServerConnection

            worker = self

            class CountedConnection(ServerConnection):
                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    # Made when TCP accepts, before any TLS: every attempt is counted from here.
                    super().__init__(*args, **kwargs)
                    self.wss_t0 = time.monotonic()
                    self.wss_cost = AttemptCost()
                    self.wss_tls_ms = 0.0
                    self.wss_gone = self.wss_done = False
                    self.wss_cut: str | None = None
                    self.wss_session = 0  # the client's identity (sessions.session_key); 0: none
                    self.wss_resumed = self.wss_session_open = False
                    self.wss_reject_code = 0  # set for a refused session start
                    self.wss_exc_before_eof: Exception | None = None
                    worker.handshaking.add(self)
                    worker.tally.add("attempts")

                def connection_made(self, transport: Any) -> None:
                    super().connection_made(transport)  # sets .transport and starts websockets' handshake task
                    if self.wss_cut == "restart":
                        # A restart came while it had no transport (between TCP accept and here, e.g. in
                        # TLS): cut it now. connection_lost follows (conn_lost books it KILLED, once);
                        # the handshake task then sees the connection lost, sends nothing and returns.
                        transport.abort()

                async def handshake(self, *args: Any, **kwargs: Any) -> None:
                    try:
                        await super().handshake(*args, **kwargs)
                    except asyncio.CancelledError:
                        # websockets' open_timeout (--handshake-timeout) fired: the server sheds it.
                        if self.wss_done:
                            pass
                        elif self.request is None and self.protocol.handshake_exc is not None:
                            worker.tally.add("bad_input", "bad_handshake")  # garbage, then silence
                            worker.finish(self, LOST)
                        else:
                            worker.tally.add("rejected", "timeout")
                            worker.finish(self, SHED)
                        raise

                def connection_lost(self, exc: Exception | None) -> None:
                    self.wss_exc_before_eof = self.protocol.handshake_exc
                    super().connection_lost(exc)
                    worker.conn_lost(self)

            self._conn_class = CountedConnection
        return self._conn_class

    # --- faults -------------------------------------------------------------------------

    # --- pipe to the supervisor -------------------------------------------------------

    def send(self, msg: dict) -> None:
        try:
            with self.send_lock:  # the ticker thread and the loop both send
                self.pipe.send(msg)
        except (OSError, ValueError):
            os._exit(0)

    def on_command(self) -> None:
        try:
            msg = self.pipe.recv()
        except (EOFError, OSError):
            os._exit(0)  # the supervisor is gone: so are we
        cmd = msg.get("cmd")
        if cmd == "restart":
            if self.state == "serving":
                self.loop.create_task(self.restart(msg["mode"], msg["down"], msg["batch"], msg["interval"]))
        elif cmd == "lame-duck":
            if self.state == "serving":
                self.loop.create_task(self.lame_duck(msg["grace"], msg["duration"], msg["code"]))
        elif cmd == "stop":
            self.stopping.set()

    def prune(self) -> None:
        """Book handshakes nothing will ever finish (e.g. TLS without the instrumentation, under uvloop)
        as lost, once they are well past the handshake timeout: queue_depth must not leak."""
        limit = time.monotonic() - 2 * self.opts["open_timeout"] - 5.0
        for conn in [c for c in self.handshaking if c.wss_t0 < limit]:
            self.finish(conn, LOST)
        self.loop.call_later(1.0, self.prune)

    def on_orphan_lookup(self, store_cpu_ms: float) -> None:
        # A lookup whose handshake was shed came back: the store worked for nobody.
        self.tally.add_ms("work_ms", store_cpu_ms)
        self.tally.add_ms("wasted_ms", store_cpu_ms)

    def ticker(self) -> None:
        """Once a second, send the tick. A thread, not a task: when a herd keeps the event loop busy
        with handshake work for seconds, the ticks must still come once a second, or every
        per-second figure would be smeared over the stall."""
        import psutil

        me = psutil.Process()
        me.cpu_percent(None)
        next_t = time.time()
        while not self.ticker_stop.is_set():
            next_t += 1.0
            if self.ticker_stop.wait(max(0.0, next_t - time.time())):
                return
            with self.tally.lock:
                waits, self.store_waits = self.store_waits, []
            tick = {
                "v": 1,
                "type": "tick",
                "t": round(time.time(), 3),
                "proc": self.proc,
                "state": self.state,
                "connections": len(self.open_conns),
                "capacity": int(self.cfg[CFG_CAPACITY]),
                "handshake_rate": self.cfg[CFG_RATE],
                "queue_depth": len(self.handshaking),
                "cpu_pct": me.cpu_percent(None),
                "rss_bytes": me.memory_info().rss,
                **self.tally.take(),
                "held": int(self.held[self.proc]),
                "listening": self.ws_server is not None,
            }
            if self.store is not None:
                tick["store_wait_ms_p50"] = round(percentile(waits, 0.5), 3)
                tick["store_wait_ms_p99"] = round(percentile(waits, 0.99), 3)
            self.send(tick)

    async def main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor handles ^C
        self.loop.add_signal_handler(signal.SIGHUP, lambda: None)
        self.held[self.proc] = 0
        if self.opts.get("tls_cert"):
            from wsstorm.target.tls import instrument_server_tls, server_context

            self.ssl_context = server_context(self.opts["tls_cert"], self.opts["tls_key"])
            if not self.opts.get("uvloop"):
                instrument_server_tls(self.on_tls_lost)
        if self.opts.get("store_port"):
            self.store = StoreClient(self.opts["store_port"], self.on_orphan_lookup)
            await self.store.connect()
        await self.start_listening()
        self.loop.add_reader(self.pipe.fileno(), self.on_command)
        ticker = threading.Thread(target=self.ticker, name="wsstorm-ticker", daemon=True)
        ticker.start()
        self.loop.call_later(1.0, self.prune)
        self.send({"type": "ready", "proc": self.proc, "pid": os.getpid()})
        await self.stopping.wait()
        self.ticker_stop.set()
        self.stop_listening()
        for ws in list(self.open_conns):
            self.loop.create_task(ws.close(1001, "server shutting down"))
        await asyncio.sleep(0.2)
        if self.store is not None:
            self.store.close()


def worker_main(
    proc: int,
    port: int,
    host: str,
    pipe: Any,
    cfg: Any,
    bucket: Any,
    held: Any,
    lock: Any,
    ledger: Any,
    opts: dict,
    sessions: tuple[Any, Any] | None = None,
) -> None:
    """Entry point of a serving process (multiprocessing spawn target)."""
    from wsstorm.target.settings import pin_self

    _set_pdeathsig()
    pin_self(opts.get("cpus"))
    if opts.get("uvloop"):
        import uvloop

        uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Worker(proc, port, host, pipe, cfg, bucket, held, lock, ledger, opts, sessions).main())
    sys.exit(0)
