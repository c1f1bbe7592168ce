"""LayerHost and the ``worker_channel`` reply extension, in memory.

A worker that names itself in a reply gets the connection's later messages
on its own channel; a worker that stops answering costs the socket a 1011
after ``http_timeout``; a worker that hands a socket back (``None``) has it
taken over by another through a repeated ``websocket.connect``. A ``Clock``
stands in for the reactor, so the timeout is exact. (Over real sockets and
processes: tests/test_channels_redis.py.)
"""

from __future__ import annotations

from twisted.internet.task import Clock

from daphne.config import Config
from daphne.hosts.layer import LayerHost
from daphne.layers import InMemoryChannelLayer
from tests.test_layer_host import RecordingSink, http_scope, ws_scope

WORKER = "daphne.worker.one"
OTHER = "daphne.worker.two"


def make(timeout: float = 5.0):
    layer = InMemoryChannelLayer()
    clock = Clock()
    host = LayerHost(layer, Config(force_sync=True, http_timeout=timeout), clock)
    return host, clock, layer


def reply(layer, clock, instance, **message) -> None:
    layer.send(instance.channel, message)
    clock.advance(0.06)  # (the polling reader's longest idle delay)


def open_socket(host, clock, layer, sink):
    instance = host.start(ws_scope(), sink)
    instance.put({"type": "websocket.connect"})
    connect = layer.receive(["websocket.connect"])[1]
    assert connect["type"] == "websocket.connect"
    reply(layer, clock, instance, accept=True, worker_channel=WORKER)
    assert sink.events == [{"type": "websocket.accept", "subprotocol": None}]
    return instance


def test_later_messages_go_to_the_worker_that_named_itself():
    host, clock, layer = make()
    sink = RecordingSink()
    instance = open_socket(host, clock, layer, sink)
    instance.put({"type": "websocket.receive", "text": "hi"})
    assert layer.receive(["websocket.receive"]) == (None, None)
    channel, message = layer.receive([WORKER])
    assert channel == WORKER
    assert message["type"] == "websocket.receive"
    assert (message["text"], message["order"]) == ("hi", 1)
    instance.put({"type": "websocket.disconnect", "code": 1000})
    assert layer.receive([WORKER])[1]["type"] == "websocket.disconnect"


def test_an_unanswered_message_closes_1011_after_the_timeout():
    host, clock, layer = make(timeout=5.0)
    sink = RecordingSink()
    instance = open_socket(host, clock, layer, sink)
    instance.put({"type": "websocket.receive", "text": "anyone?"})
    clock.advance(4.9)
    assert sink.events[-1]["type"] == "websocket.accept"
    clock.advance(0.2)
    assert sink.events[-1] == {"type": "websocket.close", "code": 1011}


def test_an_acknowledgement_keeps_the_socket():
    host, clock, layer = make(timeout=5.0)
    sink = RecordingSink()
    instance = open_socket(host, clock, layer, sink)
    instance.put({"type": "websocket.receive", "text": "quiet"})
    clock.advance(3)
    reply(layer, clock, instance, worker_channel=WORKER)  # (acknowledged)
    clock.advance(10)
    assert sink.events == [{"type": "websocket.accept", "subprotocol": None}]
    # The next unanswered one starts the clock again.
    instance.put({"type": "websocket.receive", "text": "again"})
    clock.advance(5.1)
    assert sink.events[-1] == {"type": "websocket.close", "code": 1011}


def test_a_socket_handed_back_is_taken_over_with_its_held_frames():
    host, clock, layer = make()
    sink = RecordingSink()
    instance = open_socket(host, clock, layer, sink)
    instance.put({"type": "websocket.receive", "text": "one"})
    layer.receive([WORKER])
    reply(layer, clock, instance, worker_channel=None)
    # daphne asks for a new owner with the connection's scope again.
    _, connect = layer.receive(["websocket.connect"])
    assert connect["resumed"] is True
    assert (connect["order"], connect["reply_channel"]) == (1, instance.channel)
    # Frames meanwhile wait for the new owner.
    instance.put({"type": "websocket.receive", "text": "two"})
    assert layer.receive([WORKER]) == (None, None)
    assert layer.receive(["websocket.receive"]) == (None, None)
    reply(layer, clock, instance, worker_channel=OTHER)
    channel, held = layer.receive([OTHER])
    assert (channel, held["text"], held["order"]) == (OTHER, "two", 2)
    # The client saw nothing of it.
    assert sink.events == [{"type": "websocket.accept", "subprotocol": None}]


def test_a_socket_nobody_takes_over_closes_1011():
    host, clock, layer = make(timeout=5.0)
    sink = RecordingSink()
    instance = open_socket(host, clock, layer, sink)
    reply(layer, clock, instance, worker_channel=None)
    clock.advance(5.1)
    assert sink.events[-1] == {"type": "websocket.close", "code": 1011}


def test_http_disconnect_goes_to_the_worker_that_answered():
    host, clock, layer = make()
    sink = RecordingSink()
    instance = host.start(http_scope(), sink)
    instance.put({"type": "http.request", "body": b"", "more_body": False})
    assert layer.receive(["http.request"])[1]["type"] == "http.request"
    reply(
        layer,
        clock,
        instance,
        status=200,
        content=b"o",
        more_content=True,
        worker_channel=WORKER,
    )
    assert sink.events[0]["status"] == 200
    instance.put({"type": "http.disconnect"})  # (the client left mid-response)
    channel, message = layer.receive([WORKER])
    assert (channel, message["type"]) == (WORKER, "http.disconnect")
    assert layer.receive(["http.disconnect"]) == (None, None)


def test_a_completed_request_costs_its_worker_no_http_disconnect():
    host, clock, layer = make()
    sink = RecordingSink()
    instance = host.start(http_scope(), sink)
    instance.put({"type": "http.request", "body": b"", "more_body": False})
    layer.receive(["http.request"])
    reply(layer, clock, instance, status=200, content=b"ok", worker_channel=WORKER)
    assert sink.finished == [None]
    instance.put({"type": "http.disconnect"})
    assert layer.receive([WORKER]) == (None, None)
    assert layer.receive(["http.disconnect"]) == (None, None)


def test_over_a_real_exchange_a_completed_request_sends_no_http_disconnect():
    """The exchange reports the end while the last body goes out: the
    http.disconnect must be off by then."""
    from tests.harness import Harness

    harness = Harness("layer", "http1")
    try:
        harness.conn.send(b"GET /done HTTP/1.1\r\nHost: h\r\n\r\n")
        exchange = harness.request()
        exchange.reply(status=200, content=b"done", worker_channel=WORKER)
        assert b"done" in harness.conn.transport.value()
        harness.advance(1)
        assert harness.side.inbox(exchange, "http.disconnect") == []
        assert harness.side.layer.receive([WORKER]) == (None, None)
    finally:
        harness.close()
