"""End-to-end tests of the fault proxy: partition holds bytes until heal, reset sends RST, latency delays."""

from __future__ import annotations

import socket
import time

import pytest
import websocket

from tests.peers.wsclients import close_of, connect, host_port
from wsstorm.target.control import start_proxy, start_target

pytestmark = pytest.mark.e2e


def no_echo_within(ws, seconds: float) -> bool:
    ws.settimeout(seconds)
    try:
        ws.recv()
    except websocket.WebSocketTimeoutException:
        return True
    return False


def test_partition_stops_bytes_until_heal_then_reset_sends_rst():
    with start_target(capacity=20, proxy_port=0) as t:
        assert t.admin.status()["proxy"]["mode"] == "pass"
        ws = connect(t.url)
        ws.send("before")
        assert ws.recv() == "before"
        t.admin.partition()
        ws.send("during")
        assert no_echo_within(ws, 1.0)  # nothing flows, and nothing is closed
        # a new connection during the partition does not complete its handshake
        with pytest.raises((websocket.WebSocketTimeoutException, TimeoutError, socket.timeout)):
            connect(t.url, timeout=0.5)
        t.admin.heal()
        ws.settimeout(3)
        assert ws.recv() == "during"  # held bytes flow on after heal
        assert t.admin.reset()["ok"]
        code, how = close_of(ws)
        assert code == 1006 and how in ("reset", "eof")


def test_standalone_proxy_in_front_of_a_target_adds_latency_and_partitions():
    with start_target(capacity=20) as t:
        host, port = host_port(t.url)
        with start_proxy(listen="127.0.0.1:0", upstream=f"{host}:{port}") as p:
            ws = connect(p.url)
            p.admin.latency(300)
            t0 = time.monotonic()
            ws.send("slow")
            assert ws.recv() == "slow"
            assert time.monotonic() - t0 >= 0.55  # 300 ms each way
            p.admin.heal()
            t0 = time.monotonic()
            ws.send("fast")
            assert ws.recv() == "fast"
            assert time.monotonic() - t0 < 0.25
            p.admin.partition()
            ws.send("held")
            assert no_echo_within(ws, 0.8)
            assert p.admin.status()["mode"] == "partition"
            p.admin.heal()
            ws.settimeout(3)
            assert ws.recv() == "held"
            ws.close()


def test_proxy_resets_clients_when_upstream_is_down():
    with start_target(capacity=5) as t:
        host, port = host_port(t.url)
    # the target is gone: its port refuses, and the proxy turns that into a reset
    with (
        start_proxy(upstream=f"{host}:{port}") as p,
        pytest.raises((ConnectionResetError, websocket.WebSocketConnectionClosedException, BrokenPipeError)),
    ):
        connect(p.url, timeout=2)
