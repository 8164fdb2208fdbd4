"""Bad input against `wsstorm serve`: garbage, half handshakes, invalid frames, 1009, bad close codes.

It must answer as RFC 6455 says, count it, keep serving, and keep its memory bounded.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import pytest

from tests.peers.wsclients import close_of, connect, raw_socket
from wsstorm.target.control import start_target

pytestmark = pytest.mark.e2e


def masked_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def expect_close(url: str, raw: bytes) -> int:
    ws = connect(url)
    ws.sock.sendall(raw)
    return close_of(ws, timeout=3)[0]


def one_round(url: str, rng: random.Random) -> None:
    socks = []
    for _ in range(15):  # garbage instead of an HTTP request
        s = raw_socket(url)
        s.sendall(rng.randbytes(rng.randint(1, 600)) + b"\r\n\r\n")
        socks.append(s)
    for _ in range(10):  # half handshakes that never finish
        s = raw_socket(url)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        socks.append(s)
    for _ in range(10):  # a valid handshake, then random bytes as frames
        ws = connect(url)
        ws.sock.sendall(rng.randbytes(rng.randint(1, 300)))
        socks.append(ws.sock)
    time.sleep(0.8)  # longer than --open-timeout: the half handshakes time out
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass


def test_bad_input_is_answered_counted_and_memory_stays_bounded(tmp_path):
    rng = random.Random(1234)
    with start_target(
        capacity=500,
        handshake_rate=5000,
        handshake_cost_ms=0,
        max_size=1024,
        open_timeout=0.5,
        metrics_out=tmp_path / "server.jsonl",
    ) as t:
        # RFC 6455 answers
        assert expect_close(t.url, masked_frame(0x1, b"x" * 2000)) == 1009  # too big
        assert expect_close(t.url, masked_frame(0x8, struct.pack("!H", 1004))) == 1002  # reserved close code
        assert expect_close(t.url, masked_frame(0x8, struct.pack("!H", 999))) == 1002  # invalid close code
        assert expect_close(t.url, masked_frame(0x1, b"hi", mask=False)) == 1002  # unmasked client frame
        assert expect_close(t.url, masked_frame(0x1, b"\xff\xfe")) == 1007  # text not UTF-8
        assert expect_close(t.url, masked_frame(0x3, b"")) == 1002  # reserved opcode
        rss = []
        for _ in range(4):
            one_round(t.url, rng)
            time.sleep(0.3)
            st = t.admin.status()
            rss.append(st["procs"][0]["last_tick"]["rss_bytes"])
        # still serving: echo works, and nothing is left open
        ws = connect(t.url)
        ws.send("alive")
        assert ws.recv() == "alive"
        ws.close()

        def settled():
            st = t.admin.status()
            tick = st["procs"][0]["last_tick"]
            return st["connections"] == 0 and tick["queue_depth"] == 0 and st

        deadline = time.monotonic() + 5
        while not (st := settled()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert st, "connections or half-open handshakes leaked"
        totals = st["totals"]
        assert totals["closes_sent"]["1009"] >= 1
        assert totals["closes_sent"]["1002"] >= 4
        assert totals["closes_sent"]["1007"] >= 1
        assert totals["rejected"]["timeout"] >= 30, totals  # 10 half handshakes per round
        assert totals["bad_input"]["bad_handshake"] >= 50, totals  # 15 garbage requests per round
        assert st["procs"][0]["state"] == "serving"
        # memory: later rounds do not keep growing (bounded, no per-connection leak)
        assert rss[-1] - rss[1] < 8 * 1024 * 1024, rss
