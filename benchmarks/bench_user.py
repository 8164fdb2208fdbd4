"""Benchmark of the Locust WebSocket user (one Locust process, embedded target on loopback).

Prints: held connections per process, opens per second per process, memory per connection,
and the scheduling error (attempt t - scheduled_t) p50/p99 when 5,000 users reconnect after a
restart of the target. Goals: >= 10,000 held; >= 1,000 opens/s; p99 <= 50 ms.
Usage: python benchmarks/bench_user.py [--users 10000] [--storm-users 5000]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless", "--only-summary"]


def events(run_dir: Path) -> list[dict]:
    out = []
    for f in glob.glob(str(run_dir / "events-*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            out += [json.loads(line) for line in fh]
    return out


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100 * len(v)))] if v else float("nan")


def run(args: list[str], sample_rss: bool = False) -> tuple[int, list[int]]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rss: list[int] = []
    p = psutil.Process(proc.pid)
    while proc.poll() is None:
        if sample_rss:
            try:
                rss.append(p.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.5)
    err = proc.stderr.read()
    if proc.returncode not in (0, 1):
        print(err[-3000:], file=sys.stderr)
    return proc.returncode, rss


def held(users: int, tmp: Path) -> None:
    run_dir = tmp / "held"
    rate = 2500
    duration = users / 400 + 15  # Locust + target reach ~400-800 opens/s on a shared 2-core box
    _, rss = run([*LOCUST, "-u", str(users), "-r", str(rate), "-t", f"{duration:.0f}s", "--run-dir", str(run_dir),
                  "--target-capacity", str(users * 2), "--target-handshake-rate", "100000",
                  "--target-handshake-cost-ms", "0", "--policy", "fixed:delay=1", "--ping-interval", "30",
                  "--pong-timeout", "10", "--message-rate", "0", "--stop-timeout", "5"], sample_rss=True)
    ev = events(run_dir)
    ev.sort(key=lambda e: e["t"])
    open_now = peak = 0
    for e in ev:
        if e["event"] == "open":
            open_now += 1
        elif e["event"] == "close":
            open_now -= 1
        peak = max(peak, open_now)
    opens = Counter(int(e["t"]) for e in ev if e["event"] == "open")
    per_s = sorted(opens.values())
    fails = Counter(e.get("kind") for e in ev if e["event"] == "fail")
    closes = Counter(e.get("code") for e in ev if e["event"] == "close" and e.get("by") != "client")
    base = rss[4] if len(rss) > 4 else 0  # 2 s in: Locust loaded, few users yet
    mem = (max(rss) - base) / peak if peak and rss else float("nan")
    print(f"held connections (one process): peak {peak} of {users} users")
    print(f"opens per second (one process): max {per_s[-1] if per_s else 0}, "
          f"median of busy seconds {pct([x for x in per_s if x > 100], 50) if per_s else 0}")
    print(f"memory per held connection: {mem / 1024:.1f} KiB (RSS {base / 2**20:.0f} -> {max(rss) / 2**20:.0f} MiB)")
    print(f"  failures {dict(fails)}, server/abnormal closes {dict(closes)}")


def storm(users: int, tmp: Path) -> None:
    run_dir = tmp / "storm"
    sc = tmp / "storm.toml"
    ramp = users / 2500
    sc.write_text(f"""
name = "bench-storm"
description = "all clients closed with 1012 at once; reconnect with full jitter"
duration = {ramp + 14:.0f}
users = {users}
spawn_rate = 2500
[target]
capacity = {users * 2}
handshake_rate = 100000
handshake_cost_ms = 0
[[faults]]
at = {ramp + 5:.1f}
action = "restart"
mode = "all"
down = 0
""")
    run([*LOCUST, "-u", str(users), "-r", "2500", "-t", f"{ramp + 14:.0f}s", "--run-dir", str(run_dir),
         "--scenario", str(sc), "--policy", "full-jitter:base=1,cap=2", "--ping-interval", "30",
         "--pong-timeout", "10", "--message-rate", "0", "--stop-timeout", "5"])
    ev = events(run_dir)
    re = [e for e in ev if e["event"] == "attempt" and e["conn"] >= 2]
    err = [(e["t"] - e["scheduled_t"]) * 1000 for e in re]
    closes = Counter(e["code"] for e in ev if e["event"] == "close" and e["by"] == "server")
    reopened = len({e["user"] for e in ev if e["event"] == "open" and e["conn"] >= 2})
    storm_opens = Counter(int(e["t"] * 2) for e in ev if e["event"] == "open" and e["conn"] >= 2)
    print(f"opens per second during the storm (one process): peak {2 * max(storm_opens.values(), default=0)} "
          f"(busiest half second x2)")
    print(f"reconnect storm: {closes.get(1012, 0)} closed with 1012 at once, {reopened} reopened, "
          f"{len(re)} reconnect attempts")
    print(f"scheduling error (attempt t - scheduled_t): p50 {pct(err, 50):.1f} ms, p99 {pct(err, 99):.1f} ms, "
          f"max {max(err) if err else float('nan'):.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--storm-users", type=int, default=5000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_user_") as d:
        tmp = Path(d)
        held(a.users, tmp)
        storm(a.storm_users, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
