"""Channel-layer mode (ASGI v1) over real sockets.

daphne runs in a subprocess on ``tests.layer_apps`` layers, whose worker
threads answer on the reply channels and record every message they get;
``GET /recorded?channel=C&match=M`` returns those messages as ``repr()``
lines, so the checks below see the exact keys, order and types a worker got
(the contract in SEED_BEHAVIOUR.md). Raw sockets are used wherever a client
library would hide or add something (exact request headers, empty frames,
ping handling, held handshakes).
"""

from __future__ import annotations

import ast
import asyncio
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import InvalidStatus

from tests.clients import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    WS_OPTIONS,
    Raw,
    RawWebSocket,
    Response,
    close_code,
    closed_with,
    exchange_until_close,
    open_raw,
    parse_response,
    refused,
    ws_connect,
    ws_url,
)
from tests.conftest import ROOT, run_daphne
from tests.harness import one_response

pytestmark = pytest.mark.timeout(60)

LAYERS = "tests.layer_apps"
APP = f"{LAYERS}:channel_layer"
REPLY_CHANNEL = re.compile(r"daphne\.response\.[A-Za-z]{10}![A-Za-z]{10}")
HTTP_REQUEST_KEYS = [
    "type",
    "reply_channel",
    "http_version",
    "method",
    "path",
    "root_path",
    "scheme",
    "query_string",
    "headers",
    "body",
    "client",
    "server",
]
CONNECT_KEYS = [
    "type",
    "reply_channel",
    "path",
    "headers",
    "query_string",
    "client",
    "server",
    "order",
]
ACCESS = re.compile(
    r"^(?P<client>\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\] "
    r'"(?P<request>[^"]*)" (?P<status>\S+) (?P<size>\S+)$'
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex[:12]


def recorded(server, channel: str, match: str | None = None) -> list[dict]:
    """What the workers got on ``channel`` (the /recorded queries left out)."""
    params = {"channel": channel}
    if match is not None:
        params["match"] = match
    response = httpx.get(f"{server.url}/recorded", params=params, timeout=5)
    assert response.status_code == 200
    messages = [
        ast.literal_eval(line) for line in response.content.decode().splitlines()
    ]
    return [m for m in messages if m.get("path") not in ("/recorded", "/drain")]


def wait_recorded(
    server, channel: str, match: str, count: int = 1, timeout: float = 5
) -> list[dict]:
    """At least ``count`` recorded messages on ``channel`` matching ``match``."""
    deadline = time.monotonic() + timeout
    while True:
        found = recorded(server, channel, match)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def reply_prefix(server) -> str:
    """The process-specific reply channel from the start-up log."""
    line = server.wait_for_line(r"daphne\.response\.", stream="stderr")
    return re.search(r"daphne\.response\.[A-Za-z]{10}!", line).group(0)


def access_lines(lines: list[str], needle: str) -> list[re.Match]:
    return [m for m in map(ACCESS.match, list(lines)) if m and needle in m["request"]]


def wait_access(
    lines: list[str], needle: str, count: int, timeout: float = 5
) -> list[re.Match]:
    deadline = time.monotonic() + timeout
    while len(access_lines(lines, needle)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return access_lines(lines, needle)


def raw_http(server, request: bytes) -> Response:
    """Send ``request`` (which should ask for Connection: close) on a plain
    socket; the complete response."""
    response = exchange_until_close(server.port, request)
    assert response.complete, response
    return response


def connect_message(server, match: str) -> dict:
    found = wait_recorded(server, "websocket.connect", match)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------
# Servers (one per configuration, shared by the module)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def main():
    """The main layer (Twisted reader): root path, proxy headers, subprotocols."""
    with run_daphne(
        "--root-path",
        "/mount",
        "--proxy-headers",
        "--ws-protocol",
        "chat",
        "other",
        "--access-log",
        "-",
        "-t",
        "20",
        app=APP,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def timeouts():
    with run_daphne(
        "-t",
        "1",
        "--websocket_connect_timeout",
        "1",
        "--websocket_timeout",
        "2",
        "--access-log",
        "-",
        app=APP,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def keepalive():
    """Pings after 1 idle second, dropped 1 s later; handshakes never time out."""
    with run_daphne(
        "--websocket_connect_timeout",
        "-1",
        "--ping-interval",
        "1",
        "--ping-timeout",
        "1",
        "--access-log",
        "-",
        app=APP,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def short_expiry():
    """No --websocket_timeout: the layer's group_expiry (2 s) applies."""
    with run_daphne(app=f"{LAYERS}:short_expiry_layer") as server:
        yield server


@pytest.fixture(scope="module")
def polling():
    with run_daphne("--force-sync", "--access-log", "-", app=APP) as server:
        yield server


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """``full_layer``: http.request and websocket.connect hold one message
    each and nobody takes them. The access log goes to a file (the workers
    write the disconnects they get on stdout)."""
    log = tmp_path_factory.mktemp("full") / "access.log"
    with run_daphne("--access-log", str(log), app=f"{LAYERS}:full_layer") as server:
        server.access_log = log
        yield server


@pytest.fixture(scope="module")
def full_receive():
    with run_daphne("--access-log", "-", app=f"{LAYERS}:full_receive_layer") as server:
        yield server


@pytest.fixture(scope="module")
def flaky(tmp_path_factory):
    flags = tmp_path_factory.mktemp("flaky")
    with run_daphne(
        "-t",
        "10",
        "--access-log",
        "-",
        app=f"{LAYERS}:flaky_layer",
        env={"FLAKY_DIR": str(flags)},
    ) as server:
        server.flags = flags
        yield server


# --------------------------------------------------------------------------
# 1. Message shapes
# --------------------------------------------------------------------------


def test_http_request_message(main):
    ident = uid()
    request = (
        f"GET /any/p%20ath/%C3%A9?id={ident}&q=%20a+b HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "X-Custom: Value\r\n"
        "X_Evil: 1\r\n"
        "Cookie: a=1\r\n"
        "Cookie: b=2\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with Raw(main.port) as conn:
        local_port = conn.local_port
        conn.send(request)
        response = parse_response(conn.read_until_close())
    assert (response.status, response.body) == (200, b"any")

    [message] = recorded(main, "http.request", ident)
    assert list(message) == HTTP_REQUEST_KEYS
    channel = message["reply_channel"]
    assert REPLY_CHANNEL.fullmatch(channel)
    assert channel.startswith(reply_prefix(main))
    assert message == {
        "type": "http.request",
        "reply_channel": channel,
        "http_version": "1.1",
        "method": "GET",
        "path": "/any/p ath/\xe9",
        "root_path": "/mount",
        "scheme": "http",
        "query_string": f"id={ident}&q=%20a+b".encode(),
        "headers": [
            (b"host", b"example.com"),
            (b"x-custom", b"Value"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"connection", b"close"),
        ],
        "body": b"",
        "client": ["127.0.0.1", local_port],
        "server": ["127.0.0.1", main.port],
    }
    assert all(type(header) is tuple for header in message["headers"])

    assert wait_recorded(main, "http.disconnect", channel) == [
        {"type": "http.disconnect", "reply_channel": channel, "path": "/any/p ath/\xe9"}
    ]


def test_http_request_version_10_and_root_path_header(main):
    ident = uid()
    response = raw_http(main, f"GET /query?id={ident} HTTP/1.0\r\n\r\n".encode())
    assert (response.status, response.body) == (200, f"id={ident}".encode())
    [message] = recorded(main, "http.request", ident)
    assert message["http_version"] == "1.0"
    assert message["headers"] == []
    assert message["root_path"] == "/mount"

    ident = uid()
    response = raw_http(
        main,
        f"GET /query?id={ident} HTTP/1.1\r\nHost: h\r\n"
        "Daphne-Root-Path: /other%20root\r\nConnection: close\r\n\r\n".encode(),
    )
    assert response.status == 200
    [message] = recorded(main, "http.request", ident)
    assert message["root_path"] == "/other root"
    assert message["headers"] == [(b"host", b"h"), (b"connection", b"close")]


def test_http_request_bodies(main):
    ident = uid()
    payload = bytes(range(256)) * 3
    response = httpx.post(f"{main.url}/echo?id={ident}", content=payload, timeout=5)
    assert (response.status_code, response.content) == (200, payload)
    [message] = recorded(main, "http.request", ident)
    assert message["method"] == "POST"
    assert message["body"] == payload
    assert (b"content-length", b"768") in message["headers"]

    # Chunked: the worker gets the whole body, de-chunked, in one message.
    ident = uid()
    response = raw_http(
        main,
        f"POST /echo?id={ident} HTTP/1.1\r\nHost: h\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".encode(),
    )
    assert (response.status, response.body) == (200, b"hello world")
    [message] = recorded(main, "http.request", ident)
    assert message["body"] == b"hello world"
    assert (b"transfer-encoding", b"chunked") in message["headers"]

    # Large: no body_channel, no chunking.
    ident = uid()
    big = b"0123456789abcdef" * 65536  # 1 MiB
    response = httpx.put(f"{main.url}/echo?id={ident}", content=big, timeout=10)
    assert response.status_code == 200
    assert response.content == big
    [message] = recorded(main, "http.request", ident)
    assert sorted(message) == sorted(HTTP_REQUEST_KEYS)
    assert type(message["body"]) is bytes and message["body"] == big


def test_http_disconnect_after_every_request(main):
    ident = uid()
    with httpx.Client(base_url=main.url, timeout=5) as client:  # one keep-alive
        for n in range(4):
            assert client.get(f"/query?id={ident}&n={n}").status_code == 200
        assert client.post(f"/echo?id={ident}", content=b"x").content == b"x"
    requests = recorded(main, "http.request", ident)
    assert len(requests) == 5
    for message in requests:
        channel = message["reply_channel"]
        assert wait_recorded(main, "http.disconnect", channel) == [
            {
                "type": "http.disconnect",
                "reply_channel": channel,
                "path": message["path"],
            }
        ]
    assert len({m["reply_channel"] for m in requests}) == 5

    # A client that gives up before any reply: the worker hears of it too.
    ident = uid()
    with socket.create_connection(("127.0.0.1", main.port), timeout=5) as s:
        s.sendall(f"GET /no-reply?id={ident} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        channel = wait_recorded(main, "http.request", ident)[0]["reply_channel"]
    assert wait_recorded(main, "http.disconnect", channel) == [
        {"type": "http.disconnect", "reply_channel": channel, "path": "/no-reply"}
    ]


def test_websocket_message_shapes(main):
    ident = uid()
    raw = open_raw(
        main,
        f"/ws/%C3%A9/x?id={ident}&b=%20",
        b"X-Custom: Value\r\nX_Evil: 1\r\n",
    )
    message = connect_message(main, ident)
    assert list(message) == CONNECT_KEYS
    channel = message["reply_channel"]
    assert REPLY_CHANNEL.fullmatch(channel)
    assert message == {
        "type": "websocket.connect",
        "reply_channel": channel,
        "path": "/ws/\xe9/x",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", raw.key),
            (b"sec-websocket-version", b"13"),
            (b"x-custom", b"Value"),
        ],
        "query_string": f"id={ident}&b=%20".encode(),
        "client": ["127.0.0.1", raw.local_port],
        "server": ["127.0.0.1", main.port],
        "order": 0,
    }
    assert all(type(header) is tuple for header in message["headers"])

    frames = [
        (OP_TEXT, b"hello"),
        (OP_BINARY, b"\x00\xff"),
        (OP_TEXT, b""),
        (OP_BINARY, b""),
    ]
    for opcode, payload in frames:
        raw.send_frame(opcode, payload)
        assert raw.read_frame() == (True, opcode, payload)  # (echoed)
    raw.send_frame(OP_CLOSE, struct.pack("!H", 4001))
    _, opcode, payload = raw.read_frame()
    assert (opcode, close_code(payload)) == (OP_CLOSE, 4001)
    raw.close()

    base = {"reply_channel": channel, "path": "/ws/\xe9/x"}
    receives = wait_recorded(main, "websocket.receive", channel, count=4)
    received = {"type": "websocket.receive", **base}
    assert receives == [
        {**received, "order": 1, "text": "hello"},
        {**received, "order": 2, "bytes": b"\x00\xff"},
        {**received, "order": 3, "text": ""},
        {**received, "order": 4, "bytes": b""},
    ]
    assert [list(m) for m in receives] == [
        ["type", "reply_channel", "path", "order", "text"],
        ["type", "reply_channel", "path", "order", "bytes"],
    ] * 2
    disconnects = wait_recorded(main, "websocket.disconnect", channel)
    assert disconnects == [
        {"type": "websocket.disconnect", **base, "code": 4001, "order": 5}
    ]
    assert list(disconnects[0]) == ["type", "reply_channel", "code", "path", "order"]
    # (The upgrade request itself is no http.request.)
    assert recorded(main, "http.request", ident) == []
    assert recorded(main, "http.disconnect", "/ws/\xe9/x") == []


def test_websocket_connect_keeps_root_path_header(main):
    ident = uid()
    raw = open_raw(main, f"/ws/{ident}", b"Daphne-Root-Path: /sub%20dir\r\n")
    raw.close()
    headers = connect_message(main, ident)["headers"]
    assert (b"daphne-root-path", b"/sub%20dir") in headers


def test_websocket_disconnect_codes(main):
    ident = uid()
    with ws_connect(main, f"/ws/{ident}") as ws:
        ws.send("one")
        assert ws.recv(timeout=5) == "one"
    channel = connect_message(main, ident)["reply_channel"]
    assert wait_recorded(main, "websocket.disconnect", channel) == [
        {
            "type": "websocket.disconnect",
            "reply_channel": channel,
            "code": 1000,
            "path": f"/ws/{ident}",
            "order": 2,
        }
    ]

    # A reject ends abnormally: 1006, and order 1 (no frames).
    ident = uid()
    assert refused(main, f"/reject/{ident}").status == 403
    channel = connect_message(main, ident)["reply_channel"]
    assert wait_recorded(main, "websocket.disconnect", channel) == [
        {
            "type": "websocket.disconnect",
            "reply_channel": channel,
            "code": 1006,
            "path": f"/reject/{ident}",
            "order": 1,
        }
    ]

    # A client that just drops the TCP connection: 1006.
    ident = uid()
    raw = open_raw(main, f"/ws/{ident}")
    raw.send_frame(OP_TEXT, b"x")
    assert raw.read_frame() == (True, OP_TEXT, b"x")
    raw.close()
    channel = connect_message(main, ident)["reply_channel"]
    assert wait_recorded(main, "websocket.disconnect", channel) == [
        {
            "type": "websocket.disconnect",
            "reply_channel": channel,
            "code": 1006,
            "path": f"/ws/{ident}",
            "order": 2,
        }
    ]


# --------------------------------------------------------------------------
# 2. Replies
# --------------------------------------------------------------------------


def test_http_reply_headers_and_streaming(main):
    response = httpx.get(f"{main.url}/headers", timeout=5)
    assert response.status_code == 202
    assert response.headers["x-text-name"] == "a"
    assert response.headers["x-bytes-name"] == "b"
    assert response.content == b""

    response = raw_http(
        main, b"GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert (response.status, response.body) == (201, b"one,two,three")
    assert response.all("transfer-encoding") == ["chunked"]

    # HTTP/1.0: no chunking, the body ends with the connection.
    response = raw_http(main, b"GET /stream HTTP/1.0\r\n\r\n")
    assert (response.status, response.body) == (201, b"one,two,three")
    assert response.header("transfer-encoding") is None

    response = httpx.get(f"{main.url}/", timeout=5)
    assert (response.status_code, response.content) == (200, b"Hello, world!")
    assert response.headers["content-type"] == "text/plain"

    ident = uid()
    response = raw_http(
        main,
        f"HEAD /query?id={ident} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode(),
    )
    assert (response.status, response.body) == (200, b"")
    assert recorded(main, "http.request", ident)[0]["method"] == "HEAD"
    [line] = wait_access(main.stdout, f"/query?id={ident}", 1)
    assert (line["request"], line["status"], line["size"]) == (
        f"HEAD /query?id={ident}",
        "200",
        "-",
    )


def test_http_reply_without_status_is_500(main):
    started = time.monotonic()
    response = httpx.get(f"{main.url}/no-status", timeout=5)
    assert response.status_code == 500
    assert time.monotonic() - started < 2
    main.wait_for_line(
        r"ERROR .*Invalid reply on daphne\.response\.\S+: "
        "The first reply to a request must have a status",
        stream="stderr",
    )


def test_http_second_status_cuts_the_response(main):
    started = time.monotonic()
    # (The server closes: no hang.)
    response = exchange_until_close(
        main.port, b"GET /second-status HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert time.monotonic() - started < 3
    assert (response.status, response.body, response.complete) == (200, b"a", False)
    main.wait_for_line(
        r"Invalid reply on \S+: A status in a later reply", stream="stderr"
    )


def test_websocket_accept_and_implicit_accept(main):
    with ws_connect(main, f"/ws/{uid()}") as ws:
        ws.send("ping?")
        assert ws.recv(timeout=5) == "ping?"
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=5) == b"\x01\x02"
    with ws_connect(main, f"/implicit/{uid()}") as ws:
        assert ws.recv(timeout=5) == "hello"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/reject", 403), ("/close-first", 403), ("/bad-reply", 500)],
)
def test_websocket_refused_handshakes(main, path, status):
    assert refused(main, f"{path}/{uid()}").status == status
    with pytest.raises(InvalidStatus) as info:
        ws_connect(main, f"{path}/{uid()}")
    assert info.value.response.status_code == status


@pytest.mark.parametrize(("text", "code"), [("close", 1000), ("close 4321", 4321)])
def test_websocket_close_replies(main, text, code):
    with ws_connect(main, f"/ws/{uid()}") as ws:
        ws.send(text)
        assert closed_with(ws).rcvd.code == code


def test_websocket_reply_parts_are_applied_in_order(main):
    # accept + close in one reply: the socket opens, then closes with 1000.
    with ws_connect(main, f"/accept-close/{uid()}") as ws:
        assert closed_with(ws).rcvd.code == 1000
    # text + close: the frame first, then the close code.
    with ws_connect(main, f"/ws/{uid()}") as ws:
        ws.send("bye")
        assert ws.recv(timeout=5) == "bye"
        assert closed_with(ws).rcvd.code == 4000


def test_websocket_empty_frames_are_sent(main):
    raw = open_raw(main, f"/ws/{uid()}")
    raw.send_frame(OP_TEXT, b"empty")
    assert raw.read_frame() == (True, OP_TEXT, b"")
    assert raw.read_frame() == (True, OP_BINARY, b"")
    raw.close()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("both", "A WebSocket reply may carry text or bytes, not both"),
        ("unknown", r"Unknown keys in a WebSocket reply: \['colour'\]"),
    ],
)
def test_websocket_invalid_replies_close_1011(main, text, error):
    with ws_connect(main, f"/ws/{uid()}") as ws:
        ws.send(text)
        closed = closed_with(ws)
    assert closed.rcvd.code == 1011
    main.wait_for_line(rf"ERROR .*Invalid reply on \S+: {error}", stream="stderr")


# --------------------------------------------------------------------------
# 3. ChannelFull
# --------------------------------------------------------------------------


def hold(server, data: bytes) -> socket.socket:
    """A connection that sent ``data`` and got no answer within 0.3 s."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=0.3)
    s.sendall(data)
    with pytest.raises(TimeoutError):
        s.recv(1)
    return s


def test_full_http_request_is_503(full):
    # The first request fills http.request (nobody takes it).
    held = hold(full, b"GET /held HTTP/1.1\r\nHost: h\r\n\r\n")
    try:
        ident = uid()
        started = time.monotonic()
        response = httpx.get(f"{full.url}/second?id={ident}", timeout=5)
        assert time.monotonic() - started < 1
        assert response.status_code == 503
        assert "Request queue full." in response.text
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        full.wait_for_line(
            "WARNING .*Channel http.request is full: answered 503", stream="stderr"
        )
        deadline = time.monotonic() + 5
        while f'"GET /second?id={ident}" 503 ' not in full.access_log.read_text():
            assert time.monotonic() < deadline, full.access_log.read_text()
            time.sleep(0.05)
    finally:
        held.close()


def test_full_websocket_connect_is_503_without_disconnect(full):
    ident = uid()
    held = RawWebSocket(full.port, timeout=0.3)
    held.send(held.request(f"/held/{ident}"))
    with pytest.raises(TimeoutError):
        held.sock.recv(1)  # (pending: its websocket.connect fills the channel)

    response = refused(full, f"/refused/{ident}")
    assert response.status == 503
    assert b"Connection queue at capacity." in response.body
    full.wait_for_line(
        "WARNING .*Channel websocket.connect is full: WebSocket handshake refused",
        stream="stderr",
    )

    # The held socket's disconnect reaches the workers; the refused one's never.
    held.close()
    full.wait_for_line(rf"^MESSAGE websocket.disconnect .*'/held/{ident}'")
    time.sleep(0.2)
    lines = [line for line in list(full.stdout) if line.startswith("MESSAGE ")]
    assert not [line for line in lines if f"/refused/{ident}" in line]
    [line] = [line for line in lines if f"/held/{ident}" in line]
    message = ast.literal_eval(line.split(" ", 2)[2])
    assert (message["code"], message["order"]) == (1006, 1)

    log = full.access_log.read_text().splitlines()
    assert [m["request"] for m in access_lines(log, f" /refused/{ident}")] == [
        f"{verb} /refused/{ident}"
        for verb in ("WSCONNECTING", "WSREJECT", "WSDISCONNECT")
    ]


def test_full_websocket_receive_closes_1013(full_receive):
    httpx.get(f"{full_receive.url}/drain?channel=websocket.receive", timeout=5)
    ident = uid()
    raw = open_raw(full_receive, f"/ws/{ident}")
    channel = connect_message(full_receive, ident)["reply_channel"]
    raw.send_frame(OP_TEXT, b"first")  # fills websocket.receive
    time.sleep(0.2)
    raw.send_frame(OP_TEXT, b"second")  # refused
    _, opcode, payload = raw.read_frame()
    assert (opcode, close_code(payload)) == (OP_CLOSE, 1013)
    full_receive.wait_for_line(
        "WARNING .*Channel websocket.receive is full: WebSocket closed \\(1013\\)",
        stream="stderr",
    )
    queued = httpx.get(
        f"{full_receive.url}/drain?channel=websocket.receive", timeout=5
    ).content.decode()
    assert [ast.literal_eval(line) for line in queued.splitlines()] == [
        {
            "type": "websocket.receive",
            "reply_channel": channel,
            "path": f"/ws/{ident}",
            "order": 1,
            "text": "first",
        }
    ]
    # Nothing more is sent for the muted socket: later frames, its disconnect.
    raw.send_frame(OP_TEXT, b"third")
    raw.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    raw.close()

    # (A later socket's disconnect shows the workers are listening.)
    other = uid()
    with ws_connect(full_receive, f"/ws/{other}"):
        pass
    wait_recorded(full_receive, "websocket.disconnect", other)
    time.sleep(0.1)
    assert recorded(full_receive, "websocket.disconnect", channel) == []
    queued = httpx.get(f"{full_receive.url}/drain?channel=websocket.receive", timeout=5)
    assert queued.content == b""
    lines = wait_access(full_receive.stdout, f" /ws/{ident}", 3)
    assert [m["request"] for m in lines] == [
        f"{verb} /ws/{ident}" for verb in ("WSCONNECTING", "WSCONNECT", "WSDISCONNECT")
    ]


# --------------------------------------------------------------------------
# 4. Timeouts
# --------------------------------------------------------------------------


def test_http_timeout_503(timeouts):
    ident = uid()
    started = time.monotonic()
    response = httpx.get(f"{timeouts.url}/no-reply?id={ident}", timeout=10)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert 0.9 < elapsed < 2.5
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    [line] = wait_access(timeouts.stdout, f"/no-reply?id={ident}", 1)
    assert (line["status"], line["size"]) == ("503", str(len(response.content)))
    channel = recorded(timeouts, "http.request", ident)[0]["reply_channel"]
    assert wait_recorded(timeouts, "http.disconnect", channel) == [
        {"type": "http.disconnect", "reply_channel": channel, "path": "/no-reply"}
    ]


def test_http_timeout_page_explains(timeouts):
    response = httpx.get(f"{timeouts.url}/no-reply?id={uid()}", timeout=10)
    assert response.status_code == 503
    assert "The server did not respond within the time limit." in response.text


def test_timeout_mid_stream_does_not_stop_later_timeouts(timeouts):
    started = time.monotonic()
    response = exchange_until_close(
        timeouts.port, b"GET /stream-then-stall HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert 0.9 < time.monotonic() - started < 2.5
    assert (response.status, response.body, response.complete) == (
        200,
        b"start",
        False,
    )

    for _ in range(2):
        started = time.monotonic()
        response = httpx.get(f"{timeouts.url}/no-reply", timeout=10)
        assert response.status_code == 503
        assert 0.9 < time.monotonic() - started < 2.5


def test_websocket_connect_timeout_403(timeouts):
    ident = uid()
    started = time.monotonic()
    assert refused(timeouts, f"/no-accept/{ident}").status == 403
    assert 0.9 < time.monotonic() - started < 2.5
    lines = wait_access(timeouts.stdout, f"/no-accept/{ident}", 3)
    assert [line["request"].split()[0] for line in lines] == [
        "WSCONNECTING",
        "WSREJECT",
        "WSDISCONNECT",
    ]
    channel = connect_message(timeouts, ident)["reply_channel"]
    assert wait_recorded(timeouts, "websocket.disconnect", channel) == [
        {
            "type": "websocket.disconnect",
            "reply_channel": channel,
            "code": 1006,
            "path": f"/no-accept/{ident}",
            "order": 1,
        }
    ]


@pytest.mark.parametrize(
    "server_fixture",
    [
        "timeouts",  # --websocket_timeout 2
        "short_expiry",  # no option: the layer's group_expiry (2 s)
    ],
)
def test_websocket_timeout_closes_1000(request, server_fixture):
    server = request.getfixturevalue(server_fixture)
    started = time.monotonic()
    with ws_connect(server, f"/ws/{uid()}") as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
        closed = closed_with(ws)
    assert closed.rcvd.code == 1000
    assert 1.9 < time.monotonic() - started < 3.5


def test_websocket_connect_timeout_minus_one_is_never(keepalive):
    ident = uid()
    raw = RawWebSocket(keepalive.port, timeout=2.2)
    raw.send(raw.request(f"/no-accept/{ident}"))
    try:
        with pytest.raises(TimeoutError):
            raw.sock.recv(1)  # still pending after 2 s
        channel = connect_message(keepalive, ident)["reply_channel"]
        assert recorded(keepalive, "websocket.disconnect", channel) == []
    finally:
        raw.close()


def test_ping_timeout_drops_a_silent_client(keepalive):
    # A client that answers pings (websockets does) stays connected meanwhile.
    with ws_connect(keepalive, f"/ws/{uid()}") as answering:
        ident = uid()
        raw = open_raw(keepalive, f"/ws/{ident}")
        started = time.monotonic()
        assert raw.read_frame()[1] == OP_PING
        assert 0.8 < time.monotonic() - started < 2
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                raw.read_frame()  # (never answered)
        assert 1.8 < time.monotonic() - started < 3.5
        raw.close()
        channel = connect_message(keepalive, ident)["reply_channel"]
        assert wait_recorded(keepalive, "websocket.disconnect", channel) == [
            {
                "type": "websocket.disconnect",
                "reply_channel": channel,
                "code": 1006,
                "path": f"/ws/{ident}",
                "order": 1,
            }
        ]
        answering.send("alive")
        assert answering.recv(timeout=5) == "alive"


# --------------------------------------------------------------------------
# 5. Many concurrent connections
# --------------------------------------------------------------------------


def test_replies_reach_the_right_connection(main):
    ident = uid()

    async def http_one(client: httpx.AsyncClient, n: int) -> tuple[int, bytes]:
        response = await client.get(f"/query?n={n}&id={ident}")
        return response.status_code, response.content

    async def ws_one(n: int) -> list:
        async with async_connect(ws_url(main, f"/ws/{ident}-{n}"), **WS_OPTIONS) as ws:
            got = []
            for k in range(3):
                await ws.send(f"{n}-{k}-{ident}")
                got.append(await ws.recv())
            await ws.send(f"{n}-bytes".encode())
            got.append(await ws.recv())
            return got

    async def run() -> tuple[list, list]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=main.url, limits=limits, timeout=20
        ) as client:
            results = await asyncio.gather(
                asyncio.gather(*(http_one(client, n) for n in range(200))),
                asyncio.gather(*(ws_one(n) for n in range(100))),
            )
        return results[0], results[1]

    http_results, ws_results = asyncio.run(run())
    assert http_results == [(200, f"n={n}&id={ident}".encode()) for n in range(200)]
    assert ws_results == [
        [f"{n}-{k}-{ident}" for k in range(3)] + [f"{n}-bytes".encode()]
        for n in range(100)
    ]
    requests = recorded(main, "http.request", ident)
    assert len({m["reply_channel"] for m in requests}) == 200
    channels = {m["reply_channel"] for m in recorded(main, "websocket.connect", ident)}
    assert len(channels) == 100


# --------------------------------------------------------------------------
# 6. A layer that fails for a while
# --------------------------------------------------------------------------


def test_layer_send_failure_and_recovery(flaky):
    flag = flaky.flags / "send"
    with ws_connect(flaky, f"/ws/{uid()}") as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        flag.touch()
        try:
            response = httpx.get(f"{flaky.url}/", timeout=5)
            assert response.status_code == 503
            assert "The channel layer is unavailable." in response.text
            flaky.wait_for_line(
                r"ERROR .*Could not send to channel http.request "
                r"\(ConnectionError: backend gone \(send\)\): answered 503",
                stream="stderr",
            )
            assert refused(flaky, f"/ws/{uid()}").status == 503
            ws.send("during")
            assert closed_with(ws).rcvd.code == 1011
        finally:
            flag.unlink()
    response = httpx.get(f"{flaky.url}/", timeout=5)
    assert (response.status_code, response.content) == (200, b"Hello, world!")
    with ws_connect(flaky, f"/ws/{uid()}") as ws:
        ws.send("after")
        assert ws.recv(timeout=5) == "after"


def test_layer_receive_failure_and_recovery(flaky):
    flag = flaky.flags / "receive"
    flag.touch()
    result: list = []
    try:
        thread = threading.Thread(
            target=lambda: result.append(httpx.get(f"{flaky.url}/", timeout=15))
        )
        thread.start()
        flaky.wait_for_line(
            r"ERROR .*Error receiving from the channel layer: "
            r"ConnectionError: backend gone \(receive\) \(retrying\)",
            stream="stderr",
        )
        time.sleep(0.5)
        assert not result  # waiting for its reply
    finally:
        flag.unlink()
    removed = time.monotonic()
    thread.join(10)
    assert time.monotonic() - removed < 3
    assert [(r.status_code, r.content) for r in result] == [(200, b"Hello, world!")]
    flaky.wait_for_line("INFO .*Receiving from the channel layer again", "stderr")


# --------------------------------------------------------------------------
# 7. Readers and --interface
# --------------------------------------------------------------------------


def test_start_up_log_twisted_reader(main):
    main.wait_for_line(
        r"INFO +Starting server at tcp:0:interface=127\.0\.0\.1, "
        rf"channel layer \(ASGI v1\) {APP}$",
        stream="stderr",
    )
    main.wait_for_line(
        r"Receiving replies on daphne\.response\.[A-Za-z]{10}! through the "
        "channel layer's Twisted extension",
        stream="stderr",
    )
    assert not [line for line in main.stderr if "Polling" in line]


def test_force_sync_polls_and_works(polling):
    polling.wait_for_line(
        r"INFO +Polling the channel layer for replies on daphne\.response\.",
        stream="stderr",
    )
    assert not [line for line in polling.stderr if "Twisted extension" in line]
    ident = uid()
    response = httpx.get(f"{polling.url}/query?id={ident}", timeout=5)
    assert (response.status_code, response.content) == (200, f"id={ident}".encode())
    assert httpx.get(f"{polling.url}/stream", timeout=5).content == b"one,two,three"
    with ws_connect(polling, f"/ws/{ident}") as ws:
        for n in range(5):
            ws.send(f"m{n}")
            assert ws.recv(timeout=5) == f"m{n}"
    channel = recorded(polling, "http.request", ident)[0]["reply_channel"]
    assert REPLY_CHANNEL.fullmatch(channel)


@pytest.mark.parametrize(
    ("interface", "target", "error"),
    [
        (
            "asgi3",
            APP,
            "daphne: error: InMemoryChannelLayer object is not an ASGI "
            "application (it is not callable)",
        ),
        (
            "channel-layer",
            "tests.apps:application",
            "daphne: error: function object is not a channel layer "
            "(it needs send, receive and new_channel methods)",
        ),
    ],
)
def test_interface_mismatch_is_a_one_line_error(interface, target, error):
    result = subprocess.run(
        [sys.executable, "-m", "daphne", "--interface", interface, target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [error]


# --------------------------------------------------------------------------
# 8. Subprotocols
# --------------------------------------------------------------------------


def test_subprotocol_selection(main):
    with ws_connect(main, f"/ws/{uid()}", subprotocols=["superchat", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    ident = uid()
    with RawWebSocket(main.port) as raw:
        response = raw.handshake(
            f"/ws/{ident}", b"Sec-WebSocket-Protocol: superchat, chat\r\n"
        )
    assert response.status == 101
    assert response.all("sec-websocket-protocol") == ["chat"]
    assert (b"sec-websocket-protocol", b"superchat, chat") in connect_message(
        main, ident
    )["headers"]

    # The first one the client offers, not the server's first.
    with ws_connect(main, f"/ws/{uid()}", subprotocols=["other", "chat"]) as ws:
        assert ws.subprotocol == "other"

    with ws_connect(main, f"/ws/{uid()}", subprotocols=["x", "y"]) as ws:
        assert ws.subprotocol is None
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"


# --------------------------------------------------------------------------
# 9. Access log
# --------------------------------------------------------------------------


def test_access_log(main):
    ident = uid()
    response = httpx.get(f"{main.url}/query?id={ident}", timeout=5)
    [line] = wait_access(main.stdout, f"/query?id={ident}", 1)
    assert line["request"] == f"GET /query?id={ident}"
    assert (line["status"], line["size"]) == ("200", str(len(response.content)))
    assert line["client"].startswith("127.0.0.1:")

    with ws_connect(main, f"/log/{ident}") as ws:
        port = ws.local_address[1]
        ws.send("x")
        ws.recv(timeout=5)
    lines = wait_access(main.stdout, f" /log/{ident}", 3)
    assert [(m["client"], m["request"], m["status"], m["size"]) for m in lines] == [
        (f"127.0.0.1:{port}", f"{verb} /log/{ident}", "-", "-")
        for verb in ("WSCONNECTING", "WSCONNECT", "WSDISCONNECT")
    ]

    assert refused(main, f"/reject/{ident}").status == 403
    lines = wait_access(main.stdout, f" /reject/{ident}", 3)
    assert [m["request"] for m in lines] == [
        f"{verb} /reject/{ident}"
        for verb in ("WSCONNECTING", "WSREJECT", "WSDISCONNECT")
    ]


# --------------------------------------------------------------------------
# 10. Proxy headers
# --------------------------------------------------------------------------


def test_proxy_headers(main):
    ident = uid()
    response = httpx.get(
        f"{main.url}/query?id={ident}",
        headers={
            "X-Forwarded-For": "10.0.0.1, 10.0.0.2",
            "X-Forwarded-Port": "8080",
            "X-Forwarded-Proto": "https",
        },
        timeout=5,
    )
    assert response.status_code == 200
    [message] = recorded(main, "http.request", ident)
    # The rightmost entry that is not a trusted proxy (127.0.0.1 is the peer).
    assert message["client"] == ["10.0.0.2", 8080]
    assert message["scheme"] == "https"
    assert (b"x-forwarded-for", b"10.0.0.1, 10.0.0.2") in message["headers"]
    [line] = wait_access(main.stdout, f"/query?id={ident}", 1)
    assert line["client"] == "10.0.0.2:8080"

    ident = uid()
    headers = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Port": "81"}
    with ws_connect(main, f"/ws/{ident}", additional_headers=headers) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    message = connect_message(main, ident)
    assert message["client"] == ["10.9.9.9", 81]
    assert list(message) == CONNECT_KEYS  # (no scheme, no root_path)


# -- SIGTERM with a request awaiting its reply ------------------------------------


def raw_get(port: int, path: str, result: list) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        result.append(data)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("extra", [(), ("--force-sync",)], ids=["twisted", "poll"])
def test_sigterm_waits_for_replies_awaited(extra):
    with run_daphne(*extra, app="tests.layer_apps:channel_layer") as server:
        result: list[bytes] = []
        client = threading.Thread(
            target=raw_get, args=(server.port, "/slow?s=0.8", result)
        )
        client.start()
        time.sleep(0.3)
        code = server.stop()
        client.join(10)
    assert code == 0
    (data,) = result
    response = one_response(data)
    assert (response.status, response.body) == (200, b"slow")
    assert response.header(b"connection") == b"close"
