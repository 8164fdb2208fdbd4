"""``python -m wsstorm.analysis RUN_DIR`` (a run report) or ``RUN_DIR RUN_DIR ... [--out DIR]`` (a comparison).

Prints the report's path and a short summary; bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m wsstorm.analysis`` (and ``wsstorm report``)."""
    p = argparse.ArgumentParser(prog="wsstorm report", description=(__doc__ or "").splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folder(s); several make a comparison")
    p.add_argument("--out", metavar="DIR", help="comparison output folder (default: reports/compare-<time>)")
    p.add_argument(
        "--held",
        type=float,
        default=5.0,
        metavar="S",
        help="a connection held this long counts as recovered (default 5 s)",
    )
    p.add_argument(
        "--no-run-reports", action="store_true", help="a comparison: do not (re)build each run's report.html"
    )
    return p


def summary_line(label: str, m: dict[str, Any]) -> str:
    """One line of the printed summary table."""
    from .report import fmt

    r = m["run"]
    return (
        f"{label[:38]:<38} {fmt(r.get('herd_factor'), 'x'):>10} {fmt(r.get('recovery_T95_s'), ' s'):>12} "
        f"{fmt(r.get('downtime_p99_s'), ' s'):>12} {fmt(r.get('wasted_per_recovered')):>8} "
        f"{fmt(r.get('overload_s'), ' s'):>9} {_metastable(r.get('metastable')):>10}"
    )


def _metastable(ms: object) -> str:
    return "-" if not isinstance(ms, dict) else ("YES" if ms.get("flag") else "no")


HEADER = (
    f"{'run / policy':<38} {'herd':>10} {'T95':>12} {'downtime p99':>12} {'wasted':>8} {'overload':>9} "
    f"{'metastable':>10}"
)


def _report(folder: str, held_s: float) -> tuple[Path, dict[str, Any]]:
    """Parse the run's events while pandas, matplotlib and the report are imported: the parser threads
    need numpy and pyarrow only and run without the GIL, and the imports (~0.7 s) would otherwise come
    first and alone."""
    from wsstorm.runfolder import names

    from . import columnar, fields

    parsing = columnar.start(names.event_shards(Path(folder)), fields.BY_EVENT, fields.EVENT_FLOATS)
    try:
        preload = threading.Thread(target=importlib.import_module, args=(f"{__package__}.report",), daemon=True)
        preload.start()
        from .load import load_run

        run = load_run(folder, parsing)
    finally:
        if parsing is not None:  # (load_run closes it too; an import failure must not leave it running)
            parsing.close()
    preload.join()
    from .report import build_report  # (raises here if the import failed in the thread)

    return build_report(run, held_s)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.held <= 0:
            raise UsageError("--held must be > 0 seconds")
        for r in args.runs:
            if not Path(r).is_dir():
                raise UsageError(f"{r}: no such run folder")
        if len(args.runs) == 1:
            page, m = _report(args.runs[0], args.held)
            print(page)
            print(HEADER)
            print(summary_line(str(m.get("policy") or m.get("run_id")), m))
            for w in m["warnings"]:
                print(f"warning: {w}")
        else:
            from .compare import write_comparison

            page, rows = write_comparison(args.runs, args.out, args.held, run_reports=not args.no_run_reports)
            print(page)
            print(HEADER)
            for label, m in rows:
                print(summary_line(label, m))
    except UsageError as exc:
        print(f"wsstorm report: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a run folder we did not foresee: one line, not a traceback
        print(
            f"wsstorm report: error: cannot analyse {' '.join(map(str, args.runs))}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 2
    return 0


def exit_now(code: int) -> None:
    """Exit with ``code`` without the interpreter's teardown: every output file is written and closed by
    then, and freeing a million rows of frames object by object took ~0.25 s of a report (issue 16)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
