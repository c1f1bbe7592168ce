"""Review of channel-layer mode: bugs found (strict xfails) and tricky paths
that work (plain tests, guarding against regressions).

Most tests run in memory: an ``HTTP11Connection`` on a
``StringTransportWithDisconnection`` served by a real ``LayerHost`` and
``InMemoryChannelLayer`` on a ``Clock``; the test plays the worker by
receiving from and sending to the layer. One test uses the real wire (SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import pytest
from channels.layers import InMemoryChannelLayer as AsyncInMemoryLayer
from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure

from daphne.config import Config
from daphne.hosts.detect import TargetError, detect_interface
from daphne.hosts.layer import LayerHost, PollingReader, TwistedReader
from daphne.layers import InMemoryChannelLayer, memory
from daphne.protocols import HTTPFactory
from tests.conftest import run_daphne
from tests.harness import CONTINUE, one_response, parse_responses
from tests.test_layer_host import RecordingSink, http_scope, websocket

GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Server:
    """One client connection to daphne in layer mode, all in memory."""

    def __init__(self, layer=None, **options) -> None:
        self.clock = Clock()
        self.layer = layer or InMemoryChannelLayer()
        options.setdefault("force_sync", True)
        self.config = Config(**options)
        self.host = LayerHost(self.layer, self.config, self.clock)
        self.factory = HTTPFactory(self.config, self.host, self.clock)
        self.conn = self.connect()

    def connect(self):
        protocol = self.factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol

    def send(self, data: bytes, conn=None) -> None:
        (conn or self.conn).dataReceived(data)

    def output(self, conn=None) -> bytes:
        return (conn or self.conn).transport.value()

    def take(self, channel: str):
        """What a worker would receive next on ``channel`` (None if nothing)."""
        return self.layer.receive([channel])[1]

    def take_all(self, channel: str) -> list[dict]:
        messages = []
        while (message := self.take(channel)) is not None:
            messages.append(message)
        return messages

    def reply(self, message: dict, **reply) -> None:
        self.layer.send(message["reply_channel"], reply)

    def run(self, seconds: float = 0.0, turns: int = 3) -> None:
        for _ in range(turns):
            self.clock.advance(seconds / turns)

    def polls(self) -> int:
        return sum(
            1
            for call in self.clock.getDelayedCalls()
            if getattr(call.func, "__name__", "") == "poll"
        )


# ==========================================================================
# Bugs (strict xfails)
# ==========================================================================


def test_pipelined_requests_do_not_start_extra_poll_chains():
    server = Server()
    server.send(b"".join(GET % b"%d" % n for n in range(4)))
    chains = []
    for _ in range(4):
        message = server.take("http.request")
        server.reply(message, status=200, content=b"ok")
        server.run(0.06)
        chains.append(server.polls())
    assert len(parse_responses(server.output())) == 4
    # One poll chain while a reply is awaited, none once nothing is.
    assert chains == [1, 1, 1, 0]


@pytest.mark.parametrize(
    "replies",
    [
        [{"content": b"no status"}],
        [
            {"status": 200, "content": b"a", "more_content": True},
            {"status": 200, "content": b"b"},
        ],
    ],
    ids=["no-status", "second-status"],
)
def test_invalid_reply_is_still_followed_by_http_disconnect(replies, caplog):
    server = Server()
    server.send(GET % b"bad")
    message = server.take("http.request")
    for reply in replies:
        server.reply(message, **reply)
    with caplog.at_level(logging.CRITICAL):
        server.run()
    assert server.output()  # (a 500, or a cut-short 200)
    assert server.host.instances == {} and server.conn.running == set()
    assert server.take_all("http.disconnect") == [
        {"reply_channel": message["reply_channel"], "path": "/bad"}
    ]


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


def request(host, sink, path="/"):
    instance = host.start(http_scope(path), sink)
    instance.put({"type": "http.request", "body": b"", "more_body": False})
    return instance


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


def test_http_timeout_counts_from_the_complete_request(caplog):
    server = Server(http_timeout=5)
    server.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    with caplog.at_level(logging.CRITICAL):
        for _ in range(9):  # a steady 1.7 bytes a second: 5.4 s in all
            server.send(b"x")
            server.clock.advance(0.6)
    server.send(b"x")
    message = server.take("http.request")
    assert message is not None and message["body"] == b"x" * 10
    server.reply(message, status=200, content=b"stored")
    server.run(0.1)
    assert one_response(server.output()).status == 200


def test_a_layer_class_is_not_taken_for_a_layer():
    with pytest.raises(TargetError, match="class"):
        detect_interface(InMemoryChannelLayer, "channel-layer")


# ==========================================================================
# Tricky paths that work
# ==========================================================================


def test_reply_after_http_timeout_is_dropped_and_nothing_leaks(caplog):
    server = Server(http_timeout=5)
    server.send(GET % b"late")
    message = server.take("http.request")
    with caplog.at_level(logging.CRITICAL):
        server.run(5.1)
    assert one_response(server.output()).status == 503
    assert server.host.instances == {} and server.conn.running == set()
    server.reply(message, status=200, content=b"too late")
    server.run(0.1)
    assert not server.conn.transport.connected
    assert len(parse_responses(server.output())) == 1
    assert server.take_all("http.disconnect") == [
        {"reply_channel": message["reply_channel"], "path": "/late"}
    ]


def test_timeout_mid_stream_cuts_the_response_once():
    server = Server(http_timeout=5)
    server.send(GET % b"stream")
    message = server.take("http.request")
    server.reply(message, status=200, content=b"a", more_content=True)
    server.run(0.01)
    server.run(5)
    server.reply(message, content=b"b")
    server.run(0.1)
    (response,) = parse_responses(server.output())
    assert (response.status, response.body, response.complete) == (200, b"a", False)
    assert len(server.take_all("http.disconnect")) == 1
    assert server.host.instances == {} and server.conn.running == set()


def test_client_leaving_before_the_reply_sends_one_disconnect():
    server = Server()
    server.send(GET % b"gone")
    message = server.take("http.request")
    server.conn.connectionLost(Failure(ConnectionLost()))
    server.run()
    server.reply(message, status=200)
    server.run(0.1)
    assert server.output() == b""
    assert server.take_all("http.disconnect") == [
        {"reply_channel": message["reply_channel"], "path": "/gone"}
    ]
    assert server.host.instances == {} and server.conn.running == set()
    assert server.polls() == 0  # (nothing awaited: the reader rests)


def test_client_leaving_mid_body_tells_the_workers_nothing():
    server = Server()
    server.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    server.conn.connectionLost(Failure(ConnectionLost()))
    server.run()
    assert server.take("http.request") is None
    assert server.take("http.disconnect") is None
    assert server.host.instances == {}


def test_pipelined_replies_reach_their_own_requests_in_order():
    server = Server()
    server.send(GET % b"a" + GET % b"b" + GET % b"c")
    first = server.take("http.request")
    assert server.take("http.request") is None  # (one at a time)
    server.reply(first, status=200, content=b"A")
    server.run(0.01)
    second = server.take("http.request")
    server.reply(second, status=201, content=b"B")
    # A stray reply for the finished first request goes nowhere.
    server.reply(first, status=500, content=b"stray")
    server.run(0.01)
    third = server.take("http.request")
    server.reply(third, status=202, content=b"C")
    server.run(0.01)
    responses = parse_responses(server.output())
    assert [(r.status, r.body) for r in responses] == [
        (200, b"A"),
        (201, b"B"),
        (202, b"C"),
    ]
    assert [m["path"] for m in (first, second, third)] == ["/a", "/b", "/c"]
    assert len({m["reply_channel"] for m in (first, second, third)}) == 3
    assert [m["path"] for m in server.take_all("http.disconnect")] == ["/a", "/b", "/c"]
    assert server.host.instances == {} and server.conn.running == set()


def test_connection_close_inside_the_reply_is_one_disconnect():
    # HTTP/1.0 closes after the response; StringTransportWithDisconnection
    # reports the loss at once, from inside the reply's delivery.
    server = Server()
    server.send(b"GET /old HTTP/1.0\r\n\r\n")
    message = server.take("http.request")
    server.reply(message, status=200, content=b"bye")
    server.run(0.01)
    assert one_response(server.output()).body == b"bye"
    assert not server.conn.transport.connected
    assert len(server.take_all("http.disconnect")) == 1
    assert server.host.instances == {} and server.conn.running == set()


def test_expect_100_continue_in_layer_mode():
    server = Server()
    server.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\n\r\n"
    )
    assert server.output() == CONTINUE
    assert server.take("http.request") is None  # (it needs the whole body)
    server.send(b"hello")
    message = server.take("http.request")
    assert message["body"] == b"hello"
    server.reply(message, status=200, content=b"ok")
    server.run(0.01)
    assert one_response(server.output()[len(CONTINUE) :]).body == b"ok"


def test_head_request_gets_no_body():
    server = Server()
    server.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + GET % b"next")
    message = server.take("http.request")
    assert message["method"] == "HEAD"
    server.reply(message, status=200, content=b"not sent", more_content=True)
    server.reply(message, content=b"nor this")
    server.run(0.01)
    server.reply(server.take("http.request"), status=200, content=b"next")
    server.run(0.01)
    data = server.output()
    assert b"not sent" not in data and b"nor this" not in data
    assert data.endswith(b"\r\n\r\nnext")


def test_large_chunked_body_is_one_message_and_too_large_is_413(caplog):
    server = Server()
    chunk = b"x" * 65536
    server.send(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(8):
        server.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    server.send(b"0\r\n\r\n")
    assert len(server.take("http.request")["body"]) == 8 * 65536

    small = Server(InMemoryChannelLayer(max_message_size=1000))
    small.send(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
    with caplog.at_level(logging.CRITICAL):
        small.send(b"y" * 2000)
        small.run()
    assert one_response(small.output()).status == 413
    assert small.take("http.disconnect") is None  # (the worker never heard of it)
    assert small.host.instances == {}


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


def test_polling_reader_restarts_after_resting():
    server = Server()
    server.send(GET % b"1")
    server.reply(server.take("http.request"), status=200)
    server.run(0.01)
    server.run(1)
    assert server.polls() == 0
    server.send(GET % b"2")
    assert server.polls() == 1
    server.reply(server.take("http.request"), status=204)
    server.run(0.1)
    assert [r.status for r in parse_responses(server.output())] == [200, 204]


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
    assert disconnect == {"reply_channel": left, "path": "/"}


def test_websocket_client_leaving_during_the_handshake():
    server = Server()
    server.send(UPGRADE)
    connect = server.take("websocket.connect")
    server.conn.connectionLost(Failure(ConnectionLost()))
    server.run()
    server.reply(connect, accept=True)  # (too late: dropped)
    server.run(0.1)
    assert server.take_all("websocket.disconnect") == [
        {
            "reply_channel": connect["reply_channel"],
            "code": 1006,
            "path": "/ws",
            "order": 1,
        }
    ]
    assert server.host.instances == {}


def test_websocket_accept_then_frames_then_close_in_memory():
    server = Server()
    server.send(UPGRADE)
    connect = server.take("websocket.connect")
    server.reply(connect, accept=True)
    server.run(0.01)
    assert server.output().startswith(b"HTTP/1.1 101 ")
    # A masked text frame "hi", then a close frame with code 1000.
    mask = b"\x01\x02\x03\x04"
    hi = bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi"))
    code = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8"))
    server.send(b"\x81\x82" + mask + hi + b"\x88\x82" + mask + code)
    received = server.take("websocket.receive")
    assert (received["order"], received["text"]) == (1, "hi")
    server.run(0.1)
    (disconnect,) = server.take_all("websocket.disconnect")
    assert (disconnect["code"], disconnect["order"]) == (1000, 2)
    assert server.host.instances == {}


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


# -- the real wire: SIGTERM with a request awaiting its reply --------------------


def raw_get(port: int, path: str, result: list) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        result.append(data)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("extra", [(), ("--force-sync",)], ids=["twisted", "poll"])
def test_sigterm_waits_for_replies_awaited(extra):
    with run_daphne(*extra, app="tests.layer_apps:channel_layer") as server:
        result: list[bytes] = []
        client = threading.Thread(
            target=raw_get, args=(server.port, "/slow?s=0.8", result)
        )
        client.start()
        time.sleep(0.3)
        code = server.stop()
        client.join(10)
    assert code == 0
    (data,) = result
    response = one_response(data)
    assert (response.status, response.body) == (200, b"slow")
    assert response.header(b"connection") == b"close"
