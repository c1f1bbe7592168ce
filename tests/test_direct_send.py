"""``HTTP11Connection.send``: direct ``writeSomeData`` on plain TCP, and closing.

Two kinds of tests:

* in memory, but on a real Twisted ``tcp.Server`` transport wrapped around a
  real connected TCP socket pair, with a fake reactor (a ``Clock`` that records
  readers and writers) so each reactor turn is taken by hand;
* over real sockets against a daphne subprocess; the application is
  ``application`` below (``/one`` answers with a whole body in ONE event,
  larger than one send() takes, so it is queued whole), everything else is
  ``tests.apps``.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest
from twisted.internet import tcp, unix
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from websockets.sync.client import connect as ws_connect

from daphne.config import Config
from daphne.protocols import HTTPFactory, direct
from daphne.protocols.http1 import HTTP11Connection
from tests import apps
from tests.conftest import run_daphne, run_tls_daphne
from tests.harness import GET, FakeHost, parse_responses

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024
APP = "tests.test_direct_send:application"


# -- the application the wire tests run ------------------------------------------


def pattern(size: int) -> bytes:
    """``size`` bytes whose byte ``i`` is ``i % 251`` (a prime, so a shifted
    or repeated 64 KiB block shows up as a mismatch)."""
    block = bytes(range(251)) * (MiB // 251 + 1)
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


async def one_body(scope, receive, send):
    params = apps.query(scope)
    size = int(params.get("kb", "0")) * 1024 + int(params.get("mb", "0")) * MiB
    body = pattern(size)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(size).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/one":
        await one_body(scope, receive, send)
    else:
        await apps.application(scope, receive, send)


# -- in memory, on a real tcp.Server ----------------------------------------------


class FDReactor(Clock):
    """A Clock that also records what is registered for reading and writing."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set = set()
        self.writers: set = set()

    def addReader(self, reader) -> None:
        self.readers.add(reader)

    def removeReader(self, reader) -> None:
        self.readers.discard(reader)

    def addWriter(self, writer) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer) -> None:
        self.writers.discard(writer)


class Wire:
    """An HTTP11Connection on a real ``tcp.Server`` whose peer is ``client``."""

    def __init__(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.client = socket.create_connection(listener.getsockname())
        # Small buffers so that a few hundred KiB fill the pipe.
        self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        server_sock, address = listener.accept()
        listener.close()
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        self.reactor = FDReactor()
        self.factory = HTTPFactory(Config(), FakeHost(), reactor=self.reactor)
        self.protocol: HTTP11Connection = self.factory.buildProtocol(None)
        self.transport = tcp.Server(
            server_sock, self.protocol, address, None, 1, self.reactor
        )
        self.transport.repstr = "<tcp.Server under test>"
        self.protocol.makeConnection(self.transport)
        self.lost: Failure | None = None

    @property
    def instance(self):
        return self.factory.host.instances[-1]

    def turn(self) -> None:
        """One reactor turn for the writer, as the real reactor would."""
        if self.transport in self.reactor.writers:
            why = self.transport.doWrite()
            if why is not None:
                self.lost = Failure(why)
                self.transport.connectionLost(self.lost)

    def read_all(self, body_size: int, timeout: float = 10, extra: int = 0) -> bytes:
        """Read ``extra`` bytes, then a response head and ``body_size`` bytes
        of body, turning the reactor meanwhile."""
        data = bytearray()
        self.client.setblocking(False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            end = data.find(b"\r\n\r\n", extra)
            if end >= 0 and len(data) >= end + 4 + body_size:
                break
            self.turn()
            try:
                chunk = self.client.recv(256 * 1024)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self.client.close()
        if self.transport.connected:
            self.transport.connectionLost(Failure(ConnectionLost()))


@pytest.fixture
def wire():
    w = Wire()
    yield w
    w.close()


def test_protocol_on_a_tcp_server_takes_the_direct_path(wire):
    wire.protocol.dataReceived(GET)
    wire.instance.respond(b"hello")
    # Written straight to the socket: nothing queued, no writer registered.
    assert wire.protocol.direct is wire.transport
    assert wire.transport._tempDataLen == 0
    assert wire.transport not in wire.reactor.writers
    wire.client.settimeout(2)
    response = parse_responses(wire.client.recv(65536))[0]
    assert response.body == b"hello"


def test_twisted_tcp_connections_still_have_what_the_shortcut_reads(wire):
    """daphne.protocols.direct reads private attributes of Twisted's TCP
    connection; a Twisted upgrade that renames one must fail here (at run
    time the shortcut would quietly turn itself off)."""
    missing = [name for name in direct.REQUIRED if not hasattr(wire.transport, name)]
    assert missing == [], f"Twisted's tcp.Connection lost {missing}"
    assert direct.direct_transport(wire.transport) is wire.transport
    assert direct.send(wire.transport, b"ping") == b""  # all of it went out
    wire.client.settimeout(2)
    assert wire.client.recv(100) == b"ping"


def test_shortcut_turns_itself_off_without_the_attributes_it_reads(wire, monkeypatch):
    """Should Twisted rename an attribute, the connection writes through
    ``transport.write`` as usual instead of failing."""
    monkeypatch.setattr(direct, "REQUIRED", (*direct.REQUIRED, "_renamedByTwisted"))
    assert direct.direct_transport(wire.transport) is None


def test_unix_server_is_a_tcp_connection_and_writes_the_same_way():
    # unix.Server subclasses tcp.Server, so it takes the direct path too; its
    # writeSomeData (sendmsg mixin) returns ``index + int`` on success.
    assert issubclass(unix.Server, tcp.Connection)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reactor = FDReactor()
    factory = HTTPFactory(Config(), FakeHost(), reactor=reactor)
    protocol = factory.buildProtocol(None)
    transport = unix.Server(a, protocol, "", None, 1, reactor)
    protocol.makeConnection(transport)
    try:
        assert protocol.direct is transport
        sent = transport.writeSomeData(b"x" * 10)
        assert type(sent) is int and sent == 10
        assert b.recv(100) == b"x" * 10
    finally:
        transport.connectionLost(Failure(ConnectionLost()))
        b.close()


def test_tls_transport_is_not_a_tcp_connection():
    # Over TLS the protocol's transport is the TLS wrapper, never the socket.
    assert not issubclass(TLSMemoryBIOProtocol, tcp.Connection)


def test_big_body_remainder_is_queued_and_pauses_the_producer(wire):
    """One 4 MiB body event, more than one send() takes (SEND_LIMIT): it is
    queued whole through write() (no copy of a remainder), which pauses the
    application; the body arrives byte-exact and the application resumes."""
    wire.protocol.dataReceived(GET)
    body = pattern(4 * MiB)
    wire.instance.start(headers=[(b"content-length", str(len(body)).encode())])
    wire.instance.body(body, more=True)
    assert wire.transport._tempDataLen >= len(body)
    assert wire.instance.calls == ["pause"]
    data = wire.read_all(len(body), timeout=20)
    # Drained by doWrite: the application is told to go on.
    assert wire.instance.calls == ["pause", "resume"]
    wire.instance.body(b"")
    assert parse_responses(data)[0].body == body


def test_a_full_socket_buffer_queues_everything_in_order(wire):
    """writeSomeData returns 0 (EWOULDBLOCK) when the kernel is full: the whole
    response is queued behind what is already in the socket."""
    wire.protocol.dataReceived(GET)
    filler = b""
    wire.transport.socket.setblocking(False)
    while True:  # fill the socket behind Twisted's back
        try:
            n = wire.transport.socket.send(b"F" * 65536)
        except BlockingIOError:
            break
        filler += b"F" * n
    assert wire.transport.writeSomeData(b"probe") == 0
    wire.instance.respond(b"after the filler")
    assert wire.transport._tempDataLen > 0
    assert wire.transport in wire.reactor.writers
    data = wire.read_all(len(b"after the filler"), extra=len(filler))
    assert data[: len(filler)] == filler
    assert parse_responses(data[len(filler) :])[0].body == b"after the filler"


def test_later_body_events_never_overtake_a_queued_remainder(wire):
    wire.protocol.dataReceived(GET)
    first, second = pattern(2 * MiB), b"tail" * 10
    length = str(len(first) + len(second)).encode()
    wire.instance.start(headers=[(b"content-length", length)])
    wire.instance.body(first, more=True)
    assert wire.transport._tempDataLen > 0
    wire.instance.body(second)
    data = wire.read_all(len(first) + len(second), timeout=20)
    assert parse_responses(data)[0].body == first + second


def test_failed_direct_send_is_detected_on_the_next_write_turn(wire):
    """The peer resets the connection while reading is paused (so the reader
    does not see it): the direct send fails, the bytes are queued, and the
    very next write turn reports the loss."""
    wire.protocol.dataReceived(GET)
    wire.transport.stopReading()
    wire.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wire.client.close()
    time.sleep(0.05)
    wire.instance.respond(b"to nobody")
    assert wire.transport in wire.reactor.writers
    assert wire.lost is None
    wire.turn()
    assert wire.lost is not None and wire.lost.check(ConnectionLost)
    assert wire.protocol.disconnected
    assert "disconnected" in wire.instance.calls


def test_nothing_after_lose_connection(wire):
    wire.protocol.dataReceived(GET)
    wire.transport.loseConnection()
    wire.instance.respond(b"late")
    assert wire.transport._tempDataLen > 0  # queued: the direct path is skipped


def test_nothing_reaches_the_wire_after_abort_connection(wire):
    """abortConnection() drops buffered data and replaces doWrite with a no-op,
    but connected stays 1 and disconnecting 0 until connectionLost runs on the
    next reactor turn. The server's shutdown aborts every open connection
    while applications may still be sending: a response sent in that window
    used to be dropped; now send() writes it straight to the socket."""
    wire.protocol.dataReceived(GET)
    wire.transport.abortConnection()  # as Server.stop does after its timeout
    wire.instance.respond(b"must not be sent")
    wire.client.settimeout(0.3)
    try:
        received = wire.client.recv(65536)
    except (TimeoutError, ConnectionResetError):
        received = b""
    assert received == b""


# -- over real sockets --------------------------------------------------------------


def read_until_close(sock: socket.socket, limit: int) -> bytes:
    data = bytearray()
    while len(data) <= limit:
        chunk = sock.recv(64 * 1024)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def read_response(sock: socket.socket, slow: bool = False) -> bytes:
    """One response framed by its Content-Length (the connection stays open)."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(64 * 1024)
        assert chunk, f"closed during the head: {bytes(data)!r}"
        data += chunk
    head = bytes(data[: data.index(b"\r\n\r\n")]).lower()
    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    total = data.index(b"\r\n\r\n") + 4 + length
    reads = 0
    while len(data) < total:
        chunk = sock.recv(64 * 1024)
        assert chunk, f"closed after {len(data)} of {total} bytes"
        data += chunk
        reads += 1
        if slow and reads % 16 == 0:
            time.sleep(0.005)
    assert len(data) == total, "bytes after the response"
    return bytes(data)


def check_one_response(data: bytes, size: int) -> None:
    (response,) = parse_responses(data)
    assert response.status == 200
    assert len(response.body) == size
    assert response.body == pattern(size)


def small_window_client(port: int) -> socket.socket:
    """A client socket with a 16 KiB receive buffer, so that daphne's
    writes fill the connection quickly."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def test_32_mib_single_event_body_over_tcp_to_a_slow_reader():
    size = 32 * MiB
    with run_daphne("--access-log", "-", app=APP) as server:
        with small_window_client(server.port) as sock:
            sock.sendall(b"GET /one?mb=32 HTTP/1.1\r\nHost: x\r\n\r\n")
            data = read_response(sock, slow=True)
        check_one_response(data, size)
        line = server.wait_for_line(r'"GET /one\?mb=32" 200')
    assert str(size) in line


def test_32_mib_single_event_body_over_a_unix_socket(tmp_path):
    size = 32 * MiB
    path = str(tmp_path / "d.sock")
    with run_daphne(
        "--access-log", "/dev/null", "-u", path, app=APP, listen=False
    ) as server:
        server.wait_listening()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b"GET /one?mb=32 HTTP/1.1\r\nHost: x\r\n\r\n")
            data = read_response(sock, slow=True)
    check_one_response(data, size)


def test_32_mib_single_event_body_over_tls(tls_files):
    """TLS must not take the direct path (the bytes would go out in clear)."""
    size = 8 * MiB
    with run_tls_daphne(tls_files, "--access-log", "/dev/null", app=APP) as (
        server,
        context,
    ):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /one?mb=8 HTTP/1.1\r\nHost: x\r\n\r\n")
            data = read_response(sock)
    check_one_response(data, size)


def test_pipelined_responses_stay_in_order():
    requests = (
        b"GET /one?kb=700 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /stream?n=5&size=70000 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /scope/third HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /big?mb=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /head-length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with (
        run_daphne("--access-log", "/dev/null", app=APP) as server,
        small_window_client(server.port) as sock,
    ):
        sock.sendall(requests)
        time.sleep(0.2)  # let daphne fill the pipe before reading
        data = read_until_close(sock, 8 * MiB)
    responses = parse_responses(data)
    assert [r.status for r in responses] == [200] * 5
    assert responses[0].body == pattern(700 * 1024)
    assert responses[1].body == b"".join(bytes([97 + i]) * 70000 for i in range(5))
    assert b'"/scope/third"' in responses[2].body
    assert responses[3].body == apps.BLOCK * 16
    assert responses[4].body == b"h" * 1234


def test_half_closed_client_after_request():
    """The client shuts its write side after the request. daphne has no
    IHalfCloseableProtocol, so Twisted treats EOF as a full disconnect (before
    and after the change alike): the response is only delivered if it was
    written before the EOF is read. Pinned so a change there is noticed."""
    with run_daphne("--access-log", "/dev/null", app=APP) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with sock:
            sock.sendall(b"GET /sleep?s=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            data = read_until_close(sock, 65536)
    assert data == b""


def test_websocket_frames_of_every_size_arrive_in_order():
    """Frames go through conn.send; mix tiny and multi-MiB frames (the latter
    take the SEND_LIMIT remainder path) and check they come back in order."""
    sizes = [1, 125, 126, 65535, 65536, 1_000_000, 10, 200_000, 5, 500_000, 2]
    with run_daphne(
        "--access-log", "/dev/null", app="tests.ws_apps:application"
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/echo"
        with ws_connect(
            url, proxy=None, compression=None, max_size=None, open_timeout=5
        ) as ws:
            payloads = [uuid.uuid4().bytes + pattern(n) for n in sizes]
            for payload in payloads:
                ws.send(payload)
            echoed = [ws.recv(timeout=10) for _ in payloads]
    assert echoed == payloads


# -- found on the way: a paused producer blocks loseConnection ---------------------


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "queued"])
def test_close_completes_after_a_response_that_paused_the_producer(wire, direct):
    """``Connection: close`` and a 1 MiB body in one event: the write pauses
    the producer (more than 64 KiB queued), close() calls loseConnection; when
    the buffer drains, doWrite takes the "resume the producer" branch and
    never returns CONNECTION_DONE. The connection hangs until the abort timer
    (close_timeout, 10 s) resets it."""
    if not direct:
        wire.protocol.direct = None  # the behaviour before the change
    wire.protocol.dataReceived(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    )
    body = pattern(MiB)
    wire.instance.respond(body)
    data = wire.read_all(len(body))
    assert parse_responses(data)[0].body == body
    for _ in range(3):
        wire.turn()
    assert wire.transport.disconnected


def test_connection_close_response_ends_promptly_with_a_fin():
    size = 2 * MiB
    with run_daphne("--access-log", "/dev/null", app=APP) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        with sock:
            sock.sendall(
                b"GET /one?mb=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            data = read_response(sock)
            check_one_response(data, size)
            sock.settimeout(2)
            try:
                assert sock.recv(1) == b""  # times out: no FIN until the abort
            finally:
                server.proc.kill()  # (its shutdown would wait for the abort)
