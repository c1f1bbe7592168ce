"""WebSocket over real sockets: a daphne subprocess serving ``tests.ws_apps``.

Ordinary traffic goes through the ``websockets`` client; anything where a
library would hide what the server did (the exact HTTP answer to a refused
handshake, a client that never answers pings, an abrupt TCP close, a forbidden
byte in a header) uses :class:`RawWebSocket`, a minimal client on a plain
socket. The applications print what they received on stdout (``EVENT`` and
``AFTER`` lines, see ``tests/ws_apps.py``), and the tests read it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import signal
import socket
import struct
import threading
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.clients import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WS_OPTIONS,
    Raw,
    RawWebSocket,
    accept_value,
    close_code,
    closed_with,
    open_raw,
    refused,
    ws_connect,
    ws_url,
)
from tests.conftest import run_daphne, run_tls_daphne

pytestmark = pytest.mark.timeout(60)

APP = "tests.ws_apps:application"
MiB = 1024 * 1024

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reports(server, kind: str, ident: str) -> list[dict]:
    """The ``kind`` lines ("EVENT" or "AFTER") printed for connection ``ident``."""
    found = []
    for line in list(server.stdout):
        if line.startswith(kind + " "):
            record = json.loads(line[len(kind) + 1 :])
            if record["id"] == ident:
                found.append(record)
    return found


def wait_report(server, kind: str, ident: str, timeout: float = 5) -> dict:
    server.wait_for_line(rf'^{kind} .*"id": "{ident}"', timeout=timeout)
    return reports(server, kind, ident)[0]


def http_get(server, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_server():
    """Default limits and timers, except a 1 s connect timeout; access log on."""
    with run_daphne(
        "--access-log", "-", "--websocket_connect_timeout", "1", app=APP
    ) as server:
        yield server


@pytest.fixture(scope="module")
def proxy_server():
    """Proxy headers and a root path; also short HTTP timers and a 10-byte
    request body limit, none of which may apply to an accepted WebSocket."""
    with run_daphne(
        "--access-log",
        "/dev/null",
        "--proxy-headers",
        "--root-path",
        "/prefix",
        "--keep-alive-timeout",
        "0.5",
        "--request-head-timeout",
        "0.5",
        "--http-timeout",
        "0.5",
        "--max-request-body-size",
        "10",
        app=APP,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def ping_server():
    with run_daphne(
        "--access-log",
        "/dev/null",
        "--ping-interval",
        "1",
        "--ping-timeout",
        "1",
        app=APP,
    ) as server:
        yield server


# --------------------------------------------------------------------------
# 1. Scope
# --------------------------------------------------------------------------


def read_scope(server, path: str, **options) -> tuple[dict, dict, int]:
    """Connect to a /scope route; (scope, extra info, client port)."""
    with ws_connect(server, path, **options) as ws:
        payload = json.loads(ws.recv(timeout=5))
        port = ws.local_address[1]
    return payload["scope"], payload, port


def test_scope_fields(ws_server):
    scope, payload, port = read_scope(
        ws_server,
        "/scope/a%20b/%E2%9C%93?x=1&y=%20",
        subprotocols=["a", "b"],
        additional_headers=[("X-Custom", "Value"), ("X_Evil", "1")],
    )
    assert payload["connect"] == {"type": "websocket.connect"}
    assert scope["type"] == "websocket"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope/a b/\u2713"
    assert scope["raw_path"] == "/scope/a%20b/%E2%9C%93"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["client"] == ["127.0.0.1", port]
    assert scope["server"] == ["127.0.0.1", ws_server.port]
    assert scope["subprotocols"] == ["a", "b"]
    assert "websocket.http.response" in scope["extensions"]
    assert payload["types"]["raw_path"] == "bytes"
    assert payload["types"]["query_string"] == "bytes"
    assert payload["types"]["headers"] == ["bytes"]
    headers = scope["headers"]
    names = [name for name, _ in headers]
    assert all(name == name.lower() for name in names), names
    assert ["x-custom", "Value"] in headers
    assert ["host", f"127.0.0.1:{ws_server.port}"] in headers
    assert ["upgrade", "websocket"] in headers
    assert ["sec-websocket-protocol", "a, b"] in headers
    assert "x_evil" not in names
    assert "x-evil" not in names


def test_scope_raw_path_and_query_as_sent(ws_server):
    raw = open_raw(ws_server, "/scope/%7Euser/x%2Fy/%C3%A9?q=%41&r=a+b&id=rawpath")
    try:
        fin, opcode, data = raw.read_frame()
    finally:
        raw.close()
    assert (fin, opcode) == (True, OP_TEXT)
    scope = json.loads(data)["scope"]
    assert scope["path"] == "/scope/~user/x/y/\u00e9"
    assert scope["raw_path"] == "/scope/%7Euser/x%2Fy/%C3%A9"
    assert scope["query_string"] == "q=%41&r=a+b&id=rawpath"
    assert scope["subprotocols"] == []


def test_scope_root_path_from_option(proxy_server):
    scope, _, port = read_scope(proxy_server, "/scope")
    assert scope["root_path"] == "/prefix"
    assert scope["path"] == "/scope"
    # No X-Forwarded-For: the real peer and scheme stay.
    assert scope["client"] == ["127.0.0.1", port]
    assert scope["scheme"] == "ws"


def test_scope_root_path_from_header(proxy_server):
    scope, _, _ = read_scope(
        proxy_server, "/scope", additional_headers=[("Daphne-Root-Path", "/x")]
    )
    assert scope["root_path"] == "/x"
    names = [name for name, _ in scope["headers"]]
    assert "daphne-root-path" not in names


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [("wss", "wss"), ("https", "wss"), ("http", "ws"), ("ws", "ws")],
)
def test_scope_proxy_headers(proxy_server, proto, scheme):
    scope, _, _ = read_scope(
        proxy_server,
        "/scope",
        additional_headers=[
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Forwarded-Port", "8443"),
            ("X-Forwarded-Proto", proto),
        ],
    )
    assert scope["client"] == ["10.1.2.3", 8443]
    assert scope["scheme"] == scheme


def test_http_timers_and_body_limit_do_not_apply_to_websockets(proxy_server):
    """Keep-alive, head and response timers (0.5 s) and the 10-byte body
    limit are HTTP's: an idle, accepted WebSocket outlives them all."""
    with ws_connect(proxy_server, "/echo") as ws:
        ws.send("x" * 1000)
        assert ws.recv(timeout=5) == "x" * 1000
        time.sleep(1.5)
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"
    response = http_get(proxy_server)
    assert (response.status_code, response.text) == (200, "http ok")


def test_proxy_headers_ignored_without_option(ws_server):
    scope, _, port = read_scope(
        ws_server,
        "/scope",
        additional_headers=[
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Forwarded-Proto", "wss"),
        ],
    )
    assert scope["client"] == ["127.0.0.1", port]
    assert scope["scheme"] == "ws"


def test_scope_scheme_wss_over_tls(tls_files):
    with run_tls_daphne(tls_files, "--access-log", "/dev/null", app=APP) as (
        server,
        context,
    ):
        url = f"wss://127.0.0.1:{server.port}/scope"
        with connect(url, ssl=context, **WS_OPTIONS) as ws:
            scope = json.loads(ws.recv(timeout=5))["scope"]
            ws.send("secure")
    assert scope["scheme"] == "wss"
    assert scope["type"] == "websocket"


# --------------------------------------------------------------------------
# 2. Handshake
# --------------------------------------------------------------------------


def test_handshake_waits_for_the_application(ws_server):
    ident = unique("hold")
    raw = RawWebSocket(ws_server.port)
    try:
        raw.send(raw.request(f"/hold?id={ident}"))
        raw.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            raw.sock.recv(1)  # nothing until the application accepts
        raw.sock.settimeout(5)
        assert http_get(ws_server, f"/release?id={ident}").text == "released"
        response = raw.read_response()
        assert response.status == 101
        assert response.all("sec-websocket-accept") == [accept_value(raw.key)]
        assert response.header("upgrade").lower() == "websocket"
        raw.send_frame(OP_TEXT, b"after the wait")
        assert raw.read_frame() == (True, OP_TEXT, b"after the wait")
    finally:
        raw.close()


def test_accept_with_subprotocol_and_headers(ws_server):
    with ws_connect(ws_server, "/subprotocol", subprotocols=["one", "two"]) as ws:
        assert ws.subprotocol == "two"
        assert ws.response.headers.get_all("x-extra") == ["1"]
        assert ws.response.headers["sec-websocket-protocol"] == "two"
        ws.send("proto")
        assert ws.recv(timeout=5) == "proto"


def test_accept_without_subprotocols_offered(ws_server):
    with ws_connect(ws_server, "/subprotocol") as ws:
        assert ws.subprotocol is None
        assert "sec-websocket-protocol" not in ws.response.headers
        assert ws.response.headers["x-extra"] == "1"


def test_close_before_accept_is_403(ws_server):
    response = refused(ws_server, "/reject")
    assert response.status == 403
    assert response.header("sec-websocket-accept") is None
    assert response.header("upgrade") is None


def test_close_before_accept_via_websockets_client(ws_server):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(ws_server, "/reject")
    assert info.value.response.status_code == 403


def test_denial_response(ws_server):
    response = refused(ws_server, "/deny")
    assert response.status == 401
    assert response.all("x-why") == ["nope"]
    assert response.all("content-type") == ["text/plain"]
    assert response.body == b"go away"
    assert response.header("sec-websocket-accept") is None


def test_exception_before_accept_is_500(ws_server):
    response = refused(ws_server, "/raise-before")
    assert response.status == 500
    assert response.header("sec-websocket-accept") is None


def test_exception_after_accept_closes_1011(ws_server):
    with ws_connect(ws_server, "/raise-after") as ws:
        closed = closed_with(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1011


# --------------------------------------------------------------------------
# 3. Messages and closing
# --------------------------------------------------------------------------


def test_echo_text_and_binary_including_empty(ws_server):
    messages = ["hello", b"\x00\x01\xfe\xff", "", b"", "h\u00e9llo \u2713 \U0001f600"]
    messages.append(bytes(range(256)) * 300)  # 76800 bytes: a 64-bit length
    messages.append("x" * 200)  # a 16-bit length
    with ws_connect(ws_server, "/echo") as ws:
        for message in messages:
            ws.send(message)
            echoed = ws.recv(timeout=5)
            assert type(echoed) is type(message)
            assert echoed == message


def test_raw_client_fragmented_and_control_frames(ws_server):
    raw = open_raw(ws_server, "/echo")
    try:
        raw.send_frame(OP_TEXT, b"frag", fin=False)
        raw.send_frame(OP_PING, b"in-between")  # control frames may interleave
        raw.send_frame(OP_CONT, b"men", fin=False)
        raw.send_frame(OP_CONT, b"ted", fin=True)
        assert raw.read_frame() == (True, OP_PONG, b"in-between")
        assert raw.read_frame() == (True, OP_TEXT, b"fragmented")
        raw.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"done")
        fin, opcode, payload = raw.read_frame()
        assert (fin, opcode) == (True, OP_CLOSE)
        assert close_code(payload) == 1000
        assert raw.read_until_close() == b""
    finally:
        raw.close()


def test_invalid_utf8_text_is_closed_with_1007(ws_server):
    ident = unique("utf8")
    raw = open_raw(ws_server, f"/echo?id={ident}")
    try:
        raw.send_frame(OP_TEXT, b"ok \xff\xfe")
        fin, opcode, payload = raw.read_frame()
    finally:
        raw.close()
    assert (fin, opcode) == (True, OP_CLOSE)
    assert close_code(payload) == 1007
    event = wait_report(ws_server, "EVENT", ident)
    assert event["message"]["type"] == "websocket.disconnect"


def test_server_close_code_and_reason(ws_server):
    ident = unique("close")
    with ws_connect(ws_server, f"/close?code=4001&reason=bye&id={ident}") as ws:
        closed = closed_with(ws)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "bye")


def test_client_close_code_reaches_app_once(ws_server):
    ident = unique("clientclose")
    with ws_connect(ws_server, f"/echo?id={ident}") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        ws.close(code=4321, reason="client bye")
        echoed = ws.protocol.close_rcvd
        assert echoed is not None
        assert echoed.code == 4321  # the server echoed the client's close code
    event = wait_report(ws_server, "EVENT", ident)
    assert event["message"]["type"] == "websocket.disconnect"
    assert event["message"]["code"] == 4321
    # A receive() after the disconnect finds nothing new: daphne repeats the
    # same final event (by design, see test_app_host), never a second one.
    after = wait_report(ws_server, "AFTER", ident)
    assert after["message"] in (None, event["message"])
    assert len(reports(ws_server, "EVENT", ident)) == 1


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_abrupt_client_close_is_1006(ws_server, how):
    ident = unique(f"abrupt-{how}")
    raw = open_raw(ws_server, f"/echo?id={ident}")
    raw.send_frame(OP_TEXT, b"x")
    assert raw.read_frame() == (True, OP_TEXT, b"x")
    if how == "reset":
        raw.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    raw.close()
    event = wait_report(ws_server, "EVENT", ident)
    assert event["message"]["type"] == "websocket.disconnect"
    assert event["message"]["code"] == 1006
    assert len(reports(ws_server, "EVENT", ident)) == 1


# --------------------------------------------------------------------------
# 4. Size limits
# --------------------------------------------------------------------------


def test_message_over_default_limit_is_1009_and_server_carries_on(ws_server):
    big = os.urandom(5 * MiB)
    with (
        ws_connect(ws_server, "/echo", max_size=None) as ws,
        pytest.raises(ConnectionClosed) as info,
    ):
        ws.send(big)
        ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    # The server still serves both protocols.
    with ws_connect(ws_server, "/echo") as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    response = http_get(ws_server)
    assert (response.status_code, response.text) == (200, "http ok")


def test_message_at_default_limit_is_accepted(ws_server):
    payload = os.urandom(MiB)
    with ws_connect(ws_server, "/echo", max_size=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload


@pytest.fixture(scope="module")
def small_limit_server():
    with run_daphne(
        "--access-log",
        "/dev/null",
        "--websocket-max-message-size",
        "1000",
        "--websocket-max-frame-size",
        "500",
        app=APP,
    ) as server:
        yield server


def close_code_after(server, message) -> int | None:
    """Send ``message`` (fragments if a list); the close code received."""
    with ws_connect(server, "/echo") as ws, pytest.raises(ConnectionClosed) as info:
        ws.send(message)
        ws.recv(timeout=5)
    return None if info.value.rcvd is None else info.value.rcvd.code


def test_fragmented_message_over_limit_is_1009(small_limit_server):
    # 5 frames of 300 bytes: each under the frame limit, 1500 bytes in all.
    assert close_code_after(small_limit_server, [b"a" * 300] * 5) == 1009


def test_fragmented_message_at_limit_is_reassembled(small_limit_server):
    with ws_connect(small_limit_server, "/echo") as ws:
        ws.send(["x" * 300, "y" * 300, "z" * 400])  # exactly 1000 bytes
        assert ws.recv(timeout=5) == "x" * 300 + "y" * 300 + "z" * 400
        ws.send([b"\x01" * 500, b"\x02" * 500])  # frames exactly at 500 too
        assert ws.recv(timeout=5) == b"\x01" * 500 + b"\x02" * 500


def test_frame_over_frame_limit_is_1009(small_limit_server):
    # 501 bytes: within the message limit, one byte over the frame limit.
    assert close_code_after(small_limit_server, b"b" * 501) == 1009


def test_fragmented_message_one_byte_over_limit_is_1009(small_limit_server):
    assert close_code_after(small_limit_server, ["c" * 500, "d" * 501]) == 1009


@pytest.fixture(scope="module")
def unlimited_server():
    with run_daphne(
        "--access-log",
        "/dev/null",
        "--websocket-max-frame-size",
        "0",
        "--websocket-max-message-size",
        "0",
        app=APP,
    ) as server:
        yield server


def test_no_limits_echo_5mib(unlimited_server):
    payload = os.urandom(5 * MiB)
    with ws_connect(unlimited_server, "/echo", max_size=None) as ws:
        ws.send(payload)
        echoed = ws.recv(timeout=20)
        assert len(echoed) == len(payload)
        assert echoed == payload


# --------------------------------------------------------------------------
# 5. Timers
# --------------------------------------------------------------------------


def test_connect_timeout_refuses_with_403(ws_server):
    ident = unique("never")
    raw = RawWebSocket(ws_server.port)
    try:
        start = time.monotonic()
        response = raw.handshake(f"/never?id={ident}")
        elapsed = time.monotonic() - start
    finally:
        raw.close()
    assert response.status == 403
    assert response.header("sec-websocket-accept") is None
    assert 0.8 <= elapsed <= 3, elapsed


def test_websocket_timeout_closes_with_1000():
    with (
        run_daphne(
            "--access-log", "/dev/null", "--websocket_timeout", "1", app=APP
        ) as server,
        ws_connect(server, "/echo") as ws,
    ):
        start = time.monotonic()
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        closed = closed_with(ws)
        elapsed = time.monotonic() - start
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000
    assert 0.8 <= elapsed <= 3, elapsed


def test_unanswered_pings_drop_the_connection(ping_server):
    ident = unique("noping")
    raw = open_raw(ping_server, f"/echo?id={ident}", timeout=8)
    start = time.monotonic()
    opcodes = []
    try:
        while True:
            opcodes.append(raw.read_frame()[1])  # read, never answer
    except (EOFError, ConnectionResetError):
        pass
    finally:
        raw.close()
    elapsed = time.monotonic() - start
    assert OP_PING in opcodes
    assert 1.5 <= elapsed <= 4.5, elapsed
    event = wait_report(ping_server, "EVENT", ident)
    assert event["message"]["code"] == 1006


def busy_raw_client(server, result: dict) -> None:
    """Sends a message every 0.3 s; reads pings but never answers them."""
    raw = open_raw(server, "/echo", timeout=5)
    pings = 0
    try:
        for index in range(11):
            message = f"raw busy {index}".encode()
            raw.send_frame(OP_TEXT, message)
            while True:
                _, opcode, payload = raw.read_frame()
                if opcode != OP_PING:
                    break
                pings += 1
            assert (opcode, payload) == (OP_TEXT, message)
            time.sleep(0.3)
        result["echoes"] = 11
    except BaseException as exc:  # reported to the test thread
        result["error"] = repr(exc)
    finally:
        result["pings"] = pings
        raw.close()


def test_busy_connection_is_not_pinged_off(ping_server):
    """Messages every 0.3 s for 3.3 s with a 1 s ping interval and timeout.

    The ``websockets`` client answers pings; the raw client never does, so it
    shows that incoming traffic alone keeps a busy connection alive.
    """
    raw_result: dict = {}
    thread = threading.Thread(target=busy_raw_client, args=(ping_server, raw_result))
    thread.start()
    try:
        with ws_connect(ping_server, "/echo") as ws:
            for index in range(11):
                ws.send(f"busy {index}")
                assert ws.recv(timeout=5) == f"busy {index}"
                time.sleep(0.3)
    finally:
        thread.join(10)
    assert raw_result.get("echoes") == 11, raw_result


# --------------------------------------------------------------------------
# 6. Header safety
# --------------------------------------------------------------------------


@pytest.mark.parametrize("byte", [b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85"])
def test_forbidden_byte_in_header_value_is_400(ws_server, byte):
    raw = RawWebSocket(ws_server.port)
    try:
        raw.send(raw.request("/echo", b"X-Bad: a" + byte + b"b\r\n"))
        data = raw.read_until_close()
    finally:
        raw.close()
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    assert b" 101 " not in data
    assert b"sec-websocket-accept" not in data.lower()


# --------------------------------------------------------------------------
# 7. Backpressure
# --------------------------------------------------------------------------


def numbered(index: int, size: int) -> str:
    return f"{index:06d}" + chr(ord("a") + index % 26) * (size - 6)


def test_slow_application_receives_every_message_in_order(ws_server):
    count, size = 2000, 1024
    messages = [numbered(index, size) for index in range(count)]
    digest = hashlib.sha256("".join(messages).encode()).hexdigest()
    with ws_connect(ws_server, f"/slow?delay=1.5&n={count}") as ws:
        for message in messages:
            ws.send(message)
        summary = json.loads(ws.recv(timeout=20))
    assert summary == {
        "count": count,
        "in_order": True,
        "sha256": digest,
        "bytes": count * size,
    }


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_reading_pauses_while_the_application_sleeps(ws_server):
    """64 MiB sent to an app asleep for 2 s: the sender must be held back and
    the server must not buffer the backlog in memory."""
    size, count, delay = 64 * 1024, 1024, 2.0
    rss_before = rss_bytes(ws_server.proc.pid)
    sent = []
    error: list[BaseException] = []

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", ws_server.port))
    ws = ws_connect(ws_server, f"/slow?delay={delay}&n={count}", sock=sock)
    ws.__enter__()

    def sender():
        try:
            for index in range(count):
                ws.send(numbered(index, size).encode())
                sent.append(index)
        except BaseException as exc:  # reported to the test thread
            error.append(exc)

    thread = threading.Thread(target=sender)
    start = time.monotonic()
    thread.start()
    time.sleep(delay / 2)
    sent_while_asleep = len(sent)
    rss_growth = rss_bytes(ws_server.proc.pid) - rss_before
    try:
        summary = json.loads(ws.recv(timeout=30))
    finally:
        thread.join(10)
        ws.close()
    assert not error, error
    # Unbounded reading would have taken in 32+ MiB by now (it took ~3 MiB).
    assert sent_while_asleep < count // 2, (sent_while_asleep, time.monotonic() - start)
    assert rss_growth < 16 * MiB, rss_growth
    assert summary["count"] == count
    assert summary["in_order"] is True
    assert summary["bytes"] == count * size


@pytest.mark.parametrize("ending", ["close frame", "close frame and FIN", "FIN"])
def test_client_leaving_while_reading_is_paused_loses_nothing(ws_server, ending):
    """2000 messages, then the client leaves while the app sleeps: the app
    still reads every message, in order, and only then the disconnect."""
    ident = unique("leave")
    count = 2000
    messages = [numbered(index, 1024).encode() for index in range(count)]
    raw = open_raw(ws_server, f"/slow?delay=1&id={ident}", timeout=10)
    try:
        for message in messages:
            raw.send_frame(OP_TEXT, message)
        if "close frame" in ending:
            raw.send_frame(OP_CLOSE, struct.pack("!H", 4000) + b"done")
        if "FIN" in ending:
            raw.sock.shutdown(socket.SHUT_WR)
        rest = raw.read_until_close()
    finally:
        raw.close()
    event = wait_report(ws_server, "EVENT", ident, timeout=10)
    assert event["tally"] == {
        "count": count,
        "in_order": True,
        "sha256": hashlib.sha256(b"".join(messages)).hexdigest(),
        "bytes": count * 1024,
    }
    if "close frame" in ending:
        assert rest == b"\x88\x06" + struct.pack("!H", 4000) + b"done"
        assert event["message"] == {
            "type": "websocket.disconnect",
            "code": 4000,
            "reason": "done",
        }
    else:
        assert rest == b""
        assert event["message"]["code"] == 1006


def test_sending_pauses_while_the_client_does_not_read(ws_server):
    """An app sending 64 MiB to a client that stops reading is held in
    ``send`` (the server does not buffer it); everything arrives in order
    once the client reads."""
    ident = unique("flood")
    count = 1024
    rss_before = rss_bytes(ws_server.proc.pid)
    raw = RawWebSocket(ws_server.port, timeout=5, rcvbuf=64 * 1024)
    try:
        response = raw.handshake(f"/flood?id={ident}&n={count}&size=65536")
        assert response.status == 101
        time.sleep(0.5)
        first = int(http_get(ws_server, f"/progress?id={ident}").text)
        time.sleep(0.5)
        second = int(http_get(ws_server, f"/progress?id={ident}").text)
        rss_growth = rss_bytes(ws_server.proc.pid) - rss_before
        assert 0 < first == second < count // 2, (first, second)
        assert rss_growth < 16 * MiB, rss_growth
        for index in range(count):
            fin, opcode, payload = raw.read_frame()
            assert (fin, opcode, len(payload)) == (True, OP_BINARY, 65536)
            assert payload[:6] == b"%06d" % index
        assert http_get(ws_server, f"/progress?id={ident}").text == str(count)
    finally:
        raw.close()


def test_client_vanishing_releases_a_blocked_send(ws_server):
    ident = unique("floodgone")
    raw = RawWebSocket(ws_server.port)
    response = raw.handshake(f"/flood?id={ident}&n=1024&size=65536")
    assert response.status == 101
    time.sleep(0.3)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    raised = wait_report(ws_server, "RAISED", ident)
    assert raised["error"] == "ClientDisconnected"
    event = wait_report(ws_server, "EVENT", ident)
    assert event["message"]["code"] == 1006
    assert int(http_get(ws_server, f"/progress?id={ident}").text) < 1024


# --------------------------------------------------------------------------
# 8. Access log
# --------------------------------------------------------------------------


def log_lines(server, verb: str, path: str, port: int) -> list[int]:
    """Indexes of access log lines with ``"VERB PATH`` and the client port."""
    return [
        index
        for index, line in enumerate(list(server.stdout))
        if f'"{verb} {path}' in line and f":{port} " in line
    ]


def test_access_log_connect_and_disconnect(ws_server):
    with ws_connect(ws_server, "/echo") as ws:
        port = ws.local_address[1]
        ws.send("logged")
        assert ws.recv(timeout=5) == "logged"
    deadline = time.monotonic() + 5
    while not log_lines(ws_server, "WSDISCONNECT", "/echo", port):
        assert time.monotonic() < deadline, ws_server.stdout[-10:]
        time.sleep(0.02)
    connecting = log_lines(ws_server, "WSCONNECTING", "/echo", port)
    connected = log_lines(ws_server, "WSCONNECT", "/echo", port)
    disconnected = log_lines(ws_server, "WSDISCONNECT", "/echo", port)
    assert len(connecting) == len(connected) == len(disconnected) == 1
    assert connecting[0] < connected[0] < disconnected[0]


@pytest.mark.parametrize(
    ("path", "status"), [("/reject", 403), ("/deny", 401), ("/raise-before", 500)]
)
def test_access_log_reject(ws_server, path, status):
    raw = RawWebSocket(ws_server.port)
    port = raw.local_port
    try:
        assert raw.handshake(path).status == status
    finally:
        raw.close()
    deadline = time.monotonic() + 5
    while not log_lines(ws_server, "WSREJECT", path, port):
        assert time.monotonic() < deadline, ws_server.stdout[-10:]
        time.sleep(0.02)
    assert len(log_lines(ws_server, "WSCONNECTING", path, port)) == 1
    assert log_lines(ws_server, "WSCONNECT", path, port) == []


# --------------------------------------------------------------------------
# 9. Graceful shutdown
# --------------------------------------------------------------------------


def test_sigterm_closes_websockets_with_1001():
    ident = unique("shutdown")
    with run_daphne("--access-log", "/dev/null", app=APP) as server:
        with ws_connect(server, f"/echo?id={ident}") as ws:
            ws.send("before shutdown")
            assert ws.recv(timeout=5) == "before shutdown"
            server.proc.send_signal(signal.SIGTERM)
            closed = closed_with(ws, timeout=10)
        assert server.wait(15) == 0
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    events = reports(server, "EVENT", ident)
    assert len(events) == 1
    assert events[0]["message"]["type"] == "websocket.disconnect"
    assert events[0]["message"]["code"] == 1001


# --------------------------------------------------------------------------
# 10. Scale
# --------------------------------------------------------------------------


def test_thousand_concurrent_connections():
    total = 1000
    raise_fd_limit(2 * total + 512)
    with run_daphne("--access-log", "/dev/null", app=APP) as server:
        url = ws_url(server, "/echo")

        async def scenario() -> list[str]:
            opening = asyncio.Semaphore(100)

            async def open_one():
                async with opening:
                    return await async_connect(url, **WS_OPTIONS)

            connections = await asyncio.gather(*(open_one() for _ in range(total)))
            try:

                async def exchange(index: int, ws) -> str:
                    message = f"client {index} {uuid.uuid4().hex}"
                    await ws.send(message)
                    echoed = await asyncio.wait_for(ws.recv(), 10)
                    return "ok" if echoed == message else f"{index}: {echoed!r}"

                results = await asyncio.gather(
                    *(exchange(index, ws) for index, ws in enumerate(connections))
                )
            finally:
                await asyncio.gather(*(ws.close() for ws in connections))
            return results

        results = asyncio.run(asyncio.wait_for(scenario(), 45))
        assert results == ["ok"] * total
        deadline = time.monotonic() + 10
        while sum(line.startswith("EVENT ") for line in server.stdout) < total:
            assert time.monotonic() < deadline, "not every disconnect reached the app"
            time.sleep(0.05)
        codes = {
            json.loads(line[6:])["message"]["code"]
            for line in server.stdout
            if line.startswith("EVENT ")
        }
        assert codes == {1000}


# --------------------------------------------------------------------------
# 11. HTTP on the same port
# --------------------------------------------------------------------------


def test_http_before_and_after_websocket(ws_server):
    before = http_get(ws_server)
    assert (before.status_code, before.text) == (200, "http ok")
    with ws_connect(ws_server, "/echo") as ws:
        ws.send(b"between")
        assert ws.recv(timeout=5) == b"between"
        during = http_get(ws_server)
        assert (during.status_code, during.text) == (200, "http ok")
    after = http_get(ws_server)
    assert (after.status_code, after.text) == (200, "http ok")


def test_incomplete_h2c_upgrade_is_answered_as_plain_http(ws_server):
    """Without HTTP2-Settings in Connection (RFC 7540 3.2.1) there is no
    switch; a complete h2c upgrade is tested in tests/test_http2.py."""
    with Raw(ws_server.port) as conn:
        conn.send(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: Upgrade\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        )
        response = conn.read_response()
    assert response.raw.startswith(b"HTTP/1.1 200 "), response
    assert (response.body, response.complete) == (b"http ok", True)


def test_websocket_handshake_without_key_is_not_upgraded(ws_server):
    with Raw(ws_server.port) as conn:
        conn.send(
            b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = conn.read_response()
    assert response.raw.startswith(b"HTTP/1.1 400 "), response


def test_bundled_example_echoes_on_the_same_port_as_http():
    """``make run`` serves examples/hello: HTTP and its /ws echo on one port."""
    with run_daphne(
        "--access-log", "/dev/null", app="examples.hello.app:application"
    ) as server:
        with ws_connect(server, "/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
            ws.send(b"\x00\xff")
            assert ws.recv(timeout=5) == b"\x00\xff"
        assert http_get(server, "/").text == "Hello, world!\n"


def test_websocket_over_a_unix_socket(tmp_path):
    from websockets.sync.client import unix_connect

    path = str(tmp_path / "daphne.sock")
    with run_daphne(
        "-u",
        path,
        "--access-log",
        "-",
        app="examples.hello.app:application",
        listen=False,
    ) as server:
        server.wait_listening()
        with unix_connect(path, "ws://localhost/ws") as ws:
            ws.send("over unix")
            assert ws.recv(timeout=5) == "over unix"
        # No client address on a UNIX socket: the access log shows "-".
        assert server.wait_for_line(r'^- - - \[.*\] "WSCONNECT /ws"')
