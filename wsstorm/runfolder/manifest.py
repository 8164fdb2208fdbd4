"""The run's ``manifest.json``: what ran, with which options, where, and when.

Builds the manifest in contract order (:class:`wsstorm.runfolder.schemas.Manifest`) and writes it
atomically. Values are made strict JSON by :func:`wsstorm.runfolder.jsonl.jsonable`: NaN becomes
null and an infinity the string ``"inf"`` (``"-inf"``), everywhere in the manifest.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import wsstorm
from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import jsonable

INF_TEXT = "inf"  # how an infinite value (a policy cap, a limit) is written in the manifest


def versions() -> dict[str, str]:
    """Versions of python and the libraries a run depends on."""
    out = {"python": platform.python_version(), "wsstorm": wsstorm.__version__}
    for dist in ("locust", "websocket-client", "websockets"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def machine() -> dict[str, Any]:
    """Host name and CPU count of the machine writing the manifest."""
    return {"hostname": socket.gethostname(), "cpus": os.cpu_count(), "platform": sys.platform}


def build_manifest(
    *,
    run: str,
    started: float,
    ended: float | None,
    host: str | None,
    embedded_target: bool,
    policy: str,
    scenario: dict[str, Any] | None,
    seed: int,
    users: int | None,
    spawn_rate: float | None,
    duration_s: float | None,
    options: dict[str, Any],
    workers: list[str],
    cpu_warnings: list[dict[str, Any]],
    target: dict[str, Any] | None,
    simulated: bool = False,
) -> dict[str, Any]:
    """The manifest as a dict (contract fields, in contract order), fit for strict JSON."""
    out: dict[str, Any] = _strict(
        {
            "v": 1,
            "run": run,
            "started": started,
            "ended": ended,
            "host": host,
            "embedded_target": embedded_target,
            "policy": policy,
            "scenario": scenario,
            "seed": seed,
            "users": users,
            "spawn_rate": spawn_rate,
            "duration_s": duration_s,
            "options": options,
            "workers": sorted(workers),
            "cpu_warnings": list(cpu_warnings),
            "versions": versions(),
            "machine": machine(),
            "target": target,
            "simulated": simulated,
        }
    )
    return out


def _strict(value: Any) -> Any:
    """NaN -> null, +-inf -> "inf"/"-inf", unknown types -> text (json.dumps(allow_nan=False) then never fails)."""
    if isinstance(value, float) and value == float("-inf"):
        return "-" + INF_TEXT
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_strict(v) for v in value]
    return jsonable(value, inf=INF_TEXT)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename) so readers never see half of it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / names.MANIFEST
    tmp = run_dir / f".manifest.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(_strict(manifest), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
