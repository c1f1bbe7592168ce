"""Channel layers with worker threads, for daphne in channel-layer mode.

Each layer object below is a target for ``daphne tests.layer_apps:<name>``;
importing the module starts the worker threads. Workers record every message
they receive, and ``GET /recorded?channel=<name>`` answers with their
``repr()``s, one per line, so tests can check exact types on the wire side.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from daphne.layers import InMemoryChannelLayer

Handler = Callable[[InMemoryChannelLayer, dict], None]

ALL_CHANNELS = (
    "http.request",
    "http.disconnect",
    "websocket.connect",
    "websocket.receive",
    "websocket.disconnect",
)


class Recorder:
    """Messages the workers of one layer received, per channel."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, list[dict]] = {}

    def add(self, channel: str, message: dict) -> None:
        with self.lock:
            self.messages.setdefault(channel, []).append(message)

    def dump(self, channel: str) -> bytes:
        with self.lock:
            return "".join(
                repr(message) + "\n" for message in self.messages.get(channel, [])
            ).encode()


def start_workers(
    layer: InMemoryChannelLayer, handlers: dict[str, Handler], threads: int = 2
) -> Recorder:
    """Worker threads that receive on every channel in ``handlers``."""
    recorder = Recorder()
    channels = list(handlers)

    def work() -> None:
        while True:
            channel, message = layer.receive(channels, block=True)
            if channel is None:
                continue
            recorder.add(channel, message)
            if (
                channel == "http.request"
                and message["path"] == "/recorded"
                and b"channel=" in message["query_string"]
            ):
                query = parse_qs(message["query_string"].decode())
                reply(layer, message, recorder.dump(query["channel"][0]))
                continue
            try:
                handlers[channel](layer, message)
            except Exception as exc:  # a worker must survive its handlers
                print(f"worker error on {channel}: {exc!r}", flush=True)

    for number in range(threads):
        threading.Thread(target=work, daemon=True, name=f"worker-{number}").start()
    return recorder


def reply(layer, message: dict, body: bytes, status: int = 200, **extra) -> None:
    layer.send(
        message["reply_channel"],
        {
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
            "content": body,
            **extra,
        },
    )


def ignore(layer, message: dict) -> None:
    pass


# -- the main test layer --------------------------------------------------------


def http_request(layer, message: dict) -> None:
    path = message["path"]
    if path == "/":
        reply(layer, message, b"Hello, world!")
    elif path == "/echo":
        reply(layer, message, message["body"])
    elif path == "/stream":
        channel = message["reply_channel"]
        layer.send(channel, {"status": 201, "content": b"one,", "more_content": True})
        layer.send(channel, {"content": b"two,", "more_content": True})
        layer.send(channel, {"content": b"three"})
    elif path == "/stream-then-stall":
        channel = message["reply_channel"]
        layer.send(channel, {"status": 200, "content": b"start", "more_content": True})
    elif path == "/headers":
        layer.send(
            message["reply_channel"],
            {
                "status": 202,
                "headers": [("x-text-name", b"a"), (b"x-bytes-name", b"b")],
                "content": b"",
            },
        )
    elif path == "/no-status":
        layer.send(message["reply_channel"], {"content": b"oops"})
    elif path == "/second-status":
        channel = message["reply_channel"]
        layer.send(channel, {"status": 200, "content": b"a", "more_content": True})
        layer.send(channel, {"status": 200, "content": b"b"})
    elif path == "/slow":
        time.sleep(float(parse_qs(message["query_string"].decode())["s"][0]))
        reply(layer, message, b"slow")
    elif path == "/json":
        reply(layer, message, json.dumps({"path": path}).encode())
    # Anything else ("/no-reply", ...) gets no reply at all.


def websocket_connect(layer, message: dict) -> None:
    path = message["path"]
    channel = message["reply_channel"]
    if path == "/reject":
        layer.send(channel, {"accept": False})
    elif path == "/close-first":
        layer.send(channel, {"close": True})
    elif path == "/implicit":
        layer.send(channel, {"text": "hello"})
    elif path == "/no-accept":
        pass
    elif path == "/bad-reply":
        layer.send(channel, {"accept": True, "colour": "red"})
    else:
        layer.send(channel, {"accept": True})


def websocket_receive(layer, message: dict) -> None:
    channel = message["reply_channel"]
    text = message.get("text")
    if text == "close":
        layer.send(channel, {"close": True})
    elif text is not None and text.startswith("close "):
        layer.send(channel, {"close": int(text.split()[1])})
    elif text == "empty":
        layer.send(channel, {"text": ""})
        layer.send(channel, {"bytes": b""})
    elif text == "both":
        layer.send(channel, {"text": "a", "bytes": b"b"})
    elif text is not None:
        layer.send(channel, {"text": text})
    else:
        layer.send(channel, {"bytes": message["bytes"]})


HANDLERS: dict[str, Handler] = {
    "http.request": http_request,
    "http.disconnect": ignore,
    "websocket.connect": websocket_connect,
    "websocket.receive": websocket_receive,
    "websocket.disconnect": ignore,
}

channel_layer = InMemoryChannelLayer()
recorder = start_workers(channel_layer, HANDLERS)

# -- ChannelFull ------------------------------------------------------------------

#: Nobody takes http.request or websocket.connect: the second one is refused.
full_layer = InMemoryChannelLayer(capacity=1)
start_workers(full_layer, {"http.disconnect": ignore}, threads=1)

#: Sockets are accepted, but nobody takes websocket.receive (capacity 1).
full_receive_layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
full_receive_recorder = start_workers(
    full_receive_layer,
    {
        "http.request": http_request,
        "websocket.connect": websocket_connect,
        "websocket.disconnect": ignore,
    },
    threads=1,
)


# -- a layer that fails while a flag file exists ------------------------------------


class FlakyLayer(InMemoryChannelLayer):
    """Raises from ``send`` while ``$FLAKY_DIR/send`` exists and from the
    reply reader's receives while ``$FLAKY_DIR/receive`` exists (a backend
    that goes away and comes back)."""

    flag_dir = os.environ.get("FLAKY_DIR", "/nonexistent")

    def broken(self, what: str) -> bool:
        return os.path.exists(os.path.join(self.flag_dir, what))

    def send(self, channel: str, message: dict) -> None:
        if channel in ALL_CHANNELS and self.broken("send"):
            raise ConnectionError("backend gone (send)")
        super().send(channel, message)

    def receive(self, channels, block=False):
        if any(name.startswith("daphne.") for name in channels) and self.broken(
            "receive"
        ):
            raise ConnectionError("backend gone (receive)")
        return super().receive(channels, block)

    extensions = ["groups", "flush"]  # (no Twisted receive: daphne polls)


flaky_layer = FlakyLayer()
start_workers(flaky_layer, HANDLERS)
