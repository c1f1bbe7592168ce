"""The reading half of an HTTP/1.1 connection: llhttp's callbacks.

:class:`RequestReader` feeds the bytes to llhttp (through httptools), applies
the framing rules that are HTTP/1.1's own (Transfer-Encoding, HTTP/1.0,
upgrade bodies, pipelining bounds) and the shared header rules, and turns each
request head into an :class:`~daphne.http.exchange.HTTPExchange` that it hands
to its connection, followed by the body in parts. It raises
:class:`~daphne.http.errors.HTTPError` for anything it refuses; the connection
answers.
"""

from __future__ import annotations

import logging
from typing import Any

import httptools

from ..http.errors import HeadersTooLarge, HTTPError, PayloadTooLarge
from ..http.exchange import HTTPExchange
from ..http.headers import RequestHead
from ..http.scope import build_scope
from ..websocket.handshake import websocket_scope
from .http2_handover import h2c_settings

logger = logging.getLogger(__name__)


def check_transfer_codings(value: bytes) -> None:
    """Refuse a request ``Transfer-Encoding`` other than plain ``chunked``.

    RFC 9112 section 6.1: when chunked is not the final coding (``identity``,
    ``gzip``, ``chunked, gzip``, or chunked twice) the body length cannot be
    determined: 400, and the connection closes. With chunked last but another
    coding before it (``gzip, chunked``) the framing is clear but daphne does
    not decode transfer codings, and the application must not get the coded
    bytes as the body: 501, the answer section 6.1 gives for a coding the
    server does not understand (RFC 9110 section 15.6.2), also closing."""
    codings = [name for coding in value.lower().split(b",") if (name := coding.strip())]
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise HTTPError("Transfer-Encoding must end with a single chunked")
    unknown = b", ".join(codings[:-1]).decode("latin-1")
    raise HTTPError(f"Unsupported transfer coding {unknown}", 501)


class RequestReader(RequestHead):
    """Parses one connection's requests; ``conn`` is its HTTP11Connection.

    The reader is also the head of the request it is parsing (reset for each
    one), so that llhttp calls the shared header rules, ``RequestHead.add``,
    directly as its ``on_header``: one Python call per header field, not two.
    """

    __slots__ = (
        "conn",
        "parser",
        "parsing",
        "websocket_scope",
        "h2c",
        "method",
        "url",
        "messages",
        "head_bytes",
        "in_head",
        "partial_body",
    )

    def __init__(self, conn: Any) -> None:
        super().__init__(conn.config)
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        #: The exchange whose body is being parsed (may be pipelined).
        self.parsing: HTTPExchange | None = None
        #: Scope of a parsed WebSocket upgrade request, until the hand-over.
        self.websocket_scope: dict | None = None
        #: ``(scope, HTTP2-Settings)`` of an ``Upgrade: h2c`` request.
        self.h2c: tuple[dict, bytes] | None = None
        self.method = ""
        self.url = b""
        #: Requests begun on this connection, and raw bytes of the head being
        #: received (see feed).
        self.messages = 0
        self.head_bytes = 0
        self.in_head = False
        self.partial_body: bytes | None = None

    def feed(self, data: bytes) -> bytes | None:
        """Parse ``data``. Returns the bytes that follow a WebSocket upgrade
        request (the connection is to be handed over), else None."""
        message = self.messages
        continuing = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            error = exc.__context__
            if error is None:
                raise HTTPError("Malformed request") from None
            if not isinstance(error, HTTPError):
                logger.error("Error while parsing a request", exc_info=error)
                raise HTTPError("Internal server error", 500) from None
            raise error from None
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            if self.websocket_scope is not None or self.h2c is not None:
                return rest
            # Another protocol (h2c, ...): the request was answered as plain
            # HTTP; keep parsing what follows with a fresh parser.
            self.parser = httptools.HttpRequestParser(self)
            return self.feed(rest) if rest else None
        except httptools.HttpParserError as exc:
            raise HTTPError(str(exc) or "Malformed request") from None
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
                raise HeadersTooLarge("Request header fields too large")
        return None

    # -- httptools callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        conn = self.conn
        if conn.draining and self.messages:
            # (The first request of a connection accepted just before the
            # drain is answered: see HTTP11Connection.shutdown.)
            raise HTTPError("Server is shutting down", 503)
        if len(conn.pipeline) >= self.config.max_pipelined_requests:
            # llhttp parses a whole read at once; without a bound, one 64 KiB
            # read of tiny requests would become thousands of queued ones.
            raise HTTPError("Too many pipelined requests", 503)
        self.messages += 1
        self.in_head = True
        self.url = b""
        self.reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.size += len(url)
        if self.size > self.config.max_request_head_size:
            raise HTTPError("Request line too long", 414)

    on_header = RequestHead.add

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        conn = self.conn
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise HTTPError(f"HTTP/{version} not supported", 505)
        if version == "1.1" and self.host_count == 0:
            raise HTTPError("Missing Host header")
        te = self.transfer_encoding
        upgrade = parser.should_upgrade()
        if upgrade and (te is not None or self.content_length):
            # llhttp would skip the body of an upgrade request and parse it as
            # the next request: a proxy and daphne would disagree on framing.
            raise HTTPError("Upgrade requests must not have a body")
        method = parser.get_method().decode("ascii")
        scope = build_scope(
            self.config,
            self,
            method,
            self.url,
            version,
            conn.client,
            conn.server,
            conn.scheme,
            conn.proxy,
        )
        if self.upgrade_websocket and upgrade:
            if conn.request is not None:
                raise HTTPError("WebSocket upgrade behind an unanswered request")
            self.method = method
            self.websocket_scope = websocket_scope(scope)
            conn.deadline_kind = None
            return
        if (
            upgrade
            and conn.request is None
            and conn.factory.h2c
            and conn.scheme == "http"
        ):
            settings = h2c_settings(self.headers)
            if settings is not None:
                self.h2c = (scope, settings)
                conn.deadline_kind = None
                return
        if te is not None and version == "1.0":
            # RFC 9112 6.1: an HTTP/1.0 peer may frame this differently.
            raise HTTPError("Transfer-Encoding in an HTTP/1.0 request")
        if te is not None and te.strip().lower() != b"chunked":
            check_transfer_codings(te)
        request = HTTPExchange(
            conn.writer,
            scope,
            parser.should_keep_alive(),
            self.expect_continue and version == "1.1",
        )
        self.parsing = request
        conn.head_received(request)

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
        if self.websocket_scope is not None or self.h2c is not None:
            return  # the connection is handed over once feed_data returns
        request = self.parsing
        self.parsing = None
        request.body_complete = True
        # (flush_body, inline: most requests end here.)
        body = self.partial_body
        if body is None:
            body = b""
        else:
            self.partial_body = None
        self.conn.body_received(request, body, False)

    def flush_body(self, more: bool, request: HTTPExchange | None = None) -> None:
        body, self.partial_body = self.partial_body, None
        self.conn.body_received(request or self.parsing, body or b"", more)
