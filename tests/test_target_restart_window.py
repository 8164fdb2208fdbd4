"""A restart kills attempts the server accepted but had not yet handed a transport (TLS still to do).

The window, made deterministic: a raw TCP connection to a --tls target is accepted (the server counts
the attempt) but sends no TLS byte, so its WebSocket connection has no transport yet; the restart
happens and ends; only then does the client do its TLS handshake and send the upgrade.
"""

from __future__ import annotations

import socket
import ssl

import pytest
import websocket

from tests.peers.wsclients import host_port
from tests.polling import wait_for
from wsstorm.runfolder import names
from wsstorm.target.control import start_target
from wsstorm.target.tls import client_context

pytestmark = pytest.mark.e2e

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def upgrade_over(raw: socket.socket, ctx: ssl.SSLContext, timeout: float = 5.0) -> int | str:
    """TLS on `raw`, then the upgrade request: the HTTP status answered, or how the connection was cut."""
    raw.settimeout(timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except (OSError, ssl.SSLError) as exc:
        return f"cut in TLS: {type(exc).__name__}"
    buf = b""
    try:
        s.sendall(REQUEST)
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return "cut: eof"
            buf += chunk
    except TimeoutError:
        return "no answer"  # neither an answer nor a cut: the attempt hangs
    except (OSError, ssl.SSLError) as exc:
        return f"cut: {type(exc).__name__}"
    finally:
        s.close()
    return int(buf.split(b" ", 2)[1])


def test_restart_kills_an_attempt_still_before_its_tls_handshake(tmp_path):
    out = tmp_path / names.SERVER
    # handshake_timeout well past the test's waits: the parked attempt must not be shed meanwhile
    with start_target(tls=True, capacity=10, handshake_timeout=30, metrics_out=out) as t:
        assert t.ca_file is not None
        ctx = client_context(t.ca_file)

        def proc0() -> dict:
            return t.admin.status()["procs"][0]

        def booked() -> dict | None:
            """The totals once both attempts ended in them (ticks bring them once a second), else None.

            Ended: goodput + rejected + abandoned + bad_input, as docs/contracts.md accounts for attempts."""
            tt = t.admin.status()["totals"]
            ended = tt["goodput"] + tt["abandoned"] + sum(tt["rejected"].values()) + sum(tt["bad_input"].values())
            return tt if tt["attempts"] == 2 and ended >= 2 else None

        parked = socket.create_connection(host_port(t.url), timeout=5)  # TCP only: no TLS byte yet
        try:
            # the server accepted it: counted as an attempt, still handshaking (no transport yet)
            wait_for(lambda: t.admin.status()["totals"]["attempts"] >= 1, "the parked attempt counted")
            assert (proc0()["last_tick"] or {}).get("queue_depth") == 1
            assert t.admin.restart(down=2.0)["procs"] == [0]
            # A tick from inside the down time proves the worker acted on the command (2 s down: at least
            # one tick lands in it); the state then becomes serving only once the restart ended.
            wait_for(lambda: (proc0()["last_tick"] or {}).get("state") == "restarting", "a restarting tick")
            wait_for(lambda: proc0()["state"] == "serving", "serving again", timeout=10)
            # The server serves again: a fresh attempt opens (the control).
            ws = websocket.create_connection(t.url, sslopt={"ca_certs": t.ca_file}, timeout=5)
            ws.send("after")
            assert ws.recv() == "after"
            ws.close()
            # Now the parked one does its TLS handshake and asks to upgrade: the restart killed it.
            got = upgrade_over(parked, ctx)
        finally:
            parked.close()
        assert isinstance(got, str) and got.startswith("cut"), got
        # The books: 2 attempts; the control is the only goodput; the parked one was cut by the server
        # (counted with the handshakes a restart aborts, its TLS work all wasted), not answered 503.
        totals = wait_for(booked, "both attempts booked")
        assert totals["attempts"] == 2 and totals["goodput"] == 1 and totals["accepted"] == 1, totals
        assert totals["bad_input"].get("aborted_handshake", 0) == 1, totals
        assert sum(totals["rejected"].values()) == 0 and totals["abandoned"] == 0, totals
        assert totals["wasted_ms"] > 0, totals  # the parked attempt's TLS handshake, done for nobody
        # nothing is left handshaking (the cut one left `handshaking`)
        wait_for(lambda: (proc0()["last_tick"] or {}).get("queue_depth") == 0, "queue_depth back to 0")
        assert t.admin.status()["connections"] == 0
        assert "Traceback" not in t.stderr_text(), t.stderr_text()[-2000:]
