"""HTTPExchange on its own: the response state machine against a recording
Writer, with no connection at all.

This is what HTTP/1.1 and HTTP/2 share, so it is checked here once: which
application event is legal in which state, what the writer is asked to do,
and that nothing reaches the writer after the exchange is over. Hypothesis
drives it over sequences of events (state x event).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daphne.hosts import ASGIProtocolError
from daphne.http import exchange as exchange_module
from daphne.http.exchange import HTTPExchange, ResponseState

SCOPE = {"method": "GET", "raw_path": b"/x", "query_string": b"", "type": "http"}


class RecordingWriter:
    """A Writer that records each call as a tuple."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def send_informational(self, exchange, status):
        self.calls.append(("informational", status))

    def send_head(self, exchange, body, end):
        self.calls.append(("head", exchange.status, tuple(exchange.headers), body, end))

    def send_data(self, exchange, data, end):
        self.calls.append(("data", data, end))

    def send_error(self, exchange, status, detail="", headers=()):
        self.calls.append(("error", status))

    def reset(self, exchange):
        self.calls.append(("reset",))

    def resume_reading(self, exchange):
        self.calls.append(("resume",))

    def application_ended(self, exchange):
        self.calls.append(("ended",))

    def seconds(self):
        return 0.0


def exchange(method: str = "GET", expect: bool = False) -> tuple[HTTPExchange, list]:
    writer = RecordingWriter()
    ex = HTTPExchange(writer, {**SCOPE, "method": method}, True, expect)
    return ex, writer.calls


START = {"type": "http.response.start", "status": 200, "headers": [(b"x", b"1")]}


def body(data: bytes = b"", more: bool = False) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}


def test_head_waits_for_the_first_body_event():
    ex, calls = exchange()
    ex.handle_reply(START)
    assert calls == [] and ex.state is ResponseState.HEAD_PENDING
    ex.handle_reply(body(b"a", more=True))
    ex.handle_reply(body(b"b"))
    assert calls == [("head", 200, ((b"x", b"1"),), b"a", True), ("data", b"b", False)]
    assert ex.state is ResponseState.DONE


def test_server_owned_headers_are_dropped_and_noted():
    ex, calls = exchange()
    ex.handle_reply(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"Transfer-Encoding", b"chunked"),
                (b"Connection", b"close"),
                (b"Date", b"d"),
                (b"Server", b"s"),
            ],
        }
    )
    ex.handle_reply(body())
    assert calls[0][2] == ((b"Date", b"d"), (b"Server", b"s"))
    assert (ex.app_close, ex.app_date, ex.app_server) == (True, True, True)


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(
        [b"content-length", b"transfer-encoding", b"connection", b"date", b"server"]
    ),
    st.lists(st.booleans(), min_size=1, max_size=20),
)
def test_server_owned_names_are_known_in_any_case(name, upper):
    """The names the server reads are found however the application spells
    them, the first time and from the memo of names seen."""
    spelled = bytes(
        c - 32 if flip and 97 <= c <= 122 else c
        for c, flip in zip(name, upper * len(name), strict=False)
    )
    for _ in range(2):
        assert (
            exchange_module.response_kind(spelled)
            == (exchange_module.RESPONSE_NAMES[name])
        )


def test_the_memo_of_response_names_is_bounded():
    for index in range(3 * exchange_module.RESPONSE_KINDS_SIZE):
        name = b"x-name-%d" % index
        assert exchange_module.response_kind(name) == exchange_module.KEEP
        assert len(exchange_module._response_kinds) <= (
            exchange_module.RESPONSE_KINDS_SIZE
        )
    long_name = b"x" * 65
    exchange_module.response_kind(long_name)
    assert long_name not in exchange_module._response_kinds
    # (A name seen before the memo was emptied is classified again, right.)
    assert exchange_module.response_kind(b"Content-Length") == (
        exchange_module.CONTENT_LENGTH
    )


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_drop_the_body(status):
    ex, calls = exchange()
    ex.handle_reply({**START, "status": status})
    ex.handle_reply(body(b"ignored"))
    assert calls[0][3] == b""


def test_head_request_sends_no_body_but_counts_nothing():
    ex, calls = exchange("HEAD")
    ex.handle_reply(START)
    ex.handle_reply(body(b"ignored"))
    assert calls[0][3] == b"" and ex.bytes_sent == 0


def test_body_longer_than_its_content_length_fails_mid_body():
    ex, calls = exchange()
    ex.handle_reply({**START, "headers": [(b"content-length", b"2")]})
    ex.handle_reply(body(b"ab", more=True))
    with pytest.raises(ASGIProtocolError):
        ex.handle_reply(body(b"c"))
    assert calls[-1] == ("reset",)
    assert ex.state is ResponseState.FAILED


def test_100_continue_is_asked_for_once_and_only_before_the_response():
    ex, calls = exchange(expect=True)
    ex.receive_requested()
    ex.receive_requested()
    assert calls == [("informational", 100)]
    late, late_calls = exchange(expect=True)
    late.handle_reply(START)
    late.receive_requested()
    assert late_calls == []


def test_http_timeout_waits_while_the_client_uploads():
    ex, calls = exchange()
    ex.http_timeout_reached()
    assert calls == []  # the body is still arriving: not the application's fault
    ex.body_complete = True
    ex.http_timeout_reached()
    assert calls == [("error", 503)] and not ex.keep_alive


def test_http_timeout_counts_while_the_application_does_not_read():
    ex, calls = exchange()
    ex.app_paused = True
    ex.http_timeout_reached()
    assert calls == [("error", 503)]


def test_application_ending_early_is_a_500_and_reports_the_end():
    ex, calls = exchange()
    ex.application_finished(None)
    assert calls == [("ended",), ("error", 500)]


def test_application_ending_after_the_connection_went_writes_nothing():
    ex, calls = exchange()
    ex.gone = True
    ex.application_finished(RuntimeError("late"))
    assert calls == [("ended",)]


# -- state x event -------------------------------------------------------------

EVENTS = {
    "start": START,
    "start-bad-status": {"type": "http.response.start", "status": 99},
    "start-bad-headers": {"type": "http.response.start", "status": 200, "headers": 5},
    "body-more": body(b"x", more=True),
    "body-end": body(b"y"),
    "body-not-bytes": {"type": "http.response.body", "body": "text"},
    "unknown": {"type": "http.response.push"},
    "not-a-dict": None,
}

#: state -> events that are legal there (anything else fails the exchange).
LEGAL = {
    ResponseState.IDLE: {"start"},
    ResponseState.HEAD_PENDING: {"body-more", "body-end"},
    ResponseState.BODY: {"body-more", "body-end"},
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(EVENTS)), max_size=8))
def test_every_event_in_every_state(names):
    ex, calls = exchange()
    for name in names:
        before = ex.state
        written = len(calls)
        if before in (ResponseState.DONE, ResponseState.FAILED):
            # Over: a late event is dropped (False) once failed, an error once
            # done; something that is no event at all is always an error.
            if before is ResponseState.FAILED and name != "not-a-dict":
                assert ex.handle_reply(EVENTS[name]) is False
            else:
                with pytest.raises(ASGIProtocolError):
                    ex.handle_reply(EVENTS[name])
            assert len(calls) == written  # nothing more reaches the writer
            continue
        if name in LEGAL[before]:
            assert ex.handle_reply(EVENTS[name]) is True
            assert ex.state is not ResponseState.FAILED
            continue
        with pytest.raises(ASGIProtocolError) as refused:
            ex.handle_reply(EVENTS[name])
        assert ex.state is ResponseState.FAILED
        if before is ResponseState.BODY:
            assert calls[written:] == [("reset",)]
        else:
            assert calls[written:] == [("error", 500)]
        if name in ("unknown",):
            assert before.value in str(refused.value)  # the error names the state
    # Whatever happened, the head went out at most once, and first.
    heads = [i for i, call in enumerate(calls) if call[0] == "head"]
    assert len(heads) <= 1
    if any(call[0] == "data" for call in calls):
        assert heads and heads[0] < min(
            i for i, c in enumerate(calls) if c[0] == "data"
        )
