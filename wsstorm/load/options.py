"""The Locust command-line options of wsstorm and their resolution into one frozen :class:`UserConfig`.

Owns the option list (shown in Locust's web UI), the
precedence rule (command line > scenario ``[client]`` > defaults), every check of a client
setting (one-line :class:`UsageError`), ``--host`` and ``--cpus`` checks, run ids and seeds.
"""

from __future__ import annotations

from locust import events

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.load.protocols import PROTOCOLS, AppSpec, compile_app
from wsstorm.load.template import Extras, compile_extras
from wsstorm.run.scenario import CLIENT_LISTS, CLIENT_TEXTS
from wsstorm.runfolder.redact import redact_options

DEFAULT_CONNECT_TIMEOUT = 10.0
# Which values are secrets, and how they are written down: the one rule in wsstorm.runfolder.redact.


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    """Register wsstorm's options on Locust's parser (they show in the web UI)."""
    g = parser
    g.add_argument("--policy", default="full-jitter", help="reconnect policy spec (see `wsstorm policies`)")
    g.add_argument("--policy-file", default="", help="TOML/JSON file defining the policy (overrides --policy)")
    g.add_argument("--message-rate", type=float, default=None, help="messages per second per user (default 0.1)")
    g.add_argument("--message-size", type=int, default=64, help="bytes per message")
    g.add_argument("--ping-interval", type=float, default=None, help="seconds between pings (default 5; 0 = off)")
    g.add_argument(
        "--pong-timeout", type=float, default=None, help="seconds without pong before the peer is dead (default 5)"
    )
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=None,
        help=f"seconds for TCP + TLS + handshake (default: scenario [client], else {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    g.add_argument("--seed", type=int, default=None, help="random seed (default: chosen and recorded)")
    g.add_argument("--run-id", default="", help="run id (default: time-based)")
    g.add_argument("--run-dir", default="", help="run folder (default reports/<run-id>)")
    g.add_argument("--scenario", default="", help="scenario name or file: target shape, client defaults, faults")
    g.add_argument("--cpus", default="", help="pin this Locust process to these CPUs: 0 | 1 | 0-1 | 0,1")
    # TLS (wss://)
    g.add_argument(
        "--ca-file", default="", help="trust this CA (PEM) for wss:// (automatic for the embedded TLS target)"
    )
    g.add_argument(
        "--insecure", action="store_true", default=False, help="wss:// without certificate checks (loud in the report)"
    )
    g.add_argument("--client-cert", default="", help="client certificate (PEM) for mutual TLS")
    g.add_argument("--client-key", default="", help="its private key (PEM; the path is recorded, never the key)")
    g.add_argument(
        "--server-name", default="", help="TLS server name (SNI, certificate check) instead of the URL's host"
    )
    # The handshake. Header and query values may be secrets: kept out of the web UI (its page would
    # carry them) and redacted in the manifest; give tokens as {env:NAME} or {file:PATH}.
    g.add_argument(
        "--header",
        action="append",
        default=None,
        include_in_web_ui=False,
        help="extra handshake header 'Name: value' (repeatable); templated: "
        "{user} {n} {conn} {run} {env:NAME} {file:PATH}",
    )
    g.add_argument(
        "--query",
        action="append",
        default=None,
        include_in_web_ui=False,
        help="extra query parameter 'k=v' (repeatable), templated like --header",
    )
    g.add_argument(
        "--subprotocol",
        action="append",
        default=None,
        help="offer this subprotocol (repeatable); the server's choice is recorded on open",
    )
    g.add_argument(
        "--compression", default="", help="'deflate': offer permessage-deflate (RFC 7692); agreed or not is on open"
    )
    # The application layer: a protocol on top of WebSocket, or an application handshake
    g.add_argument("--protocol", default="", help=f"{' | '.join(PROTOCOLS)} (default ws)")
    g.add_argument(
        "--ready-send",
        default="",
        include_in_web_ui=False,
        help="--protocol ws: text to send once the socket opens (templated like --header)",
    )
    g.add_argument(
        "--ready-match",
        default="",
        help="--protocol ws: the reply that means ready: json:FIELD=VALUE (dotted path) or re:REGEX",
    )
    g.add_argument(
        "--ready-timeout", type=float, default=None, help="seconds from open to the ready reply (default 10)"
    )
    g.add_argument(
        "--init-payload",
        action="append",
        default=None,
        include_in_web_ui=False,
        help="socketio auth / graphql-ws connection_init payload field 'k=v' (repeatable, templated)",
    )
    g.add_argument("--subscribe", default="", help="graphql-ws: a subscription query sent after connection_ack")
    # The embedded target
    g.add_argument("--target-capacity", type=int, default=None, help="embedded target: max connections")
    g.add_argument("--target-handshake-rate", type=float, default=None, help="embedded target: handshakes/s")
    g.add_argument("--target-handshake-cost-ms", type=float, default=None, help="embedded target: CPU ms per handshake")
    g.add_argument("--target-overload", default="", help="embedded target: close | http | refuse")
    g.add_argument(
        "--target-port", type=int, default=None, help="embedded target: WebSocket port (default: a free one)"
    )
    g.add_argument("--target-workers", type=int, default=None, help="embedded target: serving processes")
    g.add_argument("--target-proxy", action="store_true", default=False, help="embedded target: fault proxy in front")
    g.add_argument(
        "--target-tls",
        action="store_true",
        default=False,
        help="embedded target: serve wss:// with a CA it makes (trusted automatically)",
    )
    g.add_argument("--target-admin", default="", help="admin URL of a target started elsewhere (for faults)")
    g.add_argument("--target-token", default="", is_secret=True, help="its admin token")


@dataclass(frozen=True)
class TLSConfig:
    """How wss:// connections are checked (one ssl context per process is built from it)."""

    ca_file: str = ""
    insecure: bool = False
    client_cert: str = ""
    client_key: str = ""
    server_name: str = ""


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
    tls: TLSConfig = field(default_factory=TLSConfig)
    extras: Extras = field(default_factory=Extras)
    compression: bool = False  # offer permessage-deflate
    app: AppSpec = field(default_factory=AppSpec)  # protocol adapter and ready condition


def _pick(cli: Any, scenario_value: Any, default: Any) -> Any:
    return cli if cli is not None else (scenario_value if scenario_value is not None else default)


def _text(opts: Any, client: Any, name: str) -> str:
    """A text option: the command line's if given, else the scenario [client]'s, else ''."""
    return str(getattr(opts, name, "") or getattr(client, name, "") or "")


def _file(opts: Any, client: Any, name: str) -> str:
    path = _text(opts, client, name)
    if path and not os.path.isfile(path):
        raise UsageError(f"--{name.replace('_', '-')}: no such file: {path!r}")
    return path


def resolve_tls(opts: Any, client: Any = None) -> TLSConfig:
    """The TLS options (command line > scenario [client]), checked: the files exist, a key goes with a certificate."""
    insecure = bool(getattr(opts, "insecure", False) or getattr(client, "insecure", False))
    tls = TLSConfig(
        ca_file=_file(opts, client, "ca_file"),
        insecure=insecure,
        client_cert=_file(opts, client, "client_cert"),
        client_key=_file(opts, client, "client_key"),
        server_name=_text(opts, client, "server_name"),
    )
    if tls.client_key and not tls.client_cert:
        raise UsageError("--client-key needs --client-cert")
    if tls.insecure and tls.ca_file:
        raise UsageError("--insecure and --ca-file contradict each other: choose one")
    return tls


def _listed(opts: Any, client: Any, option: str, key: str) -> list[str]:
    """A repeatable option's values: the command line's if given, else the scenario [client]'s."""
    cli = getattr(opts, option, None)
    if isinstance(cli, str):  # set from the web UI's text field: comma-separated
        return [v.strip() for v in cli.split(",") if v.strip()]
    if cli is not None:
        return [str(v) for v in cli]
    value = getattr(client, key, None)
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


# The scenario format's [client] keys: list key -> option, and the text keys (options of the same names).
_SCENARIO_LISTS = {option: key for key, option in CLIENT_LISTS.items()}
_SCENARIO_TEXTS = CLIENT_TEXTS


def scenario_into_options(opts: Any, scenario: Any) -> None:
    """Copy the scenario [client]'s handshake and TLS keys into the options the command line left unset,
    so workers (which never read the scenario) get them with the master's options."""
    client = getattr(scenario, "client", None)
    if client is None:
        return
    for option, key in _SCENARIO_LISTS.items():
        if getattr(opts, option, None) is None and getattr(client, key, None):
            setattr(opts, option, _listed(opts, client, option, key))
    for name in _SCENARIO_TEXTS:
        if not getattr(opts, name, "") and getattr(client, name, None):
            setattr(opts, name, str(getattr(client, name)))
    if getattr(client, "insecure", False):
        opts.insecure = True
    if getattr(opts, "ready_timeout", None) is None and getattr(client, "ready_timeout", None) is not None:
        opts.ready_timeout = float(client.ready_timeout)


def resolve_config(opts: Any, scenario: Any = None) -> UserConfig:
    """Check and resolve the options; raises UsageError with one line on bad input."""
    from wsstorm import policies

    if getattr(opts, "policy_file", ""):
        spec = policies.load_policy_file(opts.policy_file)
    else:
        spec = policies.parse_policy(opts.policy or "full-jitter")
    client = getattr(scenario, "client", None)
    compression = _text(opts, client, "compression").strip().lower()
    if compression not in ("", "none", "deflate"):
        raise UsageError(f"--compression must be 'deflate' or 'none', got {compression[:40]!r}")
    cfg = UserConfig(
        policy=spec,
        message_rate=float(_pick(opts.message_rate, getattr(client, "message_rate", None), 0.1)),
        message_size=int(opts.message_size),
        ping_interval=float(_pick(opts.ping_interval, getattr(client, "ping_interval", None), 5.0)),
        pong_timeout=float(_pick(opts.pong_timeout, getattr(client, "pong_timeout", None), 5.0)),
        connect_timeout=float(
            _pick(
                getattr(opts, "connect_timeout", None),
                getattr(client, "connect_timeout", None),
                DEFAULT_CONNECT_TIMEOUT,
            )
        ),
        seed=int(opts.seed) if opts.seed is not None else 0,
        tls=resolve_tls(opts, client),
        extras=compile_extras(
            _listed(opts, client, "header", "headers"),
            _listed(opts, client, "query", "query"),
            _listed(opts, client, "subprotocol", "subprotocols"),
        ),
        compression=compression == "deflate",
        app=compile_app(
            _text(opts, client, "protocol"),
            _text(opts, client, "ready_send"),
            _text(opts, client, "ready_match"),
            _pick(getattr(opts, "ready_timeout", None), getattr(client, "ready_timeout", None), None),
            _listed(opts, client, "init_payload", "init_payload"),
            _text(opts, client, "subscribe"),
        ),
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
        _ = urlsplit(host).port  # raises ValueError for a port out of 0-65535 or not a number
    except ValueError as exc:
        raise UsageError(f"--host has a bad port: {host!r} ({exc})") from None


def parse_cpus(text: str, available: int | None = None) -> tuple[int, ...]:
    """``"0"``, ``"0-1"``, ``"0,2"`` -> sorted CPU numbers; UsageError for bad text or a CPU that does not exist."""
    count = available if available is not None else (os.cpu_count() or 1)
    cpus: set[int] = set()
    for part in str(text).split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise UsageError(f"--cpus must be a list like 0 | 0-1 | 0,1, got {text!r}") from None
        if a < 0 or b < a:
            raise UsageError(f"--cpus has a bad range {part.strip()!r} in {text!r}")
        if b >= count:
            raise UsageError(f"--cpus {text!r}: CPU {b} does not exist (this machine has CPUs 0-{count - 1})")
        cpus.update(range(a, b + 1))
    return tuple(sorted(cpus))


def pin_cpus(text: str) -> tuple[int, ...] | None:
    """Pin this process to ``--cpus`` (None when not given); returns the CPUs it may run on after."""
    if not text:
        return None
    cpus = parse_cpus(text)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:  # a CPU this process may not use (cgroup, cpuset)
        raise UsageError(f"--cpus {text!r}: cannot pin to CPUs {list(cpus)}: {exc.strerror or exc}") from None
    return tuple(sorted(os.sched_getaffinity(0)))


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 4 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:4]


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any parts (no Python hash randomisation)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def redacted_options(opts: Any) -> dict[str, Any]:
    """Every option for the manifest: secrets left out, header/query/payload values redacted."""
    return redact_options(dict(vars(opts)))
