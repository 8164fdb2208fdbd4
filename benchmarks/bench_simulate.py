"""Benchmark: wall time of `wsstorm simulate` on the restart scenario stretched to 120 s, for 10^4, 10^5, 10^6 clients.

Prints the median of a few runs per size, the time per client, and the ratio 10^6 / 10^4 (linear cost: ~100).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsstorm.run import scenario as scenarios  # noqa: E402
from wsstorm.sim.simulate import build_config, parse_policy_text, run_model, summarize  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
REPEATS = {10_000: 3, 100_000: 3, 1_000_000: 1}
BUDGET_S = 30.0  # issue 7: 10^6 clients through a 120 s restart in <= 30 s


def main() -> int:
    sc = scenarios.with_overrides(scenarios.load("restart"), duration=120)
    policy = parse_policy_text(sys.argv[1] if len(sys.argv) > 1 else "full-jitter")
    print(f"bench_simulate: scenario restart (120 s), policy {policy}")
    med: dict[int, float] = {}
    for n in SIZES:
        walls = []
        for r in range(REPEATS[n]):
            cfg, _ = build_config(sc, n, seed=1 + r)
            t0 = time.perf_counter()
            s = summarize(run_model(cfg, policy), cfg)
            walls.append(time.perf_counter() - t0)
        med[n] = statistics.median(walls)
        print(f"  {n:>10,} clients: median {med[n]:6.2f} s over {len(walls)} run(s), "
              f"{med[n] / n * 1e6:6.2f} us/client; herd {s['herd_factor']:.2f}x, T95 {s['recovery_T95_s']:.2f} s, "
              f"{s['attempts'] / n:.2f} attempts/client")
    print(f"  ratio 10^5/10^4 = {med[100_000] / med[10_000]:.1f}, 10^6/10^5 = {med[1_000_000] / med[100_000]:.1f} "
          f"(linear: 10)")
    ok = med[1_000_000] <= BUDGET_S
    print(f"  10^6 clients in {med[1_000_000]:.1f} s: {'within' if ok else 'OVER'} the {BUDGET_S:g} s budget")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
