"""The options of `wsstorm serve` and their checks (one line, exit 2, for anything out of range)."""

from __future__ import annotations

import argparse
import os
import socket

from wsstorm.errors import UsageError
from wsstorm.runfolder import names
from wsstorm.target.settings import (
    AUTH_TOKEN_ENV,
    LAME_DUCK_CODES,
    LAME_DUCK_GRACE_S,
    LAME_DUCK_WINDOW_S,
    OVERLOAD_MODES,
    check_cost,
    check_session_settings,
    parse_cpus,
)


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of `wsstorm serve`."""
    a = parser.add_argument
    a("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    a("--port", type=int, default=0, help="WebSocket port (0: ephemeral; printed in the ready line)")
    a("--capacity", type=int, default=1000, help="max concurrent connections (all workers together)")
    a(
        "--handshake-rate",
        type=float,
        default=0.0,
        help="token bucket in front: handshakes admitted per second (default 0: no bucket, as without a limiter)",
    )
    a("--handshake-burst", type=float, default=None, help="token bucket size (default: rate/10, at least 1)")
    a("--handshake-cost-ms", type=float, default=1.0, help="CPU ms per admitted handshake (adds to --session-cost-ms)")
    a(
        "--attempt-cost-ms",
        type=float,
        default=0.0,
        help="CPU ms every attempt pays before the admission decision, admitted or not (authentication)",
    )
    a("--session-cost-ms", type=float, default=0.0, help="CPU ms per admitted attempt (session setup)")
    a(
        "--store-concurrency",
        type=int,
        default=0,
        help="start the dependency store with this many slots; each handshake makes one lookup (0: no store)",
    )
    a("--store-ms", type=float, default=0.0, help="CPU ms the store works on each lookup, holding its slot")
    a("--tls", action="store_true", help="serve wss:// with a certificate made at start (RSA-2048)")
    a(
        "--ca-out",
        default=None,
        help=f"where --tls writes its CA certificate (default: {names.CA_FILE} beside --metrics-out)",
    )
    a("--cpus", default=None, help="pin the target's processes to these CPUs, e.g. 1 or 0-1")
    a(
        "--session-max-s",
        type=float,
        default=0.0,
        help="close each held connection with 1001 after U(0.5, 1.5) x this many s (0: never; steady churn)",
    )
    a(
        "--resume-window",
        type=float,
        default=0.0,
        help="s after a session's close within which the same client (header X-WSStorm-Session) resumes it "
        "(0: no resume, every admission starts a session)",
    )
    a("--resume-cost-ms", type=float, default=0.0, help="CPU ms a resumed session costs instead of --session-cost-ms")
    a(
        "--session-start-rate",
        type=float,
        default=0.0,
        help="new sessions started per second, all serving processes together (token bucket; 0: no limit)",
    )
    a(
        "--session-refuse-code",
        type=int,
        default=1013,
        help="close code sent right after the upgrade to a session start over --session-start-rate (default 1013)",
    )
    a("--lame-duck-grace", type=float, default=LAME_DUCK_GRACE_S, help="SIGUSR2 lame duck: s before closing starts")
    a(
        "--lame-duck-duration",
        type=float,
        default=LAME_DUCK_WINDOW_S,
        help="SIGUSR2 lame duck: s over which the clients are closed, after the grace",
    )
    a("--lame-duck-code", type=int, default=1001, help="SIGUSR2 lame duck: the close code (1001 or 1012)")
    a("--overload", default="close", help="how it refuses when full: close (1013) | http (503) | refuse (TCP)")
    a("--retry-hint", type=float, default=None, help="seconds: put retry-after=<s> in the 1013 reason / Retry-After")
    a("--workers", type=int, default=1, help="serving processes on one port (SO_REUSEPORT)")
    a("--admin-port", type=int, default=0, help="admin API port on 127.0.0.1 (0: ephemeral)")
    a(
        "--auth-token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' on every handshake (else 401); prefer the {AUTH_TOKEN_ENV} "
        "environment variable, which is read when this is not given (argv shows in ps and in logs)",
    )
    a("--admin-token", default=None, help="admin Bearer token (default: generated, printed in the ready line)")
    a("--metrics-out", default=None, help="append per-second tick lines (server.jsonl) to this file")
    a("--proxy-port", type=int, default=None, help="start the fault proxy in front on this port (0: ephemeral)")
    a("--max-size", type=int, default=1 << 20, help="max message size in bytes (bigger: close 1009)")
    a(
        "--handshake-timeout",
        "--open-timeout",
        dest="open_timeout",
        type=float,
        default=10.0,
        help="seconds a handshake (TLS, then WebSocket) may take before the server drops it (counted as shed)",
    )
    a("--close-timeout", type=float, default=5.0, help="seconds to wait for the client's Close answer")
    a("--restart-down", type=float, default=3.0, help="seconds refusing after SIGHUP's restart")
    a("--backlog", type=int, default=4096, help="listen backlog per serving process")
    a("--uvloop", action="store_true", help="use uvloop in the serving processes (needs uvloop installed)")
    a(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started it dies (no orphaned servers after a killed load run)",
    )


def validate(args: argparse.Namespace) -> None:
    """Raise UsageError for any option out of range (one line each)."""
    if args.auth_token is None:
        args.auth_token = os.environ.get(AUTH_TOKEN_ENV) or None
    if args.auth_token is not None:
        check_auth_token(args.auth_token)
    if args.capacity <= 0:
        raise UsageError(f"--capacity must be a positive integer, got {args.capacity}")
    if not args.handshake_rate >= 0:
        raise UsageError(f"--handshake-rate must be >= 0 (0: no bucket), got {args.handshake_rate:g}")
    if args.handshake_burst is not None and not args.handshake_burst >= 1:
        raise UsageError(f"--handshake-burst must be >= 1, got {args.handshake_burst:g}")
    for name in ("handshake_cost_ms", "attempt_cost_ms", "session_cost_ms", "store_ms"):
        check_cost(name, getattr(args, name))
    if not 0 <= args.store_concurrency <= 256:
        raise UsageError(f"--store-concurrency must be 0..256, got {args.store_concurrency}")
    if not args.session_max_s >= 0:
        raise UsageError(f"--session-max-s must be >= 0, got {args.session_max_s:g}")
    check_session_settings(args.resume_window, args.resume_cost_ms, args.session_start_rate, args.session_refuse_code)
    check_lame_duck(args.lame_duck_grace, args.lame_duck_duration, args.lame_duck_code, prefix="--lame-duck-")
    args.cpu_list = parse_cpus(args.cpus) if args.cpus is not None else None
    if args.tls:
        from wsstorm.target.tls import check_ca_out

        if args.ca_out is None and args.metrics_out is None:
            raise UsageError("--tls needs --ca-out PATH (or --metrics-out): where to write the CA file")
        args.ca_out = args.ca_out or os.path.join(os.path.dirname(os.path.abspath(args.metrics_out)), names.CA_FILE)
        check_ca_out(args.ca_out)
    elif args.ca_out is not None:
        raise UsageError("--ca-out needs --tls")
    if args.overload not in OVERLOAD_MODES:
        raise UsageError(f"--overload must be one of {', '.join(OVERLOAD_MODES)}, got {args.overload!r}")
    if args.retry_hint is not None and not args.retry_hint >= 0:
        raise UsageError(f"--retry-hint must be >= 0, got {args.retry_hint:g}")
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers must be 1..64, got {args.workers}")
    for opt in ("port", "admin_port", "proxy_port"):
        v = getattr(args, opt)
        if v is not None and not 0 <= v <= 65535:
            raise UsageError(f"--{opt.replace('_', '-')} must be 0..65535, got {v}")
    if args.max_size < 1:
        raise UsageError(f"--max-size must be >= 1, got {args.max_size}")
    for opt in ("open_timeout", "close_timeout"):
        if not getattr(args, opt) > 0:
            raise UsageError(f"--{opt.replace('_', '-')} must be > 0")
    if not args.restart_down >= 0:
        raise UsageError("--restart-down must be >= 0")
    if args.uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise UsageError("--uvloop needs the uvloop package (pip install uvloop==0.23.0)") from None


def check_auth_token(token: str) -> None:
    """A bearer token the server can compare: visible ASCII without spaces (never echoed: it is a secret)."""
    if not token or not all(33 <= ord(ch) <= 126 for ch in token):
        raise UsageError(f"--auth-token / {AUTH_TOKEN_ENV} must be non-empty visible ASCII without spaces")


def check_lame_duck(grace: float, duration: float, code: int, prefix: str = "") -> None:
    """Lame-duck parameters: grace and window finite and >= 0, the code 1001 or 1012."""
    for name, value in (("grace", grace), ("duration", duration)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise UsageError(f"{prefix}{name} must be a number >= 0, got {value!r}")
    if code not in LAME_DUCK_CODES:
        raise UsageError(f"{prefix}code must be 1001 or 1012, got {code!r}")


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket on host:port to own the port; UsageError if it is taken.

    A bound, non-listening socket keeps the port ours while every serving process is down, and the
    kernel still refuses connections to it (nothing listens), which is what restart/crash need.
    """
    if port != 0:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((host, port))  # without SO_REUSEPORT: fails if anyone holds the port
        except OSError as exc:
            raise UsageError(f"port {port} on {host} is in use ({exc.strerror or exc})") from None
        finally:
            probe.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot bind {host}:{port} ({exc.strerror or exc})") from None
    return sock
