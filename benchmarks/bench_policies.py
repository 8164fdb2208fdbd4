"""Benchmark: delays per second of the scalar (ClientPolicy) and vector (VectorPolicy) APIs, per preset.

Run: .venv/bin/python benchmarks/bench_policies.py   (prints medians of 5 repeats; ~1 min)
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))  # run from anywhere

from wsstorm.policies import CATALOG, Outcome, parse_policy

REPEATS = 5
SCALAR_CALLS = 2000
VECTOR_N = 100_000
VECTOR_STEPS = 5


def scalar_rate(name: str) -> float:
    spec = parse_policy(name)
    outcomes = [Outcome(fail="refused"), Outcome(code=1013, uptime_s=0.1), Outcome(code=1006, uptime_s=20.0)]
    rates = []
    for r in range(REPEATS):
        c = spec.client(seed=r, process_seed=1)
        t0 = time.perf_counter()
        for i in range(SCALAR_CALLS):
            c.next_delay(outcomes[i % 3])
        rates.append(SCALAR_CALLS / (time.perf_counter() - t0))
    return statistics.median(rates)


def vector_rate(name: str) -> float:
    spec = parse_policy(name)
    codes = np.array([-1, 1013, 1006])
    rates = []
    for r in range(REPEATS):
        vec = spec.vector(VECTOR_N, seed=r, process_seed=1)
        code = codes[np.arange(VECTOR_N) % 3]
        t0 = time.perf_counter()
        for _ in range(VECTOR_STEPS):
            vec.next_delays(None, code, 0.1)
        rates.append(VECTOR_N * VECTOR_STEPS / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> int:
    names = sys.argv[1:] or list(CATALOG)
    print(f"{'preset':24s} {'scalar delays/s':>16s} {'vector delays/s':>16s} {'ratio':>8s}")
    for name in names:
        s, v = scalar_rate(name), vector_rate(name)
        print(f"{name:24s} {s:16,.0f} {v:16,.0f} {v / s:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
