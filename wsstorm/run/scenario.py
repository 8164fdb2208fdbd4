"""Scenario files: load and validate the TOML that says who connects, to what, and what breaks when.

Also the ``wsstorm scenarios`` command (list the shipped ones, show one).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.run.checker import Checker
from wsstorm.run.fault_spec import (  # noqa: F401  (re-exported: the scenario format's public names)
    ACTIONS,
    FAULT_KEYS,
    PROXY_ACTIONS,
    RESTART_MODES,
    TARGET_ACTIONS,
    Fault,
    describe_fault,
    parse_fault,
)
from wsstorm.runfolder.redact import redact_value
from wsstorm.target.settings import (
    OVERLOAD_MODES,
    cpus_text,
    parse_cpus,
    sendable_close_code,
)

SHIPPED_DIR = Path(__file__).resolve().parent / "scenarios"
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
    "auth_token",
    "session_max_s",
    "resume_window",
    "resume_cost_ms",
    "session_start_rate",
    "session_refuse_code",
)
# How clients connect to a server of yours (the load side's options of the same names; lists are repeatable).
# [client] keys that are lists -> the repeatable load-side option each feeds (--header, ...).
CLIENT_LISTS: dict[str, str] = {
    "headers": "header",
    "query": "query",
    "subprotocols": "subprotocol",
    "init_payload": "init_payload",
}
# [client] keys that are text, each the load-side option of the same name.
CLIENT_TEXTS = (
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
    *CLIENT_LISTS,
    *CLIENT_TEXTS,
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
    # Handshakes must carry `Authorization: Bearer <token>` (else 401). Written as "{env:NAME}" only: the
    # scenario (and its copy in the run folder) names the variable, never the secret itself.
    auth_token: str | None = None

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
        if self.auth_token:
            out["auth_token"] = resolve_env_ref(self.auth_token, "target.auth_token")
        return out


_ENV_REF = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_env_ref(ref: str, what: str) -> str:
    """The value of an "{env:NAME}" reference (UsageError naming the variable, never a value, if unset)."""
    m = _ENV_REF.fullmatch(ref)
    if m is None:
        raise UsageError(f"{what} must be written as {{env:NAME}} (a secret never sits in a scenario file)")
    value = os.environ.get(m.group(1))
    if not value:
        raise UsageError(f"{what}: environment variable {m.group(1)} is not set")
    return value


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

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """Plain data for the manifest and ``--json`` output (``redact``: header/query values hidden)."""
        return {
            "name": self.name,
            "description": self.description,
            "duration": self.duration,
            "users": self.users,
            "spawn_rate": self.spawn_rate,
            "target": {k: v for k, v in dataclasses.asdict(self.target).items() if v is not None},
            "client": _client_dict(self.client, redact),
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


def _client_dict(client: Client, redact: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(client).items():
        if value is None or value == () or (value is False and key == "insecure"):
            continue
        if redact and key in _REDACT_AS:
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


def from_dict(data: dict[str, Any], source: str = "<scenario>", default_name: str = "scenario") -> Scenario:
    """Validate parsed TOML data into a Scenario."""
    c = Checker(source, data, "", _TOP_KEYS)
    name = c.string("name", default_name)
    description = c.string("description", "")
    if "duration" not in data:
        raise c.error("missing 'duration' (seconds)")
    duration = c.number("duration", None, strict=True)
    users = c.number("users", 100, minimum=1, integer=True)
    spawn_rate = c.number("spawn_rate", float(users), strict=True)

    t = Checker(source, c.table("target"), "target", _TARGET_KEYS)
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
        auth_token=t.string("auth_token", None),
    )
    if target.auth_token is not None and _ENV_REF.fullmatch(target.auth_token) is None:
        raise t.error("target.auth_token must be written as {env:NAME} (a secret never sits in a scenario file)")
    if not sendable_close_code(target.session_refuse_code):
        raise t.error(
            "target.session_refuse_code must be a close code a server may send (1000-1003, 1007-1014, "
            f"3000-4999), got {target.session_refuse_code}"
        )
    if target.store_concurrency > 256:
        raise t.error(f"target.store_concurrency must be <= 256, got {target.store_concurrency}")
    if target.store_ms > 0 and target.store_concurrency == 0:
        raise t.error("target.store_ms needs store_concurrency >= 1 (the store's slots)")
    k = Checker(source, c.table("client"), "client", _CLIENT_KEYS)
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
        sorted(
            (parse_fault(source, i, f, duration, target.workers) for i, f in enumerate(raw_faults)), key=lambda f: f.at
        )
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
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(sc: Scenario) -> str:
    """The scenario as a TOML file that loads back to the same scenario (the run folder keeps it; Locust reads it,
    so header and query templates stay whole: keep secrets in {env:} or {file:}, never literally)."""
    d = sc.to_dict(redact=False)
    lines = [f"# effective scenario, from {sc.source}" if sc.source else "# scenario"]
    lines += [f"{k} = {_toml_value(d[k])}" for k in ("name", "description", "duration", "users", "spawn_rate")]
    for table in ("target", "client"):
        if d[table]:
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in d[table].items()]
    for f in d["faults"]:
        lines += ["", "[[faults]]"] + [f"{k} = {_toml_value(v)}" for k, v in f.items()]
    return "\n".join(lines) + "\n"
