"""HTTP/2 over real sockets with real clients: httpx, h2, curl.

Negotiation (ALPN, prior knowledge, h2c upgrade, --no-http2), the scope,
multiplexing, flow control both ways, resets both ways, trailers, graceful
shutdown, limits and the access log.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import ssl
import subprocess
import time

import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame

from tests.clients import Raw
from tests.conftest import make_tls_files, run_daphne, tls_endpoint
from tests.h2_clients import H2Client, RawFrames

CURL = shutil.which("curl")


def curl_has_http2() -> bool:
    if CURL is None:
        return False
    out = subprocess.run([CURL, "--version"], capture_output=True, text=True).stdout
    return "HTTP2" in out


needs_curl = pytest.mark.skipif(
    not curl_has_http2(), reason="curl with HTTP/2 support is not installed"
)


@pytest.fixture(scope="module")
def server():
    with run_daphne("--access-log", "-", "--http-timeout", "30") as running:
        yield running


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    with run_daphne("-e", tls_endpoint(files), listen=False) as running:
        running.wait_listening()
        running.cafile = str(files[1])
        yield running


def h2_only(**kwargs) -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=10, **kwargs)


# -- negotiation --------------------------------------------------------------


def test_prior_knowledge_scope(server):
    """A cleartext connection opening with the preface is HTTP/2; the scope
    says so, maps :authority to host and offers trailers."""
    with h2_only() as client:
        response = client.get(f"{server.url}/scope?x=1", headers={"x-test": "yes"})
    assert response.http_version == "HTTP/2"
    scope = response.json()
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "http"
    assert scope["method"] == "GET"
    assert scope["path"] == "/scope"
    assert scope["query_string"] == "x=1"
    headers = dict(scope["headers"])
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["x-test"] == "yes"
    assert not any(name.startswith(":") for name in headers)
    assert "http.response.trailers" in scope["extensions"]


def test_access_log_names_http2(server):
    with h2_only() as client:
        client.get(f"{server.url}/scope/logged-as-h2")
    line = server.wait_for_line("/scope/logged-as-h2")
    assert '"GET /scope/logged-as-h2 HTTP/2" 200' in line


def test_alpn_h2_over_tls(tls_server):
    context = ssl.create_default_context(cafile=tls_server.cafile)
    with h2_only(verify=context) as client:
        response = client.get(f"https://127.0.0.1:{tls_server.port}/scope")
    assert response.http_version == "HTTP/2"
    assert response.json()["scheme"] == "https"
    assert response.json()["http_version"] == "2"


def test_alpn_http11_on_the_same_tls_port(tls_server):
    context = ssl.create_default_context(cafile=tls_server.cafile)
    with httpx.Client(verify=context, timeout=10) as client:
        response = client.get(f"https://127.0.0.1:{tls_server.port}/scope")
    assert response.http_version == "HTTP/1.1"
    assert response.json()["http_version"] == "1.1"


def test_http11_still_served_in_cleartext(server):
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{server.url}/scope")
    assert response.http_version == "HTTP/1.1"


def test_h2c_upgrade_answers_on_stream_1(server):
    """RFC 7540 3.2: 101, then the request's response on stream 1."""
    client = h2.connection.H2Connection()
    settings = client.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /scope?up=1 HTTP/1.1\r\nHost: example\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(client.data_to_send())
        raw = H2Client(server.port, sock=sock)
        raw.conn = client
        if rest:
            for event in client.receive_data(rest):
                raw.events.setdefault(getattr(event, "stream_id", 0), []).append(event)
        raw.wait(1)
        headers, body, _ = raw.response(1)
        # The connection serves further streams as HTTP/2.
        more_headers, _, _ = raw.get("/scope")
    assert headers[b":status"] == b"200"
    assert b'"http_version": "2"' in body
    assert b'"query_string": "up=1"' in body
    assert b"http2-settings" not in body
    assert more_headers[b":status"] == b"200"


def test_invalid_h2c_settings_stay_http11(server):
    with Raw(server.port) as conn:
        conn.send(
            b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: !!!\r\n\r\n"
        )
        response = conn.read_response()
    assert response.status == 200
    assert response.json()["http_version"] == "1.1"


@needs_curl
def test_curl_prior_knowledge_and_upgrade(server):
    for flag in ("--http2-prior-knowledge", "--http2"):
        out = subprocess.run(
            [CURL, "-s", "-i", flag, f"{server.url}/scope"],
            capture_output=True,
            timeout=20,
        ).stdout
        assert b"HTTP/2 200" in out, flag
        assert b'"http_version": "2"' in out


@needs_curl
def test_curl_over_tls(tls_server):
    out = subprocess.run(
        [
            CURL,
            "-s",
            "-i",
            "--http2",
            "--cacert",
            tls_server.cafile,
            f"https://127.0.0.1:{tls_server.port}/scope",
        ],
        capture_output=True,
        timeout=20,
    ).stdout
    assert b"HTTP/2 200" in out


def test_no_http2_turns_everything_off(tmp_path):
    files = make_tls_files(tmp_path)
    with run_daphne("--no-http2") as plain:
        with Raw(plain.port) as conn:
            conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert conn.read_response().status >= 400
        with httpx.Client(timeout=10) as client:
            response = client.get(
                f"{plain.url}/scope",
                headers={
                    "connection": "Upgrade, HTTP2-Settings",
                    "upgrade": "h2c",
                    "http2-settings": base64.urlsafe_b64encode(b"").decode(),
                },
            )
            assert response.json()["http_version"] == "1.1"
    endpoint = tls_endpoint(files)
    with run_daphne("--no-http2", "-e", endpoint, listen=False) as tls:
        tls.wait_listening()
        context = ssl.create_default_context(cafile=str(files[1]))
        with httpx.Client(http2=True, verify=context, timeout=10) as client:
            response = client.get(f"https://127.0.0.1:{tls.port}/scope")
        assert response.http_version == "HTTP/1.1"


# -- streams -------------------------------------------------------------------


def test_multiplexed_streams_run_concurrently(server):
    """Eight streams on one connection whose apps only answer once all eight
    are waiting: they can only complete if they run at the same time."""
    with H2Client(server.port).start() as client:
        streams = [client.request("/barrier?n=8&key=multiplex") for _ in range(8)]
        client.wait(*streams)
        for stream_id in streams:
            headers, body, _ = client.response(stream_id)
            assert headers[b":status"] == b"200" and body == b"together"


def test_large_upload_and_download_with_flow_control(server):
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB, far beyond any window
    with h2_only() as client:
        response = client.post(f"{server.url}/echo", content=payload)
        assert response.content == payload
        assert int(response.headers["x-chunks"]) > 1  # streamed in parts
        response = client.get(f"{server.url}/big?mb=8")
    assert len(response.content) == 8 * 1024 * 1024
    assert response.content[:256] == bytes(range(256))


def test_stalled_stream_does_not_stall_another(server):
    """A stream whose client stops reading (its window runs out) leaves the
    connection serving other streams."""
    with H2Client(server.port).start() as client:
        client.conn.increment_flow_control_window(2**30)  # connection only
        client.flush()
        stalled = client.request("/big?mb=4")
        client.stalled.add(stalled)
        while not client.events.get(stalled):
            client.read()
        other = client.request("/scope")
        client.wait(other)
        headers, _, _ = client.response(other)
        assert headers[b":status"] == b"200"
        assert not client.done(stalled)
        received = sum(
            len(event.data)
            for event in client.events[stalled]
            if isinstance(event, h2.events.DataReceived)
        )
        assert received <= 65535  # the stream window, no more


def test_send_waits_for_the_stream_window(server, tmp_path):
    """Backpressure: while the client grants no window on a stream, that
    stream's application is held in ``send`` (it does not run ahead and have
    the server buffer its body); another stream still completes meanwhile."""
    record = tmp_path / "sent"
    with H2Client(server.port).start() as client:
        client.conn.increment_flow_control_window(2**30)  # connection only
        client.flush()
        stalled = client.request(f"/counted-stream?n=64&file={record}")
        client.stalled.add(stalled)
        while not client.events.get(stalled):
            client.read()
        for _ in range(3):  # three round trips on the same connection
            client.get("/scope")
        assert int(record.read_text() if record.exists() else "0") <= 2
        assert not client.done(stalled)


def test_client_reset_disconnects_that_app(server, tmp_path):
    record = tmp_path / "record"
    with H2Client(server.port).start() as client:
        stream_id = client.request(f"/wait-disconnect?file={record}")
        other = client.request("/sleep?s=0.2")
        client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        client.flush()
        client.wait(other)
        headers, _, _ = client.response(other)
        assert headers[b":status"] == b"200"
    deadline = time.monotonic() + 10
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record.read_text() == "disconnect"


def test_app_failures_stay_on_their_stream(server):
    """Before its response: 500 on that stream. Mid-body: RST_STREAM
    INTERNAL_ERROR. The connection goes on serving."""
    with H2Client(server.port).start() as client:
        early = client.request("/raise")
        mid = client.request("/raise-mid")
        client.wait(early, mid)
        headers, body, _ = client.response(early)
        assert headers[b":status"] == b"500"
        assert b"secret" not in body
        assert client.reset_code(mid) == ErrorCodes.INTERNAL_ERROR
        headers, _, _ = client.get("/scope")
        assert headers[b":status"] == b"200"


def test_head_and_no_body_statuses(server):
    with H2Client(server.port).start() as client:
        headers, body, _ = client.get("/head-length", method="HEAD")
        assert headers[b":status"] == b"200" and body == b""
        for status in (204, 304):
            headers, body, _ = client.get(f"/status/{status}?body=1")
            assert headers[b":status"] == b"%d" % status and body == b""


def test_trailers(server):
    with H2Client(server.port).start() as client:
        headers, body, trailers = client.get("/trailers")
    assert headers[b":status"] == b"200"
    assert body == b"part one, part two"
    assert trailers == {b"x-checksum": b"abc123"}


def test_trailers_not_offered_on_http11(server):
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{server.url}/trailers")
    assert response.content == b"part one, part two"


def test_header_rules_of_http11_hold(server):
    """Underscore names are dropped; a head over the limit gets 431."""
    with H2Client(server.port).start() as client:
        _, body, _ = client.get("/scope", extra=[(b"x_smuggled", b"1")])
        assert b"x_smuggled" not in body
        headers, _, _ = client.get("/scope", extra=[(b"x-big", b"a" * 70000)])
        assert headers[b":status"] == b"431"


def test_max_request_body_size_applies():
    with (
        run_daphne("--max-request-body-size", "1000") as limited,
        H2Client(limited.port).start() as client,
    ):
        headers, _, _ = client.get("/echo", method="POST", body=b"x" * 5000)
    assert headers[b":status"] == b"413"


def test_http_timeout_is_per_stream():
    with run_daphne("--http-timeout", "1") as timed, H2Client(timed.port) as client:
        client.start()
        slow = client.request("/sleep?s=10")
        fast = client.request("/scope")
        client.wait(fast)
        assert client.response(fast)[0][b":status"] == b"200"
        client.wait(slow)
        assert client.response(slow)[0][b":status"] == b"503"


def test_max_concurrent_streams_is_advertised():
    with (
        run_daphne("--http2-max-concurrent-streams", "7") as limited,
        H2Client(limited.port).start() as client,
    ):
        client.get("/scope")
        limit = client.conn.remote_settings.max_concurrent_streams
    assert limit == 7


def test_idle_connection_gets_goaway():
    with run_daphne("--http2-idle-timeout", "0.5") as idle, RawFrames(idle.port) as raw:
        raw.start()
        assert raw.error() == ("GOAWAY", 0, ErrorCodes.NO_ERROR)
        assert raw.read_frame() is None  # then closed


def test_graceful_shutdown_sends_goaway_and_finishes_streams():
    """GOAWAY NO_ERROR naming the last stream, then the stream under way
    completes, then the connection closes and the server exits."""
    with run_daphne() as stopping, RawFrames(stopping.port) as raw:
        raw.start()
        frame = HeadersFrame(1)
        frame.data = raw.headers_block("/sleep?s=1")
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        raw.send(frame)
        time.sleep(0.3)  # (not a threshold: the stream only has to exist)
        stopping.proc.send_signal(signal.SIGTERM)
        frames = []
        while (frame := raw.read_frame()) is not None:
            frames.append(frame)
        goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        data = [frame for frame in frames if isinstance(frame, DataFrame)]
        assert goaways[0].error_code == ErrorCodes.NO_ERROR
        assert goaways[0].last_stream_id == 1
        assert b"".join(frame.data for frame in data) == b"slept"
        assert frames.index(goaways[0]) < frames.index(data[0])
        assert "END_STREAM" in data[-1].flags
        assert stopping.wait() == 0


def test_expect_100_continue(server):
    """The interim 100 goes out when the application asks for the body."""
    with H2Client(server.port).start() as client:
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":path", b"/echo"),
                (b":scheme", b"http"),
                (b":authority", b"127.0.0.1"),
                (b"expect", b"100-continue"),
            ],
        )
        client.flush()
        while not any(
            isinstance(event, h2.events.InformationalResponseReceived)
            for event in client.events.get(stream_id, ())
        ):
            assert client.read()
        client.send_body(stream_id, b"after continue")
        client.wait(stream_id)
        headers, body, _ = client.response(stream_id)
    assert headers[b":status"] == b"200" and body == b"after continue"
