"""Session start versus resume (as Discord's gateway has), and the lame-duck close schedule (as NATS has).

The session table lives in shared memory (the supervisor allocates it, every serving process maps it),
so a client that reconnects through SO_REUSEPORT to another serving process still resumes, and the
table survives a crashed serving process. Pure logic over the arrays; the caller holds the lock.
"""

from __future__ import annotations

import hashlib
from typing import Any

SESSION_HEADER = "X-WSStorm-Session"  # the client's stable identity (the load side sends `{user}`)
RESUMED_HEADER = "X-WSStorm-Resumed"  # on the 101: "1" resumed, "0" a new session
TABLE_SLOTS = 1 << 16  # sessions remembered at once; beyond that the oldest probed entry is forgotten
PROBES = 16  # linear probing: how many slots one key may occupy
# While a session is connected its time slot holds -(proc + 1), the serving process that holds it:
# nothing can resume it then, and when that process crashes the supervisor closes them all at once.
MAX_KEY = 256  # longer identities are cut (a header is untrusted input)


def session_key(value: str | None) -> int:
    """A non-zero signed 64-bit key for a client's identity (0: none given)."""
    if not value:
        return 0
    digest = hashlib.blake2b(value[:MAX_KEY].encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True) or 1


def _slots(key: int, n: int) -> list[int]:
    start = key % n
    return [(start + i) % n for i in range(min(PROBES, n))]


def resumable(keys: Any, times: Any, key: int, now: float, window: float) -> bool:
    """True if `key`'s session closed at most `window` s before `now` (and is not connected now)."""
    if key == 0 or window <= 0:
        return False
    for slot in _slots(key, len(keys)):
        if keys[slot] == key:
            closed = times[slot]
            return closed >= 0 and 0 <= now - closed <= window
    return False


def begin(keys: Any, times: Any, key: int, proc: int, now: float, window: float) -> None:
    """Mark `key`'s session connected (held by serving process `proc`); a new key takes a free slot,
    else one whose session is past the window, else the oldest closed one. Caller holds the lock."""
    free = None
    oldest = None
    for slot in _slots(key, len(keys)):
        t = times[slot]
        if keys[slot] == key:
            times[slot] = -(proc + 1)
            return
        if free is None and (keys[slot] == 0 or (t >= 0 and now - t > window)):
            free = slot
        if t >= 0 and (oldest is None or t < times[oldest]):
            oldest = slot
    chosen = free if free is not None else oldest
    if chosen is None:
        return  # every probed slot holds a connected session: this one will not be resumable
    keys[chosen], times[chosen] = key, -(proc + 1)


def end(keys: Any, times: Any, key: int, now: float) -> None:
    """The connected session of `key` closed at `now`: from here it may be resumed. Caller holds the lock."""
    for slot in _slots(key, len(keys)):
        if keys[slot] == key:
            if times[slot] < 0:
                times[slot] = now
            return


def end_all_of(times: Any, proc: int, now: float) -> int:
    """Serving process `proc` died: every session it held closed at `now` (resumable from there). Returns how many."""
    marker = -(proc + 1)
    n = 0
    for slot in range(len(times)):
        if times[slot] == marker:
            times[slot] = now
            n += 1
    return n


def lame_duck_offsets(n: int, window: float) -> list[float]:
    """When (s after the grace period) each of `n` clients is closed: evenly spread over `window`.

    Client i closes at window * i / n: the first at once, the last one slot before the window's end
    (so the server is empty when the window ends, as NATS's lame-duck eviction is).
    """
    if n <= 0:
        return []
    return [window * i / n for i in range(n)]
