"""The protocol layer's cost per request, counted, not timed.

Runs N keep-alive GETs (or N WebSocket echo round trips) through daphne's
HTTP/1.1 connection on an in-memory transport, the application side played
by a host that answers at once: no sockets, no event loop, no application.
Under ``valgrind --tool=callgrind`` the instruction count is the same from
run to run whatever else the machine does, so two commits compare exactly
(``--ab`` runs the count at two sizes and prints instructions per request):

    python benchmarks/hotpath.py --ab http        # this checkout
    python benchmarks/hotpath.py --ab ws
    python benchmarks/hotpath.py http 1000        # one plain run (for py-spy)

It measures daphne's own Python on the hot path only; ``make bench`` measures
the whole server against its peers.

``layer`` counts channel-layer mode the same way: the same connection and
transport, served by a ``LayerHost`` on ``daphne.layers.InMemoryChannelLayer``
(the reply reader daphne picks for it, on a real asyncio loop), the worker
played inline by ``v1_answers.handle`` (what ``layer_app.py``'s threads
run), on 8 connections at a time (as under load, where the reader takes
several replies per wake-up), so one request is daphne's layer work plus one
worker's, without the thread switches (which ``make bench`` measures):

    python benchmarks/hotpath.py --ab layer

``wire-http`` and ``wire-ws`` count the whole server instead: the reactor
daphne installs (on uvloop), a real loopback socket, the ``AppHost`` running
``benchmarks/app.py``, answering a client in a separate process (which
callgrind does not count) that sends one request (or echo) at a time:

    python benchmarks/hotpath.py --ab wire-http 500
    python benchmarks/hotpath.py --profile wire-ws 2000   # cProfile's top entries

``--engine autobahn`` runs the WebSocket kinds on that framing engine
(daphne's ``--websocket-engine``; websockets by default):

    python benchmarks/hotpath.py --ab ws --engine autobahn
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import subprocess
import sys

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}
BODY = {"type": "http.response.body", "body": b"Hello, world!\n"}
REQUEST = (
    b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
)


class Instance:
    def __init__(self, sink) -> None:
        self.sink = sink

    def put(self, event) -> bool:
        return True

    def pause_sending(self) -> None:
        pass

    def resume_sending(self) -> None:
        pass

    def disconnected(self) -> None:
        pass


class Host:
    """Starts instances and remembers the newest, which the loop answers."""

    last: Instance

    def start(self, scope, sink) -> Instance:
        self.last = Instance(sink)
        return self.last


#: The WebSocket engine of the run (--engine).
ENGINE = "websockets"


def run(kind: str, count: int) -> None:
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from daphne.config import Config
    from daphne.protocols import HTTPFactory

    host = Host()
    config = Config(websocket_engine=ENGINE)
    conn = HTTPFactory(config, host, Clock()).buildProtocol(None)
    transport = StringTransport()
    conn.makeConnection(transport)
    if kind == "http":
        for _ in range(count):
            conn.dataReceived(REQUEST)
            sink = host.last.sink
            sink.handle_reply(START)
            sink.handle_reply(BODY)
            sink.application_finished(None)
            transport.clear()
        return
    key = base64.b64encode(os.urandom(16))
    conn.dataReceived(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sink = host.last.sink
    sink.handle_reply({"type": "websocket.accept"})
    mask = b"\x01\x02\x03\x04"
    payload = b"x" * 32
    frame = b"\x81\xa0" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    reply = {"type": "websocket.send", "text": "x" * 32}
    for _ in range(count):
        conn.dataReceived(frame)
        sink.handle_reply(reply)
        transport.clear()


#: Connections served together in the ``layer`` count: each round, each
#: sends a request, the worker answers them all, the reader takes the replies.
LAYER_CONNECTIONS = 8


def run_layer(count: int) -> None:
    """``count`` GETs in channel-layer mode, the worker answering inline."""
    import asyncio

    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from v1_answers import CHANNELS, handle

    from daphne.config import Config
    from daphne.hosts.layer import LayerHost, layer_config
    from daphne.layers import InMemoryChannelLayer
    from daphne.protocols import HTTPFactory

    async def serve() -> None:
        layer = InMemoryChannelLayer()
        clock = Clock()
        config = layer_config(Config(), layer, set())
        host = LayerHost(layer, config, clock, asyncio.get_running_loop())
        await host.start_reading()
        factory = HTTPFactory(config, host, clock)
        conns = []
        for _ in range(LAYER_CONNECTIONS):
            conn = factory.buildProtocol(None)
            conn.makeConnection(StringTransport())
            conns.append(conn)

        def work() -> None:
            while True:
                channel, message = layer.receive(CHANNELS)
                if channel is None:
                    return
                handle(layer, channel, message)

        for _ in range(count // LAYER_CONNECTIONS):
            for conn in conns:
                conn.dataReceived(REQUEST)
            work()  # the requests
            for _ in range(3):  # (the reply reader's wake-up)
                await asyncio.sleep(0)
            work()  # their http.disconnect
            for conn in conns:
                if not conn.transport.value().endswith(b"Hello, world!"):
                    raise SystemExit("no response")
                conn.transport.clear()
        host.reader.stop()

    asyncio.run(serve())


def run_wire(kind: str, count: int) -> None:
    """Serve one connection from a client process, then stop."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app import application

    from daphne.config import Config
    from daphne.hosts.app import AppHost
    from daphne.protocols import HTTPFactory
    from daphne.server import install_reactor

    reactor = install_reactor()
    # No timer is due during the run: under callgrind a second of wall-clock
    # time is a hundred requests, so timers would weigh a hundred times what
    # they do at full speed, and with the machine's load.
    day = 86400.0
    config = Config(
        request_head_timeout=day,
        keep_alive_timeout=day,
        request_body_timeout=day,
        websocket_connect_timeout=day,
        ping_interval=day,
        ping_timeout=day,
        websocket_engine=ENGINE,
    )
    host = AppHost(application, config, reactor, reactor._asyncioEventloop)

    class Factory(HTTPFactory):
        def connection_lost(self, conn) -> None:
            super().connection_lost(conn)
            reactor.stop()

    port = reactor.listenTCP(0, Factory(config, host, reactor), interface="127.0.0.1")
    number = str(port.getHost().port)
    client = subprocess.Popen(
        [sys.executable, __file__, "--client", kind, str(count), "--port", number]
    )
    reactor.run(installSignalHandlers=False)
    if client.wait() != 0:
        raise SystemExit("the client failed")


def client(kind: str, count: int, port: int) -> None:
    """The load: one request (or echo) at a time on one connection."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read_until(end: bytes) -> None:
        data = b""
        while not data.endswith(end):
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("the server closed the connection")
            data += chunk

    if kind == "wire-http":
        for _ in range(count):
            sock.sendall(REQUEST)
            read_until(b"Hello, world!")
    else:
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        read_until(b"\r\n\r\n")
        mask = b"\x01\x02\x03\x04"
        payload = b"x" * 32
        frame = (
            b"\x81\xa0" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )
        for _ in range(count):
            sock.sendall(frame)
            read_until(payload)
        sock.sendall(b"\x88\x82" + mask + bytes([0x03 ^ 1, 0xE8 ^ 2]))
        read_until(b"\x03\xe8")
    sock.close()


def run_kind(kind: str, count: int) -> None:
    if kind == "layer":
        run_layer(count)
    elif kind.startswith("wire"):
        run_wire(kind, count)
    else:
        run(kind, count)


def profile(kind: str, count: int, top: int = 25) -> None:
    """cProfile's top entries (by own time) for ``count`` requests."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run_kind(kind, count)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def instructions(kind: str, count: int) -> int:
    # A plain run first, so that no counted run compiles a changed module.
    engine = ["--engine", ENGINE]
    subprocess.run([sys.executable, __file__, kind, "10", *engine], check=True)
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            kind,
            str(count),
            *engine,
        ],
        capture_output=True,
        text=True,
        check=True,
        # (String hashing is randomised per process; fixed, counts repeat.)
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["http", "ws", "layer", "wire-http", "wire-ws"])
    parser.add_argument("count", type=int, nargs="?", default=1000)
    parser.add_argument(
        "--ab",
        action="store_true",
        help="count instructions under callgrind at COUNT and 5 x COUNT; "
        "print the cost of one request (start-up cancels out)",
    )
    parser.add_argument("--profile", action="store_true", help="print cProfile's top")
    parser.add_argument(
        "--engine",
        choices=["autobahn", "websockets"],
        default="websockets",
        help="the WebSocket framing engine (default: %(default)s)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    global ENGINE
    ENGINE = options.engine
    if options.client:
        client(options.kind, options.count, options.port)
        return
    if options.profile:
        profile(options.kind, options.count)
        return
    if not options.ab:
        run_kind(options.kind, options.count)
        return
    small = instructions(options.kind, options.count)
    large = instructions(options.kind, 5 * options.count)
    per = (large - small) / (4 * options.count)
    engine = f" ({ENGINE})" if "ws" in options.kind else ""
    print(f"{options.kind}{engine}: {per:,.0f} instructions per request")


if __name__ == "__main__":
    main()
