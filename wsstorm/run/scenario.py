"""Scenario files: load and validate the TOML that says who connects, to what, and what breaks when.

Also the ``wsstorm scenarios`` command (list the shipped ones, show one).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.runfolder.redact import redact_value
from wsstorm.target.settings import (
    LAME_DUCK_CODES,
    LAME_DUCK_GRACE_S,
    LAME_DUCK_WINDOW_S,
    OVERLOAD_MODES,
    cpus_text,
    parse_cpus,
    sendable_close_code,
)

SHIPPED_DIR = Path(__file__).resolve().parent / "scenarios"
RESTART_MODES = ("all", "drain")
# The actions that need the embedded target (its admin API); http/shell work against any server.
TARGET_ACTIONS = ("restart", "crash", "partition", "heal", "reset", "latency", "capacity", "overload", "lame-duck")
PROXY_ACTIONS = ("partition", "heal", "reset", "latency")
ACTIONS = (*TARGET_ACTIONS, "http", "shell")

_COMMON_FAULT_KEYS = ("at", "action", "repeat", "every")
# action -> the keys it takes besides the common ones
FAULT_KEYS: dict[str, tuple[str, ...]] = {
    "restart": ("mode", "down", "batch", "interval", "proc"),
    "crash": ("down",),
    "partition": ("duration",),
    "heal": (),
    "reset": (),
    "latency": ("ms", "duration"),
    "capacity": ("capacity", "handshake_rate", "attempt_cost_ms", "session_cost_ms"),
    "overload": ("mode",),
    "lame-duck": ("grace", "duration", "code", "proc"),
    "http": ("url", "method", "headers", "body", "timeout"),
    "shell": ("command", "timeout"),
}
_TOP_KEYS = ("name", "description", "duration", "users", "spawn_rate", "target", "client", "faults")
_TARGET_KEYS = (
    "capacity",
    "handshake_rate",
    "handshake_cost_ms",
    "overload",
    "workers",
    "proxy",
    "tls",
    "attempt_cost_ms",
    "session_cost_ms",
    "store_concurrency",
    "store_ms",
    "handshake_timeout",
    "cpus",
    "session_max_s",
    "resume_window",
    "resume_cost_ms",
    "session_start_rate",
    "session_refuse_code",
)
# How clients connect to a server of yours (the load side's options of the same names; lists are repeatable).
_CLIENT_LISTS = ("headers", "query", "subprotocols", "init_payload")
_CLIENT_TEXTS = (
    "ca_file",
    "client_cert",
    "client_key",
    "server_name",
    "compression",
    "protocol",
    "ready_send",
    "ready_match",
    "subscribe",
)
_CLIENT_KEYS = (
    "message_rate",
    "ping_interval",
    "pong_timeout",
    "connect_timeout",
    "insecure",
    "ready_timeout",
    *_CLIENT_LISTS,
    *_CLIENT_TEXTS,
)


@dataclass(frozen=True)
class Target:
    """The embedded target's shape (ignored when running against ``--host``).

    Costs are milliseconds of real CPU work per attempt: `attempt_cost_ms` before the admission
    decision (every attempt), `session_cost_ms` + `handshake_cost_ms` after it (admitted ones);
    `tls` adds the TLS handshake's own CPU to every attempt. `store_concurrency` > 0 starts the
    dependency store (each handshake waits for one of its slots, then `store_ms` of its work).
    `handshake_rate` is the optional token bucket (0: none).
    """

    capacity: int = 1000
    handshake_rate: float = 0.0
    handshake_cost_ms: float = 2.0
    overload: str = "close"
    workers: int = 1
    proxy: bool = False
    tls: bool = False
    attempt_cost_ms: float = 0.0
    session_cost_ms: float = 0.0
    store_concurrency: int = 0
    store_ms: float = 0.0
    handshake_timeout: float = 10.0
    cpus: str | None = None  # canonical CPU list, e.g. "1" or "0-1"
    session_max_s: float = 0.0  # the server ends each held connection after U(0.5,1.5) x this (0: never)
    # Session start versus resume (Discord's gateway): a client reconnecting within resume_window s of its
    # last close resumes (resume_cost_ms); others start a session (session_cost_ms), at most
    # session_start_rate per s (0: no limit), the rest closed with session_refuse_code after the upgrade.
    resume_window: float = 0.0
    resume_cost_ms: float = 0.0
    session_start_rate: float = 0.0
    session_refuse_code: int = 1013

    def serve_options(self) -> dict[str, Any]:
        """The `wsstorm serve` options for this shape (control.start_target keywords); defaults left out."""
        out: dict[str, Any] = {
            "capacity": self.capacity,
            "handshake_rate": self.handshake_rate,
            "handshake_cost_ms": self.handshake_cost_ms,
            "overload": self.overload,
            "workers": self.workers,
            "handshake_timeout": self.handshake_timeout,
        }
        if self.proxy:
            out["proxy_port"] = 0
        if self.tls:
            out["tls"] = True
        for key in (
            "attempt_cost_ms",
            "session_cost_ms",
            "store_ms",
            "session_max_s",
            "resume_window",
            "resume_cost_ms",
            "session_start_rate",
        ):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.session_refuse_code != 1013:
            out["session_refuse_code"] = self.session_refuse_code
        if self.store_concurrency:
            out["store_concurrency"] = self.store_concurrency
        if self.cpus:
            out["cpus"] = self.cpus
        return out


@dataclass(frozen=True)
class Client:
    """Defaults for the Locust user; command-line options win."""

    message_rate: float | None = None
    ping_interval: float | None = None
    pong_timeout: float | None = None
    connect_timeout: float | None = None  # s for TCP + TLS + handshake; the client then gives up
    # Connecting to a server of yours: header/query/payload values are templated per connection
    # ({user} {n} {conn} {run} {env:NAME} {file:PATH}); keep tokens in {env:} or {file:}.
    headers: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    subprotocols: tuple[str, ...] = ()
    init_payload: tuple[str, ...] = ()
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    server_name: str | None = None
    compression: str | None = None
    insecure: bool = False
    protocol: str | None = None
    ready_send: str | None = None
    ready_match: str | None = None
    ready_timeout: float | None = None
    subscribe: str | None = None


@dataclass(frozen=True)
class Fault:
    """One scheduled fault; ``params`` holds the action's own keys (mode, down, url ...)."""

    at: float
    action: str
    params: tuple[tuple[str, Any], ...] = ()
    repeat: int = 1
    every: float = 0.0

    def param(self, key: str, default: Any = None) -> Any:
        """The value of one action key, or ``default``."""
        return dict(self.params).get(key, default)

    def times(self) -> list[float]:
        """Offsets (s after the run starts) at which this fault fires."""
        return [self.at + k * self.every for k in range(self.repeat)]

    def span(self) -> float:
        """Offset of the last thing this fault does (its last firing, plus its heal; a lame duck: its grace
        and closing window, after which the target serves again)."""
        extra = float(self.param("duration", 0) or 0)
        if self.action == "lame-duck":
            extra += float(self.param("grace", 0) or 0)
        return self.times()[-1] + extra

    def to_dict(self) -> dict[str, Any]:
        """The fault as in the TOML file."""
        out: dict[str, Any] = {"at": self.at, "action": self.action}
        out.update(dict(self.params))
        if self.repeat != 1:
            out["repeat"], out["every"] = self.repeat, self.every
        return out


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: users, duration, the target's shape, the client defaults and the fault schedule."""

    name: str
    description: str
    duration: float
    users: int
    spawn_rate: float
    target: Target = field(default_factory=Target)
    client: Client = field(default_factory=Client)
    faults: tuple[Fault, ...] = ()
    source: str = ""  # the file it came from

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the manifest and ``--json`` output."""
        return {
            "name": self.name,
            "description": self.description,
            "duration": self.duration,
            "users": self.users,
            "spawn_rate": self.spawn_rate,
            "target": {k: v for k, v in dataclasses.asdict(self.target).items() if v is not None},
            "client": _client_dict(self.client),
            "faults": [f.to_dict() for f in self.faults],
            "source": self.source,
        }

    def needs_target(self) -> bool:
        """True if a fault needs the embedded target's admin API."""
        return any(f.action in TARGET_ACTIONS for f in self.faults)

    def needs_proxy(self) -> bool:
        """True if a fault needs the fault proxy in front of the target."""
        return any(f.action in PROXY_ACTIONS for f in self.faults)


# [client] key -> the option whose redaction rule applies (runfolder.redact): values may be secrets.
_REDACT_AS = {"headers": "header", "query": "query", "init_payload": "init_payload", "ready_send": "ready_send"}


def _client_dict(client: Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(client).items():
        if value is None or value == () or (value is False and key == "insecure"):
            continue
        if key in _REDACT_AS:
            value = (
                [redact_value(_REDACT_AS[key], v) for v in value]
                if isinstance(value, tuple)
                else (redact_value(_REDACT_AS[key], value))
            )
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def shipped() -> list[str]:
    """Names of the scenarios shipped with wsstorm, sorted."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """The file for a shipped scenario name or a path to a .toml file."""
    text = str(name_or_path).strip()
    if not text:
        raise UsageError("empty scenario name")
    path = Path(text).expanduser()
    looks_like_path = text.endswith(".toml") or "/" in text or "\\" in text
    if looks_like_path:
        if not path.is_file():
            raise UsageError(f"scenario file not found: {text}")
        return path
    candidate = SHIPPED_DIR / f"{text}.toml"
    if candidate.is_file():
        return candidate
    raise UsageError(f"unknown scenario {text!r}; shipped: {', '.join(shipped())}; or give a path to a .toml file")


def load(name_or_path: str) -> Scenario:
    """Load and validate a scenario by shipped name or path; UsageError (one line) on any problem."""
    path = resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    return parse(text, source=str(path), default_name=path.stem)


def parse(text: str, source: str = "<scenario>", default_name: str = "scenario") -> Scenario:
    """Parse and validate scenario TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: malformed TOML: {exc}") from None
    return from_dict(data, source=source, default_name=default_name)


class _Checker:
    """Typed field access that names the file and field in every error."""

    def __init__(self, source: str, data: dict[str, Any], where: str, allowed: tuple[str, ...]):
        self.source, self.data, self.where = source, data, where
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise self.error(
                f"unknown key {unknown[0]!r}"
                + (f" in {where}" if where else "")
                + f" (allowed: {', '.join(allowed) or 'none'})"
            )

    def error(self, msg: str) -> UsageError:
        return UsageError(f"{self.source}: {msg}")

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def number(
        self, key: str, default: Any, *, minimum: float = 0.0, strict: bool = False, integer: bool = False
    ) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        kind = "an integer" if integer else "a number"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            raise self.error(f"{self._name(key)} must be {kind}, got {value!r}")
        if value < minimum or (strict and value == minimum):
            rel = ">" if strict else ">="
            raise self.error(f"{self._name(key)} must be {rel} {minimum:g}, got {value!r}")
        return int(value) if integer else float(value)

    def string(self, key: str, default: Any, choices: tuple[str, ...] | None = None) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(f"{self._name(key)} must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(f"{self._name(key)} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.error(f"{self._name(key)} must be true or false, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        if key not in self.data:
            return ()
        value = self.data[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{self._name(key)} must be a string or a list of strings, got {value!r}")
        return tuple(value)

    def table(self, key: str) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"{self._name(key)} must be a table ([{key}])")
        return value


def _fault(source: str, i: int, raw: Any, duration: float, target: Target) -> Fault:
    where = f"faults[{i}]"
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: {where} must be a table ([[faults]])")
    action = raw.get("action")
    if action is None:
        raise UsageError(f"{source}: {where}: missing 'action' (one of {', '.join(ACTIONS)})")
    if action not in FAULT_KEYS:
        raise UsageError(f"{source}: {where}: unknown action {action!r} (one of {', '.join(ACTIONS)})")
    where = f"faults[{i}] ({action})"
    c = _Checker(source, raw, where, (*_COMMON_FAULT_KEYS, *FAULT_KEYS[action]))
    if "at" not in raw:
        raise c.error(f"{where}: missing 'at' (seconds after the run starts)")
    at = c.number("at", 0.0)
    repeat = c.number("repeat", 1, minimum=1, integer=True)
    every = c.number("every", 0.0, strict=repeat > 1)
    if repeat > 1 and "every" not in raw:
        raise c.error(f"{where}: repeat = {repeat} needs every = <seconds between firings>")
    params: dict[str, Any] = {}
    if action == "restart":
        params["mode"] = c.string("mode", "all", RESTART_MODES)
        params["down"] = c.number("down", 0.0)
        if "batch" in raw:
            params["batch"] = c.number("batch", None, minimum=1, integer=True)
        if "interval" in raw:
            params["interval"] = c.number("interval", None)
        if "proc" in raw:
            proc = c.number("proc", None, integer=True)
            if proc >= target.workers:
                raise c.error(
                    f"{where}.proc = {proc} but the target has {target.workers} worker(s) (proc counts from 0)"
                )
            params["proc"] = proc
    elif action == "crash":
        params["down"] = c.number("down", 0.0)
    elif action in ("partition", "latency"):
        if action == "latency":
            if "ms" not in raw:
                raise c.error(f"{where}: missing 'ms' (added latency in milliseconds)")
            params["ms"] = c.number("ms", None)
        if "duration" in raw:
            params["duration"] = c.number("duration", None, strict=True)
    elif action == "capacity":
        if not any(k in raw for k in FAULT_KEYS["capacity"]):
            raise c.error(f"{where}: give capacity, handshake_rate, attempt_cost_ms and/or session_cost_ms")
        if "capacity" in raw:
            params["capacity"] = c.number("capacity", None, minimum=1, integer=True)
        if "handshake_rate" in raw:
            params["handshake_rate"] = c.number("handshake_rate", None)  # 0: the bucket off
        for key in ("attempt_cost_ms", "session_cost_ms"):
            if key in raw:
                params[key] = c.number(key, None)
    elif action == "lame-duck":
        params["grace"] = c.number("grace", LAME_DUCK_GRACE_S)
        params["duration"] = c.number("duration", LAME_DUCK_WINDOW_S)
        params["code"] = c.number("code", 1001, integer=True)
        if params["code"] not in LAME_DUCK_CODES:
            raise c.error(f"{where}.code must be 1001 or 1012, got {params['code']}")
        if "proc" in raw:
            proc = c.number("proc", None, integer=True)
            if proc >= target.workers:
                raise c.error(
                    f"{where}.proc = {proc} but the target has {target.workers} worker(s) (proc counts from 0)"
                )
            params["proc"] = proc
    elif action == "overload":
        if "mode" not in raw:
            raise c.error(f"{where}: missing 'mode' (one of {', '.join(OVERLOAD_MODES)})")
        params["mode"] = c.string("mode", None, OVERLOAD_MODES)
    elif action == "http":
        url = c.string("url", None)
        if not url or not url.startswith(("http://", "https://")):
            raise c.error(f"{where}.url must be an http:// or https:// URL, got {url!r}")
        params["url"] = url
        params["method"] = c.string("method", "POST").upper()
        headers = raw.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise c.error(f"{where}.headers must be a table of strings")
        if headers:
            params["headers"] = dict(headers)
        if "body" in raw:
            params["body"] = c.string("body", None)
        params["timeout"] = c.number("timeout", 10.0, strict=True)
    elif action == "shell":
        command = c.string("command", None)
        if not command or not command.strip():
            raise c.error(f"{where}.command must be a non-empty string")
        params["command"] = command
        params["timeout"] = c.number("timeout", 30.0, strict=True)
    fault = Fault(at=at, action=action, params=tuple(params.items()), repeat=repeat, every=every)
    last = fault.times()[-1]
    if last >= duration:
        what = f"its firing {fault.repeat} at {last:g} s" if repeat > 1 else f"at = {at:g} s"
        raise c.error(f"{where}: {what} is after the end of the run (duration = {duration:g} s)")
    if fault.span() >= duration:
        what = "serves again" if action == "lame-duck" else "heals"
        raise c.error(f"{where}: {what} at {fault.span():g} s, after the end of the run (duration = {duration:g} s)")
    return fault


def from_dict(data: dict[str, Any], source: str = "<scenario>", default_name: str = "scenario") -> Scenario:
    """Validate parsed TOML data into a Scenario."""
    c = _Checker(source, data, "", _TOP_KEYS)
    name = c.string("name", default_name)
    description = c.string("description", "")
    if "duration" not in data:
        raise c.error("missing 'duration' (seconds)")
    duration = c.number("duration", None, strict=True)
    users = c.number("users", 100, minimum=1, integer=True)
    spawn_rate = c.number("spawn_rate", float(users), strict=True)

    t = _Checker(source, c.table("target"), "target", _TARGET_KEYS)
    cpus = t.string("cpus", None)
    if cpus is not None:
        try:
            cpus = cpus_text(parse_cpus(cpus))
        except UsageError as exc:
            raise t.error(f"target.{exc}") from None
    target = Target(
        capacity=t.number("capacity", 1000, minimum=1, integer=True),
        handshake_rate=t.number("handshake_rate", 0.0),
        handshake_cost_ms=t.number("handshake_cost_ms", 2.0),
        overload=t.string("overload", "close", OVERLOAD_MODES),
        workers=t.number("workers", 1, minimum=1, integer=True),
        proxy=t.boolean("proxy", False),
        tls=t.boolean("tls", False),
        attempt_cost_ms=t.number("attempt_cost_ms", 0.0),
        session_cost_ms=t.number("session_cost_ms", 0.0),
        store_concurrency=t.number("store_concurrency", 0, integer=True),
        store_ms=t.number("store_ms", 0.0),
        handshake_timeout=t.number("handshake_timeout", 10.0, strict=True),
        cpus=cpus,
        session_max_s=t.number("session_max_s", 0.0),
        resume_window=t.number("resume_window", 0.0),
        resume_cost_ms=t.number("resume_cost_ms", 0.0),
        session_start_rate=t.number("session_start_rate", 0.0),
        session_refuse_code=t.number("session_refuse_code", 1013, integer=True),
    )
    if not sendable_close_code(target.session_refuse_code):
        raise t.error(
            "target.session_refuse_code must be a close code a server may send (1000-1003, 1007-1014, "
            f"3000-4999), got {target.session_refuse_code}"
        )
    if target.store_concurrency > 256:
        raise t.error(f"target.store_concurrency must be <= 256, got {target.store_concurrency}")
    if target.store_ms > 0 and target.store_concurrency == 0:
        raise t.error("target.store_ms needs store_concurrency >= 1 (the store's slots)")
    k = _Checker(source, c.table("client"), "client", _CLIENT_KEYS)
    client = Client(
        message_rate=k.number("message_rate", None),
        ping_interval=k.number("ping_interval", None, strict=True),
        pong_timeout=k.number("pong_timeout", None, strict=True),
        connect_timeout=k.number("connect_timeout", None, strict=True),
        insecure=k.boolean("insecure", False),
        ready_timeout=k.number("ready_timeout", None, strict=True),
        headers=k.strings("headers"),
        query=k.strings("query"),
        subprotocols=k.strings("subprotocols"),
        init_payload=k.strings("init_payload"),
        ca_file=k.string("ca_file", None),
        client_cert=k.string("client_cert", None),
        client_key=k.string("client_key", None),
        server_name=k.string("server_name", None),
        compression=k.string("compression", None),
        protocol=k.string("protocol", None),
        ready_send=k.string("ready_send", None),
        ready_match=k.string("ready_match", None),
        subscribe=k.string("subscribe", None),
    )
    raw_faults = data.get("faults", [])
    if not isinstance(raw_faults, list):
        raise c.error("faults must be an array of tables ([[faults]])")
    faults = tuple(
        sorted((_fault(source, i, f, duration, target) for i, f in enumerate(raw_faults)), key=lambda f: f.at)
    )
    return Scenario(
        name=name,
        description=description,
        duration=duration,
        users=users,
        spawn_rate=spawn_rate,
        target=target,
        client=client,
        faults=faults,
        source=source,
    )


def with_overrides(
    sc: Scenario, *, users: int | None = None, duration: float | None = None, spawn_rate: float | None = None
) -> Scenario:
    """The scenario resized: a new duration scales the fault times (at, every) to keep the schedule's shape.

    Outage lengths (down, partition duration) are kept, since they are what the clients must ride out.
    """
    if users is not None and users < 1:
        raise UsageError(f"--users must be >= 1, got {users}")
    if duration is not None and not duration > 0:
        raise UsageError(f"--duration must be > 0, got {duration:g}")
    if spawn_rate is not None and not spawn_rate > 0:
        raise UsageError(f"--spawn-rate must be > 0, got {spawn_rate:g}")
    data = sc.to_dict()
    data.pop("source")
    if users is not None:
        data["users"] = users
    if spawn_rate is not None:
        data["spawn_rate"] = spawn_rate
    if duration is not None:
        scale = duration / sc.duration
        data["duration"] = duration
        for f in data["faults"]:
            f["at"] = round(f["at"] * scale, 3)
            if "every" in f:
                f["every"] = round(f["every"] * scale, 3)
    source = sc.source + (f" (with --duration {duration:g})" if duration is not None else "")
    return from_dict(data, source=source, default_name=sc.name)


def check_target(sc: Scenario, *, embedded: bool, admin: bool = False) -> None:
    """Refuse a scenario the chosen target cannot play (before anything starts)."""
    if embedded:
        if sc.needs_proxy() and not sc.target.proxy:
            acts = sorted({f.action for f in sc.faults if f.action in PROXY_ACTIONS})
            raise UsageError(f"{sc.source}: {', '.join(acts)} needs the fault proxy: set proxy = true in [target]")
        return
    if sc.needs_target() and not admin:
        acts = sorted({f.action for f in sc.faults if f.action in TARGET_ACTIONS})
        raise UsageError(
            f"scenario {sc.name!r} uses {', '.join(acts)} faults, which need the embedded target; "
            "against your own server (--host) use http or shell faults, or give --admin-url and --admin-token"
        )


def describe_fault(f: Fault) -> str:
    """One readable line for a fault: when, what, with which parameters."""
    params = ", ".join(f"{k}={v}" for k, v in f.params if k not in ("headers", "body"))
    when = f"{f.at:g} s" + (f" (x{f.repeat}, every {f.every:g} s)" if f.repeat > 1 else "")
    return f"{when}: {f.action}" + (f" {params}" if params else "")


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of ``wsstorm scenarios``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="list the shipped scenarios")
    show = sub.add_parser("show", help="show one scenario (shipped name or path to a .toml)")
    show.add_argument("scenario")
    show.add_argument("--json", action="store_true", help="print the validated scenario as JSON")


def command(name: str, args: argparse.Namespace) -> int:
    """Run ``wsstorm scenarios list|show NAME``."""
    action = getattr(args, "action", None) or "list"
    if action == "list":
        for n in shipped():
            sc = load(n)
            print(f"{n:<16} {sc.users:>4} users {sc.duration:>4g} s  {sc.description}")
        return 0
    sc = load(args.scenario)
    if args.json:
        import json

        print(json.dumps(sc.to_dict(), indent=2))
        return 0
    print(f"# {sc.source}")
    print(Path(sc.source).read_text(encoding="utf-8").rstrip())
    print()
    print(f"# schedule ({sc.duration:g} s, {sc.users} users):")
    for f in sc.faults:
        print(f"#   {describe_fault(f)}")
    if not sc.faults:
        print("#   no faults")
    return 0


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(sc: Scenario) -> str:
    """The scenario as a TOML file that loads back to the same scenario (the run folder keeps it)."""
    d = sc.to_dict()
    lines = [f"# effective scenario, from {sc.source}" if sc.source else "# scenario"]
    lines += [f"{k} = {_toml_value(d[k])}" for k in ("name", "description", "duration", "users", "spawn_rate")]
    for table in ("target", "client"):
        if d[table]:
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in d[table].items()]
    for f in d["faults"]:
        lines += ["", "[[faults]]"] + [f"{k} = {_toml_value(v)}" for k, v in f.items()]
    return "\n".join(lines) + "\n"
