"""WebSocket connections: autobahn's framing behind an HTTP/1.1 upgrade.

:class:`~daphne.http_protocol.HTTP11Protocol` parses the upgrade request, builds
the ``websocket`` scope and then hands the connection to a
:class:`WebSocketProtocol`. Autobahn validates the handshake (fed with the head
daphne parsed, so nothing is parsed twice differently), frames and unframes
messages and runs the close handshake. This module adds what ASGI needs on top:

* the handshake is held until the application answers ``websocket.connect``;
  a refusal (``websocket.close``, the ``websocket.http.response`` denial
  extension, an exception, a timeout) is answered as plain HTTP by the
  connection, so it gets the same framing and error pages as any response;
* per-connection timers for the connect timeout, the socket's lifetime, idle
  pings and the close handshake, each its own ``DelayedCall`` on the
  server's reactor (so they are exact, and testable with a ``Clock``);
* flow control both ways through the :class:`~daphne.hosts.Sink` seam.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import (
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol as _Autobahn
from twisted.internet import defer
from twisted.python.failure import Failure

from .access import format_client
from .config import Config
from .hosts import ASGIProtocolError, ClientDisconnected, Event, Instance
from .utils import header_problem

if TYPE_CHECKING:
    from .http_protocol import HTTP11Protocol, HTTPRequest

logger = logging.getLogger(__name__)

#: Close codes an endpoint may send (RFC 6455 section 7.4 and the IANA
#: registry): 1004-1006 and 1015 are reserved for reporting, never sent.
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})

#: Application events on a WebSocket scope.
WEBSOCKET_EVENTS = frozenset(
    {
        "websocket.accept",
        "websocket.send",
        "websocket.close",
        "websocket.http.response.start",
        "websocket.http.response.body",
    }
)

#: The denial extension's events, and the HTTP events that answer them.
DENIAL_EVENTS = {
    "websocket.http.response.start": "http.response.start",
    "websocket.http.response.body": "http.response.body",
}

#: Bytes a client may send before the handshake completes (it should send none).
MAX_EARLY_DATA = 64 * 1024

#: Response headers the server owns in a 101 answer.
RESERVED_ACCEPT_HEADERS = frozenset(
    {
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"upgrade",
        b"connection",
        b"content-length",
        b"transfer-encoding",
    }
)

_OPEN = _Autobahn.STATE_OPEN
_CLOSING = _Autobahn.STATE_CLOSING
_CLOSED = _Autobahn.STATE_CLOSED


class Phase(enum.Enum):
    """Where a WebSocket is, as far as the application is concerned."""

    #: Handshake validated, waiting for the application's answer.
    HANDSHAKE = "handshake"
    #: The handshake was refused; an HTTP response is being sent.
    REFUSED = "refused"
    #: Accepted: messages flow both ways.
    OPEN = "open"
    #: A close frame was sent; nothing more goes out.
    CLOSING = "closing"
    #: The connection is gone.
    CLOSED = "closed"


class WebSocketFactory(WebSocketServerFactory):
    """Autobahn's options for every WebSocket of one server.

    Autobahn's own timers (opening handshake, auto-ping) stay off: daphne's
    timers in :class:`WebSocketProtocol` replace them.
    """

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__(server=config.server_name, reactor=reactor)
        self.setProtocolOptions(
            maxFramePayloadSize=config.websocket_max_frame_size,
            maxMessagePayloadSize=config.websocket_max_message_size,
            # Oversize or invalid traffic gets a close frame with its code
            # (1009, 1007, ...) instead of a silent TCP drop.
            failByDrop=False,
            echoCloseCodeReason=True,
            # daphne's own timers replace autobahn's (which run on a batched
            # timer that rounds deadlines to whole seconds).
            openHandshakeTimeout=0,
            closeHandshakeTimeout=0,
            autoPingInterval=0,
            webStatus=False,
        )
        # Autobahn copies each option onto every connection unless its class
        # already has it: a subclass carrying them saves ~1 KiB per socket.
        # (Function options such as perMessageCompressionAccept must not
        # become methods of that class.)
        options = {}
        for name in WebSocketProtocol.CONFIG_ATTRS:
            value = getattr(self, name)
            options[name] = staticmethod(value) if callable(value) else value
        self.protocol = type("WebSocketProtocol", (WebSocketProtocol,), options)


class WebSocketProtocol(WebSocketServerProtocol):
    """One upgraded connection, and the :class:`~daphne.hosts.Sink` of its
    application instance.

    It does not own the transport: the :class:`HTTP11Protocol` that parsed the
    upgrade stays the Twisted protocol and forwards reads, connection loss and
    flow control here.
    """

    def __init__(self, conn: HTTP11Protocol, scope: dict) -> None:
        super().__init__()
        self.conn = conn
        self.config: Config = conn.config
        self.reactor = conn.reactor
        self.factory = conn.factory.websocket_factory
        self.scope = scope
        self.phase = Phase.HANDSHAKE
        self.instance: Instance | None = None
        #: Fires with autobahn's accept answer once the application accepts.
        self.answer: defer.Deferred | None = None
        #: The HTTP exchange answering a refused handshake.
        self.refusal: HTTPRequest | None = None
        #: Client bytes that arrived while the handshake was held.
        self.early = b""
        self.read_paused = False
        #: The application was started (onConnect), so its end is logged.
        self.connecting = False
        self.connect_call: Any = None
        self.lifetime_call: Any = None
        self.ping_call: Any = None
        #: Aborts a close handshake the client does not answer.
        self.close_call: Any = None
        self.last_seen = 0.0
        #: When the unanswered ping went out, or None.
        self.ping_sent: float | None = None
        self.log_path = scope["raw_path"].decode("latin-1")

    # -- set-up ----------------------------------------------------------------

    def start(self, head: bytes, rest: bytes) -> None:
        """Take over the connection; ``head`` is the upgrade request as parsed,
        ``rest`` whatever the client sent after it."""
        self.transport = self.conn.transport
        self.connectionMade()
        self.early = rest
        self._dataReceived(head)  # autobahn validates, then calls onConnect

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase is Phase.OPEN or phase is Phase.CLOSING:
            self.last_seen = self.reactor.seconds()
            if self.ping_sent is not None:
                self.answered_ping()
            self._dataReceived(data)
        elif phase is Phase.HANDSHAKE:
            # A client must wait for the 101; keep (a little of) what it sends.
            self.early += data
            if len(self.early) > MAX_EARLY_DATA:
                logger.info(
                    "WebSocket client %s sent too much before the handshake",
                    self.scope["client"],
                )
                self.transport.abortConnection()
        # Refused or closed: the connection is closing, and nothing the client
        # sends may reach autobahn's handshake parser again.

    def connection_lost(self, reason: Failure) -> None:
        self.connectionLost(reason)  # autobahn calls onClose, which tidies up

    # -- autobahn callbacks ----------------------------------------------------

    def onConnect(self, request: Any) -> defer.Deferred:
        """The handshake is valid: start the application and hold the answer."""
        conn = self.conn
        self.connecting = True
        self.answer = defer.Deferred()
        self.instance = conn.factory.host.start(self.scope, self)
        self.instance.put({"type": "websocket.connect"})
        if conn.write_paused:
            self.instance.pause_sending()
        self.log_access("connecting")
        timeout = self.config.websocket_connect_timeout
        if timeout is not None:
            self.connect_call = self.reactor.callLater(timeout, self.connect_timed_out)
        return self.answer

    def onOpen(self) -> None:
        self.phase = Phase.OPEN
        # Autobahn keeps copies of the handshake; nothing reads them again.
        self.http_request_data = self.http_response_data = None
        self.http_headers = {}
        self.log_access("connected")
        self.last_seen = self.reactor.seconds()
        config = self.config
        if config.websocket_timeout is not None:
            self.lifetime_call = self.reactor.callLater(
                config.websocket_timeout, self.lifetime_expired
            )
        if config.ping_interval:
            self.ping_call = self.reactor.callLater(config.ping_interval, self.ping)
        if self.early:
            early, self.early = self.early, b""
            self._dataReceived(early)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        instance = self.instance
        if instance is None:
            return  # the application has ended; the socket is closing
        if isBinary:
            event = {"type": "websocket.receive", "bytes": payload}
        else:
            event = {"type": "websocket.receive", "text": payload.decode("utf-8")}
        if not instance.put(event):
            self.read_paused = True
            self.conn.pause_reading("app")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.phase = Phase.CLOSED
        self.cancel_timers()
        if not self.connecting:
            return  # (refused by autobahn before the application heard of it)
        # (Twisted reports a connection's loss once, so this runs once.)
        self.log_access("disconnected")
        instance = self.instance
        if instance is None:
            return  # the application has ended already
        if not wasClean:
            code, reason = 1006, None  # (autobahn's reason describes its state)
        elif self.failedByMe and self.localCloseCode:
            # The client broke the protocol (e.g. a reserved close code); what
            # autobahn records as its code is not what happened.
            code, reason = self.localCloseCode, None
        elif code is None:
            code = 1005  # a close frame without a status code
        instance.put(
            {"type": "websocket.disconnect", "code": code, "reason": reason or ""}
        )
        instance.disconnected()

    def consumeData(self) -> None:
        # Autobahn would unframe everything buffered at once; stop between
        # frames while the application's queue is full, so the backlog stays
        # raw bytes (at most one read) rather than a growing list of events.
        if self.state == _OPEN or self.state == _CLOSING:
            while not self.read_paused and self.processData() and self.state != _CLOSED:
                pass
        else:
            super().consumeData()

    # Autobahn's hot path formats debug-log arguments, counts traffic
    # statistics and fires observers on every read, write and message; daphne
    # uses none of that. These overrides keep its behaviour without the cost
    # (about a tenth of an echo round trip).

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def sendData(self, data: bytes, sync: bool = False, chopsize=None) -> None:
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
        else:
            self.conn.send(data)

    def _onOpen(self) -> None:
        self.onOpen()  # (skips the TLS channel-id lookup daphne does not use)

    def sendCloseFrame(
        self, code: int | None = None, reasonUtf8: bytes | None = None, isReply=False
    ) -> None:
        # Every close frame goes out here, daphne's and autobahn's own (1009,
        # 1007, replies): from now on nothing but the close handshake is sent.
        if self.phase is Phase.OPEN:
            self.phase = Phase.CLOSING
            self.cancel_timers()
        super().sendCloseFrame(code, reasonUtf8, isReply)
        if not isReply and self.close_call is None and self.state == _CLOSING:
            self.close_call = self.reactor.callLater(
                self.config.close_timeout, self.close_timed_out
            )

    def close_timed_out(self) -> None:
        self.close_call = None
        if self.state != _CLOSED:
            logger.info("WebSocket %s did not answer its close", self.log_path)
            self.dropConnection(abort=True)

    def unregisterProducer(self) -> None:
        self.conn.unregister_producer()  # (the connection registered itself)

    def _closeConnection(self, abort: bool = False) -> None:
        if abort:
            self.transport.abortConnection()
        else:
            self.conn.close()  # aborts if the client does not read the rest

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Any = None
    ) -> None:
        """Autobahn found the handshake invalid: answer it as plain HTTP."""
        logger.info(
            "Refused WebSocket handshake from %s: %s", self.scope["client"], reason
        )
        self.phase = Phase.REFUSED
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in responseHeaders or ()
        ]
        self.refusal = self.conn.refuse_websocket(self.scope, code, reason, headers)

    # -- Sink: events from the application ---------------------------------------

    def handle_reply(self, event: Event) -> bool:
        try:
            kind = event["type"]
        except (TypeError, KeyError):
            self.fail(f"Application sent {event!r}, which is not an ASGI event")
        phase = self.phase
        if phase is Phase.OPEN:
            if kind == "websocket.send":
                self.send_message(event)
            elif kind == "websocket.close":
                self.close(*self.close_arguments(event))
            else:
                self.fail(f"Unexpected ASGI event {kind!r} on an open WebSocket")
        elif phase is Phase.HANDSHAKE:
            if kind == "websocket.accept":
                self.accept(event)
            elif kind == "websocket.close":
                self.refuse(403)
            elif kind == "websocket.http.response.start":
                # (The connect timer keeps running until the response is
                # complete: a denial that stalls is cut off too.)
                self.phase = Phase.REFUSED
                self.refusal = self.conn.websocket_refusal(self.scope)
                self.refusal.handle_reply({**event, "type": "http.response.start"})
            else:
                self.fail(f"Unexpected ASGI event {kind!r} before the handshake")
        elif phase is Phase.REFUSED:
            if kind in DENIAL_EVENTS:
                return self.refusal.handle_reply({**event, "type": DENIAL_EVENTS[kind]})
            if kind not in WEBSOCKET_EVENTS:
                self.fail(f"Unexpected ASGI event {kind!r} on a WebSocket")
            return False  # the handshake was refused: late events are dropped
        elif kind not in WEBSOCKET_EVENTS:
            self.fail(f"Unexpected ASGI event {kind!r} on a WebSocket")
        elif phase is Phase.CLOSED:
            # ASGI 2.4: sending on a closed connection raises an OSError.
            raise ClientDisconnected(f"WebSocket {self.log_path} is closed")
        else:
            return False  # closing: only the close handshake goes out now
        return True

    def accept(self, event: Event) -> None:
        subprotocol = event.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            self.fail(f"Subprotocol {subprotocol!r} was not offered by the client")
        headers: dict[str, list[str]] = {}
        try:
            for name, value in event.get("headers", ()):
                problem = header_problem(name, value)
                if problem is not None:
                    self.fail(f"websocket.accept {problem}")
                lower = name.lower()
                if lower in RESERVED_ACCEPT_HEADERS:
                    self.fail(f"Header {name!r} is the server's to send")
                try:
                    # (Autobahn writes the 101 as UTF-8: only UTF-8 values
                    # reach the wire byte for byte.)
                    text = value.decode("utf-8")
                except UnicodeDecodeError:
                    self.fail(f"Accept header {name!r} is not ASCII or UTF-8")
                headers.setdefault(lower.decode("ascii"), []).append(text)
        except (TypeError, ValueError):
            self.fail("Accept headers must be an iterable of [name, value] pairs")
        self.stop_connect_timer()
        answer, self.answer = self.answer, None
        answer.addErrback(self.accept_failed)  # (runs after autobahn's callback)
        answer.callback((subprotocol, headers))  # autobahn sends the 101

    def accept_failed(self, failure: Failure) -> None:
        """Autobahn could not complete an accepted handshake."""
        logger.error(
            "Could not complete the WebSocket handshake for %s",
            self.log_path,
            exc_info=failure.value,
        )
        if self.phase is Phase.HANDSHAKE:
            self.refuse(500)

    def refuse(self, status: int) -> None:
        """Answer the held handshake with an error page."""
        self.stop_connect_timer()
        self.phase = Phase.REFUSED
        self.answer = None
        self.refusal = self.conn.refuse_websocket(self.scope, status)

    def send_message(self, event: Event) -> None:
        text = event.get("text")
        data = event.get("bytes")
        if text is not None and data is None:
            if type(text) is not str:
                self.fail(f"websocket.send text must be str, not {type(text).__name__}")
            self.sendFrame(opcode=1, payload=text.encode("utf-8"))
        elif data is not None and text is None:
            if type(data) is not bytes:
                if not isinstance(data, (bytearray, memoryview)):
                    self.fail(
                        f"websocket.send bytes must be bytes, not {type(data).__name__}"
                    )
                data = bytes(data)
            self.sendFrame(opcode=2, payload=data)
        else:
            self.fail("websocket.send needs exactly one of 'bytes' and 'text'")

    def close_arguments(self, event: Event) -> tuple[int, str]:
        code = event.get("code", 1000)
        reason = event.get("reason") or ""
        if isinstance(code, bool) or not isinstance(code, int):
            self.fail(f"Invalid WebSocket close code {code!r}")
        if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
            self.fail(f"WebSocket close code {code} may not be sent")
        if not isinstance(reason, str):
            self.fail(f"WebSocket close reason must be str, not {type(reason)}")
        return code, reason

    def close(self, code: int, reason: str = "") -> None:
        """Start the close handshake (autobahn drops the TCP connection when
        the client answers, or after its close timeout)."""
        if self.phase is not Phase.OPEN:
            return
        reason_bytes = encode_truncate(reason, 123) if reason else None
        self.sendCloseFrame(code=code, reasonUtf8=reason_bytes, isReply=False)

    def fail(self, message: str) -> Any:
        """Refuse an invalid application event: log, end the socket, raise."""
        logger.error("%s (WebSocket %s)", message, self.log_path)
        if self.phase is Phase.HANDSHAKE:
            self.refuse(500)
        elif self.phase is Phase.OPEN:
            self.close(1011)
        raise ASGIProtocolError(message)

    # -- Sink: flow control and the application's end ----------------------------

    def receive_requested(self) -> None:
        pass

    def resume_reading(self) -> None:
        if not self.read_paused:
            return
        self.read_paused = False
        self.conn.resume_reading("app")
        if self.data and self.state != _CLOSED:
            self.consumeData()

    def application_finished(self, exc: BaseException | None) -> None:
        self.instance = None
        # Nobody will drain the queue now: read on, so that the close
        # handshake can complete (messages are dropped, see onMessage).
        self.resume_reading()
        phase = self.phase
        if phase is Phase.REFUSED:
            # Whatever is left is an HTTP response: its exchange reports it.
            if self.refusal is not None:
                self.refusal.application_finished(exc)
            return
        if isinstance(exc, ClientDisconnected):
            logger.debug("Application for WebSocket %s ended: %s", self.log_path, exc)
        elif isinstance(exc, Exception) and not isinstance(exc, ASGIProtocolError):
            logger.error(
                "Exception inside application handling WebSocket %s",
                self.log_path,
                exc_info=exc,
            )
        if phase is Phase.HANDSHAKE:
            if exc is None:
                logger.error(
                    "Application returned without accepting or closing WebSocket %s",
                    self.log_path,
                )
            self.refuse(500)
        elif phase is Phase.OPEN:
            self.close(1011 if exc is not None else 1000)

    # -- timers -----------------------------------------------------------------

    def cancel_timer(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None:
            if call.active():
                call.cancel()
            setattr(self, name, None)

    def stop_connect_timer(self) -> None:
        self.cancel_timer("connect_call")

    def cancel_timers(self) -> None:
        """Every timer of this socket (the connection is closing or gone)."""
        for name in ("connect_call", "lifetime_call", "ping_call", "close_call"):
            self.cancel_timer(name)

    def connect_timed_out(self) -> None:
        self.connect_call = None
        timeout = self.config.websocket_connect_timeout
        if self.phase is Phase.HANDSHAKE:
            logger.warning(
                "WebSocket %s not accepted within %ss; refusing it",
                self.log_path,
                timeout,
            )
            self.refuse(403)
        elif self.phase is Phase.REFUSED and self.refusal is not None:
            refusal = self.refusal
            if not refusal.finished:
                logger.warning(
                    "Denial response for WebSocket %s not complete within %ss",
                    self.log_path,
                    timeout,
                )
                refusal.abort(403)

    def lifetime_expired(self) -> None:
        self.lifetime_call = None
        logger.info("WebSocket %s reached its time limit; closing", self.log_path)
        self.close(1000)

    def ping(self) -> None:
        """The ping timer: ping after ``ping_interval`` idle seconds, then drop
        the socket if nothing arrives within ``ping_timeout``."""
        self.ping_call = None
        if self.phase is not Phase.OPEN:
            return
        config = self.config
        now = self.reactor.seconds()
        if self.ping_sent is not None:
            logger.info(
                "WebSocket %s did not answer a ping within %ss; dropping it",
                self.log_path,
                config.ping_timeout,
            )
            self.dropConnection(abort=True)
            return
        if self.read_paused:
            # The server is not reading, so a pong could not be seen.
            delay = config.ping_interval
        else:
            delay = self.last_seen + config.ping_interval - now
            if delay <= 0:
                self.ping_sent = now
                self.sendPing()
                delay = config.ping_timeout
        self.ping_call = self.reactor.callLater(delay, self.ping)

    def answered_ping(self) -> None:
        """Any traffic from the client answers the outstanding ping."""
        self.ping_sent = None
        if self.ping_call is not None and self.ping_call.active():
            self.ping_call.reset(self.config.ping_interval)

    # -- server-side control ----------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: close with 1001 (or refuse a held handshake)."""
        if self.phase is Phase.OPEN:
            self.close(1001)
        elif self.phase is Phase.HANDSHAKE:
            self.refuse(503)

    def log_access(self, action: str) -> None:
        client = format_client(self.scope["client"])
        self.conn.log_event(
            "websocket", action, {"path": self.log_path, "client": client}
        )
