"""Figures saved as PNG files on every core the process may use: forked children render shares of them.

matplotlib draws a figure on one core, and a report's charts are independent of each other.  The
figures are built once, in this process; a child forked after that inherits them and only draws and
encodes its share, so on two cores the charts of a report take about half the wall time.  Without
fork, or when a child fails, this process saves that share itself: a chart is never lost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_WORKERS = 4  # past the machine's cores a fork only adds its own cost


def cores() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - no affinity on this platform
        return os.cpu_count() or 1


def _save(share: Sequence[tuple[Any, Path]], dpi: float | None) -> None:
    for fig, path in share:
        fig.savefig(path, dpi=dpi if dpi is not None else "figure")


def _fork(share: Sequence[tuple[Any, Path]], dpi: float | None) -> int | None:
    """A child that saves ``share`` and exits (status 0 when every file is written); None if fork fails."""
    try:
        pid = os.fork()
    except OSError:  # out of processes or memory: the parent draws this share
        return None
    if pid == 0:  # pragma: no cover - runs in the child (coverage does not follow os._exit)
        status = 1
        try:
            _save(share, dpi)
            status = 0
        finally:
            # no interpreter shutdown: the parent's buffers, atexit hooks and threads are not the child's
            os._exit(status)
    return pid


def save_all(items: Sequence[tuple[Any, Path]], dpi: float | None = None, workers: int | None = None) -> None:
    """Save each (Figure, path) as a PNG; up to ``workers`` (default: the usable cores) processes share them."""
    items = list(items)
    n = min(workers if workers is not None else cores(), len(items), MAX_WORKERS)
    if n < 2 or not hasattr(os, "fork"):
        _save(items, dpi)
        return
    shares = [items[i::n] for i in range(n)]  # interleaved: the charts cost about the same each
    children = [(_fork(share, dpi), share) for share in shares[1:]]
    _save(shares[0], dpi)
    for pid, share in children:
        ok = False
        if pid is not None:
            _, status = os.waitpid(pid, 0)
            ok = os.waitstatus_to_exitcode(status) == 0
        if not ok:  # the child failed (or never ran): draw its share here, where an error is raised
            _save(share, dpi)


__all__ = ["MAX_WORKERS", "cores", "save_all"]
