"""One HTTP/2 stream: its request head, and the Writer of its exchange.

:func:`read_request_head` applies RFC 9113 section 8 to a decoded header
block (pseudo-headers, connection-specific fields, lower-case names) and the
shared header rules of :class:`~daphne.http.headers.RequestHead`.
:class:`H2Stream` is the :class:`~daphne.http.exchange.Writer` of the one
exchange its stream carries: it turns the exchange's calls into h2 calls on
its connection, and holds back the response body its stream or connection
window has no room for (the application's ``send`` waits meanwhile).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from h2.errors import ErrorCodes

from ..hosts import Event
from ..http.errors import HTTPError
from ..http.exchange import HTTPExchange, ResponseState
from ..http.headers import RequestHead
from ..http.pages import error_page, http_date
from ..utils import header_problem

logger = logging.getLogger(__name__)

#: Field names as RFC 9110 section 5.6.2 tokens, lower case (RFC 9113 8.2.1).
FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")

#: Fields that belong to one HTTP/1.1 connection and make an HTTP/2 request
#: malformed (RFC 9113 section 8.2.2); ``te`` is allowed as ``trailers``.
CONNECTION_FIELDS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    }
)
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})

#: Response header fields an application may set that HTTP/2 must not send.
DROPPED_RESPONSE_FIELDS = CONNECTION_FIELDS | {b"te"}


class StreamError(Exception):
    """The stream is malformed: reset it with ``error_code``."""

    def __init__(self, message: str, error_code: int = ErrorCodes.PROTOCOL_ERROR):
        super().__init__(message)
        self.error_code = error_code


def read_request_head(
    head: RequestHead, fields: list[tuple[bytes, bytes]]
) -> tuple[str, bytes]:
    """Feed a request's decoded ``fields`` to ``head``; returns its method and
    ``:path``. Raises :class:`StreamError` for a malformed request (RFC 9113
    section 8.1.1) and :class:`HTTPError` for one the shared rules refuse."""
    pseudo: dict[bytes, bytes] = {}
    regular = False
    cookies: list[bytes] = []
    for name, value in fields:
        if name[:1] == b":":
            if regular:
                raise StreamError("Pseudo-header field after a regular one")
            if name not in REQUEST_PSEUDO:
                raise StreamError(f"Unknown pseudo-header field {name!r}")
            if name in pseudo:
                raise StreamError(f"Duplicate pseudo-header field {name!r}")
            pseudo[name] = value
            head.grow(len(name) + len(value))
            continue
        regular = True
        if FIELD_NAME.match(name) is None:
            raise StreamError(f"Invalid header field name {name!r}")
        if name in CONNECTION_FIELDS:
            raise StreamError(f"Connection-specific header field {name.decode()}")
        if name == b"te" and value.strip().lower() != b"trailers":
            raise StreamError("TE other than trailers")
        if name == b"content-length" and not value.isdigit():
            raise StreamError("Invalid Content-Length")
        if name == b"cookie":
            # Crumbs of one cookie list (RFC 9113 8.2.3): one field, as
            # HTTP/1.1 applications expect it.
            head.grow(len(value))
            cookies.append(value)
            continue
        head.add(name, value)
    if cookies:
        head.headers.append((b"cookie", b"; ".join(cookies)))
    method = pseudo.get(b":method")
    if method is None:
        raise StreamError("Missing :method")
    if method == b"CONNECT":
        # (Extended CONNECT, RFC 8441, is not offered: no tunnels.)
        raise HTTPError("CONNECT is not supported", 501)
    path = pseudo.get(b":path")
    if path is None or b":scheme" not in pseudo:
        raise StreamError("Missing :path or :scheme")
    if not (path[:1] == b"/" or (path == b"*" and method == b"OPTIONS")):
        raise StreamError("Invalid :path")
    if FIELD_NAME.match(method.lower()) is None:
        raise StreamError("Invalid :method")
    authority = pseudo.get(b":authority")
    if authority is not None and head.host_count == 0:
        head.add(b"host", authority)
    return method.decode("ascii"), path


class H2Exchange(HTTPExchange):
    """An exchange that may end its response with trailers (the ASGI
    ``http.response.trailers`` extension, which HTTP/2 scopes advertise).

    The response body ends as usual (state DONE); its stream holds END_STREAM
    back until the trailers come, or resets the stream if the application
    ends without sending them."""

    __slots__ = ("trailers_expected", "trailer_fields", "trailers_sent")

    def __init__(self, writer: Any, scope: dict, expect: bool) -> None:
        super().__init__(writer, scope, True, expect)
        #: ``http.response.start`` had ``trailers: True``.
        self.trailers_expected = False
        self.trailer_fields: list[tuple[bytes, bytes]] = []
        self.trailers_sent = False

    def _start_response(self, event: Event) -> None:
        super()._start_response(event)
        self.trailers_expected = bool(event.get("trailers", False))

    def other_event(self, kind: str, event: Event) -> None:
        if (
            kind != "http.response.trailers"
            or self.state is not ResponseState.DONE
            or not self.trailers_expected
            or self.trailers_sent
        ):
            super().other_event(kind, event)
        try:
            for name, value in event.get("headers", ()):
                problem = header_problem(name, value)
                if problem is not None:
                    self.fail(f"Response trailer {problem}")
                self.trailer_fields.append((name, value))
        except (TypeError, ValueError):
            self.fail("Response trailers must be an iterable of [name, value] pairs")
        if not event.get("more_trailers", False):
            self.trailers_sent = True
            self.writer.send_trailers(self, self.trailer_fields)

    @property
    def trailers_pending(self) -> bool:
        return self.trailers_expected and not self.trailers_sent

    def application_finished(self, exc: BaseException | None) -> None:
        super().application_finished(exc)
        if self.trailers_pending and self.state is ResponseState.DONE and not self.gone:
            logger.error(
                "Application announced trailers and did not send them (%s %s)",
                self.scope["method"],
                self.log_target,
            )
            self.state = ResponseState.FAILED
            self.writer.reset(self)


class H2Stream:
    """The Writer of one stream's exchange, on its :class:`H2Connection`."""

    __slots__ = (
        "conn",
        "stream_id",
        "exchange",
        "outbound",
        "end_pending",
        "trailers",
        "head_sent",
        "closed",
        "held",
        "declared_length",
        "logged",
        "timer",
    )

    def __init__(self, conn: Any, stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.exchange: HTTPExchange | None = None
        #: Response body the flow-control windows have no room for yet.
        self.outbound = bytearray()
        #: The body ends once ``outbound`` is sent.
        self.end_pending = False
        #: Response trailers, sent once the body is out (or None).
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.head_sent = False
        #: The stream is closed (ended both ways, or reset).
        self.closed = False
        #: Received body bytes not acknowledged yet: the application's queue
        #: was full when they came (WINDOW_UPDATE waits until it reads them).
        self.held = 0
        self.declared_length: int | None = None
        self.logged = False
        #: The --http-timeout of this stream (see HTTPExchange.http_timeout_reached).
        self.timer: Any = None

    def arm_timer(self) -> None:
        """Time the stream: from its start, and again from the end of its body."""
        timeout = self.conn.config.http_timeout
        if timeout is not None:
            self.cancel_timer()
            self.timer = self.conn.reactor.callLater(timeout, self.timed_out)

    def cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def timed_out(self) -> None:
        self.timer = None
        if self.exchange is not None and not self.closed:
            self.exchange.http_timeout_reached()
            self.conn.flush()

    # -- Writer ------------------------------------------------------------

    def seconds(self) -> float:
        return self.conn.reactor.seconds()

    def send_informational(self, exchange: HTTPExchange, status: int) -> None:
        if not self.closed:
            self.conn.h2.send_headers(self.stream_id, [(b":status", b"%d" % status)])
            self.conn.flush()

    def response_fields(self, exchange: HTTPExchange) -> list[tuple[bytes, bytes]]:
        fields = [(b":status", b"%d" % exchange.status)]
        for name, value in exchange.headers:
            name = name.lower()
            if name not in DROPPED_RESPONSE_FIELDS:
                fields.append((name, value))
        if not exchange.app_date:
            fields.append((b"date", http_date()))
        server = self.conn.server_name
        if server is not None and not exchange.app_server:
            fields.append((b"server", server))
        return fields

    def send_head(self, exchange: HTTPExchange, body: bytes, more: bool) -> None:
        if self.closed:
            return
        fields = self.response_fields(exchange)
        if exchange.length is None and not exchange.no_body and not more:
            exchange.length = len(body)
            fields.append((b"content-length", b"%d" % len(body)))
        exchange.expect_continue = False
        trailers = exchange.trailers_pending
        end = not more and not body and not trailers
        self.head_sent = True
        self.conn.h2.send_headers(self.stream_id, fields, end_stream=end)
        if end:
            self.response_sent()
        else:
            self.queue(body, not more and not trailers)
        self.conn.flush()

    def send_data(self, exchange: HTTPExchange, data: bytes, more: bool) -> None:
        # (The exchange passes ``more``: True until the last part.)
        if self.closed:
            return
        self.queue(data, not more and not exchange.trailers_pending)
        self.conn.flush()

    def send_trailers(self, exchange: HTTPExchange, fields: list) -> None:
        if self.closed:
            return
        self.trailers = [
            (name.lower(), value)
            for name, value in fields
            if name.lower() not in DROPPED_RESPONSE_FIELDS
        ]
        self.push()
        self.conn.flush()

    def send_error(
        self, exchange: HTTPExchange, status: int, detail: str = "", headers: Any = ()
    ) -> None:
        if self.closed:
            return
        if self.head_sent:
            self.reset(exchange)
            return
        self.outbound.clear()
        content_type, body = error_page(status, detail)
        fields = [(b":status", b"%d" % status)]
        fields.extend((name.lower(), value) for name, value in headers)
        fields.append((b"date", http_date()))
        if self.conn.server_name is not None:
            fields.append((b"server", self.conn.server_name))
        fields.append((b"content-type", content_type))
        fields.append((b"content-length", b"%d" % len(body)))
        exchange.status = status
        exchange.bytes_sent = len(body)
        exchange.length = len(body)
        self.head_sent = True
        self.conn.h2.send_headers(self.stream_id, fields)
        self.queue(body, True)
        self.conn.flush()

    def reset(self, exchange: HTTPExchange) -> None:
        """A response cut short: RST_STREAM INTERNAL_ERROR, this stream only."""
        self.log()
        self.conn.reset_stream(self, ErrorCodes.INTERNAL_ERROR)

    def resume_reading(self, exchange: HTTPExchange) -> None:
        held, self.held = self.held, 0
        if held and not self.closed:
            self.conn.acknowledge(self.stream_id, held)

    def application_ended(self, exchange: HTTPExchange) -> None:
        self.conn.application_ended(self)

    # -- the body, as the windows allow ------------------------------------

    def queue(self, data: bytes, end: bool) -> None:
        self.outbound += data
        if end:
            self.end_pending = True
        self.push()

    def push(self) -> None:
        """Send what the windows allow; True when nothing is held back."""
        conn = self.conn
        h2 = conn.h2
        outbound = self.outbound
        stream_id = self.stream_id
        while outbound:
            room = min(
                h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size
            )
            if room <= 0:
                conn.blocked(self)
                return
            chunk = bytes(outbound[:room])
            del outbound[:room]
            last = not outbound and self.end_pending
            h2.send_data(stream_id, chunk, end_stream=last)
            if last:
                self.response_sent()
                return
        if self.end_pending:
            self.end_pending = False
            h2.end_stream(stream_id)
            self.response_sent()
        elif self.trailers is not None:
            trailers, self.trailers = self.trailers, None
            h2.send_headers(stream_id, trailers, end_stream=True)
            self.response_sent()
        else:
            conn.unblocked(self)

    def response_sent(self) -> None:
        """The response is complete on the wire."""
        self.end_pending = False
        self.log()
        self.conn.response_sent(self)

    def log(self) -> None:
        if not self.logged and self.exchange is not None:
            self.logged = True
            self.conn.factory.log_exchange(self.exchange, "HTTP/2")
