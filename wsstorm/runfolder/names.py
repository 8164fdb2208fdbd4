"""The file names of a run folder: every reader and writer takes them from here."""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = "manifest.json"
EVENTS_GLOB = "events-*.jsonl"  # one shard per Locust process
SERVER = "server.jsonl"  # target ticks and the target's own fault lines
FAULTS = "faults.jsonl"  # faults fired by the scheduler
SCENARIO = "scenario.toml"  # the scenario as run (a copy)
COMMAND = "command.txt"  # the command line that ran (secrets redacted)
CA_FILE = "target-ca.pem"  # the embedded TLS target's CA certificate

# Simulated runs: per-second aggregates instead of events.
SERIES_CSV = "series.csv"
DOWNTIMES_CSV = "downtimes.csv"

# What analysis writes.
REPORT_HTML = "report.html"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
RESULT_JSON = "result.json"  # what a report or comparison built, for the runner (see schemas.AnalysisResult)
COMPARE_HTML = "compare.html"
COMPARE_JSON = "compare.json"
INDEX_HTML = "index.html"

# Locust's own outputs (--csv prefix and --html).
LOCUST_CSV_PREFIX = "locust"
LOCUST_HTML = "locust.html"

# What the runner's children printed.
LOCUST_LOG = "locust.log"
REPORT_LOG = "report.log"


def safe_id(text: str, limit: int = 100) -> str:
    """Reduce any text (a worker id, a policy, a scenario name) to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:limit] or "x"


def shard_name(worker: str) -> str:
    """The events shard of one Locust process: ``events-<worker>.jsonl`` with a safe worker id."""
    return f"events-{safe_id(worker)}.jsonl"


def event_shards(run_dir: Path) -> list[Path]:
    """The run folder's event shards, in name order."""
    return sorted(Path(run_dir).glob(EVENTS_GLOB))
