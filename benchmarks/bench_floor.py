"""Benchmark: what the bare gevent socket path costs per reconnect and per open, beside wsstorm's Locust user.

The floor (issue 16): a loop of plain gevent sockets that does only what a reconnect must —
connect, send the upgrade, read the 101 and the server's 1013 Close, answer it, close, wait,
again — and records nothing. wsstorm's Locust user runs the same loop against the same target
at the same offered rate (users / wait). Both are pinned to --harness-cpus, the target
(capacity 1, overload "close": every open is closed at once with 1013) to --target-cpus.
Each side prints its CPU per cycle split into user and kernel time, so a reader sees how much of
a reconnect no user-space code can save. Then the same for opens that are held (no close).

``--workload peers``: the floor on bench_vs_peers' side-by-side workload instead (N connections
arriving at N/10 per s, each held 20 s with one 64-byte echo every 5 s, no pings, its Node ``ws``
server on CPU 1 and the client on CPU 0, whole-process CPU-s and peak RSS by bench_vs_peers'
own measure): ``bare`` is a plain gevent process doing only that (floor_client.py), ``locust-bare``
the same connection inside a minimal Locust user (floor_locustfile.py: Locust's own cost, no
events), ``wsstorm`` bench_vs_peers' wsstorm run; ``artillery``/``tsung`` optional. It prints
each at every size, the slope per connection between the first and last size, and issue 16's
goals at the last size (0.5x Artillery's CPU and memory, 0.5x Tsung's CPU: the peers' figures
measured here when run, else the README's).
Usage: python benchmarks/bench_floor.py [--users 200] [--wait 0.2] [--seconds 8] [--opens 2000]
       [--open-rate 500] [--repeats 3] [--harness-cpus 0] [--target-cpus 1]
       python benchmarks/bench_floor.py --workload peers [--sizes 5000,10000] [--repeats 3]
       [--tools bare,locust-bare,wsstorm,artillery,tsung] [--lock /tmp/wsstorm-bench.lock]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WARMUP_S = 5.0  # Locust's start-up and the spawn are outside the measured window


def _bare(url: str, users: int, wait: float, seconds: float, opens: int, rate: float) -> None:
    """The child: the bare loop (opens == 0) or ``opens`` held opens at ``rate``/s; prints one JSON line."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    import base64
    import resource
    import socket

    import floor_client

    host, port = url.split("//", 1)[1].split(":")
    port_i = int(port)
    req = (
        f"GET / HTTP/1.1\r\nUpgrade: websocket\r\nHost: {host}:{port}\r\nSec-WebSocket-Key: %s\r\n"
        "Sec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n\r\n"
    )
    held: list[socket.socket] = []

    def open_one() -> tuple[socket.socket, bytes]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect((host, port_i))
        s.sendall((req % base64.b64encode(os.urandom(16)).decode()).encode())
        return s, floor_client.read_head(s)[1]

    count = [0]

    def cycle() -> None:
        s, rest = open_one()
        while len(rest) < 4:  # the 1013 Close: 2 header bytes, 2 code bytes (and its reason)
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        s.sendall(b"\x88\x82\x00\x00\x00\x00" + rest[2:4])  # our answer, masked with a zero key
        s.close()

    def user() -> None:
        while True:
            try:
                cycle()
                count[0] += 1
            except OSError:
                pass
            gevent.sleep(wait)

    def usage() -> tuple[float, float, float]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return time.time(), r.ru_utime, r.ru_stime

    if opens:
        t0 = usage()
        start = time.monotonic()
        for i in range(opens):
            gevent.sleep(max(0.0, start + i / rate - time.monotonic()))
            gevent.spawn(lambda: held.append(open_one()[0]))
        deadline = time.monotonic() + 30
        while len(held) < opens and time.monotonic() < deadline:
            gevent.sleep(0.05)
        t1 = usage()
        n = len(held)
    else:
        for _ in range(users):
            gevent.spawn(user)
        gevent.sleep(WARMUP_S)
        t0, c0 = usage(), count[0]
        gevent.sleep(seconds)
        t1, n = usage(), count[0] - c0
    print(json.dumps({"n": n, "wall": t1[0] - t0[0], "user": t1[1] - t0[1], "sys": t1[2] - t0[2]}), flush=True)
    os._exit(0)


def bare(url: str, a: argparse.Namespace, opens: int = 0) -> dict[str, float]:
    pin = ["taskset", "-c", a.harness_cpus] if a.harness_cpus else []
    argv = [*pin, sys.executable, __file__, "--child", url, str(a.users), str(a.wait), str(a.seconds)]
    out = subprocess.run([*argv, str(opens), str(a.open_rate)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    r: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return r


def harness(url: str, a: argparse.Namespace, tmp: Path, opens: int = 0) -> dict[str, float]:
    """wsstorm's Locust user on the same loop (or the same held opens); CPU of the Locust process."""
    from wsstorm.runfolder import jsonl, names

    run_dir = tmp / f"run-{time.monotonic_ns()}"
    users, rate = (opens, a.open_rate) if opens else (a.users, a.users)
    duration = (opens / a.open_rate + 8) if opens else (WARMUP_S + a.seconds + 2)
    argv = [
        *[sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless", "--only-summary"],
        *["-u", str(users), "-r", str(rate), "-t", f"{duration:.0f}s", "--host", url, "--run-dir", str(run_dir)],
        *["--policy", f"fixed:delay={a.wait}", "--ping-interval", "30", "--pong-timeout", "10"],
        *["--message-rate", "0", "--stop-timeout", "5"],
        *(["--cpus", a.harness_cpus] if a.harness_cpus else []),
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p, samples = psutil.Process(proc.pid), []
    while proc.poll() is None:
        try:
            c = p.cpu_times()
            samples.append((time.time(), c.user, c.system))
        except psutil.Error:
            pass
        time.sleep(0.1)
    ev = [e for shard in names.event_shards(run_dir) for e in jsonl.records(shard) if e.get("event") == "open"]
    if opens:  # over the ramp: from just before the first open to the last
        ts = sorted(e["t"] for e in ev)
        t_a, t_b = ts[0] - 0.1, ts[-1]
    else:
        t_a = samples[0][0] + WARMUP_S
        t_b = t_a + a.seconds
    s_a = min(samples, key=lambda s: abs(s[0] - t_a))
    s_b = min(samples, key=lambda s: abs(s[0] - t_b))
    n = sum(1 for e in ev if s_a[0] <= e["t"] <= s_b[0])
    return {"n": n, "wall": s_b[0] - s_a[0], "user": s_b[1] - s_a[1], "sys": s_b[2] - s_a[2]}


def line(name: str, rs: list[dict[str, float]]) -> dict[str, float]:
    per = [(r["user"] + r["sys"]) / r["n"] * 1e6 for r in rs]
    usr = [r["user"] / r["n"] * 1e6 for r in rs]
    ker = [r["sys"] / r["n"] * 1e6 for r in rs]
    rate = [r["n"] / r["wall"] for r in rs]
    med = {"all": statistics.median(per), "user": statistics.median(usr), "sys": statistics.median(ker)}
    print(
        f"  {name:<26} {med['all']:6.0f} us (user {med['user']:.0f}, kernel {med['sys']:.0f}) "
        f"at {statistics.median(rate):.0f}/s; runs {', '.join(f'{x:.0f}' for x in per)}"
    )
    return med


# The peers' figures at 10,000 when they are not run here: the README's medians of 3 from 2026-12-07 (a
# faster machine than the earlier days', where Artillery took 21.4 CPU-s / 351 MiB and Tsung 11.9 / 429).
README_PEERS = {"artillery": (16.6, 345 * 2**20), "tsung": (7.8, 446 * 2**20)}


def _peers_child(url: str, n: int) -> None:
    """The bare peers client (a child process): n connections at n/10 per s, then exit."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    import resource

    import floor_client

    gevent.config.track_greenlet_tree = False  # as wsstorm.load.user: no spawning stack kept per greenlet
    from bench_vs_peers import ECHO_EVERY_S, HOLD_ECHOES, MESSAGE, RAMP_S

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    failed = [0]

    def one() -> None:
        try:
            floor_client.echo_session(host, int(port), HOLD_ECHOES, ECHO_EVERY_S, MESSAGE.encode())
        except OSError:
            failed[0] += 1

    start, rate = time.monotonic(), n / RAMP_S
    greenlets = []
    for i in range(n):
        gevent.sleep(max(0.0, start + i / rate - time.monotonic()))
        greenlets.append(gevent.spawn(one))
    gevent.joinall(greenlets)
    if failed[0]:
        print(f"{failed[0]} of {n} connections failed", file=sys.stderr)
        os._exit(3)
    os._exit(0)


def _peers_tool(tool: str, n: int, work: Path, artillery: Path | None, tsung: str | None, url: str, port: int) -> Any:
    """One run of ``tool`` at ``n`` on the workload (bench_vs_peers' measure: pinned, whole tree)."""
    import bench_vs_peers as vp

    if tool == "bare":
        return vp.measure([sys.executable, __file__, "--peers-child", url, str(n)], ROOT)
    if tool == "locust-bare":
        # every connection ends by t = ramp + hold (30 s): Locust's run time covers it, then idles
        run_s = vp.RAMP_S + vp.HOLD_ECHOES * vp.ECHO_EVERY_S + 2
        argv = [sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "floor_locustfile.py")]
        argv += ["--headless", "--only-summary", "-u", str(n), "-r", str(n / vp.RAMP_S), "-t", f"{run_s}s"]
        return vp.measure([*argv, "--host", url, "--stop-timeout", f"{vp.STOP_TIMEOUT_S:g}"], ROOT)
    return vp.run_tool(tool, n, work, artillery, tsung, url, port)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (none if empty): one run at a time with other benchmarks."""
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


FLOORS = {"bare": "plain gevent", "locust-bare": "the same in Locust (the mandated stack)"}


def _verdict(label: str, floor: float, goal: float) -> str:
    """Whether a floor leaves room under a goal: over it, at it (within 5%), or under it."""
    if floor > goal * 1.05:
        return f"OUT OF REACH for {label}: its floor alone is {floor / goal:.2f}x the goal"
    if floor >= goal * 0.95:
        return f"{label}: its floor alone is at the goal ({floor / goal:.2f}x), no room for anything above it"
    return f"{label}: its floor is {floor / goal:.2f}x the goal"


def peers(a: argparse.Namespace) -> int:
    """The floor on bench_vs_peers' workload, beside wsstorm and the goals; see the module docstring."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_vs_peers as vp

    sizes = [int(float(x)) for x in a.sizes.split(",")]
    tools = a.tools.split(",")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    results: dict[str, dict[int, list[Any]]] = {t: {n: [] for n in sizes} for t in tools}
    with tempfile.TemporaryDirectory(prefix="bench_floor_peers_") as d:
        work = Path(d)
        if not vp.install_server(work):
            print("the neutral server (Node ws) cannot be installed: nothing to measure")
            return 1
        artillery = vp.find_artillery(work) if "artillery" in tools else None
        tsung = vp.ensure_tsung() if "tsung" in tools else None
        tools = [t for t in tools if not ((t == "artillery" and artillery is None) or (t == "tsung" and tsung is None))]
        for n in sizes:
            for _ in range(max(1, a.repeats)):  # interleaved: every tool sees the same machine
                for tool in tools:
                    with _locked(a.lock):
                        c = vp.served_run(work, functools.partial(_peers_tool, tool, n, work, artillery, tsung))
                    results[tool][n].append(c)
                    print(
                        f"  {tool:12s} N={n:>6,}: {c.cpu_s:6.2f} CPU-s, {c.peak_rss / 2**20:5.0f} MiB;"
                        f" server saw {c.served} {c.note}",
                        flush=True,
                    )
    med: dict[str, dict[int, tuple[float, float, int]]] = {}
    for tool in tools:
        for n in sizes:
            rs = results[tool][n]
            med.setdefault(tool, {})[n] = (
                statistics.median(r.cpu_s for r in rs),
                statistics.median(r.peak_rss for r in rs),
                int(statistics.median(r.conns for r in rs)),
            )
    print(f"\nmedians of {a.repeats}; CPU-s and peak RSS of the whole process (tree), client on CPU 0, server on CPU 1")
    print(f"{'':12s} " + " ".join(f"{'N=' + format(n, ','):>22s}" for n in sizes) + "   slope per connection")
    for tool in tools:
        m = med[tool]
        cells = " ".join(f"{m[n][0]:7.2f} CPU-s {m[n][1] / 2**20:5.0f} MiB" for n in sizes)
        slope = ""
        if len(sizes) >= 2:
            lo, hi = m[sizes[0]], m[sizes[-1]]
            dn = (hi[2] - lo[2]) or (sizes[-1] - sizes[0])
            slope = f"{(hi[0] - lo[0]) / dn * 1000:.3f} ms CPU, {(hi[1] - lo[1]) / dn / 1024:.1f} KiB"
        print(f"{tool:12s} {cells}   {slope}")
    top = sizes[-1]
    ref = {t: (med[t][top][0], med[t][top][1], "measured here") for t in ("artillery", "tsung") if t in med}
    for t, (cpu, rss) in README_PEERS.items():
        ref.setdefault(t, (cpu, rss, "README, at 10,000"))
    art, ts = ref["artillery"], ref["tsung"]
    goals = [
        ("CPU <= 0.5x Artillery", 0.5 * art[0], 0, f"{art[0]:.1f} CPU-s, {art[2]}"),
        ("CPU <= 0.5x Tsung", 0.5 * ts[0], 0, f"{ts[0]:.1f} CPU-s, {ts[2]}"),
        ("memory <= 0.5x Artillery", 0.5 * art[1], 1, f"{art[1] / 2**20:.0f} MiB, {art[2]}"),
    ]
    print(f"\nissue 16's goals at N={top:,} against each:")
    for name, goal, k, src in goals:
        unit = (lambda v: f"{v:.2f} CPU-s") if k == 0 else (lambda v: f"{v / 2**20:.0f} MiB")
        row = ", ".join(
            f"{t} {unit(med[t][top][k])} ({med[t][top][k] / goal:.2f}x the goal)"
            for t in tools
            if t in ("bare", "locust-bare", "wsstorm")
        )
        verdict = "; ".join(_verdict(label, med[t][top][k], goal) for t, label in FLOORS.items() if t in med)
        print(f"  {name} = {unit(goal)} (peer {src}): {row}; {verdict}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("reconnect", "peers"), default="reconnect")
    ap.add_argument("--sizes", default="5000,10000", help="peers workload: connections per run")
    ap.add_argument("--tools", default="bare,locust-bare,wsstorm", help="peers workload: what runs")
    ap.add_argument("--lock", default="", help="peers workload: flock this file around each single run")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--wait", type=float, default=0.2, help="seconds between a close and the next attempt")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured window of the loop")
    ap.add_argument("--opens", type=int, default=2000, help="held opens measured (0: skip)")
    ap.add_argument("--open-rate", type=float, default=500.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--harness-cpus", default="0")
    ap.add_argument("--target-cpus", default="1")
    a = ap.parse_args()
    if a.workload == "peers":
        return peers(a)
    from wsstorm.target import control

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    pin = {"cpus": a.target_cpus} if a.target_cpus else {}
    closing = control.start_target(port=0, capacity=1, overload="close", workers=1, handshake_cost_ms=0, **pin)
    holding = control.start_target(port=0, capacity=10**6, workers=1, handshake_cost_ms=0, **pin)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_floor_") as d:
            loops: dict[str, list[dict[str, float]]] = {"bare": [], "wsstorm": []}
            held: dict[str, list[dict[str, float]]] = {"bare": [], "wsstorm": []}
            for _ in range(max(1, a.repeats)):  # interleaved: both sides see the same machine
                loops["bare"].append(bare(closing.url, a))
                loops["wsstorm"].append(harness(closing.url, a, Path(d)))
                if a.opens:
                    held["bare"].append(bare(holding.url, a, a.opens))
                    holding.stop()  # a fresh target per side: its held connections end with it
                    holding = control.start_target(port=0, capacity=10**6, workers=1, handshake_cost_ms=0, **pin)
                    held["wsstorm"].append(harness(holding.url, a, Path(d), a.opens))
                    holding.stop()
                    holding = control.start_target(port=0, capacity=10**6, workers=1, handshake_cost_ms=0, **pin)
    finally:
        closing.stop()
        holding.stop()
    print(f"reconnect (open, 1013 Close, answer, close, {a.wait:g} s wait), {a.users} users, CPU per cycle:")
    b, w = line("bare gevent sockets", loops["bare"]), line("wsstorm Locust user", loops["wsstorm"])
    print(f"  wsstorm / bare {w['all'] / b['all']:.2f}; goal 120 us; the kernel alone takes {b['sys']:.0f} us")
    if a.opens:
        print(f"held opens ({a.opens} at {a.open_rate:g}/s), CPU per open:")
        bo, wo = line("bare gevent sockets", held["bare"]), line("wsstorm Locust user", held["wsstorm"])
        print(f"  wsstorm / bare {wo['all'] / bo['all']:.2f}; goal 80 us; the kernel alone takes {bo['sys']:.0f} us")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peers-child":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        _peers_child(sys.argv[2], int(sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        u, n, w, s, o, r = sys.argv[2:8]
        _bare(u, int(n), float(w), float(s), int(o), float(r))
    sys.exit(main())
