"""Writing to a TCP socket at once, skipping Twisted's write queue when it is
empty.

``transport.write`` queues the bytes and sends them on the next reactor turn,
registering and unregistering the socket for writing around it: two
``epoll_ctl`` calls and a loop turn per response. When nothing is queued, one
``send()`` does the same job; whatever the kernel does not take goes through
``transport.write`` as usual, so ordering, flow control and error handling
stay Twisted's.

This reads private attributes of ``twisted.internet.tcp.Connection``; they are
named in :data:`REQUIRED` and checked by ``tests/test_direct_send.py``, which
fails loudly if a Twisted upgrade renames one. Should one be missing at run
time, :func:`direct_transport` turns the shortcut off instead of failing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

#: Transports the shortcut may write to: Twisted's TCP connections (not TLS,
#: whose transport is a protocol wrapper).
DIRECT_TRANSPORTS: tuple[type, ...] = (tcp.Connection,)

#: The attributes of a TCP connection the shortcut reads.
REQUIRED = (
    "_tempDataLen",
    "offset",
    "dataBuffer",
    "connected",
    "disconnecting",
    "_aborting",
    "SEND_LIMIT",
    "socket",
)


def direct_transport(transport: Any) -> Any:
    """``transport`` if :func:`send` may write to it directly, else None."""
    if not isinstance(transport, DIRECT_TRANSPORTS):
        return None
    if not all(hasattr(transport, name) for name in REQUIRED):
        return None
    return transport


def send(direct: Any, data: bytes) -> bytes:
    """Write what the kernel takes of ``data`` now, if nothing is queued;
    return the rest, for ``transport.write``."""
    if (
        not direct._tempDataLen
        and direct.offset == len(direct.dataBuffer)
        and direct.connected
        and not direct.disconnecting
        and not direct._aborting
        # (A larger body would be copied to queue its remainder.)
        and len(data) <= direct.SEND_LIMIT
    ):
        # (socket.send itself, not writeSomeData: no slice view, no EINTR
        # loop, which Python's own send has had since PEP 475.)
        try:
            sent = direct.socket.send(data)
        except OSError:
            # Full, or broken: queued, Twisted's next doWrite meets the same
            # condition and handles it as it always does.
            return data
        return data[sent:] if sent else data
    return data
