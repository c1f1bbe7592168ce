"""Response backpressure: a slow reader must not make daphne buffer the body.

``/big?mb=200`` streams 200 MiB in 64 KiB events. While the client reads
slowly, the application's ``send`` has to wait for the transport to drain;
if it did not, the whole body would pile up in the server's memory.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.apps import MiB
from tests.clients import Raw
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


def fetch_fast(port: int, mib: int) -> None:
    with Raw(port, timeout=10) as conn:
        conn.send(b"GET /big?mb=%d HTTP/1.1\r\nHost: x\r\n\r\n" % mib)
        response = conn.read_response()
        assert (response.status, len(response.body)) == (200, mib * MiB)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_slow_reader_keeps_server_memory_bounded():
    with run_daphne("--access-log", "/dev/null") as server:
        pid = server.proc.pid
        # Warm up the code paths (and the allocator) with a small fast transfer.
        fetch_fast(server.port, 4)
        time.sleep(0.2)
        baseline = rss_bytes(pid)

        with Raw(server.port, timeout=10, rcvbuf=16 * 1024) as conn:
            conn.send(b"GET /big?mb=%d HTTP/1.1\r\nHost: x\r\n\r\n" % BODY_MIB)
            head = conn.read_until(b"\r\n\r\n")
            assert head is not None, f"connection closed during the head: {conn.buf!r}"
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert b"\r\ncontent-length: %d" % (BODY_MIB * MiB) in head.lower()
            body = BodyChecker()
            body.feed(conn.buf)
            sock = conn.sock

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
