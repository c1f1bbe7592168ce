"""``manage.py runserver`` with ``daphne`` in INSTALLED_APPS, over real sockets.

Each test runs ``python -m django runserver 127.0.0.1:0`` (or ``check``) in
a subprocess with tests/django_project/project_settings.py, reads the port
from the banner, and talks to it over HTTP and WebSocket.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import django
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from daphne import __version__

from .conftest import ROOT, DaphneServer

pytest.importorskip("channels")

SETTINGS = "tests.django_project.project_settings"
BANNER = re.compile(r"development server at http://127\.0\.0\.1:(\d+)/")
#: Django's development server access line: ``[date time] "request" status size``.
ACCESS = r"^\[\d{2}/\w{3}/\d{4} \d{2}:\d{2}:\d{2}\] "


def project_env(tmp_path, **extra: str) -> dict:
    return {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DAPHNE_TEST_DB_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@contextmanager
def runserver(tmp_path, *args: str, env: dict | None = None, address="127.0.0.1:0"):
    """``runserver ADDRESS ARGS``; yields the process once its banner is out."""
    server = DaphneServer(
        ["runserver", address, *args],
        env=project_env(tmp_path, **(env or {})),
        module="django",
        session=True,
    )
    try:
        line = server.wait_for_line(BANNER.pattern, timeout=30)
        server.port_number = int(BANNER.search(line).group(1))
        server.base = f"http://127.0.0.1:{server.port_number}"
        yield server
    finally:
        server.stop()


def django_command(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env={**os.environ, **project_env(tmp_path, **env)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_runserver_serves_http_and_websocket_through_daphne(tmp_path):
    """With the autoreloader (the default), as ``./manage.py runserver``."""
    with runserver(tmp_path) as server:
        stdout = "\n".join(server.stdout)
        assert "Performing system checks..." in stdout
        version = f"Django version {django.get_version()}, using settings '{SETTINGS}'"
        assert version in stdout
        assert f"Starting ASGI/daphne version {__version__} development server" in (
            stdout
        )
        assert "Quit the server with CONTROL-C." in stdout

        response = httpx.get(server.base + "/hello/", params={"q": "rs"}, timeout=10)
        assert response.status_code == 200
        assert response.headers["server"] == "daphne"
        assert response.json()["query"] == "rs"
        size = len(response.content)
        server.wait_for_line(
            ACCESS + re.escape(f'"GET /hello/?q=rs" 200 {size}') + "$", "stderr"
        )
        assert httpx.get(server.base + "/missing/", timeout=10).status_code == 404
        server.wait_for_line(ACCESS + re.escape('"GET /missing/" 404 '), "stderr")

        ws_url = f"ws://127.0.0.1:{server.port_number}/ws/echo/room1/"
        with connect(ws_url, open_timeout=10) as ws:
            port = ws.local_address[1]
            ws.send("hi")
            assert ws.recv(timeout=10) == "room1:hi"
        client = re.escape(f"[127.0.0.1:{port}]")
        server.wait_for_line(
            ACCESS + r"WebSocket CONNECT /ws/echo/room1/ " + client, "stderr"
        )
        server.wait_for_line(
            ACCESS + r"WebSocket DISCONNECT /ws/echo/room1/ " + client, "stderr"
        )


def test_static_files_are_served_in_debug_only(tmp_path):
    path = "/static/daphne-test.txt"
    with runserver(tmp_path, "--noreload", env={"DAPHNE_TEST_DEBUG": "1"}) as server:
        response = httpx.get(server.base + path, timeout=10)
        assert response.status_code == 200
        assert response.text == "static file of the daphne test project\n"
        assert response.headers["server"] == "daphne"
        # The application is still reached behind the static files handler.
        assert httpx.get(server.base + "/hello/", timeout=10).status_code == 200
    with runserver(tmp_path, "--noreload") as server:
        assert httpx.get(server.base + path, timeout=10).status_code == 404
    with runserver(tmp_path, "--noreload", "--insecure") as server:
        assert httpx.get(server.base + path, timeout=10).status_code == 200
    debug = {"DAPHNE_TEST_DEBUG": "1"}
    with runserver(tmp_path, "--noreload", "--nostatic", env=debug) as server:
        assert httpx.get(server.base + path, timeout=10).status_code == 404


def test_noasgi_runs_djangos_own_server(tmp_path):
    with runserver(tmp_path, "--noreload", "--noasgi") as server:
        stdout = "\n".join(server.stdout)
        assert "Starting development server at" in stdout
        assert "daphne" not in stdout
        response = httpx.get(server.base + "/hello/", timeout=10)
        assert response.status_code == 200
        assert response.headers["server"].startswith("WSGIServer/")
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{server.port_number}/ws/echo/r/", open_timeout=10)


def test_http_timeout_option(tmp_path):
    with runserver(tmp_path, "--noreload", "--http_timeout", "1") as server:
        started = time.monotonic()
        response = httpx.get(server.base + "/slow/?s=3", timeout=10)
        assert response.status_code == 503
        assert 0.9 < time.monotonic() - started < 2.9
        server.wait_for_line(ACCESS + re.escape('"GET /slow/?s=3" 503 '), "stderr")


def test_websocket_handshake_timeout_option(tmp_path):
    with runserver(
        tmp_path, "--noreload", "--websocket_handshake_timeout", "1"
    ) as server:
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{server.port_number}/ws/silent/", open_timeout=10)
        assert refused.value.response.status_code == 403
        assert 0.9 < time.monotonic() - started < 5


def test_a_bad_timeout_is_a_command_error(tmp_path):
    result = django_command(tmp_path, "runserver", "--noreload", "--http_timeout", "0")
    assert result.returncode == 1
    assert "CommandError: --http-timeout must be greater than 0" in result.stderr


def test_a_port_in_use_is_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = django_command(
            tmp_path, "runserver", "--noreload", f"127.0.0.1:{port}"
        )
    finally:
        taken.close()
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.stderr
    assert f"Cannot listen on tcp:port={port}:interface=127.0.0.1" in error[0]
    assert "Traceback" not in result.stderr


def test_sigint_without_the_reloader_stops_gracefully(tmp_path):
    with runserver(tmp_path, "--noreload") as server:
        assert httpx.get(server.base + "/hello/", timeout=10).status_code == 200
        server.proc.send_signal(signal.SIGINT)
        assert server.wait(15) == 0


# -- system checks ---------------------------------------------------------------


def test_check_passes_for_the_channels_setup(tmp_path):
    result = django_command(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_warns_when_staticfiles_comes_first(tmp_path):
    result = django_command(tmp_path, "check", DAPHNE_TEST_STATICFILES_FIRST="1")
    assert result.returncode == 0, result.stderr
    assert "daphne.W001" in result.stderr
    assert "'daphne' is listed after 'django.contrib.staticfiles'" in result.stderr
    # ... and that is why: staticfiles' runserver (Django's WSGI one) wins.
    with runserver(
        tmp_path, "--noreload", env={"DAPHNE_TEST_STATICFILES_FIRST": "1"}
    ) as server:
        assert "Starting ASGI/daphne" not in "\n".join(server.stdout)
        assert (
            httpx.get(server.base + "/hello/", timeout=10)
            .headers["server"]
            .startswith("WSGIServer/")
        )


def test_check_fails_without_asgi_application(tmp_path):
    result = django_command(tmp_path, "check", DAPHNE_TEST_ASGI_APPLICATION="")
    assert result.returncode == 1
    assert "daphne.E001" in result.stderr
    assert "settings.ASGI_APPLICATION is not set" in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "tests.django_project.nowhere.application",
            "there is no module named 'tests.django_project.nowhere'",
        ),
        (
            "tests.django_project.asgi.nothing",
            "module 'tests.django_project.asgi' has no 'nothing'",
        ),
        (
            "tests.django_project.broken_asgi.application",
            "could not be imported: NameError: name 'undefined_in_broken_asgi' "
            "is not defined",
        ),
    ],
    ids=["no-module", "no-attribute", "error-in-the-module"],
)
def test_check_fails_when_asgi_application_cannot_be_imported(
    tmp_path, target, message
):
    result = django_command(tmp_path, "check", DAPHNE_TEST_ASGI_APPLICATION=target)
    assert result.returncode == 1
    assert "daphne.E002" in result.stderr
    assert message in result.stderr
    if "broken" in target:
        # The hint points at the line of the project's code that failed.
        broken = ROOT / "tests" / "django_project" / "broken_asgi.py"
        assert f'HINT: File "{broken}", line 4, in <module>' in result.stderr


def test_runserver_stops_on_a_failing_check(tmp_path):
    result = django_command(
        tmp_path,
        "runserver",
        "--noreload",
        "127.0.0.1:0",
        DAPHNE_TEST_ASGI_APPLICATION="tests.django_project.nowhere.app",
    )
    assert result.returncode == 1
    assert "daphne.E002" in result.stderr
