"""Django Channels consumers of the test project (see routing.py).

Each echo consumer answers a text message with ``"<room>:<text>"``, where
``room`` comes from the URL route, and sends binary messages back unchanged.
A few text commands exercise the rest of the ASGI WebSocket contract:

- ``"close"``: the server closes the socket (sync: code 4000; async: code
  4001 with a reason).
- ``"scope"``: a JSON summary of the connection scope.

``disconnect()`` prints one line to stdout (flushed), so that a test reading
daphne's output can check which close code the application was given.
"""

from __future__ import annotations

import json

from channels.exceptions import DenyConnection
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer

#: The subprotocol the echo consumers agree to when a client offers it.
SUBPROTOCOL = "echo.v1"


def describe_scope(scope: dict) -> str:
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
    }
    return json.dumps(
        {
            "type": scope["type"],
            "scheme": scope.get("scheme", "ws"),
            "path": scope["path"],
            "query_string": scope["query_string"].decode("latin-1"),
            "room": scope["url_route"]["kwargs"]["room"],
            "subprotocols": list(scope.get("subprotocols", [])),
            "host": headers.get("host"),
            "x_test": headers.get("x-test"),
        },
        sort_keys=True,
    )


class EchoConsumer(WebsocketConsumer):
    """A synchronous consumer (Channels runs it in a thread)."""

    close_code = 4000

    def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        offered = self.scope.get("subprotocols", [])
        self.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)

    def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            self.send(bytes_data=bytes_data)
        elif text_data == "close":
            self.close(code=self.close_code)
        elif text_data == "scope":
            self.send(text_data=describe_scope(self.scope))
        else:
            self.send(text_data=f"{self.room}:{text_data}")

    def disconnect(self, code):
        print(f"sync-disconnect {self.room} {code}", flush=True)


class AsyncEchoConsumer(AsyncWebsocketConsumer):
    """The same echo, as an asyncio consumer."""

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        offered = self.scope.get("subprotocols", [])
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            await self.send(bytes_data=bytes_data)
        elif text_data == "close":
            await self.close(code=4001, reason=f"bye {self.room}")
        elif text_data == "scope":
            await self.send(text_data=describe_scope(self.scope))
        else:
            await self.send(text_data=f"{self.room}:{text_data}")

    async def disconnect(self, code):
        print(f"async-disconnect {self.room} {code}", flush=True)


class ChatConsumer(AsyncWebsocketConsumer):
    """Joins the group of its room (project_settings has a channel layer);
    a message from one member reaches every member as ``"<room>: <text>"``."""

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat-{self.room}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=f"joined {self.room}")

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "text": f"{self.room}: {text_data}"}
        )

    async def chat_message(self, event):
        await self.send(text_data=event["text"])

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)


class SilentConsumer(WebsocketConsumer):
    """Neither accepts nor refuses: the handshake waits for the server's
    timeout."""

    def connect(self):
        pass


class DenyConsumer(WebsocketConsumer):
    """Refuses every handshake (Channels sends websocket.close before accept)."""

    def connect(self):
        raise DenyConnection("not allowed here")
