"""The processes of a run: Locust (and, under it, the embedded target) and the analysis child, each
in its own session, watched, and stopped with every descendant on Ctrl-C/SIGTERM or a timeout.

The load side never imports analysis: reports are built by ``python -m wsstorm.analysis`` in a child,
which writes ``result.json`` (runfolder.schemas.AnalysisResult) saying what it built.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from wsstorm.errors import UsageError
from wsstorm.run import scenario as scenarios
from wsstorm.run.plan import Plan, free_port, locust_argv, redact
from wsstorm.run.progress import Progress, RunMonitor
from wsstorm.runfolder import names
from wsstorm.runfolder.schemas import AnalysisResult

STARTUP_GRACE_S = 60.0  # Locust + target start-up, and its orderly stop, beyond the run's duration
STOP_GRACE_S = 20.0  # after SIGTERM, how long Locust may take to stop users, flush and stop the target
REPORT_TIMEOUT_S = 300.0
# The runner's own logs in a run folder (only the runner writes and reads them).
LOCUST_LOG = names.LOCUST_LOG
REPORT_LOG = names.REPORT_LOG


class Stopper:
    """Turns SIGINT/SIGTERM into a flag the run loop checks, so everything started gets stopped in order."""

    def __init__(self) -> None:
        self.count = 0
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
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

    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc
        self.known: dict[int, float] = {}
        self.snapshot()

    def snapshot(self) -> None:
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return
        for kid in kids:
            with contextlib.suppress(psutil.Error):
                self.known.setdefault(kid.pid, kid.create_time())

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
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.snapshot()
                time.sleep(0.1)
        self.kill()

    def kill(self) -> None:
        self.snapshot()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        # orderly stops (Locust stopping the target) need a moment; then nothing may remain
        deadline = time.monotonic() + 3.0
        while self.survivors() and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in self.survivors():
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(self.survivors(), timeout=3)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


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


def _started(run_dir: Path) -> float | None:
    try:
        data = json.loads((run_dir / names.MANIFEST).read_text(encoding="utf-8"))
        return float(data["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_one(
    plan: Plan, run_dir: Path, policy: str, seed: int, label: str, progress: Progress, stopper: Stopper
) -> RunResult:
    """One Locust run into ``run_dir``; returns when it ended, timed out, or a stop was requested."""
    sc = plan.scenario
    result = RunResult(run_dir=run_dir, policy=policy, seed=seed, scenario=sc.name)
    scenario_file = run_dir / names.SCENARIO
    scenario_file.write_text(scenarios.to_toml(sc), encoding="utf-8")
    argv = locust_argv(plan, run_dir, policy, seed, scenario_file, free_port() if plan.processes else None)
    (run_dir / names.COMMAND).write_text(" ".join(redact(argv)) + "\n", encoding="utf-8")
    mon = RunMonitor(run_dir)
    result.monitor = mon
    with open(run_dir / LOCUST_LOG, "ab") as log:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(plan.locustfile.parent),
            env=env,
            start_new_session=True,
        )
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
            progress.update(
                label, (now - t0) if t0 else 0.0, sc.duration, mon, sc.target.capacity if plan.host is None else None
            )
            time.sleep(0.25)
    finally:
        tree.stop(STOP_GRACE_S)
    result.exit_code = proc.returncode
    final = RunMonitor(run_dir)  # a fresh full read, now that every writer has stopped
    final.poll()
    result.monitor = final
    return result


def analysis_child(argv: list[str], log_path: Path, stopper: Stopper) -> tuple[int, str]:
    """``python -m wsstorm.analysis ARGV`` in a child process; (exit code, last lines of its output)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsstorm.analysis", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    tree = Tree(proc)
    seen = stopper.count
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while proc.poll() is None:
        # a second Ctrl-C (after the one that stopped the run) abandons the report too
        if (stopper.count > seen and stopper.count >= 2) or time.monotonic() > deadline:
            tree.kill()
            break
        time.sleep(0.1)
    tree.kill()
    try:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return (proc.returncode if proc.returncode is not None else -1), " | ".join(tail)


def read_result(folder: Path) -> AnalysisResult | None:
    """What the analysis child built in ``folder`` (its result.json), or None."""
    try:
        data = json.loads((folder / names.RESULT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("report"), str):
        return None
    return AnalysisResult(**{k: v for k, v in data.items() if k in AnalysisResult.__annotations__})


def result_report(folder: Path, result: AnalysisResult | None) -> Path | None:
    """The report a result names, if it exists (a path inside ``folder``)."""
    if result is None:
        return None
    path = folder / result["report"]
    return path if path.is_file() else None


def build_run_report(result: RunResult, stopper: Stopper) -> None:
    """The run report (child process); fills result.report / result.report_error / result.metrics."""
    log = result.run_dir / REPORT_LOG
    (result.run_dir / names.RESULT_JSON).unlink(missing_ok=True)  # a stale one must not pass for this build
    code, tail = analysis_child([str(result.run_dir)], log, stopper)
    built = read_result(result.run_dir)
    result.report = result_report(result.run_dir, built)
    if code != 0 or result.report is None:
        result.report_error = f"report failed (exit {code}): {tail}" if tail else f"report failed (exit {code})"
    result.metrics = read_metrics(result.run_dir, (built or {}).get("metrics", names.METRICS_JSON))


def read_metrics(run_dir: Path, name: str = names.METRICS_JSON) -> dict[str, Any]:
    """The run-level metrics analysis wrote (the metrics file its result.json names), or {}."""
    try:
        data = json.loads((run_dir / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    run = data.get("run", data) if isinstance(data, dict) else {}
    return run if isinstance(run, dict) else {}
