"""HTTP/1.1 connections: llhttp (through httptools) on a Twisted transport.

:class:`HTTPFactory` builds one :class:`HTTP11Protocol` per connection. The
protocol parses requests, enforces framing and slow-client limits, and writes
responses; each request becomes an :class:`HTTPRequest`, the object the
application side talks to. ``HTTPRequest`` knows ASGI response events but not
HTTP/1.1 framing, so HTTP/2 streams can reuse it later.

A request with ``Upgrade: websocket`` is parsed here too; once its head is
complete the connection is handed to a
:class:`~daphne.ws_protocol.WebSocketProtocol`, and this protocol forwards
reads, connection loss and flow control to it.
"""

from __future__ import annotations

import contextlib
import enum
import html
import logging
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, NoReturn
from urllib.parse import unquote

import httptools
from twisted.internet import defer, protocol, tcp
from twisted.internet.interfaces import (
    IProtocolNegotiationFactory,
    IPushProducer,
    ISSLTransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from .access import format_client
from .config import Config
from .hosts import ASGIProtocolError, Event, Host, Instance
from .utils import (
    header_problem,
    is_valid_header_name,
    is_valid_header_value,
    is_valid_host,
    parse_x_forwarded_for,
)
from .ws_protocol import WebSocketFactory, WebSocketProtocol

logger = logging.getLogger(__name__)

#: Transports whose sockets ``HTTP11Protocol.send`` may write to directly:
#: Twisted's TCP connections (not TLS, whose transport is a protocol wrapper).
DIRECT_TRANSPORTS = (tcp.Connection,)

#: The WebSocket scheme for the connection's HTTP scheme.
WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}

STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
    for status in HTTPStatus
}

#: Responses that never carry a body (RFC 9110 section 6.4.1).
NO_BODY_STATUSES = frozenset({204, 304})

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class HTTPError(Exception):
    """A request the server refuses; ``status`` is the answer for the client."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class RequestTimeout(HTTPError):
    status = 408


class PayloadTooLarge(HTTPError):
    status = 413


class HeadersTooLarge(HTTPError):
    status = 431


class ResponseState(enum.Enum):
    """Where a response is; moves only forward."""

    #: Nothing received from the application yet.
    IDLE = "idle"
    #: ``http.response.start`` received; the head waits for the first body
    #: event so that a one-part response can get a ``Content-Length``.
    HEAD_PENDING = "head pending"
    #: Head written, more body to come.
    BODY = "body"
    #: Response complete.
    DONE = "done"
    #: The exchange ended badly (invalid event, timeout): nothing more is sent.
    FAILED = "failed"


_date_cache: list[Any] = [0, b""]


def http_date() -> bytes:
    """The ``Date`` header value, formatted once per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


def error_page(status: int, detail: str = "") -> tuple[bytes, bytes]:
    """A small HTML page for a status the server produces itself."""
    phrase = HTTPStatus(status).phrase
    body = f"<!DOCTYPE html><html><head><title>{status} {phrase}</title></head>"
    body += f"<body><h1>{status} {phrase}</h1>"
    if detail:
        body += f"<p>{html.escape(detail)}</p>"
    return b"text/html; charset=utf-8", (body + "</body></html>\n").encode()


def offered_subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The ``Sec-WebSocket-Protocol`` list, or HTTPError if it is invalid.

    RFC 6455 makes each name a token, and browsers send nothing else. Other
    names are refused rather than passed on: autobahn would strip and
    re-encode them (as UTF-8), so the name accepted could differ from the one
    offered, byte for byte.
    """
    names = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for token in value.split(b","):
                token = token.strip(b" \t")
                if not token:
                    continue
                if not is_valid_header_name(token):
                    raise HTTPError("Invalid Sec-WebSocket-Protocol name")
                names.append(token.decode("ascii"))
    return names


def format_address(address: Any) -> list | None:
    """``[host, port]`` for an IP address, ``None`` for a UNIX socket."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return None
    return [host, port]


class HTTPRequest:
    """One request/response exchange, independent of the connection framing.

    It is the :class:`~daphne.hosts.Sink` of its application instance: it
    checks the application's events against :class:`ResponseState` and hands
    valid ones to the connection to frame.
    """

    __slots__ = (
        "conn",
        "scope",
        "instance",
        "pending",
        "state",
        "status",
        "headers",
        "keep_alive",
        "expect_continue",
        "body_complete",
        "body_size",
        "bytes_sent",
        "length",
        "no_body",
        "app_date",
        "app_server",
        "app_close",
    )

    def __init__(
        self, conn: HTTP11Protocol, scope: dict, keep_alive: bool, expect: bool
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.instance: Instance | None = None
        #: Client events that arrived before the instance started (pipelining).
        self.pending: list[Event] | None = []
        self.state = ResponseState.IDLE
        self.status = 0
        #: Response header lines from the application, ready to write.
        self.headers: list[bytes] = []
        self.keep_alive = keep_alive
        self.expect_continue = expect
        self.body_complete = False
        self.body_size = 0
        self.bytes_sent = 0
        #: The response's promised Content-Length, or None.
        self.length: int | None = None
        #: HEAD requests and 204/304 responses carry no body.
        self.no_body = scope["method"] == "HEAD"

    def start(self, host: Host) -> None:
        self.instance = instance = host.start(self.scope, self)
        pending, self.pending = self.pending, None
        for event in pending:
            instance.put(event)

    def deliver(self, event: Event) -> bool:
        """Queue a client event; ``False`` when the instance's queue is full."""
        instance = self.instance
        if instance is not None:
            return instance.put(event)
        if self.pending is not None:
            self.pending.append(event)
        return True  # the application has ended: nobody reads this

    # -- Sink ----------------------------------------------------------------

    def receive_requested(self) -> None:
        if self.expect_continue:
            self.expect_continue = False
            if not self.body_complete and self.state is ResponseState.IDLE:
                self.conn.write_raw(self, CONTINUE)
                self.conn.arm_body_deadline()

    def resume_reading(self) -> None:
        self.conn.resume_reading("app")

    def handle_reply(self, event: Event) -> bool:
        try:
            kind = event["type"]
        except (TypeError, KeyError):
            self.fail(f"Application sent {event!r}, which is not an ASGI event")
        state = self.state
        if kind == "http.response.body" and state in (
            ResponseState.HEAD_PENDING,
            ResponseState.BODY,
        ):
            body = event.get("body", b"")
            more = event.get("more_body", False)
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    self.fail(f"Response body must be bytes, not {type(body).__name__}")
                body = bytes(body)
            if self.no_body:
                body = b""
            elif self.length is not None and self.bytes_sent + len(body) > self.length:
                self.fail("Response body longer than its Content-Length")
            self.bytes_sent += len(body)
            if not more:
                self.state = ResponseState.DONE
            elif state is ResponseState.HEAD_PENDING:
                self.state = ResponseState.BODY
            if state is ResponseState.HEAD_PENDING:
                self.conn.write_head(self, body, more)
            else:
                self.conn.write_body(self, body, more)
        elif kind == "http.response.start" and state is ResponseState.IDLE:
            self._start_response(event)
        elif state is ResponseState.FAILED or self.conn.disconnected:
            # The exchange is over; late events are dropped, not errors.
            return False
        else:
            self.fail(f"Unexpected ASGI event {kind!r} in response state {state.value}")
        return True

    def _start_response(self, event: Event) -> None:
        status = event.get("status")
        if (
            not isinstance(status, int)
            or isinstance(status, bool)
            or not 200 <= status <= 599
        ):
            self.fail(f"Invalid response status {status!r}")
        status = int(status)
        # One pass over the headers: validate, note what the server must know,
        # and drop the ones only the server may send.
        lines = []
        app_date = app_server = app_close = False
        try:
            for name, value in event.get("headers", ()):
                problem = header_problem(name, value)
                if problem is not None:
                    self.fail(f"Response {problem}")
                lower = name.lower()
                if lower == b"content-length":
                    if not value.strip().isdigit() or self.length is not None:
                        self.fail(f"Invalid response Content-Length {value!r}")
                    self.length = int(value)
                elif lower == b"transfer-encoding":
                    continue  # framing is the server's job
                elif lower == b"connection":
                    # Persistence is the server's call; it sends the one header.
                    app_close = app_close or b"close" in value.lower()
                    continue
                elif lower == b"date":
                    app_date = True
                elif lower == b"server":
                    app_server = True
                lines.append(b"%s: %s\r\n" % (name, value))
        except (TypeError, ValueError):
            self.fail("Response headers must be an iterable of [name, value] pairs")
        self.app_date = app_date
        self.app_server = app_server
        self.app_close = app_close
        if status in NO_BODY_STATUSES:
            self.no_body = True
        self.status = status
        self.headers = lines
        self.state = ResponseState.HEAD_PENDING

    def fail(self, message: str) -> NoReturn:
        """Refuse an invalid application event: log, answer, raise to the app."""
        logger.error(
            "%s (request %s %s)", message, self.scope["method"], self.log_target
        )
        self.abort(500)
        raise ASGIProtocolError(message)

    def abort(self, status: int, detail: str = "") -> None:
        """End the exchange now: an error page if possible, else close."""
        state = self.state
        self.state = ResponseState.FAILED
        if state in (ResponseState.IDLE, ResponseState.HEAD_PENDING):
            self.conn.write_error(self, status, detail)
        elif state is ResponseState.BODY:
            self.conn.close_after(self)

    def application_finished(self, exc: BaseException | None) -> None:
        self.instance = None  # break the request <-> instance cycle early
        self.conn.instance_finished(self)
        # (Cancellation is a BaseException, not an Exception: not an error.)
        if isinstance(exc, Exception) and not isinstance(exc, ASGIProtocolError):
            logger.error(
                "Exception inside application handling %s %s",
                self.scope["method"],
                self.log_target,
                exc_info=exc,
            )
        if self.state in (ResponseState.DONE, ResponseState.FAILED):
            return
        if self.conn.disconnected:
            return
        if exc is None:
            logger.error(
                "Application returned without completing the response to %s %s",
                self.scope["method"],
                self.log_target,
            )
        self.abort(500)

    # -- helpers -------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether the exchange is over (answered, or ended badly)."""
        return self.state in (ResponseState.DONE, ResponseState.FAILED)

    @property
    def log_target(self) -> str:
        """The request target as sent, for log lines."""
        query = self.scope["query_string"]
        raw = self.scope["raw_path"].decode("latin-1")
        return f"{raw}?{query.decode('latin-1')}" if query else raw

    def timed_out(self) -> None:
        if self.state in (ResponseState.DONE, ResponseState.FAILED):
            return
        logger.warning("Request %s %s timed out", self.scope["method"], self.log_target)
        self.keep_alive = False
        self.abort(503, "The server did not respond within the time limit.")


@implementer(IPushProducer)
class HTTP11Protocol(protocol.Protocol):
    """One HTTP/1.1 connection: parsing, framing, keep-alive and pipelining."""

    def __init__(self, factory: HTTPFactory) -> None:
        self.factory = factory
        self.config = factory.config
        self.reactor = factory.reactor
        self.parser = httptools.HttpRequestParser(self)
        #: The request whose response is being produced.
        self.request: HTTPRequest | None = None
        #: The request whose body is being parsed (may be pipelined).
        self.parsing: HTTPRequest | None = None
        #: Requests parsed ahead of ``request`` (a short list: at most
        #: max_pipelined_requests, and empty lists are small).
        self.pipeline: list[HTTPRequest] = []
        #: Requests whose application is still running.
        self.running: set[HTTPRequest] = set()
        self.disconnected = False
        #: No more reads or requests: the connection closes once written out.
        self.closing = False
        #: The server is stopping: finish the request under way, then close.
        self.draining = False
        self.write_paused = False
        self.read_pauses: set[str] = set()
        #: An error found while an earlier response was still being produced.
        self.deferred_error: HTTPError | None = None
        #: Registered with the transport as its (streaming) producer.
        self.registered = False
        #: The TCP transport ``send`` may write to directly (None: TLS, tests).
        self.direct: Any = None
        #: The WebSocket this connection was upgraded to.
        self.websocket: WebSocketProtocol | None = None
        #: Scope of a parsed WebSocket upgrade request, until the hand-over.
        self.websocket_scope: dict | None = None
        self.upgrade_websocket = False
        # Request head being parsed.
        self.url = b""
        self.req_headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.header_count = 0
        #: Requests begun on this connection, and raw bytes of the head being
        #: received (see dataReceived).
        self.messages = 0
        self.head_bytes = 0
        self.host_count = 0
        self.transfer_encoding: bytes | None = None
        #: The request's declared Content-Length (0 if none).
        self.content_length = 0
        self.root_path_header: str | None = None
        self.expect = False
        self.in_head = False
        self.partial_body: bytes | None = None
        # Connection timer: a deadline for the head or for idleness, checked
        # lazily so that keep-alive requests do not each create a timer.
        self.timer: Any = None
        self.deadline = 0.0
        self.deadline_kind: str | None = None
        #: The -t/--http-timeout timer of the request being answered (it
        #: outlives requests answered in time; see begin).
        self.http_timer: Any = None

    # -- Twisted protocol ------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        self.client = format_address(transport.getPeer())
        self.server = format_address(transport.getHost())
        self.scheme = "https" if ISSLTransport.providedBy(transport) else "http"
        transport.registerProducer(self, True)
        self.registered = True
        # Small writes (WebSocket frames, streamed bodies) go out at once.
        # (UNIX sockets and pipes have no such option.)
        with contextlib.suppress(AttributeError, OSError, NotImplementedError):
            transport.setTcpNoDelay(True)
        self.direct = transport if isinstance(transport, DIRECT_TRANSPORTS) else None
        self.factory.connection_made(self)
        # A connection that never sends a byte is closed like an idle one.
        self.set_deadline("idle", self.config.request_head_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self.closing or self.deferred_error is not None:
            return
        if self.websocket is not None:
            self.websocket.data_received(data)
            return
        message = self.messages
        continuing = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            error = exc.__context__
            if error is None:
                error = HTTPError("Malformed request")
            elif not isinstance(error, HTTPError):
                logger.error("Error while parsing a request", exc_info=error)
                error = HTTPError("Internal server error", 500)
            self.request_error(error)
            return
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            if self.websocket_scope is not None:
                self.start_websocket(rest)
                return
            # Another protocol (h2c, ...): the request was answered as plain
            # HTTP; keep parsing what follows with a fresh parser.
            self.parser = httptools.HttpRequestParser(self)
            if rest:
                self.dataReceived(rest)
            return
        except httptools.HttpParserError as exc:
            self.request_error(HTTPError(str(exc) or "Malformed request"))
            return
        if self.partial_body is not None:
            self.flush_body(more=True)
        if self.in_head:
            # llhttp holds an unterminated header line back from on_header,
            # so count raw bytes too (an over-estimate of at most one read).
            if continuing and message == self.messages:
                self.head_bytes += len(data)
            else:
                self.head_bytes = len(data)
            if self.head_bytes > self.config.max_request_head_size:
                self.request_error(HeadersTooLarge("Request header fields too large"))
                return
        if self.in_head and self.request is None and self.deadline_kind != "head":
            self.set_deadline("head", self.config.request_head_timeout)
        else:
            self.arm_body_deadline()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.disconnected = True
        self.closing = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.http_timer is not None and self.http_timer.active():
            self.http_timer.cancel()
        self.http_timer = None
        for request in self.running:
            request.instance.put({"type": "http.disconnect"})
            request.instance.disconnected()
        self.pipeline.clear()
        if self.websocket is not None:
            self.websocket.connection_lost(reason)
        self.factory.connection_lost(self)

    # -- IPushProducer: the transport's write buffer is full / drained ---------

    def pauseProducing(self) -> None:
        self.write_paused = True
        active = self.websocket or self.request
        if active is not None and active.instance is not None:
            active.instance.pause_sending()

    def resumeProducing(self) -> None:
        self.write_paused = False
        active = self.websocket or self.request
        if active is not None and active.instance is not None:
            active.instance.resume_sending()

    def stopProducing(self) -> None:
        self.write_paused = False

    # -- reading flow control --------------------------------------------------

    def pause_reading(self, reason: str) -> None:
        if not self.read_pauses and not self.disconnected:
            self.transport.pauseProducing()
            if self.deadline_kind == "body":
                self.clear_deadline()  # the client is not the slow one
        self.read_pauses.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self.read_pauses:
            self.read_pauses.discard(reason)
            if not self.read_pauses and not self.disconnected:
                self.transport.resumeProducing()
                if self.deadline_kind is None:
                    self.arm_body_deadline()

    # -- timers ----------------------------------------------------------------

    def set_deadline(self, kind: str, delay: float) -> None:
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
        request = self.parsing
        if request is None or self.read_pauses:
            return
        if request.expect_continue and request.body_size == 0:
            return
        self.set_deadline("body", self.config.request_body_timeout)

    def clear_deadline(self) -> None:
        self.deadline_kind = None

    def deadline_reached(self) -> None:
        self.timer = None
        kind = self.deadline_kind
        if kind is None or self.disconnected:
            return
        remaining = self.deadline - self.reactor.seconds()
        if remaining > 0:
            self.timer = self.reactor.callLater(remaining, self.deadline_reached)
            return
        self.deadline_kind = None
        if kind == "head":
            self.request_error(RequestTimeout("Request head not received in time"))
        elif kind == "body":
            self.request_error(RequestTimeout("Request body not received in time"))
        elif kind == "abort":
            self.transport.abortConnection()
        else:  # idle
            self.close()

    # -- httptools callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        if self.draining:
            raise HTTPError("Server is shutting down", 503)
        if len(self.pipeline) >= self.config.max_pipelined_requests:
            # llhttp parses a whole read at once; without a bound, one 64 KiB
            # read of tiny requests would become thousands of queued ones.
            raise HTTPError("Too many pipelined requests", 503)
        self.messages += 1
        self.in_head = True
        self.url = b""
        self.req_headers = []
        self.head_size = 0
        self.header_count = 0
        self.host_count = 0
        self.transfer_encoding = None
        self.content_length = 0
        self.root_path_header = None
        self.expect = False
        self.upgrade_websocket = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > self.config.max_request_head_size:
            raise HTTPError("Request line too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.config.max_request_head_size:
            raise HeadersTooLarge("Request header fields too large")
        self.header_count += 1
        if self.header_count > self.config.max_request_headers:
            raise HeadersTooLarge("Too many request header fields")
        if not is_valid_header_value(value):
            raise HTTPError(f"Invalid character in header {name.decode('latin-1')}")
        # llhttp strips leading whitespace only (RFC 9110 section 5.5).
        value = value.rstrip(b" \t")
        name = name.lower()
        if b"_" in name:
            # A proxy may treat X_Foo and X-Foo as the same header; drop
            # them so one cannot masquerade as the other.
            return
        if name == b"host":
            self.host_count += 1
            if self.host_count > 1:
                raise HTTPError("Duplicate Host header")
            if not is_valid_host(value):
                raise HTTPError("Malformed Host header")
        elif name == b"content-length":
            self.content_length = int(value)  # llhttp has validated it
            limit = self.config.max_request_body_size
            if limit is not None and self.content_length > limit:
                raise PayloadTooLarge("Request body too large")
        elif name == b"transfer-encoding":
            if self.transfer_encoding is not None:
                raise HTTPError("Duplicate Transfer-Encoding header")
            self.transfer_encoding = value
        elif name == b"expect":
            self.expect = value.lower() == b"100-continue"
        elif name == b"upgrade":
            # (Several Upgrade lines are one list, as autobahn reads them.)
            self.upgrade_websocket = self.upgrade_websocket or any(
                token.strip().lower() == b"websocket" for token in value.split(b",")
            )
        elif name == b"daphne-root-path":
            self.root_path_header = unquote(value.decode("latin-1"))
            return
        self.req_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        http_version = parser.get_http_version()
        if http_version not in ("1.1", "1.0"):
            raise HTTPError(f"HTTP/{http_version} not supported", 505)
        if http_version == "1.1" and self.host_count == 0:
            raise HTTPError("Missing Host header")
        te = self.transfer_encoding
        if parser.should_upgrade() and (te is not None or self.content_length):
            # llhttp would skip the body of an upgrade request and parse it as
            # the next request: a proxy and daphne would disagree on framing.
            raise HTTPError("Upgrade requests must not have a body")
        if self.upgrade_websocket and parser.should_upgrade():
            if self.request is not None:
                raise HTTPError("WebSocket upgrade behind an unanswered request")
            self.websocket_scope = self.build_scope(http_version, websocket=True)
            self.clear_deadline()
            return
        if te is not None and http_version == "1.0":
            # RFC 9112 6.1: an HTTP/1.0 peer may frame this differently.
            raise HTTPError("Transfer-Encoding in an HTTP/1.0 request")
        if te is not None and te.strip().lower() != b"chunked":
            # RFC 9112 6.1: only chunked is understood; anything else cannot
            # be framed safely.
            raise HTTPError("Unsupported Transfer-Encoding", 501)
        request = HTTPRequest(
            self,
            self.build_scope(http_version),
            parser.should_keep_alive(),
            self.expect and http_version == "1.1",
        )
        self.parsing = request
        self.clear_deadline()
        if self.request is None:
            self.begin(request)
        else:
            self.pipeline.append(request)
            self.pause_reading("pipeline")

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        request.body_size += len(body)
        limit = self.config.max_request_body_size
        if limit is not None and request.body_size > limit:
            raise PayloadTooLarge("Request body too large")
        if self.partial_body is not None:
            self.flush_body(more=True)
        self.partial_body = body

    def on_message_complete(self) -> None:
        if self.websocket_scope is not None:
            return  # the connection is handed over once feed_data returns
        if self.deadline_kind == "body":
            self.clear_deadline()
        self.flush_body(more=False)
        request = self.parsing
        request.body_complete = True
        self.parsing = None
        if request is self.request:
            self.arm_http_timer()

    def flush_body(self, more: bool) -> None:
        body, self.partial_body = self.partial_body, None
        event = {"type": "http.request", "body": body or b"", "more_body": more}
        if not self.parsing.deliver(event):
            self.pause_reading("app")

    # -- requests --------------------------------------------------------------

    def build_scope(self, http_version: str, websocket: bool = False) -> dict:
        url = self.url
        if b"#" in url:
            raise HTTPError("Malformed request target")
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        else:
            # absolute-form (RFC 9112 3.2.2) or asterisk-form.
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise HTTPError("Malformed request target") from None
            raw_path = parsed.path or b"/"
            query = parsed.query or b""
        path = raw_path.decode("utf-8", "replace")
        if "%" in path:
            path = unquote(path)
        root_path = self.root_path_header
        if root_path is None:
            root_path = self.config.root_path
        headers = self.req_headers
        client = self.client
        scheme = self.scheme
        if self.config.proxy_headers:
            client, scheme = parse_x_forwarded_for(
                headers,
                self.config.proxy_forwarded_address_header,
                self.config.proxy_forwarded_port_header,
                self.config.proxy_forwarded_proto_header,
                client,
                scheme,
            )
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": http_version,
            "method": self.parser.get_method().decode("ascii"),
            "scheme": scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": root_path,
            "headers": headers,
            "client": client,
            "server": self.server,
        }
        if websocket:
            del scope["method"]
            scope["type"] = "websocket"
            scope["asgi"] = {"version": "3.0", "spec_version": "2.4"}
            scope["scheme"] = WEBSOCKET_SCHEMES.get(scheme, scheme)
            scope["subprotocols"] = offered_subprotocols(headers)
            scope["extensions"] = {"websocket.http.response": {}}
        return scope

    def begin(self, request: HTTPRequest) -> None:
        """Make ``request`` the one being answered and start its application."""
        self.request = request
        if self.closing:
            request.keep_alive = False
        self.running.add(request)
        self.arm_http_timer()
        request.start(self.factory.host)
        if self.write_paused:
            request.instance.pause_sending()

    def arm_http_timer(self) -> None:
        """Time the request being answered: from its start, and again from
        the end of its body (see http_timed_out)."""
        timeout = self.config.http_timeout
        if timeout is None:
            return
        # One timer per connection, moved on for each request: a reset costs
        # a twentieth of a new call and its cancellation.
        timer = self.http_timer
        if timer is not None and timer.active():
            timer.reset(timeout)
        else:
            self.http_timer = self.reactor.callLater(timeout, self.http_timed_out)

    def http_timed_out(self) -> None:
        """The request begun, or received in full, ``http_timeout`` ago is late.

        Not while its body is still arriving: the application (or a worker,
        which sees the request only once it is complete) is not late then,
        and a client that stalls meets the body timeout. The count starts
        again when the body is complete. A body that is not arriving because
        the application does not read it, or has not asked for it with a
        100 Continue, does not stop the clock."""
        self.http_timer = None
        request = self.request
        if request is None or request.finished:
            return
        if (
            request is self.parsing
            and not request.body_complete
            and not request.expect_continue
            and "app" not in self.read_pauses
        ):
            return
        request.timed_out()

    def start_websocket(self, rest: bytes) -> None:
        """Hand the connection to a WebSocket; ``rest`` follows the head."""
        if self.http_timer is not None and self.http_timer.active():
            self.http_timer.cancel()  # (the WebSocket has timers of its own)
        self.http_timer = None
        scope, self.websocket_scope = self.websocket_scope, None
        head = [
            b"%s %s HTTP/%s\r\n"
            % (self.parser.get_method(), self.url, scope["http_version"].encode())
        ]
        # Autobahn validates the handshake from these lines: exactly the
        # headers parsed above, whose values are free of line breaks. No
        # extension is negotiated, so offers are not even parsed.
        head.extend(
            b"%s: %s\r\n" % header
            for header in self.req_headers
            if header[0] != b"sec-websocket-extensions"
        )
        head.append(b"\r\n")
        self.parser = None  # (about 1 KiB per open WebSocket)
        self.websocket = self.factory.websocket_factory.protocol(self, scope)
        self.websocket.start(b"".join(head), rest)

    def websocket_refusal(self, scope: dict) -> HTTPRequest:
        """An HTTP exchange that answers a refused WebSocket handshake."""
        request = HTTPRequest(self, {**scope, "method": "GET"}, False, False)
        request.body_complete = True
        self.request = request
        return request

    def refuse_websocket(
        self, scope: dict, status: int, detail: str = "", headers: Any = ()
    ) -> HTTPRequest:
        """Answer a WebSocket handshake with an error page and close."""
        request = self.websocket_refusal(scope)
        request.state = ResponseState.FAILED
        self.write_error(request, status, detail, headers)
        return request

    def instance_finished(self, request: HTTPRequest) -> None:
        self.running.discard(request)

    def request_error(self, error: HTTPError) -> None:
        """The client sent something unacceptable: answer it and close."""
        self.clear_deadline()
        if self.disconnected:
            return
        request = self.request
        if request is not None and request is self.parsing:
            # The body of the request being answered is broken.
            logger.info("Refused request body from %s: %s", self.client, error)
            self.closing = True
            request.abort(error.status)
            return
        if request is not None and request.state not in (
            ResponseState.DONE,
            ResponseState.FAILED,
        ):
            # A response is under way for an earlier request: finish it
            # first. A queued request whose body broke must never start.
            broken = self.parsing
            if broken is not None and broken in self.pipeline:
                self.pipeline.remove(broken)
            self.parsing = None
            self.deferred_error = error
            self.pause_reading("error")
            return
        self.closing = True
        logger.info("Refused request from %s: %s", self.client, error)
        self.write_error(None, error.status, str(error))

    def write_error(
        self, request: HTTPRequest | None, status: int, detail="", headers: Any = ()
    ) -> None:
        """Send a complete error response and close the connection."""
        content_type, body = error_page(status, detail)
        head = [STATUS_LINES[status]]
        head.extend(b"%s: %s\r\n" % header for header in headers)
        self.common_headers(head, False, False, keep_alive=False)
        head.append(b"content-type: %s\r\n" % content_type)
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        self.send(b"".join(head) + body)
        if request is not None:
            request.status = status
            request.bytes_sent = len(body)
            self.log_access(request)
        self.closing = True
        self.finish(request, keep_alive=False)

    def close_after(self, request: HTTPRequest) -> None:
        """Abandon a response that already started: deliver what was sent
        (the client sees it cut short), then close; see close()."""
        self.finish(request, keep_alive=False)

    def close(self) -> None:
        """Close once written out; abort if the client does not read it."""
        self.closing = True
        if not self.disconnected:
            # Nothing more will be produced. Unregistered, the transport
            # closes once drained; registered and paused, Twisted would resume
            # the producer instead and the close would wait for the abort.
            self.unregister_producer()
            self.transport.loseConnection()
            self.set_deadline("abort", self.config.close_timeout)

    def unregister_producer(self) -> None:
        if self.registered:
            self.registered = False
            self.transport.unregisterProducer()

    # -- writing responses -----------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write ``data``; on plain TCP with nothing queued, send it now.

        ``transport.write`` queues the bytes and sends them on the next
        reactor turn, registering and unregistering the socket for writing
        around it: two ``epoll_ctl`` calls and a loop turn per response.
        When nothing is queued, one ``send()`` does the same job; whatever the
        kernel does not take goes through ``transport.write`` as usual, so
        ordering, flow control and error handling stay Twisted's.
        """
        transport = self.direct
        if (
            transport is not None
            and not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer)
            and transport.connected
            and not transport.disconnecting
            and not transport._aborting
            # (A larger body would be copied to queue its remainder.)
            and len(data) <= transport.SEND_LIMIT
        ):
            sent = transport.writeSomeData(data)
            if type(sent) is int:
                if sent == len(data):
                    return
                data = data[sent:]
        self.transport.write(data)

    def common_headers(
        self, head: list, has_date: bool, has_server: bool, keep_alive: bool
    ) -> None:
        """Headers every response gets unless the application set them."""
        if not has_date:
            head.append(b"date: %s\r\n" % http_date())
        server = self.factory.server_header
        if server is not None and not has_server:
            head.append(server)
        if not keep_alive:
            head.append(b"connection: close\r\n")

    def write_raw(self, request: HTTPRequest, data: bytes) -> None:
        if request is self.request and not self.disconnected:
            self.send(data)

    def write_head(self, request: HTTPRequest, body: bytes, more: bool) -> None:
        """Write the response head, framed from the first body event."""
        if request is not self.request or self.disconnected:
            return
        status = request.status
        head = [STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        keep_alive = request.keep_alive and not (
            self.closing or self.draining or request.app_close
        )
        head.extend(request.headers)
        if request.length is None and not request.no_body:
            if not more:
                # One-part response: frame it with a length, not chunks.
                request.length = len(body)
                head.append(b"content-length: %d\r\n" % len(body))
            elif request.scope["http_version"] == "1.1":
                head.append(b"transfer-encoding: chunked\r\n")
            else:
                keep_alive = False  # close-delimited (RFC 9112 section 6.3)
        if not request.body_complete:
            # Answering before the whole body arrived: the rest is not read,
            # so the connection cannot be reused; say so (RFC 9110 9.6).
            keep_alive = False
        request.keep_alive = keep_alive
        request.expect_continue = False
        self.common_headers(head, request.app_date, request.app_server, keep_alive)
        if keep_alive and request.scope["http_version"] == "1.0":
            head.append(b"connection: keep-alive\r\n")
        head.append(b"\r\n")
        if body:
            head.append(self.frame(request, body, more))
        elif not more and self.chunked(request):
            head.append(LAST_CHUNK)
        data = b"".join(head)
        self.send(data)
        if not more:
            self.response_done(request)

    @staticmethod
    def chunked(request: HTTPRequest) -> bool:
        return (
            request.length is None
            and not request.no_body
            and request.scope["http_version"] == "1.1"
        )

    def frame(self, request: HTTPRequest, body: bytes, more: bool) -> bytes:
        if self.chunked(request):
            chunk = b"%x\r\n%s\r\n" % (len(body), body)
            return chunk if more else chunk + LAST_CHUNK
        return body

    def write_body(self, request: HTTPRequest, body: bytes, more: bool) -> None:
        if request is not self.request or self.disconnected:
            return
        if body:
            self.send(self.frame(request, body, more))
        elif not more and self.chunked(request):
            self.send(LAST_CHUNK)
        if not more:
            self.response_done(request)

    def response_done(self, request: HTTPRequest) -> None:
        length = request.length
        if length is not None and request.bytes_sent < length and not request.no_body:
            logger.error(
                "Response to %s %s shorter than its Content-Length; closing",
                request.scope["method"],
                request.log_target,
            )
            request.keep_alive = False
        self.log_access(request)
        self.finish(request, request.keep_alive)

    def log_access(self, request: HTTPRequest) -> None:
        if self.factory.access_log is None:
            return
        scope = request.scope
        client = format_client(scope["client"])
        if scope["type"] == "websocket":
            path = scope["raw_path"].decode("latin-1")
            self.log_event("websocket", "rejected", {"path": path, "client": client})
            return
        self.log_event(
            "http",
            "complete",
            {
                "path": request.log_target,
                "status": request.status,
                "method": scope["method"],
                "client": client,
                "size": request.bytes_sent,
            },
        )

    def log_event(self, protocol: str, action: str, details: dict) -> None:
        """One access log event (see :class:`daphne.access.AccessLogGenerator`)."""
        access_log = self.factory.access_log
        if access_log is None:
            return
        try:
            access_log(protocol, action, details)
        except Exception:
            # A full disk or a closed pipe must not break requests.
            logger.exception("Access log failed; no more access log lines")
            self.factory.access_log = None

    def finish(self, request: HTTPRequest | None, keep_alive: bool) -> None:
        """The current exchange is over: next request, idle, or close."""
        if request is not None and request.instance is not None:
            request.instance.put({"type": "http.disconnect"})
            request.instance.resume_sending()
        if request is not self.request:
            keep_alive = False
        self.request = None
        # A full queue of an instance that is done must not stall the next one.
        self.resume_reading("app")
        if not keep_alive or self.closing or self.draining:
            self.close()
            return
        if self.pipeline:
            self.begin(self.pipeline.pop(0))
            if not self.pipeline:
                self.resume_reading("pipeline")
            return
        if self.deferred_error is not None:
            self.request_error(self.deferred_error)
            return
        if self.in_head:
            self.set_deadline("head", self.config.request_head_timeout)
        else:
            self.set_deadline("idle", self.config.keep_alive_timeout)

    def shutdown(self) -> None:
        """Server is stopping: close when idle, after the current response."""
        self.draining = True
        if self.websocket is not None:
            self.websocket.shutdown()
            return
        if self.request is None and self.parsing is None and not self.disconnected:
            self.close()


@implementer(IProtocolNegotiationFactory)
class HTTPFactory(protocol.ServerFactory):
    """Builds connection protocols and tracks the live connections."""

    def __init__(
        self,
        config: Config,
        host: Host,
        reactor: Any,
        access_log: Any = None,
    ) -> None:
        self.config = config
        self.host = host
        self.reactor = reactor
        self.access_log = access_log
        self.websocket_factory = WebSocketFactory(config, reactor)
        self.connections: set[HTTP11Protocol] = set()
        self._empty_waiters: list[defer.Deferred] = []
        self.server_header = (
            b"server: %s\r\n" % config.server_name.encode("latin-1")
            if config.server_name
            else None
        )

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN protocols offered on TLS endpoints (HTTP/2 joins later).

        Without this, Twisted's TLS answers an ALPN offer with an empty
        selection and OpenSSL aborts the handshake for every browser."""
        return [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> HTTP11Protocol:
        return HTTP11Protocol(self)

    def connection_made(self, conn: HTTP11Protocol) -> None:
        self.connections.add(conn)

    def connection_lost(self, conn: HTTP11Protocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._empty_waiters:
            waiters, self._empty_waiters = self._empty_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def when_empty(self) -> defer.Deferred:
        """A Deferred that fires once no connection is open."""
        if not self.connections:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._empty_waiters.append(waiter)
        return waiter
