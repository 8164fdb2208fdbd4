"""Benchmark: the fleet simulator's speed, and that its cost is linear in clients.

1. The whole process, as a user runs it: ``wsstorm simulate --scenario restart --policy full-jitter
   --clients 1000000`` (model, metrics, run folder), median wall time of a few runs; goal <= 5 s.
2. The model alone on the restart scenario stretched to 120 s, for 10^4, 10^5, 10^6 clients: median
   time, time per client and the ratios between sizes (linear: 10 each).
3. The ``metastable`` scenario at 10^6 clients, whole process, for immediate (the slow one: the whole fleet
   retries every 10 ms tick while the server refuses, ~2.4x10^8 decisions; median of 3), full-jitter:cap=30 and
   code-aware (one run each); goal <= 30 s each. Exit status 1 if a goal is missed.

The machine is shared and noisy: pin it to one core for figures worth quoting,
``taskset -c 1 .venv/bin/python benchmarks/bench_simulate.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsstorm.run import scenario as scenarios  # noqa: E402
from wsstorm.sim.simulate import build_config, parse_policy_text, run_model, summarize  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
REPEATS = {10_000: 3, 100_000: 3, 1_000_000: 1}
PROCESS_BUDGET_S = 5.0  # issue 14: 10^6 clients through `restart`, whole process
METASTABLE_BUDGET_S = 30.0  # issue 14: the metastable scenario at 10^6 clients
METASTABLE_RUNS = {"immediate": 3, "full-jitter:cap=30": 1, "code-aware": 1}  # policy -> runs (median)


def whole_process(scenario: str, policy: str, clients: int, repeats: int) -> list[float]:
    """Wall times of `wsstorm simulate` as a child process (interpreter start and imports included)."""
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            t0 = time.perf_counter()
            p = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "wsstorm",
                    "simulate",
                    "--scenario",
                    scenario,
                    "--policy",
                    policy,
                    "--clients",
                    str(clients),
                    "--out",
                    str(Path(tmp) / f"r{r}"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - t0)
            if p.returncode != 0:
                raise SystemExit(f"wsstorm simulate failed: {p.stderr.strip()[-500:]}")
    return walls


def main() -> int:
    policy_text = sys.argv[1] if len(sys.argv) > 1 else "full-jitter"
    ok = True
    walls = whole_process("restart", policy_text, 1_000_000, 3)
    med = statistics.median(walls)
    ok &= med <= PROCESS_BUDGET_S
    print(
        f"bench_simulate: `wsstorm simulate --scenario restart --policy {policy_text} --clients 1000000`: "
        f"median {med:.2f} s over {len(walls)} runs ({', '.join(f'{w:.2f}' for w in walls)}); "
        f"{'within' if med <= PROCESS_BUDGET_S else 'OVER'} the {PROCESS_BUDGET_S:g} s budget"
    )

    sc = scenarios.with_overrides(scenarios.load("restart"), duration=120)
    policy = parse_policy_text(policy_text)
    print(f"model alone: scenario restart (120 s), policy {policy}")
    meds: dict[int, float] = {}
    for n in SIZES:
        times = []
        for r in range(REPEATS[n]):
            cfg, _ = build_config(sc, n, seed=1 + r)
            t0 = time.perf_counter()
            res = run_model(cfg, policy)
            times.append(time.perf_counter() - t0)
        s = summarize(res, cfg)
        meds[n] = statistics.median(times)
        print(
            f"  {n:>10,} clients: median {meds[n]:6.2f} s over {len(times)} run(s), "
            f"{meds[n] / n * 1e6:6.2f} us/client; herd {s['herd_factor']:.2f}x, T95 {s['recovery_T95_s']:.0f} s, "
            f"{s['attempts'] / n:.2f} attempts/client"
        )
    print(
        f"  ratio 10^5/10^4 = {meds[100_000] / meds[10_000]:.1f}, 10^6/10^5 = {meds[1_000_000] / meds[100_000]:.1f} "
        f"(linear: 10; a fixed cost per tick makes the small sizes relatively slower)"
    )

    if "metastable" in scenarios.shipped():
        for pol, runs in METASTABLE_RUNS.items():
            ws = whole_process("metastable", pol, 1_000_000, runs)
            w = statistics.median(ws)
            ok &= w <= METASTABLE_BUDGET_S
            print(
                f"bench_simulate: `wsstorm simulate --scenario metastable --policy {pol} --clients 1000000`: "
                f"median {w:.1f} s over {len(ws)} run(s) ({', '.join(f'{x:.1f}' for x in ws)}); "
                f"{'within' if w <= METASTABLE_BUDGET_S else 'OVER'} the {METASTABLE_BUDGET_S:g} s budget"
            )
    else:
        print("  (no shipped 'metastable' scenario in this version: its 10^6-client timing is skipped)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
