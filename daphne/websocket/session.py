"""One WebSocket, from its validated upgrade request to its close.

A :class:`WebSocketSession` is the :class:`~daphne.hosts.Sink` of the socket's
application instance. It holds the handshake until the application answers
``websocket.connect``; a refusal (``websocket.close``, the
``websocket.http.response`` denial extension, an exception, a timeout) is
answered as plain HTTP by an exchange of the connection, so it gets the same
framing and error pages as any response. Once accepted, the framing engine
(:mod:`.engine`) carries the messages.

The session owns the socket's deadlines (connect timeout, lifetime, idle
pings, close handshake) and its flow control both ways. The deadlines are
plain times; one timer of the carrier (:meth:`Carrier.set_timer`) wakes the
session at the earliest of them, and is moved lazily: a ``DelayedCall`` costs
an idle socket about 350 bytes, and every cancelled one stays in the reactor's
queue until it would have fired. It runs on a :class:`Carrier`: today an HTTP/1.1
connection, later an HTTP/2 stream (RFC 8441).
"""

from __future__ import annotations

import enum
import logging
import math
from typing import Any, Protocol

from twisted.python.failure import Failure

from ..access import describe_client, format_client
from ..config import Config
from ..hosts import ASGIProtocolError, ClientDisconnected, Event, Host, Instance
from ..http.exchange import HTTPExchange
from .engine import Engine, EngineFactory
from .handshake import accept_headers, extension_offers, response_head

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

#: The request header carrying extension offers (RFC 6455 section 9.1).
EXTENSIONS = b"sec-websocket-extensions"

#: The session's deadlines (attribute names), and what runs when each passes.
DEADLINES = {
    "connect_at": "connect_timed_out",
    "lifetime_at": "lifetime_expired",
    "ping_at": "ping",
    "close_at": "close_timed_out",
}

#: A deadline this close (in seconds) counts as passed: a timer moved by a
#: relative delay can land a rounding error before the absolute deadline.
DUE_SLACK = 1e-6


def next_deadline(session: WebSocketSession) -> tuple[str | None, float]:
    """A session's earliest deadline: ``(attribute, time)``, or ``(None, inf)``."""
    due, earliest = None, math.inf
    for name in DEADLINES:
        deadline = getattr(session, name)
        if deadline is not None and deadline < earliest:
            due, earliest = name, deadline
    return due, earliest


def outgoing_message(event: Event) -> tuple[bytes, bool]:
    """``(payload, binary)`` of a ``websocket.send`` event; ``ValueError``
    names what is wrong with it."""
    text = event.get("text")
    data = event.get("bytes")
    if text is not None and data is None:
        if type(text) is not str:
            raise ValueError(
                f"websocket.send text must be str, not {type(text).__name__}"
            )
        return text.encode("utf-8"), False
    if data is not None and text is None:
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise ValueError(
                    f"websocket.send bytes must be bytes, not {type(data).__name__}"
                )
            data = bytes(data)
        return data, True
    raise ValueError("websocket.send needs exactly one of 'bytes' and 'text'")


def close_arguments(event: Event) -> tuple[int, str]:
    """``(code, reason)`` of a ``websocket.close`` event; ``ValueError``
    names what is wrong with it."""
    code = event.get("code", 1000)
    reason = event.get("reason") or ""
    if isinstance(code, bool) or not isinstance(code, int):
        raise ValueError(f"Invalid WebSocket close code {code!r}")
    if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ValueError(f"WebSocket close code {code} may not be sent")
    if not isinstance(reason, str):
        raise ValueError(f"WebSocket close reason must be str, not {type(reason)}")
    return code, reason


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


#: Read on every message, as a global (see daphne.http.exchange.IDLE).
OPEN = Phase.OPEN


class Carrier(Protocol):
    """What a session needs of the connection (or stream) it runs on."""

    config: Config
    reactor: Any
    host: Host
    transport: Any
    write_paused: bool

    def send(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Close once written out (abort if the client does not read)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def unregister_producer(self) -> None: ...

    def accepted(self) -> None:
        """The handshake was accepted: nothing more is answered as HTTP (the
        carrier may let go of what only HTTP needed)."""

    def set_timer(self, delay: float) -> None:
        """Call the session's ``timer_fired`` in ``delay`` seconds (or
        earlier: the session checks its deadlines). Ignored once the carrier
        is closing (its own close timeout ends it)."""

    def denial_exchange(self, scope: dict) -> HTTPExchange:
        """An exchange that answers the held handshake as plain HTTP (the
        ``websocket.http.response`` denial extension)."""

    def refuse(
        self, scope: dict, status: int, detail: str = "", headers: Any = ()
    ) -> HTTPExchange:
        """Answer the handshake with an error page and close."""

    def log_event(self, protocol: str, action: str, details: dict) -> None: ...

    def session_ended(self) -> None:
        """The session's application instance has ended (once)."""


class WebSocketSession:
    """One WebSocket's state, timers and events, between its carrier and its
    application instance."""

    __slots__ = (
        "conn",
        "config",
        "reactor",
        "scope",
        "key",
        "engines",
        "engine",
        "phase",
        "instance",
        "refusal",
        "early",
        "read_paused",
        "last_seen",
        "ping_sent",
        *DEADLINES,
    )

    def __init__(
        self, conn: Carrier, scope: dict, key: bytes, engines: EngineFactory
    ) -> None:
        self.conn = conn
        self.config: Config = conn.config
        self.reactor = conn.reactor
        self.scope = scope
        #: The client's Sec-WebSocket-Key, for the accept key.
        self.key = key
        self.engines = engines
        self.engine: Engine | None = None
        self.phase = Phase.HANDSHAKE
        self.instance: Instance | None = None
        #: The HTTP exchange answering a refused handshake.
        self.refusal: HTTPExchange | None = None
        #: Client bytes that arrived while the handshake was held.
        self.early = b""
        self.read_paused = False
        self.last_seen = 0.0
        #: When the unanswered ping went out, or None.
        self.ping_sent: float | None = None
        # Deadlines (reactor times, or None; see timer_fired): connect timeout,
        # lifetime, the next look at idleness (or at the unanswered ping), and
        # the close handshake's end.
        self.connect_at = self.lifetime_at = self.ping_at = self.close_at = None

    @property
    def log_path(self) -> str:
        """The path, as log messages show it (made when needed: rarely)."""
        return self.scope["raw_path"].decode("latin-1")

    # -- from the carrier --------------------------------------------------------

    def start(self, rest: bytes) -> None:
        """Start the application and hold the handshake for its answer;
        ``rest`` is whatever the client sent after the upgrade request."""
        conn = self.conn
        self.early = rest
        self.instance = conn.host.start(self.scope, self)
        self.instance.put({"type": "websocket.connect"})
        if conn.write_paused:
            self.instance.pause_sending()
        self.log_access("connecting")
        timeout = self.config.websocket_connect_timeout
        if timeout is not None:
            self.connect_at = self.reactor.seconds() + timeout
            self.arm()

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase is OPEN or phase is Phase.CLOSING:
            self.last_seen = self.reactor.seconds()
            if self.ping_sent is not None:
                self.answered_ping()
            self.engine.feed(data)
        elif phase is Phase.HANDSHAKE:
            # A client must wait for the 101; keep (a little of) what it sends.
            self.early += data
            if len(self.early) > MAX_EARLY_DATA:
                logger.info(
                    "WebSocket client %s sent too much before the handshake",
                    describe_client(self.scope["client"]),
                )
                self.conn.transport.abortConnection()
        # Refused or closed: the connection is closing; nothing is read.

    def connection_lost(self, reason: Failure) -> None:
        if self.engine is not None:
            self.engine.connection_lost(reason)  # the engine reports closed()
        else:
            self.closed(1006, "")

    def pause_sending(self) -> None:
        if self.instance is not None:
            self.instance.pause_sending()

    def resume_sending(self) -> None:
        if self.instance is not None:
            self.instance.resume_sending()

    def shutdown(self) -> None:
        """The server is stopping: close with 1001 (or refuse a held handshake)."""
        if self.phase is Phase.OPEN:
            self.close(1001)
        elif self.phase is Phase.HANDSHAKE:
            self.refuse(503)

    # -- from the engine ---------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.conn.send(data)

    def close_transport(self, abort: bool) -> None:
        if abort:
            self.conn.transport.abortConnection()
        else:
            self.conn.close()  # aborts if the client does not read the rest

    def unregister_producer(self) -> None:
        self.conn.unregister_producer()

    def message(self, payload: bytes, binary: bool) -> None:
        instance = self.instance
        if instance is None:
            return  # the application has ended; the socket is closing
        if binary:
            event = {"type": "websocket.receive", "bytes": payload}
        else:
            event = {"type": "websocket.receive", "text": payload.decode("utf-8")}
        if not instance.put(event):
            self.read_paused = True
            self.conn.pause_reading()

    def close_sent(self) -> None:
        """A close frame is going out: nothing but the close handshake follows."""
        self.phase = Phase.CLOSING
        self.cancel_timers()

    def awaiting_close(self) -> None:
        if self.close_at is None:
            self.close_at = self.reactor.seconds() + self.config.close_timeout
            self.arm()

    def closed(self, code: int, reason: str) -> None:
        """The connection is gone (Twisted reports that once)."""
        self.phase = Phase.CLOSED
        self.cancel_timers()
        self.log_access("disconnected")
        instance = self.instance
        if instance is None:
            return  # the application has ended already
        instance.put({"type": "websocket.disconnect", "code": code, "reason": reason})
        instance.disconnected()

    # -- Sink: events from the application ---------------------------------------

    def handle_reply(self, event: Event) -> bool:
        try:
            kind = event["type"]
        except (TypeError, KeyError):
            self.fail(f"Application sent {event!r}, which is not an ASGI event")
        phase = self.phase
        if phase is OPEN:
            if kind == "websocket.send":
                try:
                    payload, binary = outgoing_message(event)
                except ValueError as exc:
                    self.fail(str(exc))
                self.engine.send_message(payload, binary)
            elif kind == "websocket.close":
                try:
                    code, reason = close_arguments(event)
                except ValueError as exc:
                    self.fail(str(exc))
                self.close(code, reason)
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
                self.refusal = self.conn.denial_exchange(self.scope)
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
        try:
            headers = accept_headers(event.get("headers", ()))
        except ValueError as exc:
            self.fail(str(exc))
        self.connect_at = None
        conn = self.conn
        engines = self.engines
        # Compression is agreed here, transparently to the application (the
        # header's syntax was checked with the handshake).
        codec = extensions = None
        if engines.deflate.enabled:
            offers = [v for name, v in self.scope["headers"] if name == EXTENSIONS]
            agreed = engines.negotiate(extension_offers(offers)) if offers else None
            if agreed is not None:
                codec, extensions = agreed.codec, agreed.header
        self.engine = engines.engine(self, conn.transport, subprotocol, codec)
        head = response_head(
            self.key, subprotocol, headers, engines.server_header, extensions
        )
        conn.send(head)
        conn.accepted()
        self.phase = Phase.OPEN
        self.log_access("connected")
        now = self.last_seen = self.reactor.seconds()
        config = self.config
        if config.websocket_timeout is not None:
            self.lifetime_at = now + config.websocket_timeout
        if config.ping_interval:
            self.ping_at = now + config.ping_interval
        self.arm()
        if self.early:
            early, self.early = self.early, b""
            self.engine.feed(early)

    def refuse(self, status: int) -> None:
        """Answer the held handshake with an error page."""
        self.connect_at = None
        self.phase = Phase.REFUSED
        self.refusal = self.conn.refuse(self.scope, status)

    def close(self, code: int, reason: str = "") -> None:
        """Start the close handshake (the connection is dropped when the
        client answers, or after the close timeout)."""
        if self.phase is Phase.OPEN:
            self.engine.close(code, reason)

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
        self.conn.resume_reading()
        if self.engine is not None:
            self.engine.resume()

    def application_finished(self, exc: BaseException | None) -> None:
        self.instance = None
        self.conn.session_ended()
        # Nobody will drain the queue now: read on, so that the close
        # handshake can complete (messages are dropped, see message()).
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

    def arm(self) -> None:
        """Have the carrier wake the session at its earliest deadline."""
        name, when = next_deadline(self)
        if name is not None:
            self.conn.set_timer(max(0.0, when - self.reactor.seconds()))

    def timer_fired(self) -> None:
        """The carrier's timer: run every deadline that has passed, earliest
        first, then ask to be woken at the next one. (It may fire early, or
        when no deadline is left: that costs a look at four attributes.)"""
        name, when = next_deadline(self)
        while name is not None and when <= self.reactor.seconds() + DUE_SLACK:
            setattr(self, name, None)
            getattr(self, DEADLINES[name])()
            name, when = next_deadline(self)
        self.arm()

    def cancel_timers(self) -> None:
        """Drop every deadline (the connection is closing or gone)."""
        self.connect_at = self.lifetime_at = self.ping_at = self.close_at = None

    def connect_timed_out(self) -> None:
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

    def close_timed_out(self) -> None:
        if not self.engine.finished:
            logger.info("WebSocket %s did not answer its close", self.log_path)
            self.engine.drop()

    def lifetime_expired(self) -> None:
        logger.info("WebSocket %s reached its time limit; closing", self.log_path)
        self.close(1000)

    def ping(self) -> None:
        """The ping deadline: ping after ``ping_interval`` idle seconds, then
        drop the socket if nothing arrives within ``ping_timeout``. (Traffic
        does not move the deadline: it is checked against ``last_seen`` here.)"""
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
            self.engine.drop()
            return
        if self.read_paused:
            # The server is not reading, so a pong could not be seen.
            self.ping_at = now + config.ping_interval
            return
        idle_until = self.last_seen + config.ping_interval
        if idle_until > now + DUE_SLACK:
            self.ping_at = idle_until
            return
        self.ping_sent = now
        self.ping_at = now + config.ping_timeout
        self.engine.ping()

    def answered_ping(self) -> None:
        """Any traffic from the client answers the outstanding ping."""
        self.ping_sent = None
        if self.ping_at is not None:
            self.ping_at = self.reactor.seconds() + self.config.ping_interval
            self.arm()

    def log_access(self, action: str) -> None:
        client = format_client(self.scope["client"])
        self.conn.log_event(
            "websocket", action, {"path": self.log_path, "client": client}
        )
