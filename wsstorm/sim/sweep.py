"""``wsstorm simulate --sweep clients=...``: per policy, the fleet size at which a deployment tips into a
metastable failure (the capacity planner's question: how big can my fleet grow before a restart
becomes an outage with this client?).

The deployment is fixed: the scenario's server sized for ``sized_for`` clients (by default the
smallest fleet of the sweep): its CPU, handshake budget, store and the rate it lets clients join
at. Each larger fleet meets that same deployment (connection slots grow with the fleet: the
question is the herd, not memory). Every figure comes from the reports' metrics
(:mod:`wsstorm.sim.summary`), the metastable verdict included.
"""

from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.errors import UsageError


def parse_count(text: str, what: str = "--clients") -> int:
    """A positive client count: 1000, 1e6, 1_000_000 (UsageError otherwise)."""
    t = str(text).strip().replace("_", "")
    try:
        v = float(t)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v) or v != int(v) or v < 1:
        raise UsageError(f"{what} must be a whole number >= 1, got {text!r}")
    if v > 50_000_000:
        raise UsageError(f"{what} = {text} is more than this simulator handles (50,000,000)")
    return int(v)


def parse_sweep(text: str) -> list[int]:
    """``clients=1e4,1e5,1e6`` -> [10000, 100000, 1000000]."""
    m = re.fullmatch(r"\s*clients\s*=\s*(.+?)\s*", text or "")
    if not m:
        raise UsageError(f"--sweep must look like clients=1e4,1e5,1e6, got {text!r}")
    parts = [p for p in m.group(1).split(",")]
    if any(not p.strip() for p in parts):
        raise UsageError(f"--sweep has an empty value: {text!r}")
    return sorted({parse_count(p, "--sweep clients") for p in parts})


def tipping_points(rows: list[dict[str, Any]]) -> dict[str, int | None]:
    """Per policy: the smallest fleet whose run was a metastable failure (None: none of them)."""
    out: dict[str, int | None] = {}
    for r in rows:
        out.setdefault(r["policy"], None)
        if r["metastable"] is True and out[r["policy"]] is None:
            out[r["policy"]] = int(r["clients"])
    return out


def sweep(
    sc: Any,
    policies: list[Any],
    counts: list[int],
    seed: int,
    dt: float,
    out: Path,
    echo: Any = print,
    service: dict[str, Any] | None = None,
    sized_for: int | None = None,
) -> tuple[Path, Path, dict[str, int | None]]:
    """Run every (policy, fleet size) against one deployment; write sweep.csv and sweep.png; return the
    tipping points."""
    from wsstorm.sim.config import build_config
    from wsstorm.sim.simulate import run_model
    from wsstorm.sim.summary import summarize

    out.mkdir(parents=True, exist_ok=True)
    base = sized_for or counts[0]
    rows: list[dict[str, Any]] = []
    for spec in policies:
        for n in counts:
            cfg, k = build_config(sc, n, seed=seed, dt=dt, sized_for=base, **(service or {}))
            t0 = time.perf_counter()
            s = summarize(run_model(cfg, spec), cfg)
            wall = time.perf_counter() - t0
            rows.append(
                {
                    "policy": str(spec),
                    "clients": n,
                    "sized_for": base,
                    "scale": k,
                    "metastable": s["metastable"],
                    "peak_attempts_per_s": s["peak_attempts_per_s"],
                    "budget_per_s": s["budget_per_s"],
                    "herd_factor": s["herd_factor"],
                    "T50_s": s["recovery_T50_s"],
                    "T95_s": s["recovery_T95_s"],
                    "T99_s": s["recovery_T99_s"],
                    "goodput_lost": s["goodput_lost"],
                    "wasted_work_ms": s["wasted_work_ms"],
                    "overload_s": s["overload_s"],
                    "connected_end": s["connected_end"],
                    "attempts": s["attempts"],
                    "attempts_per_client": s["attempts"] / n,
                    "wall_s": round(wall, 2),
                }
            )
            verdict = {True: "METASTABLE", False: "recovers", None: "n/a"}[s["metastable"]]
            echo(
                f"  {spec!s:<40} {n:>10,} clients: {verdict:<10} herd {s['herd_factor']:7.1f}x  "
                f"T95 {_fmt_s(s['recovery_T95_s'])}  ({wall:.1f} s)"
            )
    csv_path, png_path = out / "sweep.csv", out / "sweep.png"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot_sweep(rows, png_path, sc.name, base)
    return csv_path, png_path, tipping_points(rows)


def tipping_lines(tips: dict[str, int | None], counts: list[int], sized_for: int) -> list[str]:
    """The sweep's answer, one line per policy."""
    lines = [f"deployment sized for {sized_for:,} clients; a restart becomes a metastable failure from:"]
    for pol, n in tips.items():
        lines.append(f"  {pol:<40} " + (f"{n:,} clients" if n else f"never, up to {max(counts):,} clients"))
    return lines


def _fmt_s(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return "not reached" if math.isinf(x) else f"{x:.2f} s"


def plot_sweep(rows: list[dict[str, Any]], path: Path, scenario: str, sized_for: int) -> None:
    """Two panels against fleet size (log x): herd factor, and recovery T95; metastable runs marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    marked = False
    for pol in dict.fromkeys(r["policy"] for r in rows):
        rs = [r for r in rows if r["policy"] == pol]
        x = [r["clients"] for r in rs]
        line = a1.plot(x, [r["herd_factor"] for r in rs], marker="o", label=pol)[0]
        a2.plot(
            x,
            [r["T95_s"] if math.isfinite(r["T95_s"]) else np.nan for r in rs],
            marker="o",
            label=pol,
            color=line.get_color(),
        )
        bad = [r for r in rs if r["metastable"] is True]
        if bad:
            a1.scatter(
                [r["clients"] for r in bad],
                [r["herd_factor"] for r in bad],
                marker="x",
                s=120,
                color="red",
                zorder=5,
                label=None if marked else "metastable failure",
            )
            marked = True
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_xlabel("fleet size (clients, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    if any(r["herd_factor"] > 0 for r in rows):
        a1.set_yscale("log")
    a1.set_ylabel("herd factor (peak attempts/s ÷ handshake budget/s, log)")
    a1.set_title("Herd factor after the disruption (red x: metastable failure)")
    a2.set_ylabel("recovery T95 (s after the disruption; gap: not reached)")
    a2.set_title("Time until 95% of clients are back")
    a1.legend(title="policy", fontsize=8)
    fig.suptitle(f"Simulated '{scenario}' at fleet scale, one deployment sized for {sized_for:,} clients")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
