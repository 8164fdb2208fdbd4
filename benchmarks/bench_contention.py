"""Benchmark: the contention experiment against the AWS backoff simulator's output (tests/data/aws_backoff).

Prints, per fleet size and algorithm, our calls and completion time (mean of 100 runs, as the
reference) beside the reference's, their ratio, and the wall time of the whole table.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsstorm.sim.contention import AWS_ALGORITHMS, aws_policy, experiment  # noqa: E402

SIZES = (50, 100, 150)


def main() -> int:
    with open(ROOT / "tests/data/aws_backoff/reference.csv", newline="", encoding="utf-8") as fh:
        ref = {(int(r["clients"]), r["Algorithm"]): (float(r["calls"]), float(r["time"])) for r in csv.DictReader(fh)}
    print(
        f"{'clients':>7} {'algorithm':<12} {'calls':>8} {'AWS':>6} {'ratio':>6} {'time ms':>8} {'AWS':>7} {'ratio':>6}"
    )
    t0 = time.perf_counter()
    worst = 0.0
    for n in SIZES:
        for alg in AWS_ALGORITHMS:
            s = experiment(aws_policy(alg), n, reps=100, seed=n)
            rc, rt = ref[(n, alg)]
            a, b = s.calls / rc, s.time_s * 1000 / rt
            worst = max(worst, abs(a - 1), abs(b - 1))
            print(f"{n:>7} {alg:<12} {s.calls:8.0f} {rc:6.0f} {a:6.2f} {s.time_s * 1000:8.0f} {rt:7.0f} {b:6.2f}")
    print(f"worst deviation {worst:.1%}; {time.perf_counter() - t0:.1f} s for the table (100 runs per cell)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
