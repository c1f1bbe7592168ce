"""HTTP/2 clients for the real-socket tests: h2 as a client, and raw frames.

:class:`H2Client` drives an ``h2`` client connection over a blocking socket
(cleartext prior knowledge, or TLS with ALPN ``h2``) and collects events per
stream. :class:`RawFrames` writes frames built with hyperframe as they are,
valid or not, and reads the server's frames back: the conformance tests use
it to see the exact error code of a GOAWAY or RST_STREAM.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(port: int, tls: ssl.SSLContext | None = None, timeout=10.0):
    """A socket to 127.0.0.1:port; with ``tls``, wrapped, ALPN h2 offered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is None:
        return sock
    tls.set_alpn_protocols(["h2"])
    return tls.wrap_socket(sock, server_hostname="127.0.0.1")


def request_headers(path: str, method: str = "GET", extra=()) -> list:
    return [
        (b":method", method.encode()),
        (b":path", path.encode()),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        *extra,
    ]


class H2Client:
    """An h2 client connection; events are kept per stream."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, sock=None):
        self.sock = sock or connect(port, tls)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.events: dict[int, list] = {}
        self.connection_events: list = []
        self.closed = False
        #: Streams whose DATA is acknowledged (the others stall on purpose).
        self.stalled: set[int] = set()

    def start(self) -> H2Client:
        self.conn.initiate_connection()
        self.flush()
        return self

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method="GET", body: bytes | None = None, extra=()):
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id, request_headers(path, method, extra), end_stream=body is None
        )
        if body is not None:
            self.send_body(stream_id, body)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes) -> None:
        """Send ``body`` as the windows allow, reading meanwhile."""
        while body:
            room = min(
                self.conn.local_flow_control_window(stream_id),
                self.conn.max_outbound_frame_size,
            )
            if room <= 0:
                self.flush()
                self.read()
                continue
            self.conn.send_data(stream_id, body[:room])
            body = body[room:]
        self.conn.end_stream(stream_id)
        self.flush()

    def read(self) -> bool:
        """One read; False once the connection is closed."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            stream_id = getattr(event, "stream_id", 0)
            if isinstance(event, h2.events.DataReceived):
                if stream_id in self.stalled:
                    continue
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length, stream_id
                )
            if stream_id:
                self.events.setdefault(stream_id, []).append(event)
            else:
                self.connection_events.append(event)
        self.flush()
        return True

    def done(self, stream_id: int) -> bool:
        return any(
            isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset))
            for event in self.events.get(stream_id, ())
        )

    def wait(self, *stream_ids: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.done(stream_id) for stream_id in stream_ids):
            if time.monotonic() > deadline or not self.read():
                raise AssertionError(f"streams {stream_ids} did not end")

    def response(self, stream_id: int) -> tuple[dict, bytes, dict]:
        """``(headers, body, trailers)`` of a finished stream."""
        headers: dict = {}
        trailers: dict = {}
        body = b""
        for event in self.events.get(stream_id, ()):
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = dict(event.headers)
        return headers, body, trailers

    def get(self, path: str, **kwargs) -> tuple[dict, bytes, dict]:
        stream_id = self.request(path, **kwargs)
        self.wait(stream_id)
        return self.response(stream_id)

    def reset_code(self, stream_id: int) -> int | None:
        for event in self.events.get(stream_id, ()):
            if isinstance(event, h2.events.StreamReset):
                return event.error_code
        return None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawFrames:
    """Frames written as built; the server's frames read back raw."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None):
        self.sock = connect(port, tls, timeout=5.0)
        self.buffer = b""
        self.encoder = Encoder()

    def start(self) -> RawFrames:
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())
        return self

    def send(self, *frames: Frame | bytes) -> None:
        data = b"".join(
            frame if isinstance(frame, bytes) else frame.serialize() for frame in frames
        )
        # (The server may close mid-flood; its GOAWAY is read next.)
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            self.sock.sendall(data)

    def headers_block(self, path: str = "/scope", extra=()) -> bytes:
        return self.encoder.encode(request_headers(path, extra=extra))

    def read_frame(self) -> Frame | None:
        """The next frame, or None once the connection is closed."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    return frame
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError, TimeoutError):
                data = b""
            if not data:
                return None
            self.buffer += data

    def error(self) -> tuple[str, int, int] | None:
        """The first GOAWAY or RST_STREAM with an error (or the GOAWAY) the
        server sends: ``(kind, stream id, error code)``; None if it closes
        without one."""
        while True:
            frame = self.read_frame()
            if frame is None:
                return None
            if isinstance(frame, GoAwayFrame):
                return ("GOAWAY", frame.last_stream_id, frame.error_code)
            if isinstance(frame, RstStreamFrame):
                return ("RST_STREAM", frame.stream_id, frame.error_code)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frame_bytes(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame with any header, valid or not."""
    header = struct.pack(">I", len(payload))[1:] + bytes([kind, flags])
    return header + struct.pack(">I", stream_id) + payload
