"""What the ASGI v1 workers of the channel-layer sections answer.

Shared by the worker threads of :mod:`layer_app` (in-memory layer, in the
server's process) and the worker processes of :mod:`v1_worker` (Daphne
1.4.2's Redis row), so every channel-layer row serves what ``app.py`` serves:

- ``http.request``: ``GET /`` (or HEAD) answers ``Hello, world!`` as
  text/plain with a Content-Length, anything else a 404;
- ``websocket.connect``: accepted;
- ``websocket.receive``: echoed as it came (text as text, bytes as bytes);
- ``websocket.disconnect`` and ``http.disconnect``: dropped (the latter is
  consumed only so that the one the server sends after every request does
  not sit in the layer at capacity).

A reply that finds its channel full is retried for up to
:data:`REPLY_PATIENCE` seconds, then dropped (and counted on stderr).

Standard library only; works on any ASGI v1 layer object.
"""

import sys
import threading
import time

#: the channels a worker consumes
CHANNELS = [
    "http.request",
    "http.disconnect",
    "websocket.connect",
    "websocket.receive",
    "websocket.disconnect",
]
REPLY_PATIENCE = 2.0  # seconds a reply is retried while its channel is full
RETRY_SLEEP = 0.001


def text_response(status, body):
    """An ASGI v1 HTTP reply: text/plain with a Content-Length."""
    return {
        "status": status,
        "headers": [
            [b"content-type", b"text/plain"],
            [b"content-length", str(len(body)).encode("ascii")],
        ],
        "content": body,
    }


HELLO = text_response(200, b"Hello, world!")
NOT_FOUND = text_response(404, b"Not found")
ACCEPT = {"accept": True}

dropped_replies = 0
_dropped_lock = threading.Lock()


def reply(layer, channel, message):
    """Send ``message`` to ``channel``, retrying while it is full."""
    global dropped_replies
    deadline = None
    while True:
        try:
            layer.send(channel, message)
            return
        except layer.ChannelFull:
            now = time.monotonic()
            if deadline is None:
                deadline = now + REPLY_PATIENCE
            elif now >= deadline:
                with _dropped_lock:
                    dropped_replies += 1
                    count = dropped_replies
                print(
                    f"v1 worker: reply channel {channel} full for "
                    f"{REPLY_PATIENCE:g} s, reply dropped ({count} so far)",
                    file=sys.stderr,
                    flush=True,
                )
                return
            time.sleep(RETRY_SLEEP)


def handle(layer, channel, message):
    """Answer one message received on ``channel``."""
    if channel == "http.request":
        if message.get("method") in ("GET", "HEAD") and message.get("path") == "/":
            answer = HELLO
        else:
            answer = NOT_FOUND
        reply(layer, message["reply_channel"], answer)
    elif channel == "websocket.receive":
        text = message.get("text")
        answer = {"text": text} if text is not None else {"bytes": message["bytes"]}
        reply(layer, message["reply_channel"], answer)
    elif channel == "websocket.connect":
        reply(layer, message["reply_channel"], ACCEPT)
    # http.disconnect, websocket.disconnect: nothing to do
