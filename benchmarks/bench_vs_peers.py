"""wsstorm against what users would pick instead: Artillery (ws engine) and Tsung, on the same work.

The workload: N WebSocket connections arriving at N/10 per second, each held ~20 s with one
64-byte echo every 5 s (4 echoes), against one neutral server (Node's ``ws`` echo server, pinned
to its own core); every tool is pinned to the other core. For each tool and N it prints the
CPU-seconds and the peak RSS of the tool's whole process tree, the marginal cost per connection
(the slope between the two sizes) and the ratios to wsstorm. wsstorm's pings are off, since the
others send none. Median of --repeats runs.

Two more wsstorm variants (not in the ratios): ``wsstorm-pings`` (pings every 5 s as well: issue 16's
memory workload, "echoes and pings flowing") and ``wsstorm-idle`` (held connections, no messages,
no pings); their marginal KiB per connection is the memory an active / an idle held connection costs.

Artillery is installed with npm into a temporary folder, Tsung with apt-get, when missing; a
tool that cannot be installed is skipped with a message. Loopback only.
Usage: python benchmarks/bench_vs_peers.py [--sizes 5000,10000] [--repeats 1]
       [--tools wsstorm,artillery,tsung,wsstorm-pings,wsstorm-idle]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOLD_ECHOES, ECHO_EVERY_S, RAMP_S = 4, 5, 10
STOP_TIMEOUT_S = 5  # wsstorm's users get this long to close (one kill, not a greenlet per user as with 0)
MESSAGE = "x" * 64
SERVER_CPU, TOOL_CPU = "1", "0"

SERVER_JS = textwrap.dedent("""
    const { WebSocketServer } = require('ws');
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, backlog: 4096 });
    wss.on('listening', () => console.log(wss.address().port));
    let conns = 0, msgs = 0;
    wss.on('connection', (ws) => {
      conns++;
      ws.on('message', (data, binary) => { msgs++; ws.send(data, { binary }); });
    });
    process.on('SIGTERM', () => { console.log(JSON.stringify({ conns, msgs })); process.exit(0); });
""")


@dataclass
class Cost:
    cpu_s: float
    peak_rss: int
    note: str = ""
    served: str = ""  # what the server saw: connections and echoes (the same work for every tool?)
    conns: int = 0  # connections the server accepted (Tsung's Poisson arrivals fall short of N)


def npm_install(folder: Path, *packages: str) -> bool:
    # --ignore-scripts: Artillery's playwright dependency would download a browser at install time.
    r = subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "--ignore-scripts",
            "--prefix",
            str(folder),
            *packages,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},
    )
    if r.returncode != 0:
        print(f"  npm install {' '.join(packages)} failed: {r.stderr.strip()[-300:]}")
    return r.returncode == 0


def ensure_tsung() -> str | None:
    if shutil.which("tsung"):
        return shutil.which("tsung")
    print("  installing Debian package tsung ...")
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
    r = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "tsung"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    if r.returncode != 0:
        print(f"  tsung cannot be installed here: {r.stderr.strip()[-300:]}")
    return shutil.which("tsung")


def install_server(work: Path) -> bool:
    """Install Node ``ws`` into ``work``/server and write the echo server there; False if npm cannot."""
    if not npm_install(work / "server", "ws@8.18.0"):
        return False
    (work / "server" / "server.js").write_text(SERVER_JS)
    return True


def start_server(work: Path) -> tuple[subprocess.Popen[str], int]:
    """Start the neutral echo server (installed by install_server) pinned to SERVER_CPU; (process, port)."""
    server = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, "node", "server.js"], cwd=work / "server", stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def stop_server(server: subprocess.Popen[str]) -> str:
    """Stop the server; what it saw (its JSON line: connections and messages)."""
    server.terminate()
    return server.communicate(timeout=10)[0].strip()


def served_run(work: Path, run: Callable[[str, int], Cost]) -> Cost:
    """``run(url, port)`` against a fresh neutral server; the Cost with what the server saw."""
    server, port = start_server(work)
    try:
        cost = run(f"ws://127.0.0.1:{port}/", port)
    finally:
        seen = stop_server(server)
    cost.served = seen
    with contextlib.suppress(ValueError, KeyError, TypeError):
        cost.conns = int(json.loads(seen)["conns"])
    return cost


def measure(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 180) -> Cost:
    """CPU-seconds and peak RSS (sum over the process tree, sampled every 0.2 s) of one command, pinned."""
    before = os.times()
    proc = subprocess.Popen(
        ["taskset", "-c", TOOL_CPU, *cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    root = psutil.Process(proc.pid)
    peak, deadline = 0, time.monotonic() + timeout
    cpu_seen: dict[int, float] = {}  # pid -> CPU seconds at its last sample (daemonised children too)
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        rss = 0
        for p in tree:
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    c = p.cpu_times()
                    cpu_seen[p.pid] = c.user + c.system
            except psutil.Error:
                pass
        peak = max(peak, rss)
        time.sleep(0.2)
    if proc.poll() is None:
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                p.kill()
    err = proc.communicate()[1] or ""
    after = os.times()
    waited = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    cpu = max(waited, sum(cpu_seen.values()))  # rusage misses what was not waited for; samples miss the last 0.2 s
    return Cost(cpu, peak, "" if proc.returncode == 0 else f"exit {proc.returncode}: {err.strip()[-200:]}")


WSSTORM_VARIANTS = {  # tool name -> (messages per second, ping interval)
    "wsstorm": (1 / ECHO_EVERY_S, 0.0),
    "wsstorm-pings": (1 / ECHO_EVERY_S, 5.0),
    "wsstorm-idle": (0.0, 0.0),
}


def byte_compile() -> None:
    """Write wsstorm's bytecode before a measured run, as any run after the first finds it: with
    PYTHONDONTWRITEBYTECODE set (this machine sets it), every Locust process would otherwise compile
    the editable install's sources again (~0.15 CPU-s a run). Site-packages come compiled by pip."""
    for d in ("wsstorm", "analysis"):
        compileall.compile_dir(ROOT / d, quiet=1)
    compileall.compile_file(ROOT / "locustfile.py", quiet=1)


def run_wsstorm(n: int, url: str, work: Path, variant: str = "wsstorm") -> Cost:
    rate, ping = WSSTORM_VARIANTS[variant]
    byte_compile()
    run_dir = work / f"wsstorm-{n}-{time.monotonic_ns()}"
    # Locust holds every user to the end: ending at ramp/2 + hold gives each the same ~20 s on average.
    # Users stop at -t and are killed stop-timeout later (Locust waits for a task that never ends):
    # -t is that much earlier, or each would hold 5 s longer and echo ~1.4 times more than the peers.
    hold = RAMP_S / 2 + HOLD_ECHOES * ECHO_EVERY_S - STOP_TIMEOUT_S
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "locustfile.py"),
        "--headless",
        "--only-summary",
        "-u",
        str(n),
        "-r",
        str(n / RAMP_S),
        "-t",
        f"{hold:g}s",
        "--host",
        url,
        "--run-dir",
        str(run_dir),
        "--policy",
        "none",
        "--message-rate",
        f"{rate:g}",
        "--ping-interval",
        f"{ping:g}",
        "--stop-timeout",
        f"{STOP_TIMEOUT_S:g}",
    ]
    return measure(cmd, ROOT)


def run_artillery(n: int, url: str, work: Path, artillery: Path) -> Cost:
    conf = work / f"artillery-{n}.yml"
    conf.write_text(
        textwrap.dedent(f"""
        config:
          target: "{url}"
          phases:
            - duration: {RAMP_S}
              arrivalRate: {n // RAMP_S}
        scenarios:
          - engine: ws
            flow:
              - loop:
                  - think: {ECHO_EVERY_S}
                  - send: "{MESSAGE}"
                count: {HOLD_ECHOES}
    """)
    )
    env = {**os.environ, "ARTILLERY_DISABLE_TELEMETRY": "true", "ARTILLERY_TELEMETRY_DEFAULTS": "{}"}
    return measure([str(artillery), "run", "--quiet", str(conf)], work, env=env)


def run_tsung(n: int, port: int, work: Path, tsung: str) -> Cost:
    conf = work / f"tsung-{n}.xml"
    conf.write_text(
        textwrap.dedent(f"""\
        <?xml version="1.0"?>
        <!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd">
        <tsung loglevel="error" dumptraffic="false">
          <clients><client host="localhost" use_controller_vm="true" maxusers="{n + 1000}"/></clients>
          <servers><server host="127.0.0.1" port="{port}" type="tcp"/></servers>
          <load>
            <arrivalphase phase="1" duration="{RAMP_S}" unit="second">
              <users arrivalrate="{n // RAMP_S}" unit="second" maxnumber="{n}"/>
            </arrivalphase>
          </load>
          <sessions>
            <session name="ws" probability="100" type="ts_websocket">
              <request><websocket type="connect" path="/"></websocket></request>
              <for from="1" to="{HOLD_ECHOES}" var="i">
                <thinktime value="{ECHO_EVERY_S}" random="false"/>
                <request><websocket type="message" ack="no_ack">{MESSAGE}</websocket></request>
              </for>
            </session>
          </sessions>
        </tsung>
    """)
    )
    logdir = work / f"tsung-log-{n}-{time.monotonic_ns()}"
    logdir.mkdir()
    return measure([tsung, "-f", str(conf), "-l", str(logdir), "start"], work)


def run_tool(tool: str, n: int, work: Path, artillery: Path | None, tsung: str | None, url: str, port: int) -> Cost:
    """One run of ``tool`` (a wsstorm variant, artillery or tsung) at ``n`` against the server at url/port."""
    if tool in WSSTORM_VARIANTS:
        return run_wsstorm(n, url, work, tool)
    if tool == "artillery" and artillery is not None:
        return run_artillery(n, url, work, artillery)
    if tool == "tsung" and tsung is not None:
        return run_tsung(n, port, work, tsung)
    raise ValueError(f"{tool} is not available")


def find_artillery(work: Path) -> Path | None:
    """Artillery's binary: ARTILLERY_DIR's (a previous install) or a fresh npm install in ``work``; None if neither."""
    cached = Path(os.environ.get("ARTILLERY_DIR", "/nonexistent")) / "node_modules" / ".bin" / "artillery"
    if cached.exists():  # a previous install (ARTILLERY_DIR=folder): saves two minutes of npm
        return cached
    if npm_install(work / "artillery", "artillery@2.0.34"):
        return work / "artillery" / "node_modules" / ".bin" / "artillery"
    print("  skipping Artillery: it cannot be installed here")
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,10000")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--tools", default="wsstorm,artillery,tsung")
    args = ap.parse_args()
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    tools = args.tools.split(",")
    if os.cpu_count() is None or os.cpu_count() < 2:
        print("needs 2 cores: the server and the tool are pinned to one each")
        return 1
    with tempfile.TemporaryDirectory(prefix="wsstorm-peers-") as tmp:
        work = Path(tmp)
        if not install_server(work):
            print("the neutral server (Node ws) cannot be installed: nothing to measure")
            return 1
        artillery = find_artillery(work) if "artillery" in tools else None
        tsung = ensure_tsung() if "tsung" in tools else None
        if "tsung" in tools and tsung is None:
            print("  skipping Tsung: it cannot be installed here")
        results: dict[str, dict[int, Cost]] = {}
        for n in sizes:
            for tool in tools:
                if (tool == "artillery" and artillery is None) or (tool == "tsung" and tsung is None):
                    continue
                runs = []
                for _ in range(args.repeats):
                    runs.append(served_run(work, functools.partial(run_tool, tool, n, work, artillery, tsung)))
                cpu = statistics.median(r.cpu_s for r in runs)
                rss = int(statistics.median(r.peak_rss for r in runs))
                notes = "; ".join(r.note for r in runs if r.note)
                conns = int(statistics.median(r.conns for r in runs))
                results.setdefault(tool, {})[n] = Cost(cpu, rss, notes, conns=conns)
                served = " ".join(r.served for r in runs)
                print(
                    f"{tool:13s} N={n:>6,}: {cpu:7.1f} CPU-s, peak RSS {rss / 2**20:7.0f} MiB;"
                    f" server saw {served} {notes}",
                    flush=True,
                )
        print()
        print(
            f"{'tool':13s} "
            + " ".join(f"{'N=' + format(n, ','):>24s}" for n in sizes)
            + "   marginal per connection served"
        )
        for tool, by_n in results.items():
            cells = [
                f"{by_n[n].cpu_s:8.1f} CPU-s {by_n[n].peak_rss / 2**20:6.0f} MiB" if n in by_n else " " * 24
                for n in sizes
            ]
            marg = ""
            if len(sizes) >= 2 and sizes[0] in by_n and sizes[-1] in by_n:
                dn = (by_n[sizes[-1]].conns - by_n[sizes[0]].conns) or (sizes[-1] - sizes[0])
                marg = (
                    f"{(by_n[sizes[-1]].cpu_s - by_n[sizes[0]].cpu_s) / dn * 1000:.2f} ms CPU, "
                    f"{(by_n[sizes[-1]].peak_rss - by_n[sizes[0]].peak_rss) / dn / 1024:.1f} KiB"
                )
            print(f"{tool:13s} " + " ".join(f"{c:>24s}" for c in cells) + f"   {marg}")
        ws = results.get("wsstorm", {})
        for tool in ("artillery", "tsung"):
            for n in sizes:
                if n in ws and n in results.get(tool, {}):
                    o = results[tool][n]
                    print(
                        f"wsstorm / {tool} at N={n:,}: CPU {ws[n].cpu_s / o.cpu_s:.2f}x, "
                        f"memory {ws[n].peak_rss / o.peak_rss:.2f}x (goal at 10,000: <= 0.5x)"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
