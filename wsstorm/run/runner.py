"""``wsstorm run``, ``wsstorm compare`` and ``wsstorm demo``: whole experiments in one command.

Each run is Locust headless in a child process (``locust -f locustfile.py --scenario ...``), which
starts the embedded target and fires the scenario's faults.  The parts: :mod:`.plan` validates
everything first and builds the Locust command line; :mod:`.procs` starts, watches and stops every
process (Ctrl-C/SIGTERM included) and builds reports in a child ``python -m wsstorm.analysis`` (the
load side never imports analysis); :mod:`.summary` prints the table and writes the demo's index.
This module is the commands themselves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wsstorm.errors import UsageError
from wsstorm.run import scenario as scenarios
from wsstorm.run.plan import (  # noqa: F401
    DEFAULT_COMPARE,
    DEMO_BUDGET_S,
    DEMO_DEFAULT,
    DEMO_PLAN,
    DEMO_POLICIES,
    DEMO_SCENARIOS,
    DEMO_SIZE,
    RUN_OVERHEAD_S,
    Plan,
    check_policy,
    configure,
    find_locustfile,
    free_port,
    harness_cpus,
    locust_argv,
    make_plan,
    port_free,
    redact,
    split_policies,
)
from wsstorm.run.procs import (  # noqa: F401
    LOCUST_LOG,
    REPORT_LOG,
    RunResult,
    Stopper,
    Tree,
    analysis_child,
    build_run_report,
    new_dir,
    read_metrics,
    read_result,
    result_report,
    run_one,
)
from wsstorm.run.progress import Progress, RunMonitor, codes_text
from wsstorm.run.summary import ScenarioReports, compare_metrics, print_summary, summary_rows, write_index  # noqa: F401
from wsstorm.runfolder import names

_redact = redact  # the old private name


def safe_name(text: str) -> str:
    """A file-name-safe version of a policy/scenario text (runfolder.names.safe_id, 60 characters)."""
    return names.safe_id(text, 60)


def demo_plans(args: argparse.Namespace) -> list[Plan]:
    """The demo's plans: --scenarios (each must exist) or DEMO_PLAN's shipped scenarios, each with
    --policies or its own policy list and size."""
    own = {name: (policies, size) for name, policies, size in DEMO_PLAN}
    if args.scenarios is not None:
        wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        if not wanted:
            raise UsageError("no scenarios given")
    else:  # the default list: a scenario not shipped (yet) is left out, not an error
        shipped = set(scenarios.shipped())
        wanted = [name for name in DEMO_DEFAULT if name in shipped]
    plans = []
    for name in wanted:
        policies, size = own.get(name, (DEMO_POLICIES, DEMO_SIZE))
        plans.append(make_plan(args, name, split_policies(args.policies or policies), size))
    return plans


def command(name: str, args: argparse.Namespace) -> int:
    """Run ``wsstorm run|compare|demo``."""
    if name == "run":
        plan = make_plan(args, args.scenario, [args.policy])
        return _cmd_run(plan, args)
    if name == "compare":
        plan = make_plan(args, args.scenario, split_policies(args.policies))
        return _cmd_compare([plan], args, root=None)
    return _cmd_compare(demo_plans(args), args, root="demo")


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
        progress.message(
            f"run {run_dir.name}: scenario {plan.scenario.name}, policy {policy}, "
            f"{plan.scenario.users} users, {plan.scenario.duration:g} s -> {run_dir}"
        )
        if plan.cpus_note:
            progress.message(plan.cpus_note)
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
            tail = (result.run_dir / LOCUST_LOG).read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            tail = []
        last = tail[-1] if tail else ""
        progress.message(f"locust exited with code {result.exit_code}: {last} (see {result.run_dir / LOCUST_LOG})")


def _cmd_compare(plans: list[Plan], args: argparse.Namespace, root: str | None) -> int:
    progress = _progress(args)
    base = plans[0].out
    top = new_dir(base, f"{root}-{_stamp()}") if root else None
    jobs = []  # (plan, folder, [(policy, seed, k)])
    for plan in plans:
        folder = (
            new_dir(top, safe_name(plan.scenario.name))
            if top
            else new_dir(base, f"compare-{_stamp()}-{safe_name(plan.scenario.name)}")
        )
        runs = [(p, plan.seed + k, k) for p in plan.policies for k in range(plan.repeat)]
        jobs.append((plan, folder, runs))
    total = sum(len(r) for _, _, r in jobs)
    est = sum(len(r) * (p.scenario.duration + RUN_OVERHEAD_S) for p, _, r in jobs)
    progress.message(f"{total} runs, about {est / 60:.1f} min -> {top or jobs[0][1]}")
    for p in plans:
        if p.cpus_note:
            progress.message(f"{p.scenario.name}: {p.cpus_note}" if len(plans) > 1 else p.cpus_note)
    all_results: list[RunResult] = []
    reports: list[ScenarioReports] = []
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
                mon = result.monitor or RunMonitor(result.run_dir)
                progress.message(
                    f"{label}: done; opens {mon.events.get('open', 0)}, closes {codes_text(mon.closes, 4)}"
                )
                results.append(result)
            all_results += results
            # a run whose Locust never started recorded nothing: compare the others
            recorded = [r for r in results if names.event_shards(r.run_dir)]
            if recorded and plan.build_report and stopper.count < 2:
                progress.message(f"building the comparison of {plan.scenario.name} and its run reports ...")
                (folder / names.RESULT_JSON).unlink(missing_ok=True)
                code, tail = analysis_child(
                    [*(str(r.run_dir) for r in recorded), "--out", str(folder)], folder / REPORT_LOG, stopper
                )
                res = read_result(folder)
                report = result_report(folder, res)
                err = "" if code == 0 and report else f"comparison failed (exit {code}): {tail}"
                sr = ScenarioReports(plan.scenario.name, report, err)
                for rel in (res or {}).get("run_reports", []):
                    page = (folder / rel).resolve()
                    run = next((r for r in results if page.parent == r.run_dir.resolve()), None)
                    if run is not None and page.is_file():
                        run.report = page
                        sr.runs.append(
                            (run.policy + (f" #{run.seed - plan.seed + 1}" if plan.repeat > 1 else ""), page)
                        )
                for r in results:
                    r.metrics = compare_metrics(folder, r.run_dir, res) or read_metrics(r.run_dir)
                reports.append(sr)
            else:
                reports.append(ScenarioReports(plan.scenario.name))
        index = write_index(top, reports) if top else None
    print_summary(all_results, progress)
    for sr in reports:
        if sr.error:
            progress.message(f"{sr.scenario}: {sr.error}")
        progress.message(f"{sr.scenario}: comparison report: {sr.report or '(none)'}")
    if index is not None:
        progress.message(f"index of all reports: {index}")
    if stopper.requested:
        return 130
    bad = any(r.exit_code != 0 or r.timed_out for r in all_results) or any(sr.error for sr in reports)
    return 1 if bad else 0
