"""Tests for daphne.testing.DaphneProcess (a server in a forked child)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from daphne.testing import DaphneProcess

from .cli_apps import get_application


@pytest.fixture
def start_process():
    """Start DaphneProcess instances; every one is terminated afterwards."""
    started: list[DaphneProcess] = []

    def start(**kwargs) -> DaphneProcess:
        process = DaphneProcess("127.0.0.1", get_application, **kwargs)
        process.start()
        started.append(process)
        assert process.ready.wait(10), "DaphneProcess never became ready"
        assert process.errors.empty(), process.errors.get()
        assert process.port.value > 0
        return process

    yield start
    for process in started:
        if process.is_alive():
            process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)


def test_daphne_process_serves_on_its_port(start_process):
    process = start_process()
    response = httpx.get(f"http://127.0.0.1:{process.port.value}/child", timeout=10)
    assert response.status_code == 200
    scope = response.json()
    assert scope["path"] == "/child"
    assert scope["pid"] == process.pid
    assert scope["pid"] != os.getpid()
    assert scope["server"] == ["127.0.0.1", process.port.value]


def test_daphne_process_terminate_stops_it(start_process):
    process = start_process()
    port = process.port.value
    process.terminate()
    process.join(10)
    assert not process.is_alive()
    assert process.exitcode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_daphne_process_passes_kwargs_to_the_server(start_process):
    process = start_process(kwargs={"root_path": "/x", "server_name": "from-kwargs"})
    response = httpx.get(f"http://127.0.0.1:{process.port.value}/x/page", timeout=10)
    assert response.status_code == 200
    assert response.json()["root_path"] == "/x"
    assert response.headers["server"] == "from-kwargs"


def stopped(process: DaphneProcess) -> None:
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join(5)


def test_daphne_process_reports_a_bad_kwarg():
    process = DaphneProcess("127.0.0.1", get_application, kwargs={"nonsense": 1})
    process.start()
    try:
        with pytest.raises(RuntimeError) as raised:
            process.ready.wait(10)
        message = str(raised.value)
        assert message.startswith("daphne could not start in its child process:")
        assert "Traceback (most recent call last):" in message
        assert "TypeError: Unknown Server options: nonsense" in message
        # The Daphne 4 queue still gets the exception and its traceback.
        exc, trace = process.errors.get(timeout=5)
        assert isinstance(exc, TypeError)
        assert "nonsense" in str(exc)
        assert "Traceback" in trace
        process.join(10)
        assert not process.is_alive()
    finally:
        stopped(process)


def broken_application():
    return undefined_name  # noqa: F821 - the error the parent must see


def test_an_application_that_fails_to_load_raises_with_the_childs_traceback():
    process = DaphneProcess("127.0.0.1", broken_application)
    process.start()
    try:
        with pytest.raises(RuntimeError) as raised:
            process.ready.wait(10)
        message = str(raised.value)
        assert "NameError: name 'undefined_name' is not defined" in message
        # The innermost frame is the child's, with its file and line.
        assert f'File "{__file__}"' in message
        assert "in broken_application" in message
        assert process.port.value == 0
    finally:
        stopped(process)


def test_a_failure_after_start_up_is_not_a_start_up_failure():
    """Waiting again after a later failure still says the server was ready."""
    process = DaphneProcess("127.0.0.1", get_application)
    process.start()
    try:
        assert process.ready.wait(10)
        process.terminate()
        process.join(10)
        assert process.ready.wait(1)
        assert process.ready.failure is None
    finally:
        stopped(process)


def test_a_child_that_dies_before_it_is_ready_raises():
    process = DaphneProcess("127.0.0.1", get_application, setup=lambda: os._exit(3))
    process.start()
    try:
        with pytest.raises(RuntimeError, match=r"exited \(code 3\) before"):
            process.ready.wait(10)
    finally:
        stopped(process)


def test_wait_times_out_while_the_child_is_still_starting():
    release = multiprocessing.get_context("fork").Event()
    process = DaphneProcess(
        "127.0.0.1", get_application, setup=lambda: release.wait(10)
    )
    process.start()
    try:
        started = time.monotonic()
        assert process.ready.wait(0.3) is False
        assert time.monotonic() - started < 2
        release.set()
        assert process.ready.wait(10) is True
        assert process.port.value > 0
    finally:
        process.terminate()
        stopped(process)


def test_daphne_process_runs_setup_and_teardown_in_the_child(tmp_path):
    marker = tmp_path / "marker"

    def setup():
        marker.write_text(f"setup {os.getpid()}\n")

    def teardown():
        with marker.open("a") as out:
            out.write(f"teardown {os.getpid()}\n")

    process = DaphneProcess(
        "127.0.0.1", get_application, setup=setup, teardown=teardown
    )
    process.start()
    try:
        assert process.ready.wait(10)
        assert marker.read_text() == f"setup {process.pid}\n"
    finally:
        process.terminate()
        process.join(10)
    assert marker.read_text().splitlines() == [
        f"setup {process.pid}",
        f"teardown {process.pid}",
    ]


def get_ws_application():
    from tests.ws_apps import application

    return application


def test_action_logger_gets_daphne4_event_shapes(tmp_path):
    """Server's ``action_logger`` sees what Daphne 4 passed it: for HTTP,
    path, status, method, client, time_taken (seconds) and size; for
    WebSocket, path and client."""
    events = tmp_path / "events"

    def action_logger(protocol: str, action: str, details: dict) -> None:
        with events.open("a") as out:
            out.write(json.dumps([protocol, action, details]) + "\n")

    process = DaphneProcess(
        "127.0.0.1", get_ws_application, kwargs={"action_logger": action_logger}
    )
    process.start()
    try:
        assert process.ready.wait(10)
        port = process.port.value
        response = httpx.get(f"http://127.0.0.1:{port}/page?x=1", timeout=10)
        assert response.status_code == 200
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{port}/reject", open_timeout=10)
        deadline = time.monotonic() + 10
        while not events.exists() or len(events.read_text().splitlines()) < 7:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        process.terminate()
        stopped(process)
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    http, *websocket = logged
    assert http[:2] == ["http", "complete"]
    details = http[2]
    assert set(details) == {"path", "status", "method", "client", "time_taken", "size"}
    assert details["path"] == "/page?x=1"
    assert (details["status"], details["method"], details["size"]) == (200, "GET", 7)
    assert details["client"].startswith("127.0.0.1:")
    assert isinstance(details["time_taken"], float)
    assert 0 <= details["time_taken"] < 10
    assert [event[:2] for event in websocket] == [
        ["websocket", "connecting"],
        ["websocket", "connected"],
        ["websocket", "disconnected"],
        ["websocket", "connecting"],
        ["websocket", "rejected"],
        ["websocket", "disconnected"],  # (as Daphne 4 logged it too)
    ]
    for _, _, details in websocket:
        assert set(details) == {"path", "client"}
        assert details["client"].startswith("127.0.0.1:")
    assert [event[2]["path"] for event in websocket] == ["/echo"] * 3 + ["/reject"] * 3
