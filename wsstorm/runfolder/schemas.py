"""The versioned schemas of a run folder: events, server ticks, faults, the manifest, series columns.

Pure data definitions (TypedDicts and constants), no I/O. Writers build these shapes and
readers rely on them; ``docs/contracts.md`` explains each field. Every schema is version 1 and
grows only by optional fields, so old run folders keep loading.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

VERSION = 1

# -- the event log: events-<worker>.jsonl ------------------------------------------------

EventName = Literal["attempt", "open", "ready", "fail", "close", "wait", "giveup", "dead", "stop", "echo"]
EVENTS: tuple[str, ...] = ("attempt", "open", "ready", "fail", "close", "wait", "giveup", "dead", "stop", "echo")

# `fail.kind`: why an attempt failed before open (ready_timeout: opened, but the application's
# ready reply never came; stopped: the run ended while the attempt was in flight).
FAIL_KINDS: tuple[str, ...] = (
    "refused",
    "timeout",
    "http_status",
    "tls",
    "dns",
    "protocol",
    "reset",
    "ready_timeout",
    "stopped",
)
CLOSE_BY: tuple[str, ...] = ("server", "client", "none")


class EventBase(TypedDict):
    """Fields every event has."""

    v: int
    t: float  # wall time, epoch seconds
    run: str
    worker: str
    user: str  # "<worker>/<n>", stable for the user's life
    conn: int  # connection sequence number of that user, from 1
    event: str


class AttemptEvent(EventBase):
    attempt: int  # 1-based count since the last open
    planned_delay: float
    scheduled_t: float  # when the policy wanted this attempt (epoch s)


class OpenEvent(EventBase, total=False):
    connect_ms: float
    subprotocol: str | None  # the subprotocol the server chose
    compression: bool  # permessage-deflate agreed
    resumed: bool  # the server resumed the session instead of starting a new one


class ReadyEvent(EventBase):
    ready_ms: float  # from open to the application's ready reply


class FailEvent(EventBase, total=False):
    kind: str  # one of FAIL_KINDS
    status: int | None  # HTTP status of a rejected upgrade
    retry_after: float | None  # server hint, s
    detail: str  # untrusted text


class CloseEvent(EventBase, total=False):
    code: int
    reason: str  # untrusted
    by: str  # one of CLOSE_BY
    clean: bool
    uptime_s: float
    how: str  # 1006 only: reset | eof | ping_timeout
    raw_code: int  # protocol error on the Close frame: the wire value
    raw_reason_hex: str
    protocol_error: str


class WaitEvent(EventBase, total=False):
    delay: float
    policy: str
    after_code: str | int  # close code, or the fail kind (refused, http_503, timeout ...)
    skipped: int  # attempts a client-side throttle skipped locally within this delay (sre-throttle)


class GiveupEvent(EventBase, total=False):
    policy: str
    after_code: str | int
    retries: int
    policy_error: str


class DeadEvent(EventBase):
    silence_s: float


class EchoEvent(EventBase):
    """An echoed message came back: collateral latency of a client that stayed connected."""

    rtt_ms: float


# -- server metrics: server.jsonl --------------------------------------------------------


class ServerTick(TypedDict, total=False):
    """One second of one serving process; counts are deltas over that second."""

    v: int
    type: Literal["tick"]
    t: float
    proc: int
    state: str  # serving | restarting | down
    partial: bool  # the remainder a process counted after its last tick (crash or stop)
    connections: int
    capacity: int
    handshake_rate: float  # token bucket rate; 0 when the bucket is off
    accepted: int  # handshakes admitted
    rejected: dict[str, int]  # by reason: 1013, http_503, refused, timeout, http_401, ...
    closes_sent: dict[str, int]
    closes_received: dict[str, int]
    abnormal: int
    messages: int
    held: int
    listening: bool
    queue_depth: int
    cpu_pct: float
    rss_bytes: int
    bad_input: dict[str, int]
    # The cost model (all optional: absent in runs before it existed).
    attempts: int  # handshakes begun (TCP accepted, upgrade being read)
    goodput: int  # admissions that became held connections
    abandoned: int  # handshakes finished for clients that had already left
    wasted_ms: float  # CPU-ms spent on attempts that could not succeed
    work_ms: float  # CPU-ms spent on all attempts
    store_calls: int  # calls to the dependency (auth/session store)
    store_wait_ms_p50: float
    store_wait_ms_p99: float
    resumed: int  # sessions resumed instead of started
    session_starts: int  # admissions that started a new session (every admission when resume is off)
    session_refused: int  # session starts refused by the session start rate (closed with its refuse code)
    auth_rejected: dict[str, int]  # --auth-token refusals (401) by reason: missing, wrong; only when counted


class ServerFault(TypedDict, total=False):
    """What the target did to itself (restart, crash, died, recovered, settings)."""

    v: int
    type: Literal["fault"]
    t: float
    proc: int  # -1 for settings changes
    fault: str


class StoreTick(TypedDict, total=False):
    """One second of the dependency store (``type: "store"`` lines in server.jsonl)."""

    v: int
    type: Literal["store"]
    t: float
    calls: int
    queue_depth: int
    busy: int  # slots in use at the tick
    concurrency: int
    wait_ms_p50: float  # time a lookup waited for a free slot
    wait_ms_p99: float
    cpu_ms: float  # the store's own work in that second


# -- faults.jsonl ------------------------------------------------------------------------


class FaultLine(TypedDict, total=False):
    v: int
    t: float
    fault: str
    params: dict[str, Any]
    ok: bool
    detail: str
    at: float
    scheduled_t: float
    late_ms: float
    index: int


FAULT_NAMES: tuple[str, ...] = (
    "restart",
    "crash",
    "partition",
    "heal",
    "reset",
    "latency",
    "capacity",
    "overload",
    "http",
    "shell",
    "lame-duck",
)
DISRUPTIONS: tuple[str, ...] = ("restart", "crash", "partition", "reset", "lame-duck")  # faults that cut clients off


# -- manifest.json -----------------------------------------------------------------------


class Manifest(TypedDict, total=False):
    v: int
    run: str
    started: float
    ended: float | None
    host: str | None
    embedded_target: bool
    policy: str
    scenario: dict[str, Any] | None
    seed: int
    users: int | None
    spawn_rate: float | None
    duration_s: float | None
    options: dict[str, Any]  # secrets redacted
    workers: list[str]
    cpu_warnings: list[dict[str, Any]]
    versions: dict[str, str]
    machine: dict[str, Any]
    target: dict[str, Any] | None
    simulated: bool


# -- the analysis series frame (series.csv of a simulated run has these columns) ---------

# Client-side outcome of an attempt; the series has one column attempts_<outcome> each.
OUTCOMES: tuple[str, ...] = ("open", "1013", "refused", "http_503", "http_429", "http_other", "timeout", "other")
OUTCOME_COLUMNS: tuple[str, ...] = tuple(f"attempts_{o}" for o in OUTCOMES)
# Outcomes in which the server turned the attempt away (client view).
REJECT_OUTCOMES: tuple[str, ...] = ("1013", "http_503", "http_429", "timeout")

SERIES_CLIENT: tuple[str, ...] = ("connected", "attempts", *OUTCOME_COLUMNS)
SERIES_SERVER: tuple[str, ...] = (
    "server_connections",
    "capacity",
    "handshake_rate",
    "server_rejected",
    "server_accepted",
    "server_queue_depth",
    "server_not_serving",
    "server_goodput",
    "server_wasted_ms",
    "server_abandoned",
    "server_attempts",
    "server_work_ms",
)
SERIES_LATENCY: tuple[str, ...] = ("rtt_p50_ms", "rtt_p99_ms", "rtt_n")


def fail_outcome(kind: str | None, status: int | float | None) -> str:
    """The series outcome of an attempt that failed before open (``fail.kind``, ``fail.status``)."""
    if kind in ("refused", "timeout"):
        return kind
    if kind == "ready_timeout":  # opened, but the application's ready reply never came: the client gave up
        return "timeout"
    if kind == "http_status":
        return {503: "http_503", 429: "http_429"}.get(
            int(status) if status == status and status is not None else 0, "http_other"
        )
    return "other"


QUICK_1013_S = 1.0  # an open the server closes with 1013 within this long is outcome "1013", not "open"

# Names of close codes, for people (RFC 6455 and IANA's registry; graphql-transport-ws's 44xx).
CLOSE_CODE_NAMES: dict[int, str] = {
    1000: "Normal",
    1001: "Going Away",
    1002: "Protocol Error",
    1003: "Unsupported Data",
    1005: "No Status",
    1006: "Abnormal",
    1007: "Bad Data",
    1008: "Policy Violation",
    1009: "Too Big",
    1010: "Missing Extension",
    1011: "Internal Error",
    1012: "Service Restart",
    1013: "Try Again Later",
    1014: "Bad Gateway",
    1015: "TLS Handshake",
    4400: "Bad Request (graphql-ws)",
    4401: "Unauthorized (graphql-ws)",
    4403: "Forbidden (graphql-ws)",
    4406: "Subprotocol Not Acceptable (graphql-ws)",
    4408: "Init Timeout (graphql-ws)",
    4409: "Subscriber Exists (graphql-ws)",
    4429: "Too Many Init Requests (graphql-ws)",
    4500: "Internal Error (graphql-ws)",
}


def close_code_label(code: int | float | str | None) -> str:
    """'1012 Service Restart' for a close code; any other value as given."""
    try:
        c = int(float(code))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(code)
    return f"{c} {CLOSE_CODE_NAMES.get(c, '')}".strip()


def closes_column(code: int) -> str:
    """The series column of closes by one code."""
    return f"closes_{code}"


# -- what analysis hands back to the runner ----------------------------------------------


class AnalysisResult(TypedDict, total=False):
    """``result.json``: what one ``wsstorm report`` call built (paths relative to the folder)."""

    v: int
    kind: Literal["run", "comparison"]
    report: str  # report.html or compare.html
    metrics: str  # metrics.json or compare.json
    runs: list[str]  # a comparison: the run folders it read
    run_reports: list[str]  # a comparison: each run's report.html, relative
    warnings: list[str]
