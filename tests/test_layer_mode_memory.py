"""Channel-layer mode in memory: what only a ``LayerHost`` does.

:mod:`tests.harness` with ``host="layer"``: an ``HTTP11Connection`` served by
a real ``LayerHost`` and ``InMemoryChannelLayer`` polled on a ``Clock``; the
test plays the worker, taking the ASGI v1 messages and replying on their
reply channels. Behaviour an application host shares is in
``test_both_hosts.py``; the same paths over real sockets in
``test_layer_mode.py``.
"""

from __future__ import annotations

import logging

import pytest
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from daphne.layers import InMemoryChannelLayer
from tests.harness import CONTINUE, Harness, one_response, parse_responses

GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"


class Server(Harness):
    """One client connection to daphne in layer mode; the test is the worker."""

    def __init__(self, layer=None, **options) -> None:
        super().__init__("layer", side={"layer": layer}, **options)
        self.layer = self.side.layer

    def send(self, data: bytes) -> None:
        self.conn.send(data)

    def output(self) -> bytes:
        return self.conn.output()

    def take(self, channel: str):
        """What a worker would receive next on ``channel`` (None if nothing)."""
        for n, (name, message) in enumerate(self.side.received):
            if name == channel:
                del self.side.received[n]
                return message
        return None

    def take_all(self, channel: str) -> list[dict]:
        messages = []
        while (message := self.take(channel)) is not None:
            messages.append(message)
        return messages

    def reply(self, message: dict, **reply) -> None:
        self.layer.send(message["reply_channel"], reply)

    def run(self, seconds: float = 0.0, turns: int = 3) -> None:
        for _ in range(turns):
            self.advance(seconds / turns)

    def polls(self) -> int:
        return sum(
            1
            for call in self.clock.getDelayedCalls()
            if getattr(call.func, "__name__", "") == "poll"
        )

    def idle(self) -> bool:
        """No exchange left, on either side."""
        return self.side.host.instances == {} and not self.conn.protocol.running


def test_pipelined_requests_do_not_start_extra_poll_chains():
    server = Server()
    server.send(b"".join(GET % b"%d" % n for n in range(4)))
    chains = []
    for _ in range(4):
        message = server.take("http.request")
        server.reply(message, status=200, content=b"ok")
        server.run(0.06)
        chains.append(server.polls())
    assert len(parse_responses(server.output())) == 4
    # One poll chain while a reply is awaited, none once nothing is.
    assert chains == [1, 1, 1, 0]


@pytest.mark.parametrize(
    "replies",
    [
        [{"content": b"no status"}],
        [
            {"status": 200, "content": b"a", "more_content": True},
            {"status": 200, "content": b"b"},
        ],
    ],
    ids=["no-status", "second-status"],
)
def test_invalid_reply_is_still_followed_by_http_disconnect(replies, caplog):
    server = Server()
    server.send(GET % b"bad")
    message = server.take("http.request")
    for reply in replies:
        server.reply(message, **reply)
    with caplog.at_level(logging.CRITICAL):
        server.run()
    assert server.output()  # (a 500, or a cut-short 200)
    assert server.idle()
    assert server.take_all("http.disconnect") == [
        {
            "type": "http.disconnect",
            "reply_channel": message["reply_channel"],
            "path": "/bad",
        }
    ]


def test_http_timeout_counts_from_the_complete_request(caplog):
    server = Server(http_timeout=5)
    server.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    with caplog.at_level(logging.CRITICAL):
        for _ in range(9):  # a steady 1.7 bytes a second: 5.4 s in all
            server.send(b"x")
            server.clock.advance(0.6)
    server.send(b"x")
    message = server.take("http.request")
    assert message is not None and message["body"] == b"x" * 10
    server.reply(message, status=200, content=b"stored")
    server.run(0.1)
    assert one_response(server.output()).status == 200


def test_client_leaving_before_the_reply_lets_the_reader_rest():
    server = Server()
    server.send(GET % b"gone")
    message = server.take("http.request")
    server.conn.protocol.connectionLost(Failure(ConnectionLost()))
    server.run()
    server.reply(message, status=200)
    server.run(0.1)
    assert server.idle()
    assert server.polls() == 0  # (nothing awaited: the reader rests)


def test_client_leaving_mid_body_tells_the_workers_nothing():
    server = Server()
    server.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    server.conn.protocol.connectionLost(Failure(ConnectionLost()))
    server.run()
    assert server.take("http.request") is None
    assert server.take("http.disconnect") is None
    assert server.side.host.instances == {}


def test_pipelined_requests_get_their_own_reply_channels_and_stray_replies_drop():
    server = Server()
    server.send(GET % b"a" + GET % b"b")
    first = server.take("http.request")
    assert server.take("http.request") is None  # (one at a time)
    server.reply(first, status=200, content=b"A")
    server.run(0.01)
    second = server.take("http.request")
    server.reply(second, status=201, content=b"B")
    # A stray reply for the finished first request goes nowhere.
    server.reply(first, status=500, content=b"stray")
    server.run(0.01)
    responses = parse_responses(server.output())
    assert [(r.status, r.body) for r in responses] == [(200, b"A"), (201, b"B")]
    assert first["reply_channel"] != second["reply_channel"]
    assert server.idle()


def test_the_worker_hears_of_a_request_with_its_whole_body():
    server = Server()
    server.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\n\r\n"
    )
    assert server.output() == CONTINUE  # (at once: the worker needs the body)
    assert server.take("http.request") is None
    server.send(b"hello")
    assert server.take("http.request")["body"] == b"hello"


def test_body_too_large_for_the_layer_is_413(caplog):
    small = Server(InMemoryChannelLayer(max_message_size=1000))
    small.send(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
    with caplog.at_level(logging.CRITICAL):
        small.send(b"y" * 2000)
        small.run()
    assert one_response(small.output()).status == 413
    assert small.take("http.disconnect") is None  # (the worker never heard of it)
    assert small.side.host.instances == {}


def test_polling_reader_restarts_after_resting():
    server = Server()
    server.send(GET % b"1")
    server.reply(server.take("http.request"), status=200)
    server.run(0.01)
    server.run(1)
    assert server.polls() == 0
    server.send(GET % b"2")
    assert server.polls() == 1
    server.reply(server.take("http.request"), status=204)
    server.run(0.1)
    assert [r.status for r in parse_responses(server.output())] == [200, 204]
