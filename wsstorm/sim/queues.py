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
    (a rejection whose retry lands where its old timeout was) is never handled twice. Entries are
    filed by coarse bucket (``coarse`` ticks) and sorted into ticks only when their bucket comes
    up: a batch of reconnect delays spread over thousands of ticks costs one sort, not a slice per tick.
    """

    def __init__(self, n_ticks: int, coarse: int = 100) -> None:
        self.n = n_ticks
        self.coarse = max(1, coarse)
        # per tick: (clients, serials, whole); whole: the serials are a snapshot of every client's, by client
        self.fine: dict[int, list[tuple[np.ndarray, np.ndarray, bool]]] = {}
        self.rough: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.open_bucket = -1  # the coarse bucket already sorted into ticks

    def add(self, idx: np.ndarray, ticks: np.ndarray, serial: np.ndarray) -> None:
        """File each client idx[i] at ticks[i] under serial[i] (ticks past the end are dropped)."""
        keep = ticks < self.n
        if not keep.all():
            idx, ticks, serial = idx[keep], ticks[keep], serial[keep]
        if idx.size == 0:
            return
        lo, hi = int(ticks.min()), int(ticks.max())
        if lo == hi:
            self._file(lo, idx, serial)
            return
        c_lo, c_hi = lo // self.coarse, hi // self.coarse
        if c_lo == c_hi and c_lo != self.open_bucket:
            self.rough.setdefault(c_lo, []).append((idx, ticks, serial))
            return
        cb = ticks // self.coarse
        order = np.argsort(cb, kind="stable")
        idx, ticks, serial, cb = idx[order], ticks[order], serial[order], cb[order]
        cuts = np.flatnonzero(np.diff(cb)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [idx.size]))
        for c, a, b in zip(cb[starts].tolist(), starts.tolist(), ends.tolist(), strict=False):
            if c == self.open_bucket:
                self._split(idx[a:b], ticks[a:b], serial[a:b])
            else:
                self.rough.setdefault(c, []).append((idx[a:b], ticks[a:b], serial[a:b]))

    def add_fleet(self, tick: int, idx: np.ndarray, serials: np.ndarray) -> None:
        """File every client (idx: each once, in any order) at ``tick``; ``serials`` holds every client's serial,
        by client. Within the open bucket the entry keeps a snapshot of them, so that popping it needs no
        per-client check when no client was rescheduled in between (a fleet in lock-step, tick after tick)."""
        if tick >= self.n or idx.size == 0:
            return
        if tick // self.coarse == self.open_bucket:
            self.fine.setdefault(tick, []).append((idx, serials.copy(), True))
        else:
            self._file(tick, idx, serials[idx])

    def _file(self, tick: int, idx: np.ndarray, serial: np.ndarray) -> None:
        c = tick // self.coarse
        if c == self.open_bucket:
            self.fine.setdefault(tick, []).append((idx, serial, False))
        else:
            self.rough.setdefault(c, []).append((idx, np.full(idx.size, tick, dtype=np.int64), serial))

    def _split(self, idx: np.ndarray, ticks: np.ndarray, serial: np.ndarray) -> None:
        """Sort entries of the open bucket into their ticks."""
        if idx.size == 0:
            return
        order = np.argsort(ticks, kind="stable")
        idx, ticks, serial = idx[order], ticks[order], serial[order]
        cuts = np.flatnonzero(np.diff(ticks)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [idx.size]))
        for tk, a, b in zip(ticks[starts].tolist(), starts.tolist(), ends.tolist(), strict=False):
            self.fine.setdefault(tk, []).append((idx[a:b], serial[a:b], False))

    def pop(self, tick: int, current: np.ndarray) -> np.ndarray | None:
        """The clients due at ``tick`` whose serial is still ``current[client]``."""
        c = tick // self.coarse
        if c != self.open_bucket:
            self.open_bucket = c
            parts = self.rough.pop(c, None)
            if parts:
                if len(parts) == 1:
                    self._split(*parts[0])
                else:
                    self._split(*(np.concatenate([p[k] for p in parts]) for k in range(3)))
        fine = self.fine.pop(tick, None)
        if not fine:
            return None
        if len(fine) == 1:
            idx, ser, whole = fine[0]
            if whole:
                if np.array_equal(current, ser):  # nobody rescheduled since: all live
                    return idx
                ser = ser[idx]
        else:
            idx = np.concatenate([p[0] for p in fine])
            ser = np.concatenate([p[1][p[0]] if p[2] else p[1] for p in fine])
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
