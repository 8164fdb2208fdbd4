"""The shared-memory layout of `wsstorm serve`: indexes into the settings and bucket arrays, and the bucket rule.

The supervisor allocates the arrays; every serving process maps them (see wsstorm.target.worker).
"""

from __future__ import annotations

# Indexes into the shared settings array (doubles). CFG_COST (handshake_cost_ms, the v1 name) and
# CFG_SESSION are both CPU after admission; CFG_ATTEMPT is CPU before the admission decision.
CFG_CAPACITY, CFG_RATE, CFG_BURST, CFG_MODE, CFG_HINT, CFG_COST, CFG_ATTEMPT, CFG_SESSION = range(8)
# Session start versus resume (wsstorm.target.sessions): window s, resume CPU ms, starts/s, refuse code.
CFG_RESUME_WINDOW, CFG_RESUME_COST, CFG_START_RATE, CFG_REFUSE_CODE = range(8, 12)
CFG_SIZE = 12
# Indexes into the shared bucket array (doubles): the handshake bucket, then the session start bucket.
B_TOKENS, B_LAST, B_STARTS, B_STARTS_LAST = 0, 1, 2, 3
B_SIZE = 4


def refill(tokens: float, last: float, now: float, rate: float, burst: float) -> float:
    """Tokens in a bucket of size `burst` refilled at `rate`/s from `last` to `now`."""
    return min(burst, tokens + max(0.0, now - last) * rate)
