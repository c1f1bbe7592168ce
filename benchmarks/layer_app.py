"""The channel layer served in the benchmark's "channel layer mode" sections.

Channel-layer servers (the original Daphne 1.4.2, and daphne's own
channel-layer mode) are started as ``daphne ... layer_app:channel_layer``
with ``benchmarks/`` as their working directory. Importing this module:

* creates an in-memory ASGI v1 channel layer with a capacity of 100 messages
  per channel (``BENCH_LAYER_CAPACITY``), exposed as :data:`channel_layer`:
  daphne's own ``daphne.layers.InMemoryChannelLayer`` where it exists,
  otherwise asgiref 1.1's ``asgiref.inmemory.ChannelLayer`` (Daphne 1.4.2's
  virtualenv);
* starts ``BENCH_LAYER_WORKERS`` (default 2) daemon worker threads, in the
  server's own process (an in-memory layer cannot be shared across
  processes), that serve what ``app.py`` serves, ASGI v1 style:

  - ``http.request``: ``GET /`` (or HEAD) answers ``Hello, world!`` as
    text/plain with a Content-Length, anything else a 404;
  - ``websocket.connect``: accepted;
  - ``websocket.receive``: echoed as it came (text as text, bytes as bytes);
  - ``websocket.disconnect`` and ``http.disconnect``: dropped. The latter is
    consumed only so that it does not sit in the layer at capacity (the
    server sends one after every request), which would make every request
    raise and swallow a ChannelFull in the server.

A reply that finds the reply channel full is retried for up to
``REPLY_PATIENCE`` seconds, then dropped (and counted on stderr).

About ``block=True``: asgiref 1.1.2's in-memory ``receive`` ignores ``block``
and always returns at once, ``(None, None)`` when nothing is queued. So after
an empty receive a worker sleeps, starting at 0.5 ms and doubling up to 5 ms
while nothing comes, instead of spinning on the CPU it shares with the server
(the server itself polls its reply channel every 50 ms when idle). A layer
whose ``receive(..., block=True)`` really blocks simply never gets there.

Standard library plus the layer's package; no Django, no Channels.
"""

import os
import sys
import threading
import time

try:  # daphne's own layer (in daphne's virtualenv)
    from daphne.layers import InMemoryChannelLayer as LayerClass
except ImportError:
    try:  # the original, in Daphne 1.4.2's virtualenv
        from asgiref.inmemory import ChannelLayer as LayerClass
    except ImportError as exc:
        raise ImportError(
            "layer_app needs daphne.layers.InMemoryChannelLayer or asgiref 1.1's "
            "asgiref.inmemory.ChannelLayer (pip install 'asgiref==1.1.2')"
        ) from exc

CAPACITY = int(os.environ.get("BENCH_LAYER_CAPACITY", "100"))
WORKERS = int(os.environ.get("BENCH_LAYER_WORKERS", "2"))

#: the channels the workers consume
CHANNELS = [
    "http.request",
    "http.disconnect",
    "websocket.connect",
    "websocket.receive",
    "websocket.disconnect",
]
IDLE_MIN = 0.0005  # seconds slept after the first empty receive
IDLE_MAX = 0.005  # ... doubling up to this while nothing comes
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

channel_layer = LayerClass(capacity=CAPACITY)

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
                    f"layer_app: reply channel {channel} full for "
                    f"{REPLY_PATIENCE:g} s, reply dropped ({count} so far)",
                    file=sys.stderr,
                    flush=True,
                )
                return
            time.sleep(RETRY_SLEEP)


def handle(layer, channel, message):
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


def work(layer):
    """One worker thread: receive, answer, and back off while idle."""
    idle = IDLE_MIN
    while True:
        try:
            channel, message = layer.receive(CHANNELS, block=True)
            if channel is None:
                time.sleep(idle)
                idle = min(idle * 2, IDLE_MAX)
                continue
            idle = IDLE_MIN
            handle(layer, channel, message)
        except Exception as exc:  # keep serving; the log shows what went wrong
            print(f"layer_app: worker error: {exc!r}", file=sys.stderr, flush=True)
            time.sleep(IDLE_MAX)


def start_workers(layer, count):
    threads = []
    for number in range(count):
        thread = threading.Thread(
            target=work, args=(layer,), name=f"layer-worker-{number}", daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads


workers = start_workers(channel_layer, WORKERS)
