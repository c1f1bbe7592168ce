"""The reactor daphne installs: Twisted's asyncio reactor, dispatching socket
events without the legacy logging context.

Twisted's :class:`~twisted.internet.asyncioreactor.AsyncioSelectorReactor`
registers every reader and writer with the event loop through
``twisted.python.log.callWithLogger``, which looks up the transport's
``logPrefix`` and pushes a ``{"system": prefix}`` context for the legacy
``twisted.python.log`` module around each ``doRead`` and ``doWrite``: about a
dozen Python calls for every read, for a prefix that only log observers of
that module ever see (daphne logs through :mod:`logging`). :class:`Reactor`
registers its own dispatch instead, which does the rest of what Twisted does
around a read or a write: an event for a closed descriptor disconnects it, an
exception from ``doRead``/``doWrite`` is logged and disconnects the
descriptor (as does a returned reason), and ``KeyboardInterrupt`` propagates.
Everything else (endpoints, TLS, producers, timers, threads) is Twisted's.

The dispatch reads and updates private attributes of the asyncio reactor,
named in :data:`REQUIRED` and checked by ``tests/test_reactor.py``, which
fails loudly if a Twisted upgrade renames one. Should one be missing at run
time, the reactor registers through Twisted's own code instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.posixbase import _NO_FILEDESC

#: What :class:`Reactor` uses of ``AsyncioSelectorReactor`` beyond its public
#: interface (instance attributes are checked on an instance).
REQUIRED = (
    "_asyncioEventloop",
    "_readers",
    "_writers",
    "_continuousPolling",
    "_disconnectSelectable",
    "_log",
)


class Reactor(AsyncioSelectorReactor):
    """The asyncio reactor, with a lighter dispatch of socket events."""

    #: This Twisted has what the dispatch needs (else: Twisted's own). False
    #: while the base class builds the reactor (its waker registers then).
    light_dispatch = False

    def __init__(self, eventloop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(eventloop)
        self.light_dispatch = all(hasattr(self, name) for name in REQUIRED)

    def addReader(self, reader: Any) -> None:
        if not self.light_dispatch:
            super().addReader(reader)
            return
        if reader in self._readers or self._continuousPolling.isReading(reader):
            return
        try:
            fd = reader.fileno()
            self._asyncioEventloop.add_reader(fd, self._dispatch, reader, True)
        except OSError:
            # A descriptor epoll refuses (a regular file): Twisted's own path
            # knows what to do with it.
            super().addReader(reader)
            return
        self._readers[reader] = fd

    def addWriter(self, writer: Any) -> None:
        if not self.light_dispatch:
            super().addWriter(writer)
            return
        if writer in self._writers or self._continuousPolling.isWriting(writer):
            return
        try:
            fd = writer.fileno()
            self._asyncioEventloop.add_writer(fd, self._dispatch, writer, False)
        except OSError:
            super().addWriter(writer)
            return
        self._writers[writer] = fd

    def _dispatch(self, selectable: Any, read: bool) -> None:
        """One readiness event: ``doRead`` or ``doWrite``, and disconnect the
        descriptor if it returns (or raises) a reason."""
        if selectable.fileno() == -1:
            self._disconnectSelectable(selectable, _NO_FILEDESC, read)
            return
        try:
            why = selectable.doRead() if read else selectable.doWrite()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            why = exc
            self._log.failure(
                "Unhandled error in {selectable!r}", selectable=selectable
            )
        if why:
            self._disconnectSelectable(selectable, why, read)


def install(loop: asyncio.AbstractEventLoop) -> Reactor:
    """Build daphne's reactor on ``loop`` and make it Twisted's global one."""
    from twisted.internet.main import installReactor

    reactor = Reactor(loop)
    installReactor(reactor)
    return reactor
