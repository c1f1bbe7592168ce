"""The WebSocket side of an HTTP/1.1 connection: the hand-over to a session.

:class:`WebSocketCarrier` is the part of
:class:`~daphne.protocols.http1.HTTP11Connection` that a
:class:`~daphne.websocket.session.WebSocketSession` runs on (its
:class:`~daphne.websocket.session.Carrier` calls): checking the upgrade
request, starting the session, and answering a refused handshake as plain
HTTP with an exchange of the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..access import describe_client
from ..http.exchange import HTTPExchange, ResponseState
from ..http.headers import share_common_names
from ..websocket.handshake import HandshakeError, check_request
from ..websocket.session import WebSocketSession

logger = logging.getLogger(__name__)


class WebSocketCarrier:
    """The upgrade hand-over, mixed into the HTTP/1.1 connection (which owns
    every attribute used here)."""

    factory: Any
    reader: Any
    writer: Any
    request: HTTPExchange | None
    websocket: WebSocketSession | None
    stop_http_timer: Callable[[], None]

    def start_websocket(self, rest: bytes) -> None:
        """Hand the connection to a WebSocket; ``rest`` follows the head."""
        self.stop_http_timer()  # (the WebSocket has timers of its own)
        reader = self.reader
        scope = reader.websocket_scope
        try:
            key = check_request(
                reader.method,
                scope["http_version"],
                scope["headers"],
                scope["subprotocols"],
            )
        except HandshakeError as error:
            logger.info(
                "Refused WebSocket handshake from %s: %s",
                describe_client(scope["client"]),
                error,
            )
            self.refuse(scope, error.status, str(error), error.headers)
            return
        limits = self.factory.limits
        if limits is not None and not limits.admit_websocket(self, scope):
            return
        # From here on the reader is never used again (about 1 KiB per open
        # WebSocket): ``reader`` is None exactly when ``websocket`` is set.
        self.reader = None
        share_common_names(scope["headers"])
        self.websocket = WebSocketSession(self, scope, key, self.factory.engines)
        self.websocket.start(rest)

    def denial_exchange(self, scope: dict) -> HTTPExchange:
        """An HTTP exchange that answers a refused WebSocket handshake."""
        request = HTTPExchange(self.writer, {**scope, "method": "GET"}, False, False)
        request.body_complete = True
        self.request = request
        return request

    def refuse(
        self, scope: dict, status: int, detail: str = "", headers: Any = ()
    ) -> HTTPExchange:
        """Answer a WebSocket handshake with an error page and close."""
        request = self.denial_exchange(scope)
        request.state = ResponseState.FAILED
        self.writer.write_error(request, status, detail, headers)
        return request

    def accepted(self) -> None:
        """The WebSocket is open: the response writer (and its five bound
        methods, about 400 bytes) is never used again."""
        self.writer = None

    def log_event(self, protocol: str, action: str, details: dict) -> None:
        self.factory.log_event(protocol, action, details)

    def session_ended(self) -> None:
        """The session's application instance has ended."""
        if self.factory.limits is not None:
            self.factory.limits.release()
