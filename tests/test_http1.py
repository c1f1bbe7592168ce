"""HTTP11Connection byte by byte, against a fake host: no sockets, no asyncio.

The connection comes from :mod:`tests.harness` (an ``HTTP11Connection`` on a
``StringTransportWithDisconnection``, reactor a ``Clock``). The application
side is its :class:`~tests.harness.FakeHost`: every request it starts becomes a
:class:`~tests.harness.FakeInstance` that records what the protocol hands it,
and the tests play the application by calling the request's sink
(``handle_reply``, ``application_finished`` ...) directly. What a real host
must do alike is in ``test_both_hosts.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from email.utils import parsedate_to_datetime
from http import HTTPStatus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransportWithDisconnection

from daphne.hosts import ASGIProtocolError
from daphne.protocols import direct as direct_send
from daphne.protocols import http1_reader
from daphne.protocols.http1 import FIRST_REQUEST_GRACE
from tests.harness import (
    BODY,
    CONTINUE,
    DISCONNECT,
    GET,
    START,
    Connection,
    FakeInstance,
    Harness,
    UnreadTransport,
    connect,
    one_response,
    parse_responses,
    pipelined,
)

# -- request head deadline ------------------------------------------------------------


def test_partial_head_gets_408_only_after_request_head_timeout():
    conn = connect(request_head_timeout=10)
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
    conn.advance(9.9)
    assert conn.output() == b""
    assert conn.open
    conn.advance(0.2)
    assert one_response(conn.output()).status == 408
    assert not conn.open


def test_head_deadline_counts_from_first_byte_not_from_connect():
    conn = connect(request_head_timeout=10)
    conn.advance(3)
    conn.send(b"GET / HT")
    conn.advance(9.9)  # 12.9 s after connect, 9.9 s after the first byte
    assert conn.output() == b""
    assert conn.open
    conn.advance(0.2)
    assert one_response(conn.output()).status == 408


def test_dripping_header_lines_never_extend_the_head_deadline():
    conn = connect(request_head_timeout=10)
    conn.send(b"GET / HTTP/1.1\r\n")
    for n in range(4):  # lines at t=2, 4, 6, 8
        conn.advance(2)
        conn.send(b"X-Drip-%d: %d\r\n" % (n, n))
        assert conn.output() == b""
    conn.advance(1.9)
    assert conn.open
    assert conn.output() == b""
    conn.advance(0.2)
    response = one_response(conn.output())
    assert response.status == 408
    assert response.header(b"connection") == b"close"
    assert not conn.open
    assert conn.host.instances == []


def test_silent_connection_is_closed_without_response_at_head_timeout():
    conn = connect(request_head_timeout=4)
    conn.advance(3.9)
    assert conn.open
    conn.advance(0.2)
    assert not conn.open
    assert conn.output() == b""


# -- idle keep-alive ----------------------------------------------------------------


def test_partial_head_on_idle_connection_switches_to_head_deadline():
    conn = connect(keep_alive_timeout=5, request_head_timeout=10)
    conn.send(GET)
    conn.instance.respond()
    before = conn.output()
    conn.advance(4)
    conn.send(b"GET /next HTTP/1.1\r\n")
    conn.advance(9.9)  # past the idle deadline, not past the head deadline
    assert conn.open
    assert conn.output() == before
    conn.advance(0.2)
    assert parse_responses(conn.output())[-1].status == 408
    assert not conn.open


# -- closing: unread closes are aborted, graceful drain --------------------------------


def test_close_is_aborted_when_the_client_does_not_read_after_close_timeout():
    """A response with ``connection: close`` to a client that never reads: the
    close cannot complete, so it becomes an abort after close_timeout (10 s
    by default) instead of holding the connection forever."""
    conn = connect(UnreadTransport())
    conn.send(GET)
    conn.instance.respond(b"bye", headers=[(b"connection", b"close")])
    assert conn.transport.disconnecting
    assert conn.open
    conn.advance(9.9)
    assert not conn.transport.aborted
    conn.advance(0.2)
    assert conn.transport.aborted
    assert not conn.open
    assert one_response(conn.output()).body == b"bye"


def test_refused_request_to_a_client_that_does_not_read_is_aborted():
    conn = connect(UnreadTransport())
    conn.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400 and close
    assert one_response(conn.output()).status == 400
    assert conn.transport.disconnecting
    conn.advance(9.9)
    assert not conn.transport.aborted
    conn.advance(0.2)
    assert conn.transport.aborted


def test_shutdown_mid_body_reads_the_rest_answers_then_closes():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
    instance = conn.instance
    conn.protocol.shutdown()
    assert conn.open
    conn.send(b"world")
    assert_body_events(instance.events, b"helloworld")
    assert conn.open
    instance.respond(b"thanks")
    response = one_response(conn.output())
    assert response.body == b"thanks"
    assert response.header(b"connection") == b"close"
    assert not conn.open


def test_shutdown_of_an_idle_connection_closes_it_at_once():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"ok")
    assert conn.open
    conn.protocol.shutdown()
    assert not conn.open
    assert one_response(conn.output()).body == b"ok"


def test_shutdown_lets_a_new_connection_send_its_first_request():
    """Accepted as the drain begins, no byte yet: its request, on its way,
    is answered, then the connection closes."""
    conn = connect()
    conn.protocol.shutdown()
    assert conn.open
    conn.advance(FIRST_REQUEST_GRACE / 2)
    conn.send(GET)
    conn.instance.respond(b"made it")
    response = one_response(conn.output())
    assert response.body == b"made it"
    assert response.header(b"connection") == b"close"
    assert not conn.open


def test_shutdown_closes_a_silent_new_connection_after_a_grace():
    conn = connect()
    conn.protocol.shutdown()
    conn.advance(FIRST_REQUEST_GRACE - 0.01)
    assert conn.open
    conn.advance(0.02)
    assert not conn.open
    assert conn.output() == b""


def test_request_arriving_after_shutdown_starts_no_application():
    conn = connect()
    conn.send(GET)
    conn.protocol.shutdown()
    conn.send(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n")
    conn.instance.respond(b"first")
    assert [i.scope["path"] for i in conn.host.instances] == ["/"]
    responses = parse_responses(conn.output())
    assert responses[0].body == b"first"
    assert responses[0].header(b"connection") == b"close"
    assert [r.status for r in responses] in ([200], [200, 503])
    assert not conn.open


# -- http_timeout ---------------------------------------------------------------------


def test_keep_alive_requests_share_one_http_timer():
    conn = connect(http_timeout=5, keep_alive_timeout=60)

    def timeout_calls():
        return [
            c
            for c in conn.clock.getDelayedCalls()
            if c.func == conn.protocol.http_timed_out
        ]

    for _ in range(3):
        conn.send(GET)
        conn.advance(3)
        conn.instance.respond(b"done")
        assert len(timeout_calls()) == 1
    # Answered in time: the timer that is left fires harmlessly.
    conn.advance(10)
    assert timeout_calls() == []
    assert conn.open
    assert [r.status for r in parse_responses(conn.output())] == [200, 200, 200]


# -- pipelining ------------------------------------------------------------------------


def test_pipelined_requests_pause_reading_until_the_queue_is_empty():
    conn = connect()
    assert conn.transport.producerState == "producing"
    conn.send(pipelined(b"/1", b"/2", b"/3"))
    assert conn.transport.producerState == "paused"
    conn.host.instances[0].respond()
    assert conn.transport.producerState == "paused"  # /3 still queued
    conn.host.instances[1].respond()
    assert conn.transport.producerState == "producing"


def test_pipelined_request_body_is_delivered_when_its_instance_starts():
    conn = connect()
    conn.send(GET + b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    conn.host.instances[0].respond()
    second = conn.host.instances[1]
    assert second.scope["method"] == "POST"
    assert second.events == [
        {"type": "http.request", "body": b"hello", "more_body": False}
    ]


def test_early_response_while_body_unread_closes_the_connection():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    conn.instance.respond(b"no thanks", status=413)
    assert one_response(conn.output()).status == 413
    assert not conn.open


BROKEN_PIPELINED_BODIES = {
    "bad-chunk": (b"3\r\nabc\r\nzz\r\n", 400),
    "over-max-body": (b"3\r\nabc\r\n9\r\n123456789\r\n", 413),
}


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "two-reads"])
@pytest.mark.parametrize(
    ("body", "status"), BROKEN_PIPELINED_BODIES.values(), ids=BROKEN_PIPELINED_BODIES
)
def test_pipelined_request_with_a_broken_body_never_starts(body, status, split):
    """A queued request whose body turns out broken while an earlier response
    is in flight is dropped: the client gets the error after that response,
    and no application ever waits for the rest of a body that cannot come."""
    conn = connect(max_request_body_size=10)
    head = b"POST /broken HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    pieces = [GET + head + body[:8], body[8:]] if split else [GET + head + body]
    for piece in pieces:
        conn.send(piece)
    assert len(conn.host.instances) == 1
    assert conn.output() == b""
    conn.instance.respond(b"first")
    assert [i.scope["path"] for i in conn.host.instances] == ["/"]
    responses = parse_responses(conn.output())
    assert [r.status for r in responses] == [200, status]
    assert responses[0].body == b"first"
    assert responses[1].header(b"connection") == b"close"
    assert not conn.open


def test_pipelining_is_bounded_by_max_pipelined_requests():
    """One read of many tiny requests: the first runs, 16 (the default
    max_pipelined_requests) are queued and answered in order, the next one
    gets 503 and the connection closes; nothing after it is parsed."""
    conn = connect()
    conn.send(pipelined(*[b"/%d" % n for n in range(25)]))
    assert len(conn.host.instances) == 1
    for n in range(17):
        conn.host.instances[n].respond(b"answer %d" % n)
    assert [i.scope["path"] for i in conn.host.instances] == [
        f"/{n}" for n in range(17)
    ]
    responses = parse_responses(conn.output())
    assert [r.status for r in responses] == [200] * 17 + [503]
    assert [r.body for r in responses[:17]] == [b"answer %d" % n for n in range(17)]
    assert responses[-1].header(b"connection") == b"close"
    assert not conn.open


# -- request bodies ----------------------------------------------------------------------


def assert_body_events(events: list[dict], body: bytes) -> None:
    assert events, "no http.request event"
    assert all(e["type"] == "http.request" for e in events)
    assert [e["more_body"] for e in events] == [True] * (len(events) - 1) + [False]
    assert b"".join(e["body"] for e in events) == body


def test_request_without_body_gets_one_empty_final_event():
    conn = connect()
    conn.send(GET)
    assert conn.instance.events == [
        {"type": "http.request", "body": b"", "more_body": False}
    ]


def test_content_length_body_in_one_packet_is_one_event():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world")
    assert conn.instance.events == [
        {"type": "http.request", "body": b"hello world", "more_body": False}
    ]


def test_chunked_body_is_delivered_as_events_ending_with_more_body_false():
    conn = connect()
    conn.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    events = conn.instance.events
    assert len(events) >= 2
    assert_body_events(events, b"hello world")


def test_body_split_over_many_packets_is_streamed_not_buffered():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
    instance = conn.instance
    assert instance.events == []
    for piece in (b"abc", b"def", b"ghi"):
        conn.send(piece)
        assert instance.events[-1] == {
            "type": "http.request",
            "body": piece,
            "more_body": True,
        }
    conn.send(b"jkl")
    assert len(instance.events) == 4
    assert_body_events(instance.events, b"abcdefghijkl")


def test_chunked_body_split_over_packets_yields_several_events():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"3\r\nabc\r\n")
    assert len(conn.instance.events) == 1
    conn.send(b"3\r\ndef\r\n")
    assert len(conn.instance.events) == 2
    conn.send(b"0\r\n\r\n")
    assert_body_events(conn.instance.events, b"abcdef")


SPLIT_REQUEST = (
    b"POST /a%20b/c?x=1&y=%2F HTTP/1.1\r\n"
    b"Host: example.com:8080\r\n"
    b"User-Agent: test\r\n"
    b"X-Many: one\r\n"
    b"X-Many: two\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"4\r\nWiki\r\n"
    b"5\r\npedia\r\n"
    b"e\r\n in\r\n\r\nchunks.\r\n"
    b"0\r\n\r\n"
)
SPLIT_BODY = b"Wikipedia in\r\n\r\nchunks."


def feed_pieces(pieces: list[bytes]) -> FakeInstance:
    conn = connect()
    for piece in pieces:
        conn.send(piece)
    assert conn.output() == b""
    assert len(conn.host.instances) == 1
    return conn.instance


def reference_instance() -> FakeInstance:
    return feed_pieces([SPLIT_REQUEST])


def test_request_fed_one_byte_at_a_time_gives_same_scope_and_body():
    whole = reference_instance()
    assert whole.scope["path"] == "/a b/c"
    assert whole.scope["query_string"] == b"x=1&y=%2F"
    assert whole.scope["headers"][:2] == [
        (b"host", b"example.com:8080"),
        (b"user-agent", b"test"),
    ]
    drip = feed_pieces([SPLIT_REQUEST[i : i + 1] for i in range(len(SPLIT_REQUEST))])
    assert drip.scope == whole.scope
    assert_body_events(drip.events, SPLIT_BODY)
    assert len(drip.events) > 1


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.sets(st.integers(1, len(SPLIT_REQUEST) - 1), max_size=20))
def test_request_split_anywhere_gives_same_scope_and_body(cuts):
    bounds = [0, *sorted(cuts), len(SPLIT_REQUEST)]
    pieces = [SPLIT_REQUEST[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    instance = feed_pieces(pieces)
    assert instance.scope == reference_instance().scope
    assert_body_events(instance.events, SPLIT_BODY)


# -- request body deadline (request_body_timeout: 60 s by default) ---------------------


POST_100 = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"


def assert_body_timeout_in(conn: Connection, seconds: float) -> None:
    """The stalled body gets its 408 (and the close) ``seconds`` from now."""
    written = conn.output()
    conn.advance(seconds - 0.1)
    assert conn.output() == written
    assert conn.open
    conn.advance(0.2)
    responses = parse_responses(conn.output()[len(written) :])
    assert [r.status for r in responses] == [408]
    response = responses[0]
    assert response.header(b"connection") == b"close"
    assert not conn.open


def test_stalled_request_body_gets_408_after_request_body_timeout():
    conn = connect()
    conn.send(POST_100 + b"x" * 10)
    instance = conn.instance
    assert_body_timeout_in(conn, 60)
    assert DISCONNECT in instance.events
    assert "disconnected" in instance.calls


def test_each_piece_of_request_body_pushes_the_body_deadline_forward():
    conn = connect()
    conn.send(POST_100)
    for _ in range(4):  # 200 s in all, but never 60 s without data
        conn.advance(50)
        conn.send(b"x" * 10)
    assert conn.output() == b""
    assert conn.instance.body_received == b"x" * 40
    assert_body_timeout_in(conn, 60)


def test_body_deadline_is_suspended_while_the_app_queue_is_full():
    conn = connect()
    conn.send(POST_100)
    instance = conn.instance
    instance.put_result = False  # like AppInstance at max_app_queue
    conn.send(b"x" * 10)
    assert conn.transport.producerState == "paused"
    conn.advance(600)  # the server is not reading: the client is not late
    assert conn.output() == b""
    assert conn.open
    instance.put_result = True
    instance.sink.resume_reading()
    assert_body_timeout_in(conn, 60)


def test_body_deadline_of_a_queued_pipelined_request_starts_on_its_turn():
    conn = connect()
    conn.send(GET + POST_100 + b"x" * 10)
    conn.advance(600)  # queued behind GET: reading is paused for the pipeline
    assert conn.output() == b""
    assert conn.open
    conn.host.instances[0].respond(b"first")
    assert len(conn.host.instances) == 2
    assert_body_timeout_in(conn, 60)
    statuses = [r.status for r in parse_responses(conn.output())]
    assert statuses == [200, 408]


def test_stalled_body_after_the_response_started_closes_without_408():
    conn = connect()
    conn.send(POST_100 + b"x" * 10)
    conn.instance.start()
    conn.instance.body(b"streaming", more=True)
    written = conn.output()
    conn.advance(59.9)
    assert conn.open
    conn.advance(0.2)
    assert conn.output() == written
    assert not conn.open


def test_completed_body_leaves_no_body_deadline():
    conn = connect()
    conn.send(POST_100 + b"x" * 10)
    conn.send(b"y" * 90)
    conn.advance(600)  # the app may take as long as it likes
    assert conn.open
    assert conn.output() == b""
    conn.instance.respond(b"ok")
    assert one_response(conn.output()).status == 200


def test_http_timeout_waits_for_an_upload_in_progress_then_counts_from_its_end():
    conn = connect(http_timeout=5, request_body_timeout=60)
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    conn.advance(6)  # (the client is still sending: not the application's fault)
    assert conn.output() == b""
    conn.send(b"cd")
    conn.advance(4.9)
    assert conn.output() == b""
    conn.advance(0.1)
    assert one_response(conn.output()).status == 503


def test_http_timeout_counts_while_an_upload_waits_for_the_app():
    conn = connect(http_timeout=5, request_body_timeout=60)
    conn.host.put_result = False  # the application's queue is full
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    conn.advance(5)
    assert one_response(conn.output()).status == 503


def test_http_timeout_counts_while_the_app_has_not_asked_for_the_body():
    conn = connect(http_timeout=5)
    conn.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    conn.advance(5)
    assert one_response(conn.output()).status == 503


# -- Expect: 100-continue ---------------------------------------------------------------


EXPECT_HEAD = (
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
)


def test_100_continue_is_written_only_when_the_app_asks_for_the_body():
    conn = connect()
    conn.send(EXPECT_HEAD)
    assert conn.output() == b""
    conn.instance.sink.receive_requested()
    assert conn.output() == CONTINUE
    conn.instance.sink.receive_requested()
    assert conn.output() == CONTINUE  # only once
    conn.send(b"hello")
    assert conn.instance.body_received == b"hello"
    conn.instance.respond(b"thanks")
    rest = conn.output()[len(CONTINUE) :]
    assert one_response(rest).body == b"thanks"


def test_no_100_continue_once_the_response_has_started():
    conn = connect()
    conn.send(EXPECT_HEAD)
    conn.instance.start(417)
    conn.instance.sink.receive_requested()
    assert conn.output() == b""
    conn.instance.body(b"no")
    conn.instance.sink.receive_requested()
    assert b"100 Continue" not in conn.output()
    assert one_response(conn.output()).status == 417


def test_no_100_continue_when_the_body_already_arrived():
    conn = connect()
    conn.send(EXPECT_HEAD + b"hello")
    conn.instance.sink.receive_requested()
    assert conn.output() == b""


def test_no_100_continue_for_http_1_0():
    conn = connect()
    conn.send(b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    conn.instance.sink.receive_requested()
    assert conn.output() == b""


def test_body_deadline_starts_when_100_continue_is_sent():
    """A client that sent ``Expect: 100-continue`` may wait for the 100 before
    sending the body. Until the app asks for the body (and the server sends
    the 100) the client is not the slow one; afterwards the deadline runs."""
    conn = connect()
    conn.send(EXPECT_HEAD)
    conn.advance(600)  # the app takes its time before reading the body
    assert conn.output() == b""
    assert conn.open
    conn.instance.sink.receive_requested()
    assert conn.output() == CONTINUE
    assert_body_timeout_in(conn, 60)


# -- response framing ----------------------------------------------------------------------


def test_app_transfer_encoding_header_is_replaced_by_server_framing():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"abc", headers=[(b"Transfer-Encoding", b"gzip")])
    response = one_response(conn.output())
    assert response.values(b"transfer-encoding") == []
    assert response.body == b"abc"


def test_http_1_0_streamed_response_is_close_delimited():
    conn = connect()
    conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    conn.instance.start()
    conn.instance.body(b"abc", more=True)
    assert conn.open
    conn.instance.body(b"def")
    data = conn.output()
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"abcdef"
    assert b"transfer-encoding" not in head.lower()
    assert b"content-length" not in head.lower()
    assert b"\r\nconnection: close" in head
    assert not conn.open


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_status_has_no_body_and_no_added_content_length(status):
    conn = connect()
    conn.send(GET)
    conn.instance.start(status)
    conn.instance.body(b"ignored", more=True)
    conn.instance.body(b"also ignored")
    data = conn.output()
    assert data.endswith(b"\r\n\r\n")
    assert b"ignored" not in data
    response = one_response(data)
    assert response.status == status
    assert response.header(b"content-length") is None
    assert response.header(b"transfer-encoding") is None
    assert conn.open


def test_connection_close_from_app_closes_after_response():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"bye", headers=[(b"Connection", b"close")])
    assert one_response(conn.output()).body == b"bye"
    assert not conn.open


def test_connection_close_from_app_is_sent_once():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"bye", headers=[(b"connection", b"close")])
    assert one_response(conn.output()).values(b"connection") == [b"close"]


def test_server_close_overrides_app_keep_alive_header():
    conn = connect()
    conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    conn.instance.start(headers=[(b"connection", b"keep-alive")])
    conn.instance.body(b"abc", more=True)
    conn.instance.body(b"")
    head = conn.output().partition(b"\r\n\r\n")[0].lower()
    assert b"keep-alive" not in head
    assert not conn.open


def test_date_and_server_headers_are_added():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"x")
    response = one_response(conn.output())
    assert response.header(b"server") == b"daphne"
    date = parsedate_to_datetime(response.header(b"date").decode())
    assert date.tzinfo is not None


def test_app_server_and_date_headers_are_not_duplicated():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(
        b"x",
        headers=[(b"Server", b"mine"), (b"Date", b"Thu, 01 Jan 1970 00:00:00 GMT")],
    )
    response = one_response(conn.output())
    assert response.values(b"server") == [b"mine"]
    assert response.values(b"date") == [b"Thu, 01 Jan 1970 00:00:00 GMT"]


def test_server_name_none_sends_no_server_header():
    conn = connect(server_name=None)
    conn.send(GET)
    conn.instance.respond(b"x")
    response = one_response(conn.output())
    assert response.header(b"server") is None
    assert response.header(b"date") is not None


# -- the application contract -----------------------------------------------------------------


def test_app_returning_without_response_gives_500():
    conn = connect()
    conn.send(GET)
    conn.instance.finish(None)
    assert one_response(conn.output()).status == 500
    assert not conn.open


def test_app_returning_after_start_before_body_gives_500():
    conn = connect()
    conn.send(GET)
    conn.instance.start(200, [(b"x-app", b"1")])
    conn.instance.finish(None)
    response = one_response(conn.output())
    assert response.status == 500
    assert response.header(b"x-app") is None


def test_app_returning_mid_body_closes_without_500():
    conn = connect()
    conn.send(GET)
    conn.instance.start()
    conn.instance.body(b"half", more=True)
    conn.instance.finish(None)
    data = conn.output()
    assert b"500" not in data
    responses = parse_responses(data)
    assert len(responses) == 1
    assert responses[0].status == 200
    assert not responses[0].complete
    assert not conn.open


def test_app_finishing_after_complete_response_keeps_connection():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"ok")
    conn.instance.finish(None)
    assert one_response(conn.output()).status == 200
    assert conn.open


INVALID_FIRST_EVENTS = {
    "status-str": [{"type": START, "status": "200"}],
    "status-bool": [{"type": START, "status": True}],
    "status-1xx": [{"type": START, "status": 101}],
    "status-600": [{"type": START, "status": 600}],
    "status-missing": [{"type": START}],
    "header-crlf": [{"type": START, "status": 200, "headers": [(b"x", b"a\r\nb")]}],
    "header-name-str": [{"type": START, "status": 200, "headers": [("x", b"1")]}],
    "header-value-str": [{"type": START, "status": 200, "headers": [(b"x", "1")]}],
    "header-name-space": [{"type": START, "status": 200, "headers": [(b"a b", b"")]}],
    "header-triple": [{"type": START, "status": 200, "headers": [(b"x", b"1", b"")]}],
    "headers-none": [{"type": START, "status": 200, "headers": None}],
    "bad-content-length": [
        {"type": START, "status": 200, "headers": [(b"content-length", b"-1")]}
    ],
    "two-content-lengths": [
        {
            "type": START,
            "status": 200,
            "headers": [(b"content-length", b"1"), (b"content-length", b"1")],
        }
    ],
    "body-before-start": [{"type": BODY, "body": b"x"}],
    "start-twice": [{"type": START, "status": 200}, {"type": START, "status": 200}],
    "unknown-type": [{"type": "http.response.trailers"}],
    "no-type": [{"status": 200}],
    "not-a-dict": ["http.response.start"],
    "body-str": [{"type": START, "status": 200}, {"type": BODY, "body": "text"}],
    "too-long-for-length": [
        {"type": START, "status": 200, "headers": [(b"content-length", b"3")]},
        {"type": BODY, "body": b"abcdef"},
    ],
}


@pytest.mark.parametrize(
    "events", INVALID_FIRST_EVENTS.values(), ids=INVALID_FIRST_EVENTS
)
def test_invalid_event_before_anything_sent_raises_and_writes_500(events):
    conn = connect()
    conn.send(GET)
    *valid, invalid = events
    for event in valid:
        conn.instance.send(event)
    assert conn.output() == b""
    with pytest.raises(ASGIProtocolError):
        conn.instance.send(invalid)
    response = one_response(conn.output())
    assert response.status == 500
    assert not conn.open
    # The exchange is over: anything else the app sends is dropped quietly.
    conn.instance.body(b"late")
    conn.instance.finish(ASGIProtocolError("x"))
    assert one_response(conn.output()).status == 500


@pytest.mark.parametrize(
    "event",
    [
        {"type": START, "status": 200},
        {"type": "http.response.bogus"},
        {"type": BODY, "body": 5},
    ],
    ids=["start-again", "unknown", "body-int"],
)
def test_invalid_event_mid_body_raises_and_closes_without_500(event):
    conn = connect()
    conn.send(GET)
    conn.instance.start()
    conn.instance.body(b"part", more=True)
    written = conn.output()
    with pytest.raises(ASGIProtocolError):
        conn.instance.send(event)
    assert conn.output() == written
    assert not conn.open


def test_body_longer_than_app_content_length_mid_stream_closes():
    conn = connect()
    conn.send(GET)
    conn.instance.start(200, [(b"content-length", b"4")])
    conn.instance.body(b"ab", more=True)
    with pytest.raises(ASGIProtocolError):
        conn.instance.body(b"cde", more=True)
    data = conn.output()
    assert data.endswith(b"\r\n\r\nab")
    assert not conn.open


def test_body_shorter_than_app_content_length_closes_after_response():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"ab", headers=[(b"content-length", b"4")])
    assert conn.output().endswith(b"\r\n\r\nab")
    assert not conn.open


def test_event_after_complete_response_is_refused_without_output():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"done")
    written = conn.output()
    with pytest.raises(ASGIProtocolError):
        conn.instance.body(b"more")
    assert conn.output() == written


def test_http_status_enum_is_accepted_as_status():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"ok", status=HTTPStatus.CREATED)
    assert one_response(conn.output()).status == 201


def test_client_disconnect_reaches_running_instance():
    conn = connect()
    conn.send(GET)
    instance = conn.instance
    conn.transport.loseConnection()
    assert instance.events[-1] == DISCONNECT
    assert instance.calls == ["disconnected"]
    assert conn.clock.getDelayedCalls() == []
    # Late events from the app are dropped, not errors.
    instance.respond(b"too late")
    instance.finish(None)
    assert conn.output() == b""


def test_disconnect_after_app_finished_is_not_reported_to_instance():
    conn = connect()
    conn.send(GET)
    instance = conn.instance
    instance.respond(b"ok")
    instance.finish(None)
    events = list(instance.events)
    calls = list(instance.calls)
    conn.transport.loseConnection()
    assert instance.events == events
    assert instance.calls == calls
    assert "disconnected" not in instance.calls


def test_response_done_while_app_runs_sends_disconnect_to_instance():
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"ok")
    assert conn.instance.events[-1] == DISCONNECT


def error_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_exception_after_the_response_is_logged_with_its_traceback(caplog):
    conn = connect()
    conn.send(GET)
    conn.instance.respond(b"ok")
    error = RuntimeError("late")
    with caplog.at_level(logging.ERROR, logger="daphne"):
        conn.instance.finish(error)
    records = error_records(caplog)
    assert len(records) == 1, "the late exception was not logged"
    record = records[0]
    assert record.exc_info[1] is error
    assert "GET /" in record.getMessage()
    assert one_response(conn.output()).status == 200
    assert conn.open


@pytest.mark.parametrize("when", ["after-response", "after-disconnect"])
def test_cancelled_application_is_not_logged_as_an_error(caplog, when):
    conn = connect()
    conn.send(GET)
    if when == "after-response":
        conn.instance.respond(b"ok")
    else:
        conn.transport.loseConnection()
    with caplog.at_level(logging.ERROR, logger="daphne"):
        conn.instance.finish(asyncio.CancelledError())
    assert error_records(caplog) == []


# -- backpressure ------------------------------------------------------------------------------


def test_transport_pause_and_resume_reach_current_instance():
    conn = connect()
    conn.send(GET)
    conn.protocol.pauseProducing()
    assert conn.instance.calls == ["pause"]
    conn.protocol.resumeProducing()
    assert conn.instance.calls == ["pause", "resume"]


def test_instance_started_while_transport_paused_starts_paused():
    conn = connect()
    conn.send(pipelined(b"/1", b"/2"))
    conn.protocol.pauseProducing()
    conn.host.instances[0].respond()
    assert conn.host.instances[1].calls == ["pause"]


def test_full_instance_queue_pauses_reading_until_resume_reading():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
    instance = conn.instance
    instance.put_result = False
    assert conn.transport.producerState == "producing"
    conn.send(b"abc")
    assert conn.transport.producerState == "paused"
    instance.put_result = True
    instance.sink.resume_reading()
    assert conn.transport.producerState == "producing"
    conn.send(b"def")
    assert_body_events(instance.events, b"abcdef")


def test_resume_reading_does_not_override_pipeline_pause():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
    instance = conn.instance
    instance.put_result = False
    conn.send(b"abcdef" + GET)
    assert conn.transport.producerState == "paused"
    instance.sink.resume_reading()
    assert conn.transport.producerState == "paused"  # GET still queued
    instance.respond()
    assert conn.transport.producerState == "producing"


def test_read_pause_from_full_queue_is_lifted_when_the_exchange_ends():
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n")
    instance = conn.instance
    instance.put_result = False  # like AppInstance at max_app_queue
    conn.send(b"abc")
    assert conn.transport.producerState == "paused"
    # The app answers without reading the body; AppInstance then never calls
    # resume_reading, since that only happens inside receive().
    instance.respond(b"ok")
    instance.finish(None)
    assert conn.open
    assert conn.transport.producerState == "producing"


@pytest.mark.parametrize("streamed", [False, True], ids=["one-part", "streamed"])
def test_transport_paused_when_the_response_completes_resumes_the_instance(streamed):
    """The instance's last send() waits while the transport is paused; the
    response is complete, so the protocol releases it (nothing else will)."""
    conn = connect()
    conn.send(GET)
    instance = conn.instance
    if streamed:
        instance.start()
        instance.body(b"part", more=True)
    conn.protocol.pauseProducing()
    assert instance.calls == ["pause"]
    if streamed:
        instance.body(b"")
    else:
        instance.respond(b"ok")
    assert instance.calls == ["pause", "resume"]
    assert one_response(conn.output()).complete


# -- request errors carry their status ---------------------------------------------------------


def test_head_over_max_request_head_size_gets_431():
    conn = connect(max_request_head_size=200)
    lines = b"".join(b"X-Header-%d: %s\r\n" % (n, b"v" * 30) for n in range(8))
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n")
    assert one_response(conn.output()).status == 431
    assert not conn.open
    assert conn.host.instances == []


def test_head_at_max_request_head_size_is_accepted():
    conn = connect(max_request_head_size=200)
    lines = b"".join(b"X-Header-%d: %s\r\n" % (n, b"v" * 30) for n in range(4))
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n")
    assert len(conn.host.instances) == 1


def test_too_many_header_fields_gets_431():
    conn = connect(max_request_headers=3)
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    assert one_response(conn.output()).status == 431
    assert conn.host.instances == []


def test_max_request_headers_allows_exactly_that_many():
    conn = connect(max_request_headers=3)
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n")
    assert len(conn.instance.scope["headers"]) == 3


def test_url_longer_than_head_size_gets_414_before_line_ends():
    conn = connect(max_request_head_size=100)
    conn.send(b"GET /" + b"a" * 150)
    assert one_response(conn.output()).status == 414
    assert not conn.open


def test_unterminated_giant_header_line_gets_431_without_waiting():
    conn = connect(max_request_head_size=1000)
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
    for _ in range(50):  # 100 kB of one header line, no CRLF yet
        conn.send(b"a" * 2000)
    assert one_response(conn.output()).status == 431
    assert not conn.open


def test_declared_body_over_max_request_body_size_gets_413_before_the_app():
    """A Content-Length over the limit is refused from the head alone: no
    application starts, and no 100-continue invites the upload."""
    conn = connect(max_request_body_size=5)
    conn.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    assert one_response(conn.output()).status == 413
    assert not conn.open
    assert conn.host.instances == []


def test_chunked_body_over_max_request_body_size_gets_413():
    conn = connect(max_request_body_size=5)
    conn.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    conn.send(b"3\r\ndef\r\n")
    assert one_response(conn.output()).status == 413


def test_body_at_max_request_body_size_is_accepted():
    conn = connect(max_request_body_size=5)
    conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    assert conn.output() == b""
    assert conn.instance.body_received == b"hello"


def test_bad_pipelined_head_is_answered_after_the_response_in_flight():
    conn = connect(max_request_headers=2)
    conn.send(GET)
    conn.send(b"GET /bad HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    assert conn.output() == b""
    conn.instance.respond(b"first")
    responses = parse_responses(conn.output())
    assert [r.status for r in responses] == [200, 431]


def test_data_after_a_deferred_request_error_is_ignored():
    conn = connect(max_request_headers=2)
    conn.send(GET)
    conn.send(b"GET /bad HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    assert conn.transport.producerState == "paused"
    # A paused TLS transport can still deliver already-decrypted bytes.
    conn.send(b"GET /more HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(conn.host.instances) == 1
    conn.instance.respond(b"first")
    assert [r.status for r in parse_responses(conn.output())] == [200, 431]
    assert not conn.open


def test_transfer_encoding_in_an_http_1_0_request_gets_400():
    conn = connect()
    conn.send(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    response = one_response(conn.output())
    assert response.status == 400
    assert response.header(b"connection") == b"close"
    assert not conn.open
    assert conn.host.instances == []


def test_unexpected_exception_in_a_parser_callback_gets_500(monkeypatch, caplog):
    """A bug inside a parser callback is logged and answered with 500; it does
    not escape from dataReceived into Twisted."""

    def broken_build_scope(*args: object) -> dict:
        raise RuntimeError("bug in build_scope")

    conn = connect()
    monkeypatch.setattr(http1_reader, "build_scope", broken_build_scope)
    with caplog.at_level(logging.ERROR, logger="daphne"):
        conn.send(GET)
    response = one_response(conn.output())
    assert response.status == 500
    assert b"bug in build_scope" not in conn.output()
    assert not conn.open
    assert conn.host.instances == []
    records = error_records(caplog)
    assert len(records) == 1
    assert isinstance(records[0].exc_info[1], RuntimeError)


# -- state x event property ----------------------------------------------------------------------


@st.composite
def response_headers(draw) -> list[tuple[bytes, bytes]]:
    headers = draw(
        st.lists(
            st.sampled_from(
                [
                    (b"content-type", b"text/plain"),
                    (b"x-custom", b"value"),
                    (b"connection", b"close"),
                ]
            ),
            unique=True,
        )
    )
    length = draw(st.sampled_from([None, b"0", b"3", b"6"]))
    if length is not None:
        headers.insert(draw(st.integers(0, len(headers))), (b"content-length", length))
    return headers


start_events = st.builds(
    lambda status, headers: {"type": START, "status": status, "headers": headers},
    st.sampled_from([200, 201, 204, 299, 304, 404, 500]),
    response_headers(),
)
body_events = st.builds(
    lambda body, more: {"type": BODY, "body": body, "more_body": more},
    st.binary(max_size=4),
    st.booleans(),
)
invalid_events = st.sampled_from(
    [
        {"type": START, "status": "200"},
        {"type": START, "status": 200, "headers": [(b"x", b"\r\n")]},
        {"type": START, "status": 200, "headers": [("x", b"1")]},
        {"type": BODY, "body": "str"},
        {"type": "http.response.push"},
        {},
        None,
    ]
)


@st.composite
def app_events(draw) -> list:
    """A mostly valid response (optional start, then body parts, maybe the
    last one final) with at most one event of any kind inserted anywhere: every
    response state meets every kind of event."""
    events = draw(st.lists(start_events, max_size=1))
    parts = draw(st.lists(st.binary(max_size=4), max_size=4))
    complete = draw(st.booleans())
    events += [
        {"type": BODY, "body": part, "more_body": not complete or n < len(parts) - 1}
        for n, part in enumerate(parts)
    ]
    if draw(st.booleans()):
        wild = draw(st.one_of(start_events, body_events, invalid_events))
        events.insert(draw(st.integers(0, len(events))), wild)
    return events


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    events=app_events(),
    version=st.sampled_from([b"1.1", b"1.0"]),
    error=st.sampled_from([None, ValueError("boom")]),
)
def test_any_event_sequence_yields_one_wellformed_response_or_close(
    events, version, error
):
    """Whatever the app sends, then returns: one valid response, else a close."""
    conn = connect()
    conn.send(b"GET / HTTP/%s\r\nHost: a\r\n\r\n" % version)
    instance = conn.instance
    for event in events:
        with contextlib.suppress(ASGIProtocolError):
            instance.send(event)
    instance.finish(error)
    responses = parse_responses(conn.output())
    assert len(responses) == 1
    if conn.open:
        assert responses[0].complete
        # The connection is reusable: the next request starts a new instance.
        conn.send(GET)
        assert len(conn.host.instances) == 2


# -- Upgrade and HTTP versions -------------------------------------------------------------------


def test_upgrade_request_without_body_is_answered_as_plain_http():
    conn = connect()
    conn.send(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    )
    conn.instance.respond(b"no upgrade here", status=426)
    assert one_response(conn.output()).status == 426
    assert conn.open
    conn.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.instance.scope["path"] == "/next"


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


UPGRADE_WITH_BODY = {
    "content-length": b"Content-Length: %d\r\n\r\n%s" % (len(SMUGGLED), SMUGGLED),
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
    % (len(SMUGGLED), SMUGGLED),
}


@pytest.mark.parametrize("split", [False, True], ids=["one-packet", "split"])
@pytest.mark.parametrize("framing", UPGRADE_WITH_BODY.values(), ids=UPGRADE_WITH_BODY)
def test_body_of_upgrade_request_is_never_parsed_as_a_request(framing, split):
    """A body on an Upgrade request must not be reparsed as the next request
    (request smuggling): it is refused, or delivered to the app as its body."""
    conn = connect()
    head, sep, body = framing.partition(b"\r\n\r\n")
    start = b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
    start += b"Upgrade: foo\r\n" + head + sep
    for piece in [start, body] if split else [start + body]:
        conn.send(piece)
    for instance in list(conn.host.instances):
        with contextlib.suppress(ASGIProtocolError):
            instance.respond(b"ok")
    paths = [instance.scope["path"] for instance in conn.host.instances]
    assert "/smuggled" not in paths
    assert not conn.protocol.pipeline
    if paths:
        assert conn.host.instances[0].body_received == SMUGGLED
    else:
        assert one_response(conn.output()).status == 400


@pytest.mark.parametrize(
    "request_line", [b"GET / HTTP/2.0", b"GET / HTTP/0.9"], ids=["2.0", "0.9"]
)
def test_unsupported_http_version_gets_505(request_line):
    conn = connect()
    conn.send(request_line + b"\r\nHost: a\r\n\r\n")
    assert conn.host.instances == []
    assert one_response(conn.output()).status == 505


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_supported_http_versions_reach_the_app(version):
    conn = connect()
    conn.send(b"GET / HTTP/%s\r\nHost: a\r\n\r\n" % version.encode())
    assert conn.instance.scope["http_version"] == version


# -- proxy headers ---------------------------------------------------------------------

FORWARDED = (
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Real-IP: 192.0.2.7\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\n\r\n"
)
#: The in-memory client's address (StringTransport's peer) as a trusted proxy.
TRUST_PEER = {"forwarded_allow_ips": "192.168.1.1"}


def test_unconfigured_forwarded_port_and_proto_headers_are_not_trusted():
    """Only the configured headers are trusted: with just an address header,
    a client's X-Forwarded-Proto/-Port must not change the scope."""
    conn = connect(proxy_forwarded_address_header="X-Real-IP", **TRUST_PEER)
    conn.send(FORWARDED)
    scope = conn.instance.scope
    assert scope["client"] == ["192.0.2.7", conn.transport.getPeer().port]
    assert scope["scheme"] == "http"


def test_configured_forwarded_port_and_proto_headers_are_trusted():
    conn = connect(
        proxy_forwarded_address_header="X-Real-IP",
        proxy_forwarded_port_header="X-Forwarded-Port",
        proxy_forwarded_proto_header="X-Forwarded-Proto",
        **TRUST_PEER,
    )
    conn.send(FORWARDED)
    scope = conn.instance.scope
    assert scope["client"] == ["192.0.2.7", 8443]
    assert scope["scheme"] == "https"


# -- access log failures and client formatting -----------------------------------------


def test_failing_access_log_is_contained_and_disabled(caplog):
    calls: list[dict] = []

    def access_log(protocol: str, action: str, details: dict) -> None:
        calls.append(details)
        raise OSError(28, "No space left on device")

    conn = Harness(access_log=access_log).conn
    factory = conn.factory
    with caplog.at_level(logging.ERROR, logger="daphne"):
        conn.send(GET)
        conn.instance.respond(b"first")
        conn.instance.finish()
        first = one_response(conn.output())
        assert first.body == b"first"
        assert conn.open
        conn.transport.clear()
        conn.send(GET)
        assert len(conn.host.instances) == 2
        conn.instance.respond(b"second")
        conn.instance.finish()
    assert one_response(conn.output()).body == b"second"
    assert conn.open
    assert len(calls) == 1
    assert factory.access_log is None
    records = error_records(caplog)
    assert len(records) == 1
    assert "Access log" in records[0].getMessage()


@pytest.mark.parametrize(
    "address, expected",
    [
        (IPv6Address("TCP", "::1", 51234), "[::1]:51234"),
        (IPv4Address("TCP", "127.0.0.1", 51234), "127.0.0.1:51234"),
    ],
    ids=["ipv6", "ipv4"],
)
def test_access_log_client_address_format(address, expected):
    calls: list[dict] = []
    conn = Harness(
        access_log=lambda protocol, action, details: calls.append(details),
        transport=StringTransportWithDisconnection(peerAddress=address),
    ).conn
    conn.send(GET)
    conn.instance.respond(b"ok")
    conn.instance.finish()
    assert one_response(conn.output()).status == 200
    assert [details["client"] for details in calls] == [expected]


# -- direct writes on plain TCP ------------------------------------------------------


class KernelSocket:
    """The socket of a :class:`DirectTCP`: ``send`` takes what it accepts."""

    def __init__(self, transport: DirectTCP) -> None:
        self.transport = transport

    def send(self, data: bytes) -> int:
        transport = self.transport
        if transport.error is not None:
            raise transport.error
        accept = transport.accept
        taken = len(data) if accept is None else min(accept, len(data))
        transport.direct_bytes += data[:taken]
        return taken


class DirectTCP(StringTransportWithDisconnection):
    """Looks like Twisted's TCP transport to ``HTTP11Connection.send``: the
    kernel takes ``accept`` bytes of each direct write (all if None)."""

    def __init__(self) -> None:
        super().__init__()
        self._tempDataLen = 0
        self._aborting = False
        self.SEND_LIMIT = 128 * 1024
        self.dataBuffer = b""
        self.offset = 0
        self.accept: int | None = None
        self.direct_bytes = b""
        self.queued: list[bytes] = []
        self.error: OSError | None = None
        self.socket = KernelSocket(self)

    def write(self, data: bytes) -> None:
        self.queued.append(data)
        super().write(data)


@pytest.fixture
def direct(monkeypatch):
    monkeypatch.setattr(direct_send, "DIRECT_TRANSPORTS", (DirectTCP,))
    transport = DirectTCP()
    conn = connect(transport)
    conn.send(GET)
    return conn, transport


def test_response_goes_out_in_one_direct_send_when_nothing_is_queued(direct):
    conn, transport = direct
    conn.instance.respond(b"hello")
    assert transport.queued == []
    assert one_response(transport.direct_bytes).body == b"hello"


def test_what_the_kernel_does_not_take_is_queued_in_order(direct):
    conn, transport = direct
    transport.accept = 10
    conn.instance.respond(b"x" * 100)
    assert len(transport.direct_bytes) == 10
    assert one_response(transport.direct_bytes + b"".join(transport.queued)).body == (
        b"x" * 100
    )


def test_nothing_jumps_the_queue(direct):
    conn, transport = direct
    transport._tempDataLen = 5  # Twisted still has bytes to send
    conn.instance.respond(b"later")
    assert transport.direct_bytes == b""
    assert one_response(b"".join(transport.queued)).body == b"later"


def test_a_failed_direct_send_falls_back_to_the_transport(direct):
    conn, transport = direct
    transport.error = ConnectionResetError()
    conn.instance.respond(b"data")
    assert one_response(b"".join(transport.queued)).body == b"data"


def test_a_body_larger_than_one_send_is_queued_whole(direct):
    """Sending part of it directly would copy the rest to queue it."""
    conn, transport = direct
    transport.SEND_LIMIT = 10
    conn.instance.respond(b"y" * 100)
    assert transport.direct_bytes == b""
    assert one_response(b"".join(transport.queued)).body == b"y" * 100


def test_nothing_is_sent_directly_after_an_abort(direct):
    conn, transport = direct
    transport._aborting = True
    conn.instance.respond(b"late")
    assert transport.direct_bytes == b""


def test_access_log_time_taken_counts_from_the_request_head():
    """``time_taken`` (Daphne 4's runserver reads it) is in seconds, on the
    connection's clock, from the complete head to the end of the response."""
    calls: list[dict] = []
    conn = Harness(
        access_log=lambda protocol, action, details: calls.append(details),
    ).conn
    conn.advance(3)  # the clock's origin must not leak into the duration
    conn.send(GET)
    conn.advance(1.5)
    conn.instance.respond(b"ok")
    conn.instance.finish()
    assert one_response(conn.output()).status == 200
    assert calls[0]["time_taken"] == pytest.approx(1.5)
    assert type(calls[0]["time_taken"]) is float
