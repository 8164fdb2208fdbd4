"""The serving process's lifecycle faults (restart, lame duck) and its session start/resume gate.

A mixin of wsstorm.target.worker.Worker (kept apart so the worker module stays readable): it uses
the worker's shared arrays, tally, open connections and listener.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from wsstorm.target import sessions
from wsstorm.target.shm import B_STARTS, B_STARTS_LAST, CFG_RESUME_WINDOW, CFG_START_RATE, refill


class LifecycleMixin:
    """Restart, lame duck and the session gate of one serving process (see Worker for the attributes)."""

    cfg: Any
    bucket: Any
    lock: Any
    tally: Any
    sessions: tuple[Any, Any] | None  # the shared session table (keys, times); None: no resume possible
    proc: int
    state: str
    paused: bool
    handshaking: set
    open_conns: set

    if TYPE_CHECKING:  # Worker provides these; declared so the mixin type-checks on its own

        @property
        def loop(self) -> asyncio.AbstractEventLoop: ...

        def stop_listening(self, keep_inflight: bool = False) -> None: ...

        async def start_listening(self) -> None: ...

        def send(self, msg: dict) -> None: ...

    def session_gate(self, conn: Any) -> bool:
        """An admitted attempt's session: resume it (closed within the resume window) or start one, which
        the session start bucket may refuse (False). Sets conn.wss_resumed; counts resumed/starts/refused."""
        window = self.cfg[CFG_RESUME_WINDOW]
        table = self.sessions if window > 0 else None
        # key != 0 implies a table: the `table is not None` tests below only narrow its type
        key = conn.wss_session if table is not None else 0
        rate = self.cfg[CFG_START_RATE]
        with self.lock:
            now = time.monotonic()
            resumed = table is not None and key != 0 and sessions.resumable(*table, key, now, window)
            if not resumed and rate > 0:
                burst = max(1.0, rate / 10.0)  # the handshake bucket's rule
                tokens = refill(self.bucket[B_STARTS], self.bucket[B_STARTS_LAST], now, rate, burst)
                self.bucket[B_STARTS_LAST] = now
                if tokens < 1.0:
                    self.bucket[B_STARTS] = tokens
                    self.tally.add("session_refused")
                    return False
                self.bucket[B_STARTS] = tokens - 1.0
            if table is not None and key != 0:
                sessions.begin(*table, key, self.proc, now, window)
                conn.wss_session_open = True
        conn.wss_resumed = resumed
        self.tally.add("resumed" if resumed else "session_starts")
        return True

    def session_closed(self, conn: Any) -> None:
        """The connected session of `conn` ended: it may be resumed from now on (once per connection)."""
        if getattr(conn, "wss_session_open", False):
            conn.wss_session_open = False
            table = self.sessions
            assert table is not None  # session_gate opens a session only when there is a table
            with self.lock:
                sessions.end(*table, conn.wss_session, time.monotonic())

    async def restart(self, mode: str, down: float, batch: int, interval: float) -> None:
        """Close every client with 1012 (all, or `batch` per `interval`), refuse for `down` s, serve again."""
        t0 = time.monotonic()
        self.state = "restarting"
        self.paused = False
        self.stop_listening()
        # A real restart kills every attempt in progress. One without a transport yet (accepted by TCP,
        # its connection_made still to come: a call_soon later, or after its TLS handshake) is only
        # marked: CountedConnection.connection_made aborts it the moment it gets one.
        for conn in list(self.handshaking):
            conn.wss_cut = "restart"
            if getattr(conn, "transport", None) is not None:
                conn.transport.abort()
        conns = [c for c in self.open_conns]
        if mode == "drain":
            for i in range(0, len(conns), batch):
                for ws in conns[i : i + batch]:
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

    async def lame_duck(self, grace: float, window: float, code: int) -> None:
        """NATS-style lame duck: refuse new connections at once, wait `grace` s, close the clients still
        connected spread evenly over `window` s with `code`, then serve again."""
        self.state = "lame-duck"
        self.paused = False
        self.stop_listening()  # the kernel refuses new connections, as in a restart's down time
        await asyncio.sleep(grace)
        start = time.monotonic()
        conns = list(self.open_conns)
        for ws, offset in zip(conns, sessions.lame_duck_offsets(len(conns), window), strict=True):
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            if ws in self.open_conns:
                self.loop.create_task(ws.close(code, "lame duck"))
        await asyncio.sleep(max(0.0, start + window - time.monotonic()))
        await self.start_listening()
        self.state = "serving"
        self.send({"type": "state", "proc": self.proc, "state": "serving", "t": time.time()})
