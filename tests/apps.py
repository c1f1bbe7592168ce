"""ASGI applications served by the real-socket tests (``tests.apps:...``).

``application`` routes on ``scope["path"]``; each route exercises one part of
the server's side of the ASGI contract (see the ``ROUTES`` table). Query
parameters are read with :func:`query`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs

#: 64 KiB whose byte at offset ``i`` is ``i % 256``; ``/big`` repeats it, so
#: the whole body has that property and a client can check it cheaply.
BLOCK = bytes(range(256)) * 256
MiB = 1024 * 1024


def query(scope: dict) -> dict[str, str]:
    """The last value of each query parameter."""
    parsed = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def jsonable(value):
    """``value`` as JSON-friendly data: bytes as latin-1 text, tuples as lists."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


async def respond(send, status=200, body=b"", headers=(), content_type=b"text/plain"):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive) -> tuple[bytes, int]:
    """The whole request body and the number of ``http.request`` events."""
    chunks = []
    events = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        events += 1
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), events


# -- routes ----------------------------------------------------------------


async def scope_route(scope, receive, send):
    body = json.dumps(jsonable(scope)).encode()
    await respond(send, body=body, content_type=b"application/json")


async def echo(scope, receive, send):
    body, events = await read_body(receive)
    await respond(
        send,
        body=body,
        headers=[(b"x-chunks", str(events).encode())],
        content_type=b"application/octet-stream",
    )


async def stream(scope, receive, send):
    params = query(scope)
    count, size = int(params.get("n", "3")), int(params.get("size", "10"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(count):
        chunk = bytes([ord("a") + index % 26]) * size
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def slow_stream(scope, receive, send):
    params = query(scope)
    count, delay = int(params.get("n", "10")), float(params.get("delay", "0.3"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(count):
        body = b"part %d\n" % index
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b""})


async def big(scope, receive, send):
    size = int(query(scope).get("mb", "1")) * MiB
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(size).encode())],
        }
    )
    for _ in range(size // len(BLOCK)):
        await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class AppError(RuntimeError):
    pass


#: Text of every exception the applications raise; it must never reach a client.
SECRET = "secret-exception-text-4711"


async def raise_route(scope, receive, send):
    raise AppError(SECRET)


async def raise_mid(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise AppError(SECRET)


async def return_early(scope, receive, send):
    return


async def bad_status(scope, receive, send):
    await send({"type": "http.response.start", "status": "200", "headers": []})
    await send({"type": "http.response.body", "body": b"bad status"})


async def bad_header(scope, receive, send):
    headers = [(b"x-bad", b"a\r\nInjected: yes")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"bad header"})


async def body_before_start(scope, receive, send):
    await send({"type": "http.response.body", "body": b"no start"})


async def double_start(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"double start"})


async def double_start_after_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"second"})


async def too_long(scope, receive, send):
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"0123456789"})


async def too_long_streamed(scope, receive, send):
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"012", "more_body": True})
    await send({"type": "http.response.body", "body": b"3456789"})


async def too_short(scope, receive, send):
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"012"})


async def head_length(scope, receive, send):
    await respond(send, body=b"h" * 1234, headers=[(b"content-length", b"1234")])


async def status_route(scope, receive, send):
    status = int(scope["path"].rsplit("/", 1)[1])
    await send({"type": "http.response.start", "status": status, "headers": []})
    body = b"this body must not be sent" if query(scope).get("body") else b""
    await send({"type": "http.response.body", "body": body})


async def sleep_route(scope, receive, send):
    await asyncio.sleep(float(query(scope).get("s", "1")))
    await respond(send, body=b"slept")


async def sleep_record(scope, receive, send):
    """Sleeps ``s`` seconds, then answers. The file ``file`` says "started",
    then how the sleep ended: "returned" or the exception's name."""
    params = query(scope)
    record = Path(params["file"])
    record.write_text("started")
    outcome = "returned"
    try:
        await asyncio.sleep(float(params.get("s", "30")))
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        record.write_text(outcome)
    await respond(send, body=b"slept")


async def wait_disconnect(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            Path(query(scope)["file"]).write_text("disconnect")
            return


async def read_body_then_respond(scope, receive, send):
    body, _ = await read_body(receive)
    await respond(send, body=b"got " + body)


async def no_body_read(scope, receive, send):
    await respond(send, body=b"not read")


async def trailers(scope, receive, send):
    """A body in two parts, then trailers (``http.response.trailers``)."""
    offered = "http.response.trailers" in scope.get("extensions", {})
    start = {"type": "http.response.start", "status": 200, "headers": []}
    await send({**start, "trailers": offered})
    await send({"type": "http.response.body", "body": b"part one, ", "more_body": True})
    await send({"type": "http.response.body", "body": b"part two"})
    if offered:
        fields = [(b"x-checksum", b"abc123")]
        await send({"type": "http.response.trailers", "headers": fields})


async def counted_stream(scope, receive, send):
    """Streams ``n`` 64 KiB blocks, writing to ``file`` how many ``send``
    calls have returned: a server with backpressure keeps it low while the
    client does not read."""
    params = query(scope)
    record = Path(params["file"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(int(params.get("n", "64"))):
        await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        record.write_text(str(index + 1))
    await send({"type": "http.response.body", "body": b""})


#: Requests waiting at each barrier (see ``barrier``).
BARRIERS: dict[str, list[asyncio.Future]] = {}


async def barrier(scope, receive, send):
    """Answers once ``n`` requests with the same ``key`` are all waiting: it
    can only complete if the server runs them at the same time."""
    params = query(scope)
    waiting = BARRIERS.setdefault(params["key"], [])
    arrived = asyncio.get_running_loop().create_future()
    waiting.append(arrived)
    if len(waiting) >= int(params["n"]):
        for future in waiting:
            if not future.done():
                future.set_result(None)
    await arrived
    await respond(send, body=b"together")


ROUTES = {
    "/trailers": trailers,
    "/barrier": barrier,
    "/counted-stream": counted_stream,
    "/scope": scope_route,
    "/echo": echo,
    "/stream": stream,
    "/slow-stream": slow_stream,
    "/big": big,
    "/raise": raise_route,
    "/raise-mid": raise_mid,
    "/return-early": return_early,
    "/bad-status": bad_status,
    "/bad-header": bad_header,
    "/body-before-start": body_before_start,
    "/double-start": double_start,
    "/double-start-after-body": double_start_after_body,
    "/too-long": too_long,
    "/too-long-streamed": too_long_streamed,
    "/too-short": too_short,
    "/head-length": head_length,
    "/sleep": sleep_route,
    "/sleep-record": sleep_record,
    "/wait-disconnect": wait_disconnect,
    "/read-body-then-respond": read_body_then_respond,
    "/no-body-read": no_body_read,
}


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if "state" in scope:
                scope["state"]["lifespan"] = "started"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    """The ASGI 3 application every wire test talks to."""
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    path = scope["path"]
    if path.startswith("/status/"):
        handler = status_route
    else:
        # Any other path (e.g. /scope/anything) answers with the scope.
        handler = ROUTES.get(path, scope_route)
    await handler(scope, receive, send)


class asgi2_application:
    """An ASGI 2 ("double callable") application answering ``asgi2``."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] == "lifespan":
            await lifespan(self.scope, receive, send)
            return
        await respond(send, body=b"asgi2")
