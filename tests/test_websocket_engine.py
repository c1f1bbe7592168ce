"""Each engine on its own (autobahn's and websockets'): the private names its
adapter relies on, and the same contract toward the owner: an engine that
starts OPEN (daphne did the handshake), frames both ways, stops between
frames while the owner pauses, runs the closing handshake and reports the
close code by the same rules.

If an upgrade of either library renames a hook daphne overrides, these fail
first and name it; ``setup.py`` bounds both versions for the same reason.
"""

from __future__ import annotations

import os
import zlib

import pytest
from autobahn.websocket.protocol import WebSocketProtocol
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from websockets.exceptions import PayloadTooBig
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol

from daphne.config import WEBSOCKET_ENGINES, Config
from daphne.websocket import engine_autobahn, engine_websockets
from daphne.websocket.engine_autobahn import AutobahnEngine
from daphne.websocket.engines import engine_factory
from tests.harness import frame, parse_frames


class Owner:
    """Records what the engine reports and writes."""

    def __init__(self) -> None:
        self.read_paused = False
        #: Pause after each message, as a session with a full queue does.
        self.pause_on_message = False
        self.written = bytearray()
        self.messages: list[tuple[bytes, bool]] = []
        self.events: list[object] = []

    def send(self, data: bytes) -> None:
        self.written += data

    def close_transport(self, abort: bool) -> None:
        self.events.append(("close_transport", abort))

    def unregister_producer(self) -> None:
        self.events.append("unregister")

    def message(self, payload: bytes, binary: bool) -> None:
        self.messages.append((payload, binary))
        self.read_paused = self.pause_on_message

    def close_sent(self) -> None:
        self.events.append("close_sent")

    def awaiting_close(self) -> None:
        self.events.append("awaiting_close")

    def closed(self, code: int, reason: str) -> None:
        assert type(code) is int  # (what the application gets: no enum)
        self.events.append(("closed", code, reason))

    def frames(self) -> list[Frame]:
        frames = parse_frames(bytes(self.written))
        self.written.clear()
        return frames


def make_engine(kind: str, **options):
    owner = Owner()
    config = Config(
        websocket_engine=kind, **{"websocket_max_message_size": 1024, **options}
    )
    engine = engine_factory(config, Clock()).engine(owner, None, subprotocol="chat")
    return engine, owner


@pytest.fixture(params=WEBSOCKET_ENGINES)
def engine_and_owner(request):
    return make_engine(request.param)


def test_the_config_picks_the_engine():
    assert isinstance(make_engine("autobahn")[0], engine_autobahn.AutobahnEngine)
    assert isinstance(make_engine("websockets")[0], engine_websockets.WebSocketsEngine)


@pytest.mark.parametrize("name", engine_autobahn.PRIVATE_NAMES)
def test_autobahn_still_has_every_private_name_the_adapter_uses(name):
    engine, _ = make_engine("autobahn")
    assert hasattr(engine, name) or hasattr(WebSocketProtocol, name), (
        f"autobahn no longer has {name}: update daphne/websocket/engine_autobahn.py"
    )


@pytest.mark.parametrize("name", engine_websockets.PRIVATE_NAMES)
def test_websockets_still_has_every_private_name_the_adapter_uses(name):
    engine, _ = make_engine("websockets")
    codec = PerMessageDeflate(False, False, 15, 15)
    assert any(hasattr(obj, name) for obj in (engine, Protocol, codec)), (
        f"websockets no longer has {name}: update daphne/websocket/engine_websockets.py"
    )


def test_engine_starts_open_and_unframes_messages(engine_and_owner):
    engine, owner = engine_and_owner
    assert engine.subprotocol == "chat"
    engine.feed(frame(Opcode.TEXT, "héllo".encode()))
    engine.feed(frame(Opcode.BINARY, b"\x00\xff", fin=False))
    engine.feed(frame(Opcode.CONT, b"!"))
    assert owner.messages == [("héllo".encode(), False), (b"\x00\xff!", True)]


def test_engine_frames_outgoing_messages_unframe(engine_and_owner):
    engine, owner = engine_and_owner
    engine.send_message(b"hi", binary=False)
    engine.send_message(b"\x01", binary=True)
    (text, binary) = owner.frames()
    assert (text.opcode, text.data) == (Opcode.TEXT, b"hi")
    assert (binary.opcode, binary.data) == (Opcode.BINARY, b"\x01")


def test_paused_owner_keeps_later_frames_as_bytes(engine_and_owner):
    engine, owner = engine_and_owner
    owner.pause_on_message = True
    engine.feed(frame(Opcode.TEXT, b"one") + frame(Opcode.TEXT, b"two"))
    assert owner.messages == [(b"one", False)]  # it stops between frames
    owner.pause_on_message = owner.read_paused = False
    engine.resume()
    assert owner.messages == [(b"one", False), (b"two", False)]


def test_close_reports_before_and_after_the_frame(engine_and_owner):
    engine, owner = engine_and_owner
    engine.close(4000, "bye")
    assert owner.events == ["close_sent", "awaiting_close"]
    (sent,) = owner.frames()
    assert Close.parse(sent.data) == Close(4000, "bye")
    engine.feed(frame(Opcode.CLOSE, Close(4000, "").serialize()))
    assert owner.events[-1][0] == "close_transport"  # the handshake is done


def test_oversize_message_is_closed_with_1009(engine_and_owner):
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.TEXT, b"x" * 2048))
    assert owner.messages == []
    (sent,) = owner.frames()
    assert Close.parse(sent.data).code == 1009
    assert "close_sent" in owner.events


def raw_frame(first: int, payload: bytes, masked: bool = True) -> bytes:
    """A frame byte by byte (for what websockets' serializer refuses)."""
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return bytes([first, (0x80 if masked else 0) | len(payload)]) + (
        mask + body if masked else body
    )


def close_of(owner: Owner) -> Close:
    """The close frame the engine wrote last."""
    (*_, sent) = owner.frames()
    assert sent.opcode == Opcode.CLOSE
    return Close.parse(sent.data)


def test_client_close_is_answered_and_its_code_reported(engine_and_owner):
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.CLOSE, Close(4001, "done").serialize()))
    assert close_of(owner) == Close(4001, "done")  # echoed
    assert owner.events[0] == "close_sent"
    assert ("close_transport", False) in owner.events
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 4001, "done")
    assert engine.finished


def test_a_close_frame_without_a_code_is_reported_as_1005(engine_and_owner):
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.CLOSE))
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 1005, "")


def test_a_lost_connection_without_a_close_is_1006(engine_and_owner):
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.TEXT, b"half", fin=False))
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 1006, "")


def test_an_unanswered_close_then_drop_is_1006(engine_and_owner):
    engine, owner = engine_and_owner
    engine.close(1000, "")
    engine.drop()
    assert owner.events[-2:] == ["unregister", ("close_transport", True)]
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 1006, "")


def test_the_clients_answer_to_our_close_reports_its_code(engine_and_owner):
    engine, owner = engine_and_owner
    engine.close(1001, "")
    engine.feed(frame(Opcode.CLOSE, Close(1001, "").serialize()))
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 1001, "")


def test_a_long_reason_is_cut_to_fit_a_control_frame(engine_and_owner):
    engine, owner = engine_and_owner
    engine.close(1000, "é" * 100)
    sent = close_of(owner)
    assert sent.code == 1000
    assert len(sent.reason.encode()) <= 123 and set(sent.reason) == {"é"}


@pytest.mark.parametrize(
    "data, code",
    [
        (raw_frame(0x83, b"x"), 1002),  # reserved opcode
        (raw_frame(0xC1, b"x"), 1002),  # RSV1 without compression agreed
        (raw_frame(0x81, b"x", masked=False), 1002),  # unmasked
        (raw_frame(0x80, b"x"), 1002),  # continuation of nothing
        (raw_frame(0x09, b"x"), 1002),  # fragmented ping
        (frame(Opcode.CLOSE, b"\x03\xed"), 1002),  # reserved close code 1005
        (frame(Opcode.TEXT, b"\xff"), 1007),  # not UTF-8
        (frame(Opcode.CLOSE, b"\x03\xe8\xff"), 1007),  # reason not UTF-8
        (frame(Opcode.BINARY, bytes(2048)), 1009),  # over the message limit
    ],
)
def test_a_client_that_breaks_the_protocol_gets_the_local_code(
    engine_and_owner, data, code
):
    engine, owner = engine_and_owner
    engine.feed(data)
    assert owner.messages == []
    assert close_of(owner).code == code
    assert "close_sent" in owner.events
    # The client answers: the connection closes (websockets' engine has
    # closed already if the frame's length was never known).
    engine.feed(frame(Opcode.CLOSE, Close(code, "").serialize()))
    assert owner.events[-1][0] == "close_transport"
    engine.connection_lost(None)
    reported = code
    if code == 1007 and data[0] == 0x81 and isinstance(engine, AutobahnEngine):
        reported = 1006  # (autobahn drops at once after bad UTF-8 in text)
    assert owner.events[-1] == ("closed", reported, "")


def test_invalid_utf8_fails_at_its_fragment_not_at_the_end(engine_and_owner):
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.TEXT, "é".encode()[:1], fin=False))
    assert owner.written == b""  # (a character may continue in the next frame)
    engine.feed(frame(Opcode.CONT, b"\xff", fin=False))
    assert close_of(owner).code == 1007
    assert owner.messages == []


def test_the_frame_limit_is_enforced_too():
    for kind in WEBSOCKET_ENGINES:
        engine, owner = make_engine(kind, websocket_max_frame_size=10)
        engine.feed(frame(Opcode.TEXT, b"0123456789", fin=False))
        engine.feed(frame(Opcode.CONT, b"0123456789"))
        assert owner.messages == [(b"0123456789" * 2, False)]
        engine.feed(frame(Opcode.TEXT, b"0123456789a"))
        assert close_of(owner).code == 1009, kind


def test_control_frames_between_fragments_do_not_count_toward_the_message(
    engine_and_owner,
):
    """RFC 6455 5.4: a ping may come between fragments even when less than a
    control frame's size is left of the message's limit (1024 here)."""
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.BINARY, b"a" * 1000, fin=False))
    engine.feed(frame(Opcode.PING, b"p" * 50))
    engine.feed(frame(Opcode.CONT, b"b" * 24))
    assert owner.messages == [(b"a" * 1000 + b"b" * 24, True)]
    (pong,) = owner.frames()
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"p" * 50)
    # One byte more than the limit is still refused, by the data frame.
    engine.feed(frame(Opcode.BINARY, b"a" * 1000, fin=False))
    engine.feed(frame(Opcode.PING, b"p" * 50))
    engine.feed(frame(Opcode.CONT, b"b" * 25))
    assert owner.messages[1:] == []
    assert close_of(owner).code == 1009


def test_a_close_after_a_message_filling_its_limit_is_the_clients(engine_and_owner):
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.BINARY, b"a" * 1020, fin=False))
    engine.feed(frame(Opcode.CLOSE, Close(1000, "bye bye bye bye").serialize()))
    assert close_of(owner).code == 1000
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 1000, "bye bye bye bye")


def test_a_frame_limit_under_a_control_frames_size_leaves_control_frames_be():
    for kind in WEBSOCKET_ENGINES:
        engine, owner = make_engine(kind, websocket_max_frame_size=10)
        engine.feed(frame(Opcode.PING, b"p" * 100))
        (pong,) = owner.frames()
        assert (pong.opcode, pong.data) == (Opcode.PONG, b"p" * 100), kind
        engine.feed(
            frame(Opcode.CLOSE, Close(1000, "a reason of 25 characters").serialize())
        )
        assert close_of(owner).code == 1000, kind


def test_a_ping_is_answered_and_pings_go_out(engine_and_owner):
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.PING, b"hello"))
    (pong,) = owner.frames()
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"hello")
    engine.ping()
    (ping,) = owner.frames()
    assert ping.opcode == Opcode.PING


def test_paused_owner_holds_fragments_and_control_frames_as_bytes(engine_and_owner):
    engine, owner = engine_and_owner
    owner.pause_on_message = True
    engine.feed(
        frame(Opcode.TEXT, b"one")
        + frame(Opcode.TEXT, b"t", fin=False)
        + frame(Opcode.PING, b"p")
        + frame(Opcode.CONT, b"wo")
    )
    engine.feed(frame(Opcode.CLOSE, Close(1000, "").serialize()))
    assert owner.messages == [(b"one", False)]
    assert owner.written == b""  # not even the pong: nothing was unframed
    owner.pause_on_message = owner.read_paused = False
    engine.resume()
    assert owner.messages == [(b"one", False), (b"two", False)]
    pong, close = owner.frames()
    assert (pong.opcode, close.opcode) == (Opcode.PONG, Opcode.CLOSE)


# Frames a well-behaved client may send, as (opcode, payload, fin) pieces.
client_messages = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: [(Opcode.BINARY, b, True)]),
        st.text(max_size=20).map(lambda t: [(Opcode.TEXT, t.encode(), True)]),
        st.lists(st.binary(max_size=10), min_size=2, max_size=4).map(
            lambda parts: (
                [(Opcode.BINARY, parts[0], False)]
                + [(Opcode.CONT, p, False) for p in parts[1:-1]]
                + [(Opcode.CONT, parts[-1], True)]
            )
        ),
        st.just([(Opcode.PING, b"x", True)]),
    ),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(messages=client_messages, cuts=st.lists(st.integers(0, 400), max_size=10))
def test_any_split_of_the_stream_gives_the_same_messages(messages, cuts):
    """However the bytes arrive (a frame split anywhere, several at once),
    each engine delivers the same messages, in order."""
    pieces = [piece for message in messages for piece in message]
    stream = b"".join(frame(op, data, fin) for op, data, fin in pieces)
    expected = []
    for message in messages:
        if message[0][0] != Opcode.PING:
            payload = b"".join(data for _, data, _ in message)
            expected.append((payload, message[0][0] == Opcode.BINARY))
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for kind in WEBSOCKET_ENGINES:
        engine, owner = make_engine(kind)
        for start, end in zip(bounds, bounds[1:], strict=False):
            engine.feed(stream[start:end])
        assert owner.messages == expected, kind
        assert all(f.opcode == Opcode.PONG for f in owner.frames()), kind


def compressed_engine(kind: str, limit: int = 1024):
    """An engine with permessage-deflate agreed (no window asked)."""
    owner = Owner()
    config = Config(websocket_engine=kind, websocket_max_message_size=limit)
    factory = engine_factory(config, Clock())
    agreed = factory.negotiate([("permessage-deflate", {})])
    engine = factory.engine(owner, None, None, agreed.codec)
    return engine, owner


def deflate_message(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def compressed_frame(data: bytes, opcode: int = 0x81) -> bytes:
    """A masked compressed frame (RSV1) of any length."""
    header = Frame(Opcode.TEXT, data).serialize(mask=True)
    return bytes([opcode | 0x40]) + header[1:]


@pytest.mark.parametrize("kind", WEBSOCKET_ENGINES)
def test_compressed_messages_both_ways(kind):
    engine, owner = compressed_engine(kind)
    for text in (b"hello " * 50, b"again " * 50, b""):
        engine.feed(compressed_frame(deflate_message(text)))
    assert [m for m, _ in owner.messages] == [b"hello " * 50, b"again " * 50, b""]
    engine.send_message(b"world " * 50, binary=False)
    sent = bytes(owner.written)
    assert sent[0] == 0xC1  # FIN, RSV1 (compressed), text
    assert sent[1] == len(sent) - 2 < 126  # (unmasked, short)
    inflater = zlib.decompressobj(-12)
    assert inflater.decompress(sent[2:] + b"\x00\x00\xff\xff") == b"world " * 50


@pytest.mark.parametrize("kind", WEBSOCKET_ENGINES)
def test_a_compressed_bomb_closes_1009_and_corrupt_data_1007(kind):
    engine, owner = compressed_engine(kind)
    engine.feed(compressed_frame(deflate_message(bytes(64 * 1024 * 1024))))
    assert owner.messages == []
    assert close_of(owner).code == 1009
    engine, owner = compressed_engine(kind)
    engine.feed(compressed_frame(b"\xff\xff\xff\xff"))
    assert close_of(owner).code == 1007


def test_the_websockets_codec_inflates_at_most_one_byte_past_the_limit():
    """The bound is in the codec itself: a frame that would inflate to 64 MiB
    yields at most limit + 1 bytes before it is refused."""
    engine, _ = compressed_engine("websockets", limit=1000)
    codec = engine.codec
    inflated = []
    real = zlib.decompressobj

    class Spy:
        def __init__(self, *args):
            self.inner = real(*args)
            self.eof = False

        def decompress(self, data, max_length=0):
            out = self.inner.decompress(data, max_length)
            inflated.append(len(out))
            return out

    codec.decoder = Spy(-15)
    bomb = Frame(Opcode.BINARY, deflate_message(bytes(64 * 1024 * 1024)), rsv1=True)
    with pytest.raises(PayloadTooBig):
        codec.decode(bomb)
    assert sum(inflated) <= 1001


def test_a_close_between_fragments_drops_the_message_and_closes(engine_and_owner):
    """RFC 6455 5.4: control frames may come between fragments (Autobahn 7.1.5)."""
    engine, owner = engine_and_owner
    engine.feed(frame(Opcode.TEXT, b"frag", fin=False))
    engine.feed(frame(Opcode.CLOSE, Close(1000, "").serialize()))
    engine.feed(frame(Opcode.CONT, b"ment"))
    assert owner.messages == []
    assert close_of(owner).code == 1000
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 1000, "")


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 70000])
def test_outgoing_messages_of_every_header_size_frame_exactly(engine_and_owner, length):
    engine, owner = engine_and_owner
    payload = os.urandom(length)
    engine.send_message(payload, binary=True)
    engine.send_message(b"after", binary=False)
    sent, after = owner.frames()
    assert (sent.opcode, sent.fin, bytes(sent.data)) == (Opcode.BINARY, True, payload)
    assert (after.opcode, after.data) == (Opcode.TEXT, b"after")


@pytest.mark.parametrize("kind", WEBSOCKET_ENGINES)
def test_without_limits_messages_of_any_size_arrive(kind):
    engine, owner = make_engine(
        kind, websocket_max_message_size=0, websocket_max_frame_size=0
    )
    for size in (0, 5, 125, 126, 70000):
        engine.feed(frame(Opcode.BINARY, bytes(size)))
    assert [len(m) for m, _ in owner.messages] == [0, 5, 125, 126, 70000]


def test_a_message_arriving_whole_or_in_pieces_gets_the_same_checks():
    """The websockets engine takes a whole small message in one read by a
    shortcut: what it delivers, and refuses, is what websockets' parser does
    with the same bytes in pieces."""
    cases = [
        frame(Opcode.TEXT, "ok é".encode()),
        frame(Opcode.BINARY, b"\xff" * 125),
        frame(Opcode.TEXT, b"\xc3"),  # truncated UTF-8
        frame(Opcode.TEXT, b"x" * 20),  # over a 16-byte limit
    ]
    for data in cases:
        results = []
        for pieces in ([data], [data[:3], data[3:]]):
            engine, owner = make_engine("websockets", websocket_max_frame_size=16)
            for piece in pieces:
                engine.feed(piece)
            results.append((owner.messages, bytes(owner.written), owner.events))
        assert results[0] == results[1]


@pytest.mark.parametrize("kind", WEBSOCKET_ENGINES)
def test_the_rest_of_an_oversize_frame_is_read_past_to_the_clients_close(kind):
    """A client still sending a frame refused from its header (1009) is
    read on, not reset, so it can read the close; its answer ends it."""
    engine, owner = make_engine(kind, websocket_max_frame_size=1000)
    data = frame(Opcode.BINARY, os.urandom(300_000))
    engine.feed(data[:100])
    assert close_of(owner).code == 1009
    assert "awaiting_close" in owner.events
    for start in range(100, len(data), 65536):
        engine.feed(data[start : start + 65536])
    engine.feed(frame(Opcode.PING, b"still"))
    assert not any(event[0] == "close_transport" for event in owner.events)
    engine.feed(frame(Opcode.CLOSE, Close(1009, "").serialize()))
    assert owner.events[-1][0] == "close_transport"
    assert owner.messages == []
    engine.connection_lost(None)
    assert owner.events[-1] == ("closed", 1009, "")


@pytest.mark.parametrize(
    "data",
    [raw_frame(0x83, b"x"), raw_frame(0x81, b"x", masked=False)],
    ids=["reserved opcode", "unmasked"],
)
def test_websockets_closes_at_once_when_the_bad_frames_length_is_unknown(data):
    """websockets refuses these before reading the frame's length, so the
    rest of the stream cannot be followed: the engine closes at once (it
    recognises them by websockets' messages, which this pins)."""
    engine, owner = make_engine("websockets")
    engine.feed(data + frame(Opcode.TEXT, b"more"))
    assert close_of(owner).code == 1002
    assert owner.events[-2:] == ["unregister", ("close_transport", False)]
    assert "awaiting_close" not in owner.events
