"""Benchmark of `wsstorm serve`: sustainable handshakes/s, held idle connections, CPU and memory per 1,000.

Run: .venv/bin/python benchmarks/bench_target.py [--conns 20000] [--workers 2] [--repeats 3]
Clients are raw-socket processes (each holds at most 5,000 sockets: ulimit -n is per process).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wsstorm.target.control import start_target

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (zero key) Close 1000


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def handshake(port: int) -> tuple[socket.socket, bool]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(REQUEST)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return s, buf.startswith(b"HTTP/1.1 101")


def churn_client(port: int, seconds: float, out: mp.Queue) -> None:
    """Open, handshake, close; as fast as possible for `seconds`."""
    t0 = time.monotonic()  # timed here: process start-up must not count
    n, end = 0, t0 + seconds
    while time.monotonic() < end:
        try:
            s, ok = handshake(port)
            if ok:
                s.sendall(CLOSE_FRAME)
            s.close()
            n += ok
        except OSError:
            time.sleep(0.01)
    out.put(n / (time.monotonic() - t0))


def hold_client(port: int, count: int, out: mp.Queue, stop: mp.Event) -> None:
    """Open `count` connections and hold them idle until `stop`."""
    raise_nofile()
    held, opened = [], 0
    for _ in range(count):
        try:
            s, ok = handshake(port)
            held.append(s)
            opened += ok
        except OSError:
            pass
    out.put(opened)
    stop.wait(600)
    for s in held:
        s.close()


def proc_stats(t) -> tuple[float, int, list[int]]:
    """(sum CPU seconds, sum RSS, pids) of the serving processes."""
    import psutil

    pids = [p["pid"] for p in t.status()["procs"] if p["pid"]]
    cpu, rss = 0.0, 0
    for pid in pids:
        pr = psutil.Process(pid)
        c = pr.cpu_times()
        cpu += c.user + c.system
        rss += pr.memory_info().rss
    return cpu, rss, pids


def bench_handshakes(seconds: float, cost_ms: float, clients: int) -> tuple[float, float]:
    """(handshakes/s, server CPU ms per handshake) with 1 worker."""
    with start_target(capacity=100000, handshake_rate=1e6, handshake_burst=1e6, handshake_cost_ms=cost_ms) as t:
        port = int(t.status()["port"])
        cpu0, _, _ = proc_stats(t)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=churn_client, args=(port, seconds, q)) for _ in range(clients)]
        for p in procs:
            p.start()
        rate = sum(q.get(timeout=seconds + 60) for _ in procs)
        for p in procs:
            p.join()
        cpu1, _, _ = proc_stats(t)
        accepted = t.status()["totals"]["accepted"]
        return rate, (cpu1 - cpu0) * 1000 / max(1, accepted)


def bench_idle(conns: int, workers: int, capacity: int) -> dict:
    """Hold `conns` idle connections against `capacity`; measure held, RSS and CPU per 1,000."""
    per = 5000
    with start_target(
        capacity=capacity, workers=workers, handshake_rate=1e6, handshake_burst=1e6, handshake_cost_ms=0, backlog=8192
    ) as t:
        port = int(t.status()["port"])
        time.sleep(1.2)
        cpu0, rss0, _ = proc_stats(t)
        ctx = mp.get_context("spawn")
        q, stop = ctx.Queue(), ctx.Event()
        counts = [min(per, conns - i) for i in range(0, conns, per)]
        procs = [ctx.Process(target=hold_client, args=(port, n, q, stop)) for n in counts]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        opened = sum(q.get(timeout=600) for _ in procs)
        open_s = time.monotonic() - t0
        time.sleep(2.5)  # let 1013 closes settle and ticks arrive
        cpu1, rss1, _ = proc_stats(t)
        st = t.status()
        held = st["connections"]
        time.sleep(5.0)  # idle: CPU cost of holding
        cpu2, _, _ = proc_stats(t)
        stop.set()
        for p in procs:
            p.join(60)
        return {
            "attempted": conns,
            "handshake_101": opened,
            "held": held,
            "capacity": capacity,
            "rejected_1013": st["totals"]["rejected"]["1013"],
            "open_s": open_s,
            "rss_per_1000_mb": (rss1 - rss0) / max(1, held) * 1000 / 2**20,
            "rss_total_mb": rss1 / 2**20,
            "cpu_ms_per_1000_handshakes": (cpu1 - cpu0) * 1000 / max(1, opened) * 1000,
            "idle_cpu_pct_per_1000": (cpu2 - cpu1) / 5.0 * 100 / max(1, held) * 1000,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    raise_nofile()

    for cost in (0.0, 2.0):
        runs = [bench_handshakes(args.seconds, cost, clients=2) for _ in range(args.repeats)]
        rates = [r for r, _ in runs]
        cpus = [c for _, c in runs]
        print(
            f"handshakes/s, 1 worker, cost {cost:g} ms: median {statistics.median(rates):.0f} "
            f"(runs {', '.join(f'{r:.0f}' for r in rates)}); server CPU {statistics.median(cpus):.2f} ms/handshake"
        )

    # Capacity first: ask for 1% more than the configured capacity; the extra ones get 1013.
    capacity = args.conns
    res = bench_idle(int(args.conns * 1.01), args.workers, capacity)
    print(
        f"idle, {args.workers} workers, capacity {capacity}: attempted {res['attempted']}, "
        f"held {res['held']}, 1013 {res['rejected_1013']}, opened in {res['open_s']:.1f} s"
    )
    print(
        f"  memory {res['rss_per_1000_mb']:.1f} MB per 1,000 held (servers total {res['rss_total_mb']:.0f} MB); "
        f"CPU {res['cpu_ms_per_1000_handshakes']:.0f} ms per 1,000 handshakes; "
        f"idle CPU {res['idle_cpu_pct_per_1000']:.2f} % per 1,000 held"
    )
    ok = res["held"] == capacity
    print(f"capacity reached before the server's own limits: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
