"""Typed access to the fields of a TOML table, with errors that name the file and the field (one line, exit 2)."""

from __future__ import annotations

import math
from typing import Any

from wsstorm.errors import UsageError


class Checker:
    """Typed field access that names the file and field in every error."""

    def __init__(self, source: str, data: dict[str, Any], where: str, allowed: tuple[str, ...]):
        self.source, self.data, self.where = source, data, where
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise self.error(
                f"unknown key {unknown[0]!r}"
                + (f" in {where}" if where else "")
                + f" (allowed: {', '.join(allowed) or 'none'})"
            )

    def error(self, msg: str) -> UsageError:
        return UsageError(f"{self.source}: {msg}")

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def number(
        self, key: str, default: Any, *, minimum: float = 0.0, strict: bool = False, integer: bool = False
    ) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        kind = "an integer" if integer else "a number"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            raise self.error(f"{self._name(key)} must be {kind}, got {value!r}")
        if value < minimum or (strict and value == minimum):
            rel = ">" if strict else ">="
            raise self.error(f"{self._name(key)} must be {rel} {minimum:g}, got {value!r}")
        return int(value) if integer else float(value)

    def string(self, key: str, default: Any, choices: tuple[str, ...] | None = None) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(f"{self._name(key)} must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(f"{self._name(key)} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.error(f"{self._name(key)} must be true or false, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        if key not in self.data:
            return ()
        value = self.data[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{self._name(key)} must be a string or a list of strings, got {value!r}")
        return tuple(value)

    def table(self, key: str) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"{self._name(key)} must be a table ([{key}])")
        return value
