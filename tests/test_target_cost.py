"""The target's cost model on loopback: TLS with the CA file, the dependency store's queue, wasted-work
accounting held against client-side timeouts, the handshake timeout's sheds, and CPU pinning."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from pathlib import Path

import psutil
import pytest
import websocket

from tests.peers.wsclients import host_port
from wsstorm.runfolder import names
from wsstorm.target.control import start_target

pytestmark = pytest.mark.e2e

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def records(path, kind: str = "tick") -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("type") == kind:
                out.append(rec)
    return out


def total(path, field: str) -> float:
    return sum(t.get(field, 0) for t in records(path))


def settle(path, field: str, want: float, timeout: float = 6.0) -> float:
    """Wait until the ticks' sum of `field` reaches `want` (ticks come once a second); return the sum."""
    deadline = time.monotonic() + timeout
    got = total(path, field)
    while got < want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = total(path, field)
    return got


def send_upgrade(url: str) -> socket.socket:
    s = socket.create_connection(host_port(url), timeout=5)
    s.sendall(REQUEST)
    return s


def read_status(s: socket.socket, timeout: float) -> int | None:
    """The HTTP status of the server's answer, or None if none came within `timeout` s (the client gives up)."""
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return -1
            buf += chunk
    except TimeoutError:
        return None
    return int(buf.split(b" ", 2)[1])


def test_tls_target_writes_its_ca_and_the_harness_client_trusts_it(tmp_path):
    out = tmp_path / names.SERVER
    with start_target(tls=True, metrics_out=out, attempt_cost_ms=1) as t:
        assert t.url.startswith("wss://")
        assert t.ca_file == str(tmp_path / names.CA_FILE) and os.path.isfile(t.ca_file)
        assert "PRIVATE KEY" not in Path(t.ca_file).read_text()  # only the CA certificate lands in the run folder
        from wsstorm.load.connection import WSConnection, tls_context  # the harness's own wss client

        conn = WSConnection(t.url, connect_timeout=5, ssl_context=tls_context(ca_file=t.ca_file))
        conn.open()
        conn.send_text("over tls")
        got = conn.read(timeout=5)
        assert got is not None and got.data == b"over tls"
        conn.send_close(1000)
        ws = websocket.create_connection(t.url, sslopt={"ca_certs": t.ca_file}, timeout=5)
        ws.send("again")
        assert ws.recv() == "again"
        ws.close()
        with pytest.raises(ssl.SSLError):  # without the CA the certificate is not trusted
            websocket.create_connection(t.url, timeout=5)
        assert settle(out, "goodput", 2) == 2
        ticks = records(out)
        # every attempt paid its TLS handshake on the server's CPU: more than the 1 ms attempt cost
        assert total(out, "work_ms") > 2 * 1.0
        assert (
            sum(tk["bad_input"].get("bad_tls", 0) + tk.get("abandoned", 0) for tk in ticks) >= 1
        )  # the untrusting one
        assert t.admin.status()["tls"] is True


def test_store_waits_grow_with_concurrency(tmp_path):
    out = tmp_path / names.SERVER
    with start_target(store_concurrency=1, store_ms=25, metrics_out=out) as t:

        def burst(n: int) -> list[float]:
            t0 = time.monotonic()
            socks = [send_upgrade(t.url) for _ in range(n)]
            done = []
            for s in socks:
                assert read_status(s, 10) == 101
                done.append(time.monotonic() - t0)
                s.close()
            return done

        alone = min(max(burst(1)) for _ in range(3))  # the best of three: the first one also warms up
        herd = burst(10)
        # one slot, 25 ms of store work each: the 10th waits for the 9 before it
        assert max(herd) > 9 * 0.025 and max(herd) > 3 * alone
        stores = [r for r in records(out, "store")]
        deadline = time.monotonic() + 4
        while sum(r["calls"] for r in stores) < 13 and time.monotonic() < deadline:
            time.sleep(0.2)
            stores = records(out, "store")
        assert sum(r["calls"] for r in stores) == 13  # the store counts its own lookups
        assert all(r["concurrency"] == 1 for r in stores)
        assert max(r["wait_ms_p99"] for r in stores) >= 8 * 25 * 0.9  # queue wait in the store itself
        assert settle(out, "store_calls", 13) == 13
        assert max(tk.get("store_wait_ms_p99", 0) for tk in records(out)) >= 9 * 25 * 0.9


def test_work_finished_for_clients_that_left_is_counted_exactly(tmp_path):
    """Impatient clients give up long before the store reaches their lookup; the server finishes
    every one anyway. Its `abandoned` count equals the client-side timeouts, exactly."""
    out = tmp_path / names.SERVER
    with start_target(store_concurrency=1, store_ms=60, handshake_timeout=20, metrics_out=out) as t:
        patient = [send_upgrade(t.url) for _ in range(4)]
        time.sleep(0.05)  # their lookups are queued first
        impatient = [send_upgrade(t.url) for _ in range(6)]
        timeouts = 0
        for s in impatient:  # each waits 50 ms at most, then leaves (the queue holds >= 240 ms ahead)
            if read_status(s, 0.05) is None:
                timeouts += 1
            s.close()
        opened = sum(read_status(s, 10) == 101 for s in patient)
        assert (timeouts, opened) == (6, 4)
        assert settle(out, "abandoned", timeouts) == timeouts
        assert settle(out, "goodput", opened) == opened
        time.sleep(1.2)
        assert total(out, "abandoned") == timeouts and total(out, "goodput") == opened
        assert total(out, "attempts") == 10
        # the store's CPU for the 6 abandoned ones was spent for nobody: wasted
        wasted = total(out, "wasted_ms")
        assert 6 * 60 * 0.95 <= wasted <= total(out, "work_ms") - 4 * 60 * 0.95
        for s in patient:
            s.close()


def test_rejected_attempts_waste_their_pre_admission_work(tmp_path):
    out = tmp_path / names.SERVER
    with start_target(capacity=1, attempt_cost_ms=20, session_cost_ms=30, handshake_cost_ms=0, metrics_out=out) as t:
        held = send_upgrade(t.url)
        assert read_status(held, 5) == 101
        extra = send_upgrade(t.url)  # close mode: 101, then 1013
        assert read_status(extra, 5) == 101
        assert settle(out, "attempts", 2) == 2
        time.sleep(1.1)
        ticks = records(out)
        assert sum(tk["rejected"]["1013"] for tk in ticks) == 1
        wasted, work = total(out, "wasted_ms"), total(out, "work_ms")
        assert 20 <= wasted < 30  # the rejected one's attempt cost, never a session cost
        assert 20 + 30 + 20 <= work < wasted + 20 + 30 + 10
        held.close()
        extra.close()


def test_handshake_timeout_sheds_and_counts_what_it_sheds(tmp_path):
    out = tmp_path / names.SERVER
    with start_target(store_concurrency=1, store_ms=150, handshake_timeout=1.0, metrics_out=out) as t:
        socks = [send_upgrade(t.url) for _ in range(8)]
        statuses = [read_status(s, 5) for s in socks]
        # 150 ms a lookup, one slot: 8 of them need 1.2 s, so at least the last is shed (closed, no answer)
        assert set(statuses) <= {101, -1} and statuses.count(-1) >= 1, statuses
        shed = statuses.count(-1)
        # the store still finishes the shed lookups: their CPU is booked as wasted when they come back
        assert settle(out, "wasted_ms", shed * 150, timeout=8) >= shed * 150
        ticks = records(out)
        assert sum(tk["rejected"]["timeout"] for tk in ticks) == shed
        assert total(out, "goodput") == statuses.count(101)
        for s in socks:
            s.close()


def test_token_bucket_is_off_by_default(tmp_path):
    out = tmp_path / names.SERVER
    with start_target(metrics_out=out) as t:
        assert t.admin.status()["handshake_rate"] == 0
        socks = [send_upgrade(t.url) for _ in range(30)]
        assert [read_status(s, 5) for s in socks] == [101] * 30
        for s in socks:
            s.close()


def test_cpus_pin_every_target_process():
    with start_target(cpus="0", workers=2, store_concurrency=1) as t:
        st = t.admin.status()
        pids = [t.pid, st["store"]["pid"]] + [p["pid"] for p in st["procs"]]
        assert len(set(pids)) == 4
        assert {pid: psutil.Process(pid).cpu_affinity() for pid in pids} == {pid: [0] for pid in pids}
        assert st["cpus"] == "0" and t.ready["cpus"] == "0"
