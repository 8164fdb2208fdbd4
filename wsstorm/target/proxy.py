"""`wsstorm proxy`: a fault-injecting TCP proxy (partition, heal, reset, latency) in front of any server."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

from wsstorm.errors import UsageError
from wsstorm.target.admin import AdminServer, BadRequest, body_number, new_token
from wsstorm.target.netio import linger_rst

CHUNK = 65536


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); UsageError on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{what} must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class _Pipe:
    """One proxied TCP connection: two pumps, each gated by the proxy's partition state."""

    def __init__(self, proxy: FaultProxy, c_reader, c_writer) -> None:
        self.proxy = proxy
        self.c_reader, self.c_writer = c_reader, c_writer
        self.u_writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        proxy = self.proxy
        # A new connection during a partition is accepted and held: nothing is forwarded.
        await proxy.flowing.wait()
        try:
            u_reader, self.u_writer = await asyncio.open_connection(*proxy.upstream)
        except OSError:
            linger_rst(self.c_writer.transport)  # upstream down: the client sees a reset
            proxy.counts["upstream_errors"] += 1
            return
        await asyncio.gather(
            self._pump(self.c_reader, self.u_writer, "up"),
            self._pump(u_reader, self.c_writer, "down"),
            return_exceptions=True,
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        last_due = 0.0
        try:
            while True:
                await proxy.flowing.wait()
                data = await reader.read(CHUNK)
                # Bytes read just before a partition started are held until heal too.
                await proxy.flowing.wait()
                if not data:
                    break
                proxy.counts[f"bytes_{direction}"] += len(data)
                if proxy.latency_s > 0:
                    # Keep order when the latency shrinks mid-stream.
                    due = max(loop.time() + proxy.latency_s, last_due)
                    last_due = due
                    loop.call_at(due, self._write_later, writer, data)
                else:
                    writer.write(data)
                    await writer.drain()
            if proxy.latency_s > 0:
                await asyncio.sleep(max(0.0, last_due - loop.time()))
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    @staticmethod
    def _write_later(writer: asyncio.StreamWriter, data: bytes) -> None:
        if not writer.transport.is_closing():
            writer.write(data)

    def reset(self) -> None:
        linger_rst(self.c_writer.transport)
        if self.u_writer is not None:
            linger_rst(self.u_writer.transport)


class FaultProxy:
    """An asyncio TCP proxy whose forwarding can be stopped, delayed or reset."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.latency_s = 0.0
        self.pipes: set[_Pipe] = set()
        self.server: asyncio.base_events.Server | None = None
        self.counts = {"connections_total": 0, "bytes_up": 0, "bytes_down": 0, "upstream_errors": 0, "resets": 0}
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port; return the bound port (UsageError when it is in use)."""
        try:
            self.server = await asyncio.start_server(self._accept, host, port, backlog=4096)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pipe = _Pipe(self, reader, writer)
        self.pipes.add(pipe)
        self.counts["connections_total"] += 1
        try:
            await pipe.run()
        finally:
            self.pipes.discard(pipe)
            for w in (writer, pipe.u_writer):
                if w is not None and not w.transport.is_closing():
                    w.close()

    @property
    def mode(self) -> str:
        return "partition" if not self.flowing.is_set() else ("latency" if self.latency_s > 0 else "pass")

    def partition(self) -> None:
        """Stop forwarding in both directions; close nothing."""
        self.flowing.clear()

    def heal(self) -> None:
        """Forward again (held bytes flow on), and drop any added latency."""
        self.latency_s = 0.0
        self.flowing.set()

    def reset(self) -> int:
        """Reset (RST) every proxied connection on both sides; return how many."""
        pipes = list(self.pipes)
        for pipe in pipes:
            pipe.reset()
        self.counts["resets"] += len(pipes)
        return len(pipes)

    def set_latency(self, ms: float) -> None:
        self.latency_s = ms / 1000.0

    def status(self) -> dict:
        return {
            "mode": self.mode,
            "latency_ms": self.latency_s * 1000.0,
            "connections": len(self.pipes),
            "listen_port": self.port,
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            **self.counts,
        }

    def routes(self) -> dict:
        """Admin routes for this proxy (shared by `wsstorm proxy` and `wsstorm serve --proxy-port`)."""

        async def partition(body: dict):
            self.partition()
            return 200, {"ok": True, "mode": self.mode}

        async def heal(body: dict):
            self.heal()
            return 200, {"ok": True, "mode": self.mode}

        async def reset(body: dict):
            return 200, {"ok": True, "reset": self.reset()}

        async def latency(body: dict):
            ms = body_number(body, "ms", None)
            if ms is None:
                raise BadRequest("ms is required")
            self.set_latency(ms)
            return 200, {"ok": True, "mode": self.mode, "latency_ms": ms}

        async def status(body: dict):
            return 200, self.status()

        return {
            ("POST", "/partition"): partition,
            ("POST", "/heal"): heal,
            ("POST", "/reset"): reset,
            ("POST", "/latency"): latency,
            ("GET", "/status"): status,
        }


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of `wsstorm proxy`."""
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0: ephemeral)")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the server to forward to")
    parser.add_argument("--admin-port", type=int, default=0, help="admin API port on 127.0.0.1 (0: ephemeral)")
    parser.add_argument("--admin-token", default=None, help="admin Bearer token (default: generated, printed)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="initial added latency per direction")


async def _main(args: argparse.Namespace) -> None:
    listen = parse_hostport(args.listen, "--listen")
    upstream = parse_hostport(args.upstream, "--upstream")
    if args.latency_ms < 0:
        raise UsageError("--latency-ms must be >= 0")
    if not 0 <= args.admin_port <= 65535:
        raise UsageError("--admin-port must be 0..65535")
    proxy = FaultProxy(upstream)
    proxy.set_latency(args.latency_ms)
    port = await proxy.start(*listen)
    token = args.admin_token or new_token()
    admin = AdminServer(token, proxy.routes())
    try:
        aport = await admin.start(args.admin_port)
    except OSError as exc:
        raise UsageError(f"admin port {args.admin_port} is in use: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        json.dumps(
            {
                "ready": True,
                "url": f"ws://{listen[0]}:{port}",
                "admin": f"http://127.0.0.1:{aport}",
                "token": token,
                "t": time.time(),
            }
        ),
        flush=True,
    )
    await stop.wait()
    admin.close()
    proxy.reset()


def command(name: str, args: argparse.Namespace) -> int:
    """Run the proxy until SIGTERM/SIGINT."""
    asyncio.run(_main(args))
    return 0
