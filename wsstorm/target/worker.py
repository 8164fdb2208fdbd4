"""One serving process of `wsstorm serve`: echo WebSocket server with real admission cost, overload and restart.

The supervisor (wsstorm.target.supervisor) spawns N of these on one port (SO_REUSEPORT). They share the
capacity count, the handshake token bucket and the live settings through shared memory, and
talk to the supervisor over a pipe (commands in, ticks out).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import sys
import time
from typing import Any

from wsstorm.target.metrics import Tally

OVERLOAD_MODES = ("close", "http", "refuse")

# Indexes into the shared settings array (doubles).
CFG_CAPACITY, CFG_RATE, CFG_BURST, CFG_MODE, CFG_HINT, CFG_COST = range(6)
CFG_SIZE = 6
# Indexes into the shared bucket array (doubles).
B_TOKENS, B_LAST = 0, 1


def refill(tokens: float, last: float, now: float, rate: float, burst: float) -> float:
    """Tokens in a bucket of size `burst` refilled at `rate`/s from `last` to `now`."""
    return min(burst, tokens + max(0.0, now - last) * rate)


def retry_reason(base: str, hint: float) -> str:
    """A close reason / body carrying the contract's hint format (`retry-after=<s>`) when hint >= 0."""
    return f"{base}; retry-after={hint:g}" if hint >= 0 else base


def burn_cpu(ms: float) -> None:
    """Spin the CPU for `ms` milliseconds: the handshake's real cost (auth, session setup)."""
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


def _set_pdeathsig() -> None:
    # Die with the supervisor even when it is SIGKILLed (Linux only; harmless elsewhere).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Worker:
    """The serving process's state: listener, admitted connections, counters for the next tick."""

    def __init__(self, proc: int, port: int, host: str, pipe: Any, cfg: Any, bucket: Any, held: Any,
                 lock: Any, ledger: Any, opts: dict) -> None:
        self.proc, self.port, self.host, self.pipe = proc, port, host, pipe
        self.cfg, self.bucket, self.held, self.lock = cfg, bucket, held, lock
        self.opts = opts
        self.state = "serving"
        self.ws_server: Any = None
        self.paused = False  # refuse mode: not listening while full
        self.open_conns: set = set()
        self.handshaking: set = set()
        self.tally = Tally(ledger, proc)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = asyncio.Event()

    # --- shared state -------------------------------------------------------------------

    def held_total(self) -> int:
        return int(sum(self.held[:]))

    def mode(self) -> str:
        return OVERLOAD_MODES[int(self.cfg[CFG_MODE])]

    def take_token(self) -> bool:
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
        self.ws_server = await serve(
            self.handler, sock=sock, process_request=self.process_request, create_connection=self.conn_class,
            max_size=self.opts["max_size"], open_timeout=self.opts["open_timeout"], ping_interval=None,
            close_timeout=self.opts["close_timeout"], compression=None, max_queue=4, server_header=None,
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

    def process_request(self, conn: Any, request: Any) -> Any:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        self.handshaking.discard(conn)
        if self.state != "serving":
            self.tally.add("rejected", "http_503")
            return Response(503, "Service Unavailable", Headers([("Retry-After", "1"), ("Content-Length", "0")]), b"")
        mode = self.mode()
        hint = self.cfg[CFG_HINT]
        if self.held_total() < self.cfg[CFG_CAPACITY] and self.take_token():
            burn_cpu(self.cfg[CFG_COST])  # real work, in the serving process: a herd slows it down
            conn.wss_admitted = True
            self.held[self.proc] += 1
            self.tally.add("accepted")
            if mode == "refuse" and not self.can_admit():
                self.pause()  # before the 101 goes out, so the client's next SYN already meets no listener
            return None
        if mode == "http":
            self.tally.add("rejected", "http_503")
            after = f"{hint:g}" if hint >= 0 else "1"
            body = retry_reason("overloaded", hint).encode() + b"\n"
            return Response(503, "Service Unavailable",
                            Headers([("Retry-After", after), ("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))]), body)
        if mode == "refuse":
            # It slipped in before we stopped listening: reset it, then stop listening.
            self.tally.add("rejected", "refused")
            self._rst(conn)
            self.pause()
            return Response(503, "Service Unavailable", Headers([("Content-Length", "0")]), b"")
        conn.wss_reject = True
        self.tally.add("rejected", "1013")
        return None

    def can_admit(self) -> bool:
        return self.held_total() < self.cfg[CFG_CAPACITY] and self.tokens_available()

    @staticmethod
    def _rst(conn: Any) -> None:
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        conn.transport.abort()

    def pause(self) -> None:
        if self.paused or self.state != "serving" or self.mode() != "refuse" or self.can_admit():
            return
        self.paused = True
        self.stop_listening(keep_inflight=True)
        self.loop.create_task(self._resume_when_free())

    async def _resume_when_free(self) -> None:
        while self.paused and self.state == "serving":
            await asyncio.sleep(0.02)
            if self.mode() != "refuse" or self.can_admit():
                self.paused = False
                await self.start_listening()
                return
        self.paused = False

    async def handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        ws.wss_opened = True
        if getattr(ws, "wss_reject", False):
            await ws.close(1013, retry_reason("overloaded", self.cfg[CFG_HINT]))
            return
        self.open_conns.add(ws)
        try:
            async for message in ws:
                self.tally.add("messages")
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.open_conns.discard(ws)
            await ws.wait_closed()

    def conn_lost(self, conn: Any) -> None:
        """Classify how a TCP connection ended; release its capacity slot."""
        self.handshaking.discard(conn)
        if getattr(conn, "wss_admitted", False):
            self.held[self.proc] -= 1
            if self.paused and self.can_admit():
                pass  # the resume poller picks it up
        proto = conn.protocol
        if not getattr(conn, "wss_opened", False):
            if conn.request is None:
                age = time.monotonic() - conn.wss_t0
                # Only a parse error from before the TCP end is garbage: the EOF fed at the end
                # makes a half request fail too, and that one is a timeout or an abort.
                if conn.wss_exc_before_eof is not None:
                    self.tally.add("bad_input", "bad_handshake")
                elif age >= self.opts["open_timeout"] * 0.95:
                    self.tally.add("rejected", "timeout")
                else:
                    self.tally.add("bad_input", "aborted_handshake")
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
                def connection_made(self, transport: Any) -> None:
                    self.wss_t0 = time.monotonic()
                    worker.handshaking.add(self)
                    super().connection_made(transport)

                def connection_lost(self, exc: Exception | None) -> None:
                    self.wss_exc_before_eof = self.protocol.handshake_exc
                    super().connection_lost(exc)
                    worker.conn_lost(self)

            self._conn_class = CountedConnection
        return self._conn_class

    # --- faults -------------------------------------------------------------------------

    async def restart(self, mode: str, down: float, batch: int, interval: float) -> None:
        """Close every client with 1012 (all, or `batch` per `interval`), refuse for `down` s, serve again."""
        t0 = time.monotonic()
        self.state = "restarting"
        self.paused = False
        self.stop_listening()
        for conn in list(self.handshaking):
            conn.transport.abort()
        conns = [c for c in self.open_conns]
        if mode == "drain":
            for i in range(0, len(conns), batch):
                for ws in conns[i:i + batch]:
                    self.loop.create_task(ws.close(1012, "service restart"))
                if i + batch < len(conns):
                    await asyncio.sleep(interval)
        else:
            for ws in conns:
                self.loop.create_task(ws.close(1012, "service restart"))
        await asyncio.sleep(max(0.0, t0 + down - time.monotonic()))
        await self.start_listening()
        self.state = "serving"
        self.send({"type": "state", "proc": self.proc, "state": "serving", "t": time.time()})

    # --- pipe to the supervisor -------------------------------------------------------

    def send(self, msg: dict) -> None:
        try:
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
        elif cmd == "stop":
            self.stopping.set()

    async def ticker(self) -> None:
        import psutil

        me = psutil.Process()
        me.cpu_percent(None)
        next_t = time.time()
        while True:
            next_t += 1.0
            await asyncio.sleep(max(0.0, next_t - time.time()))
            tick = {
                "v": 1, "type": "tick", "t": round(time.time(), 3), "proc": self.proc,
                "state": self.state, "connections": len(self.open_conns),
                "capacity": int(self.cfg[CFG_CAPACITY]), "handshake_rate": self.cfg[CFG_RATE],
                "queue_depth": len(self.handshaking), "cpu_pct": me.cpu_percent(None),
                "rss_bytes": me.memory_info().rss, **self.tally.take(),
                "held": int(self.held[self.proc]), "listening": self.ws_server is not None,
            }
            self.send(tick)

    async def main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor handles ^C
        self.loop.add_signal_handler(signal.SIGHUP, lambda: None)
        self.held[self.proc] = 0
        await self.start_listening()
        self.loop.add_reader(self.pipe.fileno(), self.on_command)
        ticker = self.loop.create_task(self.ticker())
        self.send({"type": "ready", "proc": self.proc, "pid": os.getpid()})
        await self.stopping.wait()
        ticker.cancel()
        self.stop_listening()
        for ws in list(self.open_conns):
            self.loop.create_task(ws.close(1001, "server shutting down"))
        await asyncio.sleep(0.2)


def worker_main(proc: int, port: int, host: str, pipe: Any, cfg: Any, bucket: Any, held: Any, lock: Any,
                ledger: Any, opts: dict) -> None:
    """Entry point of a serving process (multiprocessing spawn target)."""
    _set_pdeathsig()
    if opts.get("uvloop"):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(Worker(proc, port, host, pipe, cfg, bucket, held, lock, ledger, opts).main())
    except KeyboardInterrupt:
        pass
    sys.exit(0)
