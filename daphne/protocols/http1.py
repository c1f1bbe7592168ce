"""HTTP/1.1 connections: llhttp (through httptools) on a Twisted transport.

One :class:`HTTP11Connection` per connection. Its
:class:`~.http1_reader.RequestReader` feeds the parser and turns each request
head into an :class:`~daphne.http.exchange.HTTPExchange`; its
:class:`~.http1_writer.ResponseWriter` frames the responses. The connection
itself answers the exchanges one at a time (pipelined ones wait their turn),
keeps the timers, and runs flow control both ways.

A request with ``Upgrade: websocket`` is parsed here too; once its head is
complete the connection hands itself over to a
:class:`~daphne.websocket.session.WebSocketSession` (as its carrier) and
forwards reads, connection loss and flow control to it.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from ..access import describe_client
from ..http.errors import HTTPError, RequestTimeout
from ..http.exchange import HTTPExchange, ResponseState
from ..http.scope import format_address, peer_proxy
from ..websocket.session import WebSocketSession
from . import direct
from .http1_reader import RequestReader
from .http1_upgrade import WebSocketCarrier
from .http1_writer import ResponseWriter
from .http2_handover import HTTP2Handover

logger = logging.getLogger(__name__)


#: Draining, a new connection gets at most this many seconds to send its
#: first request (within its request-head timeout and --shutdown-timeout).
FIRST_REQUEST_GRACE = 1.0


class Deadline(enum.Enum):
    """What the connection timer is waiting for (one timer, moved on)."""

    #: No request in progress: close when it fires.
    IDLE = "idle"
    #: A request head has begun: 408 if it is not complete in time.
    HEAD = "head"
    #: A request body is arriving: 408 if it stalls.
    BODY = "body"
    #: Closing: abort if the client does not read what is left.
    ABORT = "abort"
    #: The WebSocket session's next deadline (see ``set_timer``).
    SESSION = "session"


class ReadPause(enum.Enum):
    """Why the connection stopped reading; it reads again when none is left."""

    #: The application's input queue is full.
    APP = "app"
    #: Requests are queued behind the one being answered.
    PIPELINE = "pipeline"
    #: A broken request waits until the response under way is complete.
    ERROR = "error"


# What every request reads, as globals (see daphne.http.exchange.IDLE).
IDLE_DEADLINE = Deadline.IDLE
HEAD_DEADLINE = Deadline.HEAD
BODY_DEADLINE = Deadline.BODY
APP_PAUSE = ReadPause.APP
SESSION_DEADLINE = Deadline.SESSION


@implementer(IPushProducer)
class HTTP11Connection(WebSocketCarrier, HTTP2Handover, protocol.Protocol):
    """One HTTP/1.1 connection: exchanges in order, keep-alive, pipelining."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.config = factory.config
        self.reactor = factory.reactor
        self.host = factory.host
        self.reader = RequestReader(self)
        self.writer = ResponseWriter(self)
        #: The exchange whose response is being produced.
        self.request: HTTPExchange | None = None
        #: Exchanges parsed ahead of ``request`` (a short list: at most
        #: max_pipelined_requests, and empty lists are small).
        self.pipeline: list[HTTPExchange] = []
        #: Exchanges whose application is still running. (Dicts used as sets
        #: here: an empty set costs every idle WebSocket 216 bytes, a dict 64.)
        self.running: dict[HTTPExchange, None] = {}
        self.disconnected = False
        #: No more reads or requests: the connection closes once written out.
        self.closing = False
        #: The server is stopping: finish the request under way, then close.
        self.draining = False
        self.write_paused = False
        self.read_pauses: dict[ReadPause, None] = {}
        #: An error found while an earlier response was still being produced.
        self.deferred_error: HTTPError | None = None
        #: Registered with the transport as its (streaming) producer.
        self.registered = False
        #: The TCP transport ``send`` may write to directly (None: TLS, tests).
        self.direct: Any = None
        #: The WebSocket (or HTTP/2 connection) this connection was handed to.
        self.websocket: WebSocketSession | Any = None
        # Connection timer: a deadline for the head, the body or idleness,
        # checked lazily so that keep-alive requests do not each make a timer.
        self.timer: Any = None
        self.deadline = 0.0
        self.deadline_kind: Deadline | None = None
        #: The -t/--http-timeout timer of the request being answered (it
        #: outlives requests answered in time; see begin): None, or pending.
        self.http_timer: Any = None

    # -- Twisted protocol ------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        self.client = format_address(transport.getPeer())
        self.server = format_address(transport.getHost())
        self.scheme = "https" if ISSLTransport.providedBy(transport) else "http"
        #: Proxy headers to believe from this peer (None: it is not trusted).
        self.proxy = peer_proxy(self.config, self.client)
        transport.registerProducer(self, True)
        self.registered = True
        # Small writes (WebSocket frames, streamed bodies) go out at once.
        # (UNIX sockets and pipes have no such option.)
        with contextlib.suppress(AttributeError, OSError, NotImplementedError):
            transport.setTcpNoDelay(True)
        self.direct = direct.direct_transport(transport)
        self.factory.connection_made(self)
        if self.factory.http2:
            self.watch_for_http2()
        # A connection that never sends a byte is closed like an idle one.
        self.set_deadline(Deadline.IDLE, self.config.request_head_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self.closing or self.deferred_error is not None:
            return
        if self.websocket is not None:
            self.websocket.data_received(data)
            return
        reader = self.reader
        try:
            rest = reader.feed(data)
        except HTTPError as error:
            self.request_error(error)
            return
        if rest is not None:
            if reader.h2c is not None:
                self.start_h2c(rest)
            else:
                self.start_websocket(rest)
            return
        if reader.in_head and self.request is None:
            if self.deadline_kind is not HEAD_DEADLINE:
                self.set_deadline(HEAD_DEADLINE, self.config.request_head_timeout)
        elif reader.parsing is not None:
            # (Checked here too: a read usually ends with the request whole,
            # and this saves the call.)
            self.arm_body_deadline()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.disconnected = True
        self.closing = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.stop_http_timer()
        current = self.request
        if current is not None:
            current.gone = True
            if current.state is ResponseState.BODY:
                # The client left mid-body: log what it was sent (the
                # exchange writes nothing more, so this is its one line).
                self.factory.log_exchange(current)
        for request in self.running:
            request.gone = True
            request.instance.put({"type": "http.disconnect"})
            request.instance.disconnected()
        self.pipeline.clear()
        if self.websocket is not None:
            self.websocket.connection_lost(reason)
        self.factory.connection_lost(self)

    # -- IPushProducer: the transport's write buffer is full / drained ---------

    def pauseProducing(self) -> None:
        self.write_paused = True
        if self.websocket is not None:
            self.websocket.pause_sending()
        elif self.request is not None and self.request.instance is not None:
            self.request.instance.pause_sending()

    def resumeProducing(self) -> None:
        self.write_paused = False
        if self.websocket is not None:
            self.websocket.resume_sending()
        elif self.request is not None and self.request.instance is not None:
            self.request.instance.resume_sending()

    def stopProducing(self) -> None:
        self.write_paused = False

    # -- reading flow control --------------------------------------------------

    def pause_for(self, reason: ReadPause) -> None:
        if not self.read_pauses and not self.disconnected:
            self.transport.pauseProducing()
            if self.deadline_kind is Deadline.BODY:
                self.deadline_kind = None  # the client is not the slow one
        self.read_pauses[reason] = None

    def resume_for(self, reason: ReadPause) -> None:
        if reason in self.read_pauses:
            del self.read_pauses[reason]
            if not self.read_pauses and not self.disconnected:
                self.transport.resumeProducing()
                if self.deadline_kind is None:
                    self.arm_body_deadline()

    # The application's pause, for the exchange (Writer) and the WebSocket
    # (Carrier); HTTP/1.1 answers one of them at a time.

    def pause_reading(self, exchange: HTTPExchange | None = None) -> None:
        self.pause_for(ReadPause.APP)

    def resume_reading(self, exchange: HTTPExchange | None = None) -> None:
        self.resume_for(ReadPause.APP)

    # -- timers ----------------------------------------------------------------

    def set_deadline(self, kind: Deadline, delay: float) -> None:
        self.deadline_kind = kind
        self.deadline = self.reactor.seconds() + delay
        timer = self.timer
        if timer is None or not timer.active():
            self.timer = self.reactor.callLater(delay, self.deadline_reached)
        elif timer.getTime() > self.deadline:
            timer.reset(delay)

    def arm_body_deadline(self) -> None:
        """Time the client on the request body, unless it is waiting for us:
        reading paused by the server, or a 100 Continue not sent yet."""
        reader = self.reader
        if reader is None or reader.parsing is None or self.read_pauses or self.closing:
            return
        request = reader.parsing
        if request.expect_continue and request.body_size == 0:
            return
        self.set_deadline(Deadline.BODY, self.config.request_body_timeout)

    def deadline_reached(self) -> None:
        self.timer = None
        kind = self.deadline_kind
        if kind is None or self.disconnected:
            return
        if kind is SESSION_DEADLINE:
            # (The session checks its own deadlines, early or not.)
            self.deadline_kind = None
            self.websocket.timer_fired()
            return
        remaining = self.deadline - self.reactor.seconds()
        if remaining > 0:
            self.timer = self.reactor.callLater(remaining, self.deadline_reached)
            return
        self.deadline_kind = None
        if kind is Deadline.HEAD:
            self.request_error(RequestTimeout("Request head not received in time"))
        elif kind is Deadline.BODY:
            self.request_error(RequestTimeout("Request body not received in time"))
        elif kind is Deadline.ABORT:
            self.transport.abortConnection()
        else:
            self.close()

    def set_timer(self, delay: float) -> None:
        """The WebSocket session's timer (see ``Carrier``): the connection's
        one timer, which timed the request head, serves the socket too, so an
        idle WebSocket keeps a single ``DelayedCall``."""
        if not self.closing:
            self.set_deadline(SESSION_DEADLINE, delay)

    def arm_http_timer(self) -> None:
        """Time the request being answered: from its start, and again from
        the end of its body (see HTTPExchange.http_timeout_reached)."""
        timeout = self.config.http_timeout
        if timeout is None:
            return
        # One timer per connection, moved on for each request: a reset costs
        # a twentieth of a new call and its cancellation. (It is None once
        # fired or cancelled, so a timer here is pending.)
        timer = self.http_timer
        if timer is not None:
            timer.reset(timeout)
        else:
            self.http_timer = self.reactor.callLater(timeout, self.http_timed_out)

    def stop_http_timer(self) -> None:
        timer, self.http_timer = self.http_timer, None
        if timer is not None:
            timer.cancel()

    def http_timed_out(self) -> None:
        self.http_timer = None
        if self.request is not None:
            self.request.http_timeout_reached()

    # -- exchanges, from the reader --------------------------------------------

    def head_received(self, request: HTTPExchange) -> None:
        """A request head is complete: answer it now, or queue it."""
        self.deadline_kind = None
        if self.request is None:
            self.begin(request)
        else:
            self.pipeline.append(request)
            self.pause_for(ReadPause.PIPELINE)

    def body_received(self, request: HTTPExchange, body: bytes, more: bool) -> None:
        event = {"type": "http.request", "body": body, "more_body": more}
        if not request.deliver(event):
            self.pause_for(ReadPause.APP)
        if not more:
            if self.deadline_kind is BODY_DEADLINE:
                self.deadline_kind = None
            if request is self.request and self.config.http_timeout is not None:
                self.arm_http_timer()

    def begin(self, request: HTTPExchange) -> None:
        """Make ``request`` the one being answered and start its application."""
        self.request = request
        if self.closing:
            request.keep_alive = False
        limits = self.factory.limits
        if limits is not None and not limits.admit_request(self, request):
            return
        self.running[request] = None
        if self.config.http_timeout is not None:
            self.arm_http_timer()
        request.start(self.host)
        if self.write_paused:
            request.instance.pause_sending()

    def finish(self, request: HTTPExchange | None, keep_alive: bool) -> None:
        """The current exchange is over: next request, idle, or close."""
        if request is not None and request.instance is not None:
            request.instance.put({"type": "http.disconnect"})
            request.instance.resume_sending()
        if request is not self.request:
            keep_alive = False
        self.request = None
        # A full queue of an instance that is done must not stall the next one.
        if self.read_pauses:
            self.resume_for(APP_PAUSE)
        if not keep_alive or self.closing or self.draining:
            self.close()
            return
        if self.pipeline:
            self.begin(self.pipeline.pop(0))
            if not self.pipeline:
                self.resume_for(ReadPause.PIPELINE)
            return
        if self.deferred_error is not None:
            self.request_error(self.deferred_error)
            return
        if self.reader.in_head:
            self.set_deadline(HEAD_DEADLINE, self.config.request_head_timeout)
        else:
            self.set_deadline(IDLE_DEADLINE, self.config.keep_alive_timeout)

    def request_error(self, error: HTTPError) -> None:
        """The client sent something unacceptable: answer it and close."""
        self.deadline_kind = None
        if self.disconnected:
            return
        request = self.request
        reader = self.reader
        if request is not None and request is reader.parsing:
            # The body of the request being answered is broken.
            logger.info(
                "Refused request body from %s: %s", describe_client(self.client), error
            )
            self.closing = True
            request.abort(error.status)
            return
        if request is not None and not request.finished:
            # A response is under way for an earlier request: finish it
            # first. A queued request whose body broke must never start.
            broken = reader.parsing
            if broken is not None and broken in self.pipeline:
                self.pipeline.remove(broken)
            reader.parsing = None
            self.deferred_error = error
            self.pause_for(ReadPause.ERROR)
            return
        self.closing = True
        logger.info("Refused request from %s: %s", describe_client(self.client), error)
        self.writer.write_error(None, error.status, str(error), error.headers)

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Close once written out; abort if the client does not read it."""
        self.closing = True
        if not self.disconnected:
            # Nothing more will be produced. Unregistered, the transport
            # closes once drained; registered and paused, Twisted would resume
            # the producer instead and the close would wait for the abort.
            self.unregister_producer()
            self.transport.loseConnection()
            self.set_deadline(Deadline.ABORT, self.config.close_timeout)

    def unregister_producer(self) -> None:
        if self.registered:
            self.registered = False
            self.transport.unregisterProducer()

    def shutdown(self) -> None:
        """Server is stopping: close when idle, after the current response."""
        self.draining = True
        if self.websocket is not None:
            self.websocket.shutdown()
            return
        reader = self.reader
        if self.request is None and reader.parsing is None and not self.disconnected:
            if reader.messages == 0:
                # Accepted just before the drain began: its client has most
                # likely sent a request that is still on its way, and closing
                # now would fail it (a worker replaced under load). Unlike on
                # a keep-alive connection, a client does not retry that. It
                # gets a moment to arrive, and is answered.
                left = self.deadline - self.reactor.seconds()
                self.set_deadline(Deadline.IDLE, min(left, FIRST_REQUEST_GRACE))
                return
            self.close()

    # -- Writer: framing the responses -----------------------------------------

    def send(self, data: bytes) -> None:
        """Write ``data``; on plain TCP with nothing queued, send it now."""
        if self.direct is not None:
            data = direct.send(self.direct, data)
            if not data:
                return
        self.transport.write(data)

    def reset(self, request: HTTPExchange) -> None:
        """Abandon a response that already started: deliver what was sent
        (the client sees it cut short), log it, then close."""
        if request is self.request and not self.disconnected:
            # (Once disconnected, connectionLost has logged it.)
            self.factory.log_exchange(request)
        self.finish(request, keep_alive=False)

    def application_ended(self, request: HTTPExchange) -> None:
        limits = self.factory.limits
        if limits is not None and request in self.running:
            limits.release()
        self.running.pop(request, None)
