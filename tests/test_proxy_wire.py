"""Trusted proxies over real sockets: a daphne subprocess with --proxy-headers,
reached from 127.0.0.1 (trusted by default) and over a UNIX socket, with the
trust list given by option, by environment variable, or left at its default;
and the command line's handling of --forwarded-allow-ips.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import pytest

from daphne.config import FORWARDED_ALLOW_IPS_ENV, Config
from tests.clients import Raw
from tests.conftest import ROOT, run_daphne
from tests.test_cli import RecordingCLI, RecordingServer, assert_one_line_error

ENV = FORWARDED_ALLOW_IPS_ENV
HEADERS = [
    ("X-Forwarded-For", "203.0.113.7, 198.51.100.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "8443"),
]


def scope_from(conn: Raw, headers: list[tuple[str, str]]) -> dict:
    """The scope of a ``GET /scope`` with ``headers`` (tests.apps dumps it)."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
    conn.send(f"GET /scope HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
    response = conn.read_response()
    assert response.status == 200, response
    return response.json()


@pytest.fixture(scope="module")
def servers():
    """Two daphnes with --proxy-headers: ``trusting`` keeps the default trust
    list; ``distrusting`` trusts only 10.0.0.0/8, so 127.0.0.1 is no proxy."""
    with (
        run_daphne("--proxy-headers") as trusting,
        run_daphne("--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8") as other,
    ):
        yield {"trusting": trusting, "distrusting": other}


@pytest.fixture
def trusting(servers):
    return servers["trusting"]


@pytest.fixture
def distrusting(servers):
    return servers["distrusting"]


def test_a_trusted_peer_names_the_rightmost_untrusted_client(trusting):
    with Raw(trusting.port) as conn:
        scope = scope_from(conn, HEADERS)
    assert scope["client"] == ["198.51.100.7", 8443]
    assert scope["scheme"] == "https"


def test_a_trusted_peer_skips_trusted_entries(trusting):
    headers = [("X-Forwarded-For", "203.0.113.7, 127.0.0.1, ::1")]
    with Raw(trusting.port) as conn:
        assert scope_from(conn, headers)["client"] == ["203.0.113.7", conn.local_port]


def test_a_trusted_peer_may_use_forwarded(trusting):
    headers = [("Forwarded", 'for=203.0.113.7, for="[2001:db8::9]:4711";proto=https')]
    with Raw(trusting.port) as conn:
        scope = scope_from(conn, headers)
    assert scope["client"] == ["2001:db8::9", 4711]
    assert scope["scheme"] == "https"


def test_x_forwarded_for_wins_over_forwarded_on_the_wire(trusting):
    headers = [("Forwarded", "for=203.0.113.8"), ("X-Forwarded-For", "198.51.100.7")]
    with Raw(trusting.port) as conn:
        assert scope_from(conn, headers)["client"] == ["198.51.100.7", conn.local_port]


def test_headers_from_an_untrusted_peer_are_ignored(distrusting):
    forwarded = [*HEADERS, ("Forwarded", "for=203.0.113.8;proto=https")]
    with Raw(distrusting.port) as conn:
        scope = scope_from(conn, forwarded)
        assert scope["client"] == ["127.0.0.1", conn.local_port]
    assert scope["scheme"] == "http"
    # The headers themselves still reach the application.
    assert ["x-forwarded-for", "203.0.113.7, 198.51.100.7"] in scope["headers"]


def test_the_environment_variable_gives_the_trust_list():
    with (
        run_daphne("--proxy-headers", env={ENV: "192.0.2.0/24"}) as server,
        Raw(server.port) as conn,
    ):
        assert scope_from(conn, HEADERS)["client"] == ["127.0.0.1", conn.local_port]


def test_the_option_wins_over_the_environment_variable():
    args = ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    with (
        run_daphne(*args, env={ENV: "192.0.2.0/24"}) as server,
        Raw(server.port) as conn,
    ):
        assert scope_from(conn, HEADERS)["client"] == ["198.51.100.7", 8443]


def unix_raw(path) -> Raw:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return Raw(0, sock=sock)


@pytest.mark.parametrize(
    ("allow", "client"),
    [(None, ["198.51.100.7", 8443]), ("127.0.0.1,::1", None)],
    ids=["default", "unix-not-listed"],
)
def test_unix_socket_peers_are_trusted_unless_left_out(tmp_path, allow, client):
    """A UNIX-socket peer has no address: with ``unix`` on the list (the
    default) it speaks for its client; without, the client stays None."""
    path = tmp_path / "daphne.sock"
    extra = [] if allow is None else ["--forwarded-allow-ips", allow]
    with run_daphne("-u", str(path), "--proxy-headers", *extra, listen=False) as server:
        server.wait_listening()
        with unix_raw(path) as conn:
            scope = scope_from(conn, HEADERS)
    assert scope["client"] == client
    assert scope["scheme"] == ("https" if allow is None else "http")


# -- the command line ----------------------------------------------------------------


@pytest.fixture
def config_of(monkeypatch):
    """The Config the command line builds from some arguments (a fake server)."""
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv(ENV, raising=False)

    def run(*args: str) -> Config:
        RecordingServer.instances.clear()
        RecordingCLI().run([*args, "tests.cli_apps:application"])
        (server,) = RecordingServer.instances
        RecordingServer.instances.clear()
        return server.kwargs["config"]

    yield run
    RecordingServer.instances.clear()


def test_the_option_reaches_the_config(config_of, monkeypatch):
    config = config_of("--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8, unix")
    assert config.forwarded_allow_ips == ("10.0.0.0/8", "unix")
    assert config.proxy.trusts_peer(["10.2.3.4", 1])
    assert config_of("--proxy-headers").forwarded_allow_ips == (
        Config.forwarded_allow_ips
    )
    monkeypatch.setenv(ENV, "*")
    assert config_of("--proxy-headers").forwarded_allow_ips == ("*",)
    # Ambient, the variable means nothing without --proxy-headers.
    assert config_of().proxy is None


def daphne(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ)
    environ.pop(ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "daphne", *args, "tests.cli_apps:application"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "env", "needles"),
    [
        (
            ["--proxy-headers", "--forwarded-allow-ips", "10.0.0.1/8"],
            None,
            ["--forwarded-allow-ips", "'10.0.0.1/8'", "10.0.0.0/8"],
        ),
        (
            ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,proxy.local"],
            None,
            ["--forwarded-allow-ips", "'proxy.local'"],
        ),
        (["--proxy-headers"], {ENV: "::1, nonsense"}, [ENV, "'nonsense'"]),
        (["--forwarded-allow-ips", "127.0.0.1"], None, ["needs --proxy-headers"]),
    ],
    ids=["host-bits", "host-name", "environment", "without-proxy-headers"],
)
def test_bad_trust_lists_are_one_line_errors(args, env, needles):
    assert_one_line_error(daphne(*args, env=env), *needles)
