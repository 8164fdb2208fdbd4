"""The dependency store: an auth/session store with limited concurrency, in its own process on loopback.

Each handshake of a serving process makes one lookup. The store serves at most `concurrency`
lookups at once, in arrival order; each holds its slot for `work_ms` of real CPU work (key
stretching, as a credential check does) on one of `concurrency` threads. A herd therefore waits
in the store's queue, and the waits grow with it. The store does not know whether the client
behind a lookup is still there: it finishes every lookup it was sent.

Wire protocol (one TCP connection per serving process, pipelined, ASCII lines):
request ``<id>\\n``; reply ``<id> <queue wait µs> <cpu µs>\\n``.
Once a second the store sends a ``type: "store"`` tick (runfolder.schemas.StoreTick) to the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsstorm.target.costs import cpu_work

MAX_LINE = 64


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by nearest rank; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))
    return ordered[k]


class Store:
    """The store's state: the FIFO of lookups, the slots working on them, the counts of this second."""

    def __init__(self, concurrency: int, work_ms: float, send: Callable[[dict], None]) -> None:
        self.concurrency, self.work_ms, self.send = concurrency, work_ms, send
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="wsstorm-store")
        self.busy = 0
        self.calls = 0
        self.cpu_ms = 0.0
        self.waits: list[float] = []

    async def slot(self) -> None:
        """One slot: take the oldest lookup, do its work, answer it."""
        loop = asyncio.get_running_loop()
        while True:
            rid, t_in, writer = await self.queue.get()
            wait_s = time.monotonic() - t_in
            self.busy += 1
            try:
                cpu = await loop.run_in_executor(self.pool, cpu_work, self.work_ms)
            finally:
                self.busy -= 1
            self.calls += 1
            self.cpu_ms += cpu
            self.waits.append(wait_s * 1000.0)
            if not writer.is_closing():
                writer.write(b"%s %d %d\n" % (rid, int(wait_s * 1e6), int(cpu * 1000)))

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One serving process's connection: every line is a lookup, queued in arrival order."""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                rid = line.strip()
                if not rid or len(rid) > MAX_LINE or not rid.isdigit():
                    break  # not our protocol: drop the connection
                self.queue.put_nowait((rid, time.monotonic(), writer))
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        writer.close()

    def tick(self) -> dict[str, Any]:
        """This second's store line (StoreTick); the counts start again from zero."""
        waits, self.waits = self.waits, []
        out = {
            "v": 1,
            "type": "store",
            "t": round(time.time(), 3),
            "calls": self.calls,
            "queue_depth": self.queue.qsize(),
            "busy": self.busy,
            "concurrency": self.concurrency,
            "wait_ms_p50": round(percentile(waits, 0.5), 3),
            "wait_ms_p99": round(percentile(waits, 0.99), 3),
            "cpu_ms": round(self.cpu_ms, 3),
        }
        self.calls, self.cpu_ms = 0, 0.0
        return out

    async def ticker(self) -> None:
        next_t = time.time()
        while True:
            next_t += 1.0
            await asyncio.sleep(max(0.0, next_t - time.time()))
            self.send(self.tick())


async def _serve(concurrency: int, work_ms: float, pipe: Any) -> None:
    def send(msg: dict) -> None:
        try:
            pipe.send(msg)
        except (OSError, ValueError):
            os._exit(0)  # the supervisor is gone

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor handles ^C
    loop.add_reader(pipe.fileno(), stop.set)  # any message (or EOF) from the supervisor: stop
    store = Store(concurrency, work_ms, send)
    server = await asyncio.start_server(store.client, "127.0.0.1", 0, backlog=256)
    slots = [loop.create_task(store.slot()) for _ in range(concurrency)]
    ticker = loop.create_task(store.ticker())
    send({"type": "ready", "port": server.sockets[0].getsockname()[1], "pid": os.getpid()})
    await stop.wait()
    server.close()
    for task in (*slots, ticker):
        task.cancel()
    store.pool.shutdown(wait=False, cancel_futures=True)


def store_main(concurrency: int, work_ms: float, pipe: Any, cpus: tuple[int, ...] | None) -> None:
    """Entry point of the store process (multiprocessing spawn target)."""
    from wsstorm.target.settings import pin_self
    from wsstorm.target.worker import _set_pdeathsig

    _set_pdeathsig()
    try:
        pin_self(cpus)
        asyncio.run(_serve(concurrency, work_ms, pipe))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # one line for the supervisor's stderr, never a traceback
        print(f"wsstorm serve: store: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


class StoreClient:
    """A serving process's connection to the store: pipelined lookups, each answered by a future."""

    def __init__(self, port: int, on_orphan: Callable[[float], None]) -> None:
        self.port = port
        self.on_orphan = on_orphan  # store CPU ms of a lookup whose caller stopped waiting (shed)
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.next_id = 0
        self.reader_task: asyncio.Task | None = None

    async def connect(self) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                rid, wait_us, cpu_us = (int(x) for x in line.split())
                fut = self.pending.pop(rid, None)
                result = (wait_us / 1000.0, cpu_us / 1000.0)
                if fut is None or fut.done():
                    self.on_orphan(result[1])  # the store did it all the same
                else:
                    fut.set_result(result)
        except (ConnectionError, ValueError):
            pass
        self._fail(ConnectionError("the store closed the connection"))

    def _fail(self, exc: Exception) -> None:
        self.writer = None
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    async def lookup(self) -> tuple[float, float]:
        """One lookup: (ms waited in all, store CPU ms). ConnectionError when the store is unreachable."""
        writer = self.writer
        if writer is None or writer.is_closing():
            await self.connect()
            writer = self.writer
        # connect() has just set it, and nothing awaits from there to the write, so _fail cannot clear it
        assert writer is not None
        self.next_id += 1
        rid = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        t0 = time.monotonic()
        writer.write(b"%d\n" % rid)
        try:
            _queue_ms, cpu_ms = await fut
        except asyncio.CancelledError:
            # Shed by the handshake timeout: the store still answers, and _read books its CPU.
            raise
        return (time.monotonic() - t0) * 1000.0, cpu_ms

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.reader_task is not None:
            self.reader_task.cancel()
