"""The application the conformance suites talk to: a WebSocket echo (text
back as text, bytes as bytes) and a small ``200`` for plain HTTP.

Autobahn TestSuite's server cases expect exactly this: every message the
client sends comes back unchanged.
"""

from __future__ import annotations


async def application(scope: dict, receive, send) -> None:
    if scope["type"] == "websocket":
        await websocket_echo(receive, send)
    elif scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"echo server"})
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


async def websocket_echo(receive, send) -> None:
    while True:
        event = await receive()
        kind = event["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if event.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": event["bytes"]})
            else:
                await send({"type": "websocket.send", "text": event["text"]})
        else:  # websocket.disconnect
            return
