"""The classic contention experiment (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).

N clients each want to update one shared row with optimistic concurrency. Time
is cut into slots (one read-then-conditional-write round trip each); of the
clients that try in the same slot exactly one wins, the others fail and back off
with their reconnect policy. The blog's finding, which this model reproduces:
exponential backoff without jitter does the most work (calls), full jitter the
fewest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The blog's simulator: backoff base 5 ms, cap 2 s, network delay 10 ms each way.
BLOG_BASE_S = 0.005
BLOG_CAP_S = 2.0
BLOG_SLOT_S = 0.02  # a read and a write, 10 ms each


@dataclass(frozen=True)
class ContentionResult:
    """Total calls (tries), and the time until the last client succeeded."""

    clients: int
    calls: int
    time_s: float


def contend(policy: Any, clients: int, seed: int = 1, slot_s: float = BLOG_SLOT_S,
            max_slots: int = 10_000_000) -> ContentionResult:
    """Run the experiment with a vector policy (see :func:`wsstorm.sim.simulate.fleet_policy`): every client starts in slot 0."""
    rng = np.random.default_rng([seed, 0xCAFE])
    nxt = np.zeros(clients, dtype=np.int64)
    pending = np.ones(clients, dtype=bool)
    calls = 0
    last = 0
    while pending.any():
        alive = np.flatnonzero(pending)
        s = int(nxt[alive].min())
        if s > max_slots:
            break
        due = alive[nxt[alive] == s]
        calls += due.size
        win = due[rng.integers(due.size)]
        pending[win] = False
        last = s
        losers = due[due != win]
        if losers.size:
            d = policy.next_delays(losers, "http_409", np.zeros(losers.size), None)  # 409 Conflict: a failed attempt, not a close
            d = np.where(np.isnan(d), np.inf, d)
            gone = ~np.isfinite(d)
            pending[losers[gone]] = False  # a policy that gives up leaves the race without an update
            ok = losers[~gone]
            nxt[ok] = s + 1 + np.floor(d[~gone] / slot_s + 1e-9).astype(np.int64)
    return ContentionResult(clients=clients, calls=calls, time_s=(last + 1) * slot_s)
