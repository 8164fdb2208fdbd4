"""Benchmark: cost of one ClientPolicy decision (scalar twin) vs the numpy core, per preset.

Columns: next_delay and opened() in us per call (median over batches), the same decision via
`decide` on one-element arrays (what ClientPolicy did before its scalar twin), the vector API's
delays per second, and the ratio vector delays/s / scalar delays/s.
Run: .venv/bin/python benchmarks/bench_policies.py [PRESET ...]   (~1 min)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from wsstorm.policies import CATALOG, Outcome, decide, initial_state, on_open, outcome_code, parse_policy

BATCH = 100
BATCHES = 60
ARRAY_CALLS = 300
VECTOR_N = 100_000
VECTOR_STEPS = 5
REPEATS = 3
OUTCOMES = [
    Outcome(fail="refused"),
    Outcome(code=1013, uptime_s=0.1),
    Outcome(code=1006, uptime_s=20.0),
    Outcome(fail="http_status", status=503, retry_after=2.0),
]


def scalar_us(text: str) -> tuple[float, float]:
    """Median us per next_delay() and per opened() call, over BATCHES batches of BATCH calls."""
    spec = parse_policy(text)
    c = spec.client(seed=1, process_seed=1)
    nd, op = [], []
    for b in range(BATCHES):
        outs = [OUTCOMES[(b + i) % len(OUTCOMES)] for i in range(BATCH)]
        t0 = time.perf_counter()
        for o in outs:
            c.next_delay(o)
        t1 = time.perf_counter()
        for _ in range(BATCH):
            c.opened()
        t2 = time.perf_counter()
        nd.append((t1 - t0) / BATCH)
        op.append((t2 - t1) / BATCH)
    return statistics.median(nd) * 1e6, statistics.median(op) * 1e6


def array_us(text: str) -> float:
    """Median us per decision through `decide` on one-element arrays (the old ClientPolicy path)."""
    spec = parse_policy(text)
    rng = np.random.default_rng(1)
    state = initial_state(spec, np.array([1], dtype=np.int64))
    times = []
    for i in range(ARRAY_CALLS):
        o = OUTCOMES[i % len(OUTCOMES)]
        h = np.nan if o.retry_after is None else o.retry_after
        t0 = time.perf_counter()
        _, state = decide(
            spec,
            state,
            np.array([outcome_code(o)], dtype=np.int64),
            np.array([o.uptime_s]),
            np.array([h]),
            rng.random((1, spec.ndraws)),  # NDRAWS, plus a throttle's draws
        )
        if i % 4 == 3:
            state = on_open(spec, state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def vector_rate(text: str) -> float:
    spec = parse_policy(text)
    codes = np.array([-1, 1013, 1006, -503])
    rates = []
    for r in range(REPEATS):
        vec = spec.vector(VECTOR_N, seed=r, process_seed=1)
        code = codes[np.arange(VECTOR_N) % len(codes)]
        t0 = time.perf_counter()
        for _ in range(VECTOR_STEPS):
            vec.next_delays(None, code, 0.1)
        rates.append(VECTOR_N * VECTOR_STEPS / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> int:
    names = sys.argv[1:] or [
        *CATALOG,
        "full-jitter+budget:refill=0.1,wait=1",
        "full-jitter+sre-throttle",
        "full-jitter+grpc-throttle",
    ]
    head = ("preset", "next_delay us", "opened us", "1-elem decide us", "vector delays/s", "vec/scalar")
    print(f"{head[0]:38s} {head[1]:>13s} {head[2]:>9s} {head[3]:>16s} {head[4]:>15s} {head[5]:>10s}")
    nds, arrs = [], []
    for name in names:
        nd, op = scalar_us(name)
        arr = array_us(name)
        v = vector_rate(name)
        nds.append(nd)
        arrs.append(arr)
        print(f"{name:38s} {nd:13.2f} {op:9.2f} {arr:16.1f} {v:15,.0f} {v / (1e6 / nd):10.1f}")
    print(
        f"median over presets: next_delay {statistics.median(nds):.2f} us/call, "
        f"1-elem decide {statistics.median(arrs):.1f} us/call ({statistics.median(arrs) / statistics.median(nds):.0f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
