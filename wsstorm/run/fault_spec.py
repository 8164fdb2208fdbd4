"""A scenario's faults: the actions, the keys each takes, and their checks (part of the scenario file format)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsstorm.errors import UsageError
from wsstorm.run.checker import Checker
from wsstorm.target.settings import LAME_DUCK_CODES, LAME_DUCK_GRACE_S, LAME_DUCK_WINDOW_S, OVERLOAD_MODES

RESTART_MODES = ("all", "drain")
# The actions that need the embedded target (its admin API); http/shell work against any server.
TARGET_ACTIONS = ("restart", "crash", "partition", "heal", "reset", "latency", "capacity", "overload", "lame-duck")
PROXY_ACTIONS = ("partition", "heal", "reset", "latency")
ACTIONS = (*TARGET_ACTIONS, "http", "shell")

_COMMON_FAULT_KEYS = ("at", "action", "repeat", "every")
# action -> the keys it takes besides the common ones
FAULT_KEYS: dict[str, tuple[str, ...]] = {
    "restart": ("mode", "down", "batch", "interval", "proc"),
    "crash": ("down",),
    "partition": ("duration",),
    "heal": (),
    "reset": (),
    "latency": ("ms", "duration"),
    "capacity": ("capacity", "handshake_rate", "attempt_cost_ms", "session_cost_ms"),
    "overload": ("mode",),
    "lame-duck": ("grace", "duration", "code", "proc"),
    "http": ("url", "method", "headers", "body", "timeout"),
    "shell": ("command", "timeout"),
}


@dataclass(frozen=True)
class Fault:
    """One scheduled fault; ``params`` holds the action's own keys (mode, down, url ...)."""

    at: float
    action: str
    params: tuple[tuple[str, Any], ...] = ()
    repeat: int = 1
    every: float = 0.0

    def param(self, key: str, default: Any = None) -> Any:
        """The value of one action key, or ``default``."""
        return dict(self.params).get(key, default)

    def times(self) -> list[float]:
        """Offsets (s after the run starts) at which this fault fires."""
        return [self.at + k * self.every for k in range(self.repeat)]

    def span(self) -> float:
        """Offset of the last thing this fault does (its last firing, plus its heal; a lame duck: its grace
        and closing window, after which the target serves again)."""
        extra = float(self.param("duration", 0) or 0)
        if self.action == "lame-duck":
            extra += float(self.param("grace", 0) or 0)
        return self.times()[-1] + extra

    def to_dict(self) -> dict[str, Any]:
        """The fault as in the TOML file."""
        out: dict[str, Any] = {"at": self.at, "action": self.action}
        out.update(dict(self.params))
        if self.repeat != 1:
            out["repeat"], out["every"] = self.repeat, self.every
        return out


def parse_fault(source: str, i: int, raw: Any, duration: float, workers: int) -> Fault:
    where = f"faults[{i}]"
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: {where} must be a table ([[faults]])")
    action = raw.get("action")
    if action is None:
        raise UsageError(f"{source}: {where}: missing 'action' (one of {', '.join(ACTIONS)})")
    if action not in FAULT_KEYS:
        raise UsageError(f"{source}: {where}: unknown action {action!r} (one of {', '.join(ACTIONS)})")
    where = f"faults[{i}] ({action})"
    c = Checker(source, raw, where, (*_COMMON_FAULT_KEYS, *FAULT_KEYS[action]))
    if "at" not in raw:
        raise c.error(f"{where}: missing 'at' (seconds after the run starts)")
    at = c.number("at", 0.0)
    repeat = c.number("repeat", 1, minimum=1, integer=True)
    every = c.number("every", 0.0, strict=repeat > 1)
    if repeat > 1 and "every" not in raw:
        raise c.error(f"{where}: repeat = {repeat} needs every = <seconds between firings>")
    params: dict[str, Any] = {}
    if action == "restart":
        params["mode"] = c.string("mode", "all", RESTART_MODES)
        params["down"] = c.number("down", 0.0)
        if "batch" in raw:
            params["batch"] = c.number("batch", None, minimum=1, integer=True)
        if "interval" in raw:
            params["interval"] = c.number("interval", None)
        if "proc" in raw:
            proc = c.number("proc", None, integer=True)
            if proc >= workers:
                raise c.error(f"{where}.proc = {proc} but the target has {workers} worker(s) (proc counts from 0)")
            params["proc"] = proc
    elif action == "crash":
        params["down"] = c.number("down", 0.0)
    elif action in ("partition", "latency"):
        if action == "latency":
            if "ms" not in raw:
                raise c.error(f"{where}: missing 'ms' (added latency in milliseconds)")
            params["ms"] = c.number("ms", None)
        if "duration" in raw:
            params["duration"] = c.number("duration", None, strict=True)
    elif action == "capacity":
        if not any(k in raw for k in FAULT_KEYS["capacity"]):
            raise c.error(f"{where}: give capacity, handshake_rate, attempt_cost_ms and/or session_cost_ms")
        if "capacity" in raw:
            params["capacity"] = c.number("capacity", None, minimum=1, integer=True)
        if "handshake_rate" in raw:
            params["handshake_rate"] = c.number("handshake_rate", None)  # 0: the bucket off
        for key in ("attempt_cost_ms", "session_cost_ms"):
            if key in raw:
                params[key] = c.number(key, None)
    elif action == "lame-duck":
        params["grace"] = c.number("grace", LAME_DUCK_GRACE_S)
        params["duration"] = c.number("duration", LAME_DUCK_WINDOW_S)
        params["code"] = c.number("code", 1001, integer=True)
        if params["code"] not in LAME_DUCK_CODES:
            raise c.error(f"{where}.code must be 1001 or 1012, got {params['code']}")
        if "proc" in raw:
            proc = c.number("proc", None, integer=True)
            if proc >= workers:
                raise c.error(f"{where}.proc = {proc} but the target has {workers} worker(s) (proc counts from 0)")
            params["proc"] = proc
    elif action == "overload":
        if "mode" not in raw:
            raise c.error(f"{where}: missing 'mode' (one of {', '.join(OVERLOAD_MODES)})")
        params["mode"] = c.string("mode", None, OVERLOAD_MODES)
    elif action == "http":
        url = c.string("url", None)
        if not url or not url.startswith(("http://", "https://")):
            raise c.error(f"{where}.url must be an http:// or https:// URL, got {url!r}")
        params["url"] = url
        params["method"] = c.string("method", "POST").upper()
        headers = raw.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise c.error(f"{where}.headers must be a table of strings")
        if headers:
            params["headers"] = dict(headers)
        if "body" in raw:
            params["body"] = c.string("body", None)
        params["timeout"] = c.number("timeout", 10.0, strict=True)
    elif action == "shell":
        command = c.string("command", None)
        if not command or not command.strip():
            raise c.error(f"{where}.command must be a non-empty string")
        params["command"] = command
        params["timeout"] = c.number("timeout", 30.0, strict=True)
    fault = Fault(at=at, action=action, params=tuple(params.items()), repeat=repeat, every=every)
    last = fault.times()[-1]
    if last >= duration:
        what = f"its firing {fault.repeat} at {last:g} s" if repeat > 1 else f"at = {at:g} s"
        raise c.error(f"{where}: {what} is after the end of the run (duration = {duration:g} s)")
    if fault.span() >= duration:
        what = "serves again" if action == "lame-duck" else "heals"
        raise c.error(f"{where}: {what} at {fault.span():g} s, after the end of the run (duration = {duration:g} s)")
    return fault


def describe_fault(f: Fault) -> str:
    """One readable line for a fault: when, what, with which parameters."""
    params = ", ".join(f"{k}={v}" for k, v in f.params if k not in ("headers", "body"))
    when = f"{f.at:g} s" + (f" (x{f.repeat}, every {f.every:g} s)" if f.repeat > 1 else "")
    return f"{when}: {f.action}" + (f" {params}" if params else "")
