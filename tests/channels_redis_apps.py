"""A channels_redis deployment in miniature, for tests/test_channels_redis.py.

daphne front servers serve ``tests.channels_redis_apps:channel_layer``;
``daphne-worker tests.channels_redis_apps:channel_layer
tests.channels_redis_apps:application`` runs :data:`application` behind it.
The layer is Channels' own ``get_channel_layer()``, configured from Django
settings made here (Redis at ``$DAPHNE_TEST_REDIS_PORT`` on 127.0.0.1).

Every HTTP request the application runs appends ``<id> <pid>`` to the file
``$DAPHNE_TEST_EXECUTIONS`` (one ``write`` in append mode: lines do not mix
between processes), so that a test counts executions per request id.
``$DAPHNE_TEST_REDIS_CAPACITY`` is the channels' capacity (default 1000).

HTTP: ``/hello`` names the worker's pid; ``/slow`` answers after
``?seconds``; ``/stream`` answers in three chunks; ``/echo`` sends the body
back; ``/raise`` raises. WebSocket: ``/ws`` echoes ``<pid>:<text>`` (a
stateless consumer); ``/chat`` joins the group ``room`` and broadcasts what
it gets to it; ``/raise`` raises on the first message.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

import django
from django.conf import settings

PORT = int(os.environ.get("DAPHNE_TEST_REDIS_PORT", "6379"))

if not settings.configured:
    settings.configure(
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [("127.0.0.1", PORT)],
                    "prefix": "daphne-cr:",
                    "capacity": int(
                        os.environ.get("DAPHNE_TEST_REDIS_CAPACITY", "1000")
                    ),
                },
            }
        },
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402

channel_layer = get_channel_layer()

EXECUTIONS = os.environ.get("DAPHNE_TEST_EXECUTIONS")


def record(ident: str) -> None:
    if EXECUTIONS and ident:
        descriptor = os.open(EXECUTIONS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, f"{ident} {os.getpid()}\n".encode())
        finally:
            os.close(descriptor)


async def read_body(receive) -> bytes:
    body = b""
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return body
        body += event.get("body", b"")
        if not event.get("more_body"):
            return body


async def http(scope, receive, send) -> None:
    query = parse_qs(scope["query_string"].decode())
    ident = query.get("id", [""])[0]
    record(ident)
    path = scope["path"]
    body = await read_body(receive)
    if path == "/raise":
        raise RuntimeError("the application fails on purpose")
    headers = [(b"content-type", b"text/plain")]
    if path == "/slow":
        await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for part in (b"one,", b"two,"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"three"})
        return
    content = body if path == "/echo" else f"{path} {ident} {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class EchoConsumer(AsyncWebsocketConsumer):
    """Stateless: everything it needs comes with each message."""

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None) -> None:
        await self.send(text_data=f"{os.getpid()}:{text_data}")


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add("room", self.channel_name)
        await self.accept()

    async def disconnect(self, code) -> None:
        await self.channel_layer.group_discard("room", self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        await self.channel_layer.group_send(
            "room", {"type": "chat.message", "text": text_data}
        )

    async def chat_message(self, event) -> None:
        await self.send(text_data=event["text"])


class RaisingConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None) -> None:
        raise RuntimeError("the consumer fails on purpose")


echo = EchoConsumer.as_asgi()
chat = ChatConsumer.as_asgi()
raising = RaisingConsumer.as_asgi()


async def application(scope, receive, send) -> None:
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        consumer = {"/chat": chat, "/raise": raising}.get(scope["path"], echo)
        await consumer(scope, receive, send)
    elif kind == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                record("lifespan-startup")
                await send({"type": "lifespan.startup.complete"})
            else:
                record("lifespan-shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
