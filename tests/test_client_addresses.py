"""Addresses in log lines, and IPv6 listening, over real sockets.

Clients are logged as ``host:port``, ``[host]:port`` for IPv6 and ``a UNIX
socket peer`` for UNIX sockets, never as a Python list; IPv6 listening
addresses get brackets. ``-b ::1``, ``-b [::1]`` and ``-e tcp:...:interface=::1``
(unescaped) all listen on the IPv6 loopback.
"""

from __future__ import annotations

import json
import re
import socket

import pytest

from .clients import Raw
from .conftest import run_daphne


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)"
)

NO_HOST = b"GET / HTTP/1.1\r\n\r\n"  # refused: HTTP/1.1 needs a Host header


def connect6(port: int) -> Raw:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(("::1", port))
    return Raw(port, sock=sock)


@needs_ipv6
@pytest.mark.parametrize(
    "args",
    [["-b", "::1", "-p", "0"], ["-b", "[::1]", "-p", "0"]]
    + [["-e", "tcp:0:interface=::1"], ["-e", "tcp:0:interface=[::1]"]],
    ids=" ".join,
)
def test_ipv6_loopback_serves_and_logs_bracketed_addresses(args):
    with run_daphne(
        "--access-log", "-", *args, app="tests.cli_apps:application", listen=False
    ) as server:
        server.wait_listening()
        (address,) = server.addresses
        assert re.fullmatch(r"\[::1\]:\d+", address), server.stderr
        port = server.port
        with connect6(port) as conn:
            conn.send(b"GET /v6 HTTP/1.1\r\nHost: [::1]\r\n\r\n")
            response = conn.read_response()
            client_port = conn.local_port
        assert response.status == 200
        assert json.loads(response.body)["client"] == ["::1", client_port]
        server.wait_for_line(rf'^\[::1\]:{client_port} - - \[.*\] "GET /v6"')
        with connect6(port) as conn:
            conn.send(NO_HOST)
            assert conn.read_response().status == 400
            client_port = conn.local_port
        line = server.wait_for_line("Refused request from", stream="stderr")
        assert f"Refused request from [::1]:{client_port}: " in line


def test_ipv4_and_unix_clients_are_logged_readably(tmp_path):
    path = tmp_path / "d.sock"
    with run_daphne("-u", str(path)) as server:
        server.wait_listening(2)
        with Raw(server.port) as conn:
            conn.send(NO_HOST)
            assert conn.read_response().status == 400
            client_port = conn.local_port
        line = server.wait_for_line("Refused request from 127", stream="stderr")
        assert f"Refused request from 127.0.0.1:{client_port}: " in line
        with Raw(server.port) as conn:
            conn.send(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert conn.read_response().status == 400  # no Sec-WebSocket-Key
            client_port = conn.local_port
        line = server.wait_for_line("Refused WebSocket handshake", stream="stderr")
        assert f"Refused WebSocket handshake from 127.0.0.1:{client_port}: " in line
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            with Raw(0, sock=sock) as conn:
                conn.send(NO_HOST)
                assert conn.read_response().status == 400
        server.wait_for_line(
            "Refused request from a UNIX socket peer: ", stream="stderr"
        )
    assert not any("['" in line for line in server.stderr), server.stderr
