"""Small ASGI applications served by daphne in the command-line and server tests.

Every application answers HTTP requests with a JSON description of its scope
(so a test can see what daphne put there). The query string ``sleep=N`` makes
the response wait N seconds first. The variants differ in how they treat the
``lifespan`` scope.
"""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import parse_qs

#: Environment variable naming the file :func:`lifespan_recorder` appends to.
LIFESPAN_LOG = "DAPHNE_TEST_LIFESPAN_LOG"

#: Message :func:`lifespan_startup_fails` reports with lifespan.startup.failed.
STARTUP_FAILURE = "the test database is unreachable"

#: Not an application: a string, for the "not callable" error.
not_callable = "I am a string, not an ASGI application"


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


async def _http(scope, receive, send) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    query = parse_qs(scope["query_string"].decode("latin-1"))
    delay = float(query.get("sleep", ["0"])[0])
    if delay:
        await asyncio.sleep(delay)
    payload = {
        "type": scope["type"],
        "method": scope["method"],
        "path": scope["path"],
        "root_path": scope.get("root_path", ""),
        "scheme": scope.get("scheme"),
        "client": _jsonable(scope.get("client")),
        "server": _jsonable(scope.get("server")),
        "body_length": len(body),
        "pid": os.getpid(),
    }
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _lifespan_complete(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send) -> None:
    """Describes the scope; supports lifespan by accepting both events."""
    if scope["type"] == "lifespan":
        await _lifespan_complete(receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)


def get_application():
    """Module-level factory for :class:`daphne.testing.DaphneProcess`."""
    return application


async def lifespan_recorder(scope, receive, send) -> None:
    """Appends each lifespan event type to the file named by LIFESPAN_LOG."""
    if scope["type"] != "lifespan":
        await _http(scope, receive, send)
        return
    while True:
        message = await receive()
        with open(os.environ[LIFESPAN_LOG], "a", encoding="utf-8") as log:
            log.write(message["type"] + "\n")
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def lifespan_raises(scope, receive, send) -> None:
    """Raises on the lifespan scope, as applications without lifespan do."""
    if scope["type"] == "lifespan":
        raise RuntimeError("lifespan is not supported by this application")
    await _http(scope, receive, send)


async def lifespan_startup_fails(scope, receive, send) -> None:
    """Reports a failed startup with :data:`STARTUP_FAILURE` as the message."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": STARTUP_FAILURE})
        return
    await _http(scope, receive, send)


async def lifespan_shutdown_hangs(scope, receive, send) -> None:
    """Completes lifespan startup but never answers lifespan.shutdown."""
    if scope["type"] != "lifespan":
        await _http(scope, receive, send)
        return
    message = await receive()
    assert message["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.complete"})
    await receive()  # lifespan.shutdown: never answered
    await asyncio.sleep(3600)
