"""One in-memory harness for daphne's protocol side: no sockets, a fake clock.

A :class:`Harness` is an ``HTTPFactory`` whose reactor is a Twisted ``Clock``;
each :class:`Connection` is a protocol of it (``HTTP11Connection`` today: the
``connection`` axis, where HTTP/2 will join) on a
``StringTransportWithDisconnection``. Behind the factory stands one of three
application sides (the ``host`` axis):

* ``"app"``: a real ``AppHost`` running :class:`AppSide`'s puppet ASGI 3
  application on an asyncio loop the harness runs until idle after each step;
* ``"layer"``: a real ``LayerHost`` over ``daphne.layers.InMemoryChannelLayer``
  (``force_sync``: the polling reader, on the Clock); the harness plays the
  worker, reading the ASGI v1 messages and replying on their reply channels;
* ``"fake"``: a :class:`FakeHost` whose instances only record, for protocol
  tests that check framing byte by byte and play the application by calling
  the sink directly.

For ``app`` and ``layer`` the test scripts the application in one vocabulary
that both sides translate: :meth:`Harness.request` gives the next request as
an :class:`Exchange` (``respond``, ``start`` + ``send``, ``fail``; ``body``,
``ended``), :meth:`Harness.websocket` the next WebSocket as a
:class:`Socket` (``accept``, ``refuse``, ``send``, ``close``; ``messages``,
``close_code``). Not answering is doing nothing. A transparent recorder
between the protocol and the real host keeps what the protocol hands the
instance (``events``, ``calls``), as the fake host does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httptools
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from daphne.config import Config
from daphne.hosts.app import AppHost
from daphne.hosts.layer import LayerHost
from daphne.http.exchange import HTTPExchange
from daphne.layers import InMemoryChannelLayer
from daphne.protocols import HTTPFactory

START = "http.response.start"
BODY = "http.response.body"
DISCONNECT = {"type": "http.disconnect"}
GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def get(path: bytes = b"/") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path


def pipelined(*paths: bytes) -> bytes:
    return b"".join(get(path) for path in paths)


# -- parsing what the server wrote -------------------------------------------------


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]

    def header(self, name: bytes) -> bytes | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name!r} appears {len(values)} times"
        return values[0] if values else None


def parse_responses(data: bytes) -> list[Response]:
    """Every response in ``data``; raises httptools errors on malformed bytes."""
    responses: list[Response] = []

    class Callbacks:
        def on_message_begin(self) -> None:
            responses.append(Response())

        def on_header(self, name: bytes, value: bytes) -> None:
            responses[-1].headers.append((name.lower(), value))

        def on_headers_complete(self) -> None:
            responses[-1].status = parser.get_status_code()

        def on_body(self, body: bytes) -> None:
            responses[-1].body += body

        def on_message_complete(self) -> None:
            responses[-1].complete = True

    parser = httptools.HttpResponseParser(Callbacks())
    parser.feed_data(data)
    return responses


def one_response(data: bytes) -> Response:
    responses = parse_responses(data)
    assert len(responses) == 1, data
    assert responses[0].complete, data
    return responses[0]


def frame(opcode: Opcode, data: bytes = b"", fin: bool = True) -> bytes:
    """A client's (masked) WebSocket frame."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(Opcode.CLOSE, Close(code, reason).serialize())


def parse_frames(data: bytes) -> list[Frame]:
    """Every whole frame the server wrote in ``data``."""
    reader = StreamReader()
    reader.feed_data(data)
    found = []
    while True:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            found.append(done.value)
            continue
        return found


# -- the connection side ---------------------------------------------------------------


class UnreadTransport(StringTransportWithDisconnection):
    """A client that stops reading: ``loseConnection`` cannot complete (what is
    written is never delivered), so the transport only becomes
    ``disconnecting``; ``abortConnection`` drops it at once."""

    aborted = False

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.aborted = True
        super().loseConnection()


class Connection:
    """One client connection to the factory's protocol, in memory."""

    def __init__(
        self,
        factory: HTTPFactory,
        transport: StringTransportWithDisconnection | None = None,
        settle: Any = None,
    ) -> None:
        self.factory = factory
        self.clock: Clock = factory.reactor
        self.host = factory.host
        self.protocol = factory.buildProtocol(None)
        self.transport = transport or StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self._settle = settle or (lambda: None)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self._settle()

    def output(self) -> bytes:
        return self.transport.value()

    def responses(self) -> list[Response]:
        return parse_responses(self.output())

    def close(self) -> None:
        """The client goes away."""
        self.transport.loseConnection()
        self._settle()

    @property
    def open(self) -> bool:
        return self.transport.connected

    @property
    def instance(self) -> FakeInstance:
        assert self.host.instances, "no application instance was started"
        return self.host.instances[-1]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self._settle()


#: The connection axis: how a client reaches the factory.
CONNECTIONS = {"http1": Connection}


# -- the fake host: instances that only record --------------------------------------


class FakeInstance:
    """Records every call the protocol makes on an application instance."""

    def __init__(self, scope: dict, sink: HTTPExchange, put_result: bool) -> None:
        self.scope = scope
        self.sink = sink
        self.events: list[dict] = []
        #: "pause", "resume" and "disconnected", in call order.
        self.calls: list[str] = []
        self.put_result = put_result

    def put(self, event: dict) -> bool:
        self.events.append(event)
        return self.put_result

    def pause_sending(self) -> None:
        self.calls.append("pause")

    def resume_sending(self) -> None:
        self.calls.append("resume")

    def disconnected(self) -> None:
        self.calls.append("disconnected")

    # The test plays the application through these.

    def send(self, event: dict) -> None:
        self.sink.handle_reply(event)

    def start(self, status: int = 200, headers=()) -> None:
        self.send({"type": START, "status": status, "headers": list(headers)})

    def body(self, body: bytes = b"", more: bool = False) -> None:
        self.send({"type": BODY, "body": body, "more_body": more})

    def respond(self, body: bytes = b"", status: int = 200, headers=()) -> None:
        self.start(status, headers)
        self.body(body)

    def finish(self, exc: BaseException | None = None) -> None:
        self.sink.application_finished(exc)

    @property
    def body_received(self) -> bytes:
        return b"".join(e["body"] for e in self.events if e["type"] == "http.request")


class FakeHost:
    def __init__(self) -> None:
        self.instances: list[FakeInstance] = []
        self.put_result = True

    def start(self, scope: dict, sink: HTTPExchange) -> FakeInstance:
        instance = FakeInstance(scope, sink, self.put_result)
        self.instances.append(instance)
        return instance


# -- real hosts, seen through a recorder ------------------------------------------------


class Recorded:
    """A real host's instance as the protocol sees it: every call is passed on
    unchanged, and recorded like :class:`FakeInstance` records it."""

    def __init__(self, inner: Any, scope: dict, sink: Any) -> None:
        self.inner = inner
        self.scope = scope
        self.sink = sink
        self.events: list[dict] = []
        self.calls: list[str] = []

    def put(self, event: dict) -> bool:
        self.events.append(event)
        return self.inner.put(event)

    def pause_sending(self) -> None:
        self.calls.append("pause")
        self.inner.pause_sending()

    def resume_sending(self) -> None:
        self.calls.append("resume")
        self.inner.resume_sending()

    def disconnected(self) -> None:
        self.calls.append("disconnected")
        self.inner.disconnected()


class RecordingHost:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.instances: list[Recorded] = []

    def start(self, scope: dict, sink: Any) -> Recorded:
        instance = Recorded(self.host.start(scope, sink), scope, sink)
        self.instances.append(instance)
        return instance


class Handle:
    """One request or WebSocket as the application side sees it."""

    def __init__(self, side: Any, record: Recorded) -> None:
        self.side = side
        self.record = record
        self.scope = record.scope
        self.path = record.scope["path"]
        self.method = record.scope.get("method")

    @property
    def events(self) -> list[dict]:
        """Client events the protocol handed the instance."""
        return self.record.events

    @property
    def calls(self) -> list[str]:
        return self.record.calls


class Exchange(Handle):
    """An HTTP request, answered in one vocabulary for both hosts."""

    def respond(self, body: bytes = b"", status: int = 200, headers=()) -> None:
        self.start(status, headers)
        self.send(body)

    def start(self, status: int = 200, headers=()) -> None:
        raise NotImplementedError

    def send(self, body: bytes = b"", more: bool = False) -> None:
        raise NotImplementedError

    def fail(self) -> None:
        """The application fails (its error text must not reach the client)."""
        raise NotImplementedError

    @property
    def body(self) -> bytes:
        """The whole request body, as the application received it."""
        raise NotImplementedError

    def ended(self) -> int:
        """How often the application side learnt that the request is over: a
        worker from ``http.disconnect``; an application from hearing
        ``http.disconnect``, or by ending itself."""
        raise NotImplementedError


class Socket(Handle):
    """A WebSocket, answered in one vocabulary for both hosts."""

    def accept(self) -> None:
        raise NotImplementedError

    def refuse(self) -> None:
        raise NotImplementedError

    def send(self, text: str | None = None, data: bytes | None = None) -> None:
        raise NotImplementedError

    def close(self, code: int = 1000) -> None:
        raise NotImplementedError

    def messages(self) -> list[str | bytes]:
        """What the client sent, as the application received it."""
        raise NotImplementedError

    def close_codes(self) -> list[int]:
        """The close code of each disconnect the application side was told of."""
        raise NotImplementedError


# -- app: a puppet ASGI 3 application on an asyncio loop ------------------------------


class Puppet:
    """One call of the puppet application: it reads every event as soon as it
    can, and sends, raises or returns when the test says so."""

    def __init__(self, send: Any) -> None:
        self.app_send = send
        #: A command is running (e.g. a send waiting for the transport).
        self.busy = False
        self.received: list[dict] = []
        self.commands: list[Any] = []
        self.wake = asyncio.Event()
        self.finished = False

    async def run(self, receive: Any) -> None:
        reader = asyncio.ensure_future(self.read(receive))
        try:
            while True:
                while not self.commands:
                    self.wake.clear()
                    await self.wake.wait()
                command = self.commands.pop(0)
                if command is None:
                    self.finished = True
                    return
                self.busy = True
                await command()
                self.busy = False
        finally:
            if not reader.done():
                await asyncio.sleep(0)  # (an event already put is read)
            reader.cancel()

    async def read(self, receive: Any) -> None:
        while True:
            event = await receive()
            self.received.append(event)
            if event["type"] == "websocket.disconnect":
                self.do(None)  # (a WebSocket application ends with its socket)
            if event["type"].endswith("disconnect"):
                return

    def do(self, command: Any) -> None:
        self.commands.append(command)
        self.wake.set()

    def emit(self, event: dict) -> None:
        self.do(lambda: self.app_send(event))


class AppExchange(Exchange):
    def start(self, status: int = 200, headers=()) -> None:
        self.side.act(self, {"type": START, "status": status, "headers": list(headers)})

    def send(self, body: bytes = b"", more: bool = False) -> None:
        """A final part ends the application, as a real one returns."""
        self.puppet.emit({"type": BODY, "body": body, "more_body": more})
        self.side.act(self, None if not more else lambda: asyncio.sleep(0))

    def fail(self) -> None:
        async def fail() -> None:
            self.puppet.finished = True
            raise RuntimeError("secret-database-password")

        self.side.act(self, fail)

    @property
    def body(self) -> bytes:
        parts = [e for e in self.puppet.received if e["type"] == "http.request"]
        assert parts and not parts[-1].get("more_body"), parts
        return b"".join(e["body"] for e in parts)

    def ended(self) -> int:
        return self.puppet.received.count(DISCONNECT) or int(self.puppet.finished)


class AppSocket(Socket):
    def accept(self) -> None:
        self.side.act(self, {"type": "websocket.accept"})

    def refuse(self) -> None:
        self.side.act(self, {"type": "websocket.close"})

    def send(self, text: str | None = None, data: bytes | None = None) -> None:
        event = {"text": text} if text is not None else {"bytes": data}
        self.side.act(self, {"type": "websocket.send", **event})

    def close(self, code: int = 1000) -> None:
        self.side.act(self, {"type": "websocket.close", "code": code})

    def messages(self) -> list[str | bytes]:
        return [
            e.get("text") if e.get("text") is not None else e["bytes"]
            for e in self.puppet.received
            if e["type"] == "websocket.receive"
        ]

    def close_codes(self) -> list[int]:
        return [
            e["code"]
            for e in self.puppet.received
            if e["type"] == "websocket.disconnect"
        ]


class AppSide:
    """A real ``AppHost``; the loop runs until every task waits again."""

    def __init__(self, harness: Harness, application: Any = None) -> None:
        self.harness = harness
        self.loop = asyncio.new_event_loop()
        self.host = AppHost(
            application or self.app, harness.config, harness.clock, loop=self.loop
        )
        self.puppets: list[Puppet] = []

    async def app(self, scope: dict, receive: Any, send: Any) -> None:
        puppet = Puppet(send)
        self.puppets.append(puppet)
        await puppet.run(receive)

    def handle(self, record: Recorded, index: int) -> Handle:
        kind = AppSocket if record.scope["type"] == "websocket" else AppExchange
        handle = kind(self, record)
        handle.puppet = self.puppets[index]
        return handle

    def act(self, handle: Handle, action: Any) -> None:
        """An event to send, a coroutine function to run, or None: return."""
        if isinstance(action, dict):
            handle.puppet.emit(action)
        else:
            handle.puppet.do(action)
        self.harness.settle()

    def settle(self) -> None:
        for _ in range(20):
            self.harness.clock.advance(0)
            self.loop.run_until_complete(asyncio.sleep(0))

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the loop; a hang fails the test instead of blocking."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, 5))

    def close(self) -> None:
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending))
        self.loop.close()


# -- layer: a real LayerHost, the test playing the worker -----------------------------


class WorkerLayer(InMemoryChannelLayer):
    """The in-memory layer, counting replies sent that daphne has not read."""

    unread = 0

    def send(self, channel: str, message: dict) -> None:
        super().send(channel, message)
        if channel.startswith("daphne.response."):
            self.unread += 1

    def receive(self, channels, block=False):
        channel, message = super().receive(channels, block)
        if channel is not None and channel.startswith("daphne.response."):
            self.unread -= 1
        return channel, message


WORKER_CHANNELS = (
    "http.request",
    "http.disconnect",
    "websocket.connect",
    "websocket.receive",
    "websocket.disconnect",
)


class LayerExchange(Exchange):
    headers: list = []
    status: int | None = None

    @property
    def message(self) -> dict:
        (message,) = self.side.inbox(self, "http.request")
        return message

    def reply(self, **message: Any) -> None:
        self.side.reply(self, message)

    def start(self, status: int = 200, headers=()) -> None:
        # (v1 has no start message: the status goes with the first content.)
        self.status, self.headers = status, list(headers)

    def send(self, body: bytes = b"", more: bool = False) -> None:
        message = {"content": body, "more_content": more}
        if self.status is not None:
            message.update(status=self.status, headers=self.headers)
            self.status = None
        self.reply(**message)

    def fail(self) -> None:
        self.reply(content=b"secret-database-password")  # no status: invalid

    @property
    def body(self) -> bytes:
        assert self.message["method"] == self.method
        return self.message["body"]

    def ended(self) -> int:
        gone = self.side.inbox(self, "http.disconnect")
        assert all(
            m
            == {
                "type": "http.disconnect",
                "reply_channel": self.channel,
                "path": self.path,
            }
            for m in gone
        )
        return len(gone)


class LayerSocket(Socket):
    def accept(self) -> None:
        self.side.reply(self, {"accept": True})

    def refuse(self) -> None:
        self.side.reply(self, {"accept": False})

    def send(self, text: str | None = None, data: bytes | None = None) -> None:
        message = {"text": text} if text is not None else {"bytes": data}
        self.side.reply(self, message)

    def close(self, code: int = 1000) -> None:
        self.side.reply(self, {"close": code})

    def messages(self) -> list[str | bytes]:
        received = self.side.inbox(self, "websocket.receive")
        assert [m["order"] for m in received] == list(range(1, len(received) + 1))
        return [m.get("text", m.get("bytes")) for m in received]

    def close_codes(self) -> list[int]:
        gone = self.side.inbox(self, "websocket.disconnect")
        after = len(self.side.inbox(self, "websocket.receive")) + 1
        assert all(m["order"] == after and m["path"] == self.path for m in gone)
        return [m["code"] for m in gone]


class LayerSide:
    """A real ``LayerHost`` polling an in-memory layer on the Clock."""

    def __init__(self, harness: Harness, layer: Any = None) -> None:
        self.harness = harness
        self.layer = layer or WorkerLayer()
        config = Config(**{"force_sync": True, **harness.options})
        harness.config = config
        self.host = LayerHost(self.layer, config, harness.clock)
        #: (channel, message) for every message the workers got, in order.
        self.received: list[tuple[str, dict]] = []

    def handle(self, record: Recorded, index: int) -> Handle:
        kind = LayerSocket if record.scope["type"] == "websocket" else LayerExchange
        handle = kind(self, record)
        handle.channel = record.inner.channel
        return handle

    def inbox(self, handle: Handle, channel: str) -> list[dict]:
        return [
            message
            for name, message in self.received
            if name == channel and message["reply_channel"] == handle.channel
        ]

    def reply(self, handle: Handle, message: dict) -> None:
        self.layer.send(handle.channel, message)
        self.harness.settle()

    def settle(self) -> None:
        """Run what is due; while replies wait unread, let the polling
        reader's next poll come (at most its longest delay, 50 ms)."""
        clock = self.harness.clock
        clock.advance(0)
        for _ in range(100):
            call = self.host.reader.call
            if not getattr(self.layer, "unread", 0) or call is None:
                break
            clock.advance(call.getTime() - clock.seconds())
        for channel in WORKER_CHANNELS:
            while (message := self.layer.receive([channel])[1]) is not None:
                self.received.append((channel, message))

    def close(self) -> None:
        self.host.reader.stop()


class FakeSide:
    def __init__(self, harness: Harness, **kwargs: Any) -> None:
        self.host = FakeHost()

    def settle(self) -> None:
        pass

    def close(self) -> None:
        pass


SIDES = {"app": AppSide, "layer": LayerSide, "fake": FakeSide}


class Harness:
    """An ``HTTPFactory`` on a Clock, served by one application side."""

    def __init__(
        self,
        host: str = "fake",
        connection: str | type = "http1",
        access_log: Any = None,
        transport: Any = None,
        side: dict | None = None,
        **options: Any,
    ) -> None:
        """``side``: arguments for the application side (``application=`` an
        ASGI app instead of the puppet; ``layer=`` a layer of one's own)."""
        self.clock = Clock()
        self.options = options
        self.config = Config(**options)
        self.side = SIDES[host](self, **(side or {}))
        self.kind = host
        real = host != "fake"
        self.host = RecordingHost(self.side.host) if real else self.side.host
        self.factory = HTTPFactory(
            self.config, self.host, reactor=self.clock, access_log=access_log
        )
        #: (A name on the connection axis, or a Connection class of the test's.)
        self.connection = CONNECTIONS.get(connection, connection)
        self.handles: list[Handle] = []
        self.conn = self.connect(transport)

    def connect(self, transport: Any = None) -> Connection:
        return self.connection(self.factory, transport, self.settle)

    def settle(self) -> None:
        self.side.settle()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def _handles(self) -> list[Handle]:
        records = self.host.instances
        for index in range(len(self.handles), len(records)):
            self.handles.append(self.side.handle(records[index], index))
        return self.handles

    def started(self, kind: str = "http") -> list[Handle]:
        """Every request (or WebSocket) the application side has heard of."""
        handles = [h for h in self._handles() if h.scope["type"] == kind]
        if self.kind == "layer":  # (a worker hears of it once the body is in)
            channel = "http.request" if kind == "http" else "websocket.connect"
            return [h for h in handles if self.side.inbox(h, channel)]
        return handles

    def request(self, index: int = -1) -> Exchange:
        started = self.started()
        assert started, "the application has not heard of a request"
        return started[index]

    def websocket(self) -> Socket:
        started = self.started("websocket")
        assert started, "the application has not heard of a WebSocket"
        return started[-1]

    def close(self) -> None:
        self.side.close()


def connect(transport: Any = None, **options: Any) -> Connection:
    """A connection to a fake host (the test plays the application)."""
    return Harness("fake", transport=transport, **options).conn
