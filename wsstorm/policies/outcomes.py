"""Outcomes of a connection or attempt, and their one-int encoding (the vector API's `code`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from wsstorm.policies.params import PolicyError

# code >= 0: close code of an open connection. code < 0: the attempt failed before open.
# "throttled" is never on the wire: a client-side throttle skipped the attempt locally (throttles.py).
FAIL_CODES: dict[str, int] = {
    "refused": -1,
    "timeout": -2,
    "tls": -3,
    "dns": -4,
    "protocol": -5,
    "reset": -6,
    "throttled": -7,
}
_FAIL_NAMES = {v: k for k, v in FAIL_CODES.items()}
HTTP_UNKNOWN = 599  # an http_status failure without a status is encoded as -599


@dataclass(frozen=True)
class Outcome:
    """What ended the last connection (`code`) or attempt (`fail`, `status`, `retry_after`)."""

    code: int | None = None
    fail: str | None = None
    status: int | None = None
    retry_after: float | None = None
    uptime_s: float = 0.0


def outcome_code(outcome: Outcome) -> int:
    """Encode an outcome as one int: close code, -1..-7 for failure kinds, -status for HTTP."""
    if outcome.code is not None:
        return int(outcome.code)
    if outcome.fail is None:
        return 1006  # nothing known: treat like an abnormal closure
    if outcome.fail == "http_status":
        status = outcome.status
        return -int(status) if status is not None and 100 <= int(status) <= 999 else -HTTP_UNKNOWN
    return FAIL_CODES.get(outcome.fail, FAIL_CODES["protocol"])


def after_code_label(code: int) -> str:
    """The event log's `after_code` text for an encoded outcome: '1013', 'refused', 'http_503'."""
    code = int(code)
    if code >= 0:
        return str(code)
    if code in _FAIL_NAMES:
        return _FAIL_NAMES[code]
    return f"http_{-code}"


def parse_code(text: str) -> int:
    """Parse an outcome given by the user ('1013', 'refused', 'http_503') into its int encoding."""
    t = str(text).strip().lower()
    if t in FAIL_CODES:
        return FAIL_CODES[t]
    m = re.fullmatch(r"http_?(\d{3})", t)
    if m:
        return -int(m.group(1))
    if re.fullmatch(r"\d{1,4}", t) and 1000 <= int(t) <= 4999:
        return int(t)
    raise PolicyError(
        f"invalid outcome {text[:40]!r}; valid: a close code 1000-4999, "
        f"{', '.join(FAIL_CODES)}, or http_<status> (e.g. http_503)"
    )


# the number must end there: "retry-after=1e3" is no hint, not a hint of 1 s
_HINT_RE = re.compile(r"retry-after\s*=\s*([0-9]{1,9}(?:\.[0-9]{1,9})?)(?![0-9.eE])", re.IGNORECASE)


def hint_from_reason(reason: str | None) -> float | None:
    """Read a `retry-after=<seconds>` delay hint from a close reason (untrusted text), or None."""
    if not reason or not isinstance(reason, str):
        return None
    m = _HINT_RE.search(reason[:1024])
    if not m:
        return None
    value = float(m.group(1))
    return value if math.isfinite(value) else None
