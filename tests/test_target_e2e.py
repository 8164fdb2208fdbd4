"""End-to-end tests of `wsstorm serve` on loopback: overload, restart, drain, crash, metrics, admin auth."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.peers.wsclients import attempt, close_of, connect
from tests.polling import wait_for
from wsstorm.errors import UsageError
from wsstorm.target.control import AdminError, start_target

pytestmark = pytest.mark.e2e


def read_ticks(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_capacity_plus_one_gets_exactly_one_1013_and_server_counts_match(tmp_path):
    out = tmp_path / "server.jsonl"
    with start_target(capacity=5, handshake_rate=1000, handshake_cost_ms=2, retry_hint=2.5, metrics_out=out) as t:
        held = [connect(t.url) for _ in range(5)]
        extra = connect(t.url)  # close mode: the handshake succeeds, then 1013
        code, reason = close_of(extra)
        assert code == 1013
        assert "retry-after=2.5" in reason
        for ws in held:  # the 5 held ones still echo
            ws.send("x")
            assert ws.recv() == "x"
        wait_for(
            lambda: (
                sum(tk.get("accepted", 0) for tk in read_ticks(out)) >= 5
                and sum(tk["closes_sent"]["1013"] for tk in read_ticks(out)) >= 1
            ),
            timeout=4,
        )
        ticks = read_ticks(out)
        assert sum(tk["accepted"] for tk in ticks) == 5
        assert sum(tk["rejected"]["1013"] for tk in ticks) == 1
        assert sum(tk["closes_sent"]["1013"] for tk in ticks) == 1
        assert t.admin.status()["connections"] == 5
        for ws in held:
            ws.close()
        wait_for(lambda: t.admin.status()["connections"] == 0)
        # The freed capacity admits again.
        again = connect(t.url)
        again.send("y")
        assert again.recv() == "y"
        again.close()
        wait_for(lambda: sum(sum(tk.get("closes_received", {}).values()) for tk in read_ticks(out)) == 6, timeout=4)


def test_http_mode_rejects_with_503_and_retry_after():
    with start_target(capacity=2, overload="http", retry_hint=4) as t:
        held = [connect(t.url) for _ in range(2)]
        kind, exc = attempt(t.url)
        assert kind == "http"
        assert exc.status_code == 503
        assert exc.resp_headers.get("retry-after") == "4"
        kind, _ = attempt(t.url)
        assert kind == "http"
        assert t.admin.status()["totals"]["rejected"]["http_503"] >= 0  # totals come by tick; checked below
        wait_for(lambda: t.admin.status()["totals"]["rejected"]["http_503"] == 2, timeout=4)
        for ws in held:
            ws.close()


def test_refuse_mode_refuses_at_tcp_level_until_a_slot_frees():
    with start_target(capacity=3, overload="refuse") as t:
        held = [connect(t.url) for _ in range(3)]
        kind, _ = attempt(t.url)
        assert kind == "refused"  # nothing listens while full: the kernel answers RST to the SYN
        held.pop().close()
        ws = wait_for(lambda: (lambda r: r[1] if r[0] == "open" else None)(attempt(t.url)), timeout=3)
        ws.send("z")
        assert ws.recv() == "z"


def test_token_bucket_limits_handshake_rate():
    # Burst 2, one token per 10 s: a quick burst of 6 gets 2 in and 4 x 1013.
    with start_target(capacity=100, handshake_rate=0.1, handshake_burst=2) as t:
        codes = []
        for _ in range(6):
            ws = connect(t.url)
            ws.settimeout(0.3)
            try:
                codes.append(close_of(ws, timeout=0.3)[0])
            except Exception:
                codes.append("open")
        assert codes.count("open") == 2
        assert codes.count(1013) == 4


def test_sighup_closes_every_client_with_1012_and_refuses_for_down_seconds():
    with start_target(capacity=50, restart_down=1.5) as t:
        clients = [connect(t.url) for _ in range(8)]
        t0 = time.monotonic()
        t.sighup()
        assert [close_of(ws)[0] for ws in clients] == [1012] * 8
        assert attempt(t.url)[0] == "refused"
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
        assert attempt(t.url)[0] == "refused"
        ws = wait_for(lambda: (lambda r: r[1] if r[0] == "open" else None)(attempt(t.url)), timeout=3)
        assert time.monotonic() - t0 >= 1.4
        ws.close()


def test_drain_restart_closes_in_batches():
    with start_target(capacity=50) as t:
        clients = [connect(t.url) for _ in range(6)]
        t0 = time.monotonic()
        t.admin.restart(mode="drain", batch=2, interval=0.6, down=0.5)
        results = []

        def watch(ws):
            code, _ = close_of(ws)
            results.append((time.monotonic() - t0, code))

        threads = [threading.Thread(target=watch, args=(ws,)) for ws in clients]  # greenlets under gevent
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        assert [code for _, code in results] == [1012] * 6
        times = sorted(when for when, _ in results)
        # three batches of two, 0.6 s apart
        assert times[1] < 0.4
        assert 0.45 < times[2] < 1.0 and 0.45 < times[3] < 1.0
        assert times[4] > 1.05
        ws = wait_for(lambda: (lambda r: r[1] if r[0] == "open" else None)(attempt(t.url)), timeout=3)
        ws.close()


def test_crash_ends_tcp_without_close_frame_and_comes_back(tmp_path):
    out = tmp_path / "server.jsonl"
    with start_target(capacity=50, metrics_out=out) as t:
        clients = [connect(t.url) for _ in range(4)]
        pid_before = t.admin.status()["procs"][0]["pid"]
        t0 = time.monotonic()
        t.admin.crash(down=1.5)
        for ws in clients:
            code, how = close_of(ws)
            assert code == 1006 and how in ("eof", "reset")
        # Once the supervisor has seen the process die, nothing listens: refused.
        wait_for(lambda: t.admin.status()["procs"][0]["state"] == "down", timeout=2)
        assert attempt(t.url)[0] == "refused"
        ws = wait_for(lambda: (lambda r: r[1] if r[0] == "open" else None)(attempt(t.url)), timeout=6)
        assert time.monotonic() - t0 >= 1.4
        ws.send("back")
        assert ws.recv() == "back"
        assert t.admin.status()["procs"][0]["pid"] != pid_before
        ws.close()
        records = read_ticks(out)
        assert any(r["type"] == "fault" and r["fault"] == "crash" for r in records)
        assert any(r["type"] == "tick" and r["state"] == "down" for r in records)


def test_restart_one_proc_only_with_two_workers():
    with start_target(capacity=50, workers=2) as t:
        st = t.admin.status()
        assert st["workers"] == 2
        res = t.admin.restart(proc=1, down=1.0)
        assert res["procs"] == [1]
        # The admin call returns once the command is sent; proc 1 acts on it a moment later. An attempt
        # the kernel handed to proc 1's listener before that is cut by the restart: wait until it is down.
        time.sleep(0.3)
        # proc 0 still listens on the shared port: connections succeed
        for _ in range(4):
            kind, ws = attempt(t.url)
            assert kind == "open"
            ws.close()


def test_admin_requires_the_token():
    with start_target(capacity=5) as t:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": t.token}):
            req = urllib.request.Request(t.admin_url + "/status", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(req, timeout=5)
            assert info.value.code == 401
        req = urllib.request.Request(t.admin_url + "/crash", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 401
        assert t.admin.status()["procs"][0]["state"] == "serving"  # the unauthorised crash did nothing
        with pytest.raises(AdminError) as bad:
            t.admin.call("POST", "/restart", {"mode": "sideways"})
        assert bad.value.status == 400
        text = t.admin.metrics()
        assert "wsstorm_handshakes_accepted_total" in text


def test_capacity_and_overload_change_at_runtime():
    with start_target(capacity=1) as t:
        a = connect(t.url)
        assert close_of(connect(t.url))[0] == 1013
        t.admin.set_capacity(2)
        b = connect(t.url)
        b.send("ok")
        assert b.recv() == "ok"
        t.admin.set_overload("http")
        assert attempt(t.url)[0] == "http"
        assert t.admin.status()["overload"] == "http"
        a.close()
        b.close()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--capacity", "0"], "--capacity"),
        (["--capacity", "-3"], "--capacity"),
        (["--overload", "sometimes"], "--overload"),
        (["--workers", "0"], "--workers"),
        (["--handshake-rate", "-1"], "--handshake-rate"),  # 0 is valid since the bucket became optional: off
        (["--attempt-cost-ms", "-1"], "--attempt-cost-ms"),
        (["--session-cost-ms", "-0.5"], "--session-cost-ms"),
        (["--store-ms", "-3"], "--store-ms"),
        (["--store-concurrency", "-1"], "--store-concurrency"),
        (["--cpus", "4096"], "does not exist"),
        (["--cpus", "one"], "cpus"),
        (["--cpus", "1-0"], "cpus"),
        (["--tls"], "--ca-out"),  # nowhere to write the CA
        (["--tls", "--ca-out", "/nonexistent/dir/ca.pem"], "--ca-out"),
        (["--ca-out", "/tmp/ca.pem"], "--tls"),
    ],
)
def test_bad_options_exit_2_with_one_line(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "wsstorm", "serve", *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert proc.stdout == ""


def test_port_in_use_is_a_usage_error():
    with start_target(capacity=5) as t:
        port = int(t.url.rsplit(":", 1)[1])
        with pytest.raises(UsageError, match="in use"):
            start_target(port=port)


def test_stop_leaves_no_process_behind():
    import psutil

    t = start_target(capacity=5, workers=2, proxy_port=0)
    pids = [t.pid] + [p["pid"] for p in t.admin.status()["procs"]]
    family = pids + [c.pid for c in psutil.Process(t.pid).children(recursive=True)]
    t.stop()
    time.sleep(0.2)
    assert [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"] == []


def test_unwritable_metrics_out_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="metrics-out"):
        start_target(metrics_out=tmp_path / "no" / "such" / "dir" / "server.jsonl")
