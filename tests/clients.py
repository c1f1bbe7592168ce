"""Raw clients for the wire tests (real sockets against a daphne subprocess).

The wire tests need to see exactly what the server put on the wire, which an
ordinary client library hides or normalises. This module holds the one copy
of the small clients they share:

- :class:`Raw`, an HTTP/1.1 connection on a plain socket: send any bytes,
  read one response at a time (Content-Length, chunked or close-delimited
  bodies, 1xx interim responses, HEAD), or everything until the server
  closes; :func:`parse_response` parses bytes already read the same way;
- :class:`RawWebSocket`, a WebSocket client on the same kind of connection:
  the upgrade request with its ``Sec-WebSocket-Accept`` check, masked frames
  out, unmasked frames in, nothing answered automatically;
- helpers for the ``websockets`` library client (:func:`ws_url`,
  :func:`ws_connect`, :func:`closed_with`) with the options every wire test
  uses.

``server`` arguments are the ``DaphneServer`` objects of ``tests.conftest``
(anything with a ``port``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
from dataclasses import dataclass, field

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

# --------------------------------------------------------------------------
# HTTP/1.1
# --------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    #: (lower-cased name, value) in the order received.
    headers: list[tuple[str, str]]
    body: bytes = b""
    #: False when the connection ended before the framed body was complete.
    complete: bool = True
    #: The response head as received, blank line included.
    raw: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def json(self) -> dict:
        assert self.complete, self
        return json.loads(self.body)


class Reader:
    """Buffered reading of HTTP responses; without a socket, only ``buf``."""

    def __init__(self, data: bytes = b"") -> None:
        self.buf = data
        self.eof = False

    def _recv(self) -> bytes:
        return b""

    def _fill(self) -> bool:
        """Read more into the buffer; False at end of stream."""
        if self.eof:
            return False
        data = self._recv()
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes | None:
        """Up to and including ``marker``; None if the stream ends first."""
        while marker not in self.buf:
            if not self._fill():
                return None
        index = self.buf.index(marker) + len(marker)
        data, self.buf = self.buf[:index], self.buf[index:]
        return data

    def read_exact(self, size: int) -> tuple[bytes, bool]:
        """``size`` bytes, True; or what there was when the stream ended, False."""
        while len(self.buf) < size:
            if not self._fill():
                data, self.buf = self.buf, b""
                return data, False
        data, self.buf = self.buf[:size], self.buf[size:]
        return data, True

    def read_until_close(self) -> bytes:
        """Everything until the server closes (or resets) the connection."""
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def read_response(self, method: str = "GET") -> Response:
        """One response (a 1xx one is returned on its own)."""
        head = self.read_until(b"\r\n\r\n")
        if head is None:
            raise ConnectionError(f"connection closed before a response: {self.buf!r}")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        response = Response(int(status), headers, raw=head)
        if (
            method == "HEAD"
            or response.status in (204, 304)
            or 100 <= response.status < 200
        ):
            return response
        if response.header("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size_line = self.read_until(b"\r\n")
                if size_line is None:
                    response.complete = False
                    break
                size = int(size_line.split(b";")[0], 16)
                data, ok = self.read_exact(size + 2)
                if not ok:
                    chunks.append(data)
                    response.complete = False
                    break
                assert data.endswith(b"\r\n"), data[-10:]
                chunks.append(data[:-2])
                if size == 0:
                    break
            response.body = b"".join(chunks)
        elif response.header("content-length") is not None:
            response.body, response.complete = self.read_exact(
                int(response.header("content-length"))
            )
        else:
            response.body = self.read_until_close()
        return response


def parse_response(data: bytes, method: str = "GET") -> Response:
    """The first response in ``data``, bytes already read off a connection
    (the end of ``data`` counts as the end of the connection)."""
    return Reader(data).read_response(method)


class Raw(Reader):
    """A plain TCP connection to the server that reads HTTP/1.x responses."""

    def __init__(
        self,
        port: int,
        timeout: float = 5.0,
        rcvbuf: int | None = None,
        *,
        sock: socket.socket | None = None,
    ) -> None:
        """Connect to ``port`` on 127.0.0.1 (a receive buffer of ``rcvbuf``
        bytes if given), or use ``sock``, already connected (a TLS one, say)."""
        super().__init__()
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.timeout = timeout

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(256 * 1024)
        except (ConnectionResetError, BrokenPipeError):
            return b""

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection (sending nothing more)."""
        self.sock.settimeout(seconds)
        try:
            return not self._fill()
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(self.timeout)


def exchange(port: int, data: bytes, method: str = "GET") -> Response:
    """Send ``data`` on a new connection; the first response."""
    with Raw(port) as conn:
        conn.send(data)
        return conn.read_response(method)


def exchange_until_close(
    port: int, data: bytes, method: str = "GET", timeout: float = 5.0
) -> Response:
    """Send ``data`` (which should ask for ``Connection: close``) on a new
    connection; its response, parsed once the server has closed."""
    with Raw(port, timeout) as conn:
        conn.send(data)
        received = conn.read_until_close()
    return parse_response(received, method)


# --------------------------------------------------------------------------
# WebSocket on a plain socket
# --------------------------------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_value(key: bytes) -> str:
    """The ``Sec-WebSocket-Accept`` a server owes the client ``key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def close_code(payload: bytes) -> int:
    """The status code of a close frame's payload."""
    return struct.unpack("!H", payload[:2])[0]


class RawWebSocket(Raw):
    """A WebSocket client on a plain socket: every byte is under test control
    (exact headers, empty and fragmented frames, no automatic answers to
    pings, an abrupt TCP close)."""

    def __init__(self, port: int, timeout: float = 5.0, rcvbuf: int | None = None):
        super().__init__(port, timeout, rcvbuf)
        self.key = base64.b64encode(os.urandom(16))

    def request(self, path: str, extra: bytes = b"") -> bytes:
        """The upgrade request for ``path``, ``extra`` header lines added."""
        return (
            b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + self.key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
        )

    def handshake(self, path: str, extra: bytes = b"") -> Response:
        """Send an upgrade request; the answer (a refusal with its body)."""
        self.send(self.request(path, extra))
        return self.read_response()

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        """One masked frame (``fin`` False: a fragment to be continued)."""
        first = (0x80 if fin else 0) | opcode
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.send(header + mask + masked)

    def _take(self, count: int) -> bytes:
        data, ok = self.read_exact(count)
        if not ok:
            raise EOFError("connection closed")
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        """One frame from the server: (fin, opcode, payload). EOFError at EOF."""
        first, second = self._take(2)
        assert not second & 0x80, "frames from a server must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return bool(first & 0x80), first & 0x0F, self._take(length)


def open_raw(
    server, path: str, extra: bytes = b"", timeout: float = 5.0
) -> RawWebSocket:
    """A raw client whose handshake completed (101 with the right accept)."""
    raw = RawWebSocket(server.port, timeout)
    response = raw.handshake(path, extra)
    assert response.status == 101, response
    assert response.all("sec-websocket-accept") == [accept_value(raw.key)]
    return raw


def refused(server, path: str, extra: bytes = b"") -> Response:
    """An upgrade request on a new raw connection; the (non-101) answer."""
    with RawWebSocket(server.port) as raw:
        return raw.handshake(path, extra)


# --------------------------------------------------------------------------
# The websockets library client
# --------------------------------------------------------------------------

#: Client options shared by every ``websockets`` connection: no proxy from the
#: environment, no compression (so sizes on the wire are the sizes sent), no
#: client-side pings (the server's pings are still answered).
WS_OPTIONS = {
    "proxy": None,
    "compression": None,
    "ping_interval": None,
    "open_timeout": 5,
    "close_timeout": 2,
}


def ws_url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def ws_connect(server, path: str, **options):
    """A ``websockets`` sync client on ``path`` (:data:`WS_OPTIONS`, then
    ``options``)."""
    return connect(ws_url(server, path), **{**WS_OPTIONS, **options})


def closed_with(connection, timeout: float = 5) -> ConnectionClosed:
    """Read until the connection closes; the ``ConnectionClosed`` raised."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while True:
            connection.recv(timeout=max(0.01, deadline - time.monotonic()))
    return info.value
