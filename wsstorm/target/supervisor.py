"""`wsstorm serve`: the embedded target — a supervisor (admin API, metrics, restarts) over N serving processes.

It also owns the dependency store process and the TLS certificate; its options live in wsstorm.target.options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from typing import Any, TextIO

from wsstorm.errors import UsageError
from wsstorm.target import sessions
from wsstorm.target.admin import AdminServer, BadRequest, body_number, new_token
from wsstorm.target.metrics import LEDGER, MetricsBook, ledger_counts, remainder
from wsstorm.target.options import (  # noqa: F401 (configure: the CLI looks here)
    check_lame_duck,
    configure,
    reserve_port,
    validate,
)
from wsstorm.target.settings import OVERLOAD_MODES, cpus_text, pin_self
from wsstorm.target.shm import (
    B_SIZE,
    B_STARTS,
    B_STARTS_LAST,
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
    CFG_SIZE,
    CFG_START_RATE,
)
from wsstorm.target.store import store_main
from wsstorm.target.worker import worker_main


class Supervisor:
    """Owns the port, the serving processes, the admin API, the metrics file and the optional proxy."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ctx = mp.get_context("spawn")
        self.reserve = reserve_port(args.host, args.port)
        self.port = self.reserve.getsockname()[1]
        self.cfg = self.ctx.RawArray("d", CFG_SIZE)
        self.cfg[CFG_CAPACITY] = args.capacity
        self.cfg[CFG_RATE] = args.handshake_rate
        self.cfg[CFG_BURST] = args.handshake_burst or max(1.0, args.handshake_rate / 10.0)
        self.cfg[CFG_ATTEMPT] = args.attempt_cost_ms
        self.cfg[CFG_SESSION] = args.session_cost_ms
        self.cfg[CFG_MODE] = OVERLOAD_MODES.index(args.overload)
        self.cfg[CFG_HINT] = -1.0 if args.retry_hint is None else args.retry_hint
        self.cfg[CFG_COST] = args.handshake_cost_ms
        self.cfg[CFG_RESUME_WINDOW] = args.resume_window
        self.cfg[CFG_RESUME_COST] = args.resume_cost_ms
        self.cfg[CFG_START_RATE] = args.session_start_rate
        self.cfg[CFG_REFUSE_CODE] = args.session_refuse_code
        self.bucket = self.ctx.RawArray("d", B_SIZE)
        self.bucket[0] = self.cfg[CFG_BURST]
        self.bucket[1] = time.monotonic()
        self.bucket[B_STARTS] = max(1.0, args.session_start_rate / 10.0)
        self.bucket[B_STARTS_LAST] = time.monotonic()
        # The session table (wsstorm.target.sessions), shared by the serving processes; only with resume on.
        self.sessions = (
            (self.ctx.RawArray("q", sessions.TABLE_SLOTS), self.ctx.RawArray("d", sessions.TABLE_SLOTS))
            if args.resume_window > 0
            else None
        )
        self.held = self.ctx.RawArray("l", args.workers)
        self.ledger = self.ctx.RawArray("q", args.workers * len(LEDGER))
        self.reported: list[dict[str, int]] = [{} for _ in range(args.workers)]
        self.lock = self.ctx.Lock()
        self.opts = {
            "max_size": args.max_size,
            "open_timeout": args.open_timeout,
            "close_timeout": args.close_timeout,
            "backlog": args.backlog,
            "uvloop": args.uvloop,
            "cpus": getattr(args, "cpu_list", None),
            "session_max_s": args.session_max_s,
            "auth_token": args.auth_token,  # a secret: the workers compare it, nothing writes it out
        }
        self.certs: Any = None
        self.store_proc: Any = None
        self.store_pipe: Any = None
        n = args.workers
        self.procs: list[Any] = [None] * n
        self.pipes: list[Any] = [None] * n
        self.state: list[str] = ["down"] * n
        self.down_until: list[float] = [0.0] * n
        self.expected_exit: list[bool] = [False] * n
        self.ready_waiters: list[asyncio.Future | None] = [None] * n
        self.book = MetricsBook(n)
        self.last_store: dict | None = None
        try:
            self.out: TextIO | None = open(args.metrics_out, "a", buffering=1) if args.metrics_out else None  # noqa: SIM115 (shutdown closes)
        except OSError as exc:
            self.reserve.close()
            raise UsageError(f"--metrics-out {args.metrics_out}: {exc.strerror or exc}") from None
        if args.tls:
            from wsstorm.target.tls import make_certificates

            try:
                self.certs = make_certificates(args.ca_out)
            except UsageError:
                self.reserve.close()
                raise
            self.opts.update(tls_cert=self.certs.cert, tls_key=self.certs.key)
        self.proxy: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by run(); use self.loop
        self.stop_event = asyncio.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop run() runs on; every reader, timer and task is added after run() set it."""
        if self._loop is None:
            raise RuntimeError("Supervisor.loop used before Supervisor.run() started the event loop")
        return self._loop

    # --- records --------------------------------------------------------------------------

    def write(self, record: dict) -> None:
        if self.out is not None:
            self.out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def fault(self, proc: int, fault: str, **extra: Any) -> dict:
        record = {"v": 1, "type": "fault", "t": round(time.time(), 3), "proc": proc, "fault": fault, **extra}
        self.write(record)
        self.book.fault(record)
        return record

    # --- the dependency store ---------------------------------------------------------------

    async def start_store(self, timeout: float = 30.0) -> None:
        """Start the store process and wait for its port (handed to every serving process)."""
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=store_main,
            name="wsstorm-store",
            daemon=True,
            args=(self.args.store_concurrency, self.args.store_ms, child, self.opts["cpus"]),
        )
        proc.start()
        child.close()
        self.store_proc, self.store_pipe = proc, parent
        deadline = time.monotonic() + timeout
        while not parent.poll(0.05):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise UsageError(f"the dependency store did not start within {timeout:g} s")
            await asyncio.sleep(0.05)
        ready = parent.recv()
        self.opts["store_port"] = ready["port"]
        self.loop.add_reader(parent.fileno(), self.on_store_message)

    def on_store_message(self) -> None:
        try:
            msg = self.store_pipe.recv()
        except (EOFError, OSError):
            self.loop.remove_reader(self.store_pipe.fileno())
            return
        if msg.get("type") == "store":
            self.write(msg)
            self.last_store = msg

    def stop_store(self) -> None:
        if self.store_proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.store_pipe.send({"cmd": "stop"})
        self.store_proc.join(2.0)
        if self.store_proc.is_alive():
            self.store_proc.kill()
            self.store_proc.join(1.0)

    # --- serving processes ----------------------------------------------------------------

    async def spawn(self, i: int, timeout: float = 30.0) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=worker_main,
            name=f"wsstorm-serve-{i}",
            daemon=True,
            args=(
                i,
                self.port,
                self.args.host,
                child,
                self.cfg,
                self.bucket,
                self.held,
                self.lock,
                self.ledger,
                self.opts,
                self.sessions,
            ),
        )
        self.held[i] = 0
        n = len(LEDGER)
        self.ledger[i * n : (i + 1) * n] = [0] * n
        self.reported[i] = {}
        proc.start()
        child.close()
        self.procs[i], self.pipes[i] = proc, parent
        self.expected_exit[i] = False
        fut = self.loop.create_future()
        self.ready_waiters[i] = fut
        self.loop.add_reader(parent.fileno(), self.on_message, i, parent)
        self.loop.add_reader(proc.sentinel, self.on_exit, i, proc)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise UsageError(f"serving process {i} did not start within {timeout:g} s") from None
        self.state[i] = "serving"

    def on_message(self, i: int, pipe: Any) -> None:
        try:
            msg = pipe.recv()
        except (EOFError, OSError):
            self.loop.remove_reader(pipe.fileno())
            return
        self.handle(i, msg)

    def handle(self, i: int, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "tick":
            if self.state[i] != "down":
                self.state[i] = msg["state"]
            self.tick(msg)
        elif kind == "ready":
            fut = self.ready_waiters[i]
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif kind == "state":
            self.state[i] = msg["state"]

    def tick(self, tick: dict) -> None:
        self.write(tick)
        self.book.tick(tick)
        mine = self.reported[tick["proc"]]
        for name, value in ledger_counts(tick).items():
            mine[name] = mine.get(name, 0) + value

    def settle(self, i: int) -> None:
        """After process `i` exited: read the ticks it left in the pipe, then write what it counted
        after its last tick (a SIGKILL gives it no chance to) as a `partial` tick."""
        pipe = self.pipes[i]
        try:
            while pipe.poll():
                self.handle(i, pipe.recv())
        except (EOFError, OSError, ValueError):
            pass
        n = len(LEDGER)
        counts = remainder(self.ledger[i * n : (i + 1) * n], self.reported[i])
        if counts is not None:
            # capacity and rate 0: the per-second sums of the analysis count this process once
            self.tick({**self.book.down_tick(i, 0, 0), **counts, "partial": True})

    def on_exit(self, i: int, proc: Any) -> None:
        self.loop.remove_reader(proc.sentinel)
        if self.procs[i] is not proc:
            return
        proc.join(0)
        self.settle(i)
        try:
            self.loop.remove_reader(self.pipes[i].fileno())
            self.pipes[i].close()
        except (OSError, ValueError):
            pass
        self.held[i] = 0  # its connections died with it
        if self.sessions is not None:
            # Its sessions closed when it died: resumable from now. Without the lock: a process
            # SIGKILLed while holding it never gives it back, and these are plain stores of doubles.
            sessions.end_all_of(self.sessions[1], i, time.monotonic())
        self.state[i] = "down"
        self.book.down(i)
        if self.stop_event.is_set():
            return
        if not self.expected_exit[i]:
            self.down_until[i] = time.time() + 1.0
            self.fault(i, "died", exitcode=proc.exitcode, down_s=1.0)
        delay = max(0.0, self.down_until[i] - time.time())
        self.loop.call_later(delay, lambda: self.loop.create_task(self._respawn(i)))

    async def _respawn(self, i: int) -> None:
        if self.stop_event.is_set() or self.state[i] != "down":
            return
        try:
            await self.spawn(i)
            self.fault(i, "recovered")
        except UsageError as exc:
            print(f"wsstorm serve: {exc}", file=sys.stderr)

    async def down_ticker(self) -> None:
        # A crashed process writes nothing, so its "down" ticks come from here.
        next_t = time.time()
        while True:
            next_t += 1.0
            await asyncio.sleep(max(0.0, next_t - time.time()))
            for i, st in enumerate(self.state):
                if st == "down":
                    tick = self.book.down_tick(i, int(self.cfg[CFG_CAPACITY]), self.cfg[CFG_RATE])
                    self.write(tick)

    async def watch_parent(self, parent: int) -> None:
        # Reparenting means whoever started us is gone without stopping us.
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        self.stop_event.set()

    # --- faults -----------------------------------------------------------------------------

    def _procs_arg(self, body: dict) -> list[int]:
        proc = body_number(body, "proc", None, integer=True)
        if proc is None:
            return list(range(len(self.procs)))
        if proc >= len(self.procs):
            raise BadRequest(f"proc must be 0..{len(self.procs) - 1}")
        return [int(proc)]

    async def api_restart(self, body: dict) -> tuple[int, Any]:
        mode = body.get("mode", "all")
        if mode not in ("all", "drain"):
            raise BadRequest("mode must be all or drain")
        down = body_number(body, "down", self.args.restart_down)
        batch = body_number(body, "batch", 100, minimum=1, integer=True)
        interval = body_number(body, "interval", 0.5)
        done, skipped = [], []
        for i in self._procs_arg(body):
            if self.state[i] != "serving":
                skipped.append(i)
                continue
            self.pipes[i].send({"cmd": "restart", "mode": mode, "down": down, "batch": batch, "interval": interval})
            self.state[i] = "restarting"
            extra = {"batch": batch, "interval_s": interval} if mode == "drain" else {}
            self.fault(i, "restart", mode=mode, down_s=down, **extra)
            done.append(i)
        return (200 if done else 409), {"ok": bool(done), "procs": done, "skipped": skipped}

    async def api_lame_duck(self, body: dict) -> tuple[int, Any]:
        """Lame duck (NATS): stop accepting, wait `grace` s, close clients over `duration` s with `code`."""
        grace = body_number(body, "grace", self.args.lame_duck_grace)
        duration = body_number(body, "duration", self.args.lame_duck_duration)
        code = body_number(body, "code", self.args.lame_duck_code, integer=True)
        try:
            check_lame_duck(grace, duration, code)
        except UsageError as exc:
            raise BadRequest(str(exc)) from None
        done, skipped = [], []
        for i in self._procs_arg(body):
            if self.state[i] != "serving":
                skipped.append(i)
                continue
            self.pipes[i].send({"cmd": "lame-duck", "grace": grace, "duration": duration, "code": code})
            self.state[i] = "lame-duck"
            # down_s: when it serves again (the analysis's end of the trigger)
            self.fault(i, "lame-duck", grace_s=grace, duration_s=duration, code=code, down_s=grace + duration)
            done.append(i)
        return (200 if done else 409), {"ok": bool(done), "procs": done, "skipped": skipped}

    def lame_duck_all(self) -> None:
        """SIGUSR2 (NATS's `--signal ldm`): lame duck with --lame-duck-grace/-duration/-code."""
        self.loop.create_task(self.api_lame_duck({}))

    def restart_all(self) -> None:
        """SIGHUP: restart every serving process, all at once, with --restart-down."""
        self.loop.create_task(self.api_restart({"mode": "all"}))

    async def api_crash(self, body: dict) -> tuple[int, Any]:
        down = body_number(body, "down", 3.0)
        done = []
        for i in self._procs_arg(body):
            proc = self.procs[i]
            if self.state[i] == "down" or proc is None:
                continue
            self.expected_exit[i] = True
            self.down_until[i] = time.time() + down
            self.fault(i, "crash", down_s=down)
            # SIGKILL: no Close frame, no shutdown code; the kernel just ends the TCP connections.
            os.kill(proc.pid, signal.SIGKILL)
            done.append(i)
        return (200 if done else 409), {"ok": bool(done), "procs": done}

    async def api_capacity(self, body: dict) -> tuple[int, Any]:
        cap = body_number(body, "capacity", None, minimum=1, integer=True)
        rate = body_number(body, "handshake_rate", None)
        burst = body_number(body, "handshake_burst", None, minimum=1)
        cost = body_number(body, "handshake_cost_ms", None)
        attempt_cost = body_number(body, "attempt_cost_ms", None)
        session_cost = body_number(body, "session_cost_ms", None)
        if cap is not None:
            self.cfg[CFG_CAPACITY] = cap
        if rate is not None:
            self.cfg[CFG_RATE] = rate
            if burst is None and self.args.handshake_burst is None:
                self.cfg[CFG_BURST] = max(1.0, rate / 10.0)
        if burst is not None:
            self.cfg[CFG_BURST] = burst
        if cost is not None:
            self.cfg[CFG_COST] = cost
        if attempt_cost is not None:
            self.cfg[CFG_ATTEMPT] = attempt_cost
        if session_cost is not None:
            self.cfg[CFG_SESSION] = session_cost
        params = {
            "capacity": int(self.cfg[CFG_CAPACITY]),
            "handshake_rate": self.cfg[CFG_RATE],
            "handshake_burst": self.cfg[CFG_BURST],
            "handshake_cost_ms": self.cfg[CFG_COST],
            "attempt_cost_ms": self.cfg[CFG_ATTEMPT],
            "session_cost_ms": self.cfg[CFG_SESSION],
        }
        self.fault(-1, "capacity", **params)
        return 200, {"ok": True, **params}

    async def api_overload(self, body: dict) -> tuple[int, Any]:
        mode = body.get("mode")
        if mode not in OVERLOAD_MODES:
            raise BadRequest(f"mode must be one of {', '.join(OVERLOAD_MODES)}")
        self.cfg[CFG_MODE] = OVERLOAD_MODES.index(mode)
        if "retry_hint" in body:
            hint = body_number(body, "retry_hint", None)
            self.cfg[CFG_HINT] = -1.0 if hint is None else hint
        self.fault(-1, "overload", mode=mode)
        return 200, {"ok": True, "mode": mode}

    def status(self) -> dict:
        """The live picture: settings, per-process state and last tick, totals, proxy."""
        import psutil

        rss = psutil.Process().memory_info().rss
        return {
            "url": f"{self.scheme}://{self.args.host}:{self.port}",
            "port": self.port,
            "pid": os.getpid(),
            "capacity": int(self.cfg[CFG_CAPACITY]),
            "handshake_rate": self.cfg[CFG_RATE],
            "handshake_burst": self.cfg[CFG_BURST],
            "handshake_cost_ms": self.cfg[CFG_COST],
            "attempt_cost_ms": self.cfg[CFG_ATTEMPT],
            "session_cost_ms": self.cfg[CFG_SESSION],
            "resume_window": self.cfg[CFG_RESUME_WINDOW],
            "resume_cost_ms": self.cfg[CFG_RESUME_COST],
            "session_start_rate": self.cfg[CFG_START_RATE],
            "session_refuse_code": int(self.cfg[CFG_REFUSE_CODE]),
            "tls": bool(self.args.tls),
            "handshake_timeout": self.args.open_timeout,
            "cpus": cpus_text(self.opts["cpus"]) if self.opts["cpus"] else None,
            "store": (
                {
                    "concurrency": self.args.store_concurrency,
                    "store_ms": self.args.store_ms,
                    "pid": self.store_proc.pid,
                    "last_tick": self.last_store,
                }
                if self.store_proc is not None
                else None
            ),
            "overload": OVERLOAD_MODES[int(self.cfg[CFG_MODE])],
            "retry_hint": None if self.cfg[CFG_HINT] < 0 else self.cfg[CFG_HINT],
            "workers": len(self.procs),
            "held": list(self.held[:]),
            "procs": [
                {
                    "proc": i,
                    "state": self.state[i],
                    "pid": p.pid if p is not None else None,
                    "last_tick": self.book.last[i],
                }
                for i, p in enumerate(self.procs)
            ],
            "state": self.overall_state(),
            "connections": sum(self.held[:]),
            "rss_bytes": rss
            + sum(t.get("rss_bytes", 0) for t in self.book.last if t and self.state[t["proc"]] != "down"),
            "supervisor_rss_bytes": rss,
            "totals": self.book.totals_dict(),
            "proxy": self.proxy.status() if self.proxy is not None else None,
        }

    def overall_state(self) -> str:
        states = set(self.state)
        return states.pop() if len(states) == 1 else "mixed"

    def routes(self) -> dict:
        async def status(body: dict):
            return 200, self.status()

        async def metrics(body: dict):
            return 200, (
                "text/plain; version=0.0.4; charset=utf-8",
                self.book.prometheus(self.state, int(self.cfg[CFG_CAPACITY]), self.cfg[CFG_RATE]),
            )

        routes = {
            ("GET", "/status"): status,
            ("GET", "/metrics"): metrics,
            ("POST", "/restart"): self.api_restart,
            ("POST", "/crash"): self.api_crash,
            ("POST", "/capacity"): self.api_capacity,
            ("POST", "/overload"): self.api_overload,
            ("POST", "/lame-duck"): self.api_lame_duck,
        }
        if self.proxy is not None:
            for key, handler in self.proxy.routes().items():
                if key != ("GET", "/status"):
                    routes[key] = self._logged(key[1].strip("/"), handler)
        return routes

    def _logged(self, name: str, handler: Any) -> Any:
        async def run(body: dict):
            status, payload = await handler(body)
            if status == 200:
                self.fault(-1, name, **({"ms": body["ms"]} if "ms" in body else {}))
            return status, payload

        return run

    # --- life -------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "wss" if self.args.tls else "ws"

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.args.store_concurrency > 0:
            await self.start_store()
        await asyncio.gather(*(self.spawn(i) for i in range(len(self.procs))))
        url = f"{self.scheme}://{self.args.host}:{self.port}"
        if self.args.proxy_port is not None:
            from wsstorm.target.proxy import FaultProxy

            self.proxy = FaultProxy(("127.0.0.1" if self.args.host == "0.0.0.0" else self.args.host, self.port))
            pport = await self.proxy.start("127.0.0.1", self.args.proxy_port)
            url = f"{self.scheme}://127.0.0.1:{pport}"
        token = self.args.admin_token or new_token()
        admin = AdminServer(token, self.routes())
        try:
            aport = await admin.start(self.args.admin_port)
        except OSError as exc:
            raise UsageError(f"admin port {self.args.admin_port} is in use ({exc.strerror or exc})") from None
        self.loop.add_signal_handler(signal.SIGHUP, self.restart_all)
        self.loop.add_signal_handler(signal.SIGUSR2, self.lame_duck_all)
        self.loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        self.loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        down_ticker = self.loop.create_task(self.down_ticker())
        if self.args.exit_with_parent:
            self.loop.create_task(self.watch_parent(os.getppid()))
        ready = {
            "ready": True,
            "url": url,
            "admin": f"http://127.0.0.1:{aport}",
            "token": token,
            "port": self.port,
            "pid": os.getpid(),
            "workers": len(self.procs),
        }
        if self.certs is not None:
            ready["ca_file"] = self.certs.ca_file
        if self.opts["cpus"]:
            ready["cpus"] = cpus_text(self.opts["cpus"])
        if self.store_proc is not None:
            ready["store_pid"] = self.store_proc.pid
        print(json.dumps(ready), flush=True)
        await self.stop_event.wait()
        down_ticker.cancel()
        admin.close()
        await self.shutdown()

    async def shutdown(self) -> None:
        for i, pipe in enumerate(self.pipes):
            if self.procs[i] is not None and self.procs[i].is_alive():
                self.expected_exit[i] = True
                with contextlib.suppress(OSError, ValueError):
                    pipe.send({"cmd": "stop"})
        deadline = time.monotonic() + 2.0
        for proc in self.procs:
            if proc is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(1.0)
        for i, proc in enumerate(self.procs):
            if proc is not None and not proc.is_alive():
                self.settle(i)
        if self.proxy is not None:
            self.proxy.reset()
        self.stop_store()
        if self.certs is not None:
            self.certs.cleanup()
        if self.out is not None:
            self.out.close()
        self.reserve.close()


def command(name: str, args: argparse.Namespace) -> int:
    """Run the target until SIGTERM/SIGINT; SIGHUP restarts it."""
    validate(args)
    pin_self(args.cpu_list)  # the supervisor too: the whole target stays off the harness's cores

    async def main() -> None:
        await Supervisor(args).run()

    asyncio.run(main())
    return 0
