"""Shared fixtures: a real daphne in a subprocess, reached over real sockets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"Listening on (\S+) at (\S+)")


class DaphneServer:
    """A daphne subprocess; its stdout and stderr lines are collected."""

    def __init__(
        self,
        args: list[str],
        env: dict | None = None,
        module: str = "daphne",
        session: bool = False,
        wrapper: tuple[str, ...] = (),
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """``python -m MODULE ARGS``; ``session``: in a session of its own,
        so that :meth:`stop` signals its children too (an autoreloader's);
        ``wrapper``: a command that execs the rest (``systemd-socket-activate``);
        ``pass_fds``: descriptors it inherits."""
        self.args = args
        self.session = session
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", module, *args],
            pass_fds=pass_fds,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=session,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.addresses: list[str] = []
        self.listening = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match:
                self.addresses.append(match.group(2))
                self.listening.set()

    def wait_listening(self, count: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.addresses) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"daphne did not start (exit {self.proc.poll()}):\n"
                    + "\n".join(self.stderr)
                )
            time.sleep(0.02)

    @property
    def port(self) -> int:
        return int(self.addresses[0].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_line(self, pattern: str, stream: str = "stdout", timeout=5) -> str:
        """The first line matching ``pattern``, waiting for it if needed."""
        lines = getattr(self, stream)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no {stream} line matches {pattern!r}: {lines[-20:]}")

    def wait(self, timeout: float = 15) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(2)
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            if self.session:
                # The process group is the session's: this process and its
                # children.
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        try:
            code = self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.wait(timeout)
        if self.session:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return code


@contextmanager
def run_daphne(*args: str, app: str = "tests.apps:application", listen=True, **kw):
    """Run ``python -m daphne ARGS APP``; by default on a free 127.0.0.1 port."""
    endpoint = ["-e", "tcp:0:interface=127.0.0.1"] if listen else []
    server = DaphneServer([*endpoint, *args, app], **kw)
    try:
        if listen:
            server.wait_listening()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server():
    """A daphne serving tests.apps with the access log on stdout."""
    with run_daphne("--access-log", "-", "--http-timeout", "30") as running:
        yield running


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate for 127.0.0.1: (key path, certificate path)."""
    return make_tls_files(tmp_path)


def make_tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """Write a self-signed key and certificate for 127.0.0.1 in ``tmp_path``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path = tmp_path / "key.pem"
    cert_path = tmp_path / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def tls_endpoint(tls_files) -> str:
    """An ``ssl:`` endpoint string on a free 127.0.0.1 port for ``tls_files``."""
    key, cert = (str(path).replace(":", r"\:") for path in tls_files)
    return f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"


@contextmanager
def run_tls_daphne(tls_files, *args: str, app: str):
    """daphne on a TLS endpoint, listening, and a client SSL context that
    trusts its certificate: ``(server, context)``."""
    import ssl

    endpoint = tls_endpoint(tls_files)
    with run_daphne(*args, "-e", endpoint, app=app, listen=False) as server:
        server.wait_listening()
        yield server, ssl.create_default_context(cafile=str(tls_files[1]))


# -- the in-memory harness (tests/harness.py) ----------------------------------------


@pytest.fixture(params=["http1"])
def connection(request) -> str:
    """The connection axis: which protocol the in-memory client speaks."""
    return request.param


@pytest.fixture(params=["app", "layer"])
def host(request) -> str:
    """The application axis: an ASGI 3 app, or a channel layer and its worker."""
    return request.param


@pytest.fixture
def serve(host, connection):
    """``serve(**options)``: a :class:`tests.harness.Harness` with a real host."""
    from tests.harness import Harness

    made = []

    def serve(**options):
        made.append(Harness(host, connection, **options))
        return made[-1]

    yield serve
    for harness in made:
        harness.close()
