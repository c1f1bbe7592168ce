"""The seam between protocol objects and the application side.

A protocol object (one HTTP request, later one WebSocket) builds its ASGI scope
once and asks a :class:`Host` to start an :class:`Instance` for it. From then on
both sides speak ASGI 3 event dicts:

* the protocol calls :meth:`Instance.put` for client events and
  :meth:`Instance.disconnected` when the connection is gone;
* the host calls the protocol's :class:`Sink` methods for application events
  and flow control.

``AppHost`` (ASGI applications, :mod:`daphne.hosts.app`) and ``LayerHost``
(a channel layer and its workers, :mod:`daphne.hosts.layer`) implement it;
:func:`detect_interface` tells which one a target needs.
"""

from __future__ import annotations

import inspect
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


class TargetError(TypeError):
    """The target is not something daphne can serve (as asked)."""


#: What each interface name means, for messages.
INTERFACE_NAMES = {
    "channel-layer": "channel layer (ASGI v1)",
    "asgi3": "ASGI 3 application",
    "asgi2": "ASGI 2 application",
}


def detect_interface(target: Any, interface: str = "auto") -> str:
    """``channel-layer``, ``asgi3`` or ``asgi2``: what ``target`` is.

    A channel layer has ``send``, ``receive`` and ``new_channel`` methods and
    is not itself callable; an application is callable, with one argument
    (ASGI 2, returning the instance) or three (ASGI 3). ``interface`` other
    than ``auto`` overrides the guess, after a check that it can fit."""
    from asgiref.compatibility import is_double_callable

    from .layer import has_layer_methods, is_channel_layer

    if inspect.isclass(target) and has_layer_methods(target):
        raise TargetError(
            f"{target.__name__} is a channel layer class: name an instance of it"
        )
    layer = is_channel_layer(target)
    if interface == "channel-layer":
        if not layer:
            raise TargetError(
                f"{type(target).__name__} object is not a channel layer "
                "(it needs send, receive and new_channel methods)"
            )
        return interface
    if interface != "auto" or callable(target):
        if not callable(target):
            raise TargetError(
                f"{type(target).__name__} object is not an ASGI application "
                "(it is not callable)"
            )
        if interface != "auto":
            return interface
        if layer:
            raise TargetError(
                f"{type(target).__name__} object could be an application or a "
                "channel layer; choose with --interface"
            )
        return "asgi2" if is_double_callable(target) else "asgi3"
    if layer:
        return "channel-layer"
    raise TargetError(
        f"{type(target).__name__} object is neither an ASGI application "
        "(not callable) nor a channel layer (no send, receive and new_channel)"
    )
