"""The ``wsstorm`` command: a thin dispatcher to the module that owns each job.

Each subcommand lives in its own module, which exposes ``configure(name, parser)``
and ``command(name, args) -> int``; modules are imported only when their command
runs, so ``wsstorm policies`` never pays for Locust or asyncio.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from wsstorm.errors import UsageError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "policies": ("wsstorm.policies.catalog", "list reconnect policies, or show one's delay distribution"),
    "serve": ("wsstorm.target.supervisor", "start the embedded WebSocket target server"),
    "proxy": ("wsstorm.target.proxy", "start the fault-injecting TCP proxy in front of any server"),
    "scenarios": ("wsstorm.run.scenario", "list the shipped scenarios, or show one"),
    "run": ("wsstorm.run.runner", "run one scenario with one policy and build its report"),
    "compare": ("wsstorm.run.runner", "run several policies on one scenario and compare them"),
    "demo": ("wsstorm.run.runner", "the main job: compare presets on the metastable restart (--scenarios for more)"),
    "simulate": ("wsstorm.sim.simulate", "model a reconnect storm at fleet scale"),
}


def _run_report(argv: list[str]) -> int:
    # The load side never imports analysis: reports are built in a child process.
    return subprocess.call([sys.executable, "-m", "wsstorm.analysis", *argv])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsstorm",
        description="Load-test and observability harness for WebSocket reconnect storms.",
    )
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    sub.add_parser("report", help="build a run report (one folder) or a comparison (several)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "report":
        return _run_report(rest)
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from: {', '.join([*COMMANDS, 'report'])}")
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"wsstorm {name}", description=COMMANDS[name][1])
    module.configure(name, sub)
    args = sub.parse_args(rest)
    try:
        return int(module.command(name, args) or 0)
    except UsageError as exc:
        print(f"wsstorm {name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
