"""Which WebSocket engine a server runs: ``Config.websocket_engine``.

Each engine lives in a module of its own (:mod:`.engine_autobahn`,
:mod:`.engine_websockets`); only the chosen one is imported.
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from .engine import EngineFactory


def engine_factory(config: Config, reactor: Any) -> EngineFactory:
    """The chosen engine's factory, with this server's options."""
    if config.websocket_engine == "websockets":
        from .engine_websockets import WebSocketsEngineFactory

        return WebSocketsEngineFactory(config, reactor)
    from .engine_autobahn import AutobahnEngineFactory

    return AutobahnEngineFactory(config, reactor)
