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
    start = prev = None
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
