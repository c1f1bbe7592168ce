"""Connections: the factory that builds one per accepted socket.

:class:`HTTPFactory` is the Twisted factory every endpoint listens with. It
picks the connection protocol for each socket (HTTP/1.1, handed over to
HTTP/2 by ALPN on TLS, the preface or ``Upgrade: h2c`` in cleartext: see
:mod:`.http2_handover`), tracks the live
connections for graceful shutdown, and writes the access log.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IProtocolNegotiationFactory
from zope.interface import implementer

from ..access import format_client
from ..config import Config
from ..hosts import Host
from ..http.exchange import HTTPExchange
from ..websocket.engines import engine_factory
from .http1 import HTTP11Connection
from .limits import Limits

logger = logging.getLogger(__name__)


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
        #: The WebSocket framing engines' shared options.
        self.engines = engine_factory(config, reactor)
        #: --limit-concurrency and --limit-max-requests (None: neither is set).
        self.limits = Limits.for_config(config, reactor)
        self.connections: set[HTTP11Connection] = set()
        #: HTTP/2 by ALPN and prior knowledge; h2c upgrades on plain sockets.
        self.http2 = self.h2c = config.http2
        #: The shared header rules, with HTTP/2's header list size.
        self.http2_head_config = config.replace(
            max_request_head_size=config.http2_max_header_list_size
        )
        self._empty_waiters: list[defer.Deferred] = []
        self.server_header = (
            b"server: %s\r\n" % config.server_name.encode("latin-1")
            if config.server_name
            else None
        )

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN protocols offered on TLS endpoints.

        Without this, Twisted's TLS answers an ALPN offer with an empty
        selection and OpenSSL aborts the handshake for every browser."""
        return [b"h2", b"http/1.1"] if self.http2 else [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> HTTP11Connection:
        return HTTP11Connection(self)

    # -- live connections ----------------------------------------------------

    def connection_made(self, conn: HTTP11Connection) -> None:
        self.connections.add(conn)

    def connection_lost(self, conn: HTTP11Connection) -> None:
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

    # -- access log ------------------------------------------------------------

    def log_exchange(self, request: HTTPExchange, protocol: str | None = None) -> None:
        """The access log line of a finished exchange (or refused WebSocket);
        ``protocol`` names a version other than HTTP/1.x (``"HTTP/2"``)."""
        if self.access_log is None:
            return
        scope = request.scope
        client = format_client(scope["client"])
        if scope["type"] == "websocket":
            path = scope["raw_path"].decode("latin-1")
            self.log_event("websocket", "rejected", {"path": path, "client": client})
            return
        details = {
            "path": request.log_target,
            "status": request.status,
            "method": scope["method"],
            "client": client,
            "size": request.bytes_sent,
            "time_taken": self.reactor.seconds() - request.started,
        }
        if protocol is not None:
            details["protocol"] = protocol
        self.log_event("http", "complete", details)

    def log_event(self, protocol: str, action: str, details: dict) -> None:
        """One access log event (see :class:`daphne.access.AccessLogGenerator`)."""
        access_log = self.access_log
        if access_log is None:
            return
        try:
            access_log(protocol, action, details)
        except Exception:
            # A full disk or a closed pipe must not break requests.
            logger.exception("Access log failed; no more access log lines")
            self.access_log = None
