"""What one idle WebSocket holds on daphne's Python heap, by allocation site.

Serves ``app.py`` with daphne's reactor, ``AppHost`` and protocols (as
``hotpath.py wire-ws`` does), lets a client process open one WebSocket (the
warm-up: lazy imports and caches), then N more, each echoing one message
before it goes idle, and compares two ``tracemalloc`` snapshots: the bytes
per socket, and the allocation sites that hold the most. Unlike the resident
memory ``make bench`` reads, it does not depend on the allocator's reuse or
on the machine's load, and it says where the bytes are:

    python benchmarks/idle_memory.py            # 300 sockets
    python benchmarks/idle_memory.py 1000 --top 40
    python benchmarks/idle_memory.py --engine autobahn   # that framing engine
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import socket
import sys
import tracemalloc

MASK = b"\x01\x02\x03\x04"
PAYLOAD = b"x" * 32


def client(port: int, count: int) -> None:
    """Open one WebSocket, wait for a line, open ``count`` more, hold them."""
    sockets = []

    def open_one() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            data += sock.recv(4096)
        masked = bytes(byte ^ MASK[i % 4] for i, byte in enumerate(PAYLOAD))
        sock.sendall(b"\x81\xa0" + MASK + masked)
        data = b""
        while not data.endswith(PAYLOAD):
            data += sock.recv(4096)
        sockets.append(sock)

    open_one()
    print("warm", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        open_one()
    print("ready", flush=True)
    sys.stdin.readline()


def serve(count: int, top: int, engine: str = "websockets") -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app import application
    from twisted.internet import protocol

    from daphne.config import Config
    from daphne.hosts.app import AppHost
    from daphne.protocols import HTTPFactory
    from daphne.server import install_reactor

    reactor = install_reactor()
    config = Config(websocket_engine=engine)
    host = AppHost(application, config, reactor, reactor._asyncioEventloop)
    port = reactor.listenTCP(
        0, HTTPFactory(config, host, reactor), interface="127.0.0.1"
    )
    snapshots: dict[bytes, tracemalloc.Snapshot] = {}

    class Client(protocol.ProcessProtocol):
        buffer = b""

        def outReceived(self, data: bytes) -> None:
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                # (A moment for the last echo's task to end.)
                reactor.callLater(0.3, self.snapshot, line.strip())

        def snapshot(self, line: bytes) -> None:
            gc.collect()
            snapshots[line] = tracemalloc.take_snapshot()
            self.transport.write(b"next\n")
            if line == b"ready":
                reactor.callLater(0.2, reactor.stop)

    tracemalloc.start(1)
    argv = [sys.executable, __file__, str(count), "--client", str(port.getHost().port)]
    reactor.spawnProcess(Client(), sys.executable, argv, env=os.environ)
    reactor.run(installSignalHandlers=False)
    stats = snapshots[b"ready"].compare_to(snapshots[b"warm"], "lineno")
    total = sum(stat.size_diff for stat in stats)
    print(
        f"Python heap per idle WebSocket: {total / count:,.0f} bytes "
        f"({total / count / 1024:.2f} KiB), {count} sockets, {engine} engine"
    )
    # Sites relative to site-packages or to the repository.
    prefixes = (
        os.path.dirname(os.path.dirname(os.path.dirname(protocol.__file__))),
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = frame.filename
        for prefix in prefixes:
            if where.startswith(prefix + os.sep):
                where = where[len(prefix) + 1 :]
                break
        print(
            f"{stat.size_diff / count:8.0f} B {stat.count_diff / count:5.1f} blocks"
            f"  {where}:{frame.lineno}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=300)
    parser.add_argument("--top", type=int, default=25, help="allocation sites shown")
    parser.add_argument(
        "--engine",
        choices=["autobahn", "websockets"],
        default="websockets",
        help="the WebSocket framing engine (default: %(default)s)",
    )
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.client:
        client(options.client, options.count)
    else:
        serve(options.count, options.top, options.engine)


if __name__ == "__main__":
    main()
