"""Tests for daphne.endpoints and the fd: Twisted endpoint plugin."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import twisted.plugins
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    UNIXServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.internet.testing import MemoryReactor
from twisted.plugin import IPlugin, getPlugins
from zope.interface.verify import verifyObject

from daphne.endpoints import (
    EndpointError,
    build_endpoint_description_strings,
    server_endpoint,
)

PLUGIN_SOURCE = (
    Path(__file__).resolve().parent.parent
    / "daphne"
    / "twisted"
    / "plugins"
    / "fd_endpoint.py"
)

# --------------------------------------------------------------------------
# build_endpoint_description_strings
# --------------------------------------------------------------------------


def test_tcp_description():
    assert build_endpoint_description_strings(host="127.0.0.1", port=8000) == [
        "tcp:port=8000:interface=127.0.0.1"
    ]


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_tcp_ipv6_description_is_escaped(host):
    assert build_endpoint_description_strings(host=host, port=8000) == [
        r"tcp:port=8000:interface=\:\:1"
    ]


def test_tcp_full_ipv6_description():
    assert build_endpoint_description_strings(host="[2001:db8::1]", port="443") == [
        r"tcp:port=443:interface=2001\:db8\:\:1"
    ]


def test_unix_description():
    assert build_endpoint_description_strings(unix_socket="/tmp/daphne.sock") == [
        "unix:/tmp/daphne.sock"
    ]


def test_unix_description_escapes_separators():
    assert build_endpoint_description_strings(unix_socket="/tmp/a:b=c.sock") == [
        r"unix:/tmp/a\:b\=c.sock"
    ]


def test_fd_description():
    assert build_endpoint_description_strings(file_descriptor=5) == ["fd:fileno=5"]


def test_combined_descriptions():
    assert build_endpoint_description_strings(
        host="0.0.0.0", port=80, unix_socket="/run/d.sock", file_descriptor=3
    ) == ["tcp:port=80:interface=0.0.0.0", "unix:/run/d.sock", "fd:fileno=3"]


def test_no_bindings():
    assert build_endpoint_description_strings() == []


@pytest.mark.parametrize(
    "kwargs", [{"host": "127.0.0.1"}, {"port": 8000}, {"port": 0, "unix_socket": "s"}]
)
def test_tcp_requires_host_and_port(kwargs):
    with pytest.raises(ValueError, match="TCP binding requires both host and port"):
        build_endpoint_description_strings(**kwargs)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[2001:db8::1]", "localhost"])
def test_tcp_description_round_trips_through_twisted(host):
    (description,) = build_endpoint_description_strings(host=host, port=8123)
    endpoint = server_endpoint(MemoryReactor(), description)
    assert isinstance(endpoint, TCP4ServerEndpoint)
    assert endpoint._port == 8123
    assert endpoint._interface == host.strip("[]")


@pytest.mark.parametrize("path", ["/tmp/plain.sock", "/tmp/we:ird=na\\me.sock"])
def test_unix_description_round_trips_through_twisted(path):
    (description,) = build_endpoint_description_strings(unix_socket=path)
    endpoint = server_endpoint(MemoryReactor(), description)
    assert isinstance(endpoint, UNIXServerEndpoint)
    assert endpoint._address == path


# --------------------------------------------------------------------------
# server_endpoint
# --------------------------------------------------------------------------


@pytest.fixture
def tcp_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def tcp6_socket():
    if not socket.has_ipv6:
        pytest.skip("IPv6 is not available")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.bind(("::1", 0))
    except OSError:
        sock.close()
        pytest.skip("cannot bind to ::1")
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def unix_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "s.sock"))
    sock.listen()
    yield sock
    sock.close()


def endpoint_error(description: str) -> str:
    with pytest.raises(EndpointError) as info:
        server_endpoint(MemoryReactor(), description)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"Invalid endpoint {description!r}: ")
    assert isinstance(info.value, ValueError)
    return message


def assert_still_open(sock: socket.socket) -> None:
    os.fstat(sock.fileno())
    sock.getsockname()


@pytest.mark.parametrize("template", ["fd:fileno={}", "fd:{}", "FD:fileno={}"])
def test_fd_endpoint_detects_inet(tcp_socket, template):
    reactor = MemoryReactor()
    endpoint = server_endpoint(reactor, template.format(tcp_socket.fileno()))
    assert isinstance(endpoint, AdoptedStreamServerEndpoint)
    assert endpoint.fileno == tcp_socket.fileno()
    assert endpoint.addressFamily == socket.AF_INET
    assert endpoint.reactor is reactor
    assert_still_open(tcp_socket)


def test_fd_endpoint_detects_inet6(tcp6_socket):
    endpoint = server_endpoint(MemoryReactor(), f"fd:fileno={tcp6_socket.fileno()}")
    assert endpoint.addressFamily == socket.AF_INET6
    assert_still_open(tcp6_socket)


def test_fd_endpoint_detects_unix(unix_socket):
    endpoint = server_endpoint(MemoryReactor(), f"fd:fileno={unix_socket.fileno()}")
    assert endpoint.addressFamily == socket.AF_UNIX
    assert_still_open(unix_socket)


@pytest.mark.parametrize("domain", ["INET", "inet"])
def test_fd_endpoint_explicit_domain(tcp_socket, domain):
    endpoint = server_endpoint(
        MemoryReactor(), f"fd:fileno={tcp_socket.fileno()}:domain={domain}"
    )
    assert endpoint.addressFamily == socket.AF_INET


def test_fd_endpoint_domain_mismatch(tcp_socket):
    message = endpoint_error(f"fd:fileno={tcp_socket.fileno()}:domain=UNIX")
    assert "AF_INET" in message
    assert_still_open(tcp_socket)


def test_fd_endpoint_unknown_domain(tcp_socket):
    message = endpoint_error(f"fd:fileno={tcp_socket.fileno()}:domain=IPX")
    assert "domain must be INET, INET6 or UNIX" in message


@pytest.mark.parametrize(
    "description",
    ["fd:fileno=abc", "fd:fileno=-1", "fd:fileno=", "fd:fileno=1.5", "fd:x"],
)
def test_fd_endpoint_bad_fileno(description):
    assert "fileno must be a non-negative integer" in endpoint_error(description)


@pytest.mark.parametrize("description", ["fd", "fd:", "fd:domain=INET"])
def test_fd_endpoint_missing_fileno(description):
    assert "fileno is required" in endpoint_error(description)


def test_fd_endpoint_extra_arguments(tcp_socket):
    fileno = tcp_socket.fileno()
    assert "unknown fd endpoint argument" in endpoint_error(
        f"fd:fileno={fileno}:backlog=5"
    )
    assert "more than one" in endpoint_error(f"fd:{fileno}:fileno={fileno}")
    assert "more than one" in endpoint_error(f"fd:{fileno}:{fileno}")


def test_fd_endpoint_not_a_socket():
    read_fd, write_fd = os.pipe()
    try:
        message = endpoint_error(f"fd:fileno={read_fd}")
        assert f"file descriptor {read_fd} is not an open socket" in message
        os.fstat(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_fd_endpoint_closed_descriptor():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    assert "is not an open socket" in endpoint_error(f"fd:fileno={read_fd}")


def test_fd_endpoint_datagram_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        message = endpoint_error(f"fd:fileno={sock.fileno()}")
        assert "is not a stream socket" in message
        assert_still_open(sock)
    finally:
        sock.close()


def test_fd_endpoint_huge_fileno():
    assert "is not" in endpoint_error(f"fd:fileno={2**80}")


def test_server_endpoint_tcp():
    endpoint = server_endpoint(MemoryReactor(), "tcp:8000:interface=127.0.0.1")
    assert isinstance(endpoint, TCP4ServerEndpoint)


def test_server_endpoint_unix():
    endpoint = server_endpoint(MemoryReactor(), "unix:/tmp/x.sock")
    assert isinstance(endpoint, UNIXServerEndpoint)


@pytest.mark.parametrize(
    "description",
    [
        "bogus:1",
        "tcp:notaport",
        "tcp",
        "tcp:80:bogus=1",
        "unix:/x:mode=9z",
        "ssl:443:nope=1",
        "",
    ],
)
def test_server_endpoint_invalid_strings(description):
    endpoint_error(description)


def test_server_endpoint_unknown_type_message():
    assert endpoint_error("bogus:1") == (
        "Invalid endpoint 'bogus:1': Unknown endpoint type: 'bogus'"
    )


# --------------------------------------------------------------------------
# The Twisted plugin
# --------------------------------------------------------------------------


@pytest.fixture
def fd_plugin(tmp_path, monkeypatch):
    """Make the plugin discoverable from a scratch copy.

    A copy keeps Twisted's dropin.cache out of the source tree, and the
    distinct module name avoids clashing with an installed copy.
    """
    module_name = "daphne_fd_endpoint_under_test"
    shutil.copy(PLUGIN_SOURCE, tmp_path / f"{module_name}.py")
    monkeypatch.setattr(
        twisted.plugins, "__path__", [*twisted.plugins.__path__, str(tmp_path)]
    )
    yield
    sys.modules.pop(f"twisted.plugins.{module_name}", None)


def discovered_fd_plugins():
    return [
        plugin
        for plugin in getPlugins(IStreamServerEndpointStringParser)
        if plugin.prefix == "fd"
    ]


def test_plugin_provides_interfaces(fd_plugin):
    plugins = discovered_fd_plugins()
    assert plugins
    for plugin in plugins:
        assert IPlugin.providedBy(plugin)
        assert verifyObject(IStreamServerEndpointStringParser, plugin)


@pytest.mark.parametrize(
    "template", ["fd:fileno={}", "fd:{}", "fd:fileno={}:domain=INET"]
)
def test_plugin_via_server_from_string(fd_plugin, tcp_socket, template):
    reactor = MemoryReactor()
    endpoint = serverFromString(reactor, template.format(tcp_socket.fileno()))
    assert isinstance(endpoint, AdoptedStreamServerEndpoint)
    assert endpoint.fileno == tcp_socket.fileno()
    assert endpoint.addressFamily == socket.AF_INET
    assert endpoint.reactor is reactor
    assert_still_open(tcp_socket)


def test_plugin_rejects_bad_arguments(fd_plugin):
    with pytest.raises(EndpointError, match="fileno must be a non-negative integer"):
        serverFromString(MemoryReactor(), "fd:fileno=nope")


# --------------------------------------------------------------------------
# IPv6 interfaces written bare in -e strings
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "interface", "backlog"),
    [
        ("tcp:8445:interface=::1", "::1", 50),
        ("tcp:8445:interface=[::1]", "::1", 50),
        (r"tcp:8445:interface=\:\:1", "::1", 50),
        ("tcp:port=8445:interface=fe80::1%lo", "fe80::1%lo", 50),
        ("tcp:8445:interface=::ffff:127.0.0.1:backlog=7", "::ffff:127.0.0.1", 7),
        ("tcp:8445:interface=2001:db8::1:backlog=7", "2001:db8::1", 7),
        ("tcp:8445:interface=::", "::", 50),
        # Positional port after the keyword: not an address, left as it was.
        ("tcp:interface=127.0.0.1:8445", "127.0.0.1", 50),
    ],
)
def test_bare_ipv6_interface_is_accepted(description, interface, backlog):
    """Twisted reads an unescaped ':' as a separator; an interface value that
    only makes sense as one IPv6 address is read as that address."""
    endpoint = server_endpoint(MemoryReactor(), description)
    assert isinstance(endpoint, TCP4ServerEndpoint)
    assert endpoint._port == 8445
    assert endpoint._interface == interface
    assert endpoint._backlog == backlog


@pytest.mark.parametrize(
    "description", ["tcp:8445:interface=::1::2", "tcp:8445:interface=[::1"]
)
def test_bare_interface_that_is_no_ipv6_address_is_explained(description):
    message = endpoint_error(description)
    assert "is not an IPv6 address" in message
    assert r"interface=\:\:1" in message
    assert "_parseTCP" not in message
