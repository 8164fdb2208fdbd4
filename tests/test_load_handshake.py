"""Handshake extras end to end: templated --header/--query per user, --subprotocol recorded on open,
a bearer token the server checks, and a planted secret that appears in no file of the run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.test_user_e2e import LOCUST, PEER, locust_cmd, read_events

pytestmark = pytest.mark.e2e

SECRET = "pl4nted-s3cret-7f3a"  # from the environment
FILE_SECRETS = ("file-tok3n-one-91", "file-tok3n-two-92")  # one per user, from a tokens file


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hs")
    tokens = base / "tokens.txt"
    tokens.write_text("\n".join(FILE_SECRETS) + "\n")
    peer = subprocess.Popen(
        [sys.executable, str(PEER)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PEER_TOKEN": SECRET}
    )
    said: list[dict] = []
    try:
        port = json.loads(peer.stdout.readline())["port"]
        threading.Thread(target=lambda: said.extend(json.loads(x) for x in peer.stdout), daemon=True).start()
        env = {**os.environ, "WSS_TEST_TOKEN": SECRET}
        url = f"ws://127.0.0.1:{port}"
        cases = {
            "headers": (
                f"{url}/headers?pick=v2",
                2,
                (
                    "--header",
                    "Authorization: Bearer {file:" + str(tokens) + "}",
                    "--header",
                    "X-Who: {user} n={n} conn={conn} run={run}",
                    "--query",
                    "token={env:WSS_TEST_TOKEN}",
                    "--query",
                    "n={n}",
                    "--subprotocol",
                    "chat",
                    "--subprotocol",
                    "v2",
                    "--message-rate",
                    "4",
                ),
            ),
            "auth_ok": (f"{url}/auth", 1, ("--header", "Authorization: Bearer {env:WSS_TEST_TOKEN}")),
            "auth_missing": (f"{url}/auth", 1, ()),
            "proto_bad": (f"{url}/echo?pick=other", 1, ("--subprotocol", "chat")),
        }
        procs = {}
        for key, (host, users, extra) in cases.items():
            run_dir = base / key
            argv = locust_cmd(host, run_dir, users=users, extra=extra)
            argv += ["--csv", str(run_dir / "locust"), "--html", str(run_dir / "locust.html")]
            procs[key] = (
                run_dir,
                subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env),
            )
        out = {}
        for key, (run_dir, proc) in procs.items():
            text, _ = proc.communicate(timeout=90)
            out[key] = (read_events(run_dir), text, proc.returncode, run_dir)
        yield out, said
    finally:
        peer.kill()
        peer.wait()


def test_headers_and_query_are_templated_per_user(runs):
    out, said = runs
    events, text, _, _ = out["headers"]
    seen = [s for s in said if "headers" in s]
    assert len(seen) == 2, text[-2000:]
    by_user = {s["headers"]["x-who"].split(" ")[0]: s for s in seen}
    assert set(by_user) == {"local/1", "local/2"}
    run = events[0]["run"]
    for n, user in ((1, "local/1"), (2, "local/2")):
        s = by_user[user]
        assert s["headers"]["authorization"] == f"Bearer {FILE_SECRETS[n - 1]}"
        assert s["headers"]["x-who"] == f"{user} n={n} conn=1 run={run}"
        assert s["headers"]["sec-websocket-protocol"] == "chat, v2"
        assert s["path"] == f"/headers?pick=v2&token={SECRET}&n={n}"


def test_chosen_subprotocol_is_on_open(runs):
    events = runs[0]["headers"][0]
    opens = [e for e in events if e["event"] == "open"]
    assert len(opens) == 2 and all(e["subprotocol"] == "v2" for e in opens)
    assert [e for e in events if e["event"] == "echo"]


def test_a_subprotocol_not_offered_fails_the_handshake(runs):
    events, text, _, _ = runs[0]["proto_bad"]
    f = [e for e in events if e["event"] == "fail"]
    assert f and f[0]["kind"] == "protocol" and "did not offer" in f[0]["detail"], text[-2000:]


def test_bearer_token_from_env(runs):
    out = runs[0]
    assert [e["event"] for e in out["auth_ok"][0]] == ["attempt", "open", "close", "stop"]
    ev = out["auth_missing"][0]
    assert [e["event"] for e in ev] == ["attempt", "fail", "wait", "stop"]
    assert (ev[1]["kind"], ev[1]["status"]) == ("http_status", 401)


def test_manifest_keeps_header_names_only(runs):
    m = json.loads((runs[0]["headers"][3] / "manifest.json").read_text())
    assert m["options"]["header"] == ["Authorization:<redacted>", "X-Who:<redacted>"]
    assert m["options"]["query"] == ["token=<redacted>", "n=<redacted>"]
    assert m["options"]["subprotocol"] == ["chat", "v2"]


def test_no_secret_in_any_file_of_the_run_folder_or_the_output(runs):
    for key, (_, text, _, run_dir) in runs[0].items():
        files = [p for p in Path(run_dir).rglob("*") if p.is_file()]
        assert any(p.name == "manifest.json" for p in files) and any(p.name.startswith("events-") for p in files)
        assert any(p.name == "locust.html" for p in files)
        for p in files:
            data = p.read_bytes()
            for secret in (SECRET, *FILE_SECRETS):
                assert secret.encode() not in data, f"{secret} leaked into {p}"
        for secret in (SECRET, *FILE_SECRETS):
            assert secret not in text, f"{secret} leaked into Locust's output ({key})"


def test_bad_header_is_one_line_exit_2_without_its_value(tmp_path):
    procs = []
    for extra in (
        ("--header", f"Authorization Bearer {SECRET}"),
        ("--header", f"X: {SECRET} {{bogus}}"),
        ("--header", "X: {env:WSS_TEST_UNSET_VAR}"),
        ("--header", f"Host: {SECRET}"),
        ("--query", f"k={SECRET}{{nope}}"),
        ("--subprotocol", "a b"),
    ):
        argv = [
            *LOCUST,
            "--headless",
            "-u",
            "1",
            "-t",
            "1s",
            "--host",
            "ws://127.0.0.1:9/",
            "--run-dir",
            str(tmp_path / f"r{len(procs)}"),
        ]
        procs.append(
            (extra, subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        )
    for extra, p in procs:  # all at once: each is a whole Locust start-up
        out, err = p.communicate(timeout=60)
        assert p.returncode == 2, (extra, err[-1000:])
        assert "Traceback" not in err and SECRET not in err + out
