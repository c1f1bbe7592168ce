"""Run ASGI v1 layers written for asgiref 1.x next to asgiref 3.

Third-party v1 layers such as ``asgi_redis`` subclass
``asgiref.base_layer.BaseChannelLayer``, which asgiref 3 (which daphne needs
for ASGI applications) no longer has. :func:`install` provides that module
when it is missing; the daphne command line calls it before importing its
target, so ``daphne myproject.asgi:channel_layer`` works with such a layer
installed.

:class:`BaseChannelLayer` offers what those layers use of the original:
capacities (``capacity`` and ``channel_capacity`` globs or regexes), expiry
settings, name checks that raise ``TypeError``, ``non_local_name`` and the
``ChannelFull`` / ``MessageTooLarge`` exceptions (daphne's own, so that
daphne recognises them whichever layer raises them).
"""

from __future__ import annotations

import fnmatch
import re
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

from .base import (
    CHANNEL_NAME,
    GROUP_NAME,
    MAX_NAME_LENGTH,
    ChannelFull,
    MessageTooLarge,
    check_channel_name,
    check_group_name,
    non_local_name,
)

MODULE = "asgiref.base_layer"


class BaseChannelLayer:
    """The base class asgiref 1.x gave ASGI v1 channel layers."""

    ChannelFull = ChannelFull
    MessageTooLarge = MessageTooLarge
    extensions: list[str] = []

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
    ) -> None:
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        self.channel_capacity = self.compile_capacities(channel_capacity or {})

    # -- what a layer implements -----------------------------------------------

    def send(self, channel: str, message: dict) -> None:
        raise NotImplementedError

    def receive(self, channels: list[str], block: bool = False) -> tuple:
        raise NotImplementedError

    def new_channel(self, pattern: str) -> str:
        raise NotImplementedError

    # -- capacities --------------------------------------------------------------

    @staticmethod
    def compile_capacities(
        channel_capacity: Mapping[Any, int],
    ) -> list[tuple[re.Pattern, int]]:
        """``(compiled pattern, capacity)`` pairs from globs or regexes."""
        compiled = []
        for pattern, value in channel_capacity.items():
            if isinstance(pattern, str):
                pattern = re.compile(fnmatch.translate(pattern))
            compiled.append((pattern, value))
        return compiled

    def get_capacity(self, channel: str) -> int:
        """The capacity of ``channel``: its first matching pattern's, else
        the layer's."""
        for pattern, value in self.channel_capacity:
            if pattern.match(channel):
                return value
        return self.capacity

    # -- names -----------------------------------------------------------------------

    @staticmethod
    def match_type_and_length(name: object) -> bool:
        return isinstance(name, str) and len(name) < MAX_NAME_LENGTH

    def valid_channel_name(self, name: object, receive: bool = False) -> bool:
        check_channel_name(name, receive=receive)
        return True

    def valid_group_name(self, name: object) -> bool:
        check_group_name(name)
        return True

    def valid_channel_names(self, names: Iterable[str], receive: bool = False) -> bool:
        names = list(names)
        if not names:
            raise TypeError("At least one channel name is needed")
        for name in names:
            self.valid_channel_name(name, receive=receive)
        return True

    @staticmethod
    def non_local_name(name: str) -> str:
        return non_local_name(name)

    # (The patterns, for layers that read them from the class.)
    channel_name_regex = CHANNEL_NAME
    group_name_regex = GROUP_NAME


def install() -> bool:
    """Provide ``asgiref.base_layer`` if the installed asgiref lacks it.

    Returns whether it was installed (``False``: asgiref has its own, or
    asgiref is not installed at all)."""
    if MODULE in sys.modules:
        return False
    try:
        import asgiref
    except ImportError:
        return False
    try:
        __import__(MODULE)
    except ImportError:
        pass
    else:
        return False
    module = types.ModuleType(MODULE, "asgiref 1.x's base layer, provided by daphne.")
    module.BaseChannelLayer = BaseChannelLayer  # type: ignore[attr-defined]
    sys.modules[MODULE] = module
    asgiref.base_layer = module  # type: ignore[attr-defined]
    return True
