"""permessage-deflate (RFC 7692) over real sockets, against a real daphne
(with each WebSocket engine).

The ``websockets`` client offers compression as browsers do; a raw socket
sends exact offers and hand-made compressed frames (a decompression bomb,
bad parameters). The offer parser and the negotiation are also checked on
their own, with hypothesis over arbitrary header values.
"""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

from daphne.config import WEBSOCKET_ENGINES
from daphne.websocket.deflate import DeflateSettings, negotiate
from daphne.websocket.handshake import HandshakeError, extension_offers
from tests.clients import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    WS_OPTIONS,
    RawWebSocket,
    close_code,
    closed_with,
    ws_url,
)
from tests.conftest import run_daphne

pytestmark = pytest.mark.timeout(60)

#: The compressed-frame bit (RSV1), set on the first frame of a message.
RSV1 = 0x40

#: What daphne answers to a plain browser-style offer.
DEFAULT_ANSWER = (
    "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
)

#: Options for a websockets client that offers compression (its default).
DEFLATE = {**WS_OPTIONS, "compression": "deflate"}

WS_APPS = "tests.ws_apps:application"
LAYER_APP = "tests.layer_apps:channel_layer"


@pytest.fixture(scope="module", params=WEBSOCKET_ENGINES)
def server(request):
    """daphne with a 64 KiB message limit (frames up to 1 MiB), with each
    WebSocket engine."""
    with run_daphne(
        "--websocket-max-message-size",
        "65536",
        "--websocket-engine",
        request.param,
        app=WS_APPS,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def plain():
    with run_daphne("--no-ws-per-message-deflate", app=WS_APPS) as running:
        yield running


def offering(server, factory: ClientPerMessageDeflateFactory | None = None):
    """A websockets client on ``/echo`` offering compression (``factory``:
    an offer with particular parameters)."""
    options = dict(DEFLATE)
    if factory is not None:
        options = {**options, "compression": None, "extensions": [factory]}
    return connect(ws_url(server, "/echo"), **options)


def extensions_of(ws) -> str | None:
    return ws.response.headers.get("Sec-WebSocket-Extensions")


def echo_many(ws) -> None:
    """Messages both ways, text and binary, small and large, repeated (so
    that each side's context carries over between messages)."""
    text = "daphne compresses " * 2000
    data = os.urandom(512) * 40
    for _ in range(3):
        ws.send(text)
        assert ws.recv(timeout=5) == text
        ws.send(data)
        assert ws.recv(timeout=5) == data
    ws.send("")
    assert ws.recv(timeout=5) == ""


class DeflateSocket(RawWebSocket):
    """A raw client that reads the RSV bits of the server's frames."""

    def read_full_frame(self) -> tuple[int, int, bytes]:
        """(RSV bits, opcode, payload) of the server's next frame."""
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return first & 0x70, first & 0x0F, self._take(length)

    def send_compressed(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.send_frame(RSV1 | opcode, payload, fin)

    def close_code(self) -> int:
        """The code of the next close frame the server sends."""
        while True:
            _, opcode, payload = self.read_full_frame()
            if opcode == OP_CLOSE:
                return close_code(payload)


def deflated(data: bytes, wbits: int = 15) -> bytes:
    """``data`` as one permessage-deflate message body (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def raw_handshake(server, offer: bytes, path: str = "/echo") -> DeflateSocket:
    raw = DeflateSocket(server.port)
    raw.send(raw.request(path, b"Sec-WebSocket-Extensions: " + offer + b"\r\n"))
    raw.response = raw.read_response()
    return raw


# -- negotiation, with a real client -----------------------------------------------


def test_a_browser_style_offer_is_accepted_with_bounded_windows(server):
    with offering(server) as ws:
        assert extensions_of(ws) == DEFAULT_ANSWER
        echo_many(ws)


def test_no_context_takeover_is_agreed_when_asked(server):
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        client_max_window_bits=True,
    )
    with offering(server, factory) as ws:
        assert extensions_of(ws) == (
            "permessage-deflate; server_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12"
        )
        echo_many(ws)


@pytest.mark.parametrize(
    ("server_bits", "client_bits", "answer"),
    [
        (10, 9, "server_max_window_bits=10; client_max_window_bits=9"),
        (15, 15, "server_max_window_bits=12; client_max_window_bits=12"),
        (9, None, "server_max_window_bits=9"),
    ],
)
def test_window_bits_are_honoured_and_never_raised(
    server, server_bits, client_bits, answer
):
    """The server compresses with at most the window the client asks for; it
    asks the client for 12 bits, or less if the client offers less (RFC 7692
    7.1.2); a client that does not say it can limit its window is not asked."""
    factory = ClientPerMessageDeflateFactory(
        server_max_window_bits=server_bits, client_max_window_bits=client_bits
    )
    with offering(server, factory) as ws:
        assert extensions_of(ws) == f"permessage-deflate; {answer}"
        echo_many(ws)


def test_server_messages_are_compressed_on_the_wire(server):
    raw = raw_handshake(server, b"permessage-deflate")
    assert raw.response.status == 101
    text = b"abc" * 5000
    raw.send_compressed(OP_TEXT, deflated(text))
    rsv, opcode, payload = raw.read_full_frame()
    assert (rsv, opcode) == (RSV1, OP_TEXT)
    assert len(payload) < len(text) // 10
    inflater = zlib.decompressobj(-12)  # (the window daphne announced)
    assert inflater.decompress(payload + b"\x00\x00\xff\xff") == text
    raw.close()


# -- offers that are declined, and a refusal -----------------------------------------


@pytest.mark.parametrize(
    "offer",
    [
        b"permessage-deflate; bogus=1",
        b"permessage-deflate; server_max_window_bits",
        b"permessage-deflate; server_max_window_bits=8",  # (zlib cannot)
        b"permessage-deflate; server_max_window_bits=16",
        b"permessage-deflate; server_max_window_bits=012",
        b"permessage-deflate; client_max_window_bits=+9",
        b"permessage-deflate; server_no_context_takeover=yes",
        b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        b"x-webkit-deflate-frame",
        b"",
    ],
)
def test_offers_that_cannot_be_accepted_are_declined(server, offer):
    """RFC 7692 5.1: the handshake succeeds without the extension, and a
    compressed frame is then a protocol error (1002)."""
    raw = raw_handshake(server, offer)
    assert raw.response.status == 101
    assert raw.response.header("sec-websocket-extensions") is None
    raw.send_compressed(OP_TEXT, deflated(b"hello"))
    assert raw.close_code() == 1002
    raw.close()


def test_the_first_acceptable_offer_is_taken(server):
    raw = raw_handshake(
        server,
        b"permessage-deflate; client_max_window_bits=99, "
        b'x-other, permessage-deflate; server_max_window_bits="10"',
    )
    assert raw.response.header("sec-websocket-extensions") == (
        "permessage-deflate; server_max_window_bits=10"
    )
    raw.send_compressed(OP_BINARY, deflated(b"x" * 1000))
    rsv, opcode, payload = raw.read_full_frame()
    assert (rsv, opcode) == (RSV1, OP_BINARY)
    assert zlib.decompressobj(-10).decompress(payload + b"\x00\x00\xff\xff") == (
        b"x" * 1000
    )
    raw.close()


@pytest.mark.parametrize(
    "offer", [b"permessage-deflate;", b"permessage-deflate; a=", b'x; a="b']
)
def test_an_extensions_header_that_does_not_parse_is_refused(server, offer):
    raw = raw_handshake(server, offer)
    assert raw.response.status == 400
    raw.close()


# -- the message limit applies to the decompressed size ------------------------------


def daphne_peak_rss_kib(server) -> int:
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_a_decompression_bomb_is_closed_with_1009_before_it_is_inflated(server):
    """256 MiB of zeros deflate to ~250 KiB, one frame well within the frame
    limit; the message limit (64 KiB) applies to what it inflates to, and
    daphne stops inflating there: its peak memory never grows by the bomb's
    size."""
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1024 * 1024)
    payload = b"".join(bomb.compress(chunk) for _ in range(256))
    payload += bomb.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(payload) < 1024 * 1024
    before = daphne_peak_rss_kib(server)
    raw = raw_handshake(server, b"permessage-deflate")
    raw.send_compressed(OP_BINARY, payload)
    assert raw.close_code() == 1009
    raw.close()
    assert daphne_peak_rss_kib(server) - before < 64 * 1024


def test_a_message_over_the_limit_across_compressed_fragments_is_closed(server):
    """Each fragment inflates to 40 KiB, under the 64 KiB limit; the message
    does not."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = bytes(40 * 1024)
    raw = raw_handshake(server, b"permessage-deflate")
    first = compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)
    raw.send_compressed(OP_BINARY, first, fin=False)
    second = compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)
    raw.send_frame(0, second[:-4])  # a continuation: no RSV1 (RFC 7692 6.1)
    assert raw.close_code() == 1009
    raw.close()


def test_a_message_just_under_the_limit_inflates_whole(server):
    with offering(server) as ws:
        data = bytes(65536)
        ws.send(data)
        assert ws.recv(timeout=5) == data
        ws.send(bytes(65537))
        assert closed_with(ws).rcvd.code == 1009


def test_corrupt_compressed_data_is_closed_with_1007(server):
    raw = raw_handshake(server, b"permessage-deflate")
    raw.send_compressed(OP_BINARY, b"\xff\xff\xff\xff")
    assert raw.close_code() == 1007
    raw.close()


# -- switched off, and in channel-layer mode -------------------------------------------


def test_no_ws_per_message_deflate_declines_every_offer(plain):
    with offering(plain) as ws:
        assert extensions_of(ws) is None
        echo_many(ws)
    raw = raw_handshake(plain, b"permessage-deflate")
    assert raw.response.header("sec-websocket-extensions") is None
    raw.send_compressed(OP_TEXT, deflated(b"hello"))
    assert raw.close_code() == 1002
    raw.close()


def test_channel_layer_mode_gets_compressed_traffic_transparently():
    with run_daphne(app=LAYER_APP) as layer_server:
        with connect(ws_url(layer_server, "/deflate"), **DEFLATE) as ws:
            assert extensions_of(ws) == DEFAULT_ANSWER
            echo_many(ws)
        raw = raw_handshake(layer_server, b"permessage-deflate", "/deflate")
        text = b"layer " * 3000
        raw.send_compressed(OP_TEXT, deflated(text))
        rsv, opcode, payload = raw.read_full_frame()
        assert (rsv, opcode) == (RSV1, OP_TEXT)
        assert zlib.decompressobj(-12).decompress(payload + b"\x00\x00\xff\xff") == (
            text
        )
        raw.close()


# -- the parser and the negotiation on their own ------------------------------------


def test_offers_are_parsed_in_order_with_their_parameters():
    offers = extension_offers(
        [
            b"permessage-deflate; client_max_window_bits, foo;a=1;b",
            b'Permessage-Deflate ; server_max_window_bits="10" ,,',
        ]
    )
    assert offers == [
        ("permessage-deflate", {"client_max_window_bits": [True]}),
        ("foo", {"a": ["1"], "b": [True]}),
        ("permessage-deflate", {"server_max_window_bits": ["10"]}),
    ]


def test_what_is_agreed_follows_the_settings():
    offer = [("permessage-deflate", {"client_max_window_bits": [True]})]
    assert negotiate(offer, DeflateSettings(enabled=False)) is None
    agreed = negotiate(offer, DeflateSettings(window_bits=15))
    assert agreed.header == b"permessage-deflate; client_max_window_bits=15"
    agreed = negotiate(offer, DeflateSettings(window_bits=10, mem_level=3))
    assert agreed.header == (
        b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
    )
    assert (agreed.terms.server_window, agreed.terms.mem_level) == (10, 3)


header_text = st.lists(
    st.sampled_from(
        [*' \t,;="\\abgx_-019', "permessage-deflate", "server_max_window_bits"]
        + ["client_max_window_bits", "server_no_context_takeover", "=10", "=15"]
    ),
    max_size=20,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(header_text.map(str.encode), max_size=3))
def test_any_extensions_header_parses_or_is_refused_and_negotiation_never_raises(
    values,
):
    """Whatever the client sends: a 400 (HandshakeError) or a list of offers,
    and negotiation then either agrees on a codec or declines, never raises."""
    try:
        offers = extension_offers(values)
    except HandshakeError:
        return
    agreed = negotiate(offers, DeflateSettings())
    if agreed is not None:
        assert agreed.header.startswith(b"permessage-deflate")
        assert extension_offers([agreed.header])[0][0] == "permessage-deflate"


def test_the_autobahn_codec_inflates_at_most_one_byte_past_the_limit_then_skips():
    """The bound is the codec's own (not only autobahn's budget): a piece that
    would inflate to 16 MiB yields at most limit + 1 bytes, then an error; the
    rest of the frame is skipped so the close handshake can be read."""
    from autobahn.exception import PayloadExceededError

    from daphne.websocket.engine_autobahn import BoundedDeflate

    agreed = negotiate([("permessage-deflate", {})], DeflateSettings())
    codec = BoundedDeflate.from_terms(agreed.terms)
    codec.limit = 1000
    codec.start_decompress_message()
    with pytest.raises(PayloadExceededError):
        codec.decompress_message_data(deflated(bytes(16 * 1024 * 1024)))
    assert codec.inflated <= 1001
    assert codec.decompress_message_data(deflated(b"more")) == b""
    codec.end_decompress_message()  # (no error: the message is being skipped)


@pytest.mark.parametrize(
    "field",
    [
        {"ws_deflate_window_bits": 8},
        {"ws_deflate_window_bits": 16},
        {"ws_deflate_mem_level": 0},
        {"ws_deflate_level": 10},
    ],
)
def test_deflate_bounds_out_of_zlib_range_are_config_errors(field):
    from daphne.config import Config, ConfigError

    with pytest.raises(ConfigError):
        Config(**field)
