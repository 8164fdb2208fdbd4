"""Benchmark of the embedded target's goodput against the offered attempt rate, with and without TLS.

An open-loop load generator (asyncio, in its own process, pinned to the CPUs the target leaves
free) starts connect attempts at a fixed rate; each attempt gives up after --timeout s, as a
client with a connect timeout does, and closes its connection as soon as it has the 101.
Goodput is read from the target's own server.jsonl ticks: admissions whose 101 went to a client
still connected. Below the knee goodput follows the offered rate; past it the work queued for
clients that already gave up takes the capacity, and goodput collapses.

Run: .venv/bin/python benchmarks/bench_goodput.py [--rates 20,40,60,80,100,150,200] [--seconds 8]
     [--repeats 3] [--target-cpus 1] [--load-cpus 0] [--timeout 2]
Prints one table per TLS setting (medians over the repeats) and where the knee and the collapse are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wsstorm.target.control import start_target

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
COST = {
    "attempt_cost_ms": 3,
    "session_cost_ms": 2,
    "handshake_cost_ms": 0,
    "store_concurrency": 2,
    "store_ms": 4,
    "handshake_timeout": 30,
}


async def _attempt(port: int, ctx: ssl.SSLContext | None, timeout: float, out: dict) -> None:
    t0 = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None
            )
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 101"):
            out["ok"] += 1
            out["lat"].append(time.monotonic() - t0)
        else:
            out["rejected"] += 1
    except TimeoutError:
        out["timeout"] += 1
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
        out["error"] += 1
    finally:
        if writer is not None:
            writer.transport.abort()  # leave at once, as a client that gave up (or is done) does


async def _generate(port: int, ca_file: str | None, rate: float, seconds: float, timeout: float) -> dict:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else None
    out = {"ok": 0, "rejected": 0, "timeout": 0, "error": 0, "lat": [], "offered": 0}
    tasks = set()
    t0 = time.monotonic()
    k = 0
    while True:
        due = t0 + k / rate
        if due - t0 >= seconds:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.get_running_loop().create_task(_attempt(port, ctx, timeout, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    out["offered"] = k
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    return out


def _load_proc(
    port: int, ca_file: str | None, rate: float, seconds: float, timeout: float, cpus: str, q: mp.Queue
) -> None:
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    q.put(asyncio.run(_generate(port, ca_file, rate, seconds, timeout)))


def _ticks(path: Path, t_from: float, t_to: float) -> dict[str, float]:
    sums = {"goodput": 0.0, "attempts": 0.0, "abandoned": 0.0, "wasted_ms": 0.0, "work_ms": 0.0}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("type") == "tick" and t_from <= rec["t"] < t_to:
            for key in sums:
                sums[key] += rec.get(key, 0) or 0
    return sums


def one(rate: float, tls: bool, seconds: float, timeout: float, target_cpus: str, load_cpus: str) -> dict:
    """One measurement at one offered rate on a fresh target (no state carried between rates)."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "server.jsonl"
        opts = dict(COST, metrics_out=metrics, tls=tls)
        if target_cpus:
            opts["cpus"] = target_cpus
        with start_target(**opts) as t:
            q: mp.Queue = mp.Queue()
            warm = 1.0  # the first second is the generator starting up
            t0 = time.time()
            p = mp.Process(
                target=_load_proc, args=(t.ready["port"], t.ca_file, rate, seconds + warm, timeout, load_cpus, q)
            )
            p.start()
            res = q.get(timeout=seconds + warm + timeout + 30)
            p.join(5)
            time.sleep(1.2)  # the last tick
            window = (t0 + warm + 1.0, t0 + warm + seconds + 1.0)  # ticks count the second before them
            srv = _ticks(metrics, *window)
    span = seconds
    return {
        "rate": rate,
        "goodput": srv["goodput"] / span,
        "client_ok": res["ok"] / (seconds + warm),
        "timeouts": res["timeout"] / (seconds + warm),
        "abandoned": srv["abandoned"] / span,
        "wasted_frac": srv["wasted_ms"] / srv["work_ms"] if srv["work_ms"] else 0.0,
        "lat_p50_ms": statistics.median(res["lat"]) * 1000 if res["lat"] else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="20,40,60,80,100,150,200", help="offered attempts per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per rate")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=2.0, help="the clients' connect timeout, s")
    ap.add_argument("--target-cpus", default="1" if (os.cpu_count() or 1) > 1 else "", help="pin the target here")
    ap.add_argument("--load-cpus", default="0", help="pin the load generator here")
    ap.add_argument("--tls", default="off,on", help="off, on, or both (off,on)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print(
        f"target cost model: {COST}, clients give up after {args.timeout:g} s; target CPUs "
        f"{args.target_cpus or 'any'}, load CPUs {args.load_cpus or 'any'}; medians of {args.repeats}"
    )
    for tls in [x.strip() == "on" for x in args.tls.split(",")]:
        rows = []
        for rate in rates:
            runs = [
                one(rate, tls, args.seconds, args.timeout, args.target_cpus, args.load_cpus)
                for _ in range(args.repeats)
            ]
            rows.append({k: statistics.median(r[k] for r in runs) for k in runs[0]})
        print(f"\nTLS {'on' if tls else 'off'}")
        print(
            f"{'offered/s':>10} {'goodput/s':>10} {'client ok/s':>12} {'timeouts/s':>11} {'abandoned/s':>12} "
            f"{'wasted':>7} {'p50 ms':>8}"
        )
        for r in rows:
            print(
                f"{r['rate']:>10.0f} {r['goodput']:>10.1f} {r['client_ok']:>12.1f} {r['timeouts']:>11.1f} "
                f"{r['abandoned']:>12.1f} {r['wasted_frac']:>7.0%} {r['lat_p50_ms']:>8.0f}"
            )
        best = max(rows, key=lambda r: r["goodput"])
        knee = next((r for r in rows if r["goodput"] < 0.9 * r["rate"]), None)
        collapse = next((r for r in rows if r["rate"] > best["rate"] and r["goodput"] < 0.5 * best["goodput"]), None)
        print(
            f"peak goodput {best['goodput']:.1f}/s at {best['rate']:.0f} offered/s; knee (goodput < 90% of offered) "
            f"at {knee['rate']:.0f}/s"
            if knee
            else "no knee in range",
            end="",
        )
        print(
            f"; collapse (goodput < half the peak) at {collapse['rate']:.0f}/s"
            if collapse
            else "; no collapse in range"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
