"""The autobahn adapter on its own: the private names it relies on, and an
engine that starts OPEN (daphne did the handshake) framing both ways.

If an autobahn upgrade renames a hook daphne overrides, these fail first and
name it; ``setup.py`` bounds autobahn's version for the same reason.
"""

from __future__ import annotations

import pytest
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.task import Clock
from websockets.frames import Close, Frame, Opcode

from daphne.config import Config
from daphne.websocket.engine import PRIVATE_NAMES, EngineFactory
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
        self.events.append(("closed", code, reason))

    def frames(self) -> list[Frame]:
        frames = parse_frames(bytes(self.written))
        self.written.clear()
        return frames


@pytest.fixture
def engine_and_owner():
    owner = Owner()
    factory = EngineFactory(Config(websocket_max_message_size=1024), Clock())
    engine = factory.engine(owner, transport=None, subprotocol="chat")
    return engine, owner


@pytest.mark.parametrize("name", PRIVATE_NAMES)
def test_autobahn_still_has_every_private_name_the_adapter_uses(name, engine_and_owner):
    engine, _ = engine_and_owner
    assert hasattr(engine, name) or hasattr(WebSocketProtocol, name), (
        f"autobahn no longer has {name}: update daphne/websocket/engine.py"
    )


def test_engine_starts_open_and_unframes_messages(engine_and_owner):
    engine, owner = engine_and_owner
    assert engine.websocket_protocol_in_use == "chat"
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
