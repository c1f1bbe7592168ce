"""``--limit-concurrency``, ``--limit-max-requests`` and ``--backlog``.

The counting is checked in memory (tests/harness.py, a fake host the test
plays, hypothesis over orders of begin, response, end, error and
disconnect); the 503s, the retirement and the backlog over real sockets
against a daphne subprocess.
"""

from __future__ import annotations

import random
import re
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daphne.config import Config, ConfigError
from daphne.endpoints import build_endpoint_description_strings
from daphne.hosts import ASGIProtocolError
from daphne.protocols.limits import draw_max_requests

from .clients import Raw, RawWebSocket, parse_response, ws_connect
from .conftest import run_daphne
from .harness import UPGRADE, Harness, get, one_response, pipelined

# -- config ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"limit_concurrency": 0},
        {"limit_max_requests": 0},
        {"limit_max_requests": 5, "limit_max_requests_jitter": -1},
        {"limit_max_requests_jitter": 3},
        {"backlog": 0},
    ],
)
def test_nonsensical_limits_are_refused(fields):
    with pytest.raises(ConfigError):
        Config(**fields)


@given(st.integers(1, 10**6), st.integers(0, 1000), st.integers())
def test_the_retirement_point_is_drawn_from_n_to_n_plus_jitter(n, jitter, seed):
    config = Config(limit_max_requests=n, limit_max_requests_jitter=jitter)
    assert n <= draw_max_requests(config, random.Random(seed)) <= n + jitter


def test_jitter_spreads_the_retirement_points():
    config = Config(limit_max_requests=100, limit_max_requests_jitter=50)
    draws = {draw_max_requests(config, random.Random(seed)) for seed in range(50)}
    assert len(draws) > 10


def test_no_limits_no_limits_object():
    """Without either limit the hot path only tests for None."""
    assert Harness().factory.limits is None


# -- counting, in memory ---------------------------------------------------------------


def limited(**options):
    harness = Harness("fake", **options)
    return harness, harness.factory.limits


def test_past_the_limit_a_request_gets_503_and_the_application_never_starts():
    harness, limits = limited(limit_concurrency=2)
    first, second = harness.conn, harness.connect()
    first.send(get())
    second.send(get())
    assert limits.open == 2
    third = harness.connect()
    third.send(get(b"/refused"))
    assert len(harness.host.instances) == 2
    response = one_response(third.output())
    assert response.status == 503
    assert response.header(b"retry-after") == b"1"
    assert response.header(b"connection") == b"close"
    assert b"concurrency limit" in response.body
    assert not third.open
    # One finishes: the next request is admitted.
    first.instance.respond(b"ok")
    assert limits.open == 2  # answered, but its application still runs
    harness.host.instances[0].finish()
    assert limits.open == 1
    fourth = harness.connect()
    fourth.send(get())
    assert len(harness.host.instances) == 3
    assert limits.open == 2


def test_pipelined_requests_count_only_once_they_start():
    harness, limits = limited(limit_concurrency=2)
    harness.conn.send(pipelined(b"/a", b"/b", b"/c"))
    assert limits.open == 1
    other = harness.connect()
    other.send(get())
    assert limits.open == 2
    # The other request ends; /a is answered and /b starts at once (the
    # application of /a, still returning, counts until it has).
    harness.host.instances[1].respond()
    harness.host.instances[1].finish()
    harness.host.instances[0].respond()
    assert [i.scope["path"] for i in harness.host.instances] == ["/a", "/", "/b"]
    assert limits.open == 2
    harness.host.instances[0].finish()
    assert limits.open == 1


def test_a_refused_body_is_not_kept():
    harness, limits = limited(limit_concurrency=1)
    harness.conn.send(get())
    other = harness.connect()
    other.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    other.send(b"x" * 50000)
    assert one_response(other.output()).status == 503
    assert len(harness.host.instances) == 1


def test_a_websocket_past_the_limit_is_refused_before_its_application_starts():
    harness, limits = limited(limit_concurrency=1)
    harness.conn.send(UPGRADE)
    harness.conn.instance.send({"type": "websocket.accept"})
    assert limits.open == 1
    other = harness.connect()
    other.send(UPGRADE)
    response = one_response(other.output())
    assert response.status == 503
    assert response.header(b"retry-after") == b"1"
    assert len(harness.host.instances) == 1
    # The open socket's application ends: its place is free.
    harness.conn.close()
    harness.host.instances[0].finish()
    assert limits.open == 0


def test_the_nth_request_retires_the_process_once_and_is_served():
    harness, limits = limited(limit_max_requests=3)
    retired = []
    limits.on_retire = retired.append
    for _ in range(2):
        harness.conn.send(get())
        harness.conn.instance.respond()
        harness.conn.instance.finish()
    assert retired == []
    harness.conn.send(get())
    assert retired == [3]
    harness.conn.instance.respond(b"third")
    assert harness.conn.responses()[-1].body == b"third"
    harness.conn.instance.finish()
    harness.conn.send(UPGRADE)  # (WebSocket handshakes count too)
    assert retired == [3] and limits.requests == 4


def test_refusals_warn_at_most_every_ten_seconds(caplog):
    harness, limits = limited(limit_concurrency=1)
    harness.conn.send(get())
    with caplog.at_level("WARNING", logger="daphne.protocols.limits"):
        for _ in range(3):
            harness.connect().send(get())
        harness.advance(10)
        harness.connect().send(get())
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "Concurrency limit 1 reached: refused 1 request(s) with 503",
        "Concurrency limit 1 reached: refused 3 request(s) with 503",
    ]


# Steps of the state machine below: (action, which connection or instance).
STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "connect",
                "get",
                "pipelined",
                "post-partial",
                "upgrade",
                "respond",
                "stream",
                "accept",
                "close-ws",
                "invalid",
                "finish",
                "raise",
                "disconnect",
                "advance",
            ]
        ),
        st.integers(0, 7),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(STEPS, st.integers(1, 4))
def test_the_count_is_the_running_applications_whatever_the_order(steps, limit):
    """At every step the count is the number of application instances not
    yet ended (never above the limit), and once all have ended it is 0."""
    harness, limits = limited(
        limit_concurrency=limit, http_timeout=5, websocket_connect_timeout=5
    )
    conns = [harness.conn]
    instances = harness.host.instances
    ended: set[int] = set()

    def running():
        return [i for i in instances if id(i) not in ended]

    def end(instance, exc=None):
        ended.add(id(instance))
        instance.finish(exc)

    for action, index in steps:
        conn = conns[index % len(conns)]
        live = running()
        instance = live[index % len(live)] if live else None
        try:
            if action == "connect":
                conns.append(harness.connect())
            elif action == "get" and conn.open:
                conn.send(get())
            elif action == "pipelined" and conn.open:
                conn.send(pipelined(b"/1", b"/2"))
            elif action == "post-partial" and conn.open:
                conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab")
            elif action == "upgrade" and conn.open:
                conn.send(UPGRADE)
            elif action == "respond" and instance is not None:
                instance.respond(b"x")
            elif action == "stream" and instance is not None:
                instance.start()
                instance.body(b"part", more=True)
            elif action == "accept" and instance is not None:
                instance.send({"type": "websocket.accept"})
            elif action == "close-ws" and instance is not None:
                instance.send({"type": "websocket.close"})
            elif action == "invalid" and instance is not None:
                instance.send({"type": "nonsense"})
            elif action == "finish" and instance is not None:
                end(instance)
            elif action == "raise" and instance is not None:
                end(instance, RuntimeError("boom"))
            elif action == "disconnect" and conn.open:
                conn.close()
            elif action == "advance":
                harness.advance(3)
        except (ASGIProtocolError, OSError):
            pass  # the application did something wrong, or too late
        assert limits.open == len(running()) <= limit
    for instance in running():
        end(instance)
    assert limits.open == 0


# -- over real sockets ------------------------------------------------------------------


def until(predicate, timeout: float = 10.0):
    """Wait for ``predicate()`` to be true (a state to be reached, not a
    duration measured); its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def get_once(port: int, path: str = "/scope") -> int | None:
    """One GET on a fresh connection, nothing retried: its status, or None
    when the server refused, reset or closed the connection without one."""
    request = f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    try:
        with Raw(port) as conn:
            conn.send(request.encode())
            data = conn.read_until_close()
    except OSError:
        return None
    if not data:
        return None
    response = parse_response(data)
    return response.status if response.complete else None


def test_concurrency_limit_gives_503_and_retry_after_then_recovers(tmp_path):
    with run_daphne(
        "--limit-concurrency", "2", "--application-close-timeout", "0"
    ) as server:
        files = [tmp_path / f"hold{i}" for i in range(2)]
        holds = []
        for record in files:
            conn = Raw(server.port)
            conn.send(
                f"GET /sleep-record?s=60&file={record} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
            )
            holds.append(conn)
        assert until(lambda: all(f.exists() for f in files))
        with Raw(server.port) as probe:
            probe.send(b"GET /scope HTTP/1.1\r\nHost: a\r\n\r\n")
            response = probe.read_response()
            assert probe.closed_within(5)
        assert response.status == 503
        assert response.header("retry-after") == "1"
        assert response.header("connection") == "close"
        with RawWebSocket(server.port) as ws:
            assert ws.handshake("/ws").status == 503
        # The held requests end (their clients leave; the applications are
        # cancelled at once): requests are served again.
        for conn in holds:
            conn.close()
        assert until(lambda: all(f.read_text() == "CancelledError" for f in files))
        assert until(lambda: get_once(server.port) == 200)
        server.wait_for_line("Concurrency limit 2 reached", stream="stderr")


def test_an_open_websocket_counts_against_the_limit():
    with run_daphne(
        "--limit-concurrency", "1", app="tests.ws_apps:application"
    ) as server:
        with ws_connect(server, "/echo") as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            assert get_once(server.port, "/") == 503
        assert until(lambda: get_once(server.port, "/") == 200)


def retired_after(server) -> int:
    line = server.wait_for_line(r"Retiring after \d+ requests", stream="stderr")
    return int(re.search(r"Retiring after (\d+) requests", line).group(1))


def test_max_requests_retires_after_n_without_failing_one():
    """Sequential requests on fresh connections, none retried: the first
    N..N+J all succeed, then the process is gone, and it exited 0."""
    with run_daphne(
        "--limit-max-requests", "5", "--limit-max-requests-jitter", "2"
    ) as server:
        statuses = [get_once(server.port) for _ in range(12)]
        assert server.wait() == 0
        limit = retired_after(server)
    assert 5 <= limit <= 7
    served = statuses.index(None) if None in statuses else len(statuses)
    assert served >= limit
    assert statuses[:served] == [200] * served
    assert statuses[served:] == [None] * (12 - served)


def keep_alive_client(port: int, results: list, stop: threading.Event) -> None:
    """Requests one after another on a keep-alive connection, a new one when
    the server says ``Connection: close``, until the server is gone.

    A request sent on a reused connection that the server closed with no
    response at all (it was idle when the server closed it) was never taken
    by the server; RFC 9112 section 9.3.1 lets a client send it again, and so
    does this one: it is recorded as "unanswered", not as an answer."""
    conn = None
    while not stop.is_set():
        if conn is None:
            try:
                conn = Raw(port)
            except OSError:
                return  # not listening any more
            fresh = True
        try:
            conn.send(b"GET /scope HTTP/1.1\r\nHost: a\r\n\r\n")
            response = conn.read_response()
        except OSError:
            response = None
        if response is None:
            results.append("unanswered" if not fresh else "failed")
            conn.close()
            conn = None
            continue
        fresh = False
        results.append(response.status if response.complete else "cut")
        if response.header("connection") == "close":
            conn.close()
            conn = None


def test_max_requests_under_keep_alive_load_fails_no_request():
    with run_daphne("--limit-max-requests", "60", "--access-log", "-") as server:
        results: list = []
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=keep_alive_client, args=(server.port, results, stop)
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        code = server.wait(30)
        stop.set()
        for thread in threads:
            thread.join(10)
        assert code == 0
        assert retired_after(server) == 60
        answered = [r for r in results if r != "unanswered"]
        assert answered == [200] * len(answered)
        assert len(answered) >= 60
        # Every request the server served reached its client.
        logged = [line for line in server.stdout if '"GET /scope" 200' in line]
        assert len(logged) == len(answered)


# -- --backlog --------------------------------------------------------------------------


def test_backlog_goes_into_the_endpoints_built_from_the_options():
    built = build_endpoint_description_strings(
        host="127.0.0.1", port=8000, unix_socket="/tmp/d.sock", backlog=37
    )
    assert built == [
        "tcp:port=8000:interface=127.0.0.1:backlog=37",
        "unix:/tmp/d.sock:backlog=37",
    ]
    assert build_endpoint_description_strings(file_descriptor=3, backlog=37) == [
        "fd:fileno=3"
    ]


def listen_backlogs(option: str) -> str:
    result = subprocess.run(
        ["ss", "-Hl", option], capture_output=True, text=True, check=True
    )
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(
    subprocess.run(["which", "ss"], capture_output=True).returncode != 0,
    reason="needs ss (iproute2) to read a listening socket's backlog",
)
def test_backlog_reaches_the_listening_sockets(tmp_path):
    """``ss`` shows a listening socket's backlog as its Send-Q (37: below any
    kernel's somaxconn cap)."""
    port = free_port()
    path = tmp_path / "d.sock"
    args = ("-p", str(port), "-u", str(path), "--backlog", "37")
    with run_daphne(*args, listen=False) as server:
        server.wait_listening(2)
        tcp = [
            line.split()
            for line in listen_backlogs("-tn").splitlines()
            if line.split()[3].endswith(f":{port}")
        ]
        unix = [
            line.split()
            for line in listen_backlogs("-xn").splitlines()
            if str(path) in line
        ]
    assert [fields[2] for fields in tcp] == ["37"]
    assert [fields[3] for fields in unix] == ["37"]
