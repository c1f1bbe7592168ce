"""A Channels 4 worker, as ``manage.py runworker http.request`` runs one.

A ``ChannelNameRouter`` sends each message on ``http.request`` to a
consumer method chosen by the message's ``type`` (``http_request``): the
key daphne adds to every v1 message for exactly this. Run as
``python -m tests.channels_redis_runworker``, with the layer of
:mod:`tests.channels_redis_apps`.
"""

from __future__ import annotations

from channels.consumer import AsyncConsumer
from channels.routing import ChannelNameRouter
from channels.worker import Worker

from tests.channels_redis_apps import channel_layer


class HTTPRequestConsumer(AsyncConsumer):
    async def http_request(self, message: dict) -> None:
        await self.channel_layer.send(
            message["reply_channel"],
            {
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
                "content": f"runworker {message['path']}".encode(),
            },
        )


application = ChannelNameRouter({"http.request": HTTPRequestConsumer.as_asgi()})

if __name__ == "__main__":
    print("runworker ready", flush=True)
    Worker(application, ["http.request"], channel_layer).run()
