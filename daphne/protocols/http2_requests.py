"""The request side of an HTTP/2 connection: streams opened, bodies received.

:class:`RequestStreams` is mixed into :class:`~.http2.H2Connection` (which
owns every attribute used here). A new stream's header block becomes a scope
and an :class:`~daphne.http.exchange.HTTPExchange`, or a stream error, or an
error page on that stream; its DATA becomes ``http.request`` events,
acknowledged to the client (WINDOW_UPDATE) only while the application's queue
has room.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from ..access import describe_client
from ..http.errors import HTTPError, PayloadTooLarge
from ..http.exchange import ResponseState
from ..http.headers import RequestHead
from ..http.pages import error_page, http_date
from ..http.scope import build_scope
from .http2_stream import H2Exchange, H2Stream, StreamError, read_request_head
from .limits import REFUSAL_DETAIL, REFUSAL_HEADERS

logger = logging.getLogger(__name__)

#: The extensions every HTTP/2 scope offers.
EXTENSIONS = {"http.response.trailers": {}}


class Flood(Exception):
    """A client floods the connection: GOAWAY ENHANCE_YOUR_CALM."""


class RequestStreams:
    """Streams opened by the client, and their request bodies."""

    config: Any
    factory: Any
    carrier: Any
    host: Any
    h2: Any
    guard: Any
    head_config: Any
    streams: dict[int, H2Stream]
    running: set[H2Stream]
    draining: bool
    write_paused: bool

    def request_received(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if (
            self.draining
            or len(self.running) >= self.config.http2_max_concurrent_streams
        ):
            # Past our GOAWAY, or over the limit while reset streams' apps
            # still run (the rapid-reset attack counts on that).
            if not self.guard.charge("reset"):
                raise Flood("Streams opened over the limit, again and again")
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = self.streams[stream_id] = H2Stream(self, stream_id)
        self.cancel_idle()
        carrier = self.carrier
        head = RequestHead(self.head_config)
        try:
            method, path = read_request_head(head, event.headers)
            scope = build_scope(
                self.config,
                head,
                method,
                path,
                "2",
                carrier.client,
                carrier.server,
                carrier.scheme,
                carrier.proxy,
            )
        except StreamError as error:
            logger.info(
                "Reset a malformed HTTP/2 request from %s: %s",
                describe_client(carrier.client),
                error,
            )
            self.reset_stream(stream, error.error_code)
            return
        except HTTPError as error:
            logger.info(
                "Refused HTTP/2 request from %s: %s",
                describe_client(carrier.client),
                error,
            )
            self.refuse(stream, error, ended=event.stream_ended is not None)
            return
        scope["extensions"] = EXTENSIONS
        if head.content_length:
            stream.declared_length = head.content_length
        self.begin(stream, scope, head, ended=event.stream_ended is not None)

    def begin(self, stream: H2Stream, scope: dict, head: RequestHead, ended: bool):
        exchange = H2Exchange(stream, scope, head.expect_continue)
        stream.exchange = exchange
        limits = self.factory.limits
        if limits is not None and not limits.admit():
            exchange.state = ResponseState.FAILED
            stream.send_error(exchange, 503, REFUSAL_DETAIL, REFUSAL_HEADERS)
            return
        self.running.add(stream)
        stream.arm_timer()
        exchange.start(self.host)
        if self.write_paused:
            exchange.instance.pause_sending()
        if ended:
            self.body(stream, b"", 0, ended=True)

    def refuse(self, stream: H2Stream, error: HTTPError, ended: bool) -> None:
        """Answer a refused request on its stream with an error page."""
        content_type, body = error_page(error.status, str(error))
        fields = [(b":status", b"%d" % error.status)]
        fields.extend((name.lower(), value) for name, value in error.headers)
        fields += [
            (b"date", http_date()),
            (b"content-type", content_type),
            (b"content-length", b"%d" % len(body)),
        ]
        self.h2.send_headers(stream.stream_id, fields)
        stream.head_sent = True
        stream.queue(body, True)
        if not ended:
            # The body is not wanted (RFC 9113 section 8.1).
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)
        stream.closed = True
        self.streams.pop(stream.stream_id, None)
        self.set_idle()

    def data_received_event(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        if (
            not event.data
            and event.stream_ended is None
            and not self.guard.charge("empty")
        ):
            raise Flood("Empty DATA frame flood")
        if stream is None or stream.exchange is None or stream.closed:
            # Refused, answered or reset: only the windows care.
            if size:
                self.acknowledge(event.stream_id, size)
            return
        self.body(stream, event.data, size, ended=event.stream_ended is not None)

    def body(self, stream: H2Stream, data: bytes, size: int, ended: bool) -> None:
        exchange = stream.exchange
        if exchange.body_complete:
            return
        exchange.body_size += len(data)
        limit = self.config.max_request_body_size
        if limit is not None and exchange.body_size > limit:
            self.acknowledge(stream.stream_id, size)
            self.body_refused(stream, PayloadTooLarge("Request body too large"))
            return
        if ended:
            exchange.body_complete = True
            stream.arm_timer()
        event = {"type": "http.request", "body": data, "more_body": not ended}
        if exchange.deliver(event):
            if size:
                self.acknowledge(stream.stream_id, size)
        else:
            stream.held += size

    def body_refused(self, stream: H2Stream, error: HTTPError) -> None:
        logger.info(
            "Refused HTTP/2 request body from %s: %s",
            describe_client(self.carrier.client),
            error,
        )
        exchange = stream.exchange
        exchange.body_complete = True
        exchange.abort(error.status)
        if not stream.closed:
            self.reset_stream(stream, ErrorCodes.NO_ERROR)

    def stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None and stream.exchange is not None and not stream.closed:
            self.body(stream, b"", 0, ended=True)
