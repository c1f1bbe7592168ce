"""HTTP/1.1 framing and request-smuggling probes against a running daphne.

Each probe writes exact bytes on a fresh connection to daphne serving
:mod:`conformance.echo` (``200 echo server`` for every request) and reads
everything until the connection closes. It passes when the status lines are
the expected ones: a single answer where a front-end and daphne might
otherwise disagree on where one request ends (RFC 9112 sections 6 and 11.2),
an error status for an ambiguous message, never a second ``200`` smuggled
behind the first.

``make conformance`` runs them after the Autobahn TestSuite; they are the
wire-level form of what ``tests/test_transfer_encoding.py`` and
``tests/test_http1.py`` check in memory.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")  # (bodies are "echo server")

HEAD = b"Host: a\r\n"


@dataclass(frozen=True)
class Probe:
    name: str
    request: bytes
    #: The status lines expected on the connection, in order.
    statuses: tuple[int, ...]


def post(headers: bytes, body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\n" + HEAD + headers + b"\r\n" + body


#: A request hidden in a body, if a parser stops reading the body too early.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

PROBES = (
    Probe(
        "baseline: two pipelined requests",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 2
        + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        (200, 200, 200),
    ),
    Probe(
        "Content-Length and Transfer-Encoding together (CL.TE / TE.CL)",
        post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        (400,),
    ),
    Probe(
        "two different Content-Length values",
        post(b"Content-Length: 4\r\nContent-Length: 5\r\n", b"abcde"),
        (400,),
    ),
    Probe(
        "Content-Length with a sign",
        post(b"Content-Length: +4\r\n", b"abcd"),
        (400,),
    ),
    Probe(
        "Content-Length list",
        post(b"Content-Length: 4, 4\r\n", b"abcd"),
        (400,),
    ),
    Probe(
        "chunked not the last coding",
        post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
        (400,),
    ),
    Probe(
        "chunked twice",
        post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
        (400,),
    ),
    Probe(
        "a coding daphne does not decode before chunked",
        post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        (501,),
    ),
    Probe(
        "Transfer-Encoding in an HTTP/1.0 request",
        b"POST / HTTP/1.0\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        (400,),
    ),
    Probe(
        "obsolete line folding",
        b"GET / HTTP/1.1\r\n" + HEAD + b"X-A: a\r\n b\r\n\r\n",
        (400,),
    ),
    Probe(
        "whitespace between a field name and its colon",
        b"GET / HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding : chunked\r\n\r\n",
        (400,),
    ),
    Probe(
        "invalid chunk size, a request behind it",
        post(b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + SMUGGLED),
        (400,),
    ),
    Probe(
        "chunk size with a sign, a request behind it",
        post(b"Transfer-Encoding: chunked\r\n", b"+3\r\nabc\r\n0\r\n\r\n" + SMUGGLED),
        (400,),
    ),
    Probe(
        "chunk data longer than its size",
        post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"),
        (400,),
    ),
    Probe(
        "a NUL in a header value",
        b"GET / HTTP/1.1\r\n" + HEAD + b"X-A: a\x00b\r\n\r\n",
        (400,),
    ),
    Probe(
        "a bare CR in a header value",
        b"GET / HTTP/1.1\r\n" + HEAD + b"X-A: a\rb\r\n\r\n",
        (400,),
    ),
    Probe(
        "a request line with a space in the target",
        b"GET /a b HTTP/1.1\r\n" + HEAD + b"\r\n",
        (400,),
    ),
)


def run_probe(port: int, probe: Probe, timeout: float = 5.0) -> tuple[int, ...]:
    """The status lines daphne wrote for ``probe``, in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # (No half-close: daphne takes the client's EOF as a disconnect. Every
        # probe ends in an error, which closes, or in "Connection: close".)
        sock.sendall(probe.request)
        received = bytearray()
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            received += data
    return tuple(int(m) for m in STATUS_LINE.findall(bytes(received)))


def run_probes(port: int) -> list[tuple[Probe, tuple[int, ...]]]:
    return [(probe, run_probe(port, probe)) for probe in PROBES]


def report(results: Sequence[tuple[Probe, tuple[int, ...]]]) -> tuple[str, int]:
    """The table, and how many probes failed."""
    lines = ["HTTP/1.1 framing and smuggling probes:"]
    failed = 0
    for probe, got in results:
        ok = got == probe.statuses
        failed += not ok
        expected = ",".join(map(str, probe.statuses))
        answer = ",".join(map(str, got)) or "(nothing)"
        verdict = "OK" if ok else "FAILED"
        lines.append(f"  {verdict:<7} {probe.name:<62} {expected:>11} {answer:>11}")
    lines.append(f"  {len(results) - failed} OK, {failed} FAILED")
    return "\n".join(lines), failed
