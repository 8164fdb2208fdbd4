"""`wsstorm policies`: list the reconnect policy catalog, or show one policy's delay distribution."""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsstorm.errors import UsageError
from wsstorm.policies import CATALOG, PolicySpec, after_code_label, load_policy_file, parse_code, parse_policy
from wsstorm.policies.throttles import THROTTLES

RETRIES = 10
DRAWS = 10_000


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add `show` and its options to the `wsstorm policies` parser."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="list the catalog (the default)")
    show = sub.add_parser("show", help="median and p5-p95 delay for retries 1..10")
    show.add_argument(
        "spec", nargs="?", help="NAME[:key=value,...][+WRAPPER:...], e.g. full-jitter:base=0.5,cap=30+sre-throttle"
    )
    show.add_argument("--file", help="read the policy from a TOML file ([policy] name = ...)")
    show.add_argument(
        "--code",
        default="1006",
        help="the outcome each retry follows: close code, refused, timeout, http_503 ... (default 1006)",
    )
    show.add_argument("--seed", default="0", help="seed of the draws (default 0)")
    show.add_argument("--plot", metavar="FILE.png", help="draw the distribution to a PNG")
    show.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def catalog_table() -> str:
    """The catalog as an aligned text table: name, rule, reset, source; then the wrappers (`NAME+wrapper`)."""
    rows = [("NAME", "RULE (n = retries since reset)", "RESETS", "SOURCE")]
    rows += [(p.name, p.rule, p.reset, p.source) for p in CATALOG.values()]
    rows.append(
        (
            "+budget",
            "tokens 10, a retry costs 1, an open refunds 1; short: give up (wait=1: wait)",
            "-",
            "retry budget (token bucket)",
        )
    )
    rows += [(f"+{t.name}", t.rule, "-", t.source) for t in THROTTLES.values()]
    return _table(rows)


def distribution(spec: PolicySpec, code: int, seed: int, draws: int = DRAWS, retries: int = RETRIES) -> dict[str, Any]:
    """Median, p5, p95 and give-up share of the delay for retries 1..`retries` after outcome `code`."""
    vec = spec.vector(draws, seed=seed, process_seed=seed)
    rows: list[dict[str, Any]] = []
    alive = np.ones(draws, dtype=bool)
    for r in range(1, retries + 1):
        d = vec.next_delays(None, code, 0.0, reset=False)
        d = np.where(alive, d, np.nan)  # a client that gave up makes no further attempts
        alive &= ~np.isnan(d)
        live = d[~np.isnan(d)]
        p5: float | None
        med: float | None
        p95: float | None
        if live.size:
            p5, med, p95 = (float(x) for x in np.percentile(live, [5, 50, 95]))
        else:
            p5 = med = p95 = None
        rows.append({"retry": r, "median": med, "p5": p5, "p95": p95, "giveup": float(1 - live.size / draws)})
    return {
        "policy": str(spec),
        "after": after_code_label(code),
        "seed": seed,
        "draws": draws,
        "cap": spec.cap if math.isfinite(spec.cap) else None,
        "retries": rows,
    }


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def render(result: dict[str, Any]) -> str:
    """The distribution as an aligned text table."""
    rows = [("RETRY", "MEDIAN s", "P5 s", "P95 s", "GAVE UP")]
    for r in result["retries"]:
        rows.append((str(r["retry"]), _fmt_s(r["median"]), _fmt_s(r["p5"]), _fmt_s(r["p95"]), f"{r['giveup']:.1%}"))
    head = f"{result['policy']} after {result['after']}: {result['draws']} seeded draws (seed {result['seed']})"
    return head + "\n" + _table(rows)


def plot(result: dict[str, Any], path: Path) -> None:
    """Draw the median line and the p5-p95 band of the delay per retry to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["retry"] for r in result["retries"]]
    nan = float("nan")
    med = [nan if r["median"] is None else r["median"] for r in result["retries"]]
    lo = [nan if r["p5"] is None else r["p5"] for r in result["retries"]]
    hi = [nan if r["p95"] is None else r["p95"] for r in result["retries"]]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.fill_between(xs, lo, hi, alpha=0.3, label="p5-p95")
    ax.plot(xs, med, marker="o", label="median")
    ax.set_xlabel("retry n (since the last reset)")
    ax.set_ylabel("delay before the attempt (s)")
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result['policy']} after {result['after']} ({result['draws']} draws)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise UsageError(f"cannot write plot {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _seed(text: str) -> int:
    if not re.fullmatch(r"-?\d{1,19}", str(text).strip()):
        raise UsageError(f"--seed must be an integer, got {str(text)[:40]!r}")
    return int(text)


def command(name: str, args: argparse.Namespace) -> int:
    """Run `wsstorm policies [list]` or `wsstorm policies show SPEC`."""
    if getattr(args, "action", None) in (None, "list"):
        print(catalog_table())
        return 0
    if args.file and args.spec:
        raise UsageError("give a policy spec or --file, not both")
    if args.file:
        spec = load_policy_file(args.file)
    elif args.spec:
        spec = parse_policy(args.spec)
    else:
        raise UsageError(f"show needs a policy: NAME[:key=value,...] or --file; valid names: {', '.join(CATALOG)}")
    result = distribution(spec, parse_code(args.code), _seed(args.seed))
    if args.plot:
        plot(result, Path(args.plot))
    if args.json:
        print(json.dumps(result))
    else:
        print(render(result))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0
