"""``daphne.reactor``: the asyncio reactor daphne installs, and its dispatch.

Each test builds a :class:`~daphne.reactor.Reactor` on a fresh asyncio loop
(never installed as Twisted's global reactor) and drives it over real
sockets; the whole suite's wire tests run daphne on it too.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
from twisted.internet import error, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.protocol import Protocol

from daphne import reactor as daphne_reactor
from daphne.reactor import REQUIRED, Reactor

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def reactor():
    loop = asyncio.new_event_loop()
    built = Reactor(loop)
    yield built
    built.removeAll()
    loop.close()


class SocketReader(FileDescriptor):
    """A readable socket whose ``doRead`` does what a test asks."""

    def __init__(self, reactor, sock, on_read) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.on_read = on_read
        self.lost = []
        self.connected = True

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self):
        return self.on_read(self.sock.recv(4096))

    def connectionLost(self, reason) -> None:
        self.lost.append(reason)
        super().connectionLost(reason)


def run_until(reactor, condition, timeout=5.0) -> None:
    loop = reactor._asyncioEventloop

    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(wait(), timeout))


def test_twisted_still_has_what_the_dispatch_uses(reactor):
    """Fails if a Twisted upgrade renamed a private name the reactor uses: bump
    the Twisted bound in setup.py only once daphne.reactor is adapted."""
    missing = [name for name in REQUIRED if not hasattr(reactor, name)]
    assert not missing, f"Twisted's asyncio reactor no longer has {missing}"
    assert reactor.light_dispatch


def test_readers_are_dispatched_without_the_logging_context(reactor):
    a, b = socket.socketpair()
    seen = []
    reader = SocketReader(reactor, a, seen.append)
    reactor.addReader(reader)
    assert reader in reactor.getReaders()
    b.sendall(b"hello")
    run_until(reactor, lambda: seen)
    assert seen == [b"hello"]
    # The loop calls the reactor's own dispatch, not callWithLogger.
    handle = reactor._asyncioEventloop._selector.get_key(a.fileno()).data[0]
    assert handle._callback == reactor._dispatch
    reactor.removeReader(reader)
    assert reader not in reactor.getReaders()
    a.close()
    b.close()


def test_a_reason_returned_by_doRead_disconnects(reactor):
    a, b = socket.socketpair()
    reader = SocketReader(reactor, a, lambda data: error.ConnectionDone())
    reactor.addReader(reader)
    b.sendall(b"x")
    run_until(reactor, lambda: reader.lost)
    assert reader.lost[0].check(error.ConnectionDone)
    assert reader not in reactor.getReaders()
    a.close()
    b.close()


def test_an_exception_in_doRead_is_logged_and_disconnects(reactor, capsys):
    a, b = socket.socketpair()

    def broken(data):
        raise ValueError("broken protocol")

    reader = SocketReader(reactor, a, broken)
    reactor.addReader(reader)
    failures = []
    from twisted.logger import globalLogPublisher

    def observer(event) -> None:
        if "log_failure" in event:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observer)
    try:
        b.sendall(b"x")
        run_until(reactor, lambda: reader.lost)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert reader.lost[0].check(ValueError)
    assert [failure.check(ValueError) for failure in failures] == [ValueError]
    assert reader not in reactor.getReaders()
    a.close()
    b.close()


def test_keyboard_interrupt_propagates(reactor):
    a, b = socket.socketpair()

    def interrupted(data):
        raise KeyboardInterrupt

    reader = SocketReader(reactor, a, interrupted)
    b.sendall(b"x")
    with pytest.raises(KeyboardInterrupt):
        reactor._dispatch(reader, True)
    a.close()
    b.close()


def test_an_event_for_a_closed_descriptor_disconnects(reactor):
    a, b = socket.socketpair()
    reader = SocketReader(reactor, a, lambda data: None)
    reactor.addReader(reader)
    a.close()  # fileno() is -1 from now on
    reactor._dispatch(reader, True)
    assert reader.lost[0].check(error.ConnectionFdescWentAway)
    b.close()


def test_writers_are_dispatched(reactor):
    """A TCP connection's queued write goes out through the dispatch."""
    server_sock, client_sock = socket.socketpair()
    server_sock.setblocking(False)
    conn = tcp.Connection(server_sock, Protocol(), reactor)
    conn.connected = True
    conn.write(b"queued")
    assert conn in reactor.getWriters()
    handle = reactor._asyncioEventloop._selector.get_key(server_sock.fileno()).data[1]
    assert handle._callback == reactor._dispatch
    run_until(reactor, lambda: conn not in reactor.getWriters())
    assert client_sock.recv(100) == b"queued"
    server_sock.close()
    client_sock.close()


def test_a_twisted_without_the_names_gets_its_own_dispatch(monkeypatch):
    monkeypatch.setattr(daphne_reactor, "REQUIRED", (*REQUIRED, "_renamedByTwisted"))
    loop = asyncio.new_event_loop()
    built = Reactor(loop)
    try:
        assert not built.light_dispatch
        a, b = socket.socketpair()
        seen = []
        reader = SocketReader(built, a, seen.append)
        built.addReader(reader)
        b.sendall(b"hello")
        run_until(built, lambda: seen)
        assert seen == [b"hello"]
        a.close()
        b.close()
    finally:
        built.removeAll()
        loop.close()


def test_daphne_installs_it():
    code = (
        "from daphne.server import install_reactor\n"
        "installed = install_reactor()\n"
        "from twisted.internet import reactor\n"
        "assert installed is reactor\n"
        "print(type(reactor).__module__, type(reactor).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["daphne.reactor", "Reactor"]
    assert issubclass(Reactor, AsyncioSelectorReactor)
