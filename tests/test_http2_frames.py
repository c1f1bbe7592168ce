"""HTTP/2 conformance over real sockets, frame by frame, in cleartext and TLS.

Each test writes frames a conformant client must not send (built with
hyperframe, or byte by byte where hyperframe refuses) and checks the exact
error code of the server's GOAWAY or RST_STREAM (RFC 9113), including the
flood protections (GOAWAY ENHANCE_YOUR_CALM or PROTOCOL_ERROR).
"""

from __future__ import annotations

import ssl
import struct

import pytest
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.clients import Raw
from tests.conftest import make_tls_files, run_daphne, tls_endpoint
from tests.h2_clients import PREFACE, H2Client, RawFrames, frame_bytes

DATA, HEADERS, SETTINGS, CONTINUATION = 0x0, 0x1, 0x4, 0x9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


class Target:
    """A daphne to connect to: its port, and a TLS context maker (or None)."""

    def __init__(self, port: int, cafile: str | None) -> None:
        self.port = port
        self.cafile = cafile

    def tls(self) -> ssl.SSLContext | None:
        return (
            None
            if self.cafile is None
            else ssl.create_default_context(cafile=self.cafile)
        )

    def raw(self) -> RawFrames:
        return RawFrames(self.port, self.tls())

    def client(self) -> H2Client:
        return H2Client(self.port, self.tls()).start()


@pytest.fixture(scope="module", params=["cleartext", "tls"])
def target(request, tmp_path_factory):
    if request.param == "cleartext":
        with run_daphne() as server:
            yield Target(server.port, None)
        return
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    with run_daphne("-e", tls_endpoint(files), listen=False) as server:
        server.wait_listening()
        yield Target(server.port, str(files[1]))


def open_stream(raw: RawFrames, stream_id: int = 1, end_stream=True, path="/scope"):
    frame = HeadersFrame(stream_id)
    frame.data = raw.headers_block(path)
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame


def test_a_valid_connection_gets_an_answer(target):
    """The baseline of every test below: a conformant request is answered."""
    with target.client() as client:
        headers, body, _ = client.get("/scope")
    assert headers[b":status"] == b"200"
    assert b'"http_version": "2"' in body


def test_bad_preface(target):
    """Bytes that start like the preface and deviate: over TLS (HTTP/2 by
    ALPN) a GOAWAY PROTOCOL_ERROR; in cleartext the connection closes."""
    with target.raw() as raw:
        raw.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + SettingsFrame(0).serialize())
        error = raw.error()
    if target.cafile is None:
        assert error is None
    else:
        assert error is not None
        assert error[0] == "GOAWAY" and error[2] == ErrorCodes.PROTOCOL_ERROR


def test_cleartext_garbage_is_still_http1_400():
    """A line that is neither the preface nor HTTP/1.1 gets HTTP/1.1's 400."""
    with run_daphne() as server, Raw(server.port) as conn:
        conn.send(b"GARBAGE LINE\r\n\r\n")
        response = conn.read_response()
    assert response.status == 400


def test_preface_one_byte_at_a_time(target):
    """The preface split over many reads is still recognised."""
    if target.cafile is not None:
        pytest.skip("cleartext sniffing only (TLS chooses by ALPN)")
    client = H2Client(target.port)
    try:
        for byte in PREFACE:
            client.sock.sendall(bytes([byte]))
        client.conn.initiate_connection()
        client.conn.data_to_send()  # (its preface went out byte by byte)
        client.sock.sendall(SettingsFrame(0).serialize())
        headers, _, _ = client.get("/scope")
        assert headers[b":status"] == b"200"
    finally:
        client.close()


def connection_error(target, *frames) -> tuple[str, int, int] | None:
    with target.raw() as raw:
        raw.start()
        raw.send(*[frame(raw) if callable(frame) else frame for frame in frames])
        return raw.error()


def test_data_on_stream_zero(target):
    error = connection_error(target, frame_bytes(DATA, 0, 0, b"x"))
    assert error == ("GOAWAY", 0, ErrorCodes.PROTOCOL_ERROR)


def test_headers_on_stream_zero(target):
    error = connection_error(target, frame_bytes(HEADERS, END_HEADERS, 0, b"\x82"))
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.PROTOCOL_ERROR


def test_even_stream_id_from_the_client(target):
    error = connection_error(target, lambda raw: open_stream(raw, stream_id=2))
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.PROTOCOL_ERROR


def test_settings_ack_with_payload(target):
    """RFC 9113 6.5: FRAME_SIZE_ERROR."""
    payload = struct.pack(">HI", 0x4, 65535)
    error = connection_error(target, frame_bytes(SETTINGS, ACK, 0, payload))
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.FRAME_SIZE_ERROR


def test_connection_window_overflow(target):
    frame = WindowUpdateFrame(0)
    frame.window_increment = 2**31 - 1
    error = connection_error(target, frame, frame)
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.FLOW_CONTROL_ERROR


def test_hpack_decoding_failure(target):
    """An index beyond both tables: COMPRESSION_ERROR (RFC 9113 4.3)."""
    error = connection_error(
        target, frame_bytes(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\x7f")
    )
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.COMPRESSION_ERROR


def test_data_on_a_closed_stream(target):
    with target.raw() as raw:
        raw.start()
        raw.send(open_stream(raw))
        frame = raw.read_frame()
        while frame is not None and not (
            frame.stream_id == 1 and "END_STREAM" in frame.flags
        ):
            frame = raw.read_frame()
        data = DataFrame(1)
        data.data = b"late"
        raw.send(data)
        error = raw.error()
    assert error is not None and error[2] == ErrorCodes.STREAM_CLOSED


def test_frame_larger_than_max_frame_size(target):
    error = connection_error(target, frame_bytes(DATA, 0, 1, b"x" * 16385))
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.FRAME_SIZE_ERROR


def test_connection_specific_header_is_a_stream_error(target):
    """A stream error (RST_STREAM PROTOCOL_ERROR); the connection serves on."""
    with target.raw() as raw:
        raw.start()
        frame = HeadersFrame(1)
        frame.data = raw.headers_block(extra=[(b"connection", b"keep-alive")])
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        raw.send(frame, open_stream(raw, stream_id=3))
        assert raw.error() == ("RST_STREAM", 1, ErrorCodes.PROTOCOL_ERROR)
        frame = raw.read_frame()
        while frame is not None and frame.stream_id != 3:
            frame = raw.read_frame()
        assert frame is not None  # stream 3 is answered


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Upper-Case", b"x")],
        [(b"te", b"gzip")],
        [(b"transfer-encoding", b"chunked")],
        [(b":unknown", b"x")],
    ],
)
def test_malformed_requests_are_stream_errors(target, fields):
    with target.raw() as raw:
        raw.start()
        frame = HeadersFrame(1)
        encoder = Encoder()
        frame.data = encoder.encode(
            [
                (b":method", b"GET"),
                (b":path", b"/"),
                (b":scheme", b"http"),
                *[field for field in fields if field[0].startswith(b":")],
                (b":authority", b"x"),
                *[field for field in fields if not field[0].startswith(b":")],
            ]
        )
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        raw.send(frame)
        assert raw.error() == ("RST_STREAM", 1, ErrorCodes.PROTOCOL_ERROR)


# -- floods ------------------------------------------------------------------


def test_rapid_reset_flood(target):
    """CVE-2023-44487: streams opened and reset at once, over and over."""

    def frames(raw):
        out = []
        for index in range(1000):
            stream_id = 2 * index + 1
            out.append(open_stream(raw, stream_id, path="/sleep?s=5").serialize())
            out.append(
                RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL).serialize()
            )
        return b"".join(out)

    error = connection_error(target, frames)
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.ENHANCE_YOUR_CALM


def test_continuation_flood(target):
    """CVE-2024-27316 class: a header block that never ends."""

    def frames(raw):
        frame = HeadersFrame(1)
        frame.data = raw.headers_block()
        out = [frame.serialize()]
        for _ in range(500):
            continuation = ContinuationFrame(1)
            continuation.data = b"\x40\x01a\x01b"  # literal a: b, indexed
            out.append(continuation.serialize())
        return b"".join(out)

    error = connection_error(target, frames)
    assert error[0] == "GOAWAY"
    assert error[2] in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM)


def test_settings_flood(target):
    error = connection_error(target, SettingsFrame(0).serialize() * 2000)
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.ENHANCE_YOUR_CALM


def test_ping_flood(target):
    error = connection_error(
        target, PingFrame(0, opaque_data=b"12345678").serialize() * 2000
    )
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.ENHANCE_YOUR_CALM


def test_empty_data_frame_flood(target):
    def frames(raw):
        empty = DataFrame(1)
        return open_stream(raw, end_stream=False, path="/echo").serialize() + (
            empty.serialize() * 2000
        )

    error = connection_error(target, frames)
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.ENHANCE_YOUR_CALM


def test_hpack_bomb(target):
    """One large table entry referenced over and over: the decoded list far
    exceeds the advertised size."""

    def frames(raw):
        block = b"\x40\x01x" + _hpack_string(b"y" * 4000)
        block += b"\xbe" * 4000  # index 62: the entry just added
        frame = HeadersFrame(1)
        frame.data = raw.headers_block() + block
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        return frame.serialize()

    error = connection_error(target, frames)
    assert error[0] == "GOAWAY" and error[2] == ErrorCodes.ENHANCE_YOUR_CALM


def _hpack_string(value: bytes) -> bytes:
    """An HPACK string literal (no Huffman) with its length prefix."""
    length = len(value)
    if length < 127:
        return bytes([length]) + value
    out = [0x7F]
    length -= 127
    while length >= 128:
        out.append(length % 128 + 128)
        length //= 128
    out.append(length)
    return bytes(out) + value
