"""The run's ``manifest.json``: what ran, with which options, where, and when."""

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


def build_manifest(*, run: str, started: float, ended: float | None, host: str | None,
                   embedded_target: bool, policy: str, scenario: dict[str, Any] | None, seed: int,
                   users: int | None, spawn_rate: float | None, duration_s: float | None,
                   options: dict[str, Any], workers: list[str], cpu_warnings: list[dict[str, Any]],
                   target: dict[str, Any] | None, simulated: bool = False) -> dict[str, Any]:
    """The manifest as a dict (contract fields, in contract order)."""
    return {
        "v": 1, "run": run, "started": started, "ended": ended, "host": host,
        "embedded_target": embedded_target, "policy": policy, "scenario": scenario, "seed": seed,
        "users": users, "spawn_rate": spawn_rate, "duration_s": duration_s,
        "options": _jsonable(options), "workers": sorted(workers), "cpu_warnings": list(cpu_warnings),
        "versions": versions(), "machine": machine(), "target": target, "simulated": simulated,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename) so readers never see half of it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "manifest.json"
    tmp = run_dir / f".manifest.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
