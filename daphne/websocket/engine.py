"""The seam between a WebSocket session and its framing engine.

daphne does the opening handshake itself (:mod:`.handshake`); an engine
unframes and frames messages, checks the protocol and runs the closing
handshake. Two engines implement this seam, each in a module of its own
that is the only one to know its library's internals:

* :mod:`.engine_autobahn`: autobahn's ``WebSocketServerProtocol``;
* :mod:`.engine_websockets`: the sans-IO ``Protocol`` of ``websockets``.

:func:`engine_factory` picks one from ``Config.websocket_engine``. An engine
reports to its :class:`EngineOwner` (the session) and writes through it; it
never starts timers of its own.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..config import Config
from .deflate import Agreement, DeflateSettings, Offer


class EngineOwner(Protocol):
    """What the engine reports to, and writes through."""

    #: Set while the application's queue is full: the engine stops between
    #: frames and keeps the rest as raw bytes.
    read_paused: bool

    def send(self, data: bytes) -> None: ...

    def close_transport(self, abort: bool) -> None: ...

    def unregister_producer(self) -> None: ...

    def message(self, payload: bytes, binary: bool) -> None:
        """A whole message (text: valid UTF-8, checked by the engine)."""

    def close_sent(self) -> None:
        """A close frame is going out (daphne's, a reply, or a protocol
        error's): nothing but the closing handshake follows."""

    def awaiting_close(self) -> None:
        """daphne started the closing handshake: the client should answer."""

    def closed(self, code: int, reason: str) -> None:
        """The connection is gone: 1006 if uncleanly, 1005 for a close frame
        without a code, daphne's code if the client broke the protocol,
        else the client's code and reason."""


class Engine(Protocol):
    """One open WebSocket's framing, closing handshake and protocol checks."""

    #: The socket is closed.
    finished: bool

    def feed(self, data: bytes) -> None: ...

    def resume(self) -> None:
        """Unframe what was held back while the owner paused reading."""

    def send_message(self, payload: bytes, binary: bool) -> None: ...

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake."""

    def ping(self) -> None: ...

    def drop(self) -> None:
        """Abort the TCP connection (no closing handshake)."""

    def connection_lost(self, reason: Any) -> None:
        """The transport is gone: report ``closed()`` to the owner."""


class EngineFactory(Protocol):
    """One server's engine options; builds an engine per accepted socket."""

    #: The 101 answer's Server line (the handshake is daphne's), or None.
    server_header: bytes | None
    #: permessage-deflate: on or off, and its bounds.
    deflate: DeflateSettings

    def negotiate(self, offers: list[Offer]) -> Agreement | None:
        """The compression agreed for a client's extension offers (with this
        engine's codec), if any."""

    def engine(
        self, owner: EngineOwner, transport: Any, subprotocol: str | None, codec=None
    ) -> Engine:
        """An engine for a socket whose handshake daphne has completed (with
        the permessage-deflate codec agreed in it, if any)."""


def server_header(config: Config) -> bytes | None:
    """The ``Server`` line of the 101 answer, or None."""
    if not config.server_name:
        return None
    return b"Server: %s\r\n" % config.server_name.encode("latin-1")
