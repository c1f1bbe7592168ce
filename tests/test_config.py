"""Tests for daphne.config.Config normalisation and validation, and the
matching command-line checks."""

from __future__ import annotations

import logging
import sys

import pytest

from daphne.cli import CommandLineInterface
from daphne.config import Config, ConfigError
from daphne.server import Server


async def _app(scope, receive, send):
    pass


@pytest.mark.parametrize("name", ["websocket_timeout", "websocket_connect_timeout"])
def test_negative_websocket_timeout_means_never(name):
    assert getattr(Config(**{name: -1}), name) is None


@pytest.mark.parametrize("name", ["websocket_timeout", "websocket_connect_timeout"])
def test_negative_websocket_timeout_through_replace_means_never(name):
    assert getattr(Config().replace(**{name: -1}), name) is None


@pytest.mark.parametrize("name", ["websocket_timeout", "websocket_connect_timeout"])
def test_server_keyword_negative_websocket_timeout_means_never(name):
    server = Server(_app, endpoints=["tcp:0:interface=127.0.0.1"], **{name: -1})
    assert getattr(server.config, name) is None


@pytest.mark.parametrize("root_path", ["noslash", "/x/", "/"])
def test_bad_root_path_is_a_config_error(root_path):
    with pytest.raises(ConfigError, match="root_path"):
        Config(root_path=root_path)


@pytest.mark.parametrize("root_path", ["", "/x", "/x/y"])
def test_good_root_path_is_accepted(root_path):
    assert Config(root_path=root_path).root_path == root_path


class _NoServer:
    def __init__(self, **kwargs):
        raise AssertionError("the server must not be built")


class _CLI(CommandLineInterface):
    server_class = _NoServer

    @staticmethod
    def _route_twisted_logs(verbosity):
        """Leave Twisted's global log observers of the test process alone."""


@pytest.mark.parametrize("host", ["", "[]", " "])
def test_empty_bind_is_a_one_line_error(monkeypatch, capsys, host):
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit) as info:
        _CLI().run(["-b", host, "tests.cli_apps:application"])
    assert info.value.code not in (0, None)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("daphne: error:"), lines
    assert "--bind" in lines[0]


@pytest.mark.parametrize("name", ["websocket_timeout", "websocket_connect_timeout"])
def test_zero_websocket_timeout_is_a_config_error(name):
    with pytest.raises(ConfigError, match=f"{name} must not be 0"):
        Config(**{name: 0})


def test_zero_websocket_timeout_on_the_command_line_names_the_option(
    capsys, monkeypatch
):
    # (_CLI, basicConfig and sys.path as in the test above: the global logging
    # of the test process is left alone.)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit) as exit_info:
        _CLI().run(["--websocket_timeout", "0", "tests.apps:application"])
    assert exit_info.value.code != 0
    assert "--websocket-timeout must not be 0" in capsys.readouterr().err


def test_interface_must_be_known():
    with pytest.raises(ConfigError, match="interface must be one of"):
        Config(interface="wsgi")


def test_ws_protocols_become_a_tuple():
    assert Config(ws_protocols=["chat", "other"]).ws_protocols == ("chat", "other")
