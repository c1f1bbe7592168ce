"""Django Channels 4 consumers served by daphne over real WebSockets.

The application is tests/django_project/channels_asgi.py: a Channels
ProtocolTypeRouter sending HTTP to Django and WebSockets to a URLRouter
(routes in tests/django_project/routing.py, consumers in consumers.py).
"""

from __future__ import annotations

import json
import os
import re
import time

import httpx
import pytest

from .conftest import run_daphne

pytest.importorskip("django")
pytest.importorskip("channels")
pytest.importorskip("websockets")

from websockets.exceptions import (  # noqa: E402
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
)
from websockets.sync.client import connect  # noqa: E402

from .clients import ws_url  # noqa: E402

CHANNELS_APP = "tests.django_project.channels_asgi:application"
SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.django_project.settings"}
LOG_DATE = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\]"


@pytest.fixture(scope="module")
def channels_server():
    with run_daphne("--access-log", "-", app=CHANNELS_APP, env=SETTINGS) as server:
        yield server


def open_ws(server, path: str, **kwargs):
    """A websockets client connection to ``path`` on ``server``."""
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 8)
    return connect(ws_url(server, path), proxy=None, **kwargs)


def refused_status(server, path: str, **kwargs) -> int:
    """The HTTP status with which daphne refuses the handshake for ``path``."""
    with pytest.raises(InvalidStatus) as info:
        open_ws(server, path, **kwargs).close()
    return info.value.response.status_code


def expect_server_close(ws, code: int, reason: str = "") -> float:
    """Wait for a close initiated by the server; return how long it took."""
    started = time.monotonic()
    with pytest.raises((ConnectionClosedError, ConnectionClosedOK)) as info:
        ws.recv(timeout=5)
    elapsed = time.monotonic() - started
    closed = info.value
    assert closed.rcvd is not None, "no close frame from the server"
    assert (closed.rcvd.code, closed.rcvd.reason) == (code, reason)
    # The server sent its close frame first (the client only answered it).
    assert closed.rcvd_then_sent is True
    assert ws.close_code == code
    return elapsed


# -- the synchronous WebsocketConsumer ------------------------------------------


def test_sync_consumer_echoes_text_and_bytes_then_closes_4000(channels_server):
    with open_ws(channels_server, "/ws/echo/lobby/") as ws:
        # No subprotocol offered: the consumer accepts without one.
        assert ws.subprotocol is None
        ws.send("hello")
        assert ws.recv(timeout=5) == "lobby:hello"
        ws.send("héllo wörld ✓ 🚀")
        assert ws.recv(timeout=5) == "lobby:héllo wörld ✓ 🚀"
        ws.send("")
        assert ws.recv(timeout=5) == "lobby:"
        ws.send(b"\x00\x01binary\xff")
        reply = ws.recv(timeout=5)
        assert type(reply) is bytes
        assert reply == b"\x00\x01binary\xff"
        # A text message that is not "close" but looks like one is echoed.
        ws.send("close ")
        assert ws.recv(timeout=5) == "lobby:close "
        ws.send("close")
        elapsed = expect_server_close(ws, 4000)
    # daphne closed the TCP connection after the closing handshake; the
    # client did not have to wait for its close_timeout (8 s).
    assert elapsed < 4, elapsed
    # The consumer's disconnect() was given the close code (ASGI
    # websocket.disconnect after a server-initiated close).
    channels_server.wait_for_line(r"^sync-disconnect lobby 4000$")


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_handshake_with_and_without_a_permessage_deflate_offer(
    channels_server, compression
):
    # Browsers (and websockets by default) offer permessage-deflate; the
    # server may accept or ignore the offer, but must complete the handshake.
    with open_ws(
        channels_server,
        f"/ws/echo/pmd-{compression}/",
        compression=compression,
        open_timeout=5,
    ) as ws:
        assert ws.response.status_code == 101
        ws.send("abc" * 1000)
        assert ws.recv(timeout=5) == f"pmd-{compression}:" + "abc" * 1000


def test_sync_consumer_echoes_a_large_binary_message(channels_server):
    payload = os.urandom(300 * 1024)
    with open_ws(channels_server, "/ws/echo/big/") as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
        big_text = "x" * 200_000 + "é"
        ws.send(big_text)
        assert ws.recv(timeout=10) == "big:" + big_text


def test_sync_consumer_keeps_message_order(channels_server):
    with open_ws(channels_server, "/ws/echo/order/") as ws:
        for n in range(100):
            ws.send(f"m{n}")
        replies = [ws.recv(timeout=5) for _ in range(100)]
    assert replies == [f"order:m{n}" for n in range(100)]


def test_client_close_code_reaches_the_consumer(channels_server):
    with open_ws(channels_server, "/ws/echo/kitchen/") as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "kitchen:ping"
        ws.close(code=4321, reason="client done")
        assert ws.close_code == 4321
    channels_server.wait_for_line(r"^sync-disconnect kitchen 4321$")


def test_two_connections_each_get_their_own_route_kwargs(channels_server):
    with (
        open_ws(channels_server, "/ws/echo/red/") as red,
        open_ws(channels_server, "/ws/echo/blue/") as blue,
    ):
        red.send("one")
        blue.send("two")
        red.send("three")
        assert blue.recv(timeout=5) == "blue:two"
        assert red.recv(timeout=5) == "red:one"
        assert red.recv(timeout=5) == "red:three"


def test_scope_subprotocol_and_headers_reach_the_consumer(channels_server):
    with open_ws(
        channels_server,
        "/ws/echo/scoped/?token=abc&x=1",
        subprotocols=["chat.v0", "echo.v1"],
        additional_headers={"X-Test": "yes"},
    ) as ws:
        # The consumer picked echo.v1; daphne sent it in the handshake.
        assert ws.subprotocol == "echo.v1"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "echo.v1"
        ws.send("scope")
        scope = json.loads(ws.recv(timeout=5))
    assert scope == {
        "type": "websocket",
        "scheme": "ws",
        "path": "/ws/echo/scoped/",
        "query_string": "token=abc&x=1",
        "room": "scoped",
        "subprotocols": ["chat.v0", "echo.v1"],
        "host": f"127.0.0.1:{channels_server.port}",
        "x_test": "yes",
    }


# -- the asyncio AsyncWebsocketConsumer --------------------------------------------


def test_async_consumer_echoes_and_closes_with_code_and_reason(channels_server):
    with open_ws(
        channels_server, "/ws/async-echo/lobby/", subprotocols=["echo.v1"]
    ) as ws:
        assert ws.subprotocol == "echo.v1"
        ws.send("hello")
        assert ws.recv(timeout=5) == "lobby:hello"
        ws.send(b"\xde\xad\xbe\xef")
        assert ws.recv(timeout=5) == b"\xde\xad\xbe\xef"
        ws.send("close")
        expect_server_close(ws, 4001, "bye lobby")
    channels_server.wait_for_line(r"^async-disconnect lobby 4001$")


# -- handshakes that are refused ------------------------------------------------


def test_path_not_in_the_router_is_refused_with_500(channels_server):
    # URLRouter raises ValueError("No route found ...") before the consumer
    # exists: an application error during the handshake, hence a 500.
    assert refused_status(channels_server, "/ws/nowhere/") == 500
    # A known prefix without the <room> part does not match either.
    assert refused_status(channels_server, "/ws/echo/") == 500
    channels_server.wait_for_line(
        r"No route found for path 'ws/nowhere/'", stream="stderr"
    )
    # The server is still fine.
    with open_ws(channels_server, "/ws/echo/after-error/") as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "after-error:still here"


def test_consumer_denying_the_connection_gets_403(channels_server):
    # DenyConnection in connect(): Channels sends websocket.close before
    # websocket.accept, which ASGI says the server turns into a 403.
    assert refused_status(channels_server, "/ws/deny/") == 403
    channels_server.wait_for_line(r'"WSREJECT /ws/deny/"')


def test_origin_validator_refuses_a_foreign_origin(channels_server):
    assert (
        refused_status(
            channels_server, "/ws/guarded/room/", origin="http://evil.example"
        )
        == 403
    )
    # No Origin header at all is refused too by AllowedHostsOriginValidator.
    assert refused_status(channels_server, "/ws/guarded/room/") == 403
    origin = f"http://127.0.0.1:{channels_server.port}"
    with open_ws(channels_server, "/ws/guarded/room/", origin=origin) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "room:hi"


# -- access log and plain HTTP on the same server ---------------------------------


def test_access_log_records_connect_and_disconnect(channels_server):
    with open_ws(channels_server, "/ws/echo/logged/") as ws:
        port = ws.local_address[1]
        ws.send("x")
        assert ws.recv(timeout=5) == "logged:x"
        line = channels_server.wait_for_line(rf'^127\.0\.0\.1:{port} .*"WSCONNECT ')
        assert re.fullmatch(
            rf'127\.0\.0\.1:{port} - - {LOG_DATE} "WSCONNECT /ws/echo/logged/" - -',
            line,
        ), line
    line = channels_server.wait_for_line(rf'^127\.0\.0\.1:{port} .*"WSDISCONNECT ')
    assert re.fullmatch(
        rf'127\.0\.0\.1:{port} - - {LOG_DATE} "WSDISCONNECT /ws/echo/logged/" - -',
        line,
    ), line


def test_plain_http_still_reaches_django(channels_server):
    response = httpx.get(channels_server.url + "/hello/", params={"q": "channels"})
    assert response.status_code == 200
    assert response.json() == {
        "message": "hello from django",
        "method": "GET",
        "path": "/hello/",
        "query": "channels",
        "host": f"127.0.0.1:{channels_server.port}",
    }
    channels_server.wait_for_line(r'"GET /hello/\?q=channels" 200 ')


def test_plain_http_get_of_a_websocket_path_goes_to_django(channels_server):
    # Without an Upgrade, the ProtocolTypeRouter sends it to Django's URLconf,
    # which has no such page.
    response = httpx.get(channels_server.url + "/ws/echo/lobby/")
    assert response.status_code == 404
    assert "The requested resource was not found on this server." in response.text
