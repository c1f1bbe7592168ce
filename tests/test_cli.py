"""Tests for the ``daphne`` command line (daphne/cli.py).

The first part runs :class:`CommandLineInterface` in this process with a fake
server class that only records what it was given. The rest runs the real
command in a subprocess: help text, bad input, and both ways to start it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from daphne import __version__
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.config import Config

from .conftest import ROOT, run_daphne

APP = "tests.cli_apps:application"


# --------------------------------------------------------------------------
# Arguments to Server keyword arguments, through a fake server class
# --------------------------------------------------------------------------


class RecordingServer:
    """Stands in for daphne.server.Server: keeps its kwargs, serves nothing."""

    instances: list[RecordingServer] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.ran = False
        RecordingServer.instances.append(self)

    def run(self):
        self.ran = True


class RecordingCLI(CommandLineInterface):
    server_class = RecordingServer

    @staticmethod
    def _route_twisted_logs(verbosity):
        """Leave Twisted's global log observers of the test process alone."""


@pytest.fixture
def cli_run(monkeypatch):
    """Run RecordingCLI with some arguments; returns the recorded kwargs.

    ``run`` would reconfigure the root logger of this (pytest) process and
    change sys.path: both are kept from leaking into other tests.
    """
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    RecordingServer.instances.clear()

    def run(*args: str) -> dict:
        RecordingCLI().run([*args, APP])
        (server,) = RecordingServer.instances
        RecordingServer.instances.clear()
        assert server.ran
        return server.kwargs

    return run


def test_no_binding_options_listen_on_localhost_8000(cli_run):
    assert cli_run()["endpoints"] == ["tcp:port=8000:interface=127.0.0.1:backlog=2048"]


def test_bind_without_port_uses_port_8000(cli_run):
    assert cli_run("-b", "10.0.0.1")["endpoints"] == [
        "tcp:port=8000:interface=10.0.0.1:backlog=2048"
    ]


def test_port_without_bind_uses_localhost(cli_run):
    assert cli_run("-p", "9000")["endpoints"] == [
        "tcp:port=9000:interface=127.0.0.1:backlog=2048"
    ]


def test_bind_and_port_long_spellings(cli_run):
    kwargs = cli_run("--bind", "0.0.0.0", "--port", "8080")
    assert kwargs["endpoints"] == ["tcp:port=8080:interface=0.0.0.0:backlog=2048"]


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_bind_is_escaped_with_or_without_brackets(cli_run, host):
    assert cli_run("-b", host)["endpoints"] == [
        r"tcp:port=8000:interface=\:\:1:backlog=2048"
    ]


def test_unix_socket_alone_listens_only_there(cli_run):
    assert cli_run("-u", "/tmp/x.sock")["endpoints"] == [
        "unix:/tmp/x.sock:backlog=2048"
    ]


def test_fd_alone_listens_only_there(cli_run):
    assert cli_run("--fd", "5")["endpoints"] == ["fd:fileno=5"]


def test_backlog_goes_into_bind_options_not_into_endpoint_strings(cli_run):
    kwargs = cli_run(
        "-p", "9000", "-u", "/tmp/x.sock", "-e", "tcp:9001", "--backlog", "64"
    )
    assert kwargs["endpoints"] == [
        "tcp:9001",
        "tcp:port=9000:interface=127.0.0.1:backlog=64",
        "unix:/tmp/x.sock:backlog=64",
    ]


def test_endpoint_strings_alone_listen_only_there(cli_run):
    kwargs = cli_run("-e", "unix:/tmp/b.sock", "-e", "tcp:9001")
    assert kwargs["endpoints"] == ["tcp:9001", "unix:/tmp/b.sock"]


def test_every_binding_option_together_all_sorted(cli_run):
    kwargs = cli_run(
        "-e",
        "unix:/tmp/e.sock",
        "-b",
        "10.0.0.2",
        "-p",
        "9002",
        "-e",
        "tcp:7000:interface=127.0.0.1",
        "-u",
        "/tmp/u.sock",
        "--fd",
        "7",
    )
    expected = [
        "fd:fileno=7",
        "tcp:7000:interface=127.0.0.1",
        "tcp:port=9002:interface=10.0.0.2:backlog=2048",
        "unix:/tmp/e.sock",
        "unix:/tmp/u.sock:backlog=2048",
    ]
    assert kwargs["endpoints"] == expected


def test_application_is_imported_and_passed(cli_run):
    from tests import cli_apps

    assert cli_run()["application"] is cli_apps.application


def test_defaults_give_the_default_config(cli_run):
    kwargs = cli_run()
    assert kwargs["config"] == Config()
    assert kwargs["http_timeout"] is None
    assert kwargs["root_path"] == ""
    assert kwargs["server_name"] == "daphne"
    assert kwargs["proxy_forwarded_address_header"] is None
    assert kwargs["verbosity"] == 1


def test_every_option_reaches_config(cli_run):
    kwargs = cli_run(
        "-t",
        "30",
        "--request-head-timeout",
        "4",
        "--keep-alive-timeout",
        "6",
        "--request-body-timeout",
        "7",
        "--max-request-body-size",
        "1000",
        "--root-path",
        "/mounted",
        "--server-name",
        "my-server",
        "--websocket_timeout",
        "100",
        "--websocket_connect_timeout",
        "7",
        "--websocket-max-message-size",
        "2048",
        "--websocket-max-frame-size",
        "1024",
        "--ping-interval",
        "3",
        "--ping-timeout",
        "9",
        "--no-ws-per-message-deflate",
        "--application-close-timeout",
        "2.5",
        "--lifespan",
        "on",
        "--shutdown-timeout",
        "1.5",
        "--limit-max-requests",
        "500",
        "--limit-max-requests-jitter",
        "50",
        "--limit-concurrency",
        "64",
        "--backlog",
        "128",
        "-v",
        "2",
    )
    config = kwargs["config"]
    assert isinstance(config, Config)
    expected = {
        "http_timeout": 30.0,
        "request_head_timeout": 4.0,
        "keep_alive_timeout": 6.0,
        "request_body_timeout": 7.0,
        "max_request_body_size": 1000,
        "root_path": "/mounted",
        "server_name": "my-server",
        "websocket_timeout": 100.0,
        "websocket_connect_timeout": 7.0,
        "websocket_max_message_size": 2048,
        "websocket_max_frame_size": 1024,
        "ping_interval": 3.0,
        "ping_timeout": 9.0,
        "ws_per_message_deflate": False,
        "application_close_timeout": 2.5,
        "lifespan": "on",
        "shutdown_timeout": 1.5,
        "limit_max_requests": 500,
        "limit_max_requests_jitter": 50,
        "limit_concurrency": 64,
        "backlog": 128,
        "verbosity": 2,
    }
    assert {name: getattr(config, name) for name in expected} == expected


def test_daphne4_keyword_arguments_match_config(cli_run):
    kwargs = cli_run(
        "-t",
        "12",
        "--root-path",
        "/r",
        "--proxy-headers",
        "--server-name",
        "srv",
        "--websocket-timeout",
        "50",
        "--websocket-connect-timeout",
        "8",
        "--ping-interval",
        "4",
        "--ping-timeout",
        "5",
        "--application-close-timeout",
        "6",
        "-v",
        "0",
    )
    assert {
        name: kwargs[name] for name in CommandLineInterface.legacy_kwargs(Config())
    } == {
        "http_timeout": 12.0,
        "websocket_timeout": 50.0,
        "websocket_connect_timeout": 8.0,
        "ping_interval": 4.0,
        "ping_timeout": 5.0,
        "root_path": "/r",
        "proxy_forwarded_address_header": "X-Forwarded-For",
        "proxy_forwarded_port_header": "X-Forwarded-Port",
        "proxy_forwarded_proto_header": "X-Forwarded-Proto",
        "verbosity": 0,
        "application_close_timeout": 6.0,
        "server_name": "srv",
    }


def test_proxy_headers_use_x_forwarded_names(cli_run):
    config = cli_run("--proxy-headers")["config"]
    assert config.proxy_headers
    assert config.proxy_forwarded_address_header == "X-Forwarded-For"
    assert config.proxy_forwarded_port_header == "X-Forwarded-Port"
    assert config.proxy_forwarded_proto_header == "X-Forwarded-Proto"


def test_proxy_header_names_can_be_renamed(cli_run):
    kwargs = cli_run(
        "--proxy-headers",
        "--proxy-headers-host",
        "X-Real-IP",
        "--proxy-headers-port",
        "X-Real-Port",
    )
    config = kwargs["config"]
    assert config.proxy_forwarded_address_header == "X-Real-IP"
    assert config.proxy_forwarded_port_header == "X-Real-Port"
    assert config.proxy_forwarded_proto_header == "X-Forwarded-Proto"
    assert kwargs["proxy_forwarded_address_header"] == "X-Real-IP"
    assert kwargs["proxy_forwarded_port_header"] == "X-Real-Port"


@pytest.mark.parametrize(
    "option", ["--proxy-headers-host", "--proxy-headers-port"], ids=["host", "port"]
)
def test_renamed_proxy_header_without_proxy_headers_is_an_error(
    cli_run, capsys, option
):
    with pytest.raises(SystemExit) as info:
        cli_run(option, "X-Real-IP")
    assert info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert err.startswith("daphne: error:")
    assert "--proxy-headers" in err
    assert RecordingServer.instances == []


def test_no_server_name_sends_none(cli_run):
    kwargs = cli_run("--no-server-name")
    assert kwargs["config"].server_name is None
    assert kwargs["server_name"] is None


@pytest.mark.parametrize("spelling", ["-s", "--server-name"])
def test_server_name_both_spellings(cli_run, spelling):
    """-s is Daphne 4's short form of --server-name."""
    kwargs = cli_run(spelling, "example-server")
    assert kwargs["config"].server_name == "example-server"
    assert kwargs["server_name"] == "example-server"


@pytest.mark.parametrize("spelling", ["--websocket_timeout", "--websocket-timeout"])
def test_websocket_timeout_both_spellings(cli_run, spelling):
    assert cli_run(spelling, "123")["config"].websocket_timeout == 123.0


@pytest.mark.parametrize(
    "spelling", ["--websocket_connect_timeout", "--websocket-connect-timeout"]
)
def test_websocket_connect_timeout_both_spellings(cli_run, spelling):
    assert cli_run(spelling, "11")["config"].websocket_connect_timeout == 11.0


def test_negative_websocket_timeouts_mean_never(cli_run):
    kwargs = cli_run("--websocket_timeout", "-1", "--websocket_connect_timeout", "-5")
    assert kwargs["config"].websocket_timeout is None
    assert kwargs["config"].websocket_connect_timeout is None
    assert kwargs["websocket_timeout"] is None
    assert kwargs["websocket_connect_timeout"] is None


def test_max_request_body_size_zero_means_no_limit(cli_run):
    assert (
        cli_run("--max-request-body-size", "0")["config"].max_request_body_size is None
    )


@pytest.mark.parametrize("mode", ["auto", "on", "off"])
def test_lifespan_modes(cli_run, mode):
    assert cli_run("--lifespan", mode)["config"].lifespan == mode


def test_verbosity_zero_without_access_log_logs_no_requests(cli_run):
    kwargs = cli_run("-v", "0")
    assert kwargs["config"].verbosity == 0
    assert kwargs["action_logger"] is None


def test_verbosity_one_logs_requests_to_stdout(cli_run):
    logger = cli_run("-v", "1")["action_logger"]
    assert isinstance(logger, AccessLogGenerator)


def test_access_log_file_is_appended_to(cli_run, tmp_path):
    path = tmp_path / "access.log"
    path.write_text("an earlier line\n")
    logger = cli_run("-v", "0", "--access-log", str(path))["action_logger"]
    assert isinstance(logger, AccessLogGenerator)
    logger(
        "http",
        "complete",
        {
            "path": "/logged-path",
            "status": 200,
            "method": "GET",
            "client": "127.0.0.1:5000",
            "time_taken": 0.1,
            "size": 10,
        },
    )
    logger.stream.close()
    earlier, logged = path.read_text().splitlines()
    assert earlier == "an earlier line"
    assert "/logged-path" in logged


# --------------------------------------------------------------------------
# The real command in a subprocess
# --------------------------------------------------------------------------


def daphne(*args: str, env: dict | None = None, timeout: float = 20):
    """Run ``python -m daphne ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "daphne", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


HELP_OPTIONS = [
    "--workers",
    "--workers-share-nothing",
    "-b",
    "-p",
    "-u",
    "--fd",
    "-e",
    "-v",
    "-t",
    "--access-log",
    "--log-fmt",
    "--ping-interval",
    "--ping-timeout",
    "--websocket_timeout",
    "--websocket_connect_timeout",
    "--websocket-max-message-size",
    "--websocket-max-frame-size",
    "--ws-per-message-deflate",
    "--no-ws-per-message-deflate",
    "--application-close-timeout",
    "--root-path",
    "--proxy-headers",
    "--proxy-headers-host",
    "--proxy-headers-port",
    "--forwarded-allow-ips",
    "-s",
    "--server-name",
    "--no-server-name",
    "--lifespan",
    "--interface",
    "--force-sync",
    "--ws-protocol",
    "--limit-max-requests",
    "--limit-max-requests-jitter",
    "--limit-concurrency",
    "--backlog",
]


@pytest.fixture(scope="module")
def help_text() -> str:
    result = daphne("-h")
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("option", HELP_OPTIONS)
def test_help_documents_option(help_text, option):
    # The option as a whole word, e.g. "--proxy-headers" but not as the prefix
    # of "--proxy-headers-host".
    pattern = rf"(?<![\w-]){re.escape(option)}(?![\w-])"
    assert re.search(pattern, help_text), f"{option} missing from daphne -h"


def test_help_shows_the_application_argument(help_text):
    assert help_text.startswith("usage: daphne")
    assert "module.path:object.path" in help_text


def assert_one_line_error(result, *needles: str) -> str:
    """The command failed with exactly one ``daphne: error:`` line on stderr."""
    assert result.returncode not in (0, None), result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("daphne: error:"), line
    for needle in needles:
        assert needle in line
    return line


# Each case: arguments (the application last) and text the error must name.
# They are started all at once (see ``error_results``) to keep the run short.
ONE_LINE_ERRORS = {
    "nonexistent module": (
        ["daphne_no_such_module_anywhere:app"],
        ["daphne_no_such_module_anywhere"],
    ),
    "module without the attribute": (
        ["tests.cli_apps:no_such_application"],
        ["no_such_application"],
    ),
    "attribute not callable": (["tests.cli_apps:not_callable"], ["not callable"]),
    "path without colon": (["tests.cli_apps"], ["tests.cli_apps"]),
    "missing application": ([], ["module.path:object.path"]),
    "-p 70000": (["-p", "70000", APP], ["70000"]),
    "-p abc": (["-p", "abc", APP], ["abc"]),
    "-t -1": (["-t", "-1", APP], ["--http-timeout"]),
    "--ping-timeout 0": (["--ping-timeout", "0", APP], ["--ping-timeout"]),
    "-v 5": (["-v", "5", APP], ["5"]),
    "--fd -1": (["--fd", "-1", APP], ["-1"]),
    "--lifespan maybe": (["--lifespan", "maybe", APP], ["maybe"]),
    "--root-path /x/": (["--root-path", "/x/", APP], ["--root-path"]),
    "--access-log in a missing directory": (
        ["--access-log", "/nonexistent-daphne-dir/access.log", APP],
        ["/nonexistent-daphne-dir/access.log"],
    ),
    "--proxy-headers-host alone": (
        ["--proxy-headers-host", "X-Real-IP", APP],
        ["--proxy-headers"],
    ),
}

# Failures found only while starting to listen: checked by
# ``assert_fails_at_startup`` below.
STARTUP_ERRORS = {
    "-e nonsense:1": (["-e", "nonsense:1", APP], ["nonsense:1"]),
    "-e tcp:notaport": (["-e", "tcp:notaport", APP], ["tcp:notaport"]),
    "unix socket in a missing directory": (
        ["-u", "/nonexistent-daphne-dir/daphne.sock", APP],
        ["/nonexistent-daphne-dir/daphne.sock"],
    ),
    "--fd of a closed descriptor": (["--fd", "987", APP], ["987"]),
}

# Start-up failures with INFO logging off: stderr should be the error alone.
QUIET_STARTUP_ERRORS = {
    "quiet -e nonsense:1": ["-v", "0", "-e", "nonsense:1", APP],
    "quiet unix socket in a missing directory": [
        "-v",
        "0",
        "-u",
        "/nonexistent-daphne-dir/daphne.sock",
        APP,
    ],
}


# Bad --log-fmt values (see test_bad_log_format_is_a_one_line_error). The
# second one is accepted today and the server keeps running, so an invalid
# endpoint is added to make it stop on its own.
LOG_FORMAT_ERRORS = {
    "--log-fmt with an unclosed field": ["--log-fmt", "%(asctime", APP],
    "--log-fmt with an unknown field": [
        "--log-fmt",
        "%(no_such_field)s",
        "-e",
        "nonsense:1",
        APP,
    ],
}


@pytest.fixture(scope="module")
def error_results():
    """Run every error case at once; name -> (CompletedProcess, seconds).

    (An ImportError raised by the module itself is the user's error, shown
    with its traceback: tests/test_cli_user_errors.py.)"""
    cases = {**ONE_LINE_ERRORS, **STARTUP_ERRORS}
    for extra in (QUIET_STARTUP_ERRORS, LOG_FORMAT_ERRORS):
        cases.update((name, (args, [])) for name, args in extra.items())

    def timed(args):
        started = time.monotonic()
        result = daphne(*args)
        return result, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(timed, args) for name, (args, _) in cases.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", ONE_LINE_ERRORS)
def test_bad_input_is_a_one_line_error(error_results, case):
    result, _ = error_results[case]
    assert_one_line_error(result, *ONE_LINE_ERRORS[case][1])


@pytest.mark.parametrize("case", LOG_FORMAT_ERRORS)
def test_bad_log_format_is_a_one_line_error(error_results, case):
    result, _ = error_results[case]
    assert_one_line_error(result, "--log-fmt")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["-p", "-1"], "-1"),
        (["-t", "0"], "--http-timeout"),
        (["--ping-interval", "-1"], "--ping-interval"),
        (["--shutdown-timeout", "-1"], "--shutdown-timeout"),
        (["--application-close-timeout", "nan"], "nan"),
        (["--keep-alive-timeout", "inf"], "inf"),
        (["--fd", "three"], "three"),
        (["--websocket-max-message-size", "-1"], "-1"),
        (["--server-name", "bad\x01name"], "--server-name"),
        (["--limit-concurrency", "0"], "--limit-concurrency"),
        (["--limit-max-requests", "-3"], "--limit-max-requests"),
        (["--limit-max-requests-jitter", "5"], "--limit-max-requests-jitter"),
        (["--backlog", "0"], "--backlog"),
        (["--backlog", "many"], "many"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_more_nonsensical_values_are_one_line_errors(cli_run, capsys, args, needle):
    """Same check in this process (cheaper than a subprocess per case)."""
    with pytest.raises(SystemExit) as info:
        cli_run(*args)
    assert info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("daphne: error:")
    assert needle in lines[0]
    assert RecordingServer.instances == []


# Failures found only while starting to listen. At the default verbosity the
# INFO log ("Starting server at ...") also goes to stderr, so here the last
# line is checked; the quiet variants below check the whole of stderr.


def assert_fails_at_startup(result, *needles: str) -> str:
    assert result.returncode not in (0, None), result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("daphne: error:"), lines
    for needle in needles:
        assert needle in lines[-1]
    assert sum(line.startswith("daphne: error:") for line in lines) == 1
    assert not any("Listening on" in line for line in lines)
    return lines[-1]


@pytest.fixture
def busy_port():
    """A port on 127.0.0.1 with a socket already listening on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_error_port_in_use_exits_quickly(busy_port):
    started = time.monotonic()
    result = daphne("-b", "127.0.0.1", "-p", str(busy_port), APP, timeout=15)
    assert time.monotonic() - started < 5
    assert_fails_at_startup(result, str(busy_port))


@pytest.mark.parametrize("case", STARTUP_ERRORS)
def test_startup_failure_exits_with_an_error(error_results, case):
    result, seconds = error_results[case]
    assert seconds < 10
    assert_fails_at_startup(result, *STARTUP_ERRORS[case][1])


@pytest.mark.parametrize("case", QUIET_STARTUP_ERRORS)
def test_quiet_startup_failure_is_a_single_line(error_results, case):
    result, _ = error_results[case]
    assert_one_line_error(result)


# --------------------------------------------------------------------------
# Both ways to start daphne
# --------------------------------------------------------------------------


DAPHNE_SCRIPT = Path(sys.executable).with_name("daphne")


def test_version_from_python_dash_m():
    result = daphne("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"daphne {__version__}"


@pytest.mark.skipif(not DAPHNE_SCRIPT.exists(), reason="no daphne console script")
def test_version_from_console_script():
    result = subprocess.run(
        [str(DAPHNE_SCRIPT), "--version"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"daphne {__version__}"


def test_python_dash_m_daphne_serves():
    with run_daphne(app=APP) as server:
        response = httpx.get(server.url + "/via-module", timeout=10)
        assert response.status_code == 200
        assert response.json()["path"] == "/via-module"
        assert response.json()["pid"] == server.proc.pid
    assert server.proc.returncode == 0


@pytest.mark.skipif(not DAPHNE_SCRIPT.exists(), reason="no daphne console script")
def test_console_script_serves(tmp_path):
    proc = subprocess.Popen(
        [str(DAPHNE_SCRIPT), "-e", "tcp:0:interface=127.0.0.1", APP],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        for line in proc.stderr:
            match = re.search(r"Listening on \S+ at 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the daphne script never listened"
        response = httpx.get(f"http://127.0.0.1:{port}/via-script", timeout=10)
        assert response.status_code == 200
        assert response.json()["path"] == "/via-script"
        assert response.json()["pid"] == proc.pid
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_application_importing_the_default_reactor_still_serves():
    """tests/cli_reactor_app.py starts with ``from twisted.internet import
    reactor``; daphne must still run its asyncio reactor."""
    with run_daphne(app="tests.cli_reactor_app:application") as server:
        response = httpx.get(server.url + "/reactor", timeout=10)
        assert response.status_code == 200
        assert response.json()["path"] == "/reactor"
        assert server.stop() == 0
    assert "Traceback" not in "\n".join(server.stderr)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["-t", "-1"], "--http-timeout"),
        (["--ping-timeout", "0"], "--ping-timeout"),
        (["--root-path", "x"], "--root-path"),
        (
            ["--websocket-max-frame-size", "1", "--shutdown-timeout", "-2"],
            "--shutdown-timeout",
        ),
    ],
)
def test_config_errors_name_the_option(args, option, capsys, monkeypatch):
    """A value the Config refuses is reported with the option's name, as typed
    on the command line, not the internal field name."""
    # Isolated like cli_run: the real CommandLineInterface would start
    # Twisted's global logging in this process, which replays every event
    # buffered since it started (an autobahn warning from an earlier test, say)
    # onto stderr here, and would reconfigure pytest's root logger.
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    cli = RecordingCLI()
    with pytest.raises(SystemExit) as exit_info:
        cli.run([*args, "tests.cli_apps:application"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"daphne: error: {option} ")
    assert "_" not in err.split(":", 2)[2].split()[0]
