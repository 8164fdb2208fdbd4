"""control: stopping a target twice (atexit and quit) is harmless."""

from __future__ import annotations

import time

import pytest

from wsstorm.target.control import start_target


@pytest.mark.e2e
def test_stop_twice_returns_at_once_and_closes_stderr() -> None:
    t = start_target()
    first = t.stop()
    assert t.stderr_file.closed and not t.alive()
    t0 = time.monotonic()
    assert t.stop() == first
    assert time.monotonic() - t0 < 0.05
    assert t.stderr_text() == ""
