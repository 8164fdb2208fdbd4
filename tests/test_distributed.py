"""Distributed: a master and two workers (separate processes) on loopback; every worker event
reaches the master's run folder exactly once, and one manifest lists both workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.test_user_e2e import LOCUST, PEER, free_port, read_events

pytestmark = pytest.mark.e2e


def test_master_and_two_workers(tmp_path: Path) -> None:
    peer = subprocess.Popen([sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True)
    procs: list[subprocess.Popen] = []
    try:
        port = json.loads(peer.stdout.readline())["port"]
        mport = free_port()
        run_dir = tmp_path / "run"
        worker_dirs = [tmp_path / "w1", tmp_path / "w2"]  # workers must not need the master's folder
        master = subprocess.Popen(
            [
                *LOCUST,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(mport),
                "--expect-workers",
                "2",
                "--headless",
                "-u",
                "6",
                "-r",
                "20",
                "-t",
                "3s",
                "--host",
                f"ws://127.0.0.1:{port}/close/1012?after=0.3",
                "--run-dir",
                str(run_dir),
                "--policy",
                "fixed:delay=0.4",
                "--ping-interval",
                "0",
                "--message-rate",
                "0",
                "--only-summary",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(master)
        for wd in worker_dirs:
            wd.mkdir()
            procs.append(
                subprocess.Popen(
                    [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(mport)],
                    cwd=wd,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        out, _ = master.communicate(timeout=90)
        for p in procs[1:]:
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        peer.kill()
        peer.wait()

    events = read_events(run_dir)
    shards = sorted(run_dir.glob("events-*.jsonl"))
    assert len(shards) == 2, (shards, out[-3000:])
    workers = {e["worker"] for e in events}
    assert len(workers) == 2
    assert not any(any(wd.glob("**/events-*.jsonl")) for wd in worker_dirs)
    # none twice: every (user, conn, event, t) is unique
    keys = Counter((e["user"], e["conn"], e["event"], e["t"]) for e in events)
    assert max(keys.values()) == 1
    users = {e["user"] for e in events}
    assert len(users) == 6
    # none lost: every user's story is complete and ends with stop; conn numbers grow by one
    for u in users:
        mine = [e for e in events if e["user"] == u]
        assert mine[-1]["event"] == "stop", mine[-3:]
        opens = [e["conn"] for e in mine if e["event"] == "open"]
        closes = [e["conn"] for e in mine if e["event"] == "close"]
        assert opens == list(range(1, len(opens) + 1)) and closes == opens
        assert len(opens) >= 2
        assert u.startswith(mine[0]["worker"] + "/")
    m = json.loads((run_dir / "manifest.json").read_text())
    assert sorted(m["workers"]) == sorted(workers)
    assert m["ended"] is not None and len({e["run"] for e in events}) == 1 and m["run"] == events[0]["run"]


def test_workers_number_users_across_the_run_and_report_their_pinning(tmp_path: Path) -> None:
    """{n} counts users across workers (no two users share a token line); each worker's --cpus
    pinning reaches the master's manifest."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"tok-{i}\n" for i in range(1, 5)))
    peer = subprocess.Popen([sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True)
    said: list[dict] = []
    procs: list[subprocess.Popen] = []
    cpu = str(min(os.sched_getaffinity(0)))
    try:
        port = json.loads(peer.stdout.readline())["port"]
        threading.Thread(target=lambda: said.extend(json.loads(x) for x in peer.stdout), daemon=True).start()
        mport = free_port()
        run_dir = tmp_path / "run"
        master = subprocess.Popen(
            [
                *LOCUST,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(mport),
                "--expect-workers",
                "2",
                "--headless",
                "-u",
                "4",
                "-r",
                "20",
                "-t",
                "2s",
                "--host",
                f"ws://127.0.0.1:{port}/headers",
                "--run-dir",
                str(run_dir),
                "--policy",
                "fixed:delay=30",
                "--ping-interval",
                "0",
                "--message-rate",
                "0",
                "--only-summary",
                "--header",
                "X-N: {n} {file:" + str(tokens) + "}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(master)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(mport), "--cpus", cpu],
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        out, _ = master.communicate(timeout=90)
        for p in procs[1:]:
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        peer.kill()
        peer.wait()
    seen = sorted(s["headers"]["x-n"] for s in said if "headers" in s)
    assert seen == ["1 tok-1", "2 tok-2", "3 tok-3", "4 tok-4"], (seen, out[-2000:])
    m = json.loads((run_dir / "manifest.json").read_text())
    pinned = m["options"]["cpus_pinned"]
    assert pinned["master"] is None and sorted(k for k in pinned if k != "master") == sorted(m["workers"])
    assert all(pinned[w] == [int(cpu)] for w in m["workers"])
    assert m["options"]["header"] == ["X-N:<redacted>"]
