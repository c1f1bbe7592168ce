"""Tests for daphne.server: endpoints, lifespan, graceful shutdown, and the
Daphne 4 compatible constructor. Servers run in subprocesses and are reached
over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pytest
from twisted.internet import defer

from daphne.config import Config
from daphne.server import Server, ServerError

from .cli_apps import LIFESPAN_LOG, STARTUP_FAILURE
from .clients import Raw, Reader, Response
from .conftest import ROOT, run_daphne, run_tls_daphne

APP = "tests.cli_apps:application"


def get_json(url: str, **kwargs) -> dict:
    response = httpx.get(url, timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def keep_alive_get(path: str) -> bytes:
    """A keep-alive GET (HTTP/1.1 keeps the connection open by default)."""
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


def only_response(data: bytes) -> Response:
    """The complete Content-Length response that is all of ``data``."""
    reader = Reader(data)
    response = reader.read_response()
    assert response.header("content-length") is not None, response
    assert response.complete, "response body was cut"
    assert reader.buf == b"", f"more after the response: {reader.buf!r}"
    return response


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------


def test_two_tcp_endpoints_both_answer():
    endpoint = "tcp:0:interface=127.0.0.1"
    with run_daphne("-e", endpoint, "-e", endpoint, app=APP, listen=False) as server:
        server.wait_listening(2)
        ports = {int(address.rsplit(":", 1)[1]) for address in server.addresses}
        assert len(ports) == 2
        for port in ports:
            scope = get_json(f"http://127.0.0.1:{port}/both")
            assert scope["path"] == "/both"
            assert scope["server"] == ["127.0.0.1", port]


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
def test_ipv6_endpoint_answers_over_ipv6_loopback():
    with run_daphne("-e", r"tcp:0:interface=\:\:1", app=APP, listen=False) as server:
        server.wait_listening()
        port = int(server.addresses[0].rsplit(":", 1)[1])
        scope = get_json(f"http://[::1]:{port}/v6")
        assert scope["path"] == "/v6"
        assert scope["client"][0] == "::1"
        assert scope["server"] == ["::1", port]


def test_unix_socket_serves_with_no_client_or_server(tmp_path):
    path = str(tmp_path / "daphne.sock")
    with run_daphne("-u", path, app=APP, listen=False) as server:
        server.wait_listening()
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, timeout=10) as client:
            response = client.get("http://localhost/over-unix?x=1")
        assert response.status_code == 200
        scope = response.json()
        assert scope["path"] == "/over-unix"
        assert scope["client"] is None
        assert scope["server"] is None


def test_unix_socket_listening_log_names_the_path(tmp_path):
    path = str(tmp_path / "logged.sock")
    with run_daphne("-u", path, app=APP, listen=False) as server:
        server.wait_listening()
        line = server.wait_for_line("Listening on", stream="stderr")
    assert line.endswith(f"Listening on unix:{path}:backlog=2048 at {path}")


class InheritedSocketServer:
    """``python -m daphne ARGS`` given a listening socket to inherit."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.set_inheritable(True)
        self.port = self.sock.getsockname()[1]
        self.fd = self.sock.fileno()
        self.proc: subprocess.Popen | None = None

    def start(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", *args, APP],
            cwd=ROOT,
            pass_fds=(self.fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Only the child may accept from now on: connections queue in the
        # shared backlog until daphne adopts the socket.
        self.sock.close()

    def stop(self) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.mark.parametrize(
    "make_args",
    [lambda fd: ["--fd", str(fd)], lambda fd: ["-e", f"fd:fileno={fd}"]],
    ids=["--fd", "-e fd:fileno"],
)
def test_inherited_socket_is_served(make_args):
    server = InheritedSocketServer()
    try:
        server.start(*make_args(server.fd))
        scope = get_json(f"http://127.0.0.1:{server.port}/inherited")
        assert scope["path"] == "/inherited"
        assert scope["pid"] == server.proc.pid
        assert scope["server"] == ["127.0.0.1", server.port]
    finally:
        code, err = server.stop()
    assert "Traceback" not in err
    assert code == 0, err


# --------------------------------------------------------------------------
# Lifespan
# --------------------------------------------------------------------------


def test_lifespan_startup_and_shutdown_events_are_sent(tmp_path):
    log = tmp_path / "lifespan.log"
    with run_daphne(
        app="tests.cli_apps:lifespan_recorder", env={LIFESPAN_LOG: str(log)}
    ) as server:
        assert log.read_text().split() == ["lifespan.startup"]
        assert get_json(server.url + "/during")["path"] == "/during"
        assert server.stop(signal.SIGTERM) == 0
    assert log.read_text().split() == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_on_with_an_app_raising_exits_showing_where():
    """One error line, last, after the traceback of the application's own
    frames (see tests/test_cli_user_errors.py for more of those)."""
    with run_daphne(
        "--lifespan", "on", app="tests.cli_apps:lifespan_raises", listen=False
    ) as server:
        code = server.wait()
    assert code not in (0, None)
    stderr = "\n".join(server.stderr)
    assert "Traceback" in stderr
    assert 'cli_apps.py", line ' in stderr
    assert "daphne/hosts" not in stderr
    errors = [line for line in server.stderr if line.startswith("daphne: error:")]
    assert len(errors) == 1, server.stderr
    assert server.stderr[-1] == errors[0]
    assert "lifespan" in errors[0].lower()
    assert "lifespan is not supported by this application" in errors[0]
    assert server.addresses == []


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_lifespan_startup_failed_stops_before_listening(mode):
    with run_daphne(
        "--lifespan", mode, app="tests.cli_apps:lifespan_startup_fails", listen=False
    ) as server:
        code = server.wait()
    assert code not in (0, None)
    assert "Traceback" not in "\n".join(server.stderr)
    assert server.stderr[-1].startswith("daphne: error:")
    assert STARTUP_FAILURE in server.stderr[-1]
    assert server.addresses == []
    assert not any("Listening on" in line for line in server.stderr)


def test_lifespan_auto_with_an_app_raising_still_serves():
    with run_daphne("--lifespan", "auto", app="tests.cli_apps:lifespan_raises") as s:
        assert get_json(s.url + "/no-lifespan")["path"] == "/no-lifespan"
        assert s.proc.poll() is None
    assert s.proc.returncode == 0


def test_lifespan_off_sends_no_events(tmp_path):
    log = tmp_path / "lifespan.log"
    with run_daphne(
        "--lifespan",
        "off",
        app="tests.cli_apps:lifespan_recorder",
        env={LIFESPAN_LOG: str(log)},
    ) as server:
        assert get_json(server.url + "/")["type"] == "http"
        assert server.stop() == 0
    assert not log.exists()


# --------------------------------------------------------------------------
# Graceful shutdown
# --------------------------------------------------------------------------


def wait_until_connections_accepted(port: int) -> None:
    """Make sure daphne serves (its first request) before the real test."""
    assert get_json(f"http://127.0.0.1:{port}/warm-up")["path"] == "/warm-up"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_in_flight_request_completes_after_signal(sig):
    with run_daphne(app=APP) as server:
        wait_until_connections_accepted(server.port)
        conn = Raw(server.port, timeout=10)
        try:
            conn.send(keep_alive_get("/slow?sleep=2"))
            time.sleep(0.5)  # the application is now sleeping
            signalled = time.monotonic()
            server.proc.send_signal(sig)
            time.sleep(0.3)
            # The listener is closed at once, the old connection is not.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=2)
            assert server.proc.poll() is None
            # read_until_close returns once daphne closes the keep-alive
            # connection after the response (it would time out otherwise).
            response = only_response(conn.read_until_close())
        finally:
            conn.close()
        assert response.status == 200
        assert json.loads(response.body)["path"] == "/slow"
        assert server.wait(10) == 0
        assert time.monotonic() - signalled < 5


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_shutdown_timeout_cuts_a_long_request(sig):
    with run_daphne("--shutdown-timeout", "1", app=APP) as server:
        wait_until_connections_accepted(server.port)
        conn = Raw(server.port, timeout=10)
        try:
            conn.send(keep_alive_get("/very-slow?sleep=30"))
            time.sleep(0.3)
            signalled = time.monotonic()
            server.proc.send_signal(sig)
            data = conn.read_until_close()
            cut_after = time.monotonic() - signalled
        finally:
            conn.close()
        assert b"/very-slow" not in data
        assert 0.5 < cut_after < 3
        assert server.wait(5) == 0
        assert time.monotonic() - signalled < 3


def test_instances_still_running_after_the_shutdown_grace_are_cancelled(tmp_path):
    """An application still running when --shutdown-timeout runs out is
    cancelled (it sees CancelledError and can clean up), not abandoned."""
    record = tmp_path / "outcome"
    target = f"/sleep-record?s=30&file={quote(str(record))}"
    running = run_daphne("--shutdown-timeout", "1", app="tests.apps:application")
    with (
        running as server,
        Raw(server.port, timeout=10) as conn,
    ):
        conn.send(keep_alive_get(target))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if record.exists() and record.read_text() == "started":
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the application did not start")
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
        stopped_after = time.monotonic() - signalled
    assert stopped_after < 4
    assert record.read_text() == "CancelledError"


def test_idle_keep_alive_connection_does_not_delay_shutdown():
    with run_daphne(app=APP) as server:
        with httpx.Client(timeout=10) as client:
            assert client.get(server.url + "/keep").status_code == 200
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert server.wait(10) == 0
        assert time.monotonic() - signalled < 2


# --------------------------------------------------------------------------
# The Server class: Daphne 4 keyword arguments
# --------------------------------------------------------------------------


async def _app(scope, receive, send):
    pass


def test_server_accepts_daphne4_keyword_arguments():
    logged = []

    def action_logger(protocol, action, details):
        logged.append(action)

    def ready():
        pass

    server = Server(
        _app,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        http_timeout=31,
        websocket_timeout=401,
        websocket_connect_timeout=21,
        ping_interval=11,
        ping_timeout=12,
        root_path="/compat",
        proxy_forwarded_address_header="X-Forwarded-For",
        proxy_forwarded_port_header="X-Forwarded-Port",
        proxy_forwarded_proto_header="X-Forwarded-Proto",
        verbosity=2,
        websocket_handshake_timeout=6,
        application_close_timeout=13,
        server_name="compat-server",
        action_logger=action_logger,
        ready_callable=ready,
        signal_handlers=False,
        request_buffer_size=4096,
    )
    config = server.config
    assert isinstance(config, Config)
    assert config.http_timeout == 31
    assert config.websocket_timeout == 401
    assert config.websocket_connect_timeout == 21
    assert config.ping_interval == 11
    assert config.ping_timeout == 12
    assert config.root_path == "/compat"
    assert config.proxy_forwarded_address_header == "X-Forwarded-For"
    assert config.proxy_forwarded_port_header == "X-Forwarded-Port"
    assert config.proxy_forwarded_proto_header == "X-Forwarded-Proto"
    assert config.proxy_headers
    assert config.verbosity == 2
    assert not hasattr(config, "websocket_handshake_timeout")
    assert config.application_close_timeout == 13
    assert config.server_name == "compat-server"
    assert server.action_logger is action_logger
    assert server.ready_callable is ready
    assert server.signal_handlers is False
    assert server.application is _app
    assert server.endpoints == ["tcp:port=0:interface=127.0.0.1"]


def test_server_positional_application_and_endpoints():
    server = Server(_app, ["unix:/tmp/b.sock", "tcp:0"])
    assert server.application is _app
    assert server.endpoints == ["tcp:0", "unix:/tmp/b.sock"]
    assert server.config == Config()
    assert server.signal_handlers is True


def test_server_takes_the_proxy_trust_list_as_a_keyword():
    server = Server(_app, endpoints=["tcp:0"], forwarded_allow_ips="10.0.0.0/8, unix")
    assert server.config.forwarded_allow_ips == ("10.0.0.0/8", "unix")
    with pytest.raises(Exception, match="forwarded_allow_ips"):
        Server(_app, endpoints=["tcp:0"], forwarded_allow_ips="not-an-address")


def test_server_keyword_arguments_override_a_given_config():
    base = Config(http_timeout=5, root_path="/base")
    server = Server(_app, endpoints=["tcp:0"], config=base, root_path="/kwarg")
    assert server.config.root_path == "/kwarg"
    assert server.config.http_timeout == 5
    assert base.root_path == "/base"


def test_server_daphne4_falsy_server_name_and_root_path():
    server = Server(_app, endpoints=["tcp:0"], server_name="", root_path=None)
    assert server.config.server_name is None
    assert server.config.root_path == ""


@pytest.mark.parametrize("endpoints", [None, []], ids=["None", "empty"])
def test_server_without_endpoints_is_an_error(endpoints):
    with pytest.raises(ServerError, match="No endpoints"):
        Server(_app, endpoints=endpoints)


def test_server_unknown_keyword_argument_is_a_type_error():
    with pytest.raises(TypeError, match="no_such_option"):
        Server(_app, endpoints=["tcp:0"], no_such_option=1)


def test_server_invalid_keyword_value_is_a_config_error():
    with pytest.raises(ValueError, match="ping_timeout"):
        Server(_app, endpoints=["tcp:0"], ping_timeout=0)


# --------------------------------------------------------------------------
# Names other code imports from daphne
# --------------------------------------------------------------------------


def test_compat_names_are_importable():
    from daphne.access import AccessLogGenerator
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.utils import parse_x_forwarded_for

    assert callable(AccessLogGenerator)
    assert callable(parse_x_forwarded_for)
    assert build_endpoint_description_strings(host="127.0.0.1", port=8000) == [
        "tcp:port=8000:interface=127.0.0.1"
    ]


# --------------------------------------------------------------------------
# Second review fixes
# --------------------------------------------------------------------------


@pytest.fixture
def tls_server(tls_files):
    with run_tls_daphne(tls_files, app=APP) as (server, _):
        yield server


def test_tls_with_alpn_from_curl_is_served(tls_server):
    result = subprocess.run(
        [
            "curl",
            "-sk",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            f"https://127.0.0.1:{tls_server.port}/tls",
        ],
        capture_output=True,
        text=True,
        timeout=15,
    )
    body, _, status = result.stdout.rpartition("\n")
    assert (result.returncode, status) == (0, "200"), result
    payload = json.loads(body)
    assert payload["path"] == "/tls"
    assert payload["scheme"] == "https"


def test_tls_alpn_http11_offer_negotiates_http11(tls_server):
    """A client that offers only http/1.1 gets it (an h2 offer gets HTTP/2:
    see tests/test_http2.py)."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", tls_server.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        conn = Raw(tls_server.port, timeout=10, sock=sock)
        conn.send(b"GET /alpn HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = conn.read_response()
    assert response.status == 200
    assert response.header("content-length") is not None, response
    assert response.complete, "response body was cut"
    payload = json.loads(response.body)
    assert payload["path"] == "/alpn"
    assert payload["scheme"] == "https"


def test_lifespan_shutdown_never_answered_is_bounded_by_shutdown_timeout():
    with run_daphne(
        "--shutdown-timeout", "1", app="tests.cli_apps:lifespan_shutdown_hangs"
    ) as server:
        wait_until_connections_accepted(server.port)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
        assert time.monotonic() - signalled < 4


def test_second_sigterm_during_graceful_shutdown_exits_at_once():
    with run_daphne(app=APP) as server:
        wait_until_connections_accepted(server.port)
        conn = Raw(server.port, timeout=10)
        try:
            conn.send(keep_alive_get("/very-slow?sleep=30"))
            time.sleep(0.3)  # the application is now sleeping
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert server.proc.poll() is None, "the first signal must wait"
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = server.wait(10)
            elapsed = time.monotonic() - signalled
        finally:
            conn.close()
    assert code != 0
    assert elapsed < 2
    stderr = "\n".join(server.stderr)
    assert "Traceback" not in stderr
    assert "CRITICAL" not in stderr


def test_bad_endpoint_is_rejected_before_lifespan_startup(tmp_path):
    log = tmp_path / "lifespan.log"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "daphne",
            "-e",
            "tcp:abc",
            "tests.cli_apps:lifespan_recorder",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, LIFESPAN_LOG: str(log)},
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    errors = [
        line for line in result.stderr.splitlines() if line.startswith("daphne: error:")
    ]
    assert len(errors) == 1, result.stderr
    assert "tcp:abc" in errors[0]
    assert not log.exists()


SERVER_ON_ANOTHER_LOOP = """
import asyncio
import sys

sys.path.insert(0, {root!r})

from twisted.internet import asyncioreactor

loop = asyncio.new_event_loop()
asyncioreactor.install(loop)
asyncio.set_event_loop(asyncio.new_event_loop())

from daphne.server import Server
from tests.cli_apps import application

server = Server(
    application,
    endpoints=["tcp:0:interface=127.0.0.1"],
    ready_callable=lambda: print(
        "PORT", server.listeners[0].getHost().port, flush=True
    ),
)
server.run()
"""


def test_server_uses_the_reactors_loop_not_the_current_one(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(SERVER_ON_ANOTHER_LOOP.format(root=str(ROOT)))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), (line, proc.poll())
        port = int(line.split()[1])
        payload = get_json(f"http://127.0.0.1:{port}/other-loop")
        assert payload["path"] == "/other-loop"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_a_connection_that_fails_to_drain_does_not_stop_the_shutdown(caplog):
    """One connection's shutdown raising must not leave the others undrained
    or skip the rest of the shutdown: it is logged and that one is aborted."""

    class Transport:
        aborted = False

        def abortConnection(self) -> None:
            self.aborted = True

    class Conn:
        def __init__(self, fails: bool) -> None:
            self.fails = fails
            self.drained = False
            self.transport = Transport()

        def shutdown(self) -> None:
            if self.fails:
                raise AttributeError("a bug")
            self.drained = True

    class Factory:
        connections: set = set()

        def when_empty(self) -> defer.Deferred:
            return defer.succeed(None)

    class Host:
        loop: asyncio.AbstractEventLoop
        closed = False

        async def close(self, timeout: float) -> None:
            self.closed = True

    bad, good = Conn(fails=True), Conn(fails=False)
    server = Server(_app, endpoints=["tcp:0"], signal_handlers=False)
    server.factory = Factory()
    server.factory.connections = {bad, good}
    server.host = Host()
    server.lifespan = None
    loop = asyncio.new_event_loop()
    server.host.loop = loop
    try:
        with caplog.at_level(logging.ERROR, logger="daphne"):
            loop.run_until_complete(server._shutdown())
    finally:
        loop.close()
    assert good.drained and bad.transport.aborted
    assert server.host.closed
    assert "Could not drain a connection" in caplog.text
