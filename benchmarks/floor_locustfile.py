"""The floor with Locust: bench_floor's bare peers connection inside a minimal Locust user.

Each user runs one floor_client.echo_session (no request events, no event records, no policy,
no pings) and then idles until the run ends: what Locust itself (runner, user greenlet, stats)
costs on bench_vs_peers' workload, beneath anything wsstorm adds.
Run by bench_floor.py: ``locust -f benchmarks/floor_locustfile.py --headless -u N -r N/10 ...``.
"""

from __future__ import annotations

import gevent
import locust  # noqa: F401  (first: gevent's monkey patching before sockets)
from locust import User, task

import contextlib
from urllib.parse import urlsplit

import floor_client  # this file's folder is on sys.path: Locust puts it there

ECHOES, EVERY_S, MESSAGE = 4, 5.0, b"x" * 64


class FloorUser(User):
    """One bare connection of the workload, then idle (the task must not return: Locust would rerun it)."""

    @task
    def hold(self) -> None:
        u = urlsplit(self.host or "")
        with contextlib.suppress(OSError):  # a failed one shows in the server's count of connections
            floor_client.echo_session(u.hostname or "127.0.0.1", u.port or 80, ECHOES, EVERY_S, MESSAGE)
        while True:
            gevent.sleep(3600)
