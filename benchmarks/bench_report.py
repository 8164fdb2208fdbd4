"""Benchmark: a synthetic run folder of ~1,000,000 events -> full report; wall time and peak memory.

Goal (issue 16): <= 3 s and <= 500 MiB, charts included.  The report runs as `python -m
wsstorm.analysis` in a child process (as `wsstorm report` does).  BENCH_REPEATS timed builds run
unobserved; BENCH_MEMORY_REPEATS (default 2) more builds have their peak memory sampled over the process
tree as PSS (proportional set size), so the pages a chart-drawing child shares with its parent after
fork count once, not once per process as summed RSS would count them.  The machine may be shared: CPU
seconds are printed beside wall seconds.

BENCH_FOLDER=DIR reuses (or first writes) the run folder there instead of a temporary one.
BENCH_PHASES=1 also prints where the time goes (imports, reading, checks, JSON parsing, frame
building, derived tables, metrics, chart building, chart rendering + PNG encoding, HTML), in-process
(CPU seconds count both parser threads).
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
MEMORY_REPEATS = int(os.environ.get("BENCH_MEMORY_REPEATS", "2"))
GOAL_S, GOAL_MIB = 3.0, 500


def _pss(p: psutil.Process) -> int:
    try:
        return int(p.memory_full_info().pss)
    except (psutil.AccessDenied, AttributeError):  # no smaps here: RSS (over-counts shared pages)
        return int(p.memory_info().rss)


def run_report(folder: Path, sample: bool) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and (``sample``) peak memory (bytes of PSS, summed over the process tree) of one
    build; 0 when not sampled.  Sampling reads every process's smaps_rollup, which walks its page tables under
    the lock its page faults need, and takes CPU from the two cores the report uses: ~0.25 s (8%) of wall time
    here, so the timed builds are not sampled, and the memory is taken from builds of their own."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsstorm.analysis", str(folder)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0
    if sample:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                mem = sum(_pss(p) for p in [ps, *ps.children(recursive=True)])
                peak = max(peak, mem)
            except psutil.Error:
                pass
            time.sleep(0.05)
    err = proc.communicate()[1]
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"report failed: {err.decode()[-2000:]}")
    return wall, cpu, peak


def make_folder(folder: Path) -> int:
    """Write a synthetic run folder holding at least N_EVENTS events; returns the event count."""
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
    return n


PHASES = r"""
import os, resource, sys, time
def cpu():  # this process and its finished children (the chart-drawing ones)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ru.ru_utime + ru.ru_stime
marks = [("start", cpu(), time.perf_counter())]
def mark(name):
    marks.append((name, cpu(), time.perf_counter()))
import numpy, pandas, pyarrow.json
mark("imports: numpy, pandas, pyarrow")
import matplotlib
matplotlib.use("Agg")
from matplotlib.figure import Figure
from wsstorm.analysis import charts, columnar as C, load as L, metrics as M, report
mark("imports: matplotlib, analysis")
from pathlib import Path
folder = Path(sys.argv[1])
paths = L.names.event_shards(folder)
spec = C.spec_of(L.BY_EVENT, L.EVENT_FLOATS)
blocks = [b for p in paths for b in C._blocks(p) if not isinstance(b, tuple)]
mark("reading the shards in blocks of whole lines")
for b in blocks:
    C._plausible(b)
mark("byte-level checks (columnar path proof), one thread")
split = [C._split_mixed(b) for b in blocks]
mark("mixed-type key renaming (bytes.replace), one thread")
del split
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(C.THREADS) as ex:
    tables = list(ex.map(lambda b: C._block_table(b, spec), blocks))
mark(f"checks + renaming + JSON parsing (pyarrow), {C.THREADS} threads")
import pyarrow as pa
frames = [L._columnar_frame(pa.concat_tables(tables))]
mark("frame building from the parsed columns (all shards as one)")
del blocks, tables, frames
ev = L.load_events(folder, {}, [], {})
mark("load_events: all of the above, per shard, parsing overlapped with frames; dedupe, sort")
del ev
run = L.load_run(folder)
mark("load_run: load_events again + server log, conns, attempts, series")
m = M.compute(run)
mark("metrics")
figs = charts.figures(run)
mark("charts: building the figures")
import io
for _, _, fig in figs:
    fig.savefig(io.BytesIO(), dpi=charts.DPI, format="raw")
mark("charts: layout + rendering (raw RGBA, no PNG)")
for _, _, fig in figs:
    fig.savefig(io.BytesIO(), dpi=charts.DPI)
mark("charts: layout + rendering + PNG encoding")
del figs
report.build_report(run, m=m)
mark("build_report: charts + PNG + HTML + metrics files")
for (_, c0, w0), (name, c1, w1) in zip(marks, marks[1:]):
    print(f"  {name:86s} {c1 - c0:6.2f} s CPU {w1 - w0:6.2f} s wall")
# What a report needs, summed: the imports, load_run, the metrics and build_report (which draws the charts
# again, in forked children); no schedule of that work on these cores can end sooner than its sum / cores.
need = ("imports", "load_run", "metrics", "build_report")
total = sum(c1 - c0 for (_, c0, _w0), (name, c1, _w1) in zip(marks, marks[1:]) if name.startswith(need))
cores = len(os.sched_getaffinity(0))
print(f"  a report's parts: {total:.2f} CPU-s in all; on {cores} cores none ends under {total / cores:.2f} s")
"""


def main() -> None:
    given = os.environ.get("BENCH_FOLDER")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(given) if given else Path(tmp) / "run"
        if given and any(folder.glob("events-*.jsonl")):
            n = sum(1 for p in folder.glob("events-*.jsonl") for _ in p.open("rb"))
            print(f"reusing {folder} ({n:,} lines)")
        else:
            n = make_folder(folder)
        walls, cpus, peaks = [], [], []
        for i in range(REPEATS):
            w, c, _ = run_report(folder, sample=False)
            walls.append(w)
            cpus.append(c)
            print(f"  run {i + 1}: {w:.2f} s wall, {c:.2f} s CPU")
        for i in range(MEMORY_REPEATS):
            w, _, p = run_report(folder, sample=True)
            peaks.append(p)
            print(f"  memory run {i + 1}: peak memory {p / 2**20:.0f} MiB ({w:.2f} s wall while sampled)")
        # CPU seconds are what the wall time would be on an idle core (the machine is shared)
        print(
            f"full report of {n:,} events: median {statistics.median(walls):.2f} s wall, "
            f"{statistics.median(cpus):.2f} s CPU (goal <= {GOAL_S:g} s), "
            + (f"peak memory (PSS) {max(peaks) / 2**20:.0f} MiB (goal <= {GOAL_MIB} MiB); " if peaks else "")
            + f"load average {os.getloadavg()[0]:.1f}"
        )
        if os.environ.get("BENCH_PHASES"):
            print("where the time goes (one in-process run):")
            subprocess.run([sys.executable, "-c", PHASES, str(folder)], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
