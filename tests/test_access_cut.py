"""A response cut short still gets its one access-log line.

Every exchange that sent any response logs exactly once, with the status
that was sent and the body bytes that went out: whether it completed, or
was cut mid-body by an application error, an invalid event, the
``--http-timeout``, or the client going away. In memory (tests/harness.py)
for the precise cases and a hypothesis run over the orders of events; over
real sockets for the two common ones.
"""

from __future__ import annotations

import contextlib
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from daphne.hosts import ASGIProtocolError
from tests.harness import GET, Harness

from .clients import Raw


def logged_harness(**options):
    lines: list[tuple[str, str, dict]] = []
    harness = Harness(
        access_log=lambda *event: lines.append(event), http_timeout=30, **options
    )
    return harness.conn, lines


def complete(lines) -> list[tuple[int, int]]:
    """(status, size) of each http complete line."""
    return [
        (details["status"], details["size"])
        for protocol, action, details in lines
        if (protocol, action) == ("http", "complete")
    ]


def streaming(conn) -> None:
    conn.send(GET)
    conn.instance.start(200)
    conn.instance.body(b"partial", more=True)


def test_application_error_mid_body_is_logged_once():
    conn, lines = logged_harness()
    streaming(conn)
    conn.instance.finish(RuntimeError("boom"))
    assert not conn.open
    assert complete(lines) == [(200, 7)]


def test_invalid_event_mid_body_is_logged_once():
    conn, lines = logged_harness()
    streaming(conn)
    with contextlib.suppress(ASGIProtocolError):
        conn.instance.start(200)  # a second start: refused, the response cut
    conn.instance.finish()
    assert complete(lines) == [(200, 7)]


def test_http_timeout_mid_body_is_logged_once():
    conn, lines = logged_harness()
    streaming(conn)
    conn.advance(31)
    assert not conn.open
    assert complete(lines) == [(200, 7)]
    conn.instance.finish()
    assert complete(lines) == [(200, 7)]


def test_client_gone_mid_body_is_logged_once():
    conn, lines = logged_harness()
    streaming(conn)
    conn.instance.body(b"more", more=True)
    conn.close()
    assert complete(lines) == [(200, 11)]
    # The application carries on, times out, ends: nothing more is logged.
    conn.instance.body(b"ignored", more=True)
    conn.advance(31)
    conn.instance.body(b"", more=False)
    conn.instance.finish()
    assert complete(lines) == [(200, 11)]


def test_client_gone_before_any_response_is_not_logged():
    conn, lines = logged_harness()
    conn.send(GET)
    conn.instance.start(200)  # (the head waits for the first body part)
    conn.close()
    conn.instance.finish()
    assert lines == []


ACTIONS = st.lists(
    st.sampled_from(
        ["start", "part", "last", "return", "raise", "close", "timeout", "restart"]
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(actions=ACTIONS)
def test_every_exchange_that_answered_logs_exactly_once(actions):
    conn, lines = logged_harness()
    conn.send(GET)
    instance = conn.instance
    for action in actions:
        try:
            if action == "start":
                instance.start(200)
            elif action == "part":
                instance.body(b"x", more=True)
            elif action == "last":
                instance.body(b"y")
            elif action == "return":
                instance.finish()
            elif action == "raise":
                instance.finish(RuntimeError("boom"))
            elif action == "close":
                conn.close()
            elif action == "timeout":
                conn.advance(31)
            elif action == "restart":
                instance.start(201)
        except ASGIProtocolError:  # invalid events raise to the application
            pass
    # Then everything ends: the client leaves, the application returns.
    conn.close()
    with contextlib.suppress(ASGIProtocolError):
        instance.finish()
    answered = conn.output().startswith(b"HTTP/1.1 ")
    assert len(complete(lines)) == (1 if answered else 0), (actions, lines)


# -- over real sockets --------------------------------------------------------------


def test_application_error_mid_body_gets_an_access_line(server):
    with Raw(server.port) as conn:
        conn.send(b"GET /raise-mid HTTP/1.1\r\nHost: a\r\n\r\n")
        response = conn.read_response()
        assert (response.status, response.complete) == (200, False)
        port = conn.local_port
    line = server.wait_for_line(rf'^127\.0\.0\.1:{port} .*"GET /raise-mid"')
    assert line.endswith('"GET /raise-mid" 200 7'), line


def test_client_gone_mid_body_gets_an_access_line(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with Raw(0, sock=sock) as conn:
        conn.send(b"GET /slow-stream?n=50&delay=0.05 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        port = conn.local_port
    line = server.wait_for_line(rf'^127\.0\.0\.1:{port} .*"GET /slow-stream')
    assert " 200 " in line
    assert int(line.rsplit(" ", 1)[1]) > 0, line
