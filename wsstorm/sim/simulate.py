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
import dis
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.errors import UsageError
from wsstorm.runfolder import jsonl, manifest, names
from wsstorm.sim.config import (  # noqa: F401 (re-exported)
    CLOSE_SERVICE_MS,
    DEFAULT_CONNECT_TIMEOUT,
    TLS_HANDSHAKE_MS,
    WEBSOCKETS_HANDSHAKE_MS,
    ServerCosts,
    build_config,
    server_costs,
)
from wsstorm.sim.fleetmodel import SERIES_COLUMNS, FleetModel, ModelConfig, ModelResult
from wsstorm.sim.summary import downtime_sample, fault_lines, series_values, summarize, summary_lines, target_block
from wsstorm.sim.sweep import parse_count, parse_sweep, sweep, tipping_lines

PROBE_MAX_USERS = 2000
SWEEP_POLICIES = ("immediate", "exponential", "full-jitter", "decorrelated-jitter", "code-aware")


# -- policies ------------------------------------------------------------------------


class _VectorFleet:
    """The policies' vector API (``spec.vector``) in the model's outcome names ('1012', 'refused', 'http_503').

    Decisions are VectorPolicy.next_delays' own, bit for bit: the same rule (``policies.core.decide``) on the
    same state, with the same draws from the same generator. Only the bookkeeping around it is leaner: for the
    whole fleet the state arrays are used in place (no gather of n clients), and only the state arrays the rule
    changed are written back (the per-process constant, and tokens or a wrapper's columns when there are none,
    stay as they are). At 10^6 clients retrying every tick that bookkeeping was most of the simulator's time.
    """

    def __init__(self, vec: Any) -> None:
        from wsstorm.policies import PolicyState, decide, on_open, parse_code

        self.vec = vec
        self.spec = vec.spec
        self.n = int(vec.n)
        self._codes: dict[str, int] = {}
        self._parse = parse_code
        self._decide = decide
        self._on_open = on_open
        self._state_type = PolicyState
        # a rule that never reads its uniforms (immediate, exponential, ...) gets none drawn: the generator
        # jumps ahead by as many as it would have drawn instead, so every later draw is the same number
        bitgen = vec._rng.bit_generator
        self._skip_draws = (
            self.spec.throttle is None and not _reads_draws(self.spec.preset.delay) and hasattr(bitgen, "advance")
        )

    def _code(self, outcome: str) -> int:
        code = self._codes.get(outcome)
        if code is None:
            code = self._codes[outcome] = int(self._parse(outcome))
        return code

    def _everyone(self, idx: np.ndarray) -> bool:
        # idx never repeats a client, so n of them are all of them: then the policy can work on its state
        # arrays whole instead of gathering and scattering them (a fleet in lock-step, e.g. `immediate`
        # against a refusing server, asks for everyone every tick)
        return idx.size == self.n and idx.size > 1

    def _sub(self, idx: np.ndarray | None) -> Any:
        """The state of clients idx (None: the policy's own arrays; a throttle's columns copied, as its rule
        updates what it computed in place)."""
        st = self.vec._state
        if idx is not None:
            # without a budget the tokens stay 0, without a per-process constant the constant is 0
            # (policies.core.initial_state; decide returns both as they came): zeros, not a gather
            spec = self.spec
            tokens = st.tokens[idx] if spec.budget is not None else np.zeros(idx.size)
            const = st.const[idx] if spec.preset.const is not None else np.zeros(idx.size)
            return self._state_type(st.n[idx], st.prev[idx], st.last[idx], tokens, const, st.wrap[idx])
        if self.spec.throttle is not None:
            return st._replace(wrap=st.wrap.copy())
        return st

    def _write_back(self, idx: np.ndarray | None, sub: Any, new: Any) -> None:
        """Store what the rule changed: arrays it returned as they came in are unchanged and are skipped."""
        for a, old, b in zip(self.vec._state, sub, new, strict=True):
            if b is old:
                continue
            if idx is None:
                np.copyto(a, b)  # in place: the arrays stay the policy's own (its views, e.g. retries, hold)
            else:
                a[idx] = b

    def opened(self, idx: np.ndarray) -> None:
        """Clients idx opened a connection (VectorPolicy.opened)."""
        i = None if self._everyone(idx) else np.asarray(idx, dtype=np.int64).reshape(-1)
        sub = self._sub(i)
        self._write_back(i, sub, self._on_open(self.spec, sub))

    def _draws(self, m: int) -> np.ndarray:
        """The (m, ndraws) uniforms of m decisions (or the generator advanced past them, for a rule that never
        reads them)."""
        nd = self.spec.ndraws
        if self._skip_draws:
            self.vec._rng.bit_generator.advance(m * nd)  # Generator.random: one 64-bit step per float64
            return np.broadcast_to(np.float64(np.nan), (m, nd))  # never read (NaN if it were)
        u: np.ndarray = self.vec._rng.random((m, nd))
        return u

    def _delays_masked(
        self, idx: np.ndarray, code: int, up: np.ndarray | None, retry_after: float | None
    ) -> np.ndarray:
        """_delays for most of the fleet at once (a wave of connect timeouts): the rule runs on the whole state
        arrays and its results are kept only where idx is. Each client's rule reads its own row only, so a client
        of idx gets exactly what the gathered path gives it (the same row of draws too), without a gather and a
        scatter of ~n clients' state, which at 10^6 clients cost more than the rule."""
        n, m = self.n, idx.size
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
        up_c = np.zeros(n)
        if up is not None:
            up_i = np.broadcast_to(np.nan_to_num(np.asarray(up, dtype=np.float64), nan=0.0, posinf=0.0), (m,))
            if up_i.any():
                up_c[idx] = up_i
        c = np.broadcast_to(np.asarray(code, dtype=np.int64), (n,))
        hint = math.nan if retry_after is None or not math.isfinite(retry_after) else float(retry_after)
        h = np.broadcast_to(np.float64(hint), (n,))  # the rules only read it
        u_i = self._draws(m)
        if self._skip_draws:
            u = np.broadcast_to(np.float64(np.nan), (n, u_i.shape[1]))
        else:
            u = np.zeros((n, u_i.shape[1]))
            u[idx] = u_i
        st = self.vec._state
        d, new = self._decide(self.spec, st, c, up_c, h, u)
        for a, b in zip(st, new, strict=True):
            if b is not a:
                np.copyto(a, b, where=mask if a.ndim == 1 else mask[:, None])
        picked: np.ndarray = np.asarray(d, dtype=float)[idx]
        return picked

    def _delays(
        self, idx: np.ndarray | None, code: int, up: np.ndarray | None, retry_after: float | None
    ) -> np.ndarray:
        """VectorPolicy.next_delays(idx, code, up, retry_after) for idx (None: every client, in client order;
        up None: every uptime 0)."""
        if (
            idx is not None
            and 2 * idx.size >= self.n > 1
            and self.spec.throttle is None
            and (retry_after is None or np.ndim(retry_after) == 0)
        ):
            return self._delays_masked(idx, code, up, retry_after)
        m = self.n if idx is None else idx.size
        c = np.broadcast_to(np.asarray(code, dtype=np.int64), (m,))
        if up is None:  # every uptime 0: nothing to clean of NaN
            up = np.broadcast_to(np.float64(0.0), (m,))
        else:
            up = np.broadcast_to(np.nan_to_num(np.asarray(up, dtype=np.float64), nan=0.0, posinf=0.0), (m,))
        if retry_after is None:
            h = np.broadcast_to(np.float64(np.nan), (m,))  # the rules only read it
        else:
            h = np.broadcast_to(np.asarray(retry_after, dtype=np.float64), (m,))
            h = np.where(np.isfinite(h), h, np.nan)
        sub = self._sub(idx)
        d, new = self._decide(self.spec, sub, c, up, h, self._draws(m))
        self._write_back(idx, sub, new)
        return np.asarray(d, dtype=float)

    def next_delays_all(self, outcome: str, uptime_s: np.ndarray | None, retry_after: float | None) -> np.ndarray:
        """Delays for every client, in client order (uptime_s in client order too, None: 0)."""
        return self._delays(None, self._code(outcome), uptime_s, retry_after)

    def next_delays(
        self, idx: np.ndarray, outcome: str, uptime_s: np.ndarray | None, retry_after: float | None
    ) -> np.ndarray:
        """Delays for clients idx (no repeats), in idx order (uptime_s in idx order, None: 0)."""
        code = self._code(outcome)
        if self._everyone(idx):
            up = None if uptime_s is None else np.asarray(uptime_s, dtype=float)
            if up is not None and up.ndim and up.any():
                whole = np.empty(idx.size)
                whole[idx] = up
                up = whole
            else:
                up = None
            picked: np.ndarray = self._delays(None, code, up, retry_after)[idx]
            return picked
        return self._delays(np.asarray(idx, dtype=np.int64).reshape(-1), code, uptime_s, retry_after)


def _reads_draws(fn: Any) -> bool:
    """Whether a preset's delay rule may read its uniforms ``u``: True unless its own code never names ``u``
    (then no nested function can capture it either) and calls no locals()/vars()/eval()/exec()."""
    code = getattr(fn, "__code__", None)
    if code is None or "u" not in code.co_varnames[: code.co_argcount]:
        return True
    if {"locals", "vars", "eval", "exec"} & set(code.co_names):
        return True
    for ins in dis.get_instructions(code):
        v = ins.argval
        if v == "u" or (isinstance(v, tuple) and "u" in v):
            return True
    return False


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


def run_manifest(
    out: Path,
    sc: Any,
    spec: Any,
    cfg: ModelConfig,
    scale: float,
    res: ModelResult,
    wall_s: float,
    started: float,
    service_source: str = "default",
    probe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's manifest (runfolder.manifest.build_manifest, simulated) with the simulation's own block."""
    m = manifest.build_manifest(
        run=out.name,
        started=started,
        ended=started + cfg.duration,
        host="simulated",
        embedded_target=False,
        policy=str(spec),
        scenario=sc.to_dict(),
        seed=cfg.seed,
        users=cfg.clients,
        spawn_rate=cfg.spawn_rate,
        duration_s=cfg.duration,
        options={"clients": cfg.clients, "dt": cfg.dt, "seed": cfg.seed},
        workers=[],
        cpu_warnings=[],
        target=target_block(cfg),
        simulated=True,
    )
    m["versions"]["numpy"] = np.__version__
    d, _ = downtime_sample(res, cfg)
    m["simulation"] = jsonl.jsonable(
        {
            "scale": scale,
            "scenario_users": sc.users,
            "dt": cfg.dt,
            "handshake_service_ms": cfg.handshake_service_ms,
            "reject_service_ms": cfg.reject_service_ms,
            "close_service_ms": cfg.close_service_ms,
            "service_source": service_source,
            "probe": probe,
            "cpu_ms_per_s": cfg.cpu_ms_per_s,
            "connect_timeout": cfg.connect_timeout,
            "held_s": cfg.held_s,
            "downtimes_total": int(res.downtimes.size),
            "downtimes_written": int(d.size),
            "wall_s": round(wall_s, 3),
        },
        inf=None,
    )
    return m


def write_run(out: Path, man: dict[str, Any], res: ModelResult, cfg: ModelConfig, started: float) -> None:
    """Write the run folder: manifest, per-second series, downtimes and faults (runfolder names and schemas)."""
    out.mkdir(parents=True, exist_ok=True)
    cols = list(SERIES_COLUMNS)
    with open(out / names.SERIES_CSV, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*(series_values(res.series[c]).tolist() for c in cols), strict=False))
    d, rec = downtime_sample(res, cfg)
    with open(out / names.DOWNTIMES_CSV, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["downtime_s", "recovered"])
        w.writerows(zip(d.tolist(), rec.astype(int).tolist(), strict=False))
    with open(out / names.FAULTS, "w", encoding="utf-8") as fh:
        for line in fault_lines(res, started):
            fh.write(json.dumps(jsonl.jsonable(line)) + "\n")
    manifest.write_manifest(out, man)


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
    a(
        "--handshake-service-ms",
        type=float,
        default=None,
        help="server time per accepted handshake, ms (default: the scenario's handshake_cost_ms "
        f"+ {WEBSOCKETS_HANDSHAKE_MS:g} ms for the websockets handshake; --probe measures it)",
    )
    a(
        "--reject-service-ms",
        type=float,
        default=None,
        help="server time per rejected handshake, ms (default: handshake service minus handshake_cost_ms)",
    )
    a(
        "--close-service-ms",
        type=float,
        default=None,
        help=f"server time per close frame sent, ms (default {CLOSE_SERVICE_MS:g})",
    )
    a(
        "--probe",
        action="store_true",
        help="first measure the handshake and close service times on this machine with a short real run "
        "against the embedded target (~12 s), then simulate with them",
    )
    a("--policies", default=None, help=f"with --sweep: comma-separated policies (default: {','.join(SWEEP_POLICIES)})")
    a(
        "--sized-for",
        default=None,
        metavar="CLIENTS",
        help="with --sweep: the deployment (server CPU, handshake budget, store) is sized for this many clients "
        "and stays so while the fleet grows (default: the sweep's smallest fleet)",
    )


def service_options(args: argparse.Namespace, sc: Any, out: Path, policy: str = "full-jitter") -> dict[str, Any]:
    """Service times from the options (or the probe): {"times": build_config kwargs, "source": text}."""
    times = {
        "handshake_service_ms": args.handshake_service_ms,
        "reject_service_ms": args.reject_service_ms,
        "close_service_ms": args.close_service_ms,
    }
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
    client = {
        "message_rate": float(cl.message_rate or 0.0),
        "ping_interval": float(cl.ping_interval or 5.0),
        "pong_timeout": float(cl.pong_timeout or 5.0),
    }
    # one server at the scenario's own scale (not the fleet's), within what this machine can run quickly
    tg = sc.target
    costs = {
        k: getattr(tg, k, None)
        for k in ("tls", "attempt_cost_ms", "session_cost_ms", "store_concurrency", "store_ms", "cpus")
    }
    m = probe(
        out / "probe",
        users=min(int(sc.users), PROBE_MAX_USERS),
        handshake_cost_ms=float(tg.handshake_cost_ms),
        policy=policy,
        client=client,
        costs=costs,
    )
    hs_cost = float(tg.handshake_cost_ms)
    if server_costs(sc).nominal_ms > 0:
        from wsstorm.sim.calibrate import library_ms

        # the model, run on the probe's own scenario, finds the library's share (subtraction cannot)
        cal = library_ms(Path(m["scenario"]), Path(m["run"]), m["close_service_ms"], parse_policy_text(policy))
        m["calibration"] = cal
        library = cal["library_ms"]
    else:  # nothing but the library and the handshake cost: the spacing of opens is the handshake
        library = max(0.0, m["handshake_service_ms"] - hs_cost)
    times["handshake_service_ms"] = library + hs_cost
    times["reject_service_ms"] = library
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
        sized = parse_count(args.sized_for, "--sized-for") if args.sized_for is not None else counts[0]
        csv_path, png_path, tips = sweep(
            sc, specs, counts, args.seed, args.dt, out, service=svc["times"], sized_for=sized
        )
        for line in tipping_lines(tips, counts, sized):
            print(line)
        print(f"sweep figures: {csv_path}")
        print(f"sweep chart:   {png_path}")
        return 0
    if args.policies is not None or args.sized_for is not None:
        raise UsageError("--policies and --sized-for go with --sweep; for one run use --policy")
    spec = parse_policy_text(args.policy)
    clients = parse_count(args.clients) if args.clients is not None else sc.users
    label = f"{names.safe_id(sc.name, 60)}-{names.safe_id(str(spec).split(':')[0], 60)}"
    out = Path(args.out or f"reports/sim-{label}-{clients}-{stamp}")
    svc = service_options(args, sc, out, str(spec))
    cfg, k = build_config(sc, clients, seed=args.seed, dt=args.dt, **svc["times"])
    started = float(int(time.time()))  # whole seconds: fault times stay exact after the round trip
    t0 = time.perf_counter()
    res = run_model(cfg, spec)
    wall = time.perf_counter() - t0
    man = run_manifest(out, sc, spec, cfg, k, res, wall, started, service_source=svc["source"], probe=svc.get("probe"))
    s = summarize(res, cfg, man, started)  # the reports' metrics, on what the run folder holds
    man["simulation"]["summary"] = jsonl.jsonable(s, inf=None)
    write_run(out, man, res, cfg, started)
    print(
        f"SIMULATED: '{sc.name}' with {spec}, x{k:g} the scenario "
        f"(capacity {cfg.capacity:,}, handshake budget {cfg.handshake_rate:,.0f}/s); {wall:.1f} s of compute"
    )
    for line in summary_lines(s):
        print(line)
    print(
        f"  server service times ({svc['source']}): handshake {cfg.handshake_service_ms:g} ms, "
        f"rejection {cfg.reject_service_ms:g} ms, close {cfg.close_service_ms:g} ms"
    )
    print(f"run folder: {out}  (wsstorm report {out})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from wsstorm.cli import main

    sys.exit(main(["simulate", *sys.argv[1:]]))
