"""Listening ports on sockets that several processes serve (``--workers``).

Every worker adopts the listening sockets its supervisor bound (or a process
manager passed in), and serves them alongside the other workers. Twisted's
ports assume they own their socket, which is wrong twice here:

- Stopping an adopted UNIX port shuts the socket down and removes its path.
  The socket is one kernel object shared by every worker, so the first worker
  to drain (a SIGHUP replacement, ``--limit-max-requests``) would refuse new
  connections for all of them, and take away the path clients connect to.
  Here stopping closes this process's copy only; the path belongs to whoever
  bound it (the supervisor removes it when it exits).
- A port accepts up to ``numberAccepts`` connections each time its socket is
  readable, starting at 100 and growing under load. Every worker is woken for
  a new connection and the first to run takes the whole burst, so one worker
  ended up holding 58 of the bench's 64 keep-alive connections. Here a port
  accepts one connection per wake-up: the others are left to whichever worker
  gets to them first, and a busy worker gets to them last.

An adopted UNIX port also sets its path's mode (0666 by default) when it
starts; here it keeps the mode the socket's owner gave it.

The same holds for a socket inherited from a process manager (``--fd``,
systemd socket activation), even with one process: its owner keeps it, and
may run several daphne processes on it (:class:`AdoptShared`).

This uses Twisted names that are not public (:data:`PRIVATE_NAMES`);
``tests/test_shared_ports.py`` checks them and the behaviour above, so a
Twisted upgrade that changes them fails loudly there. setup.py bounds
Twisted's version.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.interfaces import IListeningPort

__all__ = [
    "PRIVATE_NAMES",
    "AdoptShared",
    "SharedTCPPort",
    "SharedUNIXPort",
    "adopt",
]

#: ``(class, attribute)`` pairs of Twisted's that this module relies on
#: (besides ``numberAccepts``, an instance attribute set when listening
#: starts, which the tests check by its effect).
PRIVATE_NAMES = (
    (tcp.Port, "_fromListeningDescriptor"),
    (unix.Port, "_fromListeningDescriptor"),
    (tcp.Port, "_shouldShutdown"),
)


class _OneAcceptPerWakeup:
    """Accept one connection each time the socket is readable."""

    numberAccepts: int

    def doRead(self) -> None:  # noqa: N802 (Twisted's name)
        # tcp.Port.doRead reads numberAccepts, then grows or shrinks it for
        # next time; setting it before every call keeps it at one.
        self.numberAccepts = 1
        super().doRead()  # type: ignore[misc]


class SharedTCPPort(_OneAcceptPerWakeup, tcp.Port):
    """A TCP (or TLS-wrapped) port on an inherited socket other processes
    serve too. (Twisted leaves an adopted TCP socket open for its owner
    already; only the accepting differs.)"""


class SharedUNIXPort(_OneAcceptPerWakeup, unix.Port):
    """A UNIX port on an inherited socket other processes serve too: stopping
    it neither shuts the socket down nor removes its path."""

    def startListening(self) -> None:  # noqa: N802 (Twisted's name)
        super().startListening()
        # As tcp.Port does for an adopted socket: close it, never shut it
        # down (shutdown() acts on the socket every process shares).
        self._shouldShutdown = False

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        # unix.Port.connectionLost removes the path, then does tcp.Port's
        # work: do only the latter.
        tcp.Port.connectionLost(self, reason)


def _filesystem_mode(fileno: int) -> int | None:
    """The permission bits of a UNIX socket's path, or None for an unnamed or
    abstract socket."""
    sock = socket.socket(fileno=fileno)
    try:
        name = sock.getsockname()
    finally:
        sock.detach()
    if not name or isinstance(name, bytes) and name.startswith(b"\0"):
        return None
    if isinstance(name, str) and name.startswith("\0"):
        return None
    return stat.S_IMODE(os.stat(name).st_mode)


def adopt(
    reactor: Any, fileno: int, family: socket.AddressFamily, factory: Any
) -> IListeningPort:
    """Listen on the listening socket ``fileno`` (left open: the port uses
    a copy), sharing it with other processes; the port is returned started."""
    port: tcp.Port
    if family == socket.AF_UNIX:
        mode = _filesystem_mode(fileno)
        port = SharedUNIXPort._fromListeningDescriptor(reactor, fileno, factory)
        if mode is not None:
            port.mode = mode  # startListening sets it: set the one it has
    else:
        port = SharedTCPPort._fromListeningDescriptor(reactor, fileno, family, factory)
    port.startListening()
    return port


class AdoptShared:
    """Stands in for the reactor while an ``fd:`` endpoint listens: the
    inherited socket (``--fd``, systemd's) becomes a shared port, since its
    owner, or other daphne processes, may serve it too."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def adoptStreamPort(  # noqa: N802 (Twisted's name)
        self,
        fileDescriptor: int,  # noqa: N803
        addressFamily: socket.AddressFamily,  # noqa: N803
        factory: Any,
    ) -> IListeningPort:
        return adopt(self.reactor, fileDescriptor, addressFamily, factory)
