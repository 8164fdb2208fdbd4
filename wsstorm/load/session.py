"""The run as one Locust process sees it: the Session state and Locust's run-level hooks.

Owns the init / test_start / test_stopping / test_stop / quit hooks, the embedded target's
start-up and stop, the event recorder of this process (workers ship each flushed batch to the
master, which writes every shard), the master/worker messages, the fault schedule's start, and
``manifest.json``. File names come from :mod:`wsstorm.runfolder.names`.
"""

from __future__ import annotations

import gevent
from locust import User, events
from locust.runners import MasterRunner, WorkerRunner
from locust.user.users import LOCUST_STATE_RUNNING as _RUNNING
from locust.user.users import LOCUST_STATE_STOPPING as _STOPPING

import atexit
import contextlib
import gc
import logging
import os
import random
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.load import sockets as sockets_mod
from wsstorm.load import webui
from wsstorm.load.connection import tls_context
from wsstorm.load.options import (
    UserConfig,
    check_host,
    new_run_id,
    pin_cpus,
    redacted_options,
    resolve_config,
    scenario_into_options,
)
from wsstorm.load.recorder import Recorder, ShardWriter
from wsstorm.runfolder import jsonl, names
from wsstorm.runfolder import manifest as manifest_mod

log = logging.getLogger("wsstorm")

MSG_EVENTS = "wsstorm_events"  # worker -> master: one flushed batch {worker, seq, data}
MSG_HELLO = "wsstorm_hello"  # worker -> master: {worker}
MSG_CPU = "wsstorm_cpu"  # worker -> master: {worker, t, cpu}
MSG_STOP = "wsstorm_stop"  # master -> worker: stop users and flush everything
MSG_DONE = "wsstorm_done"  # worker -> master: {worker, seq}: last batch sent


@dataclass
class Session:
    """What one Locust process knows about the run."""

    role: str = "local"  # local, master, worker
    worker: str = "local"
    run: str = ""
    run_dir: Path = Path("reports")
    cfg: UserConfig | None = None
    tls: ssl.SSLContext | None = None  # one context per process for every wss:// connection
    cpus: tuple[int, ...] | None = None  # the CPUs --cpus pinned this process to
    worker_cpus: dict[str, list[int] | None] = field(default_factory=dict)  # master: each worker's pinning
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

    worker_index: int = 0  # a worker's index among the run's workers (Locust's), 0 otherwise
    worker_count: int = 1

    def next_user(self) -> str:
        """A new user id, ``<worker>/<n>``, unique within the run."""
        self.users += 1
        return f"{self.worker}/{self.users}"

    def user_number(self) -> int:
        """The last user's number in the whole run, from 1 (workers interleave: w0 1, w1 2, ...)."""
        return (self.users - 1) * self.worker_count + self.worker_index + 1


SESSION = Session()


def client_tls(cfg: UserConfig, host: str = "wss:") -> ssl.SSLContext | None:
    """The ssl context for wss:// under ``cfg`` (built once per process); UsageError for files it cannot load.

    None for a ws:// ``host`` without TLS options: a connection redirected to wss:// then takes the
    same default context, made at its first use (loading the system CA store costs ~40 ms of CPU)."""
    t = cfg.tls
    if not (t.ca_file or t.insecure or t.client_cert) and host.startswith("ws:"):
        return None  # tls_context would answer with _default_tls(), the connection's own fallback
    try:
        ctx = tls_context(t.ca_file, t.insecure, t.client_cert, t.client_key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"cannot load the TLS files (--ca-file/--client-cert/--client-key): {exc}") from None
    if t.insecure:
        log.warning("wsstorm: --insecure: wss:// certificates are NOT checked")
    return ctx


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
        s.cpus = pin_cpus(getattr(opts, "cpus", "") or "")
        check_host(environment.host)
        # workers get the master's resolved options with each spawn message; only it reads the scenario
        s.scenario = _load_scenario(opts.scenario) if opts.scenario and not is_worker else None
        if is_worker:
            s.cfg = resolve_config(opts, s.scenario)
        else:
            if opts.seed is None:
                opts.seed = random.SystemRandom().randrange(2**31)
            scenario_into_options(opts, s.scenario)
            s.cfg = resolve_config(opts, s.scenario)
    except UsageError as exc:
        _fail_usage(exc)
    sockets_mod.raise_nofile_limit()
    tune_gc()
    if isinstance(runner, WorkerRunner):
        s.role = "worker"
        s.worker = names.safe_id(f"{socket.gethostname()}-{os.getpid()}")
        runner.register_message(MSG_STOP, _worker_on_stop)
    else:
        s.role = "master" if isinstance(runner, MasterRunner) else "local"
        s.worker = "local"
        # resolved values go back into the options: workers receive them with the spawn message
        cfg = s.cfg
        assert cfg is not None  # resolved above (or the process exited)
        opts.message_rate, opts.ping_interval = cfg.message_rate, cfg.ping_interval
        opts.pong_timeout = cfg.pong_timeout
        opts.run_id = opts.run_id or new_run_id()
        s.run = opts.run_id
        s.run_dir = Path(opts.run_dir or os.path.join("reports", s.run))
        opts.run_dir = str(s.run_dir)
        try:
            if not environment.host:
                _start_embedded_target(environment, opts, s)
                cfg = s.cfg = resolve_config(opts, s.scenario)  # the TLS target's CA is now in the options
            s.tls = client_tls(cfg, environment.host or "")
        except UsageError as exc:
            _fail_usage(exc)
        opts.connect_timeout = cfg.connect_timeout
        if isinstance(runner, MasterRunner):
            runner.register_message(MSG_EVENTS, _master_on_events)
            runner.register_message(MSG_HELLO, _master_on_hello)
            runner.register_message(MSG_CPU, _master_on_cpu)
            runner.register_message(MSG_DONE, _master_on_done)
        # The live tab reads the run folder this process writes (every worker's shard on a master).
        webui.install(environment, s.run_dir)


# The cyclic GC's thresholds in a Locust process running wsstorm users (issue 16). A held
# connection's objects live long and almost never form cycles (a run of 10,000 connections frees
# ~1,800 objects by collection in all), yet CPython's default (700, 10, 10) rescans them as they
# pile up: ~1,000 young and 7 full collections over the whole heap, ~1.2 of ~15.5 CPU-s measured.
# Older generations are collected every million allocations, and full ones hardly ever (CPython's
# 25% rule still applies). Young collections stay small: one pauses every greenlet for as long as
# it takes, ~1 us per young object here, and a 50,000-object one (45-59 ms) landed in the middle
# of a 5,000-client reconnect storm and made its scheduling-error p99; at 2,000 they take <= 15 ms,
# for ~0.1 CPU-s more over a 10,000-connection run.
GC_THRESHOLDS = (2_000, 500, 100)
_GC_DEFAULT = (700, 10, 10)


def tune_gc() -> None:
    """Set GC_THRESHOLDS, unless the process's thresholds were already changed from CPython's default."""
    if gc.get_threshold() == _GC_DEFAULT:
        gc.set_threshold(*GC_THRESHOLDS)


# ---------------------------------------------------------------- the embedded target

_LEGACY_TARGET_KEYS = ("capacity", "handshake_rate", "handshake_cost_ms", "overload", "workers")
_SECRET_TARGET_KEYS = ("auth_token", "admin_token")  # never in the manifest


def target_options(opts: Any, scenario: Any) -> dict[str, Any]:
    """The embedded target's `wsstorm serve` options: command line > scenario [target] (unset ones left out)."""
    t = getattr(scenario, "target", None)
    if t is None:
        out: dict[str, Any] = {}
    elif hasattr(t, "serve_options"):  # the scenario knows its target's options (costs, tls, cpus ...)
        out = dict(t.serve_options())
    else:
        out = {k: getattr(t, k) for k in _LEGACY_TARGET_KEYS if getattr(t, k, None) is not None}
        if getattr(t, "proxy", False):
            out["proxy_port"] = 0
    cli = {
        "capacity": opts.target_capacity,
        "handshake_rate": opts.target_handshake_rate,
        "handshake_cost_ms": opts.target_handshake_cost_ms,
        "overload": opts.target_overload or None,
        "port": opts.target_port,
        "workers": opts.target_workers,
        "proxy_port": 0 if opts.target_proxy else None,
        "tls": True if getattr(opts, "target_tls", False) else None,
    }
    out.update({k: v for k, v in cli.items() if v is not None})
    return out


def target_info(options: dict[str, Any]) -> dict[str, Any]:
    """The embedded target's options as the manifest records them (``proxy`` bool, no secrets)."""
    info = {k: v for k, v in options.items() if k not in _SECRET_TARGET_KEYS and k != "proxy_port"}
    if "proxy_port" in options:
        info["proxy"] = True
    return info


def _start_embedded_target(environment: Any, opts: Any, s: Session) -> None:
    from wsstorm.target import control

    options = target_options(opts, s.scenario)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    argv = dict(options)
    argv["metrics_out"] = str(s.run_dir / names.SERVER)
    try:
        s.target = control.start_target(**argv)
    except UsageError:
        raise
    except Exception as exc:  # one line, not a traceback per process
        raise UsageError(f"cannot start the embedded target: {exc}") from exc
    # Locust may fail after init without firing quit: stop the target at exit all the same.
    atexit.register(s.target.stop)
    s.target_info = target_info(options)
    environment.host = s.target.url
    opts.host = s.target.url
    ca_file = (getattr(s.target, "ready", None) or {}).get("ca_file")
    if ca_file and not getattr(opts, "ca_file", "") and not getattr(opts, "insecure", False):
        # trust the CA the TLS target made; workers get the path with the master's options
        opts.ca_file = str(ca_file)
    if options.get("resume_window"):  # the target resumes sessions: each user sends a stable identity
        from wsstorm.target.sessions import SESSION_HEADER

        if not any(str(h).lower().startswith(SESSION_HEADER.lower() + ":") for h in opts.header or []):
            opts.header = [*(opts.header or []), f"{SESSION_HEADER}: {{user}}"]
    log.info("wsstorm: embedded target at %s", s.target.url)


def await_last_tick(path: Path, since: float, limit: float = 2.5) -> None:
    """Wait (bounded) for the target's next per-second tick, so server.jsonl covers the whole run."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not path.exists():
            return
        for rec in reversed(jsonl.last_records(path)):
            try:
                if rec.get("type") == "tick" and float(rec.get("t", 0)) >= since:
                    return
            except (TypeError, ValueError):
                continue
        gevent.sleep(0.1)


# ---------------------------------------------------------------- recorder plumbing


def ensure_recorder(environment: Any) -> Recorder:
    """This process's recorder, made on first use (a worker's ships its batches to the master)."""
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
        runner.send_message(MSG_HELLO, {"worker": s.worker, "cpus": list(s.cpus) if s.cpus else None})
    else:
        s.shard = ShardWriter(s.run_dir / names.shard_name(s.worker))
        s.recorder = Recorder(s.run, s.worker, s.shard.write)
    return s.recorder


def _master_shard(worker: str) -> ShardWriter:
    s = SESSION
    w = names.safe_id(worker)
    if w not in s.shards:
        s.shards[w] = ShardWriter(s.run_dir / names.shard_name(w))
        s.workers.add(w)
    return s.shards[w]


def _master_on_events(environment: Any, msg: Any, **_kw: Any) -> None:
    s = SESSION
    data = msg.data or {}
    worker, seq = names.safe_id(str(data.get("worker", ""))), int(data.get("seq", 0))
    if seq <= s.last_seq.get(worker, 0):  # a resent batch: never write an event twice
        return
    s.last_seq[worker] = seq
    batch = str(data.get("data", "")).encode("utf-8")
    if batch and not batch.endswith(b"\n"):
        batch += b"\n"
    _master_shard(worker).write(batch)


def _master_on_hello(environment: Any, msg: Any, **_kw: Any) -> None:
    data = msg.data or {}
    worker = str(data.get("worker", ""))
    _master_shard(worker)
    cpus = data.get("cpus")
    SESSION.worker_cpus[names.safe_id(worker)] = [int(c) for c in cpus] if isinstance(cpus, list) else None


def _master_on_cpu(environment: Any, msg: Any, **_kw: Any) -> None:
    d = msg.data or {}
    SESSION.cpu_warnings.append(
        {"t": d.get("t"), "worker": names.safe_id(str(d.get("worker", ""))), "cpu": d.get("cpu")}
    )


def _master_on_done(environment: Any, msg: Any, **_kw: Any) -> None:
    SESSION.done.add(names.safe_id(str((msg.data or {}).get("worker", ""))))


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


# ---------------------------------------------------------------- run start and stop


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    s = SESSION
    if environment.parsed_options is None:
        return
    if s.role == "worker":
        try:
            s.cfg = resolve_config(environment.parsed_options)
            s.tls = client_tls(s.cfg, environment.host or "")
            s.worker_index = int(getattr(environment.runner, "worker_index", 0) or 0)
            s.worker_count = max(
                1, int(getattr(environment.parsed_options, "expect_workers", 1) or 1), s.worker_index + 1
            )
        except UsageError as exc:
            # running on with the previous settings would make a run that is not what was asked
            log.error("wsstorm: %s", exc)
            environment.process_exit_code = 2
            environment.runner.quit()
            return
    if s.role != "master":
        ensure_recorder(environment).start()
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


def mark_stopping(runner: Any) -> int:
    """Set each running wsstorm user's state to stopping, as Locust's stop_users would; the count.

    With a stop timeout Locust spawns a greenlet per user to call ``user.stop(force=False)``,
    which for a running user only sets this state, and it spawns none for a user already in it:
    done here in one loop, the 10,000 users of a run no longer make 10,000 greenlets at the stop
    (~17 MiB of peak RSS, issue 16). Users of other classes, or whose stop() is their own, are
    left to Locust.
    """
    n = 0
    for g in list(getattr(runner, "user_greenlets", ())):
        user: Any = g.args[0] if g.args else None
        if getattr(user, "wsstorm_user", False) and type(user).stop is User.stop and user._state == _RUNNING:
            user._state = _STOPPING
            n += 1
    return n


@events.test_stopping.add_listener
def _on_test_stopping(environment: Any, **_kw: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        if environment.stop_timeout:  # without one Locust kills each user at once: nothing to save
            mark_stopping(runner)
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
        await_last_tick(s.run_dir / names.SERVER, time.time())
        try:
            s.target.stop()
        except Exception:
            log.exception("wsstorm: stopping the embedded target")


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
    options = redacted_options(opts)
    # the pinning each process got (--cpus), by process: "local" or "master", and each worker
    pinned: dict[str, Any] = {("master" if s.role == "master" else "local"): list(s.cpus) if s.cpus else None}
    pinned.update(s.worker_cpus)
    options["cpus_pinned"] = pinned
    scenario = None
    if s.scenario is not None:
        scenario = s.scenario.to_dict()
        with contextlib.suppress(OSError, TypeError):
            scenario["content"] = Path(s.scenario.source).read_text(encoding="utf-8")
    cfg = s.cfg
    data = manifest_mod.build_manifest(
        run=s.run,
        started=s.started or time.time(),
        ended=ended,
        host=environment.host,
        embedded_target=s.target is not None,
        policy=str(cfg.policy) if cfg else "",
        scenario=scenario,
        seed=cfg.seed if cfg else 0,
        users=getattr(opts, "num_users", None),
        spawn_rate=getattr(opts, "spawn_rate", None),
        duration_s=getattr(opts, "run_time", None),
        options=options,
        workers=workers,
        cpu_warnings=s.cpu_warnings,
        target=s.target_info,
    )
    try:
        manifest_mod.write_manifest(s.run_dir, data)
    except OSError as exc:
        log.error("wsstorm: cannot write manifest: %s", exc)
