"""One request and its response, whatever the HTTP version.

An :class:`HTTPExchange` is the :class:`~daphne.hosts.Sink` of one application
instance. It checks the application's events against :class:`ResponseState`
and hands the valid ones to its connection through the narrow
:class:`Writer` interface; the connection frames them (chunks and keep-alive
on HTTP/1.1, frames on HTTP/2). The exchange never sees the wire.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, NoReturn, Protocol

from ..hosts import ASGIProtocolError, Event, Host, Instance
from ..utils import _valid_names as valid_names
from ..utils import _valid_values as valid_values
from ..utils import header_problem

logger = logging.getLogger(__name__)

#: Responses that never carry a body (RFC 9110 section 6.4.1).
NO_BODY_STATUSES = frozenset({204, 304})


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


# The states as globals, for the code that runs on every event: on Python 3.11
# reading a member off an Enum class goes through the EnumType.__getattr__
# slot, about 900 instructions; a global costs 30.
IDLE = ResponseState.IDLE
HEAD_PENDING = ResponseState.HEAD_PENDING
BODY = ResponseState.BODY
DONE = ResponseState.DONE
FAILED = ResponseState.FAILED


class Writer(Protocol):
    """What an exchange may ask of its connection, for itself only.

    HTTP/1.1 answers one exchange at a time and ignores calls from any
    other; HTTP/2 would write each exchange's stream."""

    def send_informational(self, exchange: HTTPExchange, status: int) -> None:
        """A 1xx response (``100 Continue``) before the real one."""

    def send_head(self, exchange: HTTPExchange, body: bytes, end: bool) -> None:
        """The response head (``exchange.status``, ``exchange.headers``) with
        the first part of the body; ``end`` if it is the whole body."""

    def send_data(self, exchange: HTTPExchange, data: bytes, end: bool) -> None:
        """More of the body; ``end`` on its last part."""

    def send_error(
        self, exchange: HTTPExchange, status: int, detail: str = "", headers: Any = ()
    ) -> None:
        """A complete error page instead of the application's response."""

    def send_trailers(self, exchange: HTTPExchange, fields: list) -> None:
        """The response trailers, ending the response (HTTP/2, where the
        scope advertises ``http.response.trailers``)."""

    def reset(self, exchange: HTTPExchange) -> None:
        """Abandon a response already under way: the client sees it cut short."""

    def resume_reading(self, exchange: HTTPExchange) -> None:
        """The exchange's instance has room for client events again."""

    def application_ended(self, exchange: HTTPExchange) -> None:
        """The exchange's application instance has ended."""

    def seconds(self) -> float:
        """The connection's clock (its reactor's ``seconds``)."""


# What _start_response does with a response header, by its name as the
# application spells it (an application sends the same names, the same bytes
# objects even, on every response: one look-up instead of a lower() and a
# comparison with each name below). Bounded like the header memos in utils.
KEEP, DATE, SERVER, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION = range(6)
RESPONSE_NAMES = {
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION,
    b"date": DATE,
    b"server": SERVER,
}
_response_kinds: dict[bytes, int] = {}
RESPONSE_KINDS_SIZE = 256


def response_kind(name: bytes) -> int:
    """What the server makes of a (valid) response header name."""
    kind = _response_kinds.get(name)
    if kind is None:
        kind = RESPONSE_NAMES.get(name.lower(), KEEP)
        if len(name) <= 64:
            if len(_response_kinds) >= RESPONSE_KINDS_SIZE:
                _response_kinds.clear()
            _response_kinds[name] = kind
    return kind


def _bad_status(status: Any) -> bool:
    return (
        not isinstance(status, int)
        or isinstance(status, bool)
        or not 200 <= status <= 599
    )


class HTTPExchange:
    """One request/response exchange, independent of the connection framing."""

    __slots__ = (
        "writer",
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
        "app_paused",
        "gone",
        "started",
    )

    def __init__(
        self, writer: Writer, scope: dict, keep_alive: bool, expect: bool
    ) -> None:
        self.writer = writer
        self.scope = scope
        self.instance: Instance | None = None
        #: Client events that arrived before the instance started (pipelining).
        self.pending: list[Event] | None = []
        self.state = IDLE
        self.status = 0
        #: Response header pairs from the application, checked.
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = keep_alive
        #: The client waits for ``100 Continue`` before sending its body.
        self.expect_continue = expect
        self.body_complete = False
        self.body_size = 0
        self.bytes_sent = 0
        #: The response's promised Content-Length, or None.
        self.length: int | None = None
        #: HEAD requests and 204/304 responses carry no body.
        self.no_body = scope["method"] == "HEAD"
        self.app_date = self.app_server = self.app_close = False
        #: The instance's queue is full: the client's body waits on it.
        self.app_paused = False
        #: The connection (or stream) is gone: late events are dropped.
        self.gone = False
        #: When the request head was complete, on the connection's clock
        #: (the access log's ``time_taken`` counts from here).
        self.started = writer.seconds()

    def start(self, host: Host) -> None:
        self.instance = instance = host.start(self.scope, self)
        pending, self.pending = self.pending, None
        for event in pending:
            instance.put(event)

    def deliver(self, event: Event) -> bool:
        """Queue a client event; ``False`` when the instance's queue is full."""
        instance = self.instance
        if instance is not None:
            if instance.put(event):
                return True
            self.app_paused = True
            return False
        if self.pending is not None:
            self.pending.append(event)
        return True  # the application has ended: nobody reads this

    # -- Sink ----------------------------------------------------------------

    def receive_requested(self) -> None:
        if self.expect_continue:
            self.expect_continue = False
            if not self.body_complete and self.state is IDLE:
                self.writer.send_informational(self, 100)

    def resume_reading(self) -> None:
        self.app_paused = False
        self.writer.resume_reading(self)

    def handle_reply(self, event: Event) -> bool:
        try:
            kind = event["type"]
        except (TypeError, KeyError):
            self.fail(f"Application sent {event!r}, which is not an ASGI event")
        state = self.state
        if kind == "http.response.body" and (state is HEAD_PENDING or state is BODY):
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
                self.state = DONE
            elif state is HEAD_PENDING:
                self.state = BODY
            if state is HEAD_PENDING:
                self.writer.send_head(self, body, more)
            else:
                self.writer.send_data(self, body, more)
        elif kind == "http.response.start" and state is IDLE:
            self._start_response(event)
        elif state is FAILED or self.gone:
            # The exchange is over; late events are dropped, not errors.
            return False
        else:
            self.other_event(kind, event)
        return True

    def other_event(self, kind: str, event: Event) -> None:
        """An event the response state does not allow here (an HTTP/2
        exchange takes ``http.response.trailers``)."""
        self.fail(
            f"Unexpected ASGI event {kind!r} in response state {self.state.value}"
        )

    def _start_response(self, event: Event) -> None:
        status = event.get("status")
        # (A plain int in range passes without the call.)
        if not (type(status) is int and 200 <= status <= 599) and _bad_status(status):
            self.fail(f"Invalid response status {status!r}")
        # One pass over the headers: validate, note what the server must know,
        # and drop the ones only the server may send.
        pairs = []
        app_date = app_server = app_close = False
        try:
            for name, value in event.get("headers", ()):
                # (header_problem's memo of checked names and values read
                # inline: the same headers come back on every response.)
                if (
                    type(name) is not bytes
                    or type(value) is not bytes
                    or name not in valid_names
                    or value not in valid_values
                ):
                    problem = header_problem(name, value)
                    if problem is not None:
                        self.fail(f"Response {problem}")
                kind = _response_kinds.get(name)
                if kind is None:
                    kind = response_kind(name)
                if kind == KEEP:
                    pass
                elif kind == CONTENT_LENGTH:
                    if not value.strip().isdigit() or self.length is not None:
                        self.fail(f"Invalid response Content-Length {value!r}")
                    self.length = int(value)
                elif kind == TRANSFER_ENCODING:
                    continue  # framing is the server's job
                elif kind == CONNECTION:
                    # Persistence is the server's call; it sends the one header.
                    app_close = app_close or b"close" in value.lower()
                    continue
                elif kind == DATE:
                    app_date = True
                else:  # SERVER
                    app_server = True
                pairs.append((name, value))
        except (TypeError, ValueError):
            self.fail("Response headers must be an iterable of [name, value] pairs")
        self.app_date = app_date
        self.app_server = app_server
        self.app_close = app_close
        if status in NO_BODY_STATUSES:
            self.no_body = True
        self.status = int(status)
        self.headers = pairs
        self.state = HEAD_PENDING

    def fail(self, message: str) -> NoReturn:
        """Refuse an invalid application event: log, answer, raise to the app."""
        logger.error(
            "%s (request %s %s)", message, self.scope["method"], self.log_target
        )
        self.abort(500)
        raise ASGIProtocolError(message)

    def abort(self, status: int, detail: str = "") -> None:
        """End the exchange now: an error page if possible, else cut it short."""
        state = self.state
        self.state = FAILED
        if state is IDLE or state is HEAD_PENDING:
            self.writer.send_error(self, status, detail)
        elif state is BODY:
            self.writer.reset(self)

    def application_finished(self, exc: BaseException | None) -> None:
        self.instance = None  # break the exchange <-> instance cycle early
        self.writer.application_ended(self)
        # (Cancellation is a BaseException, not an Exception: not an error.)
        if (
            exc is not None
            and isinstance(exc, Exception)
            and not isinstance(exc, ASGIProtocolError)
        ):
            logger.error(
                "Exception inside application handling %s %s",
                self.scope["method"],
                self.log_target,
                exc_info=exc,
            )
        # (self.finished, inline: a property is a call.)
        state = self.state
        if state is DONE or state is FAILED or self.gone:
            return
        if exc is None:
            logger.error(
                "Application returned without completing the response to %s %s",
                self.scope["method"],
                self.log_target,
            )
        self.abort(500)

    # -- timing --------------------------------------------------------------

    def http_timeout_reached(self) -> None:
        """``--http-timeout`` has passed since the request began, or since its
        body was complete.

        Not while the body is still arriving: the application (or a worker,
        which sees the request only once it is complete) is not late then,
        and a client that stalls meets the body timeout. A body that is not
        arriving because the application does not read it, or has not asked
        for it with a 100 Continue, does not stop the clock."""
        if self.finished:
            return
        if not self.body_complete and not self.expect_continue and not self.app_paused:
            return
        logger.warning("Request %s %s timed out", self.scope["method"], self.log_target)
        self.keep_alive = False
        self.abort(503, "The server did not respond within the time limit.")

    # -- helpers -------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether the exchange is over (answered, or ended badly)."""
        return self.state is DONE or self.state is FAILED

    @property
    def log_target(self) -> str:
        """The request target as sent, for log lines."""
        query = self.scope["query_string"]
        raw = self.scope["raw_path"].decode("latin-1")
        return f"{raw}?{query.decode('latin-1')}" if query else raw
