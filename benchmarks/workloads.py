"""The measurements: one :class:`Workload` per section of the report.

Standard library only. A workload runs against a server that is already up
(see :class:`servers.RunningServer`) and returns its metric values, or raises
:class:`Unsupported` (the server lacks the feature: shown as "n/a") or
:class:`MeasurementFailed` (shown as "failed", with the reason).

Adding a section means writing a subclass with a ``key``, ``title``,
``feature`` and ``metrics`` and a ``measure`` method, and appending an
instance to :data:`WORKLOADS`; servers declare the feature in
:attr:`servers.ServerSpec.features` (``yes``/``no``/``probe``).

The "channel layer mode" sections (:class:`ChannelLayerMode`) reuse the HTTP
and WebSocket measurements unchanged; only the server differs: it is started
in mode LAYER (serving ``layer_app:channel_layer``, whose worker threads
answer what ``app:application`` answers), the section needs the
``channel_layer`` feature, and its ratios are against Daphne 1.4.2.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from servers import (
    APP,
    BENCH_DIR,
    CORES_BASELINE,
    HOST,
    LAYER,
    LAYER_BASELINE,
    TLS,
    Certificate,
    Paths,
    RunningServer,
    ServerSpec,
    child_env,
    make_certificate,
    pin,
)

WS_CLIENT = BENCH_DIR / "ws_client.py"


class Unsupported(Exception):
    """The server does not offer what this workload needs."""


class MeasurementFailed(Exception):
    """The load generator or the server broke; the value would be meaningless."""


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    kind: str  # "rate", "ms", "kib", "mib" or "pct": how to format it
    better: str = "higher"  # or "lower"
    #: compared with the baseline (a "(1.23x)" ratio) and drawn in the chart;
    #: off for diagnostics such as the load generator's own CPU use
    compare: bool = True


@dataclass
class Settings:
    """What a run is asked to do; filled in from the command line."""

    paths: Paths
    load_cpu: int | None
    duration: int  # seconds per wrk run
    warmup: int  # seconds of discarded wrk load before each measured run
    ws_connections: int
    ws_messages: int
    ws_size: int
    idle_connections: int
    log_dir: Path
    layer_workers: int = 2  # worker threads in layer_app (channel layer mode)
    layer_capacity: int = 100  # messages per channel in layer_app's layer


class Workload:
    key = ""
    title = ""
    #: feature a server needs (see ``ServerSpec.features``); None: all have it
    feature: str | None = None
    #: how the server is started: APP (``app:application``) or LAYER
    #: (``layer_app:channel_layer``); see ``ServerSpec.command``
    mode = APP
    #: the server the ratios are against; None: the run's (Daphne 4)
    baseline: str | None = None
    metrics: tuple[Metric, ...] = ()
    #: the metric drawn in the chart
    headline = ""
    #: the servers measured in this section; None: every server that is not
    #: ``dedicated`` (see ``ServerSpec.dedicated``)
    servers: tuple[str, ...] | None = None
    #: server pinned to one CPU and load generator to another (``--server-cpu``,
    #: ``--load-cpu``); False: both run unpinned, sharing every CPU
    pinned = True
    #: a sentence printed under the section's heading
    note = ""

    def applies_to(self, spec: ServerSpec) -> bool:
        """Whether ``spec`` is measured in this section at all (else: no row)."""
        if self.servers is not None:
            return spec.key in self.servers
        return not spec.dedicated

    def load_cpu(self, settings: Settings) -> int | None:
        """The CPU the load generator is pinned to, or None."""
        return settings.load_cpu if self.pinned else None

    def title_for(self, settings: Settings) -> str:
        """The section heading, with the sizes this run used."""
        return self.title

    def describe(self, settings: Settings) -> dict:
        """The settings worth recording next to the results."""
        return {}

    def server_env(self, settings: Settings) -> dict[str, str]:
        """Environment variables added to the server's own."""
        return {}

    def certificate(self, settings: Settings) -> Certificate | None:
        """The certificate the server is started with (mode TLS), or None."""
        return None

    def measure(self, server: RunningServer, settings: Settings) -> dict:
        raise NotImplementedError


# -- HTTP with wrk -------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_LATENCY = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(output: str) -> dict:
    """Requests/s, latency percentiles (ms) and error counts from wrk's report."""
    rate = _RATE.search(output)
    if not rate:
        raise MeasurementFailed("no Requests/sec in wrk output: " + tail(output))
    result: dict = {"rps": float(rate.group(1))}
    for percent, value, unit in _LATENCY.findall(output):
        result[f"p{percent}_ms"] = float(value) * _UNITS_MS[unit]
    total = _TOTAL.search(output)
    if total:
        result["requests"] = int(total.group(1))
        result["seconds"] = float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000
    errors = _SOCKET_ERRORS.search(output)
    result["socket_errors"] = sum(map(int, errors.groups())) if errors else 0
    non_2xx = _NON_2XX.search(output)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    return result


def tail(text: str, lines: int = 4) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class HttpWrk(Workload):
    feature = "http"
    headline = "rps"
    metrics = (
        Metric("rps", "req/s", "rate"),
        Metric("p50_ms", "p50 ms", "ms", "lower"),
        Metric("p99_ms", "p99 ms", "ms", "lower"),
    )

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self.key = f"http-c{connections}"
        plural = "s" if connections != 1 else ""
        self.title = f"HTTP GET /, {connections} connection{plural}"

    def describe(self, settings: Settings) -> dict:
        return {
            "tool": "wrk",
            "threads": 1,
            "connections": self.connections,
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
        }

    def wrk(self, server: RunningServer, settings: Settings, seconds: int) -> str:
        argv = [
            "wrk",
            "-t1",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "--latency",
            f"http://{HOST}:{server.port}/",
        ]
        try:
            done = subprocess.run(
                pin(self.load_cpu(settings), argv),
                capture_output=True,
                text=True,
                timeout=seconds + 30,
            )
        except subprocess.TimeoutExpired as exc:
            raise MeasurementFailed(f"wrk did not finish in {seconds + 30} s") from exc
        if done.returncode != 0:
            raise MeasurementFailed(
                f"wrk exited with {done.returncode}: " + tail(done.stderr + done.stdout)
            )
        return done.stdout

    def measure(self, server: RunningServer, settings: Settings) -> dict:
        if settings.warmup > 0:
            self.wrk(server, settings, settings.warmup)
        result = parse_wrk(self.wrk(server, settings, settings.duration))
        server.check_alive()
        if not result.get("requests"):
            raise MeasurementFailed("wrk completed no request")
        return result


class HttpWrkCores(HttpWrk):
    """The same wrk load, on every CPU: worker processes against one process.

    Neither the server nor wrk is pinned, so a server with 2 worker
    processes can use both CPUs of a 2-core machine, sharing them with wrk
    (one thread, so at most one CPU). Only the multi-process servers and
    their single-process selves run here, against daphne ``--workers 1``.
    """

    pinned = False
    baseline = CORES_BASELINE
    servers = ("daphne-w1", "daphne-w2", "uvicorn-w1", "uvicorn-w2", "granian-w2")
    note = (
        "Multi-core: servers and wrk (one thread) unpinned, sharing every CPU; "
        "on a 2-core machine the server's processes and the load generator "
        "compete for both cores, so 2 workers cannot double 1 worker's req/s."
    )

    def __init__(self, connections: int) -> None:
        super().__init__(connections)
        self.key = f"http-c{connections}-cores"
        self.title = (
            f"Multi-core: HTTP GET /, {connections} connections, "
            "worker processes, unpinned"
        )

    def describe(self, settings: Settings) -> dict:
        return {**super().describe(settings), "pinned": False}


# -- HTTP/2 with h2load ------------------------------------------------------------

_H2LOAD_RATE = re.compile(r"finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req/s")
_H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored"
)
_H2LOAD_LATENCY = re.compile(
    r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)"
)

#: Servers that cannot take HTTP/2 in cleartext, and why (shown as n/a).
NO_CLEARTEXT_H2 = {
    "daphne4": "HTTP/2 only over TLS (Twisted's ALPN), no cleartext prior knowledge",
}


def parse_h2load(output: str) -> dict:
    """Requests/s, mean latency and failures from h2load's report."""
    rate = _H2LOAD_RATE.search(output)
    requests = _H2LOAD_REQUESTS.search(output)
    if not rate or not requests:
        raise MeasurementFailed("no req/s in h2load output: " + tail(output))
    total, _, done, succeeded, failed, errored = map(int, requests.groups())
    result: dict = {
        "rps": float(rate.group(3)),
        "requests": succeeded,
        "non_2xx": done - succeeded,
        "socket_errors": failed + errored,
    }
    latency = _H2LOAD_LATENCY.search(output)
    if latency:
        result["mean_ms"] = float(latency.group(5)) * _UNITS_MS[latency.group(6)]
    return result


class Http2Load(Workload):
    """HTTP/2 GET / with h2load: ``streams`` concurrent streams spread over
    ``connections`` connections, in cleartext with prior knowledge."""

    #: Its own feature name: Daphne 4 lacks cleartext HTTP/2 but not HTTP/2
    #: over TLS, and a lacking feature is remembered for the rest of the run.
    feature = "http2-cleartext"
    headline = "rps"
    servers = ("daphne", "daphne4", "hypercorn", "granian")
    #: Daphne 4 has no cleartext HTTP/2: the ratios are against hypercorn.
    baseline = "hypercorn"
    metrics = (
        Metric("rps", "req/s", "rate"),
        Metric("mean_ms", "mean ms", "ms", "lower"),
    )
    note = (
        "h2load (nghttp2), cleartext HTTP/2 with prior knowledge, ratios against "
        "hypercorn (granian, in Rust, for reference); uvicorn has no HTTP/2, "
        "Daphne 4 only over TLS."
    )

    def __init__(self, connections: int, streams: int) -> None:
        self.connections = connections
        self.streams = streams
        self.key = f"http2-c{connections}-s{streams}"
        self.title = f"HTTP/2 GET /, {streams} streams over {connections} connections"

    def describe(self, settings: Settings) -> dict:
        return {
            "tool": "h2load",
            "threads": 1,
            "connections": self.connections,
            "streams_per_connection": self.streams // self.connections,
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
        }

    #: h2load options naming the protocol (none: prior knowledge in cleartext)
    protocol_args: tuple[str, ...] = ()

    def url(self, server: RunningServer) -> str:
        return f"http://{HOST}:{server.port}/"

    def measure(self, server: RunningServer, settings: Settings) -> dict:
        reason = NO_CLEARTEXT_H2.get(server.spec.key)
        if reason is not None:
            raise Unsupported(reason)
        return self.measure_h2load(server, settings)

    def check_output(self, output: str) -> None:
        """Raise :class:`MeasurementFailed` if h2load did not speak HTTP/2."""

    def measure_h2load(self, server: RunningServer, settings: Settings) -> dict:
        """Run h2load against ``server`` and return its numbers."""
        argv = [
            "h2load",
            "-t1",
            f"-c{self.connections}",
            f"-m{self.streams // self.connections}",
            f"-D{settings.duration}",
            f"--warm-up-time={max(settings.warmup, 0)}",
            *self.protocol_args,
            self.url(server),
        ]
        seconds = settings.duration + settings.warmup
        try:
            done = subprocess.run(
                pin(self.load_cpu(settings), argv),
                capture_output=True,
                text=True,
                timeout=seconds + 30,
            )
        except FileNotFoundError as exc:
            raise Unsupported(
                "h2load is not installed (Debian: nghttp2-client)"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise MeasurementFailed(
                f"h2load did not finish in {seconds + 30} s"
            ) from exc
        if done.returncode != 0:
            raise MeasurementFailed(
                f"h2load exited with {done.returncode}: "
                + tail(done.stderr + done.stdout)
            )
        self.check_output(done.stdout)
        result = parse_h2load(done.stdout)
        server.check_alive()
        if not result["requests"]:
            raise MeasurementFailed("h2load completed no request: " + tail(done.stdout))
        return result


class Http2TlsLoad(Http2Load):
    """:class:`Http2Load` over TLS: h2load negotiates ``h2`` by ALPN (it fails
    if the server picks anything else), so Daphne 4 is measured too and the
    ratios are against it. Every server gets the same self-signed
    certificate, made once per run in a temporary folder
    (:func:`servers.make_certificate`)."""

    mode = TLS
    feature = "http2-tls"
    baseline = None
    # Offer h2 alone: h2load's default list ends with http/1.1, which would
    # measure HTTP/1.1 on a server that does not pick h2.
    protocol_args = ("--npn-list=h2",)
    note = (
        "h2load (nghttp2) over TLS, HTTP/2 by ALPN, a self-signed EC P-256 "
        "certificate made for the run; ratios against Daphne 4 (granian, in "
        "Rust, for reference); uvicorn has no HTTP/2."
    )

    def __init__(self, connections: int, streams: int) -> None:
        super().__init__(connections, streams)
        self.key = f"http2-tls-c{connections}-s{streams}"
        self.title = (
            f"HTTP/2 over TLS GET /, {streams} streams over {connections} connections"
        )
        self._folder: tempfile.TemporaryDirectory | None = None
        self._certificate: Certificate | None = None

    def describe(self, settings: Settings) -> dict:
        return {**super().describe(settings), "tls": "ALPN h2, EC P-256 self-signed"}

    def certificate(self, settings: Settings) -> Certificate:
        if self._certificate is None:
            self._folder = tempfile.TemporaryDirectory(prefix="daphne-bench-tls-")
            try:
                self._certificate = make_certificate(
                    Path(self._folder.name), settings.paths.bin("main") / "python"
                )
            except FileNotFoundError as exc:
                raise Unsupported(str(exc)) from exc
            except subprocess.SubprocessError as exc:
                detail = getattr(exc, "stderr", None) or b""
                raise MeasurementFailed(
                    f"could not make a certificate: {exc} "
                    + tail(detail.decode(errors="replace"))
                ) from exc
        return self._certificate

    def url(self, server: RunningServer) -> str:
        return f"https://{HOST}:{server.port}/"

    def measure(self, server: RunningServer, settings: Settings) -> dict:
        # Every server here speaks HTTP/2 over TLS: none is n/a up front.
        return self.measure_h2load(server, settings)

    def check_output(self, output: str) -> None:
        if "Application protocol: h2" not in output:
            raise MeasurementFailed("ALPN did not pick h2: " + tail(output))


# -- WebSocket through ws_client.py ----------------------------------------------


def run_ws_client(settings: Settings, args: list[str], timeout: float) -> dict:
    """Run ws_client.py to completion and return its (last) JSON line."""
    argv = [str(settings.paths.peers_python), str(WS_CLIENT), *args]
    try:
        done = subprocess.run(
            pin(settings.load_cpu, argv),
            capture_output=True,
            text=True,
            timeout=timeout + 15,
            env=child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise MeasurementFailed(
            f"ws_client did not finish in {timeout + 15} s"
        ) from exc
    return client_result(done.stdout, done.stderr, done.returncode)


def client_result(stdout: str, stderr: str, returncode: int | None) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise MeasurementFailed(
            f"ws_client printed nothing (status {returncode}): " + tail(stderr)
        )
    result = json.loads(lines[-1])
    if result.get("supported") is False:
        raise Unsupported(
            f"WebSocket handshake answered {result.get('status')} "
            f"{result.get('reason', '')}".strip()
        )
    if "error" in result:
        raise MeasurementFailed("ws_client: " + result["error"])
    return result


def ws_probe(server: RunningServer, settings: Settings) -> None:
    """Handshake and a few echoes: tells n/a apart, and warms the server up."""
    run_ws_client(
        settings,
        ["echo", "--port", str(server.port), "--connections", "4", "--messages", "50"],
        timeout=20,
    )


class WebSocketEcho(Workload):
    key = "ws-echo"
    feature = "websocket"
    headline = "rtps"
    metrics = (
        Metric("rtps", "round trips/s", "rate"),
        Metric("p50_ms", "p50 ms", "ms", "lower"),
        Metric("p99_ms", "p99 ms", "ms", "lower"),
        Metric("client_cpu_pct", "client CPU", "pct", "lower", compare=False),
    )
    timeout = 120  # seconds the whole exchange may take
    #: extra ws_client arguments (``--deflate``: offer compression)
    client_args: tuple[str, ...] = ()

    title = "WebSocket echo"

    def title_for(self, settings: Settings) -> str:
        return (
            f"WebSocket echo, {settings.ws_connections} connections "
            f"x {settings.ws_messages:,} messages"
        )

    def describe(self, settings: Settings) -> dict:
        return {
            "client": "benchmarks/ws_client.py (raw RFC 6455 on asyncio/uvloop)",
            "connections": settings.ws_connections,
            "messages_per_connection": settings.ws_messages,
            "message_bytes": settings.ws_size,
        }

    def measure(self, server: RunningServer, settings: Settings) -> dict:
        ws_probe(server, settings)
        result = run_ws_client(
            settings,
            [
                "echo",
                "--port",
                str(server.port),
                "--connections",
                str(settings.ws_connections),
                "--messages",
                str(settings.ws_messages),
                "--size",
                str(settings.ws_size),
                "--timeout",
                str(self.timeout),
                *self.client_args,
            ],
            timeout=self.timeout,
        )
        server.check_alive()
        return {
            "rtps": result["round_trips_per_s"],
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "client_cpu_pct": result["client_cpu_pct"],
            "client_cpu_s": result["client_cpu_s"],
            "round_trips": result["round_trips"],
            "seconds": result["seconds"],
        }


class WebSocketIdle(Workload):
    key = "ws-idle"
    feature = "websocket"
    headline = "kib_per_conn"
    title = "Memory per idle WebSocket"
    metrics = (
        Metric("kib_per_conn", "KiB/connection", "kib", "lower"),
        Metric("rss_before_mib", "RSS before MiB", "mib", "lower"),
        Metric("rss_after_mib", "RSS with all open MiB", "mib", "lower"),
    )
    settle = 1.0  # seconds between the last handshake and the reading
    client_args: tuple[str, ...] = ()

    def title_for(self, settings: Settings) -> str:
        return f"Memory per idle WebSocket, {settings.idle_connections:,} held open"

    def describe(self, settings: Settings) -> dict:
        return {
            "connections": settings.idle_connections,
            "rss": "VmRSS from /proc/PID/status, summed over the server's process group",
            "settle_s": self.settle,
        }

    def measure(self, server: RunningServer, settings: Settings) -> dict:
        # The probe also pays for lazy imports on the first WebSocket, which
        # would otherwise be spread over the connections being measured.
        ws_probe(server, settings)
        time.sleep(0.5)
        before = server.rss_kib()
        argv = [
            str(settings.paths.peers_python),
            str(WS_CLIENT),
            "idle",
            "--port",
            str(server.port),
            "--connections",
            str(settings.idle_connections),
            "--hold",
            "60",
            "--timeout",
            "90",
            *self.client_args,
        ]
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.log_dir / f"ws-client-idle-{server.spec.key}.log"
        with open(log_path, "wb") as log:
            client = subprocess.Popen(
                pin(settings.load_cpu, argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(),
            )
        try:
            lines = JsonLines(client)
            try:
                ready = lines.next(timeout=60)
            except MeasurementFailed as exc:
                finish(client)
                log_tail = tail(log_path.read_text(errors="replace"))
                raise MeasurementFailed(f"{exc}: {log_tail}") from None
            if ready.get("event") != "ready":
                client_result(json.dumps(ready), "", None)  # raises n/a or failed
                raise MeasurementFailed(f"ws_client: unexpected {ready}")
            time.sleep(self.settle)
            server.check_alive()
            after = server.rss_kib()
            close_stdin(client)  # the client's cue to close its connections
            done = lines.next(timeout=30)
        finally:
            finish(client)
        count = ready["connections"]
        return {
            "kib_per_conn": (after - before) / count,
            "rss_before_mib": before / 1024,
            "rss_after_mib": after / 1024,
            "connections": count,
            "open_seconds": ready.get("open_seconds"),
            "dropped_while_held": done.get("dropped"),
        }


#: The servers compared with compression on (each agrees to permessage-deflate
#: by default; a server that declines is shown n/a).
DEFLATE_SERVERS = ("daphne", "uvicorn-httptools", "hypercorn")


class Compressed:
    """Mixed into a WebSocket workload: the same measurement with
    permessage-deflate offered and agreed, among :data:`DEFLATE_SERVERS`."""

    servers = DEFLATE_SERVERS
    baseline = "uvicorn-httptools"
    client_args = ("--deflate",)

    def title_for(self, settings: Settings) -> str:
        return super().title_for(settings) + ", compressed"  # type: ignore[misc]


class WebSocketEchoDeflate(Compressed, WebSocketEcho):
    """The echo with permessage-deflate offered and agreed."""

    key = "ws-echo-deflate"
    note = "permessage-deflate agreed on every connection; ratios against uvicorn"


class WebSocketIdleDeflate(Compressed, WebSocketIdle):
    """Memory per idle WebSocket that has compressed one message each way."""

    key = "ws-idle-deflate"
    note = "each socket echoed one compressed message first (its zlib state exists)"


class JsonLines:
    """Reads a child's stdout line by line, each read bounded in time.

    Works on the raw file descriptor, so nothing hides in a Python buffer
    while ``select`` says there is nothing to read.
    """

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.fd = process.stdout.fileno()
        self.pending = b""
        self.eof = False

    def next(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while True:
                newline = self.pending.find(b"\n")
                if newline >= 0:
                    line = self.pending[:newline].strip()
                    self.pending = self.pending[newline + 1 :]
                    if line.startswith(b"{"):
                        return json.loads(line)
                    continue
                if self.eof:
                    raise MeasurementFailed(
                        f"ws_client ended (status {self.process.poll()}) "
                        "before it reported"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MeasurementFailed(f"ws_client silent for {timeout:.0f} s")
                if selector.select(remaining):
                    chunk = os.read(self.fd, 65536)
                    if chunk:
                        self.pending += chunk
                    else:
                        self.eof = True


def close_stdin(process: subprocess.Popen) -> None:
    if process.stdin is not None:
        process.stdin.close()
        process.stdin = None  # communicate() must not flush it again


def finish(process: subprocess.Popen) -> None:
    """Let ``process`` end, killing it after a grace period."""
    close_stdin(process)
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


# -- channel layer mode ------------------------------------------------------------


class ChannelLayerMode:
    """Mixin: the same measurement, against a server serving a channel layer.

    Put it first in the bases (``class X(ChannelLayerMode, HttpWrk)``). The
    server runs ``layer_app:channel_layer``: an in-memory ASGI v1 layer with
    ``settings.layer_capacity`` per channel and ``settings.layer_workers``
    worker threads in the server's process answering ``GET /`` and echoing
    WebSocket messages, as ``app.py`` does.
    """

    feature = "channel_layer"
    mode = LAYER
    baseline = LAYER_BASELINE

    def title_for(self, settings: Settings) -> str:
        plural = "s" if settings.layer_workers != 1 else ""
        return (
            f"Channel layer mode: {super().title_for(settings)} "
            f"({settings.layer_workers} worker{plural}, "
            f"capacity {settings.layer_capacity})"
        )

    def describe(self, settings: Settings) -> dict:
        return {
            **super().describe(settings),
            "channel_layer": {
                "module": "benchmarks/layer_app.py (layer_app:channel_layer)",
                "worker_threads": settings.layer_workers,
                "capacity": settings.layer_capacity,
            },
        }

    def server_env(self, settings: Settings) -> dict[str, str]:
        return {
            **super().server_env(settings),
            "BENCH_LAYER_WORKERS": str(settings.layer_workers),
            "BENCH_LAYER_CAPACITY": str(settings.layer_capacity),
        }


class LayerHttpWrk(ChannelLayerMode, HttpWrk):
    def __init__(self, connections: int) -> None:
        super().__init__(connections)
        self.key = f"layer-http-c{connections}"


class LayerWebSocketEcho(ChannelLayerMode, WebSocketEcho):
    key = "layer-ws-echo"
    # Daphne 1.4.2 may poll its replies at 50 ms intervals: give it room
    timeout = 300


#: Every section of the report, in order. WebSocket sections show "n/a" for a
#: server that refuses the handshake; the channel-layer sections are n/a for a
#: server without a channel-layer command; the multi-core section comes last,
#: with its own servers (``dedicated``, measured nowhere else).
WORKLOADS: tuple[Workload, ...] = (
    HttpWrk(64),
    HttpWrk(1),
    Http2Load(4, 64),
    Http2TlsLoad(4, 64),
    WebSocketEcho(),
    WebSocketIdle(),
    WebSocketEchoDeflate(),
    WebSocketIdleDeflate(),
    LayerHttpWrk(64),
    LayerHttpWrk(1),
    LayerWebSocketEcho(),
    HttpWrkCores(64),
)
WORKLOADS_BY_KEY = {workload.key: workload for workload in WORKLOADS}
