"""A real `websockets` echo server for tests (permessage-deflate on by default, as the library ships).

Run as a subprocess: ``python tests/peers/ws_server.py [--no-compression]``; prints ``{"port": N}`` once
listening, then one JSON line per connection it served: ``{"extensions": [...], "messages": n}``.
"""

from __future__ import annotations

import asyncio
import json
import sys


async def main(compression: str | None) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        n = 0
        try:
            async for message in ws:
                n += 1
                await ws.send(message)
        finally:
            names = [type(e).__name__ for e in ws.protocol.extensions]
            print(json.dumps({"extensions": names, "messages": n}), flush=True)

    async with serve(echo, "127.0.0.1", 0, compression=compression, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(None if "--no-compression" in sys.argv else "deflate"))
