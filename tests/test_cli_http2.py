"""The command line's HTTP/2 and TLS options: what they become in the Config
and the endpoint strings, their errors, and a real TLS server built by them."""

from __future__ import annotations

import ssl

import httpx
import pytest

from daphne.config import Config
from tests.conftest import run_daphne
from tests.test_cli import HELP_OPTIONS, cli_run, daphne, help_text  # noqa: F401

HTTP2_OPTIONS = [
    "--no-http2",
    "--http2-max-concurrent-streams",
    "--http2-max-header-list-size",
    "--http2-idle-timeout",
    "--ssl-certfile",
    "--ssl-keyfile",
    "--ssl-ca-certs",
]


@pytest.mark.parametrize("option", HTTP2_OPTIONS)
def test_help_documents_http2_option(help_text, option):  # noqa: F811
    assert option in help_text


def test_http2_defaults(cli_run):  # noqa: F811
    config = cli_run()["config"]
    assert config.http2 is True
    assert config.http2_max_concurrent_streams == Config.http2_max_concurrent_streams
    assert config.http2_max_header_list_size == Config.http2_max_header_list_size
    assert config.http2_idle_timeout == Config.http2_idle_timeout


def test_http2_options_reach_config(cli_run):  # noqa: F811
    config = cli_run(
        "--no-http2",
        "--http2-max-concurrent-streams",
        "10",
        "--http2-max-header-list-size",
        "8192",
        "--http2-idle-timeout",
        "3",
    )["config"]
    assert (
        config.http2,
        config.http2_max_concurrent_streams,
        config.http2_max_header_list_size,
        config.http2_idle_timeout,
    ) == (False, 10, 8192, 3.0)


def test_ssl_certfile_makes_the_bind_socket_tls(cli_run, tmp_path):  # noqa: F811
    cert, key, chain = (tmp_path / name for name in ("c.pem", "k.pem", "ca.pem"))
    for path in (cert, key, chain):
        path.write_text("x")
    endpoints = cli_run(
        "-p",
        "8443",
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        "--ssl-ca-certs",
        str(chain),
    )["endpoints"]
    assert endpoints == [
        f"ssl:port=8443:interface=127.0.0.1:backlog=2048:privateKey={key}"
        f":certKey={cert}:extraCertChain={chain}"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ssl-keyfile", "k.pem"], "need --ssl-certfile"),
        (["--ssl-certfile", "/nonexistent.pem"], "is not a readable file"),
        (["--ssl-certfile", "README.rst", "-u", "/tmp/s.sock"], "-b/-p socket"),
        (["--http2-max-concurrent-streams", "0"], "greater than 0"),
    ],
)
def test_tls_and_http2_option_errors(args, message):
    result = daphne(*args, "tests.cli_apps:application")
    assert result.returncode != 0
    assert message in result.stderr


def test_ssl_certfile_serves_tls_with_http2(tls_files):
    key, cert = tls_files
    with run_daphne(
        "-b",
        "127.0.0.1",
        "-p",
        "0",
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        listen=False,
    ) as server:
        server.wait_listening()
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(http2=True, verify=context, timeout=10) as client:
            response = client.get(f"https://127.0.0.1:{server.port}/scope")
    assert response.http_version == "HTTP/2"
    assert response.json()["scheme"] == "https"
