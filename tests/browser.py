"""Headless Chromium for the tests that look at what a person sees (reports, the live tab)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# Without the background-networking flags Chromium keeps dialling out, and this machine has no network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with a fresh profile; skips the test where it is not installed."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian package chromium not installed (make system-deps)")
    cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)
