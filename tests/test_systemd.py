"""systemd socket activation: daphne serves the sockets a real parent passed.

The parent is ``systemd-socket-activate`` when it is installed, and otherwise
(and for the cases it cannot set up) a small Python parent: it binds the
sockets, and a wrapper process puts them at descriptors 3, 4, ..., sets
``LISTEN_FDS``/``LISTEN_PID``/``LISTEN_FDNAMES`` for its own pid and execs
``python -m daphne`` (so the pid is daphne's, as with systemd).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.clients import Raw
from tests.conftest import DaphneServer

APP = "tests.process_apps:application"

#: ``python -c WRAPPER NAMES FD... -- COMMAND``: descriptors FD... to 3, 4,
#: ..., the activation variables for this pid, then exec ``COMMAND``.
WRAPPER = """\
import os, sys
end = sys.argv.index("--")
names, fds = sys.argv[1], [int(fd) for fd in sys.argv[2:end]]
for index, fd in enumerate(fds):
    os.dup2(fd, 3 + index)
os.environ.update(
    LISTEN_FDS=str(len(fds)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=names
)
os.execv(sys.argv[end + 1], sys.argv[end + 1:])
"""


def get(sock: socket.socket) -> dict:
    """GET / on a connected socket: the process_apps answer."""
    with Raw(0, sock=sock, timeout=15) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = conn.read_response()
    assert response.status == 200, response
    return json.loads(response.body)


def connect_tcp(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def connect_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(15)
    sock.connect(path)
    return sock


@contextmanager
def activated(
    sockets: list[socket.socket], names: str, *args: str
) -> Iterator[DaphneServer]:
    """``python -m daphne ARGS`` given ``sockets`` by the Python parent."""
    fds = tuple(sock.fileno() for sock in sockets)
    wrapper = (sys.executable, "-c", WRAPPER, names, *map(str, fds), "--")
    server = DaphneServer(list(args), wrapper=wrapper, pass_fds=fds)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.stderr


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


@pytest.fixture
def unix_listener(tmp_path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "daphne.sock"))
    sock.listen(16)
    yield sock
    sock.close()


def test_serves_passed_tcp_and_unix_sockets(tcp_listener, unix_listener):
    """With no binding options, daphne serves the passed sockets (both
    families, told from the descriptors), under their names; the
    application does not inherit the variables."""
    with activated([tcp_listener, unix_listener], "web:local", APP) as server:
        port = tcp_listener.getsockname()[1]
        over_tcp = get(connect_tcp(port))
        over_unix = get(connect_unix(unix_listener.getsockname()))
        assert over_tcp["pid"] == over_unix["pid"] == server.proc.pid
        assert over_tcp["environ"] == {}
        server.wait_for_line(r"fd 3 \(web\), fd 4 \(local\)", "stderr")
        assert len(server.addresses) == 2
        assert not any("8000" in address for address in server.addresses)


def test_binding_options_win(tcp_listener):
    """Given binding options too, daphne listens only where they say (the
    passed socket is then for --fd or -e systemd: to name), and still takes
    the variables out of the environment."""
    with activated(
        [tcp_listener], "web", "-e", "tcp:0:interface=127.0.0.1", APP
    ) as server:
        server.wait_listening()
        answer = get(connect_tcp(server.port))
        assert answer["environ"] == {}
        assert server.port != tcp_listener.getsockname()[1]
        assert [line for line in server.stderr if "fd 3" in line] == []


def test_passed_socket_with_explicit_fd(tcp_listener):
    """``--fd 3`` under socket activation (the set-up the README showed
    before activation was automatic) still serves the socket once."""
    with activated([tcp_listener], "web", "--fd", "3", APP) as server:
        server.wait_listening()
        assert get(connect_tcp(tcp_listener.getsockname()[1]))["environ"] == {}
        assert len(server.addresses) == 1


def test_missing_descriptor_is_one_line(tcp_listener):
    """LISTEN_FDS naming more descriptors than were passed: one line, exit 1."""
    wrapper = (sys.executable, "-c", WRAPPER.replace("len(fds)", "len(fds) + 1"))
    fd = tcp_listener.fileno()
    server = DaphneServer(
        [APP], wrapper=(*wrapper, "web", str(fd), "--"), pass_fds=(fd,)
    )
    assert server.wait() == 1
    assert server.stderr == [
        "daphne: error: LISTEN_FDS=2, but file descriptor 4 is not open "
        "(Bad file descriptor)"
    ]


SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.mark.skipif(
    SOCKET_ACTIVATE is None,
    reason="systemd-socket-activate is not installed (Debian's systemd package)",
)
def test_systemd_socket_activate(tmp_path):
    """systemd's own tool passes a UNIX socket (it starts daphne on the
    first connection): the connection is served by the process it started."""
    path = str(tmp_path / "activated.sock")
    server = DaphneServer(
        [APP],
        wrapper=(SOCKET_ACTIVATE, "-l", path, "--fdname=web", "-E", "PYTHONPATH"),
    )
    try:
        server.wait_for_line(f"Listening on {path}", "stderr", timeout=15)
        answer = get(connect_unix(path))
        assert answer == {"pid": server.proc.pid, "environ": {}}
        server.wait_for_line(r"fd 3 \(web\)", "stderr")
    finally:
        assert server.stop(signal.SIGTERM) == 0, server.stderr


def test_reloader_hands_the_socket_to_its_server(tcp_listener, tmp_path):
    """Under --reload, the server process the reloader starts serves the
    passed socket, and sees neither the variables nor the reloader's mark."""
    pytest.importorskip("watchfiles", reason="watchfiles is not installed")
    args = ("--reload", "--reload-dir", str(tmp_path), APP)
    with activated([tcp_listener], "web", *args) as server:
        answer = get(connect_tcp(tcp_listener.getsockname()[1]))
        assert answer["pid"] != server.proc.pid
        assert answer["environ"] == {}


def test_a_passed_unix_socket_outlives_daphne(unix_listener):
    """The socket is systemd's: once daphne has stopped, its path is still
    there and it still takes connections (for the next daphne systemd
    starts). Twisted's own adopted port would remove the path and shut the
    socket down."""
    path = unix_listener.getsockname()
    with activated([unix_listener], "local", APP) as server:
        get(connect_unix(path))
    assert server.proc.returncode == 0
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with connect_unix(path):
        accepted, _ = unix_listener.accept()
        accepted.close()
