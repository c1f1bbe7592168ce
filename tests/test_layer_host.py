"""LayerHost in memory: translation, reply readers and target detection.

A recording sink stands in for the protocol objects and a ``Clock`` for the
reactor, so reader delays and retries are checked exactly. The same paths
over real sockets are in ``test_layer_mode.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from channels.layers import InMemoryChannelLayer as AsyncInMemoryLayer
from twisted.internet import defer
from twisted.internet.task import Clock

from daphne.config import Config
from daphne.hosts.detect import TargetError, detect_interface
from daphne.hosts.layer import (
    InvalidReply,
    LayerHost,
    PollingReader,
    TwistedReader,
    layer_config,
)
from daphne.layers import InMemoryChannelLayer, memory


class RecordingSink:
    """Records what the host asks of the protocol side."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.finished: list[BaseException | None] = []
        self.receive_requests = 0

    def handle_reply(self, event: dict) -> bool:
        self.events.append(event)
        return True

    def receive_requested(self) -> None:
        self.receive_requests += 1

    def resume_reading(self) -> None:
        pass

    def application_finished(self, exc: BaseException | None) -> None:
        self.finished.append(exc)


def http_scope(path: str = "/") -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"a=1",
        "root_path": "",
        "headers": [(b"host", b"example")],
        "client": ["127.0.0.1", 1234],
        "server": ["127.0.0.1", 8000],
    }


def ws_scope(subprotocols: list[str] | None = None) -> dict:
    scope = http_scope("/ws")
    del scope["method"]
    scope["type"] = "websocket"
    scope["subprotocols"] = subprotocols or []
    return scope


def make_host(layer=None, **config) -> tuple[LayerHost, Clock, InMemoryChannelLayer]:
    layer = layer or InMemoryChannelLayer()
    clock = Clock()
    return LayerHost(layer, Config(**config), clock), clock, layer


def request(host: LayerHost, sink: RecordingSink, path: str = "/"):
    instance = host.start(http_scope(path), sink)
    instance.put({"type": "http.request", "body": b"x", "more_body": True})
    instance.put({"type": "http.request", "body": b"y", "more_body": False})
    return instance


# -- target detection ---------------------------------------------------------------


async def asgi3_app(scope, receive, send):
    pass


class ASGI2App:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        pass


class CallableLayer(InMemoryChannelLayer):
    def __call__(self, scope):
        pass


def test_detect_interface_by_shape():
    assert detect_interface(InMemoryChannelLayer()) == "channel-layer"
    assert detect_interface(AsyncInMemoryLayer()) == "channel-layer"
    assert detect_interface(asgi3_app) == "asgi3"
    assert detect_interface(ASGI2App) == "asgi2"


@pytest.mark.parametrize(
    "target, interface, message",
    [
        ("a string", "auto", "neither an ASGI application"),
        (InMemoryChannelLayer(), "asgi3", "not an ASGI application"),
        (asgi3_app, "channel-layer", "not a channel layer"),
        (CallableLayer(), "auto", "choose with --interface"),
    ],
)
def test_detect_interface_refuses(target, interface, message):
    with pytest.raises(TargetError, match=message):
        detect_interface(target, interface)


def test_detect_interface_can_be_forced():
    assert detect_interface(CallableLayer(), "channel-layer") == "channel-layer"
    assert detect_interface(CallableLayer(), "asgi2") == "asgi2"
    assert detect_interface(asgi3_app, "asgi2") == "asgi2"


def test_layer_defaults():
    layer = InMemoryChannelLayer(group_expiry=300)
    config = layer_config(Config(), layer, set())
    assert (config.http_timeout, config.websocket_timeout) == (120.0, 300.0)
    explicit = layer_config(
        Config(http_timeout=5, websocket_timeout=9),
        layer,
        {"http_timeout", "websocket_timeout"},
    )
    assert (explicit.http_timeout, explicit.websocket_timeout) == (5, 9)
    assert layer_config(Config(), object(), set()).websocket_timeout == 86400.0


# -- HTTP translation ---------------------------------------------------------------


def test_http_request_message_and_reply():
    host, clock, layer = make_host(force_sync=True)
    sink = RecordingSink()
    instance = request(host, sink, "/p")
    assert sink.receive_requests == 1  # (a client waiting for 100 Continue)
    channel, message = layer.receive(["http.request"])
    assert message == {
        "type": "http.request",
        "reply_channel": instance.channel,
        "http_version": "1.1",
        "method": "GET",
        "path": "/p",
        "root_path": "",
        "scheme": "http",
        "query_string": b"a=1",
        "headers": [(b"host", b"example")],
        "body": b"xy",
        "client": ["127.0.0.1", 1234],
        "server": ["127.0.0.1", 8000],
    }
    layer.send(
        message["reply_channel"],
        {"status": 201, "headers": [("x-a", "b")], "content": b"hi"},
    )
    clock.advance(0)
    assert sink.events == [
        {"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"b")]},
        {"type": "http.response.body", "body": b"hi", "more_body": False},
    ]
    assert sink.finished == [None]
    assert instance.channel not in host.instances
    instance.put({"type": "http.disconnect"})
    assert layer.receive(["http.disconnect"]) == (
        "http.disconnect",
        {"type": "http.disconnect", "reply_channel": instance.channel, "path": "/p"},
    )


def test_messages_share_no_list_with_the_scope():
    """The in-memory layer takes daphne's messages without copying them: a
    worker that changes one must not change the connection's scope."""
    host, _, layer = make_host(force_sync=True)
    assert host.send_owned is not None
    scope = http_scope()
    host.start(scope, RecordingSink()).put({"type": "http.request", "body": b""})
    _, message = layer.receive(["http.request"])
    for key in ("headers", "client", "server"):
        assert message[key] == scope[key] and message[key] is not scope[key]
    ws = ws_scope()
    host.start(ws, RecordingSink()).put({"type": "websocket.connect"})
    _, message = layer.receive(["websocket.connect"])
    for key in ("headers", "client", "server"):
        assert message[key] == ws[key] and message[key] is not ws[key]


class LoggingLayer(InMemoryChannelLayer):
    """Overrides send and receive_twisted, not their shortcuts."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.waits = 0

    def send(self, channel: str, message: dict) -> None:
        self.sent.append(channel)
        super().send(channel, message)

    def receive_twisted(self, channels):
        self.waits += 1
        return super().receive_twisted(channels)


def test_a_layer_overriding_send_or_receive_sees_every_message(monkeypatch):
    """daphne's shortcuts (send_owned, receive_batch) are used only where
    they cannot bypass a subclass's own send or receive_twisted."""
    clock = Clock()
    monkeypatch.setattr(memory, "_twisted_modules", (defer, FakeReactor(clock)))
    layer = LoggingLayer()
    host = LayerHost(layer, Config(), clock)
    assert host.send_owned is None
    assert host.reader.receive_batch is None
    host.reader.read()
    sink = RecordingSink()
    instance = request(host, sink)
    assert layer.sent == ["http.request"]
    layer.send(instance.channel, {"status": 200})
    clock.advance(0)
    assert sink.events[0]["status"] == 200
    assert layer.waits == 2  # (one receive_twisted per reply, and the next)
    host.reader.stop()


def test_http_reply_without_status_is_an_error(caplog):
    host, clock, layer = make_host(force_sync=True)
    sink = RecordingSink()
    instance = request(host, sink)
    layer.send(instance.channel, {"content": b"no status"})
    with caplog.at_level(logging.ERROR):
        clock.advance(0)
    assert sink.events == []
    assert len(sink.finished) == 1 and isinstance(sink.finished[0], InvalidReply)
    assert "must have a status" in caplog.text


@pytest.mark.parametrize(
    "reply, complaint",
    [
        (["not", "a", "dict"], "must be a dict"),
        ({"status": 200, "headers": 5}, "Invalid reply headers"),
        ({"status": 200, "headers": [("x-only-a-name",)]}, "Invalid reply headers"),
        ({"status": 200, "headers": [("x-a", "\u20ac")]}, "Invalid reply headers"),
    ],
)
def test_malformed_http_replies_end_the_request_as_an_error(caplog, reply, complaint):
    host, clock, layer = make_host(force_sync=True)
    sink = RecordingSink()
    instance = request(host, sink)
    layer.receive(["http.request"])
    with caplog.at_level(logging.ERROR):
        # (Straight to the reader's dispatch: another layer could deliver
        # what the in-memory layer refuses to carry.)
        host.dispatch(instance.channel, reply)
    assert sink.events == []
    assert len(sink.finished) == 1 and isinstance(sink.finished[0], InvalidReply)
    assert complaint in caplog.text
    # The workers still hear that the request is over.
    assert layer.receive(["http.disconnect"])[1]["reply_channel"] == instance.channel


def test_http_channel_full_answers_503():
    host, clock, layer = make_host(
        InMemoryChannelLayer(channel_capacity={"http.request": 1}), force_sync=True
    )
    first, second = RecordingSink(), RecordingSink()
    request(host, first)
    instance = request(host, second)
    assert second.events == []  # (answered from a fresh call stack)
    clock.advance(0)
    start, body = second.events
    assert start["status"] == 503
    assert b"Request queue full." in body["body"]
    assert second.finished == [None]
    instance.put({"type": "http.disconnect"})
    assert layer.receive(["http.disconnect"]) == (None, None)  # never heard of it


# -- WebSocket translation ------------------------------------------------------------


def websocket(host, sink, subprotocols=None):
    instance = host.start(ws_scope(subprotocols), sink)
    instance.put({"type": "websocket.connect"})
    return instance


def test_websocket_messages_count_order():
    host, clock, layer = make_host(force_sync=True)
    sink = RecordingSink()
    instance = websocket(host, sink)
    assert layer.receive(["websocket.connect"])[1]["order"] == 0
    instance.put({"type": "websocket.receive", "text": "a"})
    instance.put({"type": "websocket.receive", "bytes": b"b"})
    instance.put({"type": "websocket.disconnect", "code": 1001})
    received = [layer.receive(["websocket.receive"])[1] for _ in range(2)]
    assert [(m["order"], m.get("text"), m.get("bytes")) for m in received] == [
        (1, "a", None),
        (2, None, b"b"),
    ]
    _, disconnect = layer.receive(["websocket.disconnect"])
    assert disconnect == {
        "type": "websocket.disconnect",
        "reply_channel": instance.channel,
        "code": 1001,
        "path": "/ws",
        "order": 3,
    }
    clock.advance(0)
    assert sink.finished == [None]


@pytest.mark.parametrize(
    "replies, expected",
    [
        ([{"accept": False}], [{"type": "websocket.close"}]),
        # (Before an accept, any websocket.close refuses the handshake: 403.)
        ([{"close": True}], [{"type": "websocket.close", "code": 1000}]),
        (
            [{"text": ""}],
            [
                {"type": "websocket.accept", "subprotocol": "chat"},
                {"type": "websocket.send", "text": ""},
            ],
        ),
        (
            [{"accept": True}, {"bytes": b"", "close": 4321}],
            [
                {"type": "websocket.accept", "subprotocol": "chat"},
                {"type": "websocket.send", "bytes": b""},
                {"type": "websocket.close", "code": 4321},
            ],
        ),
        (
            [{"accept": True}, {"text": "a", "bytes": b"b"}],
            [
                {"type": "websocket.accept", "subprotocol": "chat"},
                {"type": "websocket.close", "code": 1011},
            ],
        ),
    ],
)
def test_websocket_replies(replies, expected):
    host, clock, layer = make_host(force_sync=True, ws_protocols=("chat", "other"))
    sink = RecordingSink()
    instance = websocket(host, sink, ["superchat", "chat"])
    for reply in replies:
        layer.send(instance.channel, reply)
    clock.advance(0)
    assert sink.events == expected
    assert sink.finished == []  # (it ends with its disconnect)


@pytest.mark.parametrize("close", ["soon", 1000.0, [1000]])
def test_websocket_close_value_must_be_true_or_a_code(close):
    host, clock, layer = make_host(force_sync=True)
    sink = RecordingSink()
    instance = websocket(host, sink)
    layer.send(instance.channel, {"accept": True})
    layer.send(instance.channel, {"close": close})
    clock.advance(0)
    assert sink.events == [
        {"type": "websocket.accept", "subprotocol": None},
        {"type": "websocket.close", "code": 1011},
    ]


def test_websocket_receive_channel_full_closes_1013_and_mutes():
    host, clock, layer = make_host(
        InMemoryChannelLayer(channel_capacity={"websocket.receive": 1}),
        force_sync=True,
    )
    sink = RecordingSink()
    instance = websocket(host, sink)
    layer.send(instance.channel, {"accept": True})
    clock.advance(0)
    instance.put({"type": "websocket.receive", "text": "1"})
    instance.put({"type": "websocket.receive", "text": "2"})
    clock.advance(0)
    assert sink.events[-1] == {"type": "websocket.close", "code": 1013}
    instance.put({"type": "websocket.receive", "text": "3"})
    instance.put({"type": "websocket.disconnect", "code": 1000})
    assert layer.receive(["websocket.receive"])[1]["text"] == "1"
    assert layer.receive(["websocket.receive", "websocket.disconnect"]) == (None, None)


# -- the polling reader ---------------------------------------------------------------


def test_polling_reader_backs_off_while_idle_and_stops_without_connections():
    host, clock, layer = make_host(force_sync=True)
    reader = host.reader
    assert isinstance(reader, PollingReader)
    instance = request(host, RecordingSink())
    delays = []
    for _ in range(8):
        (call,) = clock.getDelayedCalls()
        delays.append(round(call.getTime() - clock.seconds(), 4))
        clock.advance(call.getTime() - clock.seconds())
    assert delays == [0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05]
    # A message to the workers brings the next poll forward.
    instance.put({"type": "http.disconnect"})
    clock.advance(0)  # (the instance's end)
    assert host.instances == {}
    clock.advance(1)
    assert clock.getDelayedCalls() == []  # nothing awaited: no polling


def test_polling_reader_polls_soon_after_a_send():
    host, clock, layer = make_host(force_sync=True)
    sink = RecordingSink()
    host.start(http_scope(), sink)
    clock.advance(0)
    for _ in range(6):
        clock.advance(clock.getDelayedCalls()[0].getTime() - clock.seconds())
    assert host.reader.delay == 0.05
    instance = host.start(http_scope(), RecordingSink())
    instance.put({"type": "http.request", "body": b"", "more_body": False})
    (call,) = clock.getDelayedCalls()
    assert call.getTime() - clock.seconds() == pytest.approx(0.001)


class FailingLayer(InMemoryChannelLayer):
    extensions = ["groups", "flush"]
    failing = True

    def receive(self, channels, block=False):
        if self.failing:
            raise ConnectionError("backend gone")
        return super().receive(channels, block)


def test_reader_retries_with_backoff_and_recovers(caplog):
    host, clock, layer = make_host(FailingLayer())
    sink = RecordingSink()
    instance = request(host, sink)
    with caplog.at_level(logging.DEBUG, logger="daphne.hosts.layer"):
        delays = []
        for _ in range(8):
            (call,) = clock.getDelayedCalls()
            delays.append(round(call.getTime() - clock.seconds(), 3))
            clock.advance(call.getTime() - clock.seconds())
        layer.failing = False
        layer.send(instance.channel, {"status": 200})
        clock.advance(2)
    assert delays == [0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "backend gone" in errors[0].getMessage()
    assert "Receiving from the channel layer again" in caplog.text
    assert sink.events[0]["status"] == 200


def test_in_memory_layer_gets_the_twisted_reader():
    host, _, _ = make_host()
    assert isinstance(host.reader, TwistedReader)
    host, _, _ = make_host(force_sync=True)
    assert isinstance(host.reader, PollingReader)


# -- an asyncio layer (Channels 4 style) ------------------------------------------------


def test_asyncio_layer_round_trip():
    async def scenario():
        layer = AsyncInMemoryLayer()
        host = LayerHost(layer, Config(), Clock(), loop=asyncio.get_running_loop())
        await host.start_reading()
        assert "!" in host.prefix
        sink = RecordingSink()
        instance = request(host, sink, "/async")
        message = await asyncio.wait_for(layer.receive("http.request"), 2)
        assert message["body"] == b"xy" and message["reply_channel"] == instance.channel
        await layer.send(message["reply_channel"], {"status": 204})
        for _ in range(100):
            if sink.finished:
                break
            await asyncio.sleep(0.01)
        assert sink.events[0]["status"] == 204
        assert sink.finished == [None]
        host.reader.stop()

    asyncio.run(scenario())


# -- found in review: reader failures, full channels, detection edge cases ----------


def run_async(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), 5))


async def turns(count: int = 10) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_channels4_channel_full_on_websocket_receive_closes_1013(caplog):
    async def scenario():
        layer = AsyncInMemoryLayer(capacity=1)
        clock = Clock()
        host = LayerHost(layer, Config(), clock, loop=asyncio.get_running_loop())
        await host.start_reading()
        sink = RecordingSink()
        instance = websocket(host, sink)
        await turns()
        await layer.receive("websocket.connect")
        await layer.send(instance.channel, {"accept": True})
        await turns()
        instance.put({"type": "websocket.receive", "text": "1"})
        instance.put({"type": "websocket.receive", "text": "2"})  # full
        await turns()
        host.reader.stop()
        return sink.events

    with caplog.at_level(logging.CRITICAL):
        events = run_async(scenario)
    assert events[-1] == {"type": "websocket.close", "code": 1013}


def test_channels4_channel_full_on_http_request_says_queue_full(caplog):
    async def scenario():
        layer = AsyncInMemoryLayer(capacity=1)
        clock = Clock()
        host = LayerHost(layer, Config(), clock, loop=asyncio.get_running_loop())
        await host.start_reading()
        first, second = RecordingSink(), RecordingSink()
        for sink in (first, second):
            instance = host.start(http_scope(), sink)
            instance.put({"type": "http.request", "body": b"", "more_body": False})
        await turns()
        host.reader.stop()
        return second.events

    with caplog.at_level(logging.CRITICAL):
        start, body = run_async(scenario)
    assert start["status"] == 503
    assert b"Request queue full." in body["body"]


class FakeReactor:
    """The global reactor as receive_twisted sees it, driven by a Clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def callFromThread(self, f, *args) -> None:
        self.clock.callLater(0, f, *args)


def twisted_host(monkeypatch) -> tuple[LayerHost, Clock, InMemoryChannelLayer]:
    clock = Clock()
    monkeypatch.setattr(memory, "_twisted_modules", (defer, FakeReactor(clock)))
    layer = InMemoryChannelLayer()
    host = LayerHost(layer, Config(), clock)
    assert isinstance(host.reader, TwistedReader)
    return host, clock, layer


def fail_first_dispatch(host: LayerHost) -> None:
    dispatch = host.dispatch
    calls = []

    def failing(channel, message):
        calls.append(channel)
        if len(calls) == 1:
            raise RuntimeError("a bug somewhere below dispatch")
        dispatch(channel, message)

    host.dispatch = failing


def test_twisted_reader_survives_an_exception_in_dispatch(monkeypatch):
    host, clock, layer = twisted_host(monkeypatch)
    host.reader.read()
    first, second = RecordingSink(), RecordingSink()
    one, two = request(host, first), request(host, second)
    fail_first_dispatch(host)
    layer.send(one.channel, {"status": 200})
    clock.advance(0)  # (the error goes into the Deferred, not out of here)
    layer.send(two.channel, {"status": 204})
    clock.advance(0)
    clock.advance(1)
    assert [e.get("status") for e in second.events][:1] == [204]


def test_twisted_reader_delivers_queued_and_later_replies(monkeypatch):
    host, clock, layer = twisted_host(monkeypatch)
    sinks = [RecordingSink() for _ in range(3)]
    instances = [request(host, sink) for sink in sinks]
    layer.send(instances[0].channel, {"status": 200})
    layer.send(instances[1].channel, {"status": 201})
    host.reader.read()  # (two replies already queued: no recursion per reply)
    layer.send(instances[2].channel, {"status": 202})
    clock.advance(0)
    assert [s.events[0]["status"] for s in sinks] == [200, 201, 202]
    assert host.instances == {}
    host.reader.stop()


def test_twisted_reader_drains_queued_replies_in_batches(monkeypatch, caplog):
    """Replies already queued are dispatched a batch per reactor turn, without
    a Deferred each; one that cannot be dispatched does not stop the rest."""
    host, clock, layer = twisted_host(monkeypatch)
    batch = host.reader.BATCH
    assert host.reader.receive_batch is not None
    sinks = [RecordingSink() for _ in range(batch + 2)]
    instances = [request(host, sink) for sink in sinks]
    for n, instance in enumerate(instances):
        layer.send(instance.channel, {"status": 200 + n})
    fail_first_dispatch(host)
    with caplog.at_level(logging.CRITICAL):
        host.reader.read()
    assert [bool(sink.events) for sink in sinks] == [False] + [True] * (batch - 1) + [
        False
    ] * 2
    clock.advance(0)  # (the next turn: the rest)
    assert all(sink.events for sink in sinks[1:])
    layer.send(instances[0].channel, {"status": 299})  # (the reader waits again)
    clock.advance(0)
    assert sinks[0].events[0]["status"] == 299
    assert host.instances == {}
    host.reader.stop()


def test_polling_reader_survives_an_exception_in_dispatch(caplog):
    clock = Clock()
    layer = InMemoryChannelLayer()
    host = LayerHost(layer, Config(force_sync=True), clock)
    assert isinstance(host.reader, PollingReader)
    first, second = RecordingSink(), RecordingSink()
    one, two = request(host, first), request(host, second)
    fail_first_dispatch(host)
    layer.send(one.channel, {"status": 200})
    with caplog.at_level(logging.CRITICAL):
        clock.advance(0)
    layer.send(two.channel, {"status": 204})
    for _ in range(10):
        clock.advance(0.1)
    assert second.events[0]["status"] == 204


def test_asyncio_reader_cancels_receives_of_finished_connections():
    async def scenario():
        layer = AsyncInMemoryLayer()
        clock = Clock()
        host = LayerHost(layer, Config(), clock, loop=asyncio.get_running_loop())
        await host.start_reading()
        done, gone = RecordingSink(), RecordingSink()
        answered = request(host, done)
        left = request(host, gone)
        await turns()
        await layer.send(answered.channel, {"status": 200})
        left.put({"type": "http.disconnect"})
        await turns()
        await layer.send(left.channel, {"status": 200})  # (after the client left)
        await turns()
        clock.advance(0)
        tasks = dict(host.reader.tasks)
        requests = [await layer.receive("http.request") for _ in range(2)]
        disconnect = await layer.receive("http.disconnect")
        host.reader.stop()
        return done, gone, host, tasks, requests, (disconnect, left.channel)

    done, gone, host, tasks, requests, (disconnect, left) = run_async(scenario)
    assert done.events[0]["status"] == 200 and done.finished == [None]
    assert gone.events == [] and gone.finished == [None]
    assert host.instances == {} and tasks == {}
    assert [m["path"] for m in requests] == ["/", "/"]
    assert disconnect == {
        "type": "http.disconnect",
        "reply_channel": left,
        "path": "/",
    }


def test_no_frame_is_sent_after_a_refused_frame(caplog):
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    clock = Clock()
    host = LayerHost(layer, Config(force_sync=True), clock)
    sink = RecordingSink()
    instance = websocket(host, sink)
    layer.send(instance.channel, {"accept": True})
    clock.advance(0)
    instance.put({"type": "websocket.receive", "text": "1"})
    instance.put({"type": "websocket.receive", "text": "2"})  # refused: full
    assert layer.receive(["websocket.receive"])[1]["order"] == 1  # a worker
    # The same TCP read (autobahn unframes it all at once):
    instance.put({"type": "websocket.receive", "text": "3"})
    with caplog.at_level(logging.CRITICAL):
        clock.advance(0)
    assert sink.events[-1] == {"type": "websocket.close", "code": 1013}
    assert layer.receive(["websocket.receive"]) == (None, None)


def test_send_from_a_busy_event_loop_wakes_the_receiver_at_once():
    layer = InMemoryChannelLayer(blocking_timeout=3)
    got: list[float] = []

    def receive() -> None:  # (daphne's reader, or any blocked receiver)
        start = time.monotonic()
        if layer.receive(["daphne.response.abc!"], block=True)[0] is not None:
            got.append(time.monotonic() - start)

    receiver = threading.Thread(target=receive)
    receiver.start()
    while "daphne.response.abc!" not in layer._waiters:
        time.sleep(0.001)
    release = threading.Event()

    def worker() -> None:
        async def main() -> None:
            # A worker with an event loop of its own replies with the sync
            # API, then carries on without yielding to its loop (a blocking
            # receive for the next request, CPU work ...).
            layer.send("daphne.response.abc!xyz", {"status": 200})
            release.wait(2)

        asyncio.run(main())

    thread = threading.Thread(target=worker)
    thread.start()
    receiver.join(0.5)
    woken = bool(got)
    release.set()
    thread.join()
    receiver.join()
    assert woken, got


def test_a_layer_class_is_not_taken_for_a_layer():
    with pytest.raises(TargetError, match="class"):
        detect_interface(InMemoryChannelLayer, "channel-layer")


def test_detect_interface_edge_cases():
    class SyncLayerLike:
        def send(self, channel, message): ...
        def receive(self, channels, block=False): ...
        def new_channel(self, pattern): ...

    assert detect_interface(SyncLayerLike()) == "channel-layer"
    with pytest.raises(TargetError):
        detect_interface(SyncLayerLike(), "asgi3")

    class Half:
        def send(self, channel, message): ...

    with pytest.raises(TargetError, match="neither"):
        detect_interface(Half())
    with pytest.raises(TargetError, match="not a channel layer"):
        detect_interface(Half(), "channel-layer")
