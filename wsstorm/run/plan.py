"""Planning a run: the options of ``wsstorm run|compare|demo``, their validation into a :class:`Plan`
(before anything starts), and the Locust command line of one run.

Pure but for a few checks of the machine (free ports, a writable --out, which CPUs exist).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.run import scenario as scenarios
from wsstorm.runfolder import names
from wsstorm.runfolder.redact import redact_argv

DEFAULT_COMPARE = "immediate,exponential,full-jitter,code-aware"
# The demo: each scenario with the policies worth seeing on it, at a size that keeps the whole demo
# (install included) under 5 minutes on 2 cores.  DEMO_DEFAULT is what `wsstorm demo` runs; a
# scenario that is not shipped is left out.  overload is sized here too (`--scenarios` adds it).
DEMO_POLICIES = "immediate,exponential,full-jitter,code-aware,socketio"
DEMO_PLAN: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("restart", "immediate,full-jitter,code-aware", {"users": 200, "duration": 18.0}),
    ("metastable", "immediate,full-jitter:cap=30,code-aware", {}),  # its own size: it needs 30 s after the trigger
    ("overload", "immediate,full-jitter,code-aware", {"users": 200, "duration": 12.0}),
)
# metastable alone: one policy that breaks the server after a restart, two that do not, at the
# scenario's own size (shrunk, its ramp or its 30 s verdict window no longer fit; with restart's
# comparison too, the demo took 5 min 40 s).  `--scenarios restart,metastable` adds restart.
DEMO_DEFAULT = ("metastable",)
DEMO_SCENARIOS = ",".join(DEMO_DEFAULT)
DEMO_SIZE = {"users": 200, "duration": 18.0}  # a scenario given with --scenarios that DEMO_PLAN does not size
# Per run beyond its duration, measured on the 2-core machine with other work on it: Locust and target
# start-up and stop 2-5 s, and the run's share of its comparison's reports 5-7 s.
RUN_OVERHEAD_S = 8.0
DEMO_BUDGET_S = 240.0  # the runs' share of the 5 minutes (the install, about 50 s, takes the rest)


def find_locustfile() -> Path:
    """The repository's locustfile.py (next to the wsstorm package; it is installed editable)."""
    candidates = [Path(__file__).resolve().parents[2] / "locustfile.py", Path.cwd() / "locustfile.py"]
    for path in candidates:
        if path.is_file():
            return path
    raise UsageError(f"cannot find locustfile.py (looked in {', '.join(str(p.parent) for p in candidates)})")


# ---------------------------------------------------------------- options and validation


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of ``wsstorm run|compare|demo``."""
    a = parser.add_argument
    if name == "run":
        a("--scenario", required=True, help="shipped scenario name (see `wsstorm scenarios`) or path to a .toml")
        a("--policy", default="full-jitter", help="reconnect policy spec (see `wsstorm policies`)")
        a("--policy-file", default=None, help="TOML/JSON file defining the policy (instead of --policy)")
        a("--run-id", default=None, help="run id (default: <time>-<scenario>-<policy>)")
    elif name == "compare":
        a("--scenario", required=True, help="shipped scenario name or path to a .toml")
        a("--policies", default=DEFAULT_COMPARE, help=f"comma-separated policy specs (default {DEFAULT_COMPARE})")
        a("--repeat", type=int, default=1, help="runs per policy (seeds seed, seed+1, ...)")
    else:  # demo
        a(
            "--scenarios",
            default=None,
            help=f"comma-separated scenarios (default: {DEMO_SCENARIOS}, each shipped one with its own policies)",
        )
        a(
            "--policies",
            default=None,
            help="comma-separated policy specs for every scenario "
            "(default: per scenario, e.g. restart: immediate,full-jitter,code-aware)",
        )
        a("--repeat", type=int, default=1, help="runs per policy")
    a("--users", type=int, default=None, help="override the scenario's users")
    a(
        "--duration",
        type=float,
        default=None,
        help="override the scenario's duration (s); fault times scale with it, outage lengths do not",
    )
    a("--spawn-rate", type=float, default=None, help="override the scenario's spawn rate (users/s)")
    a("--processes", type=int, default=None, help="Locust worker processes (default: one process)")
    a("--seed", type=int, default=42, help="random seed (the same for every policy of a comparison)")
    a("--out", default="reports", help="where run folders go (default reports/)")
    a("--host", default=None, help="your own server (ws:// or wss://) instead of the embedded target")
    a("--admin-url", default=None, help="admin API of a wsstorm target started elsewhere (with --host)")
    a("--admin-token", default=None, help="its Bearer token")
    a("--port", type=int, default=None, help="embedded target's WebSocket port (default: a free one)")
    a("--message-rate", type=float, default=None, help="messages per second per user (default: scenario's)")
    a("--ping-interval", type=float, default=None, help="seconds between pings (default: scenario's)")
    a("--pong-timeout", type=float, default=None, help="seconds without pong = dead peer (default: scenario's)")
    a(
        "--connect-timeout",
        type=float,
        default=None,
        help="seconds a client waits for TCP + TLS + handshake before it gives up (default: scenario's)",
    )
    a("--ca-file", default=None, help="CA certificate (PEM) to trust for a wss:// --host started elsewhere")
    a(
        "--cpus",
        default=None,
        help="pin the harness (Locust) to these CPUs, e.g. '0' or '0-1' "
        "(default: the CPUs the scenario's [target] cpus leaves free, if it pins the target)",
    )
    _connection_options(parser)
    a("--no-report", action="store_true", help="record only; build reports later with `wsstorm report`")
    a("--plain", action="store_true", help="plain progress lines even on a terminal")


# How each client connects to a --host of yours: passed to Locust's options of the same names, which check
# them (a bad value stops the run before any traffic: exit 2). name -> (repeatable, flag, help)
CONNECTION_OPTIONS: dict[str, tuple[bool, bool, str]] = {
    "header": (True, False, "'Name: value' on every handshake (repeatable; {user} {n} {conn} {run} {env:X} {file:F})"),
    "query": (True, False, "'k=v' added to the URL's query (repeatable; templated like --header)"),
    "subprotocol": (True, False, "offer this subprotocol (repeatable); the chosen one is recorded on open"),
    "insecure": (False, True, "wss:// without certificate checks (said loudly in the report)"),
    "client_cert": (False, False, "client certificate (PEM) for mutual TLS"),
    "client_key": (False, False, "its private key (PEM)"),
    "server_name": (False, False, "TLS server name (SNI and the certificate check) instead of the URL's host"),
    "compression": (False, False, "'deflate': offer permessage-deflate (RFC 7692)"),
    "protocol": (False, False, "ws | socketio | graphql-ws: the protocol on top of WebSocket"),
    "ready_send": (False, False, "text sent once the socket opens (templated; e.g. an auth or subscribe message)"),
    "ready_match": (False, False, "the reply that means ready: json:FIELD=VALUE or re:REGEX"),
    "ready_timeout": (False, False, "seconds from open to the ready reply"),
    "init_payload": (True, False, "socketio auth / graphql-ws connection_init field 'k=v' (repeatable, templated)"),
    "subscribe": (False, False, "graphql-ws: a subscription query sent after connection_ack"),
}


def _connection_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connecting to your server (command line > the scenario's [client])")
    for name, (repeatable, flag, help_text) in CONNECTION_OPTIONS.items():
        opt = "--" + name.replace("_", "-")
        if flag:
            g.add_argument(opt, action="store_true", default=False, help=help_text)
        elif repeatable:
            g.add_argument(opt, action="append", default=None, help=help_text)
        else:
            g.add_argument(opt, default=None, help=help_text)


def connection_argv(args: argparse.Namespace) -> tuple[str, ...]:
    """The connection options given on the command line, as Locust arguments."""
    out: list[str] = []
    for name, (_repeatable, flag, _help) in CONNECTION_OPTIONS.items():
        value = getattr(args, name, None)
        opt = "--" + name.replace("_", "-")
        if flag:
            out += [opt] if value else []
        elif isinstance(value, list):
            for v in value:
                out += [opt, str(v)]
        elif value is not None:
            out += [opt, str(value)]
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, validated before anything starts."""

    scenario: scenarios.Scenario
    policies: tuple[str, ...]  # canonical policy texts
    policy_file: str | None = None
    repeat: int = 1
    seed: int = 42
    processes: int | None = None
    out: Path = Path("reports")
    host: str | None = None
    admin: tuple[str, str] | None = None
    port: int | None = None
    client: dict[str, float] = field(default_factory=dict)
    locustfile: Path = Path("locustfile.py")
    build_report: bool = True
    ca_file: Path | None = None
    cpus: str | None = None  # the harness's CPU list (Locust's --cpus)
    cpus_note: str = ""  # why the harness is (or is not) pinned, for the progress line
    connection: tuple[str, ...] = ()  # connection options for Locust (connection_argv)


def split_policies(text: str) -> list[str]:
    """Split a comma list of specs, keeping parameter lists whole: 'a,b:base=1,cap=5' -> ['a', 'b:base=1,cap=5']."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if out and "=" in piece and ":" not in piece and ":" in out[-1]:
            out[-1] += "," + piece
        else:
            out.append(piece)
    if not out:
        raise UsageError("no policies given")
    return out


def check_policy(text: str) -> str:
    """The canonical text of a policy spec; PolicyError (a UsageError) on bad input."""
    from wsstorm.policies import parse_policy

    return str(parse_policy(text))


def port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (and we may bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """An ephemeral TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _positive(name: str, value: float | None, *, integer: bool = False) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"--{name} must be {'a positive integer' if integer else '> 0'}, got {value:g}")


def make_plan(
    args: argparse.Namespace, scenario_name: str, policies: list[str], size: dict[str, Any] | None = None
) -> Plan:
    """Validate the options into a Plan (UsageError, one line, for any bad input)."""
    size = size or {}
    _positive("processes", args.processes, integer=True)
    _positive("repeat", getattr(args, "repeat", 1), integer=True)
    for opt in ("message_rate",):
        if getattr(args, opt) is not None and getattr(args, opt) < 0:
            raise UsageError(f"--{opt.replace('_', '-')} must be >= 0, got {getattr(args, opt):g}")
    _positive("ping-interval", args.ping_interval)
    _positive("pong-timeout", args.pong_timeout)
    _positive("connect-timeout", getattr(args, "connect_timeout", None))
    if getattr(args, "connect_timeout", None) is not None and not math.isfinite(args.connect_timeout):
        raise UsageError(f"--connect-timeout must be a finite number of seconds, got {args.connect_timeout:g}")
    ca_file = _ca_file(getattr(args, "ca_file", None))
    sc = scenarios.load(scenario_name)
    users = args.users if args.users is not None else size.get("users")
    duration = args.duration if args.duration is not None else size.get("duration")
    if duration is not None and duration > sc.duration and args.duration is None:
        duration = None  # a demo size never lengthens a short scenario
    if users is not None and args.users is None:
        users = min(users, sc.users)
    sc = scenarios.with_overrides(sc, users=users, duration=duration, spawn_rate=args.spawn_rate)
    host = args.host
    if host is not None and not re.match(r"^wss?://[^\s/]+", host):
        raise UsageError(f"--host must be a ws:// or wss:// URL, got {host!r}")
    admin = None
    if args.admin_url or args.admin_token:
        if not (args.admin_url and args.admin_token):
            raise UsageError("--admin-url and --admin-token go together")
        if not args.admin_url.startswith(("http://", "https://")):
            raise UsageError(f"--admin-url must be an http:// URL, got {args.admin_url!r}")
        if host is None:
            raise UsageError("--admin-url is for a target started elsewhere: give its --host too")
        admin = (args.admin_url, args.admin_token)
    scenarios.check_target(sc, embedded=host is None, admin=admin is not None)
    if args.port is not None:
        if host is not None:
            raise UsageError("--port is the embedded target's port; it cannot go with --host")
        if not 1 <= args.port <= 65535:
            raise UsageError(f"--port must be 1-65535, got {args.port}")
        if not port_free(args.port):
            raise UsageError(f"port {args.port} is in use on 127.0.0.1")
    policy_file = getattr(args, "policy_file", None)
    if policy_file:
        from wsstorm.policies import load_policy_file

        canon = [str(load_policy_file(policy_file))]
    else:
        canon = [check_policy(p) for p in policies]
    out = Path(args.out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {args.out}: not writable")
    client = {k: getattr(args, k) for k in CLIENT_OPTIONS if getattr(args, k, None) is not None}
    if ca_file is not None and host is None:
        raise UsageError(
            "--ca-file is for a wss:// --host started elsewhere (the embedded target's CA is trusted automatically)"
        )
    cpus, note = harness_cpus(getattr(args, "cpus", None), target_cpus(sc) if host is None else None)
    return Plan(
        scenario=sc,
        policies=tuple(canon),
        policy_file=policy_file,
        repeat=getattr(args, "repeat", 1),
        seed=args.seed,
        processes=args.processes,
        out=out,
        host=host,
        admin=admin,
        port=args.port,
        client=client,
        locustfile=find_locustfile(),
        build_report=not args.no_report,
        ca_file=ca_file,
        cpus=cpus,
        cpus_note=note,
        connection=connection_argv(args),
    )


CLIENT_OPTIONS = ("message_rate", "ping_interval", "pong_timeout", "connect_timeout")  # -> Locust's --<name>


def _ca_file(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file() or not os.access(p, os.R_OK):
        raise UsageError(f"--ca-file {path}: no such readable file")
    return p.resolve()


def parse_cpus(text: str) -> tuple[int, ...]:
    """A CPU list ('0', '0-1', '0,2-3') checked against the machine's CPUs; UsageError otherwise."""
    from wsstorm.target.settings import parse_cpus as parse  # pure module: the target checks its own the same way

    return parse(text)


def cpus_text(cpus: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> '0-2,5'."""
    from wsstorm.target.settings import cpus_text as text

    return text(cpus)


def target_cpus(sc: scenarios.Scenario) -> tuple[int, ...] | None:
    """The CPUs the scenario pins the embedded target to ([target] cpus), or None."""
    raw = getattr(sc.target, "cpus", None)
    if raw in (None, "", ()):
        return None
    return tuple(raw) if isinstance(raw, (tuple, list)) else parse_cpus(str(raw))


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return tuple(range(os.cpu_count() or 1))


def harness_cpus(
    given: str | None, target: tuple[int, ...] | None, available: tuple[int, ...] | None = None
) -> tuple[str | None, str]:
    """The harness's CPU list and a note: --cpus as given; else, when the target is pinned, the other
    CPUs (so neither steals the other's); else none.  Pure given ``available``."""
    if given is not None:
        cpus = parse_cpus(given)
        if target and set(cpus) & set(target):
            return cpus_text(cpus), (
                f"harness pinned to CPUs {cpus_text(cpus)}, which overlap the target's "
                f"{cpus_text(target)}: they will compete for CPU"
            )
        return cpus_text(cpus), f"harness pinned to CPUs {cpus_text(cpus)}"
    if not target:
        return None, ""
    free = [c for c in (available if available is not None else available_cpus()) if c not in target]
    if not free:
        return None, (
            f"the target is pinned to CPUs {cpus_text(target)} and no other CPU is left: "
            "the harness is not pinned and shares them"
        )
    return cpus_text(tuple(free)), (f"target pinned to CPUs {cpus_text(target)}, harness to {cpus_text(tuple(free))}")


def locust_argv(
    plan: Plan, run_dir: Path, policy: str, seed: int, scenario_file: Path, master_port: int | None
) -> list[str]:
    """The Locust command line of one run."""
    sc = plan.scenario
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(plan.locustfile),
        "--headless",
        "-u",
        str(sc.users),
        "-r",
        f"{sc.spawn_rate:g}",
        "-t",
        f"{math.ceil(sc.duration)}s",
        "--csv",
        str(run_dir / names.LOCUST_CSV_PREFIX),
        "--html",
        str(run_dir / names.LOCUST_HTML),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--seed",
        str(seed),
        "--run-dir",
        str(run_dir),
        "--run-id",
        run_dir.name,
        "--scenario",
        str(scenario_file),
    ]
    if plan.policy_file:
        argv += ["--policy-file", plan.policy_file]
    else:
        argv += ["--policy", policy]
    for key, value in plan.client.items():
        argv += ["--" + key.replace("_", "-"), f"{value:g}"]
    if plan.ca_file is not None:
        argv += ["--ca-file", str(plan.ca_file)]
    if plan.cpus is not None:
        argv += ["--cpus", plan.cpus]
    argv += plan.connection
    if plan.host:
        argv += ["--host", plan.host]
    if plan.admin:
        argv += ["--target-admin", plan.admin[0], "--target-token", plan.admin[1]]
    if plan.port is not None:
        argv += ["--target-port", str(plan.port)]
    if plan.processes:
        argv += [
            "--processes",
            str(plan.processes),
            "--master-bind-port",
            str(master_port),
            "--master-port",
            str(master_port),
        ]
    return argv


def redact(argv: list[str]) -> list[str]:
    """The command line with every secret (tokens, header and query values) redacted."""
    return redact_argv(argv)
