"""The fault scheduler: fires a scenario's faults on time and writes each to ``faults.jsonl``.

Uses only stdlib threading/time/urllib/subprocess, so it runs both in the
runner and inside Locust (under gevent's monkey patching). Faults on the embedded target go
through its one admin client (wsstorm.target.control.AdminClient); ``http`` faults call the
user's own server and are plain HTTP requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.run.scenario import TARGET_ACTIONS, Fault, Scenario
from wsstorm.runfolder import names
from wsstorm.target.control import AdminClient, AdminError

FAULTS_FILE = names.FAULTS
_DETAIL_MAX = 300


@dataclass(frozen=True)
class Firing:
    """One thing to do at one offset: a fault's firing, or the automatic heal after it."""

    offset: float  # seconds after t0
    action: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    index: int = 0  # which scenario fault it comes from
    auto: bool = False  # the heal/undo a fault's ``duration`` asked for


def plan(faults: tuple[Fault, ...] | list[Fault]) -> list[Firing]:
    """Every firing of a fault schedule, in time order (repeat/every expanded, heals added)."""
    out: list[Firing] = []
    for i, f in enumerate(faults):
        params = dict(f.params)
        # a lame duck's duration is its closing window (the server's own parameter), not a heal time
        duration = params.pop("duration", None) if f.action != "lame-duck" else None
        for t in f.times():
            out.append(Firing(t, f.action, params, i))
            if duration:
                if f.action == "partition":
                    out.append(Firing(t + duration, "heal", {}, i, auto=True))
                elif f.action == "latency":
                    out.append(Firing(t + duration, "latency", {"ms": 0}, i, auto=True))
    out.sort(key=lambda x: (x.offset, x.auto is False))
    return out


def admin_endpoint(control: Any) -> tuple[str, str] | None:
    """(admin URL, token) from a TargetProcess/ProxyProcess, an AdminClient, or an ``(url, token)`` tuple."""
    if control is None:
        return None
    if isinstance(control, (tuple, list)) and len(control) == 2:
        return str(control[0]).rstrip("/"), str(control[1])
    # TargetProcess: .admin_url (str) and .admin (an AdminClient); AdminClient: .url and .token
    for candidate in (
        getattr(control, "admin_url", None),
        getattr(control, "admin", None),
        getattr(control, "url", None),
    ):
        if candidate is not None and not isinstance(candidate, str):
            candidate = getattr(candidate, "url", None)
        if isinstance(candidate, str) and candidate.startswith("http"):
            token = getattr(control, "token", None)
            if token is None:
                token = getattr(getattr(control, "admin", None), "token", None)
            if token is not None:
                return candidate.rstrip("/"), str(token)
    raise TypeError(f"cannot find an admin URL and token on {control!r}")


def call_target(client: AdminClient, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """Apply one scenario target action through the admin client; returns the server's JSON answer."""
    if action == "restart":
        return client.restart(
            params.get("mode", "all"),
            params.get("down", 0.0),
            params.get("batch"),
            params.get("interval"),
            params.get("proc"),
        )
    if action == "lame-duck":
        return client.lame_duck(params.get("grace"), params.get("duration"), params.get("code"), params.get("proc"))
    if action == "crash":
        return client.crash(params.get("down", 0))
    if action == "latency":
        return client.latency(params.get("ms", 0))
    if action == "capacity":
        extra = {k: params[k] for k in ("attempt_cost_ms", "session_cost_ms") if k in params}
        return client.set_capacity(params.get("capacity"), params.get("handshake_rate"), **extra)
    if action == "overload":
        return client.set_overload(params["mode"])
    if action in ("partition", "heal", "reset"):
        return getattr(client, action)()
    raise ValueError(f"not a target action: {action!r}")


def _clip(text: str) -> str:
    text = text.strip().replace("\n", " | ")
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def _http(url: str, method: str, headers: dict[str, str], body: bytes | None, timeout: float) -> tuple[bool, str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read(_DETAIL_MAX).decode("utf-8", "replace")
            return 200 <= resp.status < 400, _clip(f"HTTP {resp.status} {text}")
    except urllib.error.HTTPError as exc:
        text = exc.read(_DETAIL_MAX).decode("utf-8", "replace") if exc.fp else ""
        return False, _clip(f"HTTP {exc.code} {text}")
    except (OSError, ValueError) as exc:
        return False, _clip(f"{type(exc).__name__}: {exc}")


class Schedule:
    """A running fault schedule: a thread that fires each Firing at t0 + offset."""

    def __init__(
        self,
        firings: list[Firing],
        admin: tuple[str, str] | None,
        run_dir: Path,
        t0: float,
        on_fire: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.firings = firings
        self.admin = admin
        self.run_dir = Path(run_dir)
        self.t0 = t0
        self.on_fire = on_fire
        self.records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._shells: set[subprocess.Popen] = set()
        self._workers: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, name="wsstorm-faults", daemon=True)

    def start(self) -> Schedule:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        for firing in self.firings:
            due = self.t0 + firing.offset
            while not self._stop.is_set():
                left = due - time.time()
                if left <= 0:
                    break
                # look at the stop flag at least every 0.5 s; the last stretch is one wait to the due time
                self._stop.wait(min(left, 0.5) if left > 0.02 else left)
            if self._stop.is_set():
                return
            # each firing on its own thread: a slow shell command must not delay the next fault
            worker = threading.Thread(target=self._fire, args=(firing, due), daemon=True)
            worker.start()
            self._workers.append(worker)

    def _fire(self, firing: Firing, due: float) -> None:
        t = time.time()
        try:
            ok, detail = self._do(firing)
        except Exception as exc:  # a fault that fails is recorded, never fatal to the run
            ok, detail = False, _clip(f"{type(exc).__name__}: {exc}")
        params = {k: v for k, v in firing.params.items() if k != "headers"}
        if firing.auto:
            params["auto"] = True
        record = {
            "v": 1,
            "t": t,
            "fault": firing.action,
            "params": params,
            "ok": ok,
            "detail": detail,
            "at": firing.offset,
            "scheduled_t": due,
            "late_ms": round((t - due) * 1000, 1),
            "index": firing.index,
        }
        with self._lock:
            self.records.append(record)
            with open(self.run_dir / FAULTS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if self.on_fire is not None:
            with contextlib.suppress(Exception):
                self.on_fire(record)

    def _do(self, firing: Firing) -> tuple[bool, str]:
        p = firing.params
        if firing.action == "http":
            body = p["body"].encode("utf-8") if "body" in p else None
            return _http(
                p["url"], p.get("method", "POST"), dict(p.get("headers", {})), body, float(p.get("timeout", 10.0))
            )
        if firing.action == "shell":
            return self._shell(p["command"], float(p.get("timeout", 30.0)), firing)
        if firing.action in TARGET_ACTIONS:
            if self.admin is None:
                return False, f"{firing.action} needs the embedded target's admin API; none was given"
            try:
                answer = call_target(AdminClient(*self.admin), firing.action, p)
            except AdminError as exc:
                return False, _clip(f"HTTP {exc.status} {json.dumps(exc.payload)}")
            except (OSError, ValueError) as exc:
                return False, _clip(f"{type(exc).__name__}: {exc}")
            return True, _clip(f"HTTP 200 {json.dumps(answer)}")
        return False, f"unknown action {firing.action!r}"

    def _shell(self, command: str, timeout: float, firing: Firing) -> tuple[bool, str]:
        env = dict(os.environ, WSSTORM_RUN_DIR=str(self.run_dir), WSSTORM_FAULT_AT=f"{firing.offset:g}")
        # own process group, so a timeout or stop() kills the whole command tree
        proc = subprocess.Popen(
            command,
            shell=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        with self._lock:
            self._shells.add(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
            text = out.decode("utf-8", "replace")
            return proc.returncode == 0, _clip(f"exit {proc.returncode}: {text}")
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return False, f"timed out after {timeout:g} s (killed)"
        finally:
            with self._lock:
                self._shells.discard(proc)

    @property
    def done(self) -> bool:
        """True once every firing has been fired and finished."""
        return not self._thread.is_alive() and not any(w.is_alive() for w in self._workers)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every firing is done; True if so."""
        end = None if timeout is None else time.time() + timeout
        self._thread.join(timeout)
        for w in list(self._workers):
            w.join(None if end is None else max(0.0, end - time.time()))
        return self.done

    def stop(self, timeout: float = 5.0) -> None:
        """Fire nothing more, kill running shell commands, wait briefly for calls in flight."""
        self._stop.set()
        with self._lock:
            shells = list(self._shells)
        for proc in shells:
            _kill_group(proc)
        self.wait(timeout)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def start_schedule(
    scenario: Scenario,
    control: Any,
    run_dir: str | os.PathLike,
    t0: float,
    on_fire: Callable[[dict[str, Any]], None] | None = None,
) -> Schedule:
    """Start firing ``scenario``'s faults at ``t0`` + their offsets (t0: epoch seconds, the run's start).

    ``control``: a TargetProcess (``.admin``/``.token``), an AdminClient (``.url``/``.token``),
    an ``(admin_url, token)`` tuple, or None when the scenario has only http/shell faults.
    Each firing appends one line to ``run_dir/faults.jsonl``. Returns the running Schedule (``.stop()``).
    """
    admin = admin_endpoint(control)
    if admin is None and scenario.needs_target():
        acts = sorted({f.action for f in scenario.faults if f.action in TARGET_ACTIONS})
        raise UsageError(f"scenario {scenario.name!r} uses {', '.join(acts)} faults, which need the target's admin API")
    return Schedule(plan(scenario.faults), admin, Path(run_dir), t0, on_fire).start()
