"""Channel layers with worker threads, for daphne in channel-layer mode.

Each layer object below is a target for ``daphne tests.layer_apps:<name>``;
importing the module starts the worker threads. Workers record every message
they receive, and ``GET /recorded?channel=<name>`` answers with their
``repr()``s, one per line, so tests can check exact types on the wire side
(``&match=<text>`` keeps only the messages whose ``repr()`` contains it).
``GET /drain?channel=<name>`` empties a channel no worker reads and lists what
was waiting on it. WebSocket connects are routed by the first path segment
(``/reject/<anything>`` rejects), so each test can use a path of its own.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from daphne.layers import CHANNELS, InMemoryChannelLayer

Handler = Callable[[InMemoryChannelLayer, dict], None]


class Recorder:
    """Messages the workers of one layer received, per channel."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, list[dict]] = {}

    def add(self, channel: str, message: dict) -> None:
        with self.lock:
            self.messages.setdefault(channel, []).append(message)

    def dump(self, channel: str, match: str | None = None) -> bytes:
        """The ``repr()``s of the messages on ``channel`` (only those whose
        ``repr()`` contains ``match``, if given), one per line."""
        with self.lock:
            found = [repr(message) for message in self.messages.get(channel, [])]
        return "".join(
            line + "\n" for line in found if match is None or match in line
        ).encode()


def start_workers(
    layer: InMemoryChannelLayer,
    handlers: dict[str, Handler],
    threads: int = 2,
    echo: bool = False,
) -> Recorder:
    """Worker threads that receive on every channel in ``handlers``.

    Two paths are answered for every layer: ``/recorded?channel=C[&match=M]``
    (what the workers received on C) and ``/drain?channel=C`` (takes every
    message waiting on C, a channel no worker reads, and lists them). With
    ``echo``, each message is also written to stdout as ``MESSAGE <channel>
    <repr>`` (for layers whose ``http.request`` nobody answers)."""
    recorder = Recorder()
    channels = list(handlers)

    def work() -> None:
        while True:
            channel, message = layer.receive(channels, block=True)
            if channel is None:
                continue
            recorder.add(channel, message)
            if echo:
                sys.stdout.write(f"MESSAGE {channel} {message!r}\n")
                sys.stdout.flush()
            try:
                if channel == "http.request" and message["path"] == "/recorded":
                    query = parse_qs(message["query_string"].decode())
                    match = query.get("match", [None])[0]
                    reply(layer, message, recorder.dump(query["channel"][0], match))
                elif channel == "http.request" and message["path"] == "/drain":
                    query = parse_qs(message["query_string"].decode())
                    reply(layer, message, drain(layer, query["channel"][0]))
                else:
                    handlers[channel](layer, message)
            except Exception as exc:  # a worker must survive its handlers
                print(f"worker error on {channel}: {exc!r}", flush=True)

    for number in range(threads):
        threading.Thread(target=work, daemon=True, name=f"worker-{number}").start()
    return recorder


def drain(layer: InMemoryChannelLayer, channel: str) -> bytes:
    """Every message waiting on ``channel``, taken off it, as ``repr()`` lines."""
    lines = []
    while True:
        _, message = layer.receive([channel], block=False)
        if message is None:
            return "".join(lines).encode()
        lines.append(repr(message) + "\n")


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
    elif path == "/query":
        reply(layer, message, message["query_string"])
    elif path.startswith("/any/"):
        reply(layer, message, b"any")
    # Anything else ("/no-reply", ...) gets no reply at all.


def websocket_connect(layer, message: dict) -> None:
    # (Routed by the first path segment: "/reject/<anything>" rejects.)
    path = "/" + message["path"].split("/")[1]
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
    elif path == "/accept-close":
        layer.send(channel, {"accept": True, "close": True})
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
    elif text == "unknown":
        layer.send(channel, {"text": "a", "colour": "red"})
    elif text == "bye":
        layer.send(channel, {"text": "bye", "close": 4000})
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

#: (Room for hundreds of concurrent connections.)
channel_layer = InMemoryChannelLayer(capacity=1000)
recorder = start_workers(channel_layer, HANDLERS, threads=4)

#: With no --websocket_timeout, sockets live as long as group memberships: 2 s.
short_expiry_layer = InMemoryChannelLayer(group_expiry=2)
start_workers(short_expiry_layer, HANDLERS)

# -- ChannelFull ------------------------------------------------------------------

#: Nobody takes http.request or websocket.connect: the second one is refused.
#: The disconnects are taken, and written to stdout.
full_layer = InMemoryChannelLayer(capacity=1)
start_workers(
    full_layer,
    {"http.disconnect": ignore, "websocket.disconnect": ignore},
    threads=1,
    echo=True,
)

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
        if channel in CHANNELS and self.broken("send"):
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
