"""WebSocketSession in memory, against a fake host: handshake, messages,
timers, flow control, and the races and edge cases found in review.

The connection comes from :mod:`tests.harness` (an ``HTTP11Connection`` on a
string transport with a ``Clock`` reactor); the test plays both the client
(writing the upgrade request and masked frames) and the application (calling
the sink the protocol hands to the fake host). What a real host must do alike
(accept, echo, close, refusal, connect timeout) is in ``test_both_hosts.py``.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
import txaio
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from daphne.hosts import ASGIProtocolError, ClientDisconnected
from tests.harness import (
    Connection,
    Harness,
    UnreadTransport,
    close_frame,
    frame,
    one_response,
    parse_frames,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT_KEY = base64.b64encode(
    hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
)


#: The peer address of the string transport, as access log lines show it.
CLIENT = "192.168.1.1:54321"


def upgrade_request(path: bytes = b"/ws", extra: bytes = b"") -> bytes:
    return (
        b"GET %s HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n%s\r\n" % (path, KEY, extra)
    )


class WSConn(Connection):
    """A client connection that upgrades to a WebSocket."""

    log: list

    def handshake(self, path: bytes = b"/ws", extra: bytes = b"", rest=b"") -> None:
        self.send(upgrade_request(path, extra) + rest)

    def accept(self, **event) -> None:
        self.instance.send({"type": "websocket.accept", **event})
        head, sep, self.pending = self.output().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.head = head
        self.transport.clear()

    def deny(self, first_chunk: bytes | None = None) -> None:
        """Start a 401 denial response, and its body if ``first_chunk``."""
        self.instance.send(
            {"type": "websocket.http.response.start", "status": 401, "headers": []}
        )
        if first_chunk is not None:
            self.instance.send(
                {
                    "type": "websocket.http.response.body",
                    "body": first_chunk,
                    "more_body": True,
                }
            )

    def frames(self) -> list[Frame]:
        """Frames the server wrote since the last call."""
        found = parse_frames(getattr(self, "pending", b"") + self.output())
        self.pending = b""
        self.transport.clear()
        return found

    def received(self) -> list[dict]:
        return [e for e in self.instance.events if e["type"] != "websocket.connect"]


def ws_connect(transport=None, **options) -> WSConn:
    log: list = []
    conn = Harness(
        connection=WSConn,
        transport=transport,
        access_log=lambda protocol, action, details: log.append(
            (protocol, action, details)
        ),
        **options,
    ).conn
    conn.log = log
    return conn


def opened(**options) -> WSConn:
    conn = ws_connect(**options)
    conn.handshake()
    conn.accept()
    return conn


# -- handshake -----------------------------------------------------------------


def test_handshake_is_held_until_the_application_answers():
    conn = ws_connect()
    conn.handshake(b"/chat/%C3%A9?room=1", b"Sec-WebSocket-Protocol: a, b\r\n")
    assert conn.output() == b""
    scope = conn.instance.scope
    assert conn.instance.events == [{"type": "websocket.connect"}]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/é"
    assert scope["raw_path"] == b"/chat/%C3%A9"
    assert scope["query_string"] == b"room=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope
    assert conn.log == [
        ("websocket", "connecting", {"path": "/chat/%C3%A9", "client": CLIENT})
    ]


def test_accept_answers_101_with_subprotocol_and_headers():
    conn = ws_connect()
    conn.handshake(extra=b"Sec-WebSocket-Protocol: chat, superchat\r\n")
    conn.accept(subprotocol="superchat", headers=[(b"X-Extra", b"1")])
    lines = conn.head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"Sec-WebSocket-Accept: " + ACCEPT_KEY in lines
    assert b"Sec-WebSocket-Protocol: superchat" in lines
    assert b"x-extra: 1" in lines
    assert [action for _, action, _ in conn.log] == ["connecting", "connected"]


@pytest.mark.parametrize(
    "event",
    [
        {"subprotocol": "other"},
        {"headers": [(b"sec-websocket-accept", b"x")]},
        {"headers": [(b"x-bad", b"a\r\nb")]},
        {"headers": [("x-str", b"1")]},
    ],
    ids=["subprotocol-not-offered", "reserved", "crlf", "str-name"],
)
def test_invalid_accept_is_refused_with_500(event):
    conn = ws_connect()
    conn.handshake(extra=b"Sec-WebSocket-Protocol: chat\r\n")
    with pytest.raises(ASGIProtocolError):
        conn.instance.send({"type": "websocket.accept", **event})
    assert one_response(conn.output()).status == 500


def test_denial_response_extension():
    conn = ws_connect()
    conn.handshake()
    conn.instance.send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"x-why", b"nope")],
        }
    )
    assert conn.output() == b""  # head held until the first body event
    conn.instance.send(
        {"type": "websocket.http.response.body", "body": b"go ", "more_body": True}
    )
    conn.instance.send({"type": "websocket.http.response.body", "body": b"away"})
    response = one_response(conn.output())
    assert response.status == 401
    assert response.header(b"x-why") == b"nope"
    assert response.body == b"go away"
    assert not conn.open or conn.transport.disconnecting


def test_send_before_accept_is_an_error():
    conn = ws_connect()
    conn.handshake()
    with pytest.raises(ASGIProtocolError):
        conn.instance.send({"type": "websocket.send", "text": "early"})
    assert one_response(conn.output()).status == 500


@pytest.mark.parametrize("exc", [None, RuntimeError("boom")], ids=["return", "raise"])
def test_application_ending_before_accept_is_a_500(exc):
    conn = ws_connect()
    conn.handshake()
    conn.instance.finish(exc)
    assert one_response(conn.output()).status == 500


def test_malformed_handshake_is_refused_before_the_application_starts():
    conn = ws_connect()
    conn.send(upgrade_request().replace(b"Sec-WebSocket-Version: 13", b"X: 1"))
    assert one_response(conn.output()).status == 400
    assert conn.host.instances == []


@pytest.mark.parametrize("byte", [b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85"])
def test_header_values_that_split_lines_are_refused_before_upgrade(byte):
    conn = ws_connect()
    conn.handshake(extra=b"X-Smuggle: a" + byte + b"Sec-WebSocket-Protocol: x\r\n")
    assert one_response(conn.output()).status == 400
    assert conn.host.instances == []


# -- messages ------------------------------------------------------------------


def test_outgoing_messages_are_not_limited_by_the_incoming_limit():
    conn = opened(websocket_max_message_size=10, websocket_max_frame_size=10)
    conn.instance.send({"type": "websocket.send", "bytes": b"x" * 100})
    assert [f.data for f in conn.frames()] == [b"x" * 100]


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"text": "a", "bytes": b"b"},
        {"text": b"bytes"},
        {"bytes": "text"},
    ],
    ids=["neither", "both", "text-bytes", "bytes-str"],
)
def test_invalid_send_closes_with_1011(event):
    conn = opened()
    with pytest.raises(ASGIProtocolError):
        conn.instance.send({"type": "websocket.send", **event})
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1011


def test_close_with_code_and_reason():
    conn = opened()
    conn.instance.send({"type": "websocket.close", "code": 4001, "reason": "bye"})
    (close,) = conn.frames()
    assert Close.parse(close.data) == Close(4001, "bye")
    # Later sends are dropped: the socket is closing.
    assert (
        conn.instance.sink.handle_reply({"type": "websocket.send", "text": "x"})
        is False
    )
    assert conn.frames() == []


@pytest.mark.parametrize("code", [1004, 1005, 1006, 1015, 999, 5000, "1000", True])
def test_close_codes_that_may_not_be_sent_are_errors(code):
    conn = opened()
    with pytest.raises(ASGIProtocolError):
        conn.instance.send({"type": "websocket.close", "code": code})
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1011


@pytest.mark.parametrize(
    ("exc", "code"),
    [(None, 1000), (RuntimeError("boom"), 1011)],
    ids=["return", "raise"],
)
def test_application_ending_closes_the_socket(exc, code):
    conn = opened()
    conn.instance.finish(exc)
    (close,) = conn.frames()
    assert Close.parse(close.data).code == code


def test_oversize_message_is_closed_with_1009():
    conn = opened(websocket_max_message_size=10)
    conn.send(frame(Opcode.TEXT, b"12345", fin=False) + frame(Opcode.CONT, b"678901"))
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1009
    # (No message; the websockets engine has also closed the connection.)
    assert [event["type"] for event in conn.received()] in (
        [],
        ["websocket.disconnect"],
    )


def test_oversize_frame_is_closed_with_1009_before_its_payload_arrives():
    conn = opened(websocket_max_frame_size=10)
    conn.send(frame(Opcode.BINARY, b"x" * 1000)[:20])
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1009


def test_invalid_utf8_is_closed_with_1007():
    conn = opened()
    conn.send(frame(Opcode.TEXT, b"\xff\xfe"))
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1007
    assert [e["type"] for e in conn.received()] == ["websocket.disconnect"]


# -- flow control ----------------------------------------------------------------


def test_reading_pauses_between_frames_when_the_application_falls_behind():
    conn = opened()
    conn.host.instances[-1].put_result = False  # queue full after each message
    burst = b"".join(frame(Opcode.TEXT, b"%d" % i) for i in range(5))
    conn.send(burst)
    assert conn.transport.producerState == "paused"
    assert [e["text"] for e in conn.received()] == ["0"]
    sink = conn.instance.sink
    for expected in range(1, 5):
        sink.resume_reading()
        assert conn.received()[-1]["text"] == str(expected)
    conn.instance.put_result = True
    sink.resume_reading()
    assert conn.transport.producerState == "producing"
    assert len(conn.received()) == 5


def test_send_waits_while_the_transport_is_full():
    conn = opened()
    conn.protocol.pauseProducing()
    conn.protocol.resumeProducing()
    assert conn.instance.calls == ["pause", "resume"]


# -- timers --------------------------------------------------------------------


def test_no_connect_timeout_means_never():
    conn = ws_connect(websocket_connect_timeout=-1)
    conn.handshake()
    conn.advance(10**6)
    assert conn.output() == b""
    conn.accept()


def test_lifetime_limit_closes_with_1000_on_time():
    conn = opened(websocket_timeout=5, ping_interval=0)
    conn.advance(4.9)
    assert conn.frames() == []
    conn.advance(0.1)
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1000


def test_ping_after_idle_interval_then_drop_without_answer():
    conn = ws_connect(ping_interval=3, ping_timeout=2, transport=UnreadTransport())
    conn.handshake()
    conn.accept()
    conn.advance(2.0)
    conn.send(frame(Opcode.TEXT, b"activity"))  # idle clock restarts
    conn.advance(2.9)
    assert conn.frames() == []
    conn.advance(0.1)
    assert [f.opcode for f in conn.frames()] == [Opcode.PING]
    conn.advance(1.9)
    assert not conn.transport.aborted
    conn.advance(0.1)
    assert conn.transport.aborted
    assert conn.received()[-1] == {
        "type": "websocket.disconnect",
        "code": 1006,
        "reason": "",
    }


def test_pong_answers_the_ping_and_the_next_comes_after_the_interval():
    conn = opened(ping_interval=3, ping_timeout=2)
    conn.advance(3)
    (ping,) = conn.frames()
    conn.advance(1)
    conn.send(frame(Opcode.PONG, ping.data))
    conn.advance(2.9)
    assert conn.frames() == []
    assert conn.open
    conn.advance(0.1)
    assert [f.opcode for f in conn.frames()] == [Opcode.PING]


def test_timers_are_independent():
    """The ping timer dropping nothing, the lifetime timer still fires on time."""
    conn = opened(ping_interval=1, ping_timeout=0.5, websocket_timeout=3.5)
    for _ in range(3):
        conn.advance(1)
        (ping,) = conn.frames()
        conn.send(frame(Opcode.PONG, ping.data))
    conn.advance(0.5)
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1000


def test_no_pings_while_the_server_is_not_reading():
    conn = opened(ping_interval=1, ping_timeout=1)
    conn.instance.put_result = False
    conn.send(frame(Opcode.TEXT, b"fills the queue"))
    conn.advance(5)
    assert conn.frames() == []
    assert conn.open


def test_an_idle_socket_keeps_a_single_timer():
    """Connect timeout, lifetime and pings share the connection's one timer
    (a DelayedCall costs an idle socket about 350 bytes)."""
    conn = ws_connect(websocket_timeout=100, ping_interval=3, ping_timeout=5)
    conn.handshake()
    assert len(conn.clock.getDelayedCalls()) == 1
    conn.accept()
    assert len(conn.clock.getDelayedCalls()) == 1
    conn.advance(3)
    (ping,) = conn.frames()
    assert len(conn.clock.getDelayedCalls()) == 1
    conn.send(frame(Opcode.PONG, ping.data))
    assert len(conn.clock.getDelayedCalls()) == 1


def test_an_open_socket_lets_go_of_the_http_response_writer():
    """Nothing is answered as HTTP once the socket is open; the writer stays
    only while a refusal is still possible."""
    conn = ws_connect()
    conn.handshake()
    assert conn.protocol.writer is not None
    conn.accept()
    assert conn.protocol.writer is None
    conn.protocol.shutdown()
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1001


def test_connect_timeout_longer_than_the_head_timeout_refuses_on_time():
    """The connection's timer was set for the request head (10 s); moved
    lazily, it wakes the session early, and the refusal still comes at 30 s."""
    conn = ws_connect(websocket_connect_timeout=30, request_head_timeout=10)
    conn.handshake()
    conn.advance(29.9)
    assert conn.output() == b""
    conn.advance(0.1)
    assert one_response(conn.output()).status == 403


def test_an_answered_ping_brings_the_next_ping_forward():
    """With a ping timeout longer than the interval (as by default), the
    answer moves the next look at the socket earlier, not later."""
    conn = opened(ping_interval=3, ping_timeout=10)
    conn.advance(3)
    (ping,) = conn.frames()
    conn.advance(1)
    conn.send(frame(Opcode.PONG, ping.data))
    conn.advance(2.9)
    assert conn.frames() == []
    conn.advance(0.1)
    assert [f.opcode for f in conn.frames()] == [Opcode.PING]


def test_lifetime_expires_while_a_ping_is_unanswered():
    conn = opened(ping_interval=1, ping_timeout=5, websocket_timeout=3)
    conn.advance(1)
    assert [f.opcode for f in conn.frames()] == [Opcode.PING]
    conn.advance(1.9)
    assert conn.frames() == []
    conn.advance(0.1)
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1000
    conn.advance(2)  # where the ping timeout was: nothing more is sent
    assert conn.frames() == []


def test_unanswered_close_handshake_is_dropped_after_the_close_timeout():
    conn = opened(close_timeout=2, ping_interval=0, transport=UnreadTransport())
    conn.instance.send({"type": "websocket.close", "code": 1000})
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1000
    conn.advance(1.9)
    assert not conn.transport.aborted
    conn.advance(0.1)
    assert conn.transport.aborted
    assert conn.clock.getDelayedCalls() == []


#: The model's clock ticks (exact in binary floating point).
TICK = 0.25


def model_events(interval, timeout, lifetime, steps):
    """What the socket should do, tick by tick: a ping ``interval`` ticks
    after the client's last traffic, a drop ``timeout`` ticks after an
    unanswered ping, a close when the lifetime (half a tick off the grid)
    ends. ``steps`` are (ticks to wait, client sends a frame then)."""
    events = []
    last_seen, ping_sent, tick = 0, None, 0
    for wait, traffic in steps:
        for _ in range(wait):
            tick += 1
            while True:
                if ping_sent is None:
                    due, kind = last_seen + interval, "ping"
                else:
                    due, kind = ping_sent + timeout, "drop"
                if lifetime < due:
                    due, kind = lifetime, "close"
                if due > tick:
                    break
                events.append((tick, kind))
                if kind != "ping":
                    return events
                ping_sent = due
        if traffic:
            last_seen, ping_sent = tick, None
    return events


@settings(max_examples=80, deadline=None)
@given(
    interval=st.integers(1, 8),
    timeout=st.integers(1, 8),
    lifetime=st.integers(1, 80),
    steps=st.lists(st.tuples(st.integers(1, 10), st.booleans()), max_size=12),
)
def test_timers_follow_the_model_over_any_traffic(interval, timeout, lifetime, steps):
    """Pings, their timeout and the lifetime, over any sequence of client
    traffic and idle time, on one timer: each event on its tick."""
    conn = opened(
        ping_interval=interval * TICK,
        ping_timeout=timeout * TICK,
        websocket_timeout=(lifetime + 0.5) * TICK,
        transport=UnreadTransport(),
    )
    expected = model_events(interval, timeout, lifetime + 0.5, steps)
    seen, tick, ended = [], 0, False
    for wait, traffic in steps:
        for _ in range(wait):
            conn.advance(TICK)
            tick += 1
            for sent in conn.frames():
                kind = {Opcode.PING: "ping", Opcode.CLOSE: "close"}[sent.opcode]
                seen.append((tick, kind))
                ended = ended or kind == "close"
            if conn.transport.aborted and not ended:
                seen.append((tick, "drop"))
                ended = True
            if ended:
                break
            assert len(conn.clock.getDelayedCalls()) == 1
        if ended:
            break
        if traffic:
            conn.send(frame(Opcode.TEXT, b"traffic"))
    assert seen == expected


# -- shutdown ------------------------------------------------------------------


def test_shutdown_closes_open_sockets_with_1001():
    conn = opened()
    conn.protocol.shutdown()
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1001


def test_shutdown_refuses_a_held_handshake_with_503():
    conn = ws_connect()
    conn.handshake()
    conn.protocol.shutdown()
    assert one_response(conn.output()).status == 503


def test_client_bytes_after_a_refusal_never_reach_the_handshake_parser():
    conn = ws_connect()
    conn.handshake()
    conn.deny(b"x")
    conn.send(upgrade_request(b"/again"))  # while the denial streams
    assert len(conn.host.instances) == 1
    conn.instance.send({"type": "websocket.http.response.body", "body": b"y"})
    assert one_response(conn.output()).body == b"xy"


def test_messages_after_the_application_ended_are_dropped_and_the_end_logged():
    conn = opened()
    conn.instance.finish(None)  # closes with 1000
    events = len(conn.instance.events)
    conn.send(frame(Opcode.TEXT, b"late"))
    assert len(conn.instance.events) == events
    conn.send(close_frame(1000))
    conn.transport.loseConnection()
    assert [a for _, a, _ in conn.log] == ["connecting", "connected", "disconnected"]


@pytest.mark.parametrize("reason", [b"bytes", 42], ids=["bytes", "int"])
def test_close_reason_that_is_not_text_is_an_error(reason):
    conn = opened()
    with pytest.raises(ASGIProtocolError):
        conn.instance.send({"type": "websocket.close", "code": 4000, "reason": reason})
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1011


def test_long_close_reason_is_cut_to_the_frame_limit_on_a_character_boundary():
    conn = opened()
    conn.instance.send({"type": "websocket.close", "code": 4000, "reason": "é" * 100})
    (close,) = conn.frames()
    reason = Close.parse(close.data).reason
    assert len(reason.encode()) <= 123
    assert reason == "é" * len(reason)


@pytest.mark.parametrize(
    "headers",
    [[b"x-only-a-name"], [(b"x", b"1", b"2")], 7],
    ids=["not-pairs", "triples", "not-iterable"],
)
def test_malformed_accept_headers_are_refused_with_500(headers):
    conn = ws_connect()
    conn.handshake()
    with pytest.raises(ASGIProtocolError):
        conn.instance.send({"type": "websocket.accept", "headers": headers})
    assert one_response(conn.output()).status == 500


def test_unknown_event_type_on_an_open_socket_is_an_error():
    conn = opened()
    with pytest.raises(ASGIProtocolError):
        conn.instance.send({"type": "http.response.start", "status": 200})
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1011


# -- races and edge cases found in review: bugs once ----------------------------------------------------------------------


def test_no_data_frame_after_autobahn_failed_the_connection():
    conn = opened(websocket_max_message_size=10)
    conn.send(frame(Opcode.TEXT, b"x" * 20))
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1009
    conn.instance.send({"type": "websocket.send", "text": "after close"})
    assert conn.frames() == []


def test_no_data_frame_after_replying_to_the_client_close():
    conn = ws_connect(transport=UnreadTransport())  # close not complete yet
    conn.handshake()
    conn.accept()
    conn.send(close_frame(1000))
    (reply,) = conn.frames()
    assert reply.opcode == Opcode.CLOSE
    conn.instance.send({"type": "websocket.send", "text": "after close"})
    assert conn.frames() == []


@pytest.mark.parametrize(
    ("offer", "names"),
    [(b"a,\tb", ["a", "b"]), (b" chat , , v2.json ", ["chat", "v2.json"])],
    ids=["tab", "spaces-and-empty"],
)
def test_accepting_any_offered_subprotocol_answers_the_handshake(offer, names):
    """Autobahn once tokenised the list differently from daphne: accepting a
    name it did not know made the handshake hang."""
    conn = ws_connect()
    conn.handshake(extra=b"Sec-WebSocket-Protocol: " + offer + b"\r\n")
    assert conn.instance.scope["subprotocols"] == names
    conn.accept(subprotocol=names[-1])
    assert b"Sec-WebSocket-Protocol: " + names[-1].encode() in conn.head


@pytest.mark.parametrize(
    "offer",
    [b"chat v2", b"chat\xa0", b"\xe9", b"a;b"],
    ids=["space", "nbsp", "latin1", "semi"],
)
def test_subprotocol_names_that_are_not_tokens_are_refused(offer):
    """RFC 6455 names are tokens; autobahn would strip or re-encode others, so
    the accepted name would not be the offered one, byte for byte."""
    conn = ws_connect()
    conn.handshake(extra=b"Sec-WebSocket-Protocol: " + offer + b"\r\n")
    assert conn.host.instances == []
    assert one_response(conn.output()).status == 400


def test_accept_header_values_reach_the_wire_byte_for_byte():
    conn = ws_connect()
    conn.handshake()
    conn.accept(headers=[(b"x-name", "é".encode())])
    assert b"x-name: \xc3\xa9" in conn.head


def test_accept_header_values_that_are_not_utf8_reach_the_wire_as_given():
    """daphne writes the 101 itself, from the application's bytes: a latin-1
    value is not re-encoded on the way (autobahn's UTF-8 101 refused it)."""
    conn = ws_connect()
    conn.handshake()
    conn.accept(headers=[(b"x-name", b"\xe9")])
    assert b"x-name: \xe9" in conn.head


def test_stalled_denial_response_does_not_hang_forever():
    conn = ws_connect(websocket_connect_timeout=5)
    conn.handshake()
    conn.deny()
    conn.advance(3600)
    assert not conn.open


def test_reading_resumes_when_the_application_ends_while_paused():
    conn = opened()
    conn.instance.put_result = False  # queue full
    conn.send(frame(Opcode.TEXT, b"a") + frame(Opcode.TEXT, b"b"))
    assert conn.transport.producerState == "paused"
    conn.instance.finish(None)
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1000
    assert conn.transport.producerState == "producing"


def test_close_handshake_waits_for_a_prompt_client_reply(monkeypatch):
    conn = ws_connect(transport=UnreadTransport())
    monkeypatch.setattr(txaio.config, "loop", conn.clock)
    conn.handshake()
    conn.accept()
    conn.advance(0.95)
    conn.instance.send({"type": "websocket.close", "code": 4000})
    conn.advance(0.1)  # the client's reply is 100 ms away
    assert not conn.transport.aborted
    conn.send(close_frame(4000))
    assert conn.received()[-1] == {
        "type": "websocket.disconnect",
        "code": 4000,
        "reason": "",
    }


def test_an_offer_with_an_unknown_parameter_is_declined_not_refused():
    """Autobahn parsed offers only once the application accepted; a malformed
    one turned an accepted handshake into a 400. daphne reads offers itself:
    one it cannot accept is declined (RFC 7692 5.1) and the socket opens."""
    conn = ws_connect()
    conn.handshake(extra=b"Sec-WebSocket-Extensions: permessage-deflate; bogus=1\r\n")
    conn.accept()
    assert b"sec-websocket-extensions" not in conn.head.lower()


def test_invalid_client_close_code_is_not_reported_as_normal():
    conn = opened()
    conn.send(frame(Opcode.CLOSE, (999).to_bytes(2, "big")))
    (close,) = conn.frames()
    assert Close.parse(close.data).code == 1002
    assert conn.received()[-1]["code"] in (1002, 1006)


# -- risky cases that behave correctly ------------------------------------------


def disconnects(conn) -> list[dict]:
    return [e for e in conn.instance.events if e["type"] == "websocket.disconnect"]


def test_drop_during_held_handshake_then_late_accept_is_dropped():
    conn = ws_connect(websocket_connect_timeout=5, websocket_timeout=50)
    conn.handshake()
    conn.transport.loseConnection()
    assert disconnects(conn) == [
        {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    ]
    assert conn.instance.calls.count("disconnected") == 1
    sink = conn.instance.sink
    with pytest.raises(ClientDisconnected):  # ASGI 2.4: an OSError
        sink.handle_reply({"type": "websocket.accept"})
    conn.instance.finish(None)
    assert conn.clock.getDelayedCalls() == []
    assert len(disconnects(conn)) == 1


def test_drop_while_denial_streams_delivers_one_disconnect():
    conn = ws_connect()
    conn.handshake()
    conn.deny(b"x")
    conn.transport.loseConnection()
    sink = conn.instance.sink
    body = {"type": "websocket.http.response.body", "body": b"y"}
    with pytest.raises(ClientDisconnected):
        sink.handle_reply(body)
    conn.instance.finish(None)
    assert len(disconnects(conn)) == 1
    assert conn.clock.getDelayedCalls() == []


def test_drop_while_reading_is_paused_then_resume_is_harmless():
    conn = opened(ping_interval=1, ping_timeout=1, websocket_timeout=10)
    conn.instance.put_result = False
    conn.send(frame(Opcode.TEXT, b"a") + frame(Opcode.TEXT, b"b"))
    conn.transport.loseConnection()
    conn.instance.sink.resume_reading()
    assert len(disconnects(conn)) == 1
    assert conn.clock.getDelayedCalls() == []


def test_no_timer_survives_a_server_close_answered_by_the_client():
    conn = opened(ping_interval=1, ping_timeout=1, websocket_timeout=10)
    conn.instance.send({"type": "websocket.close"})
    conn.send(close_frame(1000))
    assert conn.clock.getDelayedCalls() == []
    assert len(disconnects(conn)) == 1


def test_shutdown_during_denial_lets_it_finish():
    conn = ws_connect()
    conn.handshake()
    conn.deny()
    conn.protocol.shutdown()
    conn.instance.send({"type": "websocket.http.response.body", "body": b"no"})
    response = one_response(conn.output())
    assert (response.status, response.body) == (401, b"no")


def test_function_options_stay_plain_functions_on_the_protocol_class():
    """Options are class attributes of a per-server protocol class; a function
    option (autobahn calls perMessageCompressionAccept(offers)) became a bound
    method there and raised TypeError for any handshake with an offer."""
    conn = opened(websocket_engine="autobahn")
    accept = conn.protocol.websocket.engine.perMessageCompressionAccept
    assert accept(["offer"]) is None


# Header values daphne accepts: visible latin-1, spaces, tabs, and plenty of
# commas, so that splitting and stripping are exercised.
protocol_values = st.text(
    alphabet=st.sampled_from(list("ab9-_.~ ,\t\xa0\xe9") + [",", " "]),
    min_size=1,
    max_size=30,
).map(lambda text: text.encode("latin-1"))


@settings(max_examples=150, deadline=None)
@given(value=protocol_values, pick=st.integers(min_value=0))
def test_any_offered_subprotocol_can_be_accepted(value, pick):
    """Whatever the client offers, each name daphne lists in
    ``scope["subprotocols"]`` completes the handshake when accepted: the
    list is split exactly as autobahn splits it (once, a tab made this hang)."""
    conn = ws_connect()
    conn.handshake(extra=b"Sec-WebSocket-Protocol: " + value + b"\r\n")
    if not conn.host.instances:
        # Refused before the application: a name that is not a token, or
        # (autobahn) one offered twice.
        assert one_response(conn.output()).status == 400
        return
    offered = conn.instance.scope["subprotocols"]
    choice = offered[pick % len(offered)] if offered else None
    conn.accept(subprotocol=choice)
    if choice is not None:
        # The very bytes the client offered (names are ASCII tokens).
        parts = [part.strip(b" \t") for part in value.split(b",")]
        assert choice.encode("ascii") in parts
        assert b"Sec-WebSocket-Protocol: " + choice.encode("ascii") in conn.head


# -- refused before the application hears of it ------------------------------------


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ((b"Version: 13", b"Version: 99"), 400),
        ((b"GET ", b"POST "), 405),
        ((b"Version: 13\r\n", b"Version: 13\r\nSec-WebSocket-Protocol: a, a\r\n"), 400),
    ],
    ids=["version", "method", "subprotocol-twice"],
)
def test_invalid_handshake_is_refused_logged_and_survives_shutdown(change, status):
    """An invalid handshake is answered as HTTP, logged as a rejected
    WebSocket, and a graceful shutdown while its error page is still being
    written (the client has not read it) leaves the connection to close."""
    conn = ws_connect(transport=UnreadTransport())
    conn.send(upgrade_request().replace(*change))
    assert one_response(conn.output()).status == status
    assert conn.host.instances == []
    assert [action for _, action, _ in conn.log] == ["rejected"]
    protocol = conn.protocol
    assert protocol.closing and not protocol.disconnected
    protocol.shutdown()  # the server calls this on every connection
    assert protocol.closing
