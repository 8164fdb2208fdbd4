"""Benchmark: a synthetic run folder of ~1,000,000 events -> full report; wall time and peak RSS.

Goal: <= 15 s and <= 2 GB.  The report runs as `python -m analysis` in a child process
(as `wsstorm report` does); peak RSS is sampled over that process tree.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.synth import realistic  # noqa: E402

N_EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


def run_report(folder: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (bytes, summed over the process tree) of one report build."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsstorm.analysis", str(folder)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"report failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, cpu, peak


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        t = time.perf_counter()
        # The generator lands a little under its target (sessions end with the run): ask for
        # more until the log really holds N_EVENTS, so the goal is measured at its own size.
        target = N_EVENTS
        while True:
            synth = realistic(target)
            n = sum(len(v) for v in synth.events.values())
            if n >= N_EVENTS:
                break
            target = int(target * N_EVENTS / n) + 1000
        synth.write(folder)
        del synth
        size = sum(p.stat().st_size for p in folder.glob("events-*.jsonl"))
        print(f"generated {n:,} events ({size / 1e6:.0f} MB, 2 shards) in {time.perf_counter() - t:.1f} s")
        walls, cpus, peaks = [], [], []
        for i in range(REPEATS):
            w, c, p = run_report(folder)
            walls.append(w)
            cpus.append(c)
            peaks.append(p)
            print(f"  run {i + 1}: {w:.2f} s wall, {c:.2f} s CPU, peak RSS {p / 2**20:.0f} MiB")
        # CPU seconds are what the wall time would be on an idle core (the machine is shared)
        print(
            f"full report of {n:,} events: median {statistics.median(walls):.2f} s wall, "
            f"{statistics.median(cpus):.2f} s CPU (goal <= 15 s), "
            f"peak RSS {max(peaks) / 2**20:.0f} MiB (goal <= 2048 MiB); load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
