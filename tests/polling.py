"""Bounded polling for end-to-end tests: wait for a server's state without sleeping blindly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(pred: Callable[[], Any], what: str = "the condition", timeout: float = 6.0, step: float = 0.05) -> Any:
    """Poll `pred` until it is truthy (its value) or `timeout` s passed (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout:g} s")
