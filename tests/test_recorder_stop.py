"""Recorder.stop() never loses a batch the flusher is handing to a sink that yields."""

from __future__ import annotations

import gevent

import json

from wsstorm.load.recorder import Recorder


def test_stop_during_a_yielding_sink_loses_nothing() -> None:
    got: list[bytes] = []
    in_sink = gevent.event.Event()

    def sink(batch: bytes) -> None:  # like runner.send_message on a worker: yields before the batch is out
        in_sink.set()
        gevent.sleep(0.2)
        got.append(batch)

    rec = Recorder("r", "w", sink, flush_interval=0.05)
    for i in range(3):
        rec.record("w/1", 1, "attempt", attempt=i)
    rec.start()
    assert in_sink.wait(2.0)  # the flusher has swapped the buffer and is inside the sink
    rec.record("w/1", 1, "stop")
    rec.stop()
    events = [json.loads(line) for b in got for line in b.splitlines()]
    assert [e["event"] for e in events] == ["attempt"] * 3 + ["stop"]
