"""Settings of the embedded target that more than one module checks: overload modes, CPU lists, costs.

Pure (no sockets, no processes): `wsstorm serve` (the supervisor) and the scenario files
(wsstorm.run.scenario) both validate with these, so a setting means the same in both places.
"""

from __future__ import annotations

import os

from wsstorm.errors import UsageError

OVERLOAD_MODES: tuple[str, ...] = ("close", "http", "refuse")

# The per-attempt cost settings (milliseconds of real CPU work, see wsstorm.target.costs).
COST_KEYS: tuple[str, ...] = ("attempt_cost_ms", "handshake_cost_ms", "session_cost_ms", "store_ms")

# `wsstorm serve` reads its --auth-token from this variable when the option is not given; the load side
# (control.start_target) always passes the token this way, never in argv, which ps and logs show.
AUTH_TOKEN_ENV = "WSSTORM_AUTH_TOKEN"

MAX_CPUS_TEXT = 200  # a CPU list longer than this is not a CPU list


def machine_cpus() -> int:
    """How many CPUs this machine has (the ids 0..n-1 exist)."""
    return os.cpu_count() or 1


def parse_cpus(text: str, available: int | None = None) -> tuple[int, ...]:
    """'1' / '0-1' / '0,2-3' -> (0, 2, 3); UsageError (one line) for a bad list or a CPU that does not exist.

    Checked against the CPUs the machine has, not the caller's own affinity: the runner pins the
    harness to core 0 before it starts the target, and the target must still be able to take core 1.
    """
    n = machine_cpus() if available is None else available
    raw = str(text).strip()
    if not raw or len(raw) > MAX_CPUS_TEXT:
        raise UsageError(f"cpus must be a CPU list such as '1' or '0-1', got {text!r}")
    out: set[int] = set()
    for part in raw.split(","):
        lo_text, dash, hi_text = part.strip().partition("-")
        if not lo_text.isdigit() or (dash and not hi_text.isdigit()):
            raise UsageError(f"cpus must be a CPU list such as '1' or '0-1', got {text!r}")
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
        if hi < lo:
            raise UsageError(f"cpus: range {part.strip()!r} runs backwards")
        if hi >= n:
            raise UsageError(f"cpus: CPU {hi} does not exist (this machine has CPUs 0-{n - 1})")
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def cpus_text(cpus: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> '0-2,5' (the inverse of parse_cpus)."""
    parts: list[str] = []
    start: int | None = None
    prev = 0  # read only once start is set (then it is the last CPU of the current run)
    for c in sorted(cpus):
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = c
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def pin_self(cpus: tuple[int, ...] | None) -> None:
    """Pin the calling process to `cpus` (no-op for None); UsageError when the kernel refuses."""
    if not cpus:
        return
    try:
        os.sched_setaffinity(0, set(cpus))
    except (OSError, AttributeError) as exc:
        raise UsageError(f"cannot pin to CPUs {cpus_text(cpus)}: {exc}") from None


def check_cost(name: str, value: float | None) -> None:
    """Costs are milliseconds of work: finite and >= 0."""
    if value is not None and not (value >= 0 and value != float("inf")):
        raise UsageError(f"--{name.replace('_', '-')} must be >= 0 ms, got {value:g}")


# Lame-duck mode, as NATS's (docs.nats.io "Lame Duck Mode"): stop accepting, wait a grace period
# (lame_duck_grace_period, default 10 s), then evict the clients spread over a window. NATS's
# lame_duck_duration (default 2 min) includes the grace; wsstorm's `duration` is the window after it.
LAME_DUCK_GRACE_S = 10.0
LAME_DUCK_WINDOW_S = 110.0
LAME_DUCK_CODES: tuple[int, ...] = (1001, 1012)


def sendable_close_code(code: int) -> bool:
    """A close code a server may send (RFC 6455 7.4: 1000-1003, 1007-1014, and 3000-4999 for applications)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or 3000 <= code <= 4999


def check_session_settings(
    resume_window: float, resume_cost_ms: float, session_start_rate: float, session_refuse_code: int
) -> None:
    """The session settings: windows, costs and rates finite and >= 0; the refuse code one a server may send."""
    for name, value in (
        ("resume_window", resume_window),
        ("resume_cost_ms", resume_cost_ms),
        ("session_start_rate", session_start_rate),
    ):
        if not (value >= 0 and value != float("inf")):
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value:g}")
    if isinstance(session_refuse_code, bool) or not isinstance(session_refuse_code, int):
        raise UsageError(f"--session-refuse-code must be an integer close code, got {session_refuse_code!r}")
    if not sendable_close_code(session_refuse_code):
        raise UsageError(
            f"--session-refuse-code must be a close code a server may send (1000-1003, 1007-1014, "
            f"3000-4999), got {session_refuse_code}"
        )
