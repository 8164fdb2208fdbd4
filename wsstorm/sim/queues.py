"""The fleet model's two data structures: a calendar of per-tick client events, and FIFO queues of attempts.

Both hold numpy arrays of client indices in chunks, so their cost is per chunk (one per tick
and stage), not per client.
"""

from __future__ import annotations

from collections import deque

import numpy as np

_EMPTY_I64 = np.empty(0, dtype=np.int64)
_EMPTY_I32 = np.empty(0, dtype=np.int32)


class Calendar:
    """Per-tick buckets of (client, serial); an entry is live only if the client's serial still matches.

    Each schedule gives the client a new serial, so a client rescheduled within the same tick
    (a rejection whose retry lands where its old timeout was) is never handled twice.
    """

    def __init__(self, n_ticks: int) -> None:
        self.n = n_ticks
        self.buckets: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def add(self, idx: np.ndarray, ticks: np.ndarray, serial: np.ndarray) -> None:
        """File each client idx[i] at ticks[i] under serial[i] (ticks past the end are dropped)."""
        keep = ticks < self.n
        if not keep.all():
            idx, ticks, serial = idx[keep], ticks[keep], serial[keep]
        if idx.size == 0:
            return
        if idx.size == 1 or ticks.min() == ticks.max():
            self.buckets.setdefault(int(ticks[0]), []).append((idx, serial))
            return
        order = np.argsort(ticks, kind="stable")
        idx, ticks, serial = idx[order], ticks[order], serial[order]
        cuts = np.flatnonzero(np.diff(ticks)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [idx.size]))
        for tk, a, b in zip(ticks[starts].tolist(), starts.tolist(), ends.tolist()):
            self.buckets.setdefault(tk, []).append((idx[a:b], serial[a:b]))

    def pop(self, tick: int, current: np.ndarray) -> np.ndarray | None:
        """The clients due at ``tick`` whose serial is still ``current[client]``."""
        parts = self.buckets.pop(tick, None)
        if not parts:
            return None
        if len(parts) == 1:
            idx, ser = parts[0]
        else:
            idx = np.concatenate([p[0] for p in parts])
            ser = np.concatenate([p[1] for p in parts])
        live = current[idx] == ser
        return idx if live.all() else idx[live]


class Fifo:
    """A FIFO of attempts: chunks of (arrival tick, client indices, attempt numbers).

    The attempt number tells a live entry from a stale one: a client that gave up on this
    attempt (connect timeout) and started another has moved on; the server does not know.
    """

    def __init__(self) -> None:
        self.chunks: deque[tuple[int, np.ndarray, np.ndarray]] = deque()
        self.size = 0

    def push(self, tick: int, idx: np.ndarray, seq: np.ndarray) -> None:
        if idx.size:
            self.chunks.append((tick, idx, seq))
            self.size += idx.size

    def push_parts(self, parts: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        for tick, idx, seq in parts:
            self.push(tick, idx, seq)

    def expire(self, before_tick: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Drop and return the head entries that arrived before ``before_tick``."""
        out = []
        while self.chunks and self.chunks[0][0] < before_tick:
            out.append(self.chunks.popleft())
        if not out:
            return None
        idx = np.concatenate([c[1] for c in out])
        seq = np.concatenate([c[2] for c in out])
        self.size -= idx.size
        return idx, seq

    def take_parts(self, n: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Pop up to n entries from the head, as chunks (arrival ticks kept)."""
        out = []
        while n > 0 and self.chunks:
            tick, idx, seq = self.chunks[0]
            if idx.size <= n:
                out.append(self.chunks.popleft())
                n -= idx.size
                self.size -= idx.size
            else:
                out.append((tick, idx[:n], seq[:n]))
                self.chunks[0] = (tick, idx[n:], seq[n:])
                self.size -= n
                n = 0
        return out

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Pop up to n entries from the head: (clients, attempt numbers)."""
        return join(self.take_parts(n))

    def clear(self) -> tuple[np.ndarray, np.ndarray]:
        return join(self.take_parts(self.size))


def join(parts: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Chunks -> (clients, attempt numbers)."""
    if not parts:
        return _EMPTY_I64, _EMPTY_I32
    if len(parts) == 1:
        return parts[0][1], parts[0][2]
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
