"""What every ASGI v1 channel layer shares: its exceptions and name rules.

Channel names are ASCII letters, digits, ``-``, ``_`` and ``.``, optionally
followed by ``?`` (a ``new_channel`` pattern) or ``!`` (a process-specific
channel: everything after the ``!`` is routed to whoever receives on the
name up to and including it). Names are shorter than 100 characters.
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 100

#: The channels daphne sends to, which workers receive on.
CHANNELS = (
    "http.request",
    "http.disconnect",
    "websocket.connect",
    "websocket.receive",
    "websocket.disconnect",
)

CHANNEL_NAME = re.compile(r"[a-zA-Z\d\-_.]+((\?|\!)[\d\w\-_.]*)?")
GROUP_NAME = re.compile(r"[a-zA-Z\d\-_.]+")


class ChannelFull(Exception):
    """The channel already holds as many messages as its capacity allows."""


class MessageTooLarge(Exception):
    """The message is larger than the layer accepts."""


def check_channel_name(name: object, receive: bool = False) -> str:
    """``name`` if it is a valid channel name, else ``TypeError``.

    A name to receive on may contain ``!`` only as its last character: the
    process-specific prefix is received on, never one of its channels."""
    if (
        type(name) is not str
        or len(name) >= MAX_NAME_LENGTH
        or CHANNEL_NAME.fullmatch(name) is None
    ):
        raise TypeError(f"Invalid channel name {name!r}")
    if receive and "!" in name and not name.endswith("!"):
        raise TypeError(
            f"Cannot receive on {name!r}: receive on its prefix {non_local_name(name)!r}"
        )
    return name


def check_group_name(name: object) -> str:
    if (
        type(name) is not str
        or len(name) >= MAX_NAME_LENGTH
        or GROUP_NAME.fullmatch(name) is None
    ):
        raise TypeError(f"Invalid group name {name!r}")
    return name


def non_local_name(name: str) -> str:
    """The queue a channel's messages go to: a process-specific channel's
    prefix up to and including ``!``, otherwise the name itself."""
    bang = name.find("!")
    return name if bang < 0 else name[: bang + 1]
