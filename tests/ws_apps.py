"""ASGI applications for the WebSocket tests (``tests.ws_apps:application``).

WebSocket scopes are routed on ``scope["path"]`` (see ``WS_ROUTES``; any path
starting with ``/scope`` is the scope dump). HTTP scopes get a small
``200 http ok``, so plain HTTP can be checked on the same port, except two
control routes into the same process: ``/release?id=X`` opens the ``/hold``
gate ``X`` and ``/progress?id=X`` tells how far ``/flood`` connection ``X`` got.

The applications report what they saw on stdout, one line each, which the
tests read back from the daphne subprocess::

    EVENT {"route": "/echo", "id": "...", "message": {...}}   # websocket.disconnect
    AFTER {"route": "/echo", "id": "...", "message": null}    # receive() after it

(``AFTER`` is ``null`` when that extra ``receive()`` found nothing in 0.5 s.)

``id`` is the ``id`` query parameter, so a test can find its own connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

from tests.apps import jsonable, lifespan, query, respond

#: Gates for ``/hold``: an HTTP ``GET /release?id=X`` opens gate ``X``.
GATES: dict[str, asyncio.Event] = {}


def report(kind: str, scope: dict, **fields) -> None:
    record = {"route": scope["path"], "id": query(scope).get("id"), **fields}
    print(f"{kind} {json.dumps(jsonable(record))}", flush=True)


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


async def connect_event(receive) -> dict:
    message = await receive()
    if message["type"] != "websocket.connect":
        raise RuntimeError(f"expected websocket.connect first, got {message!r}")
    return message


async def finish(scope, receive, message: dict | None = None, **fields) -> None:
    """Wait for websocket.disconnect, report it, then report any extra event."""
    while message is None or message["type"] != "websocket.disconnect":
        message = await receive()
    report("EVENT", scope, message=message, **fields)
    try:
        extra = await asyncio.wait_for(receive(), 0.5)
    except asyncio.TimeoutError:
        report("AFTER", scope, message=None)
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        report("AFTER", scope, message=None, error=repr(exc))
    else:
        report("AFTER", scope, message=extra)


async def send_data(send, message: dict) -> None:
    """Send back the payload of a websocket.receive event with its own type."""
    if message.get("text") is not None:
        await send({"type": "websocket.send", "text": message["text"]})
    else:
        await send({"type": "websocket.send", "bytes": message["bytes"]})


async def echo_loop(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            await finish(scope, receive, message)
            return
        await send_data(send, message)


# -- WebSocket routes ----------------------------------------------------------


async def ws_echo(scope, receive, send):
    await connect_event(receive)
    await send({"type": "websocket.accept"})
    await echo_loop(scope, receive, send)


async def ws_scope(scope, receive, send):
    connect = await connect_event(receive)
    await send({"type": "websocket.accept"})
    types = {key: type(value).__name__ for key, value in scope.items()}
    # The distinct types of every header name and value.
    types["headers"] = sorted(
        {type(part).__name__ for pair in scope["headers"] for part in pair}
    )
    payload = {"scope": jsonable(scope), "connect": jsonable(connect), "types": types}
    await send({"type": "websocket.send", "text": json.dumps(payload)})
    await finish(scope, receive)


async def ws_reject(scope, receive, send):
    await connect_event(receive)
    await send({"type": "websocket.close"})


async def ws_deny(scope, receive, send):
    await connect_event(receive)
    if "websocket.http.response" not in scope.get("extensions", {}):
        # Without the extension the client sees a plain 403 instead.
        await send({"type": "websocket.close"})
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"x-why", b"nope"), (b"content-type", b"text/plain")],
        }
    )
    await send(
        {"type": "websocket.http.response.body", "body": b"go ", "more_body": True}
    )
    await send({"type": "websocket.http.response.body", "body": b"away"})


async def ws_subprotocol(scope, receive, send):
    await connect_event(receive)
    offered = scope.get("subprotocols") or []
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": offered[-1] if offered else None,
            "headers": [(b"x-extra", b"1")],
        }
    )
    await echo_loop(scope, receive, send)


async def ws_close(scope, receive, send):
    params = query(scope)
    await connect_event(receive)
    await send({"type": "websocket.accept"})
    await send(
        {
            "type": "websocket.close",
            "code": int(params.get("code", "1000")),
            "reason": params.get("reason", ""),
        }
    )
    await finish(scope, receive)


async def ws_raise_before(scope, receive, send):
    await connect_event(receive)
    raise RuntimeError("boom before accept (expected by the tests)")


async def ws_raise_after(scope, receive, send):
    await connect_event(receive)
    await send({"type": "websocket.accept"})
    raise RuntimeError("boom after accept (expected by the tests)")


async def ws_never(scope, receive, send):
    """Never answers websocket.connect; reports what the server does next."""
    await connect_event(receive)
    await finish(scope, receive)


async def ws_hold(scope, receive, send):
    """Accepts only once ``GET /release?id=X`` has been served."""
    await connect_event(receive)
    await gate(query(scope).get("id", "")).wait()
    await send({"type": "websocket.accept"})
    await echo_loop(scope, receive, send)


class Tally:
    """Count, size, order and checksum of the messages an application read."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.count = 0
        self.size = 0
        self.in_order = True

    def add(self, message: dict) -> None:
        data = message.get("bytes")
        if data is None:
            data = message["text"].encode("utf-8")
        # Numbered messages start with their zero-based index as six digits.
        if data[:6] != f"{self.count:06d}".encode():
            self.in_order = False
        self.digest.update(data)
        self.size += len(data)
        self.count += 1

    def summary(self) -> dict:
        return {
            "count": self.count,
            "in_order": self.in_order,
            "sha256": self.digest.hexdigest(),
            "bytes": self.size,
        }


async def read_messages(scope, receive, send, expected: int) -> None:
    """Read ``expected`` messages and send back their summary as JSON text.

    With ``expected`` 0, read until the disconnect. A disconnect before the
    end is reported with the summary so far (``EVENT ... "tally": {...}``).
    """
    tally = Tally()
    while expected == 0 or tally.count < expected:
        message = await receive()
        if message["type"] != "websocket.receive":
            await finish(scope, receive, message, tally=tally.summary())
            return
        tally.add(message)
    await send({"type": "websocket.send", "text": json.dumps(tally.summary())})
    await finish(scope, receive)


async def ws_slow(scope, receive, send):
    """Accept, sleep ``delay`` seconds, then read ``n`` messages (see above)."""
    params = query(scope)
    await connect_event(receive)
    await send({"type": "websocket.accept"})
    await asyncio.sleep(float(params.get("delay", "2")))
    await read_messages(scope, receive, send, int(params.get("n", "0")))


async def ws_count(scope, receive, send):
    """Read ``n`` messages at once, then reply with their summary."""
    await connect_event(receive)
    await send({"type": "websocket.accept"})
    await read_messages(scope, receive, send, int(query(scope).get("n", "0")))


#: Messages each ``/flood`` connection has handed to ``send`` so far, by id.
FLOOD_SENT: dict[str, int] = {}


async def ws_flood(scope, receive, send):
    """Send ``n`` numbered binary messages of ``size`` bytes as fast as
    ``send`` allows; ``GET /progress?id=X`` tells how many went out."""
    params = query(scope)
    ident = params.get("id", "")
    count = int(params.get("n", "100"))
    size = int(params.get("size", "65536"))
    FLOOD_SENT[ident] = 0
    await connect_event(receive)
    await send({"type": "websocket.accept"})
    filler = b"f" * (size - 6)
    for index in range(count):
        try:
            await send({"type": "websocket.send", "bytes": b"%06d" % index + filler})
        except OSError as exc:  # the client is gone (ASGI spec 2.4)
            report("RAISED", scope, error=type(exc).__name__)
            break
        FLOOD_SENT[ident] = index + 1
    await finish(scope, receive)


WS_ROUTES = {
    "/flood": ws_flood,
    "/echo": ws_echo,
    "/reject": ws_reject,
    "/deny": ws_deny,
    "/subprotocol": ws_subprotocol,
    "/close": ws_close,
    "/raise-before": ws_raise_before,
    "/raise-after": ws_raise_after,
    "/never": ws_never,
    "/hold": ws_hold,
    "/slow": ws_slow,
    "/count": ws_count,
}


# -- HTTP ----------------------------------------------------------------------


async def http_app(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = b"http ok"
    if scope["path"] == "/release":
        gate(query(scope).get("id", "")).set()
        body = b"released"
    elif scope["path"] == "/progress":
        body = str(FLOOD_SENT.get(query(scope).get("id", ""), -1)).encode()
    await respond(send, body=body)  # (one body event: daphne adds the length)


async def application(scope, receive, send):
    if scope["type"] == "http":
        await http_app(scope, receive, send)
    elif scope["type"] == "websocket":
        path = scope["path"]
        if path.startswith("/scope"):
            await ws_scope(scope, receive, send)
            return
        route = WS_ROUTES.get(path)
        if route is None:
            await connect_event(receive)
            await send({"type": "websocket.close", "code": 4404})
            return
        await route(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
