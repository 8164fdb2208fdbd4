"""Tolerant JSON Lines reading: whole files in chunks (analysis) and appended lines (live tails).

A truncated last line (the writer was interrupted), garbage lines and lines that are not
objects are skipped and counted, never raised: the caller decides how to report them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

_json: ModuleType
try:  # 2-3x faster parsing of big event logs
    import orjson as _json
except ImportError:  # pragma: no cover - stdlib fallback
    _json = json

CHUNK = 200_000  # lines per parse batch: bounds the peak of Python dicts in memory


def loads(line: bytes | str) -> Any:
    """Parse one JSON value (orjson when present); ValueError on bad input."""
    return _json.loads(line)


def read_jsonl(path: Path, warnings: list[str], what: str) -> Iterator[list[dict[str, Any]]]:
    """Parse a JSON Lines file chunk by chunk (lists of dicts), skipping and counting bad lines.

    The warnings (``"<what> <file>: ..."``) are appended when the generator is exhausted.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    del data
    truncated_last = bool(lines and lines[-1].strip())  # no final newline: the writer stopped mid-line?
    if b"" in lines:
        lines = [ln for ln in lines if ln]
    bad = 0
    for i in range(0, len(lines), CHUNK):
        part = lines[i : i + CHUNK]
        try:
            # One C-level parse of the whole chunk is ~2x faster than a loop of loads().
            recs = _json.loads(b"[" + b",".join(part) + b"]")
        except ValueError:
            recs = []
            for j, ln in enumerate(part):
                try:
                    recs.append(_json.loads(ln))
                except ValueError:
                    if not (truncated_last and i + j == len(lines) - 1):
                        bad += 1
                else:
                    if truncated_last and i + j == len(lines) - 1:
                        truncated_last = False  # last line was complete after all
        else:
            truncated_last = False
        if set(map(type, recs)) - {dict}:
            good = [r for r in recs if isinstance(r, dict)]
            bad += len(recs) - len(good)
            recs = good
        yield recs
    if truncated_last:
        warnings.append(
            f"{what} {Path(path).name}: the last line is truncated (the writer was interrupted); it was skipped"
        )
    if bad:
        warnings.append(f"{what} {Path(path).name}: {bad} unreadable line(s) skipped")


def records(path: Path) -> Iterator[dict[str, Any]]:
    """Every object of a JSON Lines file, bad lines skipped silently; nothing if the file is missing."""
    try:
        chunks = list(read_jsonl(path, [], ""))
    except OSError:
        return
    for chunk in chunks:
        yield from chunk


def last_records(path: Path, tail_bytes: int = 4096) -> list[dict[str, Any]]:
    """The complete objects in the last ``tail_bytes`` of a file (cheap, for a growing file)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - tail_bytes))
            lines = fh.read().split(b"\n")
    except OSError:
        return []
    out = []
    for line in lines:  # a first line cut by the seek does not parse as an object, and is skipped
        try:
            obj = _json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


class Tail:
    """Reads the complete lines appended to a JSON Lines file since the last call."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = Path(path), 0, b""

    def read(self) -> list[dict[str, Any]]:
        """The objects in the lines completed since the last call (torn or foreign lines skipped)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()  # an unfinished last line waits for its end
        out = []
        for line in lines:
            try:
                obj = _json.loads(line)
            except ValueError:
                continue  # a torn or foreign line is not ours to judge here; analysis reports it
            if isinstance(obj, dict):
                out.append(obj)
        return out


def number(v: Any) -> float | None:
    """A finite number from a JSON field, or None (bools, text, NaN and inf are not numbers here):
    a foreign or broken field is skipped by its reader, never raised."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def jsonable(value: Any, inf: Any = "not reached") -> Any:
    """A value made fit for strict JSON: NaN -> null, inf -> ``inf`` (metrics: "not reached"),
    numpy scalars -> Python, sets and tuples -> lists, anything else unknown -> its text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, inf) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v, inf) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        if value != value:
            return None
        if value in (float("inf"), float("-inf")):
            return inf
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
