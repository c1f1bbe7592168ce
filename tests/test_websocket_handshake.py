"""daphne's own WebSocket opening handshake (daphne/websocket/handshake.py).

The checks on their own (RFC 6455 section 4.2.1, hypothesis over keys and
subprotocol lists), then the same refusals over a real socket against a real
daphne, where a valid handshake still opens a socket a real client can use.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daphne.http.errors import HTTPError
from daphne.websocket.handshake import (
    HandshakeError,
    accept_key,
    check_request,
    offered_subprotocols,
    response_head,
)
from tests.clients import RawWebSocket, accept_value, ws_connect
from tests.conftest import run_daphne

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def headers(**overrides: bytes | None) -> list[tuple[bytes, bytes]]:
    """A valid upgrade request's header pairs; ``None`` drops a field."""
    fields = {
        b"host": b"example.com",
        b"upgrade": b"websocket",
        b"connection": b"Upgrade",
        b"sec-websocket-key": KEY,
        b"sec-websocket-version": b"13",
    }
    for name, value in overrides.items():
        fields[name.replace("_", "-").encode()] = value
    return [(name, value) for name, value in fields.items() if value is not None]


def test_accept_key_is_the_rfc_example():
    # RFC 6455 section 1.3.
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request_gives_its_key():
    assert check_request("GET", "1.1", headers()) == KEY


def test_tokens_are_matched_in_lists_and_any_case():
    pairs = headers(upgrade=b"h2c, WebSocket", connection=b"keep-alive, UPGRADE")
    assert check_request("GET", "1.1", pairs) == KEY


@pytest.mark.parametrize(
    ("method", "version", "pairs", "status"),
    [
        ("POST", "1.1", headers(), 405),
        ("GET", "1.0", headers(), 505),
        ("GET", "1.1", headers(host=None), 400),
        ("GET", "1.1", headers(host=b"example.com:http"), 400),
        ("GET", "1.1", headers(upgrade=b"h2c"), 400),
        ("GET", "1.1", headers(connection=b"keep-alive"), 400),
        ("GET", "1.1", headers(sec_websocket_version=None), 400),
        ("GET", "1.1", headers(sec_websocket_key=None), 400),
        ("GET", "1.1", headers(sec_websocket_key=b"short=="), 400),
        ("GET", "1.1", headers(sec_websocket_key=b"!" * 22 + b"=="), 400),
        ("GET", "1.1", [*headers(), (b"sec-websocket-key", KEY)], 400),
        ("GET", "1.1", [*headers(), (b"sec-websocket-version", b"13")], 400),
        ("GET", "1.1", [*headers(), (b"origin", b"a"), (b"origin", b"b")], 400),
        ("GET", "1.1", headers(sec_websocket_version=b"thirteen"), 400),
    ],
    ids=[
        "post",
        "http10",
        "no-host",
        "bad-port",
        "no-websocket-upgrade",
        "no-connection-upgrade",
        "no-version",
        "no-key",
        "short-key",
        "not-base64",
        "two-keys",
        "two-versions",
        "two-origins",
        "version-not-a-number",
    ],
)
def test_invalid_requests_are_refused_with_their_status(method, version, pairs, status):
    with pytest.raises(HandshakeError) as refused:
        check_request(method, version, pairs)
    assert refused.value.status == status


def test_unknown_version_is_answered_with_the_versions_spoken():
    with pytest.raises(HandshakeError) as refused:
        check_request("GET", "1.1", headers(sec_websocket_version=b"7"))
    assert refused.value.status == 400
    assert refused.value.headers == ((b"Sec-WebSocket-Version", b"13, 8"),)


@given(st.binary(min_size=16, max_size=16))
def test_any_sixteen_byte_key_is_accepted(raw):
    key = base64.b64encode(raw)
    assert check_request("GET", "1.1", headers(sec_websocket_key=key)) == key


@given(st.binary(max_size=40).filter(lambda raw: len(raw) != 16))
def test_keys_of_any_other_length_are_refused(raw):
    with pytest.raises(HandshakeError):
        check_request("GET", "1.1", headers(sec_websocket_key=base64.b64encode(raw)))


tokens = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_~!#$%&'*+^`|",
    min_size=1,
    max_size=12,
)


@given(
    names=st.lists(tokens, min_size=1, max_size=5, unique=True),
    spacing=st.sampled_from([",", ", ", " ,\t", ",,"]),
    lines=st.booleans(),
)
def test_offered_subprotocols_keep_the_clients_order(names, spacing, lines):
    if lines:  # one header line per name: still one list
        pairs = [(b"sec-websocket-protocol", name.encode()) for name in names]
    else:
        pairs = [(b"sec-websocket-protocol", spacing.join(names).encode())]
    assert offered_subprotocols(pairs) == names


def test_duplicate_subprotocols_are_refused():
    offered = offered_subprotocols([(b"sec-websocket-protocol", b"chat, chat")])
    with pytest.raises(HandshakeError):
        check_request("GET", "1.1", headers(), offered)


def test_non_token_subprotocols_are_refused():
    with pytest.raises(HTTPError):
        offered_subprotocols([(b"sec-websocket-protocol", b"chat v2")])


def test_what_autobahn_let_through_still_passes():
    """Inputs the handshake accepted before daphne did it itself: repeated
    extension offers (none is negotiated), draft 8 with repeated Origin
    (its origin field was Sec-WebSocket-Origin), a version with a zero."""
    twice = [(b"sec-websocket-extensions", b"permessage-deflate")] * 2
    assert check_request("GET", "1.1", [*headers(), *twice]) == KEY
    origins = [(b"origin", b"a"), (b"origin", b"b")]
    draft8 = headers(sec_websocket_version=b"8")
    assert check_request("GET", "1.1", [*draft8, *origins]) == KEY
    with pytest.raises(HandshakeError):
        check_request(
            "GET",
            "1.1",
            [*draft8, *[(b"sec-websocket-origin", b"a")] * 2],
        )
    assert check_request("GET", "1.1", headers(sec_websocket_version=b"013")) == KEY


def test_101_carries_the_accept_key_subprotocol_and_headers_as_given():
    head = response_head(KEY, "chat", [(b"x-name", b"\xe9")], b"Server: d\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"Server: d" in lines
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines
    assert b"Sec-WebSocket-Protocol: chat" in lines
    assert b"x-name: \xe9" in lines
    assert head.endswith(b"\r\n\r\n")


# -- over the wire --------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_server():
    with run_daphne(app="examples.hello.app:application") as server:
        yield server


def raw_answer(server, request: bytes):
    with RawWebSocket(server.port) as raw:
        raw.send(request)
        return raw.read_response()


def upgrade(method: bytes = b"GET", version: bytes = b"1.1", extra: bytes = b""):
    return (
        b"%s /ws HTTP/%s\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n%s\r\n"
        % (method, version, KEY, extra)
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (upgrade(extra=b"Sec-WebSocket-Version: 7\r\n"), 400),
        (
            upgrade(
                extra=b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n"
            ),
            400,
        ),
        (upgrade(b"DELETE", extra=b"Sec-WebSocket-Version: 13\r\n"), 405),
        (upgrade(extra=b""), 400),
    ],
    ids=["version-7", "two-versions", "delete", "no-version"],
)
def test_invalid_handshakes_are_answered_as_http_and_closed(
    echo_server, request_bytes, status
):
    response = raw_answer(echo_server, request_bytes)
    assert response.status == status
    assert response.header("connection") == "close"
    if b"Version: 7" in request_bytes:
        assert response.header("sec-websocket-version") == "13, 8"


def test_a_valid_handshake_answers_101_and_echoes(echo_server):
    response = raw_answer(echo_server, upgrade(extra=b"Sec-WebSocket-Version: 13\r\n"))
    assert response.status == 101
    assert response.header("sec-websocket-accept") == accept_value(KEY)
    with ws_connect(echo_server, "/ws") as ws:
        ws.send("handshake by daphne")
        assert ws.recv(timeout=5) == "handshake by daphne"
