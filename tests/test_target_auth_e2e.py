"""The embedded target with TLS and a required bearer token, driven by real Locust (no --host).

Users with the right token: every open the harness records is one the server admitted, and every
close is one the server counted. Users with a wrong or no token: every `fail http_status 401` is one
the server rejected (rejected.http_401, split by reason). The token, planted in the environment of
both sides, appears in no file of either run folder and not in Locust's output.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.test_user_e2e import LOCUST, read_events
from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import records

pytestmark = pytest.mark.e2e

TOKEN = "pl4nted-auth-t0ken-5c1e"  # in WSSTORM_TEST_TOKEN: the target's [target] auth_token and the users' header

SCENARIO = """
name = "auth-tls"
description = "wss:// embedded target that requires a bearer token"
duration = 3
users = 3
spawn_rate = 100

[target]
capacity = 100
handshake_rate = 0
handshake_cost_ms = 0
tls = true
session_max_s = 1.0
auth_token = "{env:WSSTORM_TEST_TOKEN}"
"""

# run name -> the users' extra Locust arguments
CASES = {
    "good": ("--header", "Authorization: Bearer {env:WSSTORM_TEST_TOKEN}"),
    "wrong": ("--header", "Authorization: Bearer not-{env:WSSTORM_TEST_TOKEN}"),
    "missing": (),
}


def _argv(scenario: Path, run_dir: Path, extra: tuple[str, ...]) -> list[str]:
    return [
        *LOCUST,
        "--headless",
        "-u",
        "3",
        "-r",
        "100",
        "-t",
        "3s",
        "--scenario",
        str(scenario),
        "--run-dir",
        str(run_dir),
        "--only-summary",
        "--seed",
        "7",
        "--policy",
        "fixed:delay=0.2",
        "--message-rate",
        "2",
        "--ping-interval",
        "0",
        "--stop-timeout",
        "2",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("auth")
    scenario = base / "auth.toml"
    scenario.write_text(SCENARIO)
    env = {**os.environ, "WSSTORM_TEST_TOKEN": TOKEN}
    procs = {
        key: (
            base / key,
            subprocess.Popen(
                _argv(scenario, base / key, extra),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            ),
        )
        for key, extra in CASES.items()
    }
    out = {}
    for key, (run_dir, proc) in procs.items():
        text, _ = proc.communicate(timeout=120)
        out[key] = (run_dir, text)
    return out


def _ticks(run_dir: Path) -> list[dict]:
    return [r for r in records(run_dir / names.SERVER) if r.get("type") == "tick"]


def _total(ticks: list[dict], group: str, key: str | None = None) -> int:
    if key is None:
        return sum(int(t.get(group, 0)) for t in ticks)
    return sum(int(t.get(group, {}).get(key, 0)) for t in ticks)


def test_right_token_opens_and_closes_match_the_server(runs):
    run_dir, text = runs["good"]
    events, ticks = read_events(run_dir), _ticks(run_dir)
    opens = [e for e in events if e["event"] == "open"]
    assert ticks and len(opens) >= 3, text[-3000:]
    manifest = json.loads((run_dir / names.MANIFEST).read_text())
    assert manifest["host"].startswith("wss://") and manifest["target"]["tls"] is True
    assert "auth_token" not in manifest["target"]  # the manifest says nothing about the token
    # every attempt the harness made opened: no 401 for the right token
    assert not [e for e in events if e["event"] == "fail" and e.get("status") == 401]
    assert _total(ticks, "accepted") == _total(ticks, "goodput") == len(opens), text[-3000:]
    assert _total(ticks, "rejected", "http_401") == 0
    assert not any(t.get("auth_rejected") for t in ticks)
    closes = sum(e["event"] == "close" for e in events)
    server_closes = (
        sum(sum(t.get("closes_sent", {}).values()) for t in ticks)
        + sum(sum(t.get("closes_received", {}).values()) for t in ticks)
        + _total(ticks, "abnormal")
    )
    assert closes == server_closes == len(opens)
    # the server ended sessions by itself (session_max_s): those are its 1001s, the harness's server closes
    by_server = sum(e["event"] == "close" and e["by"] == "server" and e["code"] == 1001 for e in events)
    assert by_server == _total(ticks, "closes_sent", "1001") > 0


@pytest.mark.parametrize("key", ["wrong", "missing"])
def test_bad_token_is_401_counted_by_reason(runs, key):
    run_dir, text = runs[key]
    events, ticks = read_events(run_dir), _ticks(run_dir)
    fails = [e for e in events if e["event"] == "fail" and e["kind"] == "http_status" and e.get("status") == 401]
    assert len(fails) >= 3, text[-3000:]
    assert not [e for e in events if e["event"] == "open"]
    assert _total(ticks, "accepted") == _total(ticks, "goodput") == 0
    assert _total(ticks, "rejected", "http_401") == len(fails)
    reasons = {r: _total(ticks, "auth_rejected", r) for r in ("missing", "wrong")}
    assert reasons == {"missing": len(fails) if key == "missing" else 0, "wrong": len(fails) if key == "wrong" else 0}
    # the rejected attempts paid their TLS handshake for nothing
    assert _total(ticks, "wasted_ms") > 0


def test_token_in_no_file_of_any_run_folder_nor_the_output(runs):
    for key, (run_dir, text) in runs.items():
        files = [p for p in Path(run_dir).rglob("*") if p.is_file()]
        assert any(p.name == names.SERVER for p in files) and any(p.name == names.MANIFEST for p in files)
        for p in files:
            assert TOKEN.encode() not in p.read_bytes(), f"the token leaked into {p} ({key})"
        assert TOKEN not in text, f"the token leaked into Locust's output ({key})"
