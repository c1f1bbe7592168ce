"""``--workers N``: a real supervisor process, its workers, real sockets.

Requests that must be in flight at a given moment use ``/hold`` of
tests/worker_apps.py: each announces itself with a file once it has started
and ends only when the test creates the ``release`` file, so what the tests
assert is an order of events, never a duration. Worker PIDs come from the
supervisor's log ("Worker PID ready", "Worker PID exited ...").
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from .clients import Raw, exchange
from .conftest import ROOT, run_daphne, tls_endpoint
from .test_cli import assert_one_line_error, daphne

APP = "tests.worker_apps:application"
LOCAL = ["-e", "tcp:0:interface=127.0.0.1"]
READY = re.compile(r"Worker (\d+) ready")
GONE = re.compile(r"Worker (\d+) (?:exited|died)")
#: How long to wait for something that should happen (a guard, not a measure).
PATIENCE = 20.0


def pids(server, pattern: re.Pattern) -> list[int]:
    return [
        int(m.group(1))
        for line in list(server.stderr)
        for m in [pattern.search(line)]
        if m
    ]


def live_workers(server) -> set[int]:
    """Workers the supervisor has seen ready and not yet seen exit."""
    return set(pids(server, READY)) - set(pids(server, GONE))


def wait_until(condition, what: str, server=None):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    log = "\n".join(server.stderr[-30:]) if server is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


def wait_workers(server, count: int) -> set[int]:
    return wait_until(
        lambda: len(live_workers(server)) == count and live_workers(server),
        f"{count} live workers",
        server,
    )


@contextmanager
def supervised(
    tmp_path: Path, workers: int, *args: str, endpoint=LOCAL, listening=True
):
    """daphne --workers WORKERS serving tests.worker_apps, all workers ready
    (and, unless ``listening`` is false, a TCP port known)."""
    with run_daphne(
        "--workers",
        str(workers),
        *endpoint,
        *args,
        app=APP,
        listen=False,
        env={"WORKER_TEST_DIR": str(tmp_path)},
    ) as server:
        wait_workers(server, workers)
        if listening:
            server.wait_listening()
        yield server


def get(port: int, path: str = "/") -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    response = exchange(port, request.encode())
    assert response.status == 200, response
    return response.json()


class Held:
    """Requests to ``/hold`` on their own connections, released together."""

    def __init__(self, server, folder: Path) -> None:
        self.server = server
        self.folder = folder
        self.pool = ThreadPoolExecutor(8)
        self.futures = []

    def start(self, name: str, block: bool = False) -> int:
        """Send one, and wait until the application has it; its worker's PID."""
        path = f"/hold?dir={self.folder}&name={name}" + ("&block=1" if block else "")
        self.futures.append(self.pool.submit(get, self.server.port, path))
        started = self.folder / f"started-{name}"
        wait_until(started.exists, f"request {name} to start", self.server)
        return int(wait_until(started.read_text, f"PID of {name}"))

    def finish(self) -> list[int]:
        """Release them all; the PIDs that answered."""
        assert not any(future.done() for future in self.futures)
        (self.folder / "release").touch()
        answers = [future.result(PATIENCE)["pid"] for future in self.futures]
        self.pool.shutdown()
        return answers


def test_four_workers_serve_four_requests_at_once(tmp_path):
    """Each request blocks its worker until released; all four start before
    any is released, so four processes served them at once. Lifespan
    startup ran in each of them."""
    with supervised(tmp_path, 4) as server:
        workers = live_workers(server)
        held = Held(server, tmp_path)
        started = [held.start(str(n), block=True) for n in range(4)]
        assert len(set(started)) == 4
        assert set(started) == workers
        assert held.finish() == started
        lifespans = {int(p.name.split("-")[1]) for p in tmp_path.glob("lifespan-*")}
        assert workers <= lifespans


def test_a_killed_worker_is_replaced_and_the_others_serve_on(tmp_path):
    with supervised(tmp_path, 2) as server:
        first = live_workers(server)
        held = Held(server, tmp_path)
        survivor = held.start("survivor")
        (victim,) = first - {survivor}
        subprocess.run(["kill", "-9", str(victim)], check=True)
        server.wait_for_line(rf"Worker {victim} died \(killed by SIGKILL\)", "stderr")
        during = [get(server.port)["pid"] for _ in range(10)]
        assert set(during) <= {survivor} | set(pids(server, READY))
        replaced = wait_workers(server, 2)
        assert survivor in replaced
        assert victim not in replaced
        assert held.finish() == [survivor]
        assert all(get(server.port)["pid"] in replaced for _ in range(10))


@contextmanager
def steady_load(fetch: Callable[[], object]) -> Iterator[list[object]]:
    """Requests one after another from a thread while the block runs: the
    list holds each one's result (the worker's PID) or the exception it
    raised."""
    results: list[object] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                results.append(fetch())
            except Exception as exc:  # noqa: BLE001 (the test counts them)
                results.append(exc)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        yield results
    finally:
        stop.set()
        thread.join(PATIENCE)


def test_sighup_replaces_every_worker_without_a_failed_request(tmp_path):
    with supervised(tmp_path, 2) as server:
        before = live_workers(server)
        with steady_load(lambda: get(server.port)["pid"]) as results:
            wait_until(lambda: len(results) >= 20, "some requests before SIGHUP")
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for_line("Reload complete", "stderr", timeout=PATIENCE)
            count = len(results)
            wait_until(lambda: len(results) >= count + 20, "requests after it")
        failures = [r for r in results if isinstance(r, Exception)]
        assert failures == []
        after = wait_workers(server, 2)
        assert after.isdisjoint(before)
        for pid in before:
            server.wait_for_line(rf"Worker {pid} exited \(exit status 0\)", "stderr")
        assert set(results[count:]) & after  # the new ones serve


def test_connections_waiting_together_are_shared_between_the_workers(tmp_path):
    """Connections queued while both workers are stopped (SIGSTOP), each with
    a request that keeps its worker busy: once the workers run again, each
    accepts one connection per turn of its loop, so neither takes the whole
    queue at once (Twisted's default: up to 100 per turn, which left one
    worker with most of a benchmark's connections). Counted per worker PID."""
    count = 40
    with supervised(tmp_path, 2) as server:
        workers = live_workers(server)
        request = b"GET /busy?ms=20 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        clients = []
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(count):
                client = Raw(server.port, timeout=PATIENCE)
                client.send(request)
                clients.append(client)
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        served = Counter()
        for client in clients:
            with client:
                response = client.read_response()
            assert response.status == 200, response
            served[response.json()["pid"]] += 1
        assert set(served) == workers, served
        assert min(served.values()) >= count // 4, served


def test_a_reload_that_cannot_start_keeps_the_old_workers(tmp_path):
    with supervised(tmp_path, 2) as server:
        before = live_workers(server)
        (tmp_path / "broken").touch()
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_line("reload abandoned", "stderr", timeout=PATIENCE)
        assert live_workers(server) == before
        assert all(get(server.port)["pid"] in before for _ in range(6))
        assert server.proc.poll() is None


def test_sigterm_lets_requests_in_flight_finish_and_exits_0(tmp_path):
    with supervised(tmp_path, 2) as server:
        held = Held(server, tmp_path)
        held.start("a")
        held.start("b")
        server.proc.send_signal(signal.SIGTERM)
        # A worker drains only what it has: wait until it says so.
        server.wait_for_line("Stopping: waiting up to", "stderr")
        answers = held.finish()
        assert len(answers) == 2
        assert server.wait(PATIENCE) == 0
        server.wait_for_line(r"Supervisor exiting \(exit status 0\)", "stderr")


def test_a_second_sigterm_kills_the_workers(tmp_path):
    with supervised(tmp_path, 2) as server:
        held = Held(server, tmp_path)
        pid = held.start("stuck")
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_line("Stopping: waiting up to", "stderr")
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(PATIENCE) == 1
        server.wait_for_line(rf"Worker {pid} exited \(killed by SIGKILL\)", "stderr")


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (nor is a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(tmp_path):
    with supervised(tmp_path, 2) as server:
        workers = live_workers(server)
        server.proc.kill()
        server.wait()
        wait_until(
            lambda: not any(running(pid) for pid in workers),
            "the orphaned workers to stop",
            server,
        )
        wait_until(
            lambda: sum("The supervisor has gone" in x for x in server.stderr) == 2,
            "each worker to say why it stopped",
            server,
        )


def test_sigttin_adds_a_worker_and_sigttou_removes_one(tmp_path):
    with supervised(tmp_path, 2) as server:
        two = live_workers(server)
        server.proc.send_signal(signal.SIGTTIN)
        three = wait_workers(server, 3)
        assert two < three
        server.proc.send_signal(signal.SIGTTOU)
        line = server.wait_for_line(r"Removing worker \d+", "stderr")
        removed = int(line.rsplit(" ", 1)[1])
        server.wait_for_line(rf"Worker {removed} exited \(exit status 0\)", "stderr")
        assert wait_workers(server, 2) == three - {removed}
        assert get(server.port)["pid"] in three - {removed}


def test_tls_endpoints_are_shared_and_wrapped_in_the_workers(tmp_path, tls_files):
    import ssl

    endpoint = ["-e", tls_endpoint(tls_files)]
    with supervised(tmp_path, 2, endpoint=endpoint) as server:
        context = ssl.create_default_context(cafile=str(tls_files[1]))
        url = f"https://127.0.0.1:{server.port}/"
        seen = {httpx.get(url, verify=context).json()["pid"] for _ in range(6)}
        assert seen <= live_workers(server)


def test_an_inherited_socket_is_shared_by_the_workers():
    """--fd N: the socket a process manager passed in serves every worker."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "--workers", "2"]
            + ["--fd", str(sock.fileno()), APP],
            cwd=ROOT,
            pass_fds=[sock.fileno()],
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        ready = set()
        for line in proc.stderr:
            ready |= {int(m) for m in READY.findall(line)}
            if len(ready) == 2:
                break
        assert len(ready) == 2
        assert all(get(port)["pid"] in ready for _ in range(6))
        proc.terminate()
        assert proc.wait(PATIENCE) == 0
    finally:
        proc.kill()
        proc.wait()


def get_unix(path: Path) -> int:
    """One request over the UNIX socket at ``path``; the worker's PID."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(PATIENCE)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return json.loads(body)["pid"]


def test_workers_share_a_unix_socket_its_path_kept_by_the_supervisor(tmp_path):
    """-u with --workers: every worker serves the path; replacing them all
    (SIGHUP) under load fails no request, although each old worker stops
    listening on the way out; the supervisor removes the path as it exits."""
    path = tmp_path / "daphne.sock"
    with supervised(tmp_path, 2, endpoint=["-u", str(path)], listening=False) as server:
        before = live_workers(server)
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert {get_unix(path) for _ in range(6)} <= before
        with steady_load(lambda: get_unix(path)) as results:
            wait_until(lambda: len(results) >= 20, "some requests before SIGHUP")
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for_line("Reload complete", "stderr", timeout=PATIENCE)
            for pid in before:
                server.wait_for_line(
                    rf"Worker {pid} exited \(exit status 0\)", "stderr"
                )
            count = len(results)
            wait_until(lambda: len(results) >= count + 20, "requests after it")
        assert [r for r in results if isinstance(r, Exception)] == []
        after = wait_workers(server, 2)
        assert after.isdisjoint(before)
        assert set(results[count + 1 :]) <= after  # (one may be in flight)
        assert server.stop() == 0
        assert not path.exists()


def test_the_supervisor_binds_without_a_reactor(tls_files):
    """Every endpoint kind is bound with the socket module alone."""
    script = f"""
import socket, sys
from daphne.supervisor import bind_endpoints
spare = socket.create_server(("127.0.0.1", 0))
sockets = bind_endpoints(sorted([
    "tcp:0:interface=127.0.0.1",
    "tcp:port=0:interface=\\\\:\\\\:1",
    {tls_endpoint(tls_files)!r},
    "fd:fileno=%d" % spare.fileno(),
]))
assert all(s.getsockname()[1] for s in sockets), sockets
assert "twisted.internet.reactor" not in sys.modules
print("ok", len(sockets))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout == "ok 4\n", result.stderr


def the_one_error(result) -> str:
    """Status 1, and one error line among the supervisor's log lines."""
    assert result.returncode == 1, result
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def test_the_in_memory_layer_is_refused_with_several_workers():
    result = daphne("--workers", "2", *LOCAL, "tests.layer_apps:channel_layer")
    error = the_one_error(result)
    assert "in-memory channel layer" in error
    assert "--workers-share-nothing" in error


def test_the_in_memory_layer_is_served_when_sharing_nothing_is_asked_for(tmp_path):
    with run_daphne(
        "--workers",
        "2",
        "--workers-share-nothing",
        *LOCAL,
        app="tests.layer_apps:channel_layer",
        listen=False,
    ) as server:
        wait_workers(server, 2)
        server.wait_for_line("layer of its own", "stderr")


def test_an_application_that_cannot_start_ends_the_supervisor_once():
    """The first worker starts alone: one error, no restart loop."""
    result = daphne("--workers", "3", *LOCAL, "tests.no_such_module:application")
    assert "no_such_module" in the_one_error(result)
    assert result.stderr.count("Started worker") == 1


def test_bad_worker_options_are_one_line_errors(tmp_path):
    taken = socket.create_server(("0.0.0.0", 0))
    taken_port = taken.getsockname()[1]
    (tmp_path / "taken.sock").touch()
    cases = [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "two"], "--workers"),
        (["--workers", "2", "-e", "nonsense:1"], "nonsense"),
        (["--workers", "2", "-e", "systemd:domain=INET:index=0"], "cannot share"),
        (["--workers", "2", "-e", f"tcp:{taken_port}"], "Cannot listen on"),
        (["--workers", "2", "-u", str(tmp_path / "taken.sock")], "Cannot listen on"),
    ]
    with taken:
        for args, text in cases:
            assert_one_line_error(daphne(*args, APP), text)


def test_one_worker_is_todays_single_process(tmp_path):
    """--workers 1 runs no supervisor: the PID serving is daphne's own."""
    with run_daphne("--workers", "1", app=APP) as server:
        assert get(server.port)["pid"] == server.proc.pid
        assert not any("Supervisor" in line for line in server.stderr)
