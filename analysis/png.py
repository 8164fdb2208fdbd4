"""Charts saved as PNG files on every core the process may use: forked children build and draw shares of them.

matplotlib draws a figure on one core, and a report's charts are independent of each other.  A child forked
after the run is loaded builds its share of the charts (or takes figures built before the fork) and draws and
encodes them, while this process goes on with other work (a report's metrics) until :meth:`Drawing.wait`.
Without fork, or when a child fails, this process draws that share itself in ``wait``: a chart is never lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MAX_WORKERS = 4  # past the machine's cores a fork only adds its own cost

# A chart to draw: a function that builds its figure (None: the run has no data for it), and its file.
Job = tuple[Callable[[], Any], Path]


def cores() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - no affinity on this platform
        return os.cpu_count() or 1


def _draw(share: Sequence[Job], dpi: float | None) -> None:
    for make, path in share:
        fig = make()
        if fig is not None:
            fig.savefig(path, dpi=dpi if dpi is not None else "figure")


def _fork(share: Sequence[Job], dpi: float | None) -> int | None:
    """A child that draws ``share`` and exits (status 0 when every file is written); None if fork fails."""
    try:
        pid = os.fork()
    except OSError:  # out of processes or memory: the parent draws this share
        return None
    if pid == 0:  # pragma: no cover - runs in the child (coverage does not follow os._exit)
        status = 1
        try:
            _draw(share, dpi)
            status = 0
        finally:
            # no interpreter shutdown: the parent's buffers, atexit hooks and threads are not the child's
            os._exit(status)
    return pid


class Drawing:
    """Charts being drawn by forked children while this process goes on; :meth:`wait` ends the drawing.

    Each job's file is removed first, so the files that exist afterwards are exactly the charts drawn now
    (a chart whose run has no data leaves no file, not an older build's).  Fork only where no other thread
    runs: a child gets a copy of this one thread alone."""

    def __init__(self, jobs: Sequence[Job], dpi: float | None, workers: int | None, share_here: bool) -> None:
        self.jobs, self.dpi = list(jobs), dpi
        self.here: list[Job] = []
        self.children: list[tuple[int | None, list[Job]]] = []
        for _, path in self.jobs:
            path.unlink(missing_ok=True)
        n = min(workers if workers is not None else cores(), len(self.jobs), MAX_WORKERS)
        if n < 2 or not hasattr(os, "fork"):
            self.here = self.jobs
            return
        shares = [self.jobs[i::n] for i in range(n)]  # interleaved: the charts cost about the same each
        if share_here:  # this process draws one share in wait(), the children the others
            self.here, shares = shares[0], shares[1:]
        # (else this process has its own work meanwhile: the children draw every share)
        self.children = [(_fork(s, dpi), s) for s in shares]

    def wait(self) -> list[Path]:
        """Draw this process's share, wait for the children (drawing here any share whose child failed) and
        return the files written, in the jobs' order."""
        _draw(self.here, self.dpi)
        self.here = []
        children, self.children = self.children, []
        for pid, share in children:
            ok = False
            if pid is not None:
                _, status = os.waitpid(pid, 0)
                ok = os.waitstatus_to_exitcode(status) == 0
            if not ok:  # the child failed (or never ran): draw its share here, where an error is raised
                _draw(share, self.dpi)
        return [path for _, path in self.jobs if path.exists()]

    def abandon(self) -> None:
        """Reap the children without waiting for their charts to matter (this process failed meanwhile)."""
        children, self.children = self.children, []
        for pid, _ in children:
            if pid is not None:
                os.waitpid(pid, 0)


def start(
    jobs: Sequence[Job], dpi: float | None = None, workers: int | None = None, share_here: bool = False
) -> Drawing:
    """Begin drawing ``jobs`` in up to ``workers`` (default: the usable cores) processes; see :class:`Drawing`."""
    return Drawing(jobs, dpi, workers, share_here)


def save_all(items: Sequence[tuple[Any, Path]], dpi: float | None = None, workers: int | None = None) -> None:
    """Save each (Figure, path) as a PNG; up to ``workers`` (default: the usable cores) processes share them."""
    start([(_const(fig), path) for fig, path in items], dpi, workers, share_here=True).wait()


def _const(fig: Any) -> Callable[[], Any]:
    return lambda: fig


__all__ = ["MAX_WORKERS", "Drawing", "Job", "cores", "save_all", "start"]
