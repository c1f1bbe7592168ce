"""Start-up failures in the user's own code, through the real command line.

An exception raised by the application's code (while importing it, while
telling what kind of target it is, in its lifespan startup) is shown with
the traceback of the user's frames only: the file and line where it was
raised, none of daphne's or importlib's frames, and a non-zero exit. A
target that does not exist stays a one-line error (tests/test_cli.py).
The applications are in tests/cli_broken/.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import ROOT, run_daphne
from .test_cli import daphne

BROKEN = ROOT / "tests" / "cli_broken"

# Each case: arguments, then (file, line) of the innermost user frame, then
# text the final error line must contain. "tmp:" files are written by the
# fixture below (a syntax error cannot live in the repository: ruff reads it).
CASES = {
    "NameError in a module the target imports": (
        ["tests.cli_broken.asgi:application"],
        (BROKEN / "consumers.py", 5),
        ["tests.cli_broken.asgi", "NameError", "GROUP_NAME"],
    ),
    "package the user's module imports is not installed": (
        ["tests.cli_broken.needs_package:application"],
        (BROKEN / "needs_package.py", 3),
        ["ModuleNotFoundError", "daphne_test_package_not_installed"],
    ),
    "ImportError raised by the module": (
        ["daphne_cli_raises_import_error:application"],
        ("tmp:daphne_cli_raises_import_error.py", 2),
        ["daphne_cli_raises_import_error", "inner dependency is missing"],
    ),
    "syntax error": (
        ["daphne_cli_syntax_error:application"],
        ("tmp:daphne_cli_syntax_error.py", 3),
        ["daphne_cli_syntax_error", "SyntaxError"],
    ),
    "module __getattr__ raising": (
        ["daphne_cli_lazy_module:application"],
        ("tmp:daphne_cli_lazy_module.py", 2),
        ["'application'", "LookupError", "settings not configured"],
    ),
    "property raising while the target's kind is told": (
        ["tests.cli_broken.lifespan:lazy"],
        (BROKEN / "lifespan.py", 13),
        ["tests.cli_broken.lifespan:lazy", "RuntimeError", "lazy attribute failed"],
    ),
    "lifespan startup raising (--lifespan on)": (
        ["--lifespan", "on", "-e", "tcp:0:interface=127.0.0.1"]
        + ["tests.cli_broken.lifespan:startup_raises"],
        (BROKEN / "lifespan.py", 7),
        ["Lifespan startup failed", "the cache server is down"],
    ),
}

TMP_MODULES = {
    "daphne_cli_raises_import_error.py": (
        'import os\nraise ImportError("inner dependency is missing")\n'
    ),
    "daphne_cli_syntax_error.py": "import os\n\ndef broken(:\n    pass\n",
    "daphne_cli_lazy_module.py": (
        "def __getattr__(name):\n    raise LookupError('settings not configured')\n"
    ),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case run at once (quiet, so stderr is the report alone)."""
    modules = tmp_path_factory.mktemp("modules")
    for name, source in TMP_MODULES.items():
        (modules / name).write_text(source)
    env = {"PYTHONPATH": str(modules)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(daphne, "-v", "0", *args, env=env)
            for name, (args, _, _) in CASES.items()
        }
        return modules, {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES)
def test_user_code_error_shows_where_it_was_raised(results, case):
    modules, outcomes = results
    result = outcomes[case]
    _, (path, line), needles = CASES[case]
    if isinstance(path, str):
        path = modules / path.removeprefix("tmp:")
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    # The last line is the one error line, naming what failed.
    assert lines[-1].startswith("daphne: error: "), lines
    assert sum(line.startswith("daphne: error:") for line in lines) == 1
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    # Above it, the user's file and line, as Python shows them.
    frames = re.findall(r'^  File "([^"]+)", line (\d+)', result.stderr, re.M)
    assert frames, result.stderr
    assert frames[-1] == (str(path), str(line)), frames
    # and nothing of daphne's or of the import machinery's.
    daphne_dir = str(ROOT / "daphne")
    for filename, _ in frames:
        assert not filename.startswith(daphne_dir), result.stderr
        assert "importlib" not in filename, result.stderr
    assert "<frozen" not in result.stderr


def test_a_missing_target_is_still_one_line(results):
    """The target's own module missing: one line, no traceback (the case
    where the user's code misses a package is above)."""
    result = daphne("-v", "0", "tests.cli_broken.no_such_module:application")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "daphne: error: Cannot import 'tests.cli_broken.no_such_module': "
        "No module named 'tests.cli_broken.no_such_module'"
    ]


def test_lifespan_unsupported_in_auto_mode_says_where(tmp_path):
    """--lifespan auto treats an exception before any answer as "no lifespan
    support" and serves on; the log line still says where it came from."""
    with run_daphne(app="tests.cli_broken.lifespan:startup_raises") as server:
        line = server.wait_for_line("does not support lifespan", stream="stderr")
    assert f"{BROKEN / 'lifespan.py'}:7" in line
    assert "the cache server is down" in line


def test_lifespan_shutdown_exception_is_logged_with_where():
    with run_daphne(app="tests.cli_broken.lifespan:shutdown_raises") as server:
        server.stop()
    stderr = "\n".join(server.stderr)
    assert "Lifespan shutdown failed: RuntimeError: could not flush" in stderr
    assert f'File "{BROKEN / "lifespan.py"}", line 28, in shutdown_raises' in stderr
    assert str(ROOT / "daphne") not in stderr
