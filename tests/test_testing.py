"""Tests for daphne.testing.DaphneProcess (a server in a forked child)."""

from __future__ import annotations

import os

import httpx
import pytest

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


def test_daphne_process_reports_a_bad_kwarg():
    process = DaphneProcess("127.0.0.1", get_application, kwargs={"nonsense": 1})
    process.start()
    try:
        assert process.ready.wait(10)
        exc, trace = process.errors.get(timeout=5)
        assert isinstance(exc, TypeError)
        assert "nonsense" in str(exc)
        assert "Traceback" in trace
        process.join(10)
        assert not process.is_alive()
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)


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
