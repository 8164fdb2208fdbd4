"""A real GraphQL-over-WebSocket server (ariadne's graphql-transport-ws handler under uvicorn) for tests.

Run as a subprocess: ``python tests/peers/graphql_server.py [--token T]``; prints ``{"port": N}`` once
listening. ``GET /stats`` answers the server's own counts: ``sockets`` (WebSockets accepted), ``acks``
(connection_init accepted), ``rejected`` (a bad token: closed with 4403 Forbidden, as graphql-ws servers
do when onConnect says no), ``disconnects``, ``subscriptions`` started. The subscription ``ticks`` yields
one number every 0.2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket


def main() -> None:
    import uvicorn
    from ariadne import SubscriptionType, make_executable_schema
    from ariadne.asgi import GraphQL
    from ariadne.asgi.handlers import GraphQLTransportWSHandler

    ap = argparse.ArgumentParser()
    ap.add_argument("--token", default="")
    args = ap.parse_args()
    stats = {"sockets": 0, "acks": 0, "rejected": 0, "disconnects": 0, "subscriptions": 0}

    sdl = "type Query { hello: String }  type Subscription { ticks: Int }"
    sub = SubscriptionType()

    @sub.source("ticks")
    async def ticks_source(obj, info):
        stats["subscriptions"] += 1
        n = 0
        while True:
            n += 1
            yield n
            await asyncio.sleep(0.2)

    @sub.field("ticks")
    def ticks(n, info):
        return n

    schema = make_executable_schema(sdl, sub)

    class Handler(GraphQLTransportWSHandler):
        async def handle_websocket(self, websocket):
            stats["sockets"] += 1
            try:
                await super().handle_websocket(websocket)
            finally:
                stats["disconnects"] += 1

        async def handle_websocket_connection_init_message(self, websocket, message, client_context):
            payload = message.get("payload") or {}
            if args.token and (not isinstance(payload, dict) or payload.get("token") != args.token):
                stats["rejected"] += 1
                client_context.connection_init_received = True
                await websocket.close(code=4403)  # 4403 Forbidden
                return
            await super().handle_websocket_connection_init_message(websocket, message, client_context)
            if client_context.connection_acknowledged:
                stats["acks"] += 1

    graphql = GraphQL(schema, websocket_handler=Handler())

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/stats":
            body = json.dumps(stats).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await graphql(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="wsproto", ws_ping_interval=None)
    server = uvicorn.Server(config)
    print(json.dumps({"port": port}), flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
