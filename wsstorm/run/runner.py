"""``wsstorm run``, ``wsstorm compare`` and ``wsstorm demo``: whole experiments in one command.

Each run is Locust headless in a child process (``locust -f locustfile.py --scenario ...``), which
starts the embedded target and fires the scenario's faults; this module validates everything
first, watches the run, stops every process it started on Ctrl-C/SIGTERM, and builds the reports
in a child ``python -m analysis`` (the load side never imports analysis).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from wsstorm.run import scenario as scenarios
from wsstorm.errors import UsageError
from wsstorm.run.progress import Progress, RunMonitor, codes_text

DEFAULT_COMPARE = "immediate,exponential,full-jitter,code-aware"
DEMO_POLICIES = "immediate,exponential,full-jitter,code-aware,socketio"
DEMO_SCENARIOS = "restart,overload"
DEMO_SIZE = {"users": 200, "duration": 18.0}  # per run: 2 scenarios x 5 policies fit in 5 minutes on 2 cores
STARTUP_GRACE_S = 60.0  # Locust + target start-up, and its orderly stop, beyond the run's duration
STOP_GRACE_S = 20.0  # after SIGTERM, how long Locust may take to stop users, flush and stop the target
REPORT_TIMEOUT_S = 300.0


def find_locustfile() -> Path:
    """The repository's locustfile.py (next to the wsstorm package; it is installed editable)."""
    candidates = [Path(__file__).resolve().parents[2] / "locustfile.py", Path.cwd() / "locustfile.py"]
    for path in candidates:
        if path.is_file():
            return path
    raise UsageError(f"cannot find locustfile.py (looked in {', '.join(str(p.parent) for p in candidates)})")


# ---------------------------------------------------------------- options and validation

def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Options of ``wsstorm run|compare|demo``."""
    a = parser.add_argument
    if name == "run":
        a("--scenario", required=True, help="shipped scenario name (see `wsstorm scenarios`) or path to a .toml")
        a("--policy", default="full-jitter", help="reconnect policy spec (see `wsstorm policies`)")
        a("--policy-file", default=None, help="TOML/JSON file defining the policy (instead of --policy)")
        a("--run-id", default=None, help="run id (default: <time>-<scenario>-<policy>)")
    elif name == "compare":
        a("--scenario", required=True, help="shipped scenario name or path to a .toml")
        a("--policies", default=DEFAULT_COMPARE, help=f"comma-separated policy specs (default {DEFAULT_COMPARE})")
        a("--repeat", type=int, default=1, help="runs per policy (seeds seed, seed+1, ...)")
    else:  # demo
        a("--scenarios", default=DEMO_SCENARIOS, help=f"comma-separated scenarios (default {DEMO_SCENARIOS})")
        a("--policies", default=DEMO_POLICIES, help=f"comma-separated policy specs (default {DEMO_POLICIES})")
        a("--repeat", type=int, default=1, help="runs per policy")
    a("--users", type=int, default=None, help="override the scenario's users")
    a("--duration", type=float, default=None,
      help="override the scenario's duration (s); fault times scale with it, outage lengths do not")
    a("--spawn-rate", type=float, default=None, help="override the scenario's spawn rate (users/s)")
    a("--processes", type=int, default=None, help="Locust worker processes (default: one process)")
    a("--seed", type=int, default=42, help="random seed (the same for every policy of a comparison)")
    a("--out", default="reports", help="where run folders go (default reports/)")
    a("--host", default=None, help="your own server (ws:// or wss://) instead of the embedded target")
    a("--admin-url", default=None, help="admin API of a wsstorm target started elsewhere (with --host)")
    a("--admin-token", default=None, help="its Bearer token")
    a("--port", type=int, default=None, help="embedded target's WebSocket port (default: a free one)")
    a("--message-rate", type=float, default=None, help="messages per second per user (default: scenario's)")
    a("--ping-interval", type=float, default=None, help="seconds between pings (default: scenario's)")
    a("--pong-timeout", type=float, default=None, help="seconds without pong = dead peer (default: scenario's)")
    a("--no-report", action="store_true", help="record only; build reports later with `wsstorm report`")
    a("--plain", action="store_true", help="plain progress lines even on a terminal")


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, validated before anything starts."""

    scenario: scenarios.Scenario
    policies: tuple[str, ...]  # canonical policy texts
    policy_file: str | None = None
    repeat: int = 1
    seed: int = 42
    processes: int | None = None
    out: Path = Path("reports")
    host: str | None = None
    admin: tuple[str, str] | None = None
    port: int | None = None
    client: dict[str, float] = field(default_factory=dict)
    locustfile: Path = Path("locustfile.py")
    build_report: bool = True


def split_policies(text: str) -> list[str]:
    """Split a comma list of specs, keeping parameter lists whole: 'a,b:base=1,cap=5' -> ['a', 'b:base=1,cap=5']."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if out and "=" in piece and ":" not in piece and ":" in out[-1]:
            out[-1] += "," + piece
        else:
            out.append(piece)
    if not out:
        raise UsageError("no policies given")
    return out


def check_policy(text: str) -> str:
    """The canonical text of a policy spec; PolicyError (a UsageError) on bad input."""
    from wsstorm.policies import parse_policy

    return str(parse_policy(text))


def port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (and we may bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """An ephemeral TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _positive(name: str, value: float | None, *, integer: bool = False) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"--{name} must be {'a positive integer' if integer else '> 0'}, got {value:g}")


def make_plan(args: argparse.Namespace, scenario_name: str, policies: list[str],
              size: dict[str, Any] | None = None) -> Plan:
    """Validate the options into a Plan (UsageError, one line, for any bad input)."""
    size = size or {}
    _positive("processes", args.processes, integer=True)
    _positive("repeat", getattr(args, "repeat", 1), integer=True)
    for opt in ("message_rate",):
        if getattr(args, opt) is not None and getattr(args, opt) < 0:
            raise UsageError(f"--{opt.replace('_', '-')} must be >= 0, got {getattr(args, opt):g}")
    _positive("ping-interval", args.ping_interval)
    _positive("pong-timeout", args.pong_timeout)
    sc = scenarios.load(scenario_name)
    users = args.users if args.users is not None else size.get("users")
    duration = args.duration if args.duration is not None else size.get("duration")
    if duration is not None and duration > sc.duration and args.duration is None:
        duration = None  # a demo size never lengthens a short scenario
    if users is not None and args.users is None:
        users = min(users, sc.users)
    sc = scenarios.with_overrides(sc, users=users, duration=duration, spawn_rate=args.spawn_rate)
    host = args.host
    if host is not None and not re.match(r"^wss?://[^\s/]+", host):
        raise UsageError(f"--host must be a ws:// or wss:// URL, got {host!r}")
    admin = None
    if args.admin_url or args.admin_token:
        if not (args.admin_url and args.admin_token):
            raise UsageError("--admin-url and --admin-token go together")
        if not args.admin_url.startswith(("http://", "https://")):
            raise UsageError(f"--admin-url must be an http:// URL, got {args.admin_url!r}")
        if host is None:
            raise UsageError("--admin-url is for a target started elsewhere: give its --host too")
        admin = (args.admin_url, args.admin_token)
    scenarios.check_target(sc, embedded=host is None, admin=admin is not None)
    if args.port is not None:
        if host is not None:
            raise UsageError("--port is the embedded target's port; it cannot go with --host")
        if not 1 <= args.port <= 65535:
            raise UsageError(f"--port must be 1-65535, got {args.port}")
        if not port_free(args.port):
            raise UsageError(f"port {args.port} is in use on 127.0.0.1")
    policy_file = getattr(args, "policy_file", None)
    if policy_file:
        from wsstorm.policies import load_policy_file

        canon = [str(load_policy_file(policy_file))]
    else:
        canon = [check_policy(p) for p in policies]
    out = Path(args.out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {args.out}: not writable")
    client = {k: getattr(args, k) for k in ("message_rate", "ping_interval", "pong_timeout")
              if getattr(args, k) is not None}
    return Plan(scenario=sc, policies=tuple(canon), policy_file=policy_file, repeat=getattr(args, "repeat", 1),
                seed=args.seed, processes=args.processes, out=out, host=host, admin=admin, port=args.port,
                client=client, locustfile=find_locustfile(), build_report=not args.no_report)


# ---------------------------------------------------------------- processes

class Stopper:
    """Turns SIGINT/SIGTERM into a flag the run loop checks, so everything started gets stopped in order."""

    def __init__(self) -> None:
        self.count = 0
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "Stopper":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.count += 1
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.count > 0

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Tree:
    """Remembers every descendant of a child process (pid + start time), so none outlives the run.

    The embedded target runs in its own session under Locust, so killing Locust's group is not enough.
    """

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.known: dict[int, float] = {}
        self.snapshot()

    def snapshot(self) -> None:
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return
        for kid in kids:
            try:
                self.known.setdefault(kid.pid, kid.create_time())
            except psutil.Error:
                pass

    def survivors(self) -> list[psutil.Process]:
        out = []
        for pid, created in self.known.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def stop(self, grace: float) -> None:
        """SIGTERM the child (an orderly stop), then SIGKILL it, its group and every remembered descendant."""
        self.snapshot()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.snapshot()
                time.sleep(0.1)
        self.kill()

    def kill(self) -> None:
        self.snapshot()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # orderly stops (Locust stopping the target) need a moment; then nothing may remain
        deadline = time.monotonic() + 3.0
        while self.survivors() and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in self.survivors():
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(self.survivors(), timeout=3)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------- one run

@dataclass
class RunResult:
    """What one run left behind."""

    run_dir: Path
    policy: str
    seed: int
    scenario: str = ""
    exit_code: int | None = None  # Locust's
    interrupted: bool = False
    timed_out: bool = False
    report: Path | None = None
    report_error: str = ""
    monitor: RunMonitor | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def safe_name(text: str) -> str:
    """A file-name-safe version of a policy/scenario text."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "x"


def new_dir(parent: Path, name: str) -> Path:
    """A new folder ``parent/name`` (suffixed -2, -3 ... if taken)."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UsageError(f"cannot create a run folder under {parent}")


def locust_argv(plan: Plan, run_dir: Path, policy: str, seed: int, scenario_file: Path,
                master_port: int | None) -> list[str]:
    """The Locust command line of one run."""
    sc = plan.scenario
    argv = [sys.executable, "-m", "locust", "-f", str(plan.locustfile), "--headless",
            "-u", str(sc.users), "-r", f"{sc.spawn_rate:g}", "-t", f"{math.ceil(sc.duration)}s",
            "--csv", str(run_dir / "locust"), "--html", str(run_dir / "locust.html"), "--only-summary",
            "--exit-code-on-error", "0",
            "--seed", str(seed), "--run-dir", str(run_dir), "--run-id", run_dir.name,
            "--scenario", str(scenario_file)]
    if plan.policy_file:
        argv += ["--policy-file", plan.policy_file]
    else:
        argv += ["--policy", policy]
    for key, value in plan.client.items():
        argv += ["--" + key.replace("_", "-"), f"{value:g}"]
    if plan.host:
        argv += ["--host", plan.host]
    if plan.admin:
        argv += ["--target-admin", plan.admin[0], "--target-token", plan.admin[1]]
    if plan.port is not None:
        argv += ["--target-port", str(plan.port)]
    if plan.processes:
        argv += ["--processes", str(plan.processes), "--master-bind-port", str(master_port),
                 "--master-port", str(master_port)]
    return argv


def _started(run_dir: Path) -> float | None:
    try:
        data = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        return float(data["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_one(plan: Plan, run_dir: Path, policy: str, seed: int, label: str, progress: Progress,
            stopper: Stopper) -> RunResult:
    """One Locust run into ``run_dir``; returns when it ended, timed out, or a stop was requested."""
    sc = plan.scenario
    result = RunResult(run_dir=run_dir, policy=policy, seed=seed, scenario=sc.name)
    scenario_file = run_dir / "scenario.toml"
    scenario_file.write_text(scenarios.to_toml(sc), encoding="utf-8")
    argv = locust_argv(plan, run_dir, policy, seed, scenario_file,
                       free_port() if plan.processes else None)
    (run_dir / "command.txt").write_text(" ".join(_redact(argv)) + "\n", encoding="utf-8")
    mon = RunMonitor(run_dir)
    result.monitor = mon
    with open(run_dir / "locust.log", "ab") as log:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(plan.locustfile.parent), env=env, start_new_session=True)
    tree = Tree(proc)
    launched = time.time()
    limit = launched + sc.duration + STARTUP_GRACE_S
    last_snap = 0.0
    try:
        while proc.poll() is None:
            if stopper.requested:
                result.interrupted = True
                progress.message(f"{stopper.signal_name}: stopping the run, keeping what was recorded")
                break
            now = time.time()
            if now > limit:
                result.timed_out = True
                progress.message(f"run did not end within {sc.duration + STARTUP_GRACE_S:g} s; stopping it")
                break
            if now - last_snap > 1.0:
                tree.snapshot()
                last_snap = now
            t0 = _started(run_dir)
            mon.poll()
            progress.update(label, (now - t0) if t0 else 0.0, sc.duration, mon,
                            sc.target.capacity if plan.host is None else None)
            time.sleep(0.25)
    finally:
        tree.stop(STOP_GRACE_S)
    result.exit_code = proc.returncode
    final = RunMonitor(run_dir)  # a fresh full read, now that every writer has stopped
    final.poll()
    result.monitor = final
    return result


def _redact(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a == "--target-token":
            out[i + 1] = "***"
    return out


def analysis_child(argv: list[str], log_path: Path, stopper: Stopper) -> tuple[int, str]:
    """``python -m analysis ARGV`` in a child process; (exit code, last lines of its output)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "wsstorm.analysis", *argv], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=str(Path(__file__).resolve().parents[2]))
    tree = Tree(proc)
    seen = stopper.count
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while proc.poll() is None:
        # a second Ctrl-C (after the one that stopped the run) abandons the report too
        if stopper.count > seen and stopper.count >= 2 or time.monotonic() > deadline:
            tree.kill()
            break
        time.sleep(0.1)
    tree.kill()
    try:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return (proc.returncode if proc.returncode is not None else -1), " | ".join(tail)


def _find_report(folder: Path) -> Path | None:
    for name in ("report.html", "index.html", "compare.html", "comparison.html"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.glob("*.html") if p.name != "locust.html")
    return found[0] if found else None


def build_run_report(result: RunResult, stopper: Stopper) -> None:
    """The run report (child process); fills result.report / result.report_error / result.metrics."""
    code, tail = analysis_child([str(result.run_dir)], result.run_dir / "report.log", stopper)
    result.report = _find_report(result.run_dir)
    if code != 0 or result.report is None:
        result.report_error = f"report failed (exit {code}): {tail}" if tail else f"report failed (exit {code})"
    result.metrics = read_metrics(result.run_dir)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The run-level metrics analysis wrote (metrics.json), or {}."""
    try:
        data = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    run = data.get("run", data) if isinstance(data, dict) else {}
    return run if isinstance(run, dict) else {}


# ---------------------------------------------------------------- summary

SUMMARY_METRICS = [("herd_factor", "herd", "{:.1f}"), ("recovery_T95_s", "T95 s", "{:.1f}"),
                   ("downtime_p99_s", "down p99 s", "{:.1f}"), ("wasted_per_recovered", "wasted/rec", "{:.1f}"),
                   ("overload_s", "overload s", "{:.0f}")]


def summary_rows(results: list[RunResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (pure)."""
    several = len({r.scenario for r in results}) > 1
    named = len(results) > 1  # a single run's folder is printed under the table instead
    header = [*(["run"] if named else []), *(["scenario"] if several else []), "policy", "opens", "closes",
              "fails", "dead", "peak conn"]
    metric_cols = [m for m in SUMMARY_METRICS if any(m[0] in r.metrics for r in results)]
    header += [label for _, label, _ in metric_cols]
    rows = []
    for r in results:
        mon = r.monitor or RunMonitor(r.run_dir)
        fails = " ".join(f"{k}x{n}" for k, n in mon.fails.most_common(3)) or "-"
        row = [*([r.run_dir.name] if named else []), *([r.scenario] if several else []),
               r.policy + (" (interrupted)" if r.interrupted else ""), str(mon.events.get("open", 0)),
               codes_text(mon.closes, 4), fails, str(mon.events.get("dead", 0)), str(mon.peak_connected)]
        for key, _, fmt in metric_cols:
            v = r.metrics.get(key)
            row.append(fmt.format(v) if isinstance(v, (int, float)) and math.isfinite(v) else "-")
        rows.append(row)
    return header, rows


def print_summary(results: list[RunResult], progress: Progress) -> None:
    """The short table that ends every command."""
    from rich.table import Table

    header, rows = summary_rows(results)
    table = Table(show_lines=False)
    for h in header:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*[_esc(c) for c in row])
    progress.console.print(table)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# ---------------------------------------------------------------- commands

def command(name: str, args: argparse.Namespace) -> int:
    """Run ``wsstorm run|compare|demo``."""
    if name == "run":
        plan = make_plan(args, args.scenario, [args.policy])
        return _cmd_run(plan, args)
    if name == "compare":
        plan = make_plan(args, args.scenario, split_policies(args.policies))
        return _cmd_compare([plan], args, root=None)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not names:
        raise UsageError("no scenarios given")
    plans = [make_plan(args, n, split_policies(args.policies), DEMO_SIZE) for n in names]
    return _cmd_compare(plans, args, root="demo")


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _progress(args: argparse.Namespace) -> Progress:
    return Progress(live=False if args.plain else None)


def _cmd_run(plan: Plan, args: argparse.Namespace) -> int:
    policy = plan.policies[0]
    pname = Path(plan.policy_file).stem if plan.policy_file else policy.split(":")[0]
    run_id = safe_name(args.run_id) if args.run_id else f"{_stamp()}-{safe_name(plan.scenario.name)}-{safe_name(pname)}"
    run_dir = new_dir(plan.out, run_id)
    progress = _progress(args)
    with Stopper() as stopper:
        progress.message(f"run {run_dir.name}: scenario {plan.scenario.name}, policy {policy}, "
                         f"{plan.scenario.users} users, {plan.scenario.duration:g} s -> {run_dir}")
        with progress:
            result = run_one(plan, run_dir, policy, plan.seed, f"{plan.scenario.name} / {policy}", progress, stopper)
        _note_exit(result, progress)
        if plan.build_report and stopper.count < 2:
            progress.message("building the report ...")
            build_run_report(result, stopper)
    print_summary([result], progress)
    if result.report_error:
        progress.message(result.report_error)
    progress.message(f"run folder: {run_dir}")
    if result.report is not None:
        progress.message(f"report: {result.report}")
    if result.interrupted:
        return 130
    return 0 if result.exit_code == 0 and not result.report_error and not result.timed_out else 1


def _note_exit(result: RunResult, progress: Progress) -> None:
    if result.exit_code not in (0, None) and not result.interrupted:
        try:
            tail = (result.run_dir / "locust.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            tail = []
        last = tail[-1] if tail else ""
        progress.message(f"locust exited with code {result.exit_code}: {last} (see {result.run_dir / 'locust.log'})")


def _cmd_compare(plans: list[Plan], args: argparse.Namespace, root: str | None) -> int:
    progress = _progress(args)
    base = plans[0].out
    top = new_dir(base, f"{root}-{_stamp()}") if root else None
    jobs = []  # (plan, folder, [(policy, seed, k)])
    for plan in plans:
        folder = (new_dir(top, safe_name(plan.scenario.name)) if top
                  else new_dir(base, f"compare-{_stamp()}-{safe_name(plan.scenario.name)}"))
        runs = [(p, plan.seed + k, k) for p in plan.policies for k in range(plan.repeat)]
        jobs.append((plan, folder, runs))
    total = sum(len(r) for _, _, r in jobs)
    est = sum(len(r) * (p.scenario.duration + 6) for p, _, r in jobs)
    progress.message(f"{total} runs, about {est / 60:.1f} min -> {top or jobs[0][1]}")
    all_results: list[RunResult] = []
    reports: list[tuple[str, Path | None, str]] = []
    n = 0
    with Stopper() as stopper:
        for plan, folder, runs in jobs:
            results: list[RunResult] = []
            for policy, seed, k in runs:
                if stopper.requested:
                    break
                n += 1
                run_dir = new_dir(folder, f"{n:02d}-{safe_name(policy)}" + (f"-r{k + 1}" if plan.repeat > 1 else ""))
                label = f"run {n}/{total}: {plan.scenario.name} / {policy}" + (f" #{k + 1}" if plan.repeat > 1 else "")
                with progress:
                    result = run_one(plan, run_dir, policy, seed, label, progress, stopper)
                _note_exit(result, progress)
                mon = result.monitor
                progress.message(f"{label}: done; opens {mon.events.get('open', 0)}, closes {codes_text(mon.closes, 4)}")
                results.append(result)
            all_results += results
            # a run whose Locust never started recorded nothing: compare the others
            recorded = [r for r in results if any(r.run_dir.glob("events-*.jsonl"))]
            if recorded and plan.build_report and stopper.count < 2:
                progress.message(f"building the comparison of {plan.scenario.name} ...")
                code, tail = analysis_child([*(str(r.run_dir) for r in recorded), "--out", str(folder)],
                                            folder / "report.log", stopper)
                report = _find_report(folder)
                err = "" if code == 0 and report else f"comparison failed (exit {code}): {tail}"
                for r in results:
                    r.metrics = _compare_metrics(folder, r.run_dir) or read_metrics(r.run_dir)
                reports.append((plan.scenario.name, report, err))
            else:
                reports.append((plan.scenario.name, None, ""))
        index = write_index(top, reports) if top else None
    print_summary(all_results, progress)
    for scen, report, err in reports:
        if err:
            progress.message(f"{scen}: {err}")
        progress.message(f"{scen}: comparison report: {report or '(none)'}")
    if index is not None:
        progress.message(f"index of all reports: {index}")
    if stopper.requested:
        return 130
    bad = any(r.exit_code != 0 or r.timed_out for r in all_results) or any(e for _, _, e in reports)
    return 1 if bad else 0


def _compare_metrics(folder: Path, run_dir: Path) -> dict[str, Any]:
    """The metrics of run_dir's group (policy) from the comparison's compare.json, or {}."""
    for name in ("compare.json", "metrics.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        groups = data.get("groups") if isinstance(data, dict) else None
        for group in groups if isinstance(groups, list) else []:
            folders = group.get("folders", []) if isinstance(group, dict) else []
            if any(Path(f).name == run_dir.name and Path(f).parent.name == run_dir.parent.name for f in folders):
                return group
    return {}


def write_index(top: Path, reports: list[tuple[str, Path | None, str]]) -> Path:
    """A small index.html linking each scenario's comparison report."""
    items = []
    for scen, report, err in reports:
        if report is not None:
            rel = os.path.relpath(report, top)
            items.append(f'<li><a href="{html.escape(rel)}">{html.escape(scen)}</a></li>')
        else:
            items.append(f"<li>{html.escape(scen)}: no report {html.escape(err)}</li>")
    page = ("<!doctype html><meta charset=utf-8><title>wsstorm demo</title>"
            "<h1>wsstorm: reconnect policies compared</h1><ul>" + "".join(items) + "</ul>\n")
    path = top / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
