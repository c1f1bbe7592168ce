"""Failures in the user's own code while daphne imports the target.

``import_by_path`` makes the user's exception the cause of its
``ImportTargetError``; ``user_traceback`` shows it without daphne's and the
import machinery's frames (what the command line prints, see
tests/test_cli_user_errors.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import daphne
from daphne.utils import (
    ImportTargetError,
    import_by_path,
    raised_in_user_code,
    user_location,
    user_traceback,
)

from . import test_utils

#: A module written to a temporary sys.path entry (the fixture of test_utils).
make_module = test_utils.make_module


def import_failure(target: str) -> ImportTargetError:
    with pytest.raises(ImportTargetError) as info:
        import_by_path(target)
    return info.value


def test_user_code_failure_is_the_cause(make_module):
    name = make_module("x = 1\nraise KeyError('SECRET_KEY')\n")
    cause = import_failure(f"{name}:app").__cause__
    assert isinstance(cause, KeyError)
    assert raised_in_user_code(cause)
    assert user_location(cause).endswith(f"{name}.py:2")


def test_missing_target_has_no_cause_and_no_user_frames():
    error = import_failure("daphne.no_such_module_here:app")
    assert error.__cause__ is None
    assert not raised_in_user_code(error.__context__)


def test_missing_attribute_stays_without_cause(make_module):
    name = make_module("app = 1\n")
    assert import_failure(f"{name}:application").__cause__ is None


def test_user_traceback_leaves_out_daphne_and_importlib(make_module):
    helper = make_module("def load():\n    return {}['DATABASES']\n")
    name = make_module(f"import {helper}\n\n{helper}.load()\n")
    text = user_traceback(import_failure(f"{name}:app").__cause__)
    frames = re.findall(r'File "([^"]+)", line (\d+)', text)
    assert [(Path(file).name, line) for file, line in frames] == [
        (f"{name}.py", "3"),
        (f"{helper}.py", "2"),
    ]
    assert text.startswith("Traceback (most recent call last):\n")
    assert text.endswith("KeyError: 'DATABASES'\n")


def test_user_traceback_shows_each_exception_of_a_chain(make_module):
    name = make_module(
        "try:\n"
        "    import daphne_not_installed_either\n"
        "except ImportError as exc:\n"
        "    raise RuntimeError('install the extras') from exc\n"
    )
    text = user_traceback(import_failure(f"{name}:app").__cause__)
    assert f'{name}.py", line 2' in text
    assert f'{name}.py", line 4' in text
    assert "direct cause of the following exception" in text
    assert "importlib" not in text and "<frozen" not in text
    daphne_dir = str(Path(daphne.__file__).parent)
    assert daphne_dir not in text


def test_syntax_error_counts_as_user_code(make_module):
    name = make_module("import os\nif :\n")
    cause = import_failure(f"{name}:app").__cause__
    assert isinstance(cause, SyntaxError)
    assert raised_in_user_code(cause)
    assert f'{name}.py", line 2' in user_traceback(cause)
