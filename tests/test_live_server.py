"""Channels' live-server test case on daphne, through Django's test runner.

``channels.testing.ChannelsLiveServerTestCase`` runs its server with
:class:`daphne.testing.DaphneProcess`. Each test here runs a module of
tests/django_project with ``python -m django test`` in a subprocess (the
project's own settings, a SQLite test database in a temporary directory).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import ROOT

pytest.importorskip("channels")

SETTINGS = "tests.django_project.project_settings"


def django_test(module: str, db_dir) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DAPHNE_TEST_DB_DIR": str(db_dir),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "test", "-v", "2", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_channels_live_server_test_case_passes_on_daphne(tmp_path):
    """HTTP, static files, the test database and a WebSocket group."""
    result = django_test("tests.django_project.live_tests", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Ran 4 tests" in output
    for name in (
        "test_http_view_is_served_by_daphne",
        "test_static_files_are_served",
        "test_views_read_the_test_database",
        "test_websocket_consumers_talk_through_a_group",
    ):
        assert re.search(rf"^{name} \(.*\) \.\.\. ok$", output, re.M), output


def test_a_live_server_that_cannot_start_fails_with_the_childs_traceback(tmp_path):
    result = django_test("tests.django_project.live_failure_tests", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "ERROR: setUpClass" in output
    assert "RuntimeError: daphne could not start in its child process:" in output
    # The child's own traceback: the file and line of the project's bug.
    assert f'File "{ROOT / "tests/django_project/broken_asgi.py"}", line 4' in output
    assert "NameError: name 'undefined_in_broken_asgi' is not defined" in output
    assert "Ran 0 tests" in output
