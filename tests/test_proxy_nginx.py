"""A real nginx in front of a real daphne, configured as the README says.

The nginx block is read from README.rst ("Unix socket behind nginx"), so the
recipe users copy is the one tested: only the socket path, the listening port
and the upstream (a UNIX socket or TCP) change. nginx runs in the foreground
with everything it writes under ``tmp_path``. The client reaches nginx from
127.0.0.2, an address no proxy list trusts, and forges every proxy header;
daphne must name the client by the address nginx saw.

nginx comes from ``make test`` (the Makefile's ``nginx`` step); when it is
not installed, these tests skip and say so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_client

from tests.clients import Raw
from tests.conftest import ROOT, run_daphne

NGINX = shutil.which("nginx") or next(
    (
        path
        for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
        if Path(path).exists()
    ),
    None,
)

pytestmark = pytest.mark.skipif(
    NGINX is None,
    reason="nginx is not installed (`make test` installs it with apt-get "
    "where it can; or apt-get install nginx-light)",
)

#: The client's own address: on the loopback network, but trusted by no one.
CLIENT = "127.0.0.2"
FORGED = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "1"),
    ("Forwarded", "for=203.0.113.8;proto=https"),
]


def readme_nginx_block() -> str:
    """The nginx configuration of README.rst's "Unix socket behind nginx"."""
    text = (ROOT / "README.rst").read_text()
    start = text.index("A matching nginx configuration (inside the ``http`` block)::")
    lines = text[start:].splitlines()[2:]
    block = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_config(tmp_path: Path, port: int, upstream: str) -> str:
    """nginx.conf for the README block: the given upstream server, listening on
    127.0.0.1:port, every file of nginx's own under tmp_path."""
    block = readme_nginx_block()
    for old, new in (
        ("server unix:/run/daphne.sock;", f"server {upstream};"),
        ("listen 80;", f"listen 127.0.0.1:{port};"),
    ):
        assert old in block, f"the README's nginx block no longer has {old!r}"
        block = block.replace(old, new)
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        if f"--without-http_{kind}_module" not in built
    )
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
worker_processes 1;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path / "access.log"};
{temp_paths}
{block}
}}
"""


@contextlib.contextmanager
def run_nginx(tmp_path: Path, upstream: str):
    """nginx in the foreground in front of ``upstream``; yields its port."""
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, port, upstream))
    error_log = tmp_path / "error.log"
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-e", str(error_log), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                log = error_log.read_text() if error_log.exists() else ""
                raise AssertionError(f"nginx exited: {proc.stderr.read()}\n{log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        proc.kill()  # (nothing, once it has exited)
        proc.wait()


VIA = pytest.mark.parametrize("via", ["unix", "tcp"])


@contextlib.contextmanager
def behind_nginx(tmp_path: Path, via: str, app: str):
    """daphne with --proxy-headers and its default trust list, behind nginx
    over a UNIX socket or over TCP from 127.0.0.1; yields nginx's port."""
    if via == "unix":
        path = tmp_path / "daphne.sock"
        args = ["-u", str(path), "--proxy-headers"]
        with run_daphne(*args, app=app, listen=False) as server:
            server.wait_listening()
            with run_nginx(tmp_path, f"unix:{path}") as port:
                yield port
    else:
        with (
            run_daphne("--proxy-headers", app=app) as server,
            run_nginx(tmp_path, f"127.0.0.1:{server.port}") as port,
        ):
            yield port


def from_client(port: int) -> socket.socket:
    """A connection to nginx from 127.0.0.2 (the loopback network's other
    addresses reach 127.0.0.1 on Linux)."""
    sock = socket.socket()
    sock.settimeout(5)
    try:
        sock.bind((CLIENT, 0))
    except OSError as exc:
        sock.close()
        pytest.skip(f"cannot bind a client socket to {CLIENT}: {exc}")
    sock.connect(("127.0.0.1", port))
    return sock


def test_the_tested_block_is_the_readme_recipe():
    block = readme_nginx_block()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in block
    assert "proxy_set_header X-Forwarded-Port $remote_port;" in block


@VIA
def test_a_forged_client_address_is_not_taken_through_nginx(tmp_path, via):
    """The issue's attack: the client's own X-Forwarded-For reaches daphne
    with nginx's entry appended; the client is the address nginx saw, and
    the scheme is nginx's, not the client's X-Forwarded-Proto or Forwarded."""
    with behind_nginx(tmp_path, via, "tests.apps:application") as port:
        sock = from_client(port)
        local_port = sock.getsockname()[1]
        with Raw(port, sock=sock) as conn:
            head = "".join(f"{name}: {value}\r\n" for name, value in FORGED)
            conn.send(
                f"GET /scope HTTP/1.1\r\nHost: example.com\r\n{head}\r\n".encode()
            )
            response = conn.read_response()
    assert response.status == 200, response
    scope = response.json()
    headers = dict(scope["headers"])
    # nginx passed the forgery on, appending what it saw ...
    assert headers["x-forwarded-for"] == f"203.0.113.7, {CLIENT}"
    assert headers["forwarded"] == "for=203.0.113.8;proto=https"
    # ... and daphne took only nginx's part.
    assert scope["client"] == [CLIENT, local_port]
    assert scope["scheme"] == "http"


@VIA
def test_a_websocket_through_nginx_gets_the_client_nginx_saw(tmp_path, via):
    with behind_nginx(tmp_path, via, "tests.ws_apps:application") as port:
        sock = from_client(port)
        local_port = sock.getsockname()[1]
        with ws_client(
            f"ws://127.0.0.1:{port}/scope",
            sock=sock,
            additional_headers=FORGED,
            proxy=None,
            open_timeout=5,
        ) as ws:
            scope = json.loads(ws.recv(timeout=5))["scope"]
    assert dict(scope["headers"])["x-forwarded-for"] == f"203.0.113.7, {CLIENT}"
    assert scope["client"] == [CLIENT, local_port]
    assert scope["scheme"] == "ws"


def test_the_generated_config_passes_nginx_t(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, free_port(), "unix:/nonexistent.sock"))
    error_log = str(tmp_path / "error.log")
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-e", error_log, "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"syntax is ok", checked.stderr)
