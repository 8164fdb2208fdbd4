"""Recorder: whole lines only, flushed at least once a second, SIGKILL loses at most ~1 s."""

from __future__ import annotations

import gevent

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wsstorm.load.recorder import Recorder, ShardWriter, encode_event
from wsstorm.runfolder.names import shard_name


def test_shard_name_is_safe() -> None:
    assert shard_name("local") == "events-local.jsonl"
    assert shard_name("../x y/z") == "events-.._x_y_z.jsonl"


def test_untrusted_text_stays_one_line() -> None:
    line = encode_event({"reason": "a\nb\r\u2028\x00\"}"})
    assert line.count("\n") == 1 and line.endswith("\n")
    assert json.loads(line)["reason"] == "a\nb\r\u2028\x00\"}"


def test_one_write_per_batch_whole_lines(tmp_path: Path) -> None:
    batches: list[bytes] = []
    rec = Recorder("r", "local", batches.append)
    for i in range(5):
        rec.record("local/1", 1, "attempt", attempt=i)
    assert rec.flush() == 5 and rec.flush() == 0
    assert len(batches) == 1 and batches[0].endswith(b"\n")
    evs = [json.loads(x) for x in batches[0].splitlines()]
    assert [e["attempt"] for e in evs] == list(range(5))
    assert all(e["v"] == 1 and e["run"] == "r" and e["worker"] == "local" and e["conn"] == 1 for e in evs)

    w = ShardWriter(tmp_path / "events-local.jsonl")
    w.write(batches[0])
    w.write(b"")
    w.close()
    assert (tmp_path / "events-local.jsonl").read_bytes() == batches[0]


def test_flush_cadence_and_stop(tmp_path: Path) -> None:
    stamps: list[float] = []
    rec = Recorder("r", "local", lambda b: stamps.append(time.monotonic()), flush_interval=0.2)
    rec.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.1:
        rec.record("local/1", 1, "attempt")
        gevent.sleep(0.02)
    assert len(stamps) >= 4
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 1.0
    rec.record("local/1", 1, "stop")
    n = len(stamps)
    rec.stop()
    assert len(stamps) == n + 1  # the last event went out at stop


CHILD = textwrap.dedent("""
    import gevent.monkey; gevent.monkey.patch_all()
    import sys, time, gevent
    from pathlib import Path
    from wsstorm.load.recorder import Recorder, ShardWriter
    w = ShardWriter(Path(sys.argv[1]))
    rec = Recorder("r", "local", w.write)
    rec.start()
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        rec.record("local/1", 1, "attempt", attempt=i, pad="x" * 300)
        gevent.sleep(0.002)
""")


@pytest.mark.integration
def test_sigkill_loses_at_most_a_second(tmp_path: Path) -> None:
    shard = tmp_path / "events-local.jsonl"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(shard)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(2.3)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = shard.read_bytes()
    assert data.endswith(b"\n")
    events = [json.loads(line) for line in data.splitlines()]  # every line whole and valid
    assert [e["attempt"] for e in events] == list(range(1, len(events) + 1))
    assert killed_at - events[-1]["t"] < 1.2
