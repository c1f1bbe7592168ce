"""``daphne --reload`` over a real process: the reloader, its server child,
file changes, signals, and the options' errors.

The served module lives in ``tmp_path`` (on ``PYTHONPATH``), which is the
one directory watched. Bytecode is not written, so that a rewrite within
the same second as the import cannot be served from a stale ``.pyc``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.clients import exchange
from tests.conftest import ROOT, DaphneServer

pytest.importorskip(
    "watchfiles", reason="watchfiles is not installed (make install: daphne[tests])"
)

MODULE = """\
import json, os

VERSION = {version!r}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({{"version": VERSION, "pid": os.getpid()}}).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
"""

RESTART = "restarting the server"


def answer(server: DaphneServer) -> dict:
    """GET / from the server's latest child (each binds a new port)."""
    port = int(server.addresses[-1].rsplit(":", 1)[1])
    response = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 200, response
    return json.loads(response.body)


def wait_for_version(server: DaphneServer, version: str, timeout: float = 30) -> dict:
    """The first answer from ``version`` of the module (a bounded wait)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = answer(server)
        except OSError:  # between the old child and the new one
            seen = None
        if seen is not None and seen["version"] == version:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"still {seen} after {timeout}s: {server.stderr[-10:]}")


@contextmanager
def reloading(tmp_path: Path, *args: str) -> Iterator[DaphneServer]:
    """``daphne --reload --reload-dir TMP ARGS served:app`` serving v1."""
    (tmp_path / "served.py").write_text(MODULE.format(version="v1"))
    server = DaphneServer(
        ["-e", "tcp:0:interface=127.0.0.1", "--reload", "--reload-dir"]
        + [str(tmp_path), *args, "served:app"],
        env={"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        session=True,
    )
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()


def test_change_restarts_with_the_new_code(tmp_path):
    """A changed module is served by a new child process, the change named;
    SIGTERM to the reloader stops the child, and the reloader exits 0."""
    with reloading(tmp_path) as server:
        first = answer(server)
        assert first["version"] == "v1"
        (tmp_path / "served.py").write_text(MODULE.format(version="v2"))
        second = wait_for_version(server, "v2")
        assert second["pid"] != first["pid"]
        server.wait_for_line(f"Changed: .*served.py; {RESTART}", "stderr")
        server.proc.send_signal(signal.SIGTERM)  # the reloader only
        assert server.wait() == 0
        with pytest.raises(ProcessLookupError):
            os.kill(second["pid"], 0)


def test_excluded_changes_do_not_restart(tmp_path):
    """Changes to excluded files (by default and by --reload-exclude) and to
    files no include matches come before a change to a watched file, and
    only that one restarts the server, once."""
    with reloading(tmp_path, "--reload-exclude", "skip_*") as server:
        first = answer(server)
        for name in (
            "skip_me.py",
            ".hidden.py",
            "notes.txt",
            "served.pyc",
            "__pycache__/cached.py",
            ".venv/lib/site.py",
        ):
            (tmp_path / name).parent.mkdir(exist_ok=True, parents=True)
            (tmp_path / name).write_text("x = 1\n")
        (tmp_path / "served.py").write_text(MODULE.format(version="v2"))
        second = wait_for_version(server, "v2")
        assert second["pid"] != first["pid"]
        restarts = [line for line in server.stderr if RESTART in line]
        assert len(restarts) == 1, restarts
        assert restarts[0].endswith(f"Changed: {tmp_path / 'served.py'}; {RESTART}")


def test_include_adds_watched_files(tmp_path):
    """--reload-include makes a change to a matching file restart the server."""
    with reloading(tmp_path, "--reload-include", "*.toml") as server:
        first = answer(server)
        (tmp_path / "settings.toml").write_text("debug = true\n")
        server.wait_for_line(f"settings.toml; {RESTART}", "stderr", timeout=30)
        assert server.stop(signal.SIGINT) == 0
        assert first["version"] == "v1"


def test_the_server_starts_once_the_watches_are_in_place(tmp_path, monkeypatch):
    """A change saved as soon as the server answers is seen: the child
    starts only after the watcher's first report (its watches exist)."""
    import types

    from daphne import reloader

    order: list[str] = []

    def watch(*paths, stop_event, **options):
        order.append("watching")
        yield set()  # the first report: nothing changed since the watches
        order.append("second report")
        stop_event.set()
        yield set()

    monkeypatch.setitem(sys.modules, "watchfiles", types.SimpleNamespace(watch=watch))
    monkeypatch.setattr(reloader.signal, "signal", lambda *args: None)
    server = reloader.Reloader(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        [tmp_path],
        reloader.ChangeFilter([tmp_path]),
        grace=5,
    )
    start = server.start
    monkeypatch.setattr(server, "start", lambda: (order.append("start"), start()))
    assert server.run() == 0
    assert order == ["watching", "start", "second report"]
    assert server.child is None  # stopped on the way out


def run_cli(*args: str, code: str = "") -> subprocess.CompletedProcess:
    """``daphne ARGS`` through ``python -c``, after ``code``."""
    program = f"{code}\nfrom daphne.__main__ import main\nmain()"
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_without_watchfiles_is_one_line():
    """With watchfiles not importable, --reload is one line naming the extra."""
    result = run_cli(
        "--reload",
        "tests.apps:application",
        code="import sys; sys.modules['watchfiles'] = None",
    )
    assert result.returncode == 1
    assert result.stderr == (
        "daphne: error: --reload needs the watchfiles package: "
        "pip install 'daphne[reload]'\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reload-dir", "."], "--reload-dir needs --reload"),
        (["--reload-exclude", "*.txt"], "--reload-exclude needs --reload"),
        (
            ["--reload", "--reload-dir", "/nonexistent"],
            "--reload-dir /nonexistent is not a directory",
        ),
    ],
)
def test_bad_reload_options_are_one_line(args, message):
    result = run_cli(*args, "tests.apps:application")
    assert result.returncode == 1
    assert result.stderr == f"daphne: error: {message}\n"


def test_conflicts_with_workers():
    """--reload with --workers above 1 is refused (the reloader is never
    in production by accident)."""
    help_text = run_cli("-h").stdout
    if "--workers" not in help_text:
        pytest.skip("--workers is not an option yet (issue 14, in parallel)")
    result = run_cli("--reload", "--workers", "2", "tests.apps:application")
    assert result.returncode == 1
    assert result.stderr == (
        "daphne: error: --reload cannot be used with --workers above 1\n"
    )
