"""A tiny ASGI 3 application for trying daphne out.

Run it from the repository root with::

    daphne -b 127.0.0.1 -p 8000 examples.hello.app:application

Routes:

* ``GET /`` answers ``Hello, world!`` as text/plain.
* ``POST /echo`` sends the request body back unchanged.
* ``GET /stream`` sends a few chunks, one at a time.
* ``/ws`` is a WebSocket that echoes every message (on the same port).
* Anything else gets a 404 (or, for a WebSocket, a refused handshake).

It also speaks the lifespan protocol, so ``--lifespan on`` works with it.
"""

import asyncio

TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    else:
        raise NotImplementedError(f"Unsupported scope type {scope['type']!r}")


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope, receive, send):
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/":
        await respond(send, 200, b"Hello, world!\n")
    elif method == "POST" and path == "/echo":
        body = await read_body(receive)
        content_type = dict(scope["headers"]).get(
            b"content-type", b"application/octet-stream"
        )
        await respond(send, 200, body, [(b"content-type", content_type)])
    elif method == "GET" and path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
        for number in range(1, 6):
            await send(
                {
                    "type": "http.response.body",
                    "body": f"chunk {number}\n".encode(),
                    "more_body": True,
                }
            )
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond(send, 404, b"Not found\n")


async def websocket(scope, receive, send):
    await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close"})  # the client gets a 403
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = {"type": "websocket.send"}
        if message.get("text") is not None:
            reply["text"] = message["text"]
        else:
            reply["bytes"] = message["bytes"]
        await send(reply)


async def read_body(receive):
    """Collect the whole request body; give up quietly if the client leaves."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def respond(send, status, body, headers=TEXT):
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
