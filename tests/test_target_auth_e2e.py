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
from hypothesis import given
from hypothesis import strategies as st

from tests.test_user_e2e import LOCUST, read_events
from wsstorm.errors import UsageError
from wsstorm.run.scenario import parse
from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import records
from wsstorm.target.metrics import LEDGER, MetricsBook, Tally, ledger_counts, remainder
from wsstorm.target.worker import auth_failure

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


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_token_in_no_file_of_any_run_folder_nor_the_output(runs):
    for key, (run_dir, text) in runs.items():
        files = [p for p in Path(run_dir).rglob("*") if p.is_file()]
        assert any(p.name == names.SERVER for p in files) and any(p.name == names.MANIFEST for p in files)
        for p in files:
            assert TOKEN.encode() not in p.read_bytes(), f"the token leaked into {p} ({key})"
        assert TOKEN not in text, f"the token leaked into Locust's output ({key})"


# --- the pure parts: the check, the counts, the scenario key -------------------------------------


@given(st.text(max_size=40), st.lists(st.text(max_size=50), max_size=3))
def test_auth_failure_admits_exactly_one_right_bearer_header(token, values):
    reason = auth_failure(token, values)
    if not token:
        assert reason is None  # no token required: everyone passes
    elif not values:
        assert reason == "missing"
    elif values == [f"Bearer {token}"]:
        assert reason is None
    else:
        assert reason == "wrong"


def test_auth_failure_cases():
    assert auth_failure("t0k", ["Bearer t0k"]) is None
    assert auth_failure("t0k", ["bearer t0k"]) == "wrong"  # exact, as the brief says
    assert auth_failure("t0k", ["Bearer t0k "]) == "wrong"
    assert auth_failure("t0k", ["Bearer t0k", "Bearer t0k"]) == "wrong"
    assert auth_failure("t0k", []) == "missing"


def test_auth_counts_survive_a_crash_and_reach_the_totals():
    """rejected.http_401 and auth_rejected are ledger keys: what a process counted after its last tick
    is in the remainder the supervisor writes after a SIGKILL."""
    assert {"rejected.http_401", "auth_rejected.missing", "auth_rejected.wrong"} <= set(LEDGER)
    ledger = [0] * len(LEDGER)
    tally = Tally(ledger, 0)
    assert "auth_rejected" not in tally.take()  # runs without a token keep their tick shape
    tally.add("rejected", "http_401")
    tally.add("auth_rejected", "missing")
    first = tally.take()
    reported = ledger_counts(first)
    for reason in ("wrong", "wrong"):
        tally.add("rejected", "http_401")
        tally.add("auth_rejected", reason)
    left = remainder(ledger, reported)
    assert left is not None and left["rejected"]["http_401"] == 2 and left["auth_rejected"] == {"wrong": 2}
    book = MetricsBook(1)
    book.tick({**first, "proc": 0})
    book.tick({**left, "proc": 0})
    assert book.totals["rejected"]["http_401"] == 3
    assert book.totals["auth_rejected"] == {"missing": 1, "wrong": 2}
    assert 'wsstorm_auth_rejected_total{reason="wrong"} 2.0' in book.prometheus(["serving"], 10, 0.0)


def test_scenario_auth_token_is_an_env_reference_only(monkeypatch):
    base = "name = 'a'\nduration = 1\n[target]\n"
    with pytest.raises(UsageError) as exc:
        parse(base + f"auth_token = '{TOKEN}'\n")
    assert TOKEN not in str(exc.value) and "{env:NAME}" in str(exc.value)
    sc = parse(base + "auth_token = '{env:WSSTORM_TEST_TOKEN}'\n")
    monkeypatch.delenv("WSSTORM_TEST_TOKEN", raising=False)
    with pytest.raises(UsageError, match="WSSTORM_TEST_TOKEN is not set"):
        sc.target.serve_options()
    monkeypatch.setenv("WSSTORM_TEST_TOKEN", TOKEN)
    assert sc.target.serve_options()["auth_token"] == TOKEN
    assert TOKEN not in json.dumps(sc.to_dict())


def _upgrade(port: int, headers: str) -> bytes:
    """One plain upgrade request over a real socket; the server's answer head."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + headers.encode() + b"\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


@pytest.mark.e2e
def test_start_target_passes_the_token_by_environment_not_argv(tmp_path):
    from wsstorm.target import control

    out = tmp_path / names.SERVER
    with control.start_target(auth_token=TOKEN, metrics_out=str(out), handshake_cost_ms=0) as target:
        cmdline = Path(f"/proc/{target.pid}/cmdline").read_bytes()
        assert TOKEN.encode() not in cmdline and b"--auth-token" not in cmdline  # ps shows argv
        assert TOKEN not in json.dumps(target.ready)
        port = target.ready["port"]
        head = _upgrade(port, "")
        assert head.startswith(b"HTTP/1.1 401 ") and b"WWW-Authenticate: Bearer" in head
        assert _upgrade(port, f"Authorization: Bearer x{TOKEN}\r\n").startswith(b"HTTP/1.1 401 ")
        assert _upgrade(port, f"Authorization: Bearer {TOKEN}\r\n").startswith(b"HTTP/1.1 101 ")
    ticks = _ticks(tmp_path)
    assert _total(ticks, "rejected", "http_401") == 2
    assert {r: _total(ticks, "auth_rejected", r) for r in ("missing", "wrong")} == {"missing": 1, "wrong": 1}
    assert _total(ticks, "accepted") == 1
    assert TOKEN.encode() not in out.read_bytes()
