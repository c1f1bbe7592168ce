"""HTTP and WebSocket behaviour every host must share, in memory.

Each test runs once per application side (``host``: an ASGI 3 app on
``AppHost``, or a channel layer on ``LayerHost`` with the test as its worker)
and per connection protocol (``connection``: HTTP/1.1 today), through the
``serve`` fixture and :mod:`tests.harness`. What only one host does is tested
in ``test_app_host.py`` and ``test_layer_mode_memory.py``; framing details
that a real host adds nothing to, against a fake host, in ``test_http1.py``
and ``test_websocket_session.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from daphne.hosts import ClientDisconnected
from daphne.protocols.http1_writer import LAST_CHUNK
from tests.harness import (
    CONTINUE,
    DISCONNECT,
    GET,
    UPGRADE,
    close_frame,
    frame,
    get,
    one_response,
    parse_frames,
    parse_responses,
    pipelined,
)

# -- round trips -----------------------------------------------------------------


def test_one_part_response_gets_content_length(serve):
    srv = serve()
    srv.conn.send(GET)
    request = srv.request()
    assert (request.method, request.path, request.body) == ("GET", "/", b"")
    request.respond(b"hello", headers=[(b"content-type", b"text/plain")])
    response = one_response(srv.conn.output())
    assert response.header(b"content-length") == b"5"
    assert response.header(b"transfer-encoding") is None
    assert response.header(b"content-type") == b"text/plain"
    assert response.body == b"hello"
    assert srv.conn.open


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 11\r\n\r\nhello world", b"Transfer-Encoding: chunked\r\n\r\n"],
    ids=["content-length", "chunked"],
)
def test_post_body_reaches_the_application_whole(serve, framing):
    srv = serve()
    srv.conn.send(b"POST /up HTTP/1.1\r\nHost: a\r\n" + framing)
    if b"chunked" in framing:
        for piece in (b"5\r\nhello\r\n", b"1\r\n \r\n", b"5\r\nworld\r\n0\r\n\r\n"):
            srv.conn.send(piece)
    request = srv.request()
    assert (request.method, request.body) == ("POST", b"hello world")
    request.respond(b"stored", status=201)
    assert one_response(srv.conn.output()).status == 201


def test_large_chunked_body_reaches_the_application_whole(serve):
    srv = serve()
    chunk = b"x" * 65536
    srv.conn.send(
        b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(8):
        srv.conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    srv.conn.send(b"0\r\n\r\n")
    assert len(srv.request().body) == 8 * 65536


STREAMS = {
    "empty-last": ([b"hello ", b"", b"world", b""], b"5\r\nworld\r\n"),
    "data-in-last": ([b"abc", b"def"], b"3\r\ndef\r\n"),
}


@pytest.mark.parametrize(("parts", "ending"), STREAMS.values(), ids=STREAMS)
def test_streamed_response_is_chunked_and_ends_with_last_chunk(serve, parts, ending):
    srv = serve()
    srv.conn.send(GET)
    request = srv.request()
    request.start()
    for n, part in enumerate(parts, 1):
        request.send(part, more=n < len(parts))
    data = srv.conn.output()
    assert data.endswith(ending + LAST_CHUNK)
    response = one_response(data)
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.header(b"content-length") is None
    assert response.body == b"".join(parts)
    assert srv.conn.open


def test_head_response_has_no_body_and_the_connection_goes_on(serve):
    srv = serve()
    srv.conn.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + get(b"/next"))
    head = srv.request()
    assert head.method == "HEAD"
    head.start(headers=[(b"content-length", b"5")])
    head.send(b"not sent", more=True)
    head.send(b"nor this")
    srv.request().respond(b"next")
    data = srv.conn.output()
    assert b"not sent" not in data and b"nor this" not in data
    assert b"\r\ncontent-length: 5\r\n" in data
    head_end = data.index(b"\r\n\r\n") + 4
    assert data[head_end:].startswith(b"HTTP/1.1 200 ")  # (no body in between)
    assert data.endswith(b"\r\n\r\nnext")
    assert srv.conn.open


def test_expect_100_continue_then_the_body_then_the_response(serve):
    srv = serve()
    srv.conn.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\n\r\n"
    )
    assert srv.conn.output() == CONTINUE  # (both sides want the body)
    srv.conn.send(b"hello")
    request = srv.request()
    assert request.body == b"hello"
    request.respond(b"ok")
    assert one_response(srv.conn.output()[len(CONTINUE) :]).body == b"ok"


# -- keep-alive and pipelining -----------------------------------------------------


def test_pipelined_requests_start_one_at_a_time_and_answer_in_order(serve):
    srv = serve()
    srv.conn.send(pipelined(b"/a", b"/b", b"/c"))
    for n, (status, body) in enumerate([(200, b"A"), (201, b"B"), (202, b"C")]):
        assert [r.path for r in srv.started()] == ["/a", "/b", "/c"][: n + 1]
        srv.request().respond(body, status=status)
    responses = srv.conn.responses()
    assert [(r.status, r.body, r.complete) for r in responses] == [
        (200, b"A", True),
        (201, b"B", True),
        (202, b"C", True),
    ]
    assert [r.ended() for r in srv.started()] == [1, 1, 1]
    assert not srv.conn.protocol.running
    assert not srv.side.host.instances
    assert srv.conn.open


def test_idle_keep_alive_connection_closes_after_keep_alive_timeout(serve):
    srv = serve(keep_alive_timeout=5, request_head_timeout=10)
    srv.advance(2)
    srv.conn.send(GET)
    srv.request().respond(b"ok")
    written = srv.conn.output()
    srv.advance(4.9)
    assert srv.conn.open
    srv.advance(0.2)
    assert not srv.conn.open
    assert srv.conn.output() == written  # closed silently


def test_new_request_before_idle_deadline_cancels_it(serve):
    srv = serve(keep_alive_timeout=5)
    srv.conn.send(GET)
    srv.request().respond(b"one")
    srv.advance(4)
    srv.conn.send(GET)
    assert len(srv.started()) == 2
    srv.advance(30)  # no http_timeout: the app may take as long as it likes
    assert srv.conn.open
    srv.request().respond(b"two")
    assert [r.body for r in srv.conn.responses()] == [b"one", b"two"]
    srv.advance(4.9)
    assert srv.conn.open
    srv.advance(0.2)
    assert not srv.conn.open


def test_http_1_0_response_closes_and_the_request_ends_once(serve):
    srv = serve()
    srv.conn.send(b"GET /old HTTP/1.0\r\n\r\n")
    request = srv.request()
    request.respond(b"bye")
    assert one_response(srv.conn.output()).body == b"bye"
    assert not srv.conn.open
    assert request.ended() == 1
    assert not srv.conn.protocol.running
    assert not srv.side.host.instances


# -- --http-timeout -------------------------------------------------------------------


def test_http_timeout_sends_503_exactly_at_the_timeout(serve):
    srv = serve(http_timeout=5)
    srv.conn.send(GET)
    srv.advance(4.9)
    assert srv.conn.output() == b""
    srv.advance(0.1)
    response = one_response(srv.conn.output())
    assert response.status == 503
    assert not srv.conn.open
    request = srv.request()
    assert DISCONNECT in request.events
    assert "disconnected" in request.calls
    assert request.ended() == 1


def test_http_timeout_with_only_response_start_still_sends_503(serve):
    srv = serve(http_timeout=5)
    srv.conn.send(GET)
    srv.request().start(200)  # (the head waits for the first body part)
    srv.advance(5)
    assert one_response(srv.conn.output()).status == 503


def test_reply_after_http_timeout_is_dropped_and_nothing_leaks(serve):
    srv = serve(http_timeout=5)
    srv.conn.send(get(b"/late"))
    request = srv.request()
    srv.advance(5.1)
    assert one_response(srv.conn.output()).status == 503
    request.respond(b"too late")
    assert not srv.conn.open
    assert len(srv.conn.responses()) == 1
    assert request.ended() == 1
    srv.advance(srv.config.application_close_timeout)
    assert not srv.side.host.instances
    assert not srv.conn.protocol.running


def test_http_timeout_after_response_started_cuts_it_once_without_503(serve):
    srv = serve(http_timeout=5)
    srv.conn.send(get(b"/stream"))
    srv.advance(1)
    request = srv.request()
    request.start()
    request.send(b"partial", more=True)
    written = srv.conn.output()
    srv.advance(4)
    assert not srv.conn.open
    assert srv.conn.output() == written
    assert b"503" not in written
    request.send(b"late")
    (response,) = srv.conn.responses()
    assert (response.status, response.body, response.complete) == (
        200,
        b"partial",
        False,
    )
    assert request.ended() == 1
    assert not srv.conn.protocol.running


def test_http_timeouts_of_two_connections_are_independent(serve):
    srv = serve(http_timeout=5)
    first, second, fast = srv.conn, srv.connect(), srv.connect()
    first.send(GET)
    fast.send(get(b"/fast"))  # answered while the first one waits
    srv.request().respond(b"fast")
    assert one_response(fast.output()).body == b"fast"
    assert first.output() == b""
    srv.advance(2)
    second.send(GET)
    srv.advance(3)
    assert one_response(first.output()).status == 503
    assert second.output() == b""
    assert second.open
    srv.advance(1.9)
    assert second.output() == b""
    srv.advance(0.1)
    assert one_response(second.output()).status == 503


# -- the client leaves, the application fails ---------------------------------------


def test_client_leaving_before_the_response_ends_the_request_once(serve):
    srv = serve()
    srv.conn.send(get(b"/gone"))
    request = srv.request()
    srv.conn.close()
    assert request.events[-1] == DISCONNECT
    assert request.calls == ["disconnected"]
    assert request.ended() == 1
    request.respond(b"too late")  # dropped, not an error
    assert srv.conn.output() == b""
    assert request.ended() == 1
    assert not srv.conn.protocol.running


def test_application_error_before_the_response_is_a_500_without_details(serve):
    srv = serve()
    srv.conn.send(GET)
    srv.request().fail()
    response = one_response(srv.conn.output())
    assert response.status == 500
    for secret in (b"secret", b"Traceback", b"RuntimeError", b"InvalidReply"):
        assert secret not in srv.conn.output()
    assert not srv.conn.open
    assert srv.request().ended() == 1


# -- state x event: any script of the application side ------------------------------

steps = st.lists(
    st.sampled_from(["start", "part", "last", "fail", "leave", "wait"]), max_size=6
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(script=steps)
def test_any_script_yields_at_most_one_wellformed_response(serve, script):
    """Whatever the application side does in whatever order (answering,
    failing, the client leaving, --http-timeout passing): the client gets at
    most one response, complete if the connection stays open, and the
    application side hears of the end of the request exactly once."""
    srv = serve(http_timeout=5)
    srv.conn.send(GET)
    request = srv.request()
    started = False
    for step in script:
        if step == "start" and not started:
            started = True
            request.start()
        elif step in ("part", "last") and started:
            request.send(b"x", more=step == "part")
        elif step == "fail":
            request.fail()
        elif step == "leave":
            srv.conn.close()
        elif step == "wait":
            srv.advance(3)
    srv.advance(10)  # past any http_timeout
    responses = srv.conn.responses()
    assert len(responses) <= 1
    if srv.conn.open:
        assert responses and responses[0].complete
    assert request.ended() == 1


# -- WebSocket ---------------------------------------------------------------------


def frames(conn) -> list[Frame]:
    """Frames the server wrote after its 101, since the last call."""
    data = conn.output()
    conn.transport.clear()
    if data.startswith(b"HTTP/1.1 101 "):
        data = data.partition(b"\r\n\r\n")[2]
    return parse_frames(data)


def websocket(serve, **options):
    log: list = []
    srv = serve(**options)
    srv.factory.access_log = lambda protocol, action, details: log.append(action)
    srv.log = log
    srv.conn.send(UPGRADE)
    return srv, srv.websocket()


def test_websocket_accept_echo_and_client_close(serve):
    srv, ws = websocket(serve)
    assert ws.path == "/ws"
    ws.accept()
    assert srv.conn.output().startswith(b"HTTP/1.1 101 ")
    srv.conn.send(frame(Opcode.TEXT, "é".encode()) + frame(Opcode.BINARY, b""))
    srv.conn.send(frame(Opcode.TEXT, b""))
    assert ws.messages() == ["é", b"", ""]
    for message in ws.messages():
        ws.send(
            **({"text": message} if isinstance(message, str) else {"data": message})
        )
    assert [(f.opcode, f.data) for f in frames(srv.conn)] == [
        (Opcode.TEXT, "é".encode()),
        (Opcode.BINARY, b""),
        (Opcode.TEXT, b""),
    ]
    srv.conn.send(close_frame(4321, "done"))
    (reply,) = frames(srv.conn)
    assert Close.parse(reply.data).code == 4321  # echoed
    srv.conn.close()
    assert [e for e in ws.events if e["type"] == "websocket.disconnect"] == [
        {"type": "websocket.disconnect", "code": 4321, "reason": "done"}
    ]
    assert ws.calls.count("disconnected") == 1
    assert ws.close_codes() == [4321]
    assert srv.log == ["connecting", "connected", "disconnected"]
    srv.advance(1)
    assert not srv.side.host.instances


def test_websocket_closed_by_the_application_with_a_code(serve):
    srv, ws = websocket(serve)
    ws.accept()
    ws.close(4001)
    (close,) = frames(srv.conn)
    assert Close.parse(close.data).code == 4001
    srv.conn.send(close_frame(4001))
    assert ws.close_codes() == [4001]


def test_abrupt_end_is_code_1006(serve):
    srv, ws = websocket(serve)
    ws.accept()
    srv.conn.close()
    assert ws.events[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert ws.close_codes() == [1006]


def test_refusal_before_accept_is_a_403(serve):
    srv, ws = websocket(serve)
    ws.refuse()
    response = one_response(srv.conn.output())
    assert response.status == 403
    assert response.header(b"connection") == b"close"
    # (The string transport closes as soon as it is asked to.)
    assert srv.log == ["connecting", "rejected", "disconnected"]
    assert ws.events[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert ws.close_codes() == [1006]
    # The connection is gone: sending raises (ASGI 2.4).
    with pytest.raises(ClientDisconnected):
        ws.record.sink.handle_reply({"type": "websocket.close"})


def test_client_leaving_during_the_handshake_then_a_late_accept(serve):
    srv, ws = websocket(serve)
    srv.conn.close()
    ws.accept()  # (too late: dropped)
    assert ws.close_codes() == [1006]
    assert srv.conn.output() == b""
    srv.advance(srv.config.application_close_timeout)
    assert not srv.side.host.instances


def test_connect_timeout_refuses_with_403_on_time(serve):
    srv, ws = websocket(serve, websocket_connect_timeout=20)
    srv.advance(19.9)
    assert srv.conn.output() == b""
    srv.advance(0.1)
    assert one_response(srv.conn.output()).status == 403
    assert ws.close_codes() == [1006]


def test_frames_sent_with_the_handshake_reach_the_application_after_accept(serve):
    srv = serve()
    srv.conn.send(UPGRADE + frame(Opcode.TEXT, b"hi") + close_frame(4001, "bye"))
    ws = srv.websocket()
    assert ws.events == [{"type": "websocket.connect"}]
    assert ws.messages() == []
    ws.accept()
    assert ws.messages() == ["hi"]
    assert ws.close_codes() == [4001]


def test_pipelined_upgrade_waits_for_the_answer_before_it(serve):
    srv = serve()
    srv.conn.send(get(b"/first") + UPGRADE)
    srv.request().respond(b"one")
    assert [r.status for r in parse_responses(srv.conn.output())] == [200, 400]
    assert len(srv.host.instances) == 1
