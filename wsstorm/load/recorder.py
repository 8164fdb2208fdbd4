"""The event recorder: buffered JSON Lines (v1), flushed at least once a second.

Events are buffered as complete lines and handed out in batches: written to a
shard with one ``os.write`` per batch (whole lines only), or shipped by a sink
(a Locust worker sends each batch to the master, which appends it with
:class:`ShardWriter`). Owns the encoding of one event line; shard file names come from
:mod:`wsstorm.runfolder.names`.
"""

from __future__ import annotations

import gevent

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

FLUSH_INTERVAL = 0.5  # seconds; the contract is "at least once a second"


def encode_event(event: dict[str, Any]) -> str:
    """One event -> one JSON line (no newline inside: JSON escapes control characters)."""
    return encode_event_bytes(event).decode("utf-8")


_INF = float("inf")


def encode_event_bytes(event: dict[str, Any]) -> bytes:
    """One event -> one UTF-8 JSON line; orjson (~1 us) where it gives what ``json`` would.

    NaN/inf (json refuses them, orjson would write null) and anything orjson rejects (lone
    surrogates, huge ints, other types) take the ``json`` path, so they fail or succeed as before
    (a lone surrogate is written \\u-escaped rather than breaking the batch's UTF-8 later).
    """
    for v in event.values():
        if v.__class__ is float and (v != v or v == _INF or v == -_INF):
            return _json_line(event)
    try:
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return _json_line(event)


def _json_line(event: dict[str, Any]) -> bytes:
    text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: \u-escaped, so the line stays valid UTF-8
        return (json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n").encode("ascii")


# The keys every event carries (record's own), in its order; emit leaves fields named like them to record.
_COMMON = frozenset(("v", "t", "run", "worker", "user", "conn", "event"))
_EVENT_JSON: dict[str, bytes] = {}  # event name -> its JSON member text: a handful of names per process


def _head(run: str, worker: str) -> bytes:
    """The run's and worker's members of an event line (b"" when orjson refuses them: record then)."""
    try:
        return b',"run":' + orjson.dumps(run) + b',"worker":' + orjson.dumps(worker) + b',"user":'
    except orjson.JSONEncodeError:
        return b""


class ShardWriter:
    """Appends whole-line batches to one shard file, one write per batch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines = 0

    def write(self, batch: bytes) -> None:
        """Append ``batch`` (complete lines); loops only on a short write, never splits a batch."""
        if not batch or self._fd < 0:
            return
        view = memoryview(batch)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.lines += batch.count(b"\n")

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Recorder:
    """Buffers events of one process and flushes them to a sink at least every second."""

    def __init__(
        self,
        run: str,
        worker: str,
        sink: Callable[[bytes], None],
        flush_interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run = run
        self.worker = worker
        self.sink = sink
        self.flush_interval = flush_interval
        self.clock = clock
        self._buf: list[bytes] = []
        self._lock = threading.Lock()  # gevent-patched under Locust; guards flush vs. sink order
        self._greenlet: gevent.Greenlet | None = None
        self._head: bytes | None = None  # the run's and worker's JSON text, made at the first emit
        self.count = 0

    def record(self, user: str, conn: int, event: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
        """Append one event; returns it (as written)."""
        ev: dict[str, Any] = {
            "v": 1,
            "t": self.clock() if t is None else t,
            "run": self.run,
            "worker": self.worker,
            "user": user,
            "conn": conn,
            "event": event,
        }
        ev.update(fields)
        self._buf.append(encode_event_bytes(ev))
        self.count += 1
        return ev

    def emit(self, user: str, conn: int, event: str, fields: dict[str, Any]) -> None:
        """Append one event, as :meth:`record` would write it (a ``t`` in ``fields`` is its time).

        The per-event path of a Locust user (issue 16): the line is joined from the run's and
        worker's JSON text (encoded once) and one orjson call on ``fields``, not a dict of all
        the keys rebuilt and encoded per event. Anything else takes :meth:`record`: a field
        named like a common key, a non-finite float, a value orjson refuses.
        """
        t = fields.pop("t", None)
        if t is None:
            t = self.clock()
        head = self._head
        if head is None:
            head = self._head = _head(self.run, self.worker)
        try:
            if head and fields.keys().isdisjoint(_COMMON) and t.__class__ is float and _INF > t > -_INF:
                for v in fields.values():
                    if v.__class__ is float and not _INF > v > -_INF:  # NaN fails both comparisons
                        break
                else:
                    name = _EVENT_JSON.get(event)
                    if name is None:
                        name = _EVENT_JSON[event] = b',"event":' + orjson.dumps(event)
                    body = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
                    tail = b"," + body[1:] if len(body) > 3 else b"}\n"  # body is "{}\n" without fields
                    line = (b'{"v":1,"t":', orjson.dumps(t), head, orjson.dumps(user), b',"conn":', orjson.dumps(conn))
                    self._buf.append(b"".join((*line, name, tail)))
                    self.count += 1
                    return
        except orjson.JSONEncodeError:
            pass
        self.record(user, conn, event, t, **fields)

    def flush(self) -> int:
        """Hand every complete buffered line to the sink as one batch; returns the line count."""
        with self._lock:
            buf, self._buf = self._buf, []
            if buf:
                self.sink(b"".join(buf))
            return len(buf)

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.flush_interval)
            try:
                self.flush()
            except Exception:  # a failing sink must not kill the flusher; the next flush retries new lines
                import logging

                logging.getLogger(__name__).exception("event flush failed")

    def start(self) -> None:
        """Start the periodic flusher greenlet (idempotent)."""
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        """Stop the flusher and flush what is left."""
        if self._greenlet is not None:
            # Under the lock the flusher is asleep or waiting for the lock, never inside a sink
            # that yields (a worker's send_message) with a swapped-out batch the kill would lose.
            with self._lock:
                self._greenlet.kill(block=True)
            self._greenlet = None
        self.flush()
