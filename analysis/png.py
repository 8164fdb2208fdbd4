"""Charts saved as PNG files on every core the process may use: forked children build and draw them.

matplotlib draws a figure on one core, and a report's charts are independent of each other.  Children forked
after the run is loaded take the charts one at a time from a queue (a pipe filled before the fork), build
each (or take a figure built before the fork), draw and encode it, while this process goes on with other work
(a report's metrics); in :meth:`Drawing.wait` it takes charts from the same queue until it is empty, so no core
waits while another has charts left.  Without fork, or when a child fails, this process draws what the child
did not finish: a chart is never lost.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    import posix
except ImportError:  # pragma: no cover - not a POSIX system: no fork, one process draws every chart
    posix = None  # type: ignore[assignment]

MAX_WORKERS = 4  # past the machine's cores a fork only adds its own cost

# A chart to draw: a function that builds its figure (None: the run has no data for it), and its file.
Job = tuple[Callable[[], Any], Path]

# The system's own fork and waitpid, also where gevent has patched os (tests, or a caller's gevent process):
# a child only draws, reads and writes its pipes and leaves by os._exit, so it needs nothing of gevent's
# fork (whose child watchers, here, held the parent's event loop).
_fork: Callable[[], int] | None = getattr(posix, "fork", None) if posix is not None else None
_waitpid: Callable[[int, int], tuple[int, int]] = getattr(posix, "waitpid", os.waitpid)

_INDEX = struct.Struct("=I")  # one queued job: its index (a pipe read this short is never split between readers)


def cores() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - no affinity on this platform
        return os.cpu_count() or 1


def _draw(job: Job, dpi: float | None) -> None:
    make, path = job
    fig = make()
    if fig is not None:
        fig.savefig(path, dpi=dpi if dpi is not None else "figure")


def _take(queue: int) -> int | None:
    """The next job's index from the queue's read end (non-blocking: the queue is filled before any read);
    None when it is empty."""
    try:
        data = os.read(queue, _INDEX.size)
    except BlockingIOError:  # empty, with a write end still open somewhere (gevent's hub can keep one)
        return None
    return _INDEX.unpack(data)[0] if data else None


class Drawing:
    """Charts being drawn by forked children while this process goes on; :meth:`wait` ends the drawing.

    Each job's file is removed first, so the files that exist afterwards are exactly the charts drawn now
    (a chart whose run has no data leaves no file, not an older build's).  Fork only where no other thread
    runs: a child gets a copy of this one thread alone."""

    def __init__(self, jobs: Sequence[Job], dpi: float | None, workers: int | None) -> None:
        self.jobs, self.dpi = list(jobs), dpi
        self.children: list[int] = []
        self.queue: int | None = None  # read end of the job queue
        self.done: tuple[int, int] | None = None  # the pipe on which children name each job they finished
        for _, path in self.jobs:
            path.unlink(missing_ok=True)
        n = min(workers if workers is not None else cores(), len(self.jobs), MAX_WORKERS)
        if n < 2 or _fork is None:
            return
        queue, fill = os.pipe()
        # (a report has ~10 charts: the queue, and the children's list of finished jobs, stay far below the
        # 64 KiB a pipe holds, so no write here or in a child waits for a reader)
        os.write(fill, b"".join(_INDEX.pack(i) for i in range(len(self.jobs))))
        os.close(fill)
        os.set_blocking(queue, False)  # an empty queue is the end: no reader ever waits on it
        self.queue, self.done = queue, os.pipe()
        for _ in range(n - 1):  # this process is the n-th worker, in wait()
            pid = self._spawn()
            if pid is None:
                break
            self.children.append(pid)

    def _spawn(self) -> int | None:
        """A child that draws queued jobs until none is left, naming each one it finished; None if fork fails."""
        assert self.queue is not None and self.done is not None and _fork is not None
        try:
            pid = _fork()
        except OSError:  # out of processes or memory: the others draw its share
            return None
        if pid == 0:  # pragma: no cover - runs in the child (coverage does not follow os._exit)
            status = 1
            try:
                while (i := _take(self.queue)) is not None:
                    _draw(self.jobs[i], self.dpi)
                    os.write(self.done[1], _INDEX.pack(i))
                status = 0
            finally:
                # no interpreter shutdown: the parent's buffers, atexit hooks and threads are not the child's
                os._exit(status)
        return pid

    def wait(self) -> list[Path]:
        """Draw queued jobs here until none is left, wait for the children, draw here any job a failed child
        did not finish, and return the files written, in the jobs' order."""
        if self.queue is None:  # no children: every job is drawn here
            for job in self.jobs:
                _draw(job, self.dpi)
            return self._written()
        drawn = set()
        try:
            while (i := _take(self.queue)) is not None:
                _draw(self.jobs[i], self.dpi)
                drawn.add(i)
        except BaseException:
            self.abandon()
            raise
        drawn |= self._reap()
        for i, job in enumerate(self.jobs):
            if i not in drawn:  # a child took it and failed: drawn here, where an error is raised
                _draw(job, self.dpi)
        return self._written()

    def abandon(self) -> None:
        """Empty the queue, so each child stops after the chart it is drawing, and reap them (this process
        failed meanwhile: no chart is drawn any more)."""
        if self.queue is not None:
            while _take(self.queue) is not None:
                pass
            self._reap()

    def _reap(self) -> set[int]:
        """Wait for every child, close the pipes, and return the jobs the children finished."""
        assert self.queue is not None and self.done is not None
        for pid in self.children:
            with contextlib.suppress(ChildProcessError):  # already reaped (by gevent's SIGCHLD handler)
                _waitpid(pid, 0)
        self.children = []
        os.close(self.done[1])
        # the children have ended, so all they wrote is in the pipe: read it without waiting for its end
        os.set_blocking(self.done[0], False)
        finished = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.done[0], 1 << 16):
                finished += chunk
        os.close(self.done[0])
        os.close(self.queue)
        self.queue = self.done = None
        return {i for (i,) in _INDEX.iter_unpack(finished)}

    def _written(self) -> list[Path]:
        return [path for _, path in self.jobs if path.exists()]


def start(jobs: Sequence[Job], dpi: float | None = None, workers: int | None = None) -> Drawing:
    """Begin drawing ``jobs`` in up to ``workers`` (default: the usable cores) processes, this one included
    from :meth:`Drawing.wait` on; see :class:`Drawing`."""
    return Drawing(jobs, dpi, workers)


def save_all(items: Sequence[tuple[Any, Path]], dpi: float | None = None, workers: int | None = None) -> None:
    """Save each (Figure, path) as a PNG; up to ``workers`` (default: the usable cores) processes share them."""
    start([(_const(fig), path) for fig, path in items], dpi, workers).wait()


def _const(fig: Any) -> Callable[[], Any]:
    return lambda: fig


__all__ = ["MAX_WORKERS", "Drawing", "Job", "cores", "save_all", "start"]
