"""Benchmark: 20,000 held connections on one machine, both sides wsstorm (issue 16).

The harness runs as Locust with ``--processes 2`` (a master and two workers), the embedded target
with 2 serving processes. Every connection is opened (at --rate per second), then held for --hold
seconds after the last open; Locust's stop closes them all (Close 1000 from the client). Printed:
opens and closes counted by both sides (the client's event log, read by wsstorm.analysis.load, and
the server's server.jsonl ticks, read by wsstorm.runfolder.jsonl) and whether they match exactly,
the peak held by each side, and each side's CPU-seconds and memory (whole process trees, sampled
every 0.5 s) per 1,000 connections. Loopback only; the run's length is bounded by -t and a timeout.
Usage: python benchmarks/bench_held.py [--users 20000] [--rate 500] [--hold 60] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from wsstorm.analysis.load import load_events
from wsstorm.runfolder import jsonl, names

ROOT = Path(__file__).resolve().parent.parent
TARGET_WORKERS = 2
PROCESSES = 2


@dataclass
class Side:
    """CPU-seconds and RSS of one side's processes over time (pid -> last CPU seen, for the exited too)."""

    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    t: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, t: float, procs: list[psutil.Process]) -> None:
        rss = 0
        for p in procs:
            try:
                with p.oneshot():
                    c = p.cpu_times()
                    rss += p.memory_info().rss
                    self.cpu_by_pid[p.pid] = c.user + c.system
            except psutil.Error:
                pass
        self.t.append(t)
        self.rss.append(rss)
        self.cpu.append(sum(self.cpu_by_pid.values()))

    def rss_at(self, t: float) -> int:
        """RSS at the sample nearest to ``t`` (0 without samples)."""
        if not self.t:
            return 0
        return self.rss[min(range(len(self.t)), key=lambda i: abs(self.t[i] - t))]

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU-seconds used between two times (the nearest samples)."""
        if not self.t:
            return math.nan
        i0 = min(range(len(self.t)), key=lambda i: abs(self.t[i] - t0))
        i1 = min(range(len(self.t)), key=lambda i: abs(self.t[i] - t1))
        return self.cpu[i1] - self.cpu[i0]


def is_target(p: psutil.Process) -> bool:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return False
    return cmd[1:4] == ["-m", "wsstorm", "serve"]  # control.start_target's command; its workers are under it


def sample(root: psutil.Process, harness: Side, target: Side) -> None:
    """One sample of both sides: the target is `wsstorm serve` and everything under it."""
    try:
        tree = root.children(recursive=True)
    except psutil.Error:
        return
    tgt: list[psutil.Process] = []
    for p in tree:
        if is_target(p):
            try:
                tgt += [p, *p.children(recursive=True)]
            except psutil.Error:
                tgt.append(p)
    tgt_pids = {p.pid for p in tgt}
    now = time.time()
    harness.add(now, [root, *(p for p in tree if p.pid not in tgt_pids)])
    target.add(now, tgt)


def run_once(a: argparse.Namespace, tmp: Path, k: int) -> dict[str, float]:
    run_dir = tmp / f"held{k}"
    ramp = a.users / a.rate
    duration = math.ceil(ramp + a.hold + 5)
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "locustfile.py"),
        "--headless",
        "--only-summary",
        "--processes",
        str(PROCESSES),
        "-u",
        str(a.users),
        "-r",
        str(a.rate),
        "-t",
        f"{duration}s",
        "--run-dir",
        str(run_dir),
        "--target-capacity",
        str(a.users + 1000),
        "--target-handshake-rate",
        "0",
        "--target-handshake-cost-ms",
        "0",
        "--target-workers",
        str(TARGET_WORKERS),
        "--policy",
        "fixed:delay=1",
        "--ping-interval",
        f"{a.ping_interval:g}",
        "--pong-timeout",
        "20",
        "--message-rate",
        f"{a.message_rate:g}",
        "--stop-timeout",
        "10",
    ]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    harness, target = Side(), Side()
    deadline = time.monotonic() + duration + 120
    while proc.poll() is None and time.monotonic() < deadline:
        sample(root, harness, target)
        time.sleep(0.5)
    if proc.poll() is None:
        for p in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.Error):
                p.kill()
    err = proc.communicate()[1] or ""
    if proc.returncode not in (0, 1):
        print(f"  locust exited {proc.returncode}: {err.strip()[-1500:]}", file=sys.stderr)

    warnings: list[str] = []
    ev = load_events(run_dir, {}, warnings, {})
    kinds = Counter(ev["event"]) if ev is not None else Counter()
    closes = ev[ev["event"] == "close"] if ev is not None else None
    by_client = int((closes["by"] == "client").sum()) if closes is not None else 0
    by_server = int((closes["by"] == "server").sum()) if closes is not None else 0
    opens_t = ev.loc[ev["event"] == "open", "t"] if ev is not None else None
    fails = Counter(ev.loc[ev["event"] == "fail", "kind"]) if ev is not None and "kind" in ev else Counter()
    # held by the clients: opens minus closes over time, at its peak
    held = 0
    if ev is not None:
        step = ev["event"].map({"open": 1, "close": -1}).fillna(0)
        held = int(step.cumsum().max())
    ticks = [r for r in jsonl.records(run_dir / names.SERVER) if r.get("type", "tick") == "tick"]
    accepted = sum(int(r.get("accepted") or 0) for r in ticks)
    received: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    for r in ticks:
        received.update({str(c): int(n) for c, n in (r.get("closes_received") or {}).items()})
        sent.update({str(c): int(n) for c, n in (r.get("closes_sent") or {}).items()})
    # held by the server: the serving processes' latest ticks summed, at its peak
    latest: dict[int, int] = {}
    server_held = 0
    for r in sorted((r for r in ticks if not r.get("partial")), key=lambda r: float(r["t"])):
        latest[int(r.get("proc") or 0)] = int(r.get("connections") or 0)
        server_held = max(server_held, sum(latest.values()))
    rejected: Counter[str] = Counter()
    for r in ticks:
        rejected.update({str(c): int(n) for c, n in (r.get("rejected") or {}).items()})

    opens = kinds.get("open", 0)
    first, last = (float(opens_t.min()), float(opens_t.max())) if opens and opens_t is not None else (started, started)
    thousands = max(opens, 1) / 1000
    h_cpu, t_cpu = harness.cpu[-1] if harness.cpu else math.nan, target.cpu[-1] if target.cpu else math.nan
    h_hold = harness.cpu_between(last, last + a.hold)
    t_hold = target.cpu_between(last, last + a.hold)
    # growth from just before the first open: every process up, no connection yet
    h_base, t_base = harness.rss_at(first - 0.5), target.rss_at(first - 0.5)
    h_peak, t_peak = max(harness.rss, default=0), max(target.rss, default=0)
    exact = opens == accepted and by_client == sum(received.values()) and by_server == sum(sent.values())
    print(
        f"run {k + 1}: {opens} opens over {last - first:.0f} s (client) / {accepted} accepted (server); "
        f"peak held {held} (client) / {server_held} (server ticks, both workers); failures {dict(fails)}; "
        f"server rejections {dict(+rejected)}"
    )
    print(
        f"  closes at the end: client sent {by_client} (close by=client), server received {sum(received.values())} "
        f"{dict(received)}; by the server: client saw {by_server}, server sent {sum(sent.values())} {dict(sent)}; "
        f"{'EXACT' if exact else 'MISMATCH'}"
    )
    print(
        f"  harness (Locust master + {PROCESSES} workers): {h_cpu:.1f} CPU-s in all = {h_cpu / thousands:.2f} CPU-s "
        f"per 1,000 connections; {h_hold / thousands:.2f} CPU-s per 1,000 over the {a.hold:g} s hold; RSS "
        f"{h_base / 2**20:.0f} -> {h_peak / 2**20:.0f} MiB = {(h_peak - h_base) / thousands / 2**20:.1f} MiB "
        f"per 1,000 ({(h_peak - h_base) / max(opens, 1) / 1024:.1f} KiB per connection; "
        f"peak {h_peak / thousands / 2**20:.1f} MiB per 1,000)"
    )
    print(
        f"  target (supervisor + {TARGET_WORKERS} workers): {t_cpu:.1f} CPU-s in all = {t_cpu / thousands:.2f} CPU-s "
        f"per 1,000; {t_hold / thousands:.2f} CPU-s per 1,000 over the hold; RSS {t_base / 2**20:.0f} -> "
        f"{t_peak / 2**20:.0f} MiB = {(t_peak - t_base) / thousands / 2**20:.1f} MiB per 1,000 "
        f"({(t_peak - t_base) / max(opens, 1) / 1024:.1f} KiB per connection; peak {t_peak / thousands / 2**20:.1f} "
        f"MiB per 1,000)"
    )
    for w in warnings:
        print(f"  warning: {w}")
    return {
        "opens": opens,
        "held": held,
        "exact": float(exact),
        "h_cpu_k": h_cpu / thousands,
        "t_cpu_k": t_cpu / thousands,
        "h_hold_k": h_hold / thousands,
        "t_hold_k": t_hold / thousands,
        "h_mem_k": (h_peak - h_base) / thousands / 2**20,
        "t_mem_k": (t_peak - t_base) / thousands / 2**20,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=500, help="opens per second (both Locust workers together)")
    ap.add_argument("--hold", type=float, default=60, help="seconds every connection is held after the last open")
    ap.add_argument("--ping-interval", type=float, default=30)
    ap.add_argument("--message-rate", type=float, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
        f"open files soft limit {__import__('resource').getrlimit(__import__('resource').RLIMIT_NOFILE)[0]}; "
        f"ephemeral ports {ports[0]}-{ports[1]}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_held_") as d:
        runs = [run_once(a, Path(d), k) for k in range(max(1, a.repeats))]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"medians of {len(runs)}: {med['opens']:.0f} opened, {med['held']:.0f} held, counts exact in "
        f"{sum(r['exact'] for r in runs):.0f}/{len(runs)}; per 1,000 connections: harness {med['h_cpu_k']:.2f} CPU-s "
        f"({med['h_hold_k']:.2f} over the hold), {med['h_mem_k']:.1f} MiB; target {med['t_cpu_k']:.2f} CPU-s "
        f"({med['t_hold_k']:.2f} over the hold), {med['t_mem_k']:.1f} MiB"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
