"""wss:// end to end: --ca-file, --insecure, --server-name, mutual TLS, the classified TLS failure
reasons, and the embedded TLS target whose CA the harness trusts by itself.

Real Locust runs (child processes, all at once) against the scripted peer serving TLS with a
CA made by openssl for the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.peers import certs as certs_mod
from tests.test_user_e2e import LOCUST, PEER, locust_cmd, read_events

pytestmark = pytest.mark.e2e


def start_peer(*args: str) -> tuple[subprocess.Popen, int]:
    peer = subprocess.Popen([sys.executable, str(PEER), *args], stdout=subprocess.PIPE, text=True)
    return peer, json.loads(peer.stdout.readline())["port"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    good = certs_mod.make(base / "good")
    old = certs_mod.make(base / "old", expired=True)
    peers = []
    try:
        p, port = start_peer("--tls", str(good.server_cert), str(good.server_key))
        peers.append(p)
        p, mport = start_peer("--tls", str(good.server_cert), str(good.server_key), "--client-ca", str(good.ca))
        peers.append(p)
        p, xport = start_peer("--tls", str(old.server_cert), str(old.server_key))
        peers.append(p)
        time.sleep(1.1)  # the expired certificate's notAfter is the second it was made
        ca = ("--ca-file", str(good.ca))
        echo = ("--message-rate", "5")
        cases = {
            "ca": (f"wss://127.0.0.1:{port}/echo", (*ca, *echo)),
            "no_ca": (f"wss://127.0.0.1:{port}/echo", ()),
            "name": (f"wss://127.0.0.1:{port}/echo", (*ca, "--server-name", "other.example")),
            "sni_ok": (f"wss://127.0.0.1:{port}/echo", (*ca, "--server-name", "localhost")),
            "insecure": (f"wss://127.0.0.1:{port}/echo", ("--insecure",)),
            "mtls": (
                f"wss://127.0.0.1:{mport}/echo",
                (*ca, "--client-cert", str(good.client_cert), "--client-key", str(good.client_key)),
            ),
            "mtls_missing": (f"wss://127.0.0.1:{mport}/echo", ca),
            "expired": (f"wss://127.0.0.1:{xport}/echo", ("--ca-file", str(old.ca))),
        }
        procs = {}
        for key, (host, extra) in cases.items():
            run_dir = base / key
            procs[key] = (
                run_dir,
                subprocess.Popen(
                    locust_cmd(host, run_dir, extra=extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                ),
            )
        out = {}
        for key, (run_dir, proc) in procs.items():
            text, _ = proc.communicate(timeout=90)
            out[key] = (read_events(run_dir), text, proc.returncode, run_dir)
        yield out
    finally:
        for p in peers:
            p.kill()
            p.wait()


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "echo"]


@pytest.mark.parametrize("key", ["ca", "insecure", "mtls", "sni_ok"])
def test_wss_opens_with_what_it_trusts(runs, key):
    events, out, rc, _ = runs[key]
    assert kinds(events) == ["attempt", "open", "close", "stop"], out[-2000:]
    assert events[-2]["by"] == "client" and rc == 0


def test_echo_round_trips_over_tls(runs):
    events = runs["ca"][0]
    echoes = [e for e in events if e["event"] == "echo"]
    assert len(echoes) >= 3 and all(0 < e["rtt_ms"] < 1000 and e["conn"] == 1 for e in echoes)


@pytest.mark.parametrize(
    "key,reason",
    [
        ("no_ca", "unknown CA"),
        ("name", "hostname mismatch"),
        ("expired", "certificate expired"),
        ("mtls_missing", "peer requires a client certificate"),
    ],
)
def test_tls_failure_reason_in_detail(runs, key, reason):
    events, out, _, _ = runs[key]
    assert kinds(events) == ["attempt", "fail", "wait", "stop"], out[-2000:]
    f = events[1]
    assert f["kind"] == "tls", f
    assert f["detail"].startswith(reason), f["detail"]


def test_insecure_is_in_the_manifest(runs):
    m = json.loads((runs["insecure"][3] / "manifest.json").read_text())
    assert m["options"]["insecure"] is True
    m = json.loads((runs["ca"][3] / "manifest.json").read_text())
    assert m["options"]["insecure"] is False and m["options"]["ca_file"].endswith("ca.pem")


def test_bad_tls_files_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    procs = []
    for extra in (
        ("--ca-file", str(tmp_path / "missing.pem")),
        ("--ca-file", str(bad)),
        ("--client-key", str(bad)),
        ("--insecure", "--ca-file", str(bad)),
    ):
        argv = [
            *LOCUST,
            "--headless",
            "-u",
            "1",
            "-t",
            "1s",
            "--host",
            "wss://127.0.0.1:9/",
            "--run-dir",
            str(tmp_path / f"r{len(procs)}"),
        ]
        procs.append(
            (extra, subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        )
    for extra, p in procs:  # all at once: each is a whole Locust start-up
        _, err = p.communicate(timeout=60)
        assert p.returncode == 2, (extra, err[-1000:])
        assert "Traceback" not in err


def test_embedded_tls_target_is_trusted_by_itself(tmp_path):
    """--target-tls: the target serves wss:// with a CA it writes into the run folder; the
    harness trusts it with no --ca-file, and every open is one the server accepted."""
    run_dir = tmp_path / "run"
    r = subprocess.run(
        [
            *LOCUST,
            "--headless",
            "-u",
            "4",
            "-r",
            "20",
            "-t",
            "3s",
            "--run-dir",
            str(run_dir),
            "--target-tls",
            "--target-handshake-cost-ms",
            "0",
            "--policy",
            "fixed:delay=1",
            "--message-rate",
            "2",
            "--ping-interval",
            "1",
            "--only-summary",
            "--stop-timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = read_events(run_dir)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["host"].startswith("wss://127.0.0.1:") and m["target"]["tls"] is True
    assert Path(m["options"]["ca_file"]) == run_dir / "target-ca.pem"
    opens = [e for e in events if e["event"] == "open"]
    assert len(opens) == 4 and not [e for e in events if e["event"] == "fail"]
    assert [e for e in events if e["event"] == "echo"]
    ticks = [json.loads(x) for x in (run_dir / "server.jsonl").read_text().splitlines()]
    assert sum(t.get("accepted", 0) for t in ticks if t.get("type") == "tick") == len(opens)
