"""daphne.shared_ports: the Twisted names it relies on, and what it changes.

A port here runs on a reactor of its own (never installed), turned by hand,
over real sockets. If a Twisted upgrade breaks one of these tests, read the
module's docstring before changing anything: the workers depend on it.
"""

from __future__ import annotations

import os
import socket
import stat

import pytest
from twisted.internet import protocol
from twisted.internet.error import ConnectionDone
from twisted.internet.selectreactor import SelectReactor
from twisted.python.failure import Failure

from daphne.shared_ports import PRIVATE_NAMES, SharedTCPPort, SharedUNIXPort, adopt


@pytest.mark.parametrize(("cls", "name"), PRIVATE_NAMES)
def test_the_twisted_names_used_exist(cls, name):
    assert hasattr(cls, name), (
        f"Twisted no longer has {cls.__name__}.{name}: daphne/shared_ports.py "
        "needs updating for this Twisted version"
    )


class Counting(protocol.Factory):
    def __init__(self) -> None:
        self.built = 0

    def buildProtocol(self, addr):  # noqa: N802 (Twisted's name)
        self.built += 1
        return protocol.Protocol()


@pytest.fixture
def reactor():
    reactor = SelectReactor()
    yield reactor
    for selectable in reactor.removeAll():
        selectable.connectionLost(Failure(ConnectionDone()))
    reactor.waker.connectionLost(None)


def turn(reactor, until, turns: int = 50):
    for _ in range(turns):
        if until():
            return
        reactor.iterate(0.01)
    raise AssertionError("the reactor never got there")


def stop(reactor, port) -> None:
    done = []
    port.stopListening().addBoth(done.append)
    turn(reactor, lambda: done)


@pytest.fixture
def unix_socket(tmp_path):
    """A listening UNIX socket at a path, as the supervisor binds it."""
    path = str(tmp_path / "s.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    yield path, sock
    sock.close()


def test_stopping_a_shared_unix_port_leaves_the_socket_to_the_others(
    reactor, unix_socket
):
    """The path stays, keeps its mode, and the socket still takes
    connections for the other processes (here: the original descriptor)."""
    path, sock = unix_socket
    factory = Counting()
    port = adopt(reactor, sock.fileno(), socket.AF_UNIX, factory)
    assert isinstance(port, SharedUNIXPort)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)
        turn(reactor, lambda: factory.built == 1)
    stop(reactor, port)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)  # refused if the socket had been shut down
        accepted, _ = sock.accept()
        accepted.close()


def test_twisteds_own_adopted_unix_port_removes_the_path(reactor, unix_socket):
    """Why SharedUNIXPort exists. Should this fail, Twisted has stopped
    removing the path, and the override may no longer be needed."""
    path, sock = unix_socket
    port = reactor.adoptStreamPort(sock.fileno(), socket.AF_UNIX, Counting())
    stop(reactor, port)
    assert not os.path.exists(path)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "twisted"])
def test_a_shared_port_accepts_one_connection_per_wakeup(reactor, shared):
    """Several connections waiting: one turn of the reactor takes one, where
    Twisted's own port takes them all (the control)."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as sock:
        sock.setblocking(False)
        factory = Counting()
        if shared:
            port = adopt(reactor, sock.fileno(), socket.AF_INET, factory)
            assert isinstance(port, SharedTCPPort)
        else:
            port = reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
        clients = [socket.create_connection(sock.getsockname()) for _ in range(5)]
        reactor.iterate(0.5)
        assert factory.built == (1 if shared else 5)
        turn(reactor, lambda: factory.built == 5)
        stop(reactor, port)
        for client in clients:
            client.close()
