"""``wsstorm simulate``: a reconnect storm at fleet scale, from a scenario and a policy, in a model.

The fleet is the scenario scaled up: with ``--clients N`` the scenario's users,
capacity, handshake budget, spawn rate, server CPU and drain batches are all
multiplied by N / users, so the ratios the scenario was written with hold and a
10^6-client restart is the same storm as the 300-user one, only bigger.

The server's speed is an input, not a guess: ms per handshake, per rejection and per close of one
serving process (``--handshake-service-ms`` ...), which ``--probe`` measures on this machine
with a short real run (:mod:`wsstorm.sim.servicetime`) before simulating.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.errors import UsageError
from wsstorm.runfolder import jsonl, manifest, names, schemas
from wsstorm.sim.config import (CLOSE_SERVICE_MS, DEFAULT_CONNECT_TIMEOUT, TLS_HANDSHAKE_MS,  # noqa: F401 (re-exported)
                                WEBSOCKETS_HANDSHAKE_MS, ServerCosts, build_config, server_costs)
from wsstorm.sim.fleetmodel import DISRUPTIONS, SERIES_COLUMNS, FleetModel, ModelConfig, ModelResult, recovery

PROBE_MAX_USERS = 2000
DOWNTIME_SAMPLE = 100_000
SWEEP_POLICIES = ("immediate", "exponential", "full-jitter", "decorrelated-jitter", "code-aware")


# -- policies ------------------------------------------------------------------------

class _VectorFleet:
    """The policies' vector API (``spec.vector``) spoken in the model's outcome names ('1012', 'refused', 'http_503')."""

    def __init__(self, vec: Any) -> None:
        from wsstorm.policies import parse_code

        self.vec = vec
        self._codes: dict[str, int] = {}
        self._parse = parse_code

    def opened(self, idx: np.ndarray) -> None:
        self.vec.opened(idx)

    def next_delays(self, idx: np.ndarray, outcome: str, uptime_s: np.ndarray, retry_after: float | None) -> np.ndarray:
        code = self._codes.get(outcome)
        if code is None:
            code = self._codes[outcome] = self._parse(outcome)
        return np.asarray(self.vec.next_delays(idx, code, uptime_s, retry_after=retry_after), dtype=float)


def parse_policy_text(text: str) -> Any:
    """The PolicySpec for a policy text, via wsstorm.policies (UsageError on bad input)."""
    try:
        from wsstorm.policies import parse_policy
    except ImportError as exc:  # the policies module is part of the package; say so plainly if it is missing
        raise UsageError(f"reconnect policies unavailable ({exc})") from None
    return parse_policy(text)


def fleet_policy(spec: Any, n: int, seed: int, process_seed: Any = None) -> Any:
    """N clients of one policy (the policy module's own vector form of it).

    By default every client is its own process (a fleet is many devices), so per-process
    draws such as reconnecting-websocket's minimum differ between clients.
    """
    ps = np.arange(n, dtype=np.int64) + seed * 1_000_003 if process_seed is None else process_seed
    return _VectorFleet(spec.vector(n, seed=seed, process_seed=ps))


# -- scenario -> model --------------------------------------------------------------

def load_scenario(name: str) -> Any:
    """A validated scenario by shipped name or path (UsageError if unknown)."""
    from wsstorm.run import scenario as scenarios

    return scenarios.load(name)


def run_model(cfg: ModelConfig, spec: Any) -> ModelResult:
    """Run the model with N clients of the policy ``spec``."""
    return FleetModel(cfg, fleet_policy(spec, cfg.clients, cfg.seed)).run()


def summarize(res: ModelResult, cfg: ModelConfig) -> dict[str, Any]:
    """Peak attempt rate and herd factor after the first disruption, and recovery T50/T95/T99 (s)."""
    first = next((f for f in res.faults if f["fault"] in DISRUPTIONS), None)
    at = first["at"] if first else 0.0
    s_from = int(at)
    att = res.series["attempts"][s_from:]
    peak = float(att.max()) if att.size else 0.0
    rec = recovery(res.connected_tick, res.dt, at) if first else {0.5: math.nan, 0.95: math.nan, 0.99: math.nan}
    return {
        "clients": cfg.clients, "disruption": first["fault"] if first else None, "disruption_at": at,
        "peak_attempt_rate": peak, "handshake_rate": cfg.handshake_rate,
        "herd_factor": peak / cfg.handshake_rate if cfg.handshake_rate else math.nan,
        "T50": rec[0.5], "T95": rec[0.95], "T99": rec[0.99],
        "attempts": res.totals["attempts"], "opens": res.totals["opens"], "gave_up": res.totals["gaveup"],
        "connected_end": int(res.connected_tick[-1]) if res.connected_tick.size else 0,
    }


# -- the run folder -------------------------------------------------------------------

def write_run(out: Path, sc: Any, spec: Any, cfg: ModelConfig, scale: float, res: ModelResult,
              summary: dict[str, Any], wall_s: float, started: float, service_source: str = "default",
              probe: dict[str, Any] | None = None) -> None:
    """Write the run folder: manifest, per-second series, downtimes and faults (runfolder names and schemas)."""
    out.mkdir(parents=True, exist_ok=True)
    cols = list(SERIES_COLUMNS)
    with open(out / names.SERIES_CSV, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*(_csv_values(res.series[c]) for c in cols)))
    d, rec = res.downtimes, res.recovered
    if d.size > DOWNTIME_SAMPLE:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(d.size, DOWNTIME_SAMPLE, replace=False))
        d, rec = d[pick], rec[pick]
    with open(out / names.DOWNTIMES_CSV, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["downtime_s", "recovered"])
        w.writerows(zip(np.round(d, 3).tolist(), rec.astype(int).tolist()))
    with open(out / names.FAULTS, "w", encoding="utf-8") as fh:
        for f in res.faults:
            line: schemas.FaultLine = {"v": schemas.VERSION, "t": started + f["at"], "fault": f["fault"],
                                       "params": f["params"], "ok": f["ok"], "detail": f["detail"] or "simulated",
                                       "at": f["at"]}
            fh.write(json.dumps(jsonl.jsonable(line)) + "\n")
    m = manifest.build_manifest(
        run=out.name, started=started, ended=started + cfg.duration, host="simulated", embedded_target=False,
        policy=str(spec), scenario=sc.to_dict(), seed=cfg.seed, users=cfg.clients, spawn_rate=cfg.spawn_rate,
        duration_s=cfg.duration, options={"clients": cfg.clients, "dt": cfg.dt, "seed": cfg.seed}, workers=[],
        cpu_warnings=[], target=target_block(cfg), simulated=True)
    m["versions"]["numpy"] = np.__version__
    m["simulation"] = jsonl.jsonable({
        "scale": scale, "scenario_users": sc.users, "dt": cfg.dt, "handshake_service_ms": cfg.handshake_service_ms,
        "reject_service_ms": cfg.reject_service_ms, "close_service_ms": cfg.close_service_ms,
        "service_source": service_source, "probe": probe,
        "cpu_ms_per_s": cfg.cpu_ms_per_s, "connect_timeout": cfg.connect_timeout,
        "held_s": cfg.held_s, "downtimes_total": int(res.downtimes.size),
        "downtimes_written": int(d.size), "wall_s": round(wall_s, 3),
        "summary": summary,
    }, inf=None)
    manifest.write_manifest(out, m)


def target_block(cfg: ModelConfig) -> dict[str, Any]:
    """The manifest's ``target``: the simulated server's settings (already scaled to the fleet)."""
    return {"capacity": cfg.capacity, "handshake_rate": cfg.handshake_rate, "handshake_burst": cfg.burst,
            "handshake_cost_ms": cfg.handshake_cost_ms, "overload": cfg.overload}


def _csv_values(col: np.ndarray) -> list[Any]:
    """A series column as CSV cells: integers as such, float columns to 3 decimals."""
    return np.round(col, 3).tolist() if col.dtype.kind == "f" else col.tolist()


def _fmt_s(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:.2f} s"


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The short printed summary of one simulated run."""
    head = f"{s['clients']:,} clients"
    if s["disruption"] is None:
        return [f"{head}: no disruption in this scenario; peak attempt rate {s['peak_attempt_rate']:,.0f}/s"]
    return [
        f"{head}, {s['disruption']} at {s['disruption_at']:g} s",
        f"  peak attempt rate {s['peak_attempt_rate']:,.0f}/s; herd factor {s['herd_factor']:.1f}x "
        f"(handshake budget {s['handshake_rate']:,.0f}/s)",
        f"  recovery T50 {_fmt_s(s['T50'])}, T95 {_fmt_s(s['T95'])}, T99 {_fmt_s(s['T99'])}",
    ]


# -- the sweep ------------------------------------------------------------------------

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
    counts = sorted({parse_count(p, "--sweep clients") for p in parts})
    return counts


def sweep(sc: Any, policies: list[Any], counts: list[int], seed: int, dt: float, out: Path,
          echo: Any = print, service: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Run every (policy, fleet size); write sweep.csv and sweep.png (herd factor and T95 against clients)."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for spec in policies:
        for n in counts:
            cfg, k = build_config(sc, n, seed=seed, dt=dt, **(service or {}))
            t0 = time.perf_counter()
            s = summarize(run_model(cfg, spec), cfg)
            wall = time.perf_counter() - t0
            rows.append({"policy": str(spec), "clients": n, "scale": k, "peak_attempt_rate": s["peak_attempt_rate"],
                         "handshake_rate": s["handshake_rate"], "herd_factor": s["herd_factor"],
                         "T50_s": s["T50"], "T95_s": s["T95"], "T99_s": s["T99"], "attempts": s["attempts"],
                         "attempts_per_client": s["attempts"] / n, "wall_s": round(wall, 2)})
            echo(f"  {str(spec):<40} {n:>10,} clients: herd {s['herd_factor']:6.1f}x  T95 {_fmt_s(s['T95'])}  ({wall:.1f} s)")
    csv_path, png_path = out / "sweep.csv", out / "sweep.png"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot_sweep(rows, png_path, sc.name)
    return csv_path, png_path


def plot_sweep(rows: list[dict[str, Any]], path: Path, scenario: str) -> None:
    """Two panels against fleet size (log x): herd factor, and recovery T95; one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for pol in dict.fromkeys(r["policy"] for r in rows):
        rs = [r for r in rows if r["policy"] == pol]
        x = [r["clients"] for r in rs]
        a1.plot(x, [r["herd_factor"] for r in rs], marker="o", label=pol)
        a2.plot(x, [r["T95_s"] if math.isfinite(r["T95_s"]) else np.nan for r in rs], marker="o", label=pol)
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_xlabel("fleet size (clients, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    a1.set_ylabel("herd factor (peak attempts/s ÷ handshake budget/s)")
    a1.set_title("Herd factor after the disruption")
    a2.set_ylabel("recovery T95 (s after the disruption)")
    a2.set_title("Time until 95% of clients are back")
    a1.legend(title="policy", fontsize=8)
    fig.suptitle(f"Simulated '{scenario}' scenario at fleet scale (capacity and budget scaled with the fleet)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command ----------------------------------------------------------------------

def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of ``wsstorm simulate``."""
    a = parser.add_argument
    a("--scenario", default="restart", help="shipped scenario name or path to a .toml (default: restart)")
    a("--policy", default="full-jitter", help="reconnect policy, e.g. full-jitter or 'full-jitter:base=0.5,cap=30'")
    a("--clients", default=None, help="fleet size, e.g. 1000000 or 1e6 (default: the scenario's users)")
    a("--duration", type=float, default=None, help="seconds (fault times scale with it, as in wsstorm run)")
    a("--seed", type=int, default=1, help="random seed (same seed, same series)")
    a("--dt", type=float, default=0.01, help="model tick in seconds (default 0.01)")
    a("--out", default=None, help="run folder (default: reports/sim-<scenario>-<policy>-<clients>-<time>)")
    a("--sweep", default=None, help="clients=1e4,1e5,1e6: herd factor and recovery against fleet size, per policy")
    a("--handshake-service-ms", type=float, default=None,
      help="server time per accepted handshake, ms (default: the scenario's handshake_cost_ms "
           f"+ {WEBSOCKETS_HANDSHAKE_MS:g} ms for the websockets handshake; --probe measures it)")
    a("--reject-service-ms", type=float, default=None,
      help="server time per rejected handshake, ms (default: handshake service minus handshake_cost_ms)")
    a("--close-service-ms", type=float, default=None,
      help=f"server time per close frame sent, ms (default {CLOSE_SERVICE_MS:g})")
    a("--probe", action="store_true",
      help="first measure the handshake and close service times on this machine with a short real run "
           "against the embedded target (~12 s), then simulate with them")
    a("--policies", default=None, help=f"with --sweep: comma-separated policies (default: {','.join(SWEEP_POLICIES)})")


def service_options(args: argparse.Namespace, sc: Any, out: Path, policy: str = "full-jitter") -> dict[str, Any]:
    """Service times from the options (or the probe): {"times": build_config kwargs, "source": text}."""
    times = {"handshake_service_ms": args.handshake_service_ms, "reject_service_ms": args.reject_service_ms,
             "close_service_ms": args.close_service_ms}
    for key, v in times.items():
        if v is not None and not (math.isfinite(v) and 0 <= v <= 10_000):
            raise UsageError(f"--{key.replace('_', '-')} must be between 0 and 10000, got {v:g}")
    given = [k for k, v in times.items() if v is not None]
    if not args.probe:
        return {"times": times, "source": "given" if given else "default"}
    if given:
        raise UsageError("--probe measures the service times; leave out --handshake-service-ms and friends")
    from wsstorm.sim.servicetime import probe

    print("measuring server service times on this machine (a short real run against the embedded target)...")
    cl = sc.client
    client = {"message_rate": float(cl.message_rate or 0.0), "ping_interval": float(cl.ping_interval or 5.0),
              "pong_timeout": float(cl.pong_timeout or 5.0)}
    # one server at the scenario's own scale (not the fleet's), within what this machine can run quickly
    m = probe(out / "probe", users=min(int(sc.users), PROBE_MAX_USERS), handshake_cost_ms=float(sc.target.handshake_cost_ms),
              policy=policy, client=client)
    times["handshake_service_ms"] = m["handshake_service_ms"]
    times["close_service_ms"] = m["close_service_ms"]
    return {"times": times, "source": f"probe: {m['opens']} handshakes, {m['closes_1012']} closes", "probe": m}


def command(name: str, args: argparse.Namespace) -> int:
    """Run ``wsstorm simulate``."""
    if not (args.dt > 0 and args.dt <= 0.1):
        raise UsageError(f"--dt must be in (0, 0.1] seconds, got {args.dt:g}")
    from wsstorm.run import scenario as scenarios

    sc = load_scenario(args.scenario)
    if args.duration is not None:
        sc = scenarios.with_overrides(sc, duration=args.duration)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.sweep is not None:
        counts = parse_sweep(args.sweep)
        texts = [p.strip() for p in (args.policies.split(",") if args.policies else SWEEP_POLICIES)]
        if any(not p for p in texts):
            raise UsageError(f"--policies has an empty entry: {args.policies!r}")
        specs = [parse_policy_text(p) for p in texts]
        out = Path(args.out or f"reports/sim-sweep-{names.safe_id(sc.name, 60)}-{stamp}")
        print(f"simulated sweep of '{sc.name}': {len(specs)} policies x {len(counts)} fleet sizes")
        svc = service_options(args, sc, out, str(specs[0]))
        csv_path, png_path = sweep(sc, specs, counts, args.seed, args.dt, out, service=svc["times"])
        print(f"sweep figures: {csv_path}")
        print(f"sweep chart:   {png_path}")
        return 0
    if args.policies is not None:
        raise UsageError("--policies goes with --sweep; for one run use --policy")
    spec = parse_policy_text(args.policy)
    clients = parse_count(args.clients) if args.clients is not None else sc.users
    label = f"{names.safe_id(sc.name, 60)}-{names.safe_id(str(spec).split(':')[0], 60)}"
    out = Path(args.out or f"reports/sim-{label}-{clients}-{stamp}")
    svc = service_options(args, sc, out, str(spec))
    cfg, k = build_config(sc, clients, seed=args.seed, dt=args.dt, **svc["times"])
    started = time.time()
    t0 = time.perf_counter()
    res = run_model(cfg, spec)
    wall = time.perf_counter() - t0
    s = summarize(res, cfg)
    write_run(out, sc, spec, cfg, k, res, s, wall, started, service_source=svc["source"], probe=svc.get("probe"))
    print(f"SIMULATED: '{sc.name}' with {spec}, x{k:g} the scenario "
          f"(capacity {cfg.capacity:,}, handshake budget {cfg.handshake_rate:,.0f}/s); {wall:.1f} s of compute")
    for line in summary_lines(s):
        print(line)
    print(f"  server service times ({svc['source']}): handshake {cfg.handshake_service_ms:g} ms, "
          f"rejection {cfg.reject_service_ms:g} ms, close {cfg.close_service_ms:g} ms")
    print(f"run folder: {out}  (wsstorm report {out})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from wsstorm.cli import main

    sys.exit(main(["simulate", *sys.argv[1:]]))
