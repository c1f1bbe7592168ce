"""The one ASGI 3 application every benchmarked server serves.

* ``http``: ``GET /`` answers ``Hello, world!`` as text/plain with an explicit
  Content-Length (so no server falls back to chunked encoding); anything else
  gets a 404. The request body is never read: the load is GET only.
* ``websocket``: accepts every handshake and echoes each message back as it
  came (text as text, bytes as bytes) until the client goes away.
* ``lifespan``: acknowledges startup and shutdown, so servers that probe for
  lifespan support (uvicorn, hypercorn, daphne) find it and log nothing.

Servers are started with ``benchmarks/`` as their working directory and load
it as ``app:application``.
"""

BODY = b"Hello, world!"
HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode("ascii")),
    ],
}
HELLO_BODY = {"type": "http.response.body", "body": BODY}

NOT_FOUND = b"Not found"
NOT_FOUND_START = {
    "type": "http.response.start",
    "status": 404,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(NOT_FOUND)).encode("ascii")),
    ],
}
NOT_FOUND_BODY = {"type": "http.response.body", "body": NOT_FOUND}


async def application(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        await http(scope, send)
    elif kind == "websocket":
        await websocket(receive, send)
    elif kind == "lifespan":
        await lifespan(receive, send)
    else:
        raise NotImplementedError(f"unsupported scope type {kind!r}")


async def http(scope, send):
    if scope["method"] in ("GET", "HEAD") and scope["path"] == "/":
        await send(HELLO_START)
        await send(HELLO_BODY)
    else:
        await send(NOT_FOUND_START)
        await send(NOT_FOUND_BODY)


async def websocket(receive, send):
    while True:
        event = await receive()
        kind = event["type"]
        if kind == "websocket.receive":
            text = event.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": event.get("bytes")})
        elif kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.disconnect":
            return


async def lifespan(receive, send):
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
