"""Channel layers for daphne's channel-layer mode (ASGI v1).

:class:`InMemoryChannelLayer` is a thread-safe layer for one process: daphne
in the reactor thread, workers in other threads. Layers of other projects
(e.g. ``asgi_redis``) are used through the same duck-typed interface; the
exceptions here are the ones the in-memory layer raises, also reachable as
``layer.ChannelFull`` and ``layer.MessageTooLarge`` as ASGI v1 asks.
"""

from .base import CHANNELS, ChannelFull, MessageTooLarge
from .memory import InMemoryChannelLayer

__all__ = ["CHANNELS", "ChannelFull", "InMemoryChannelLayer", "MessageTooLarge"]
