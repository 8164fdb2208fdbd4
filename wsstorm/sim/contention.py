"""The classic contention experiment (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).

N clients each update one shared row once, with optimistic concurrency: read the row's
version, then write conditionally on it; a write whose version is stale fails, and the
client backs off with its policy and starts over with a new read. As in the blog's own
simulator (github.com/aws-samples/aws-arch-backoff-simulator), the read and the write are
separate round trips over a network whose one-way delay is |N(10 ms, 2 ms)|, and events
happen in continuous time. That is what lets clients that start together drift apart: a
slotted model (one read+write per slot, everyone in slot 0) keeps them colliding in
lock-step for ever, and overstates the work of no backoff and of plain exponential 2-3x.

Measured: ``calls`` (writes the server handled) and the time until the last client is done.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# The blog's simulator: backoff base 5 ms, cap 2 s; network delay |N(10 ms, 2 ms)| each way.
BLOG_BASE_S = 0.005
BLOG_CAP_S = 2.0
BLOG_NET_MEAN_S = 0.010
BLOG_NET_SD_S = 0.002
# The blog's simulator counts a client's attempts from 1 before the first backoff, so its
# exponential family waits base * 2**n with n = 1, 2, ... (the first retry waits 2 * base);
# wsstorm's presets wait base * 2**(k-1) with k = 1, 2, ...  Same delays: our base = 2 ** 1 * theirs.
BLOG_FIRST_EXPONENT = 1

# The blog's algorithm names (its CSV's Algorithm column) -> wsstorm presets.
AWS_ALGORITHMS: dict[str, str] = {
    "None": "immediate",  # NoBackoff: retry at once ("none" in wsstorm means never retry)
    "Exponential": "exponential",
    "Decorr": "decorrelated-jitter",
    "EqualJitter": "equal-jitter",
    "FullJitter": "full-jitter",
}

_READ, _READ_RSP, _WRITE, _WRITE_RSP = 0, 1, 2, 3
_DRAWS = 16  # backoff delays drawn per client at a time (a policy's draws depend only on its own history)
_CHUNK = 4096  # network delays drawn at a time


@dataclass(frozen=True)
class Network:
    """One-way delay of every message: |N(mean, sd)| seconds (the blog's simulator: 10 ms, 2 ms)."""

    mean_s: float = BLOG_NET_MEAN_S
    sd_s: float = BLOG_NET_SD_S


@dataclass(frozen=True)
class ContentionResult:
    """Total calls (conditional writes), the time until the last client was done, clients that gave up."""

    clients: int
    calls: int
    time_s: float
    gave_up: int = 0


@dataclass(frozen=True)
class ContentionStats:
    """Means over repetitions of the experiment (as the blog's simulator reports them: 100 runs)."""

    policy: str
    clients: int
    reps: int
    calls: float
    time_s: float
    calls_sd: float
    time_sd: float


def aws_policy(algorithm: str, base_s: float = BLOG_BASE_S, cap_s: float = BLOG_CAP_S) -> str:
    """The wsstorm policy text that waits exactly as the blog's ``algorithm`` does with base and cap."""
    try:
        name = AWS_ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {', '.join(AWS_ALGORITHMS)}") from None
    if name == "immediate":
        return name
    if name == "decorrelated-jitter":  # min(cap, U(base, 3 * previous)), previous = base at first: same rule
        return f"{name}:base={base_s:g},cap={cap_s:g}"
    return f"{name}:base={base_s * 2**BLOG_FIRST_EXPONENT:g},cap={cap_s:g}"


def _hops(rng: np.random.Generator, net: Network) -> Callable[[], float]:
    """A source of one-way network delays, drawn in chunks (the event loop takes one at a time)."""
    buf: list[float] = []

    def hop() -> float:
        if not buf:
            buf.extend(np.abs(rng.normal(net.mean_s, net.sd_s, _CHUNK)).tolist()[::-1])
        return buf.pop()

    return hop


class _Backoffs:
    """Each client's sequence of backoff delays from a vector policy, drawn ahead in rounds.

    A contention client never opens a connection and always fails the same way, so its k-th
    delay depends only on its own k-1 earlier ones: drawing them ahead changes no distribution.
    """

    def __init__(self, policy: Any, clients: int) -> None:
        self.pol = policy
        self.n = clients
        self.buf: list[list[float]] = [[] for _ in range(clients)]
        self.pos = [0] * clients
        self.live = np.ones(clients, dtype=bool)
        self._draw()

    def _draw(self) -> None:
        idx = np.flatnonzero(self.live)
        if idx.size == 0:
            return
        zero = np.zeros(idx.size)
        # 409 Conflict: a failed attempt, not a close (no uptime, no hint)
        rows = np.stack([self.pol.next_delays(idx, "http_409", zero, None) for _ in range(_DRAWS)], axis=1)
        for c, row in zip(idx.tolist(), rows.tolist(), strict=False):
            self.buf[c].extend(row)

    def done(self, c: int) -> None:
        self.live[c] = False

    def next(self, c: int) -> float:
        """The client's next delay (NaN: its policy gives up)."""
        if self.pos[c] >= len(self.buf[c]):
            self._draw()
        d = self.buf[c][self.pos[c]]
        self.pos[c] += 1
        return d


def contend(policy: Any, clients: int, seed: int = 1, net: Network = Network()) -> ContentionResult:
    """One run of the experiment with a vector policy (see :func:`wsstorm.sim.simulate.fleet_policy`).

    Every client starts at t = 0; the server handles messages in arrival order.
    """
    rng = np.random.default_rng([seed, 0xCAFE])
    hop = _hops(rng, net)
    back = _Backoffs(policy, clients)
    # (arrival time, sequence number for ties, kind, client, version or write outcome)
    heap: list[tuple[float, int, int, int, int]] = [(hop(), c, _READ, c, 0) for c in range(clients)]
    heapq.heapify(heap)
    seq = clients
    version = calls = gave_up = 0
    t = 0.0
    push, pop = heapq.heappush, heapq.heappop
    while heap:
        t, _, kind, c, v = pop(heap)
        seq += 1
        if kind == _READ:  # the server answers with the row's version
            push(heap, (t + hop(), seq, _READ_RSP, c, version))
        elif kind == _READ_RSP:  # the client writes, conditional on the version it read
            push(heap, (t + hop(), seq, _WRITE, c, v))
        elif kind == _WRITE:
            calls += 1
            ok = v == version
            if ok:
                version += 1
            push(heap, (t + hop(), seq, _WRITE_RSP, c, int(ok)))
        elif v:  # the write succeeded: this client is done
            back.done(c)
        else:
            d = back.next(c)
            if math.isnan(d):  # a policy that gives up leaves the race without an update
                back.done(c)
                gave_up += 1
                continue
            push(heap, (t + d + hop(), seq, _READ, c, 0))
    return ContentionResult(clients=clients, calls=calls, time_s=t, gave_up=gave_up)


def experiment(
    policy_text: str, clients: int, reps: int = 100, seed: int = 1, net: Network = Network()
) -> ContentionStats:
    """Mean calls and completion time over ``reps`` independent runs (each its own seed)."""
    from wsstorm.sim.simulate import fleet_policy, parse_policy_text

    spec = parse_policy_text(policy_text)
    runs = [
        contend(fleet_policy(spec, clients, seed=seed * 100_003 + r), clients, seed=seed * 100_003 + r, net=net)
        for r in range(reps)
    ]
    calls = np.array([r.calls for r in runs], dtype=float)
    times = np.array([r.time_s for r in runs])
    return ContentionStats(
        policy=str(spec),
        clients=clients,
        reps=reps,
        calls=float(calls.mean()),
        time_s=float(times.mean()),
        calls_sd=float(calls.std()),
        time_sd=float(times.std()),
    )
