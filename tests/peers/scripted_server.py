"""A scripted raw-socket WebSocket peer for tests: each path ends the connection one exact way.

Run as a subprocess: ``python tests/peers/scripted_server.py``; prints ``{"port": N}`` once
listening, then one JSON line per thing it did (``{"sent_close": code_or_null, ...}``).

Paths (query ``after=<s>`` delays the ending; default 0.2 s):
  /close/<n>?reason=<text>   handshake, then a Close frame with code n (any 0..65535) and reason
  /close-empty               a Close frame with no payload (recorded as 1005)
  /close-badutf8             Close 1000 with a reason that is not UTF-8
  /http/<status>?retry_after=<v>   refuse the handshake with this HTTP status (+ Retry-After)
  /rst                       handshake, then a TCP reset (SO_LINGER 0)
  /eof                       handshake, then FIN without a Close frame
  /silent                    handshake, then read and ignore everything (pings go unanswered)
  /echo                      echo messages, answer pings, answer Close
  /headers                   say the request's path and headers, then echo
  /hang                      read the request, never answer it
  /slow101?delay=<s>         answer the handshake after <s> seconds, then echo
  /auth                      401 unless ``Authorization: Bearer $PEER_TOKEN``, then echo
Any path: ``pick=<name>`` answers with that subprotocol (``Sec-WebSocket-Protocol``).

``--tls CERT KEY`` serves wss:// (``--client-ca CA``: require a client certificate from it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_out_lock = threading.Lock()


def say(obj: dict) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(conn: socket.socket) -> tuple[int, bytes]:
    b1, b2 = recv_exact(conn, 2)
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(conn, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(conn, 8))[0]
    mask = recv_exact(conn, 4) if b2 & 0x80 else b"\0\0\0\0"
    data = bytearray(recv_exact(conn, n))
    for i in range(n):
        data[i] ^= mask[i % 4]
    return b1 & 0x0F, bytes(data)


def read_request(conn: socket.socket) -> tuple[str, dict[str, str]]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError
        buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    target = head[0].split(" ")[1]
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return target, headers


def accept_handshake(conn: socket.socket, headers: dict[str, str], subprotocol: str = "") -> None:
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    extra = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    conn.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        ).encode()
    )
    say({"accepted": True})


def drain_until_close(conn: socket.socket, timeout: float = 5.0) -> None:
    conn.settimeout(timeout)
    try:
        while True:
            op, _ = read_frame(conn)
            if op == 8:
                return
    except (EOFError, OSError):
        return


def handle(conn: socket.socket, tls: ssl.SSLContext | None = None) -> None:
    try:
        if tls is not None:
            conn.settimeout(10)
            conn = tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            try:
                conn.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                say({"tls_error": str(exc)[:200]})
                # let the alert reach the client: closing with its request unread would send a
                # reset that can overtake it
                try:
                    conn.shutdown(socket.SHUT_WR)
                    conn.settimeout(2)
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass
                return
            conn.settimeout(None)
        target, headers = read_request(conn)
        parts = urlsplit(target)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        after = float(q.get("after", "0.2"))
        if path.startswith("/http/"):
            status = int(path.rsplit("/", 1)[1])
            extra = f"Retry-After: {q['retry_after']}\r\n" if "retry_after" in q else ""
            conn.sendall((f"HTTP/1.1 {status} Nope\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
            say({"http": status})
            return
        if path == "/hang":
            say({"hang": True})
            conn.settimeout(60)
            while conn.recv(65536):
                pass
            return
        if path == "/slow101":
            time.sleep(float(q.get("delay", "1")))
        if path == "/auth" and headers.get("authorization") != f"Bearer {os.environ.get('PEER_TOKEN', '?')}":
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            say({"http": 401})
            return
        if path == "/headers":
            say({"path": target, "headers": headers})
        accept_handshake(conn, headers, q.get("pick", ""))
        if path.startswith("/close"):
            time.sleep(after)
            if path == "/close-empty":
                payload, code = b"", None
            elif path == "/close-badutf8":
                payload, code = struct.pack("!H", 1000) + b"\xff\xfebad", 1000
            else:
                code = int(path.rsplit("/", 1)[1])
                payload = struct.pack("!H", code) + unquote(q.get("reason", "")).encode()
            conn.sendall(frame(8, payload))
            say({"sent_close": code})
            drain_until_close(conn)
        elif path == "/rst":
            time.sleep(after)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            say({"rst": True})
        elif path == "/eof":
            time.sleep(after)
            conn.shutdown(socket.SHUT_WR)
            say({"eof": True})
            time.sleep(0.5)
        elif path == "/silent":
            conn.settimeout(60)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass
        else:  # /echo
            conn.settimeout(60)
            while True:
                op, data = read_frame(conn)
                if op in (1, 2):
                    conn.sendall(frame(op, data))
                elif op == 9:
                    conn.sendall(frame(10, data))
                elif op == 8:
                    conn.sendall(frame(8, data[:2]))
                    return
    except (EOFError, OSError, ValueError, IndexError):
        pass  # ssl.SSLError is an OSError
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--client-ca", default="")
    args = ap.parse_args()
    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*args.tls)
        if args.client_ca:
            tls.load_verify_locations(args.client_ca)
            tls.verify_mode = ssl.CERT_REQUIRED
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    say({"port": srv.getsockname()[1]})
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, tls), daemon=True).start()


if __name__ == "__main__":
    main()
