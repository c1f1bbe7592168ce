"""Choosing HTTP/2 on a connection accepted as HTTP/1.1.

:class:`HTTP2Handover` is mixed into
:class:`~daphne.protocols.http1.HTTP11Connection`. With HTTP/2 on, a new
connection's first read goes to a :class:`FirstRead` in the connection's hand-over slot
(``websocket``, checked on every read anyway). It hands the connection to an
:class:`~.http2.H2Connection` when TLS negotiated ``h2`` by ALPN, or when a
cleartext connection opens with the HTTP/2 preface ("prior knowledge");
:func:`h2c_settings` recognises an ``Upgrade: h2c`` request (RFC 7540
section 3.2) for the reader, and :meth:`HTTP2Handover.start_h2c` switches
after it. The HTTP/2 connection then occupies the connection's hand-over
slot (``websocket``): reads, connection loss, flow control and shutdown go
to it as they would to a WebSocket session.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from typing import Any

from .http2 import H2Connection

logger = logging.getLogger(__name__)

#: The client connection preface (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: The token68 of RFC 7540 section 3.2.1: base64url, padding optional.
BASE64URL = re.compile(rb"[A-Za-z0-9_-]*=*\Z")

SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
)


def h2c_settings(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The ``HTTP2-Settings`` value of a valid h2c upgrade request, else None
    (the request is then answered as HTTP/1.1, RFC 7540 section 3.2)."""
    upgrade = settings = connection = None
    count = 0
    for name, value in headers:
        if name == b"upgrade":
            upgrade = (upgrade or b"") + b"," + value
        elif name == b"connection":
            connection = (connection or b"") + b"," + value
        elif name == b"http2-settings":
            settings = value
            count += 1
    if upgrade is None or connection is None or count != 1:
        return None
    if b"h2c" not in [token.strip().lower() for token in upgrade.split(b",")]:
        return None
    tokens = [token.strip().lower() for token in connection.split(b",")]
    if b"http2-settings" not in tokens or b"upgrade" not in tokens:
        return None
    if BASE64URL.match(settings) is None:
        return None
    try:
        payload = base64.urlsafe_b64decode(settings + b"=" * (-len(settings) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(payload) % 6:
        return None
    return settings


class FirstRead:
    """The connection's hand-over slot until its first read decides: the
    connection already checks that slot on every read, so HTTP/1.1 pays
    nothing per read for HTTP/2 being possible."""

    __slots__ = ("conn", "part")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        #: Bytes of a preface that has not arrived whole yet.
        self.part = b""

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.websocket = None  # HTTP/1.1, unless HTTP/2 takes the slot
        if conn.scheme == "https":
            if getattr(conn.transport, "negotiatedProtocol", None) == b"h2":
                conn.start_http2(data)
            else:
                conn.dataReceived(data)
            return
        data = self.part + data
        size = min(len(data), len(PREFACE))
        if data[:size] != PREFACE[:size]:
            if data[:4] == PREFACE[:4]:
                # Began like the preface, then deviated: neither HTTP/2 nor a
                # request line (no method is "PRI" in HTTP/1.1).
                logger.info("Closed a connection with a broken HTTP/2 preface")
                conn.close()
                return
            conn.dataReceived(data)
        elif size < len(PREFACE):
            self.part = data
            conn.websocket = self  # the next read decides
        else:
            conn.start_http2(data)

    def connection_lost(self, reason: Any) -> None:
        pass

    def pause_sending(self) -> None:
        pass

    def resume_sending(self) -> None:
        pass

    def shutdown(self) -> None:
        """Draining before the first read: as an HTTP/1.1 connection."""
        self.conn.websocket = None
        self.conn.shutdown()


class HTTP2Handover:
    """The HTTP/2 hand-over, mixed into the HTTP/1.1 connection (which owns
    every attribute used here)."""

    factory: Any
    transport: Any
    reader: Any
    scheme: str
    deadline_kind: Any
    websocket: Any
    stop_http_timer: Callable[[], None]

    def watch_for_http2(self) -> None:
        """Send the first read to a :class:`FirstRead` (from connectionMade)."""
        self.websocket = FirstRead(self)

    def take_over(self) -> H2Connection:
        self.stop_http_timer()
        # HTTP/1.1's deadlines end here: HTTP/2 has an idle timer of its own.
        self.deadline_kind = None
        self.reader = None
        conn = self.websocket = H2Connection(self)
        return conn

    def start_http2(self, data: bytes) -> None:
        """HTTP/2 from the start; ``data`` begins with the client's preface."""
        self.take_over().start(data)

    def start_h2c(self, rest: bytes) -> None:
        """Switch after an ``Upgrade: h2c`` request; ``rest`` follows its head."""
        scope, settings = self.reader.h2c
        self.send(SWITCHING)
        self.take_over().start_upgrade(settings, scope, rest)
