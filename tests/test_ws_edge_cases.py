"""WebSocket races and edge cases found in review, in memory.

Each test pins down a case that was wrong once (noted in its docstring) or a
risky one that must stay right: connections dropping in every phase, close
frames autobahn sends on its own, the close handshake timer, subprotocol
lists. See ``tests/test_ws_protocol.py`` for the harness.
"""

from __future__ import annotations

import pytest
import txaio
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Opcode

from daphne.hosts import ClientDisconnected
from tests.test_http_protocol import UnreadTransport, one_response
from tests.test_ws_protocol import close_frame, frame, opened, ws_connect

# -- bugs ----------------------------------------------------------------------


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


def test_extension_offers_are_ignored_not_parsed_after_accept():
    """Autobahn parses offers only once the application accepted; a malformed
    one turned an accepted handshake into a 400. No extension is negotiated,
    so offers are not handed to autobahn at all."""
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


def test_close_frame_pipelined_with_the_handshake():
    conn = ws_connect()
    conn.handshake(rest=frame(Opcode.TEXT, b"hi") + close_frame(4001, "bye"))
    conn.accept()
    assert [e["type"] for e in conn.received()] == [
        "websocket.receive",
        "websocket.disconnect",
    ]
    assert conn.received()[-1]["code"] == 4001


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
    conn = opened()
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
