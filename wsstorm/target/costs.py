"""The cost model of one connect attempt: real CPU work, and how its milliseconds are accounted.

An attempt pays, in order: the TLS handshake (with --tls), the attempt cost (authentication CPU),
a call to the dependency store (a wait for a free slot, then the store's own CPU), and, once
admitted, the session cost. `account` says which of these milliseconds were useful and which were
wasted, from how the attempt ended: the one definition the serving process and its tests share.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

# One chunk of work: ~0.1 ms of PBKDF2-HMAC-SHA256 on a 2020s core. Small enough that a
# burn overshoots its target by little; PBKDF2 releases the GIL, so store threads really run
# in parallel where there are cores to run on.
_CHUNK_ITERATIONS = 200
_SALT = b"wsstorm-cost-model"


def cpu_work(ms: float) -> float:
    """Do `ms` milliseconds of real CPU work (key stretching, as password/token checks do) on this thread.

    Measured on the thread's own CPU clock, so time spent preempted by other processes does not
    count as work done. Returns the CPU milliseconds actually spent (>= ms, or 0 for ms <= 0).
    """
    if ms <= 0:
        return 0.0
    start = time.thread_time()
    end = start + ms / 1000.0
    password = b"token"
    while time.thread_time() < end:
        password = hashlib.pbkdf2_hmac("sha256", password, _SALT, _CHUNK_ITERATIONS)
    return (time.thread_time() - start) * 1000.0


# How an attempt ended, seen from the server.
GOODPUT = "goodput"  # admitted, session set up, the 101 went to a client the server believed connected
REJECTED = "rejected"  # turned away (1013 / 503 / refused) while the client was still there
ABANDONED = "abandoned"  # the server finished its work after the client had already left
SHED = "shed"  # dropped by the server's handshake timeout before it finished
KILLED = "killed"  # cut off by the server itself (a restart aborting handshakes in flight)
LOST = "lost"  # the client left, or sent garbage, before the server had anything to finish
OUTCOMES = (GOODPUT, REJECTED, ABANDONED, SHED, KILLED, LOST)


@dataclass
class AttemptCost:
    """CPU milliseconds one attempt made the server spend, by part (store_ms: the store's CPU for it)."""

    tls_ms: float = 0.0
    attempt_ms: float = 0.0
    store_ms: float = 0.0
    session_ms: float = 0.0

    @property
    def pre_ms(self) -> float:
        """Work before the admission decision: paid by every attempt, admitted or not."""
        return self.tls_ms + self.attempt_ms + self.store_ms

    @property
    def total_ms(self) -> float:
        return self.pre_ms + self.session_ms


@dataclass(frozen=True)
class Accounted:
    """What one finished attempt adds to a tick."""

    work_ms: float
    wasted_ms: float
    goodput: int
    abandoned: int


def account(cost: AttemptCost, outcome: str) -> Accounted:
    """The work and waste of an attempt that ended with `outcome` (one of OUTCOMES).

    goodput wastes nothing; a rejection wastes its pre-admission work (a rejected attempt never
    pays the session cost); an abandoned, shed or killed attempt wastes all it cost, since no
    client was left to use any of it (so is a lost one: whatever the server did for it, such as
    its side of a TLS handshake, was for nobody).
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    total = cost.total_ms
    if outcome == GOODPUT:
        wasted = 0.0
    elif outcome == REJECTED:
        wasted = cost.pre_ms
    else:
        wasted = total
    return Accounted(
        work_ms=total, wasted_ms=wasted, goodput=int(outcome == GOODPUT), abandoned=int(outcome == ABANDONED)
    )
