"""A real Socket.IO v5 server (python-socketio, threading mode, simple-websocket under Werkzeug) for tests.

Run as a subprocess: ``python tests/peers/socketio_server.py [--token T] [--ping-interval S] [--ping-timeout S]
[--kick-after S]``; prints ``{"port": N}`` once listening. ``GET /stats`` answers the server's own counts:
``connects`` (namespace connects accepted), ``rejected`` (refused: CONNECT_ERROR), ``disconnects`` (by reason),
``messages`` (``message`` events echoed back). ``--kick-after S`` disconnects every client once, S s after start.
"""

from __future__ import annotations

import argparse
import json
import threading
import time


def main() -> None:
    import socketio
    from werkzeug.serving import make_server

    ap = argparse.ArgumentParser()
    ap.add_argument("--token", default="")
    ap.add_argument("--ping-interval", type=float, default=1.0)
    ap.add_argument("--ping-timeout", type=float, default=1.0)
    ap.add_argument("--kick-after", type=float, default=0.0)
    args = ap.parse_args()

    sio = socketio.Server(
        async_mode="threading",
        transports=["websocket"],
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
    )
    lock = threading.Lock()
    stats: dict = {"connects": 0, "rejected": 0, "disconnects": {}, "messages": 0, "kicked": 0}
    live: set[str] = set()

    @sio.event
    def connect(sid, environ, auth):
        if args.token and (not isinstance(auth, dict) or auth.get("token") != args.token):
            with lock:
                stats["rejected"] += 1
            raise socketio.exceptions.ConnectionRefusedError("bad token")
        with lock:
            stats["connects"] += 1
            live.add(sid)

    @sio.event
    def disconnect(sid, reason=None):
        with lock:
            key = str(reason)
            stats["disconnects"][key] = stats["disconnects"].get(key, 0) + 1
            live.discard(sid)

    @sio.on("message")
    def message(sid, data):
        with lock:
            stats["messages"] += 1
        sio.send(data, to=sid)

    def rest(environ, start_response):
        if environ.get("PATH_INFO") == "/stats":
            with lock:
                body = json.dumps(stats).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    app = socketio.WSGIApp(sio, rest)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(json.dumps({"port": server.server_port}), flush=True)

    if args.kick_after > 0:

        def kick() -> None:
            time.sleep(args.kick_after)
            with lock:
                sids = list(live)
                stats["kicked"] = len(sids)
            for sid in sids:
                sio.disconnect(sid)

        threading.Thread(target=kick, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
