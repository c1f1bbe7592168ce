"""The writing half of an HTTP/1.1 connection: framing the responses.

:class:`ResponseWriter` is the :class:`~daphne.http.exchange.Writer` of every
exchange on one connection. It writes the head with the first part of the
body (so a one-part response gets a ``Content-Length`` and goes out in one
write), chunks streamed bodies, decides keep-alive (RFC 9112 section 9.3) and
writes the server's own error pages. Only the exchange being answered may
write; the others wait their turn in the connection's pipeline.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from ..http.exchange import HTTPExchange
from ..http.pages import error_page, http_date

logger = logging.getLogger(__name__)

STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
    for status in HTTPStatus
}

LAST_CHUNK = b"0\r\n\r\n"


class ResponseWriter:
    """Frames the responses of one HTTP/1.1 connection (``conn``)."""

    __slots__ = (
        "conn",
        "factory",
        "send",
        "server_header",
        "log_exchange",
        "reset",
        "resume_reading",
        "application_ended",
        "seconds",
    )

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.factory = conn.factory
        self.send = conn.send
        self.server_header = conn.factory.server_header
        self.log_exchange = conn.factory.log_exchange
        # The Writer calls that are the connection's business go straight to it.
        self.reset = conn.reset
        self.resume_reading = conn.resume_reading
        self.application_ended = conn.application_ended
        self.seconds = conn.reactor.seconds

    def common_headers(
        self, head: list, has_date: bool, has_server: bool, keep_alive: bool
    ) -> None:
        """Headers every response gets unless the application set them."""
        if not has_date:
            head.append(b"date: %s\r\n" % http_date())
        server = self.server_header
        if server is not None and not has_server:
            head.append(server)
        if not keep_alive:
            head.append(b"connection: close\r\n")

    def send_informational(self, request: HTTPExchange, status: int) -> None:
        conn = self.conn
        if request is conn.request and not conn.disconnected:
            self.send(STATUS_LINES[status] + b"\r\n")
            conn.arm_body_deadline()

    def send_head(self, request: HTTPExchange, body: bytes, more: bool) -> None:
        """Write the response head, framed from the first body event."""
        conn = self.conn
        if request is not conn.request or conn.disconnected:
            return
        status = request.status
        head = [STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        keep_alive = request.keep_alive and not (
            conn.closing or conn.draining or request.app_close
        )
        # (A loop, not a list comprehension: on Python 3.11 a comprehension
        # makes a function and a frame on every call.)
        for pair in request.headers:
            head.append(b"%s: %s\r\n" % pair)
        http11 = request.scope["http_version"] == "1.1"
        chunked = False
        if request.length is None and not request.no_body:
            if not more:
                # One-part response: frame it with a length, not chunks.
                request.length = len(body)
                head.append(b"content-length: %d\r\n" % len(body))
            elif http11:
                head.append(b"transfer-encoding: chunked\r\n")
                chunked = True
            else:
                keep_alive = False  # close-delimited (RFC 9112 section 6.3)
        if not request.body_complete:
            # Answering before the whole body arrived: the rest is not read,
            # so the connection cannot be reused; say so (RFC 9110 9.6).
            keep_alive = False
        request.keep_alive = keep_alive
        request.expect_continue = False
        # The headers every response gets unless the application set them
        # (common_headers, inline: this runs for every response).
        if not request.app_date:
            head.append(b"date: %s\r\n" % http_date())
        server = self.server_header
        if server is not None and not request.app_server:
            head.append(server)
        if not keep_alive:
            head.append(b"connection: close\r\n")
        elif not http11:
            head.append(b"connection: keep-alive\r\n")
        head.append(b"\r\n")
        if body:
            if chunked:
                head.append(b"%x\r\n%s\r\n" % (len(body), body))
            else:
                head.append(body)
        self.send(b"".join(head))
        if not more:
            self.response_done(request)

    @staticmethod
    def chunked(request: HTTPExchange) -> bool:
        return (
            request.length is None
            and not request.no_body
            and request.scope["http_version"] == "1.1"
        )

    def frame(self, request: HTTPExchange, body: bytes, more: bool) -> bytes:
        if self.chunked(request):
            chunk = b"%x\r\n%s\r\n" % (len(body), body)
            return chunk if more else chunk + LAST_CHUNK
        return body

    def send_data(self, request: HTTPExchange, body: bytes, more: bool) -> None:
        conn = self.conn
        if request is not conn.request or conn.disconnected:
            return
        if body:
            self.send(self.frame(request, body, more))
        elif not more and self.chunked(request):
            self.send(LAST_CHUNK)
        if not more:
            self.response_done(request)

    def send_error(
        self, request: HTTPExchange, status: int, detail: str = "", headers: Any = ()
    ) -> None:
        self.write_error(request, status, detail, headers)

    def write_error(
        self, request: HTTPExchange | None, status: int, detail="", headers: Any = ()
    ) -> None:
        """Send a complete error response and close the connection."""
        conn = self.conn
        if request is not None and (request is not conn.request or conn.disconnected):
            # Only the exchange being answered may write; any other one can
            # only get here once the connection is gone.
            return
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
            self.log_exchange(request)
        conn.closing = True
        conn.finish(request, keep_alive=False)

    def response_done(self, request: HTTPExchange) -> None:
        length = request.length
        if length is not None and request.bytes_sent < length and not request.no_body:
            logger.error(
                "Response to %s %s shorter than its Content-Length; closing",
                request.scope["method"],
                request.log_target,
            )
            request.keep_alive = False
        if self.factory.access_log is not None:  # (no call when it is off)
            self.log_exchange(request)
        self.conn.finish(request, request.keep_alive)
