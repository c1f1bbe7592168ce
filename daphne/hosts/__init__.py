"""The seam between protocol objects and the application side.

A protocol object (an :class:`~daphne.http.exchange.HTTPExchange` per
request, a :class:`~daphne.websocket.session.WebSocketSession` per WebSocket)
has its ASGI scope built once and asks a :class:`Host` to start an
:class:`Instance` for it. From then on both sides speak ASGI 3 event dicts:

* the protocol calls :meth:`Instance.put` for client events and
  :meth:`Instance.disconnected` when the connection is gone;
* the host calls the protocol's :class:`Sink` methods for application events
  and flow control.

``AppHost`` (ASGI applications, :mod:`daphne.hosts.app`) and ``LayerHost``
(a channel layer and its workers, :mod:`daphne.hosts.layer`) implement it;
:func:`daphne.hosts.detect.detect_interface` tells which one a target needs.
This module is the interface only: protocol code imports it and nothing else
of the hosts.
"""

from __future__ import annotations

from typing import Any, Protocol

Event = dict[str, Any]
Scope = dict[str, Any]


class ASGIProtocolError(RuntimeError):
    """The application sent an event that is not allowed now."""


class ClientDisconnected(OSError):
    """Raised by ``send`` on a connection that is closed (ASGI spec 2.4).

    WebSocket scopes declare spec version 2.4 and raise it; HTTP scopes
    declare 2.3 and drop such events instead."""


class Sink(Protocol):
    """What the host may call on the protocol side of one instance."""

    def handle_reply(self, event: Event) -> bool:
        """An application event; raises ``ASGIProtocolError`` if it is invalid.

        Returns ``False`` if the event was dropped because the exchange is
        already over (so the host can yield instead of spinning)."""

    def receive_requested(self) -> None:
        """The application waits for a client event (e.g. answer 100-continue)."""

    def resume_reading(self) -> None:
        """The instance's input queue has room again."""

    def application_finished(self, exc: BaseException | None) -> None:
        """The instance ended, normally (``None``) or with an exception."""


class Instance(Protocol):
    """One running application instance, as seen by a protocol object."""

    def put(self, event: Event) -> bool:
        """Queue a client event; ``False`` asks the caller to stop reading
        until :meth:`Sink.resume_reading` is called."""

    def pause_sending(self) -> None:
        """The transport is full: the application's ``send`` should wait."""

    def resume_sending(self) -> None:
        """The transport drained: waiting ``send`` calls may continue."""

    def disconnected(self) -> None:
        """The connection is gone; the instance gets a grace period to end."""


class Host(Protocol):
    """Starts application instances."""

    def start(self, scope: Scope, sink: Sink) -> Instance: ...
