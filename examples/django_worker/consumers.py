"""The example's WebSocket consumer: a chat room, one Redis group.

It keeps no state of its own between messages (its group membership lives in
Redis), so a socket survives a restart of the worker running it: the new
worker runs ``connect`` again, which joins the group again.
"""

from __future__ import annotations

import json
import os

from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "lobby"


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        text = (text_data or "")[:1000]
        await self.channel_layer.group_send(
            GROUP, {"type": "chat.message", "text": text, "worker": os.getpid()}
        )

    async def chat_message(self, event: dict) -> None:
        await self.send(
            text_data=json.dumps({"text": event["text"], "worker": event["worker"]})
        )
