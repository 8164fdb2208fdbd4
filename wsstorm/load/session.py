"""The run as one Locust process sees it: the Session state and Locust's run-level hooks.

Owns the init / test_start / test_stopping / test_stop / quit hooks, the embedded target's
start-up and stop, the event recorder of this process (workers ship each flushed batch to the
master, which writes every shard), the master/worker messages, the fault schedule's start, and
``manifest.json``. File names come from :mod:`wsstorm.runfolder.names`.
"""

from __future__ import annotations

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

import atexit
import logging
import os
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.load import sockets as sockets_mod
from wsstorm.load.options import UserConfig, check_host, new_run_id, redacted_options, resolve_config
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
        """A new user id, ``<worker>/<n>``, unique within the run."""
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
        s.worker = names.safe_id(f"{socket.gethostname()}-{os.getpid()}")
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


# ---------------------------------------------------------------- the embedded target

def target_options(opts: Any, scenario: Any) -> dict[str, Any]:
    """The embedded target's settings: command line > scenario [target] (unset ones left out)."""
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

    options = target_options(opts, s.scenario)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    argv = {k: v for k, v in options.items() if k != "proxy"}
    if options.get("proxy"):
        argv["proxy_port"] = 0
    argv["metrics_out"] = str(s.run_dir / names.SERVER)
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
        runner.send_message(MSG_HELLO, {"worker": s.worker})
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
    _master_shard(str((msg.data or {}).get("worker", "")))


def _master_on_cpu(environment: Any, msg: Any, **_kw: Any) -> None:
    d = msg.data or {}
    SESSION.cpu_warnings.append({"t": d.get("t"), "worker": names.safe_id(str(d.get("worker", ""))), "cpu": d.get("cpu")})


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
