"""Which application side a target needs: an ASGI 3 or ASGI 2 application,
or a channel layer (ASGI v1).

Used by the command line and :class:`daphne.server.Server` to pick
:class:`~daphne.hosts.app.AppHost` or :class:`~daphne.hosts.layer.LayerHost`.
"""

from __future__ import annotations

import inspect
from typing import Any

from asgiref.compatibility import is_double_callable

from .layer import has_layer_methods, is_channel_layer


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
