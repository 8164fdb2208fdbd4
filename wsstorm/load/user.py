"""The Locust WebSocket user: holds a connection, pings, messages, reconnects per policy, records all.

Also the run-level hooks: Locust command-line options, option checks, the event
recorder per process (workers ship each flushed batch to the master, which
writes every shard), the manifest, the embedded target and the fault schedule.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import random
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import User, events, task
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from wsstorm.runfolder import manifest as manifest_mod
from wsstorm.load import sockets as sockets_mod
from wsstorm.errors import UsageError
from wsstorm.policies import Outcome, hint_from_reason
from wsstorm.load.recorder import Recorder, ShardWriter, safe_id, shard_name
from wsstorm.load.connection import CloseInfo, MessageTooBig, PeerEOF, WSConnection, answer_code, classify_exception

log = logging.getLogger("wsstorm")

MSG_EVENTS = "wsstorm_events"  # worker -> master: one flushed batch {worker, seq, data}
MSG_HELLO = "wsstorm_hello"  # worker -> master: {worker}
MSG_CPU = "wsstorm_cpu"  # worker -> master: {worker, t, cpu}
MSG_STOP = "wsstorm_stop"  # master -> worker: stop users and flush everything
MSG_DONE = "wsstorm_done"  # worker -> master: {worker, seq}: last batch sent
FAILURE_CODES = frozenset({1002, 1006, 1007, 1011, 1013})  # closes that are failures by nature
CLIENT_STOP_WAIT = 0.3  # seconds a stopping user waits for the server's Close reply
INF = float("inf")


# ---------------------------------------------------------------- options

@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    g = parser  # Locust's own add_argument: these show in the web UI (include_in_web_ui)
    g.add_argument("--policy", default="full-jitter", help="reconnect policy spec (see `wsstorm policies`)")
    g.add_argument("--policy-file", default="", help="TOML/JSON file defining the policy (overrides --policy)")
    g.add_argument("--message-rate", type=float, default=None, help="messages per second per user (default 0.1)")
    g.add_argument("--message-size", type=int, default=64, help="bytes per message")
    g.add_argument("--ping-interval", type=float, default=None, help="seconds between pings (default 5; 0 = off)")
    g.add_argument("--pong-timeout", type=float, default=None, help="seconds without pong before the peer is dead (default 5)")
    g.add_argument("--connect-timeout", type=float, default=10.0, help="seconds for TCP + handshake")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: chosen and recorded)")
    g.add_argument("--run-id", default="", help="run id (default: time-based)")
    g.add_argument("--run-dir", default="", help="run folder (default reports/<run-id>)")
    g.add_argument("--scenario", default="", help="scenario name or file: target shape, client defaults, faults")
    g.add_argument("--target-capacity", type=int, default=None, help="embedded target: max connections")
    g.add_argument("--target-handshake-rate", type=float, default=None, help="embedded target: handshakes/s")
    g.add_argument("--target-handshake-cost-ms", type=float, default=None, help="embedded target: CPU ms per handshake")
    g.add_argument("--target-overload", default="", help="embedded target: close | http | refuse")
    g.add_argument("--target-port", type=int, default=None, help="embedded target: WebSocket port (default: a free one)")
    g.add_argument("--target-workers", type=int, default=None, help="embedded target: serving processes")
    g.add_argument("--target-proxy", action="store_true", default=False, help="embedded target: fault proxy in front")
    g.add_argument("--target-admin", default="", help="admin URL of a target started elsewhere (for faults)")
    g.add_argument("--target-token", default="", is_secret=True, help="its admin token")


@dataclass(frozen=True)
class UserConfig:
    """Resolved per-run client settings (command line > scenario [client] > defaults)."""

    policy: Any
    message_rate: float
    message_size: int
    ping_interval: float
    pong_timeout: float
    connect_timeout: float
    seed: int


def _pick(cli: Any, scenario_value: Any, default: Any) -> Any:
    return cli if cli is not None else (scenario_value if scenario_value is not None else default)


def resolve_config(opts: Any, scenario: Any = None) -> UserConfig:
    """Check and resolve the options; raises UsageError with one line on bad input."""
    from wsstorm import policies

    if getattr(opts, "policy_file", ""):
        spec = policies.load_policy_file(opts.policy_file)
    else:
        spec = policies.parse_policy(opts.policy or "full-jitter")
    client = getattr(scenario, "client", None)
    cfg = UserConfig(
        policy=spec,
        message_rate=float(_pick(opts.message_rate, getattr(client, "message_rate", None), 0.1)),
        message_size=int(opts.message_size),
        ping_interval=float(_pick(opts.ping_interval, getattr(client, "ping_interval", None), 5.0)),
        pong_timeout=float(_pick(opts.pong_timeout, getattr(client, "pong_timeout", None), 5.0)),
        connect_timeout=float(opts.connect_timeout),
        seed=int(opts.seed) if opts.seed is not None else 0,
    )
    for name in ("message_rate", "ping_interval", "pong_timeout"):
        v = getattr(cfg, name)
        if not (v >= 0 and v != float("inf")):
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
    if not (0 < cfg.connect_timeout < float("inf")):
        raise UsageError(f"--connect-timeout must be > 0, got {cfg.connect_timeout}")
    if not 16 <= cfg.message_size <= 1_000_000:
        raise UsageError(f"--message-size must be between 16 and 1000000, got {cfg.message_size}")
    if cfg.ping_interval > 0 and cfg.pong_timeout <= 0:
        raise UsageError("--pong-timeout must be > 0 when pings are on")
    return cfg


def check_host(host: str | None) -> None:
    """A given --host must be a ws:// or wss:// URL with a valid port."""
    if not host:
        return
    if not (host.startswith("ws://") or host.startswith("wss://")):
        raise UsageError(f"--host must be a ws:// or wss:// URL, got {host!r}")
    from urllib.parse import urlsplit

    try:
        urlsplit(host).port  # raises ValueError for a port out of 0-65535 or not a number
    except ValueError as exc:
        raise UsageError(f"--host has a bad port: {host!r} ({exc})") from None


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 4 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:4]


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any parts (no Python hash randomisation)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# ---------------------------------------------------------------- per-process session

@dataclass
class Session:
    """What one Locust process knows about the run."""

    role: str = "local"  # local, master, worker
    worker: str = "local"
    run: str = ""
    run_dir: Path = Path("reports")
    cfg: UserConfig | None = None
    recorder: Recorder | None = None
    shard: ShardWriter | None = None
    users: int = 0
    environment: Any = None
    # master / local only
    started: float | None = None
    target: Any = None
    target_info: dict[str, Any] | None = None
    scenario: Any = None
    schedule: Any = None
    workers: set[str] = field(default_factory=set)
    cpu_warnings: list[dict[str, Any]] = field(default_factory=list)
    shards: dict[str, ShardWriter] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    seq: int = 0

    def next_user(self) -> str:
        self.users += 1
        return f"{self.worker}/{self.users}"


SESSION = Session()


def _fail_usage(exc: UsageError) -> None:
    print(f"locust: error: {exc}", file=sys.stderr)
    sys.exit(2)


def _load_scenario(name: str) -> Any:
    from wsstorm.run import scenario as scenarios

    return scenarios.load(name)


@events.init.add_listener
def _on_init(environment: Any, runner: Any = None, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # used as a library without Locust's CLI: nothing to set up
        return
    s = SESSION
    s.environment = environment
    is_worker = isinstance(runner, WorkerRunner)
    try:
        check_host(environment.host)
        # workers get the master's resolved options with each spawn message; only it reads the scenario
        s.scenario = _load_scenario(opts.scenario) if opts.scenario and not is_worker else None
        if is_worker:
            s.cfg = resolve_config(opts, s.scenario)
        else:
            if opts.seed is None:
                opts.seed = random.SystemRandom().randrange(2**31)
            s.cfg = resolve_config(opts, s.scenario)
    except UsageError as exc:
        _fail_usage(exc)
    sockets_mod.raise_nofile_limit()
    if isinstance(runner, WorkerRunner):
        s.role = "worker"
        s.worker = safe_id(f"{socket.gethostname()}-{os.getpid()}")
        runner.register_message(MSG_STOP, _worker_on_stop)
    else:
        s.role = "master" if isinstance(runner, MasterRunner) else "local"
        s.worker = "local"
        # resolved values go back into the options: workers receive them with the spawn message
        opts.message_rate, opts.ping_interval = s.cfg.message_rate, s.cfg.ping_interval
        opts.pong_timeout = s.cfg.pong_timeout
        opts.run_id = opts.run_id or new_run_id()
        s.run = opts.run_id
        s.run_dir = Path(opts.run_dir or os.path.join("reports", s.run))
        opts.run_dir = str(s.run_dir)
        if not environment.host:
            try:
                _start_embedded_target(environment, opts, s)
            except UsageError as exc:
                _fail_usage(exc)
        if isinstance(runner, MasterRunner):
            runner.register_message(MSG_EVENTS, _master_on_events)
            runner.register_message(MSG_HELLO, _master_on_hello)
            runner.register_message(MSG_CPU, _master_on_cpu)
            runner.register_message(MSG_DONE, _master_on_done)


def _target_options(opts: Any, scenario: Any) -> dict[str, Any]:
    t = getattr(scenario, "target", None)
    pairs = {
        "capacity": (opts.target_capacity, getattr(t, "capacity", None)),
        "handshake_rate": (opts.target_handshake_rate, getattr(t, "handshake_rate", None)),
        "handshake_cost_ms": (opts.target_handshake_cost_ms, getattr(t, "handshake_cost_ms", None)),
        "overload": (opts.target_overload or None, getattr(t, "overload", None)),
        "port": (opts.target_port, None),
        "workers": (opts.target_workers, getattr(t, "workers", None)),
        "proxy": (opts.target_proxy or None, getattr(t, "proxy", None)),
    }
    return {k: (cli if cli is not None else sc) for k, (cli, sc) in pairs.items() if (cli if cli is not None else sc) is not None}


def _start_embedded_target(environment: Any, opts: Any, s: Session) -> None:
    from wsstorm.target import control

    options = _target_options(opts, s.scenario)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    argv = {k: v for k, v in options.items() if k != "proxy"}
    if options.get("proxy"):
        argv["proxy_port"] = 0
    argv["metrics_out"] = str(s.run_dir / "server.jsonl")
    try:
        s.target = control.start_target(**argv)
    except UsageError:
        raise
    except Exception as exc:  # one line, not a traceback per process
        raise UsageError(f"cannot start the embedded target: {exc}") from exc
    # Locust may fail after init without firing quit: stop the target at exit all the same.
    atexit.register(s.target.stop)
    s.target_info = dict(options)
    environment.host = s.target.url
    opts.host = s.target.url
    log.info("wsstorm: embedded target at %s", s.target.url)


# ---------------------------------------------------------------- recorder plumbing

def _ensure_recorder(environment: Any) -> Recorder:
    s = SESSION
    if s.recorder is not None:
        return s.recorder
    opts = environment.parsed_options
    if s.role == "worker":
        s.run = opts.run_id  # sent by the master with the spawn message
        runner = environment.runner

        def ship(batch: bytes) -> None:
            s.seq += 1
            runner.send_message(MSG_EVENTS, {"worker": s.worker, "seq": s.seq, "data": batch.decode("utf-8")})

        s.recorder = Recorder(s.run, s.worker, ship)
        runner.send_message(MSG_HELLO, {"worker": s.worker})
    else:
        s.shard = ShardWriter(s.run_dir / shard_name(s.worker))
        s.recorder = Recorder(s.run, s.worker, s.shard.write)
    return s.recorder


def _master_shard(worker: str) -> ShardWriter:
    s = SESSION
    w = safe_id(worker)
    if w not in s.shards:
        s.shards[w] = ShardWriter(s.run_dir / shard_name(w))
        s.workers.add(w)
    return s.shards[w]


def _master_on_events(environment: Any, msg: Any, **_kw: Any) -> None:
    s = SESSION
    data = msg.data or {}
    worker, seq = safe_id(str(data.get("worker", ""))), int(data.get("seq", 0))
    if seq <= s.last_seq.get(worker, 0):  # a resent batch: never write an event twice
        return
    s.last_seq[worker] = seq
    batch = str(data.get("data", "")).encode("utf-8")
    if batch and not batch.endswith(b"\n"):
        batch += b"\n"
    _master_shard(worker).write(batch)


def _master_on_hello(environment: Any, msg: Any, **_kw: Any) -> None:
    _master_shard(str((msg.data or {}).get("worker", "")))


def _master_on_cpu(environment: Any, msg: Any, **_kw: Any) -> None:
    d = msg.data or {}
    SESSION.cpu_warnings.append({"t": d.get("t"), "worker": safe_id(str(d.get("worker", ""))), "cpu": d.get("cpu")})


def _master_on_done(environment: Any, msg: Any, **_kw: Any) -> None:
    SESSION.done.add(safe_id(str((msg.data or {}).get("worker", ""))))


def _worker_on_stop(environment: Any, msg: Any, **_kw: Any) -> None:
    # Stop our users now, so every last event is flushed and shipped before the master quits.
    environment.runner.stop()
    s = SESSION
    if s.recorder is not None:
        s.recorder.flush()
    environment.runner.send_message(MSG_DONE, {"worker": s.worker, "seq": s.seq})


@events.cpu_warning.add_listener
def _on_cpu_warning(environment: Any, cpu_usage: float, **_kw: Any) -> None:
    s = SESSION
    entry = {"t": time.time(), "worker": s.worker if s.role != "master" else "master", "cpu": cpu_usage}
    if s.role == "worker":
        environment.runner.send_message(MSG_CPU, entry)
    else:
        s.cpu_warnings.append(entry)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    s = SESSION
    if environment.parsed_options is None:
        return
    if s.role == "worker":
        try:
            s.cfg = resolve_config(environment.parsed_options)
        except UsageError as exc:
            # running on with the previous settings would make a run that is not what was asked
            log.error("wsstorm: %s", exc)
            environment.process_exit_code = 2
            environment.runner.quit()
            return
    if s.role != "master":
        _ensure_recorder(environment).start()
    if s.role == "worker":
        return
    s.started = s.started or time.time()
    write_manifest(environment)
    if s.scenario is not None and s.scenario.faults and s.schedule is None:
        # Hook point: the scenario's fault schedule (wsstorm.run.faults) runs in the master/local process.
        from wsstorm.run import faults

        opts = environment.parsed_options
        control = s.target or ((opts.target_admin, opts.target_token) if opts.target_admin else None)
        try:
            s.schedule = faults.start_schedule(s.scenario, control, s.run_dir, s.started)
        except UsageError as exc:
            log.error("wsstorm: %s", exc)
            environment.process_exit_code = 2
            environment.runner.quit()


@events.test_stopping.add_listener
def _on_test_stopping(environment: Any, **_kw: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    # Locust's headless quit never sends "stop" and waits only 0.5 s: ask the workers to stop
    # and flush, and wait (bounded) until each says its last batch is out.
    s = SESSION
    s.done.clear()
    ids = [c.id for c in runner.clients.all]
    for cid in ids:
        runner.send_message(MSG_STOP, None, client_id=cid)
    deadline = time.monotonic() + (environment.stop_timeout or 0) + 15
    while len(s.done) < len(ids) and time.monotonic() < deadline:
        gevent.sleep(0.05)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    s = SESSION
    if s.recorder is not None:
        s.recorder.flush()
    if s.role != "worker" and environment.parsed_options is not None:
        write_manifest(environment)


@events.quit.add_listener
def _on_quit(**_kw: Any) -> None:
    s = SESSION
    if s.recorder is not None:
        s.recorder.stop()
    if s.schedule is not None:
        try:
            s.schedule.stop()
        except Exception:
            log.exception("wsstorm: stopping the fault schedule")
    if s.role != "worker" and s.environment is not None and s.environment.parsed_options is not None:
        write_manifest(s.environment, ended=time.time())
    for w in list(s.shards.values()) + ([s.shard] if s.shard else []):
        w.close()
    if s.target is not None:
        _await_last_tick(s.run_dir / "server.jsonl", time.time())
        try:
            s.target.stop()
        except Exception:
            log.exception("wsstorm: stopping the embedded target")


def _await_last_tick(path: Path, since: float, limit: float = 2.5) -> None:
    """Wait (bounded) for the target's next per-second tick, so server.jsonl covers the whole run."""
    import json

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(path) - 4096))
                lines = fh.read().splitlines()
        except OSError:
            return
        for line in reversed(lines):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("type") == "tick" and float(rec.get("t", 0)) >= since:
                return
        gevent.sleep(0.1)


def write_manifest(environment: Any, ended: float | None = None) -> None:
    """Write the run's manifest.json (master/local only)."""
    s = SESSION
    opts = environment.parsed_options
    runner = environment.runner
    workers = sorted(s.workers) if s.role == "master" else ["local"]
    if s.role == "master" and runner is not None:
        for w in s.shards:
            s.workers.add(w)
        workers = sorted(s.workers)
    options = {k: v for k, v in vars(opts).items() if k not in ("target_token",)}
    scenario = None
    if s.scenario is not None:
        scenario = s.scenario.to_dict()
        try:
            scenario["content"] = Path(s.scenario.source).read_text(encoding="utf-8")
        except (OSError, TypeError):
            pass
    cfg = s.cfg
    data = manifest_mod.build_manifest(
        run=s.run, started=s.started or time.time(), ended=ended, host=environment.host,
        embedded_target=s.target is not None, policy=str(cfg.policy) if cfg else "",
        scenario=scenario, seed=cfg.seed if cfg else 0, users=getattr(opts, "num_users", None),
        spawn_rate=getattr(opts, "spawn_rate", None), duration_s=getattr(opts, "run_time", None),
        options=options, workers=workers, cpu_warnings=s.cpu_warnings, target=s.target_info,
    )
    try:
        manifest_mod.write_manifest(s.run_dir, data)
    except OSError as exc:
        log.error("wsstorm: cannot write manifest: %s", exc)


# ---------------------------------------------------------------- the user

_POLICY_ERRORS_LOGGED = [False]


def _policy_failed(exc: BaseException) -> str:
    """Short text for a policy that raised; logged (with traceback) once per process."""
    if not _POLICY_ERRORS_LOGGED[0]:
        _POLICY_ERRORS_LOGGED[0] = True
        log.error("wsstorm: the reconnect policy failed; the user gives up", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"[:200]


def policy_decision(policy: Any, fields: dict[str, Any]) -> tuple[float | None, str | None]:
    """The policy's next delay after an outcome, guarded: (delay, None), (None, None) to give up,
    or (None, error text) when the policy raised or gave no finite delay >= 0."""
    try:
        delay = policy.next_delay(Outcome(**fields))
        if delay is None:
            return None, None
        delay = float(delay)
    except Exception as exc:
        return None, _policy_failed(exc)
    if not (0 <= delay < INF):
        return None, _policy_failed(ValueError(f"policy returned delay {delay!r}"))
    return delay, None


class WSFailure(Exception):
    """What Locust shows for a failed connect or a close that is a failure by nature."""


@dataclass
class _Conn:
    """State of one open connection (read, pinged and recorded by its user's greenlet)."""

    c: WSConnection
    opened_mono: float
    last_rx: float
    result: dict[str, Any] | None = None  # close fields once the connection ended
    ping_sent: float | None = None
    pending: dict[int, float] = field(default_factory=dict)


class WebSocketUser(User):
    """A WebSocket client: connect, hold, ping, message; on close wait per policy and reconnect."""

    abstract = False
    host = None

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        s = SESSION
        if s.cfg is None:  # Environment API without Locust's CLI: defaults only
            raise UsageError("wsstorm.load.user needs Locust's command-line options (run with `locust -f locustfile.py`)")
        self.cfg = s.cfg
        self.index = s.users
        self.user_id = s.next_user()
        self.rng = random.Random(derive_seed(self.cfg.seed, self.user_id))
        self.policy = self.cfg.policy.client(seed=derive_seed(self.cfg.seed, self.user_id, "policy"),
                                             process_seed=derive_seed(self.cfg.seed, s.worker))
        self.policy_text = str(self.cfg.policy)
        self.conn_no = 1
        self.live: _Conn | None = None
        self.stopped = False
        self.source: str | None = None

    # -- helpers

    def _rec(self, event: str, **fields: Any) -> None:
        rec = SESSION.recorder or _ensure_recorder(self.environment)
        rec.record(self.user_id, self.conn_no, event, **fields)

    def _report(self, name: str, ms: float, exc: Exception | None = None, length: int = 0) -> None:
        self.environment.events.request.fire(request_type="WS", name=name, response_time=ms,
                                             response_length=length, exception=exc, context={})

    # -- the lifecycle

    def on_start(self) -> None:
        host = self.host or self.environment.host or ""
        self.url = host
        from urllib.parse import urlsplit

        hostname = urlsplit(host).hostname or ""
        if sockets_mod.is_loopback(hostname):
            self.source = sockets_mod.source_address(self.index, sockets_mod.process_slot(),
                                                     always=SESSION.role == "worker")

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
            outcome = self._try_once()
            if outcome is None:  # opened and then closed: the outcome came from _hold
                attempt = 0
                outcome = self._last_outcome
            after = outcome["after"]
            next_delay: float | None = None
            try:
                next_delay, error = policy_decision(self.policy, outcome["policy"])
                if next_delay is None:
                    self._giveup(after, error)
                else:
                    self._rec("wait", delay=next_delay, policy=self.policy_text, after_code=after)
            except Exception as exc:  # the event could not be recorded: give up rather than spin
                next_delay = None
                try:
                    self._giveup(after, _policy_failed(exc))
                except Exception:
                    pass
            finally:  # the conn number moves on after a close whatever happened here
                self._bump_after_close(outcome)
            if next_delay is None:
                while True:
                    gevent.sleep(3600)
            delay = float(next_delay)
            scheduled = time.time() + delay

    def _giveup(self, after: Any, error: str | None) -> None:
        extra = {"policy_error": error} if error else {}
        self._rec("giveup", policy=self.policy_text, after_code=after, retries=self.policy.retries, **extra)

    def _bump_after_close(self, outcome: dict[str, Any]) -> None:
        if outcome.get("closed"):
            self.conn_no += 1

    def _try_once(self) -> dict[str, Any] | None:
        c = WSConnection(self.url, self.cfg.connect_timeout, self.source)
        t0 = time.perf_counter()
        try:
            connect_ms = c.open()
        except gevent.GreenletExit:
            c.abort()
            raise
        except Exception as exc:  # every failure before open is classified, none escapes
            f = classify_exception(exc)
            ms = (time.perf_counter() - t0) * 1000.0
            self._rec("fail", kind=f.kind, status=f.status, retry_after=f.retry_after, detail=f.detail)
            name = f"fail http {f.status}" if f.kind == "http_status" else f"fail {f.kind}"
            self._report(name, ms, WSFailure(name))
            after = f"http_{f.status}" if f.kind == "http_status" else f.kind
            return {"after": after, "closed": False,
                    "policy": {"fail": f.kind, "status": f.status, "retry_after": f.retry_after}}
        now = time.monotonic()
        t_open = time.time()
        live = _Conn(c, now, now)
        # recorded before any yield: a stop landing there closes a connection whose open is on record
        self._rec("open", t=t_open, connect_ms=round(connect_ms, 3))
        self.live = live
        _yield()
        self._report("connect", connect_ms)
        self.policy.opened()
        result = self._hold(live)
        self._last_outcome = result
        return None

    def _on_message(self, live: _Conn, data: bytes) -> None:
        head = data[:24].split(b" ", 1)[0]
        try:
            seq = int(head)
        except ValueError:
            return
        sent = live.pending.pop(seq, None)
        if sent is not None:
            self._report("message", (time.perf_counter() - sent) * 1000.0, length=len(data))

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
            else:  # the reply to our own Close
                live.result["clean"] = True
            return True
        return False

    def _hold(self, live: _Conn) -> dict[str, Any]:
        """Read, ping and message on ``live`` in this one greenlet until it ends; record the close.

        One greenlet per connection: reads block with a timeout that ends at the next ping,
        message or pong deadline, so a held connection costs no timer while nothing is due.
        """
        cfg = self.cfg
        c = live.c
        start = time.monotonic()
        next_ping = start + cfg.ping_interval if cfg.ping_interval > 0 else INF
        msg_gap = 1.0 / cfg.message_rate if cfg.message_rate > 0 else INF
        next_msg = start + self.rng.uniform(0, msg_gap) if msg_gap != INF else INF
        give_up = INF  # after a failed send: how long the read may still explain the end
        seq = 0
        try:
            while True:
                now = time.monotonic()
                deadline = live.ping_sent + cfg.pong_timeout if live.ping_sent is not None else INF
                if now >= give_up:
                    break
                try:
                    if now >= deadline and live.result is None:
                        silence = now - live.last_rx
                        live.result = {"code": 1006, "reason": "", "by": "none", "clean": False,
                                       "how": "ping_timeout"}
                        self._rec("dead", silence_s=round(silence, 3))
                        self._report("dead", silence * 1000.0, WSFailure("dead: no pong"))
                        break
                    if now >= next_ping:
                        if live.ping_sent is None:
                            live.ping_sent = now
                            deadline = now + cfg.pong_timeout
                            c.ping(b"")
                        next_ping = now + cfg.ping_interval
                    if now >= next_msg:
                        seq += 1
                        live.pending[seq] = time.perf_counter()
                        if len(live.pending) > 1000:
                            live.pending.pop(next(iter(live.pending)))
                        c.send_text(_message(seq, cfg.message_size))
                        next_msg = now + msg_gap
                except Exception:
                    # a send failed: reading on sees the same end of TCP and records it (1 s at most)
                    if give_up == INF:
                        give_up = now + 1.0
                    next_ping = next_msg = INF
                wake = min(next_ping, next_msg, deadline, give_up)
                inc = c.read(None if wake == INF else max(0.001, wake - now))
                if inc is not None and inc.kind == "close":
                    _yield()
                if inc is not None and self._on_frame(live, inc):
                    break
        except gevent.GreenletExit:
            raise  # the run is stopping: on_stop closes this connection
        except PeerEOF as exc:
            if live.result is None:
                live.result = {"code": 1006, "reason": "", "by": "none", "clean": False, "how": "eof",
                               "detail": str(exc)[:200]}
        except (OSError, ConnectionError) as exc:
            if live.result is None:
                live.result = {"code": 1006, "reason": "", "by": "none", "clean": False, "how": "reset",
                               "detail": f"{type(exc).__name__}: {exc}"[:200]}
        except Exception as exc:  # a broken frame: we fail the connection, 1009 if too big, else 1002
            if live.result is None:
                code = 1009 if isinstance(exc, MessageTooBig) else 1002
                c.send_close(code)
                live.result = {"code": code, "reason": "", "by": "client", "clean": False,
                               "protocol_error": f"{type(exc).__name__}: {exc}"[:200]}
        c.abort()
        return self._finish(live)

    def _finish(self, live: _Conn) -> dict[str, Any]:
        self.live = None
        return self._record_close(live)

    def _record_close(self, live: _Conn) -> dict[str, Any]:
        """Record the end of ``live`` (event + Locust entry); returns the policy outcome."""
        res = live.result or {"code": 1006, "reason": "", "by": "none", "clean": False, "how": "reset"}
        live.result = res
        uptime = time.monotonic() - live.opened_mono
        fields = {k: v for k, v in res.items() if k != "detail"}
        self._rec("close", **fields, uptime_s=round(uptime, 3))
        code = int(res["code"])
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
        hint = hint_from_reason(res.get("reason") or "") if res.get("by") == "server" else None
        return {"after": code, "closed": True,
                "policy": {"code": code, "retry_after": hint, "uptime_s": uptime}}

    def on_stop(self) -> None:
        # The user greenlet may have been killed anywhere: a connection not yet recorded as
        # closed is closed (by us, with 1000) and recorded here, exactly once.
        live, self.live = self.live, None
        if live is not None:
            if live.result is None:
                live.result = {"code": 1000, "reason": "", "by": "client", "clean": False}
                live.c.send_close(1000)
                self._await_close_reply(live)
            live.c.abort()
            self._record_close(live)
        self._rec("stop")


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


def _close_fields(info: CloseInfo, by: str) -> dict[str, Any]:
    out: dict[str, Any] = {"code": info.code, "reason": info.reason, "by": by, "clean": info.error is None}
    if info.error is not None:
        out.update(raw_code=info.raw_code, raw_reason_hex=info.raw_reason_hex, protocol_error=info.error)
    return out


def _message(seq: int, size: int) -> str:
    head = f"{seq} "
    return head + "x" * max(0, size - len(head))
