"""Socket-level scale helpers: the open-files limit and loopback source-address spreading."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import resource
import socket

# One (source address, destination) pair has ~28k ephemeral ports on Linux; stay well under.
PER_SOURCE = 20_000
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the open-files soft limit to the hard limit; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def is_loopback(host: str) -> bool:
    """True if ``host`` names the loopback interface (127/8, ::1, localhost)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def source_address(index: int, process_slot: int, always: bool = False) -> str | None:
    """Source address for a process's ``index``-th user on loopback, or None for the default.

    The first PER_SOURCE users of a single process use the default source; beyond that (or
    always, for one of several processes on one machine) each PER_SOURCE block gets its own
    127.P.B.1 address, P distinct per process, so no (source, destination) pair runs out of ports.
    """
    block = index // PER_SOURCE
    if block == 0 and not always:
        return None
    return f"127.{1 + process_slot % 250}.{block % 256}.1"


def process_slot() -> int:
    """A small number distinct between concurrent processes on one machine (from the pid)."""
    return os.getpid()
