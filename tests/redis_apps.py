"""An asgi_redis deployment in miniature, for tests/test_asgi_redis.py.

daphne serves ``tests.redis_apps:channel_layer``; the workers run in another
process, started as ``python -m tests.redis_apps``, with a layer of their own
on the same Redis (``$DAPHNE_TEST_REDIS_PORT`` on 127.0.0.1). The workers
answer ``http.request`` with a line naming the request (``/slow`` after a
second), accept every WebSocket and echo what it sends.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from daphne.layers import CHANNELS as WELL_KNOWN
from daphne.layers.asgi_redis import RedisChannelLayer

PORT = int(os.environ.get("DAPHNE_TEST_REDIS_PORT", "6379"))
#: (Apart from the conformance tests' keys, which they flush.)
PREFIX = "daphne-e2e:"

channel_layer = RedisChannelLayer(hosts=[("127.0.0.1", PORT)], prefix=PREFIX)

CHANNELS = list(WELL_KNOWN)


def handle(layer: RedisChannelLayer, channel: str, message: dict) -> None:
    reply = message["reply_channel"]
    if channel == "http.request":
        if message["path"] == "/slow":
            time.sleep(1)
        body = "{} {} {} pid={}".format(
            message["method"],
            message["path"],
            message["query_string"].decode(),
            os.getpid(),
        )
        layer.send(
            reply,
            {
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
                "content": body.encode(),
            },
        )
    elif channel == "websocket.connect":
        layer.send(reply, {"accept": True})
    elif channel == "websocket.receive":
        if message.get("text") is not None:
            layer.send(reply, {"text": message["text"]})
        else:
            layer.send(reply, {"bytes": message["bytes"]})


def work(layer: RedisChannelLayer) -> None:
    while True:
        channel, message = layer.receive(CHANNELS, block=True)
        if channel is None:
            continue
        try:
            handle(layer, channel, message)
        except Exception as exc:  # a worker outlives a bad message
            print(f"worker error on {channel}: {exc!r}", flush=True)


def main(threads: int = 4) -> None:
    # One layer per thread, as separate worker processes would have.
    for _ in range(threads):
        layer = RedisChannelLayer(hosts=[("127.0.0.1", PORT)], prefix=PREFIX)
        threading.Thread(target=work, args=(layer,), daemon=True).start()
    print("workers ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)


if __name__ == "__main__":
    main()
