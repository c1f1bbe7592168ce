"""Response backpressure: a slow reader must not make daphne buffer the body.

``/big?mb=200`` streams 200 MiB in 64 KiB events. While the client reads
slowly, the application's ``send`` has to wait for the transport to drain;
if it did not, the whole body would pile up in the server's memory.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.apps import MiB
from tests.conftest import run_daphne

pytestmark = pytest.mark.timeout(60)

BODY_MIB = 200
#: Byte ``i`` of the body is ``i % 256``; slices of this cover any 1 MiB read.
PATTERN = bytes(range(256)) * (MiB // 256 + 1)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class BodyChecker:
    """Counts body bytes and checks each against the ``i % 256`` pattern."""

    def __init__(self) -> None:
        self.received = 0

    def feed(self, data: bytes) -> None:
        start = self.received % 256
        assert data == PATTERN[start : start + len(data)], (
            f"body corrupt near offset {self.received}"
        )
        self.received += len(data)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(64 * 1024)
        assert chunk, f"connection closed during the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def fetch_fast(port: int, mib: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /big?mb=%d HTTP/1.1\r\nHost: x\r\n\r\n" % mib)
        _, rest = read_head(sock)
        received = len(rest)
        while received < mib * MiB:
            chunk = sock.recv(MiB)
            assert chunk
            received += len(chunk)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_slow_reader_keeps_server_memory_bounded():
    with run_daphne("--access-log", "/dev/null") as server:
        pid = server.proc.pid
        # Warm up the code paths (and the allocator) with a small fast transfer.
        fetch_fast(server.port, 4)
        time.sleep(0.2)
        baseline = rss_bytes(pid)

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        with sock:
            sock.sendall(b"GET /big?mb=%d HTTP/1.1\r\nHost: x\r\n\r\n" % BODY_MIB)
            head, rest = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert b"\r\ncontent-length: %d" % (BODY_MIB * MiB) in head.lower()
            body = BodyChecker()
            body.feed(rest)

            # Slow phase: 64 KiB every 20 ms for 3 s, sampling the server's RSS.
            peak = baseline
            slow_until = time.monotonic() + 3
            while time.monotonic() < slow_until:
                chunk = sock.recv(64 * 1024)
                assert chunk, "connection closed during the slow phase"
                body.feed(chunk)
                peak = max(peak, rss_bytes(pid))
                time.sleep(0.02)
            slow_bytes = body.received
            peak = max(peak, rss_bytes(pid))

            # Fast phase: the rest, as fast as possible.
            while body.received < BODY_MIB * MiB:
                chunk = sock.recv(MiB)
                assert chunk, f"connection closed after {body.received} bytes"
                body.feed(chunk)

    # The slow phase really was slow: most of the body was still unsent.
    assert slow_bytes < 50 * MiB, slow_bytes
    assert body.received == BODY_MIB * MiB
    growth = peak - baseline
    assert growth < 50 * MiB, f"server RSS grew by {growth / MiB:.1f} MiB"
