"""Channel-layer mode over HTTP/2: the v1 messages say ``http_version`` "2"
and the worker's reply goes back on the stream, several at once."""

from __future__ import annotations

import pytest

from tests.conftest import run_daphne
from tests.h2_clients import H2Client
from tests.test_layer_mode import APP, recorded, uid


@pytest.fixture(scope="module")
def layer_server():
    with run_daphne("-t", "20", app=APP) as server:
        yield server


def test_http2_request_message_and_reply(layer_server):
    ident = uid()
    with H2Client(layer_server.port).start() as client:
        streams = [
            client.request(f"/any/{index}?id={ident}", extra=[(b"x-custom", b"v")])
            for index in range(3)
        ]
        client.wait(*streams)
        for stream_id in streams:
            headers, body, _ = client.response(stream_id)
            assert headers[b":status"] == b"200"
            assert body == b"any"
    messages = recorded(layer_server, "http.request", ident)
    assert len(messages) == 3
    for message in messages:
        assert message["http_version"] == "2"
        assert message["method"] == "GET"
        assert (b"x-custom", b"v") in message["headers"]
        assert (b"host", b"127.0.0.1") in message["headers"]
