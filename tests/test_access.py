"""Tests for daphne.access.AccessLogGenerator."""

from __future__ import annotations

import datetime
import io
import re

import pytest

from daphne.access import AccessLogGenerator

DATE = r"\[\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2}\]"


def log_line(protocol: str, action: str, details: dict) -> str:
    stream = io.StringIO()
    AccessLogGenerator(stream)(protocol, action, details)
    return stream.getvalue()


def assert_line(line: str, prefix: str, suffix: str) -> None:
    pattern = re.escape(prefix) + " " + DATE + " " + re.escape(suffix) + "\n"
    assert re.fullmatch(pattern, line), line


def test_http_complete():
    line = log_line(
        "http",
        "complete",
        {
            "client": "10.0.0.1:51234",
            "method": "GET",
            "path": "/items?page=2",
            "status": 200,
            "size": 512,
            "time_taken": 0.01,
        },
    )
    assert_line(line, "10.0.0.1:51234 - -", '"GET /items?page=2" 200 512')


def test_http_complete_without_client_and_empty_body():
    line = log_line(
        "http",
        "complete",
        {"client": None, "method": "POST", "path": "/", "status": 204, "size": 0},
    )
    assert_line(line, "- - -", '"POST /" 204 -')


def test_http_date_is_now():
    line = log_line(
        "http",
        "complete",
        {"client": "c:1", "method": "GET", "path": "/", "status": 200, "size": 1},
    )
    stamp = re.search(r"\[([^\]]+)\]", line).group(1)
    logged = datetime.datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S")
    assert abs(datetime.datetime.now() - logged) < datetime.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("action", "verb"),
    [
        ("connecting", "WSCONNECTING"),
        ("connected", "WSCONNECT"),
        ("rejected", "WSREJECT"),
        ("disconnected", "WSDISCONNECT"),
    ],
)
def test_websocket_actions(action, verb):
    line = log_line("websocket", action, {"client": "[::1]:4000", "path": "/ws/"})
    assert_line(line, "[::1]:4000 - -", f'"{verb} /ws/" - -')


def test_websocket_without_client():
    line = log_line("websocket", "connected", {"client": None, "path": "/ws"})
    assert_line(line, "- - -", '"WSCONNECT /ws" - -')


@pytest.mark.parametrize(
    ("protocol", "action"),
    [
        ("http", "start"),
        ("http", "connecting"),
        ("websocket", "complete"),
        ("websocket", "message"),
        ("lifespan", "complete"),
        ("", ""),
    ],
)
def test_unknown_events_ignored(protocol, action):
    assert log_line(protocol, action, {}) == ""


def test_each_event_is_flushed():
    class Stream(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1
            super().flush()

    stream = Stream()
    log = AccessLogGenerator(stream)
    log("websocket", "connecting", {"client": "a:1", "path": "/"})
    assert stream.flushes == 1
    log("websocket", "nonsense", {"client": "a:1", "path": "/"})
    assert stream.flushes == 1
    log(
        "http",
        "complete",
        {"client": "a:1", "method": "GET", "path": "/"}
        | {
            "status": 404,
            "size": 9,
        },
    )
    assert stream.flushes == 2
    assert stream.getvalue().count("\n") == 2


def test_write_entry_formats_all_fields():
    stream = io.StringIO()
    AccessLogGenerator(stream).write_entry(
        host="192.0.2.7:80",
        date=datetime.datetime(2024, 3, 5, 7, 8, 9),
        request="GET /",
        status=301,
        length=1234,
        ident="ident",
        user="alice",
    )
    assert stream.getvalue() == (
        '192.0.2.7:80 ident alice [05/Mar/2024:07:08:09] "GET /" 301 1234\n'
    )


def test_write_entry_defaults():
    stream = io.StringIO()
    AccessLogGenerator(stream).write_entry(
        host=None, date=datetime.datetime(1999, 12, 31, 23, 59, 58), request="X /"
    )
    assert stream.getvalue() == '- - - [31/Dec/1999:23:59:58] "X /" - -\n'


def test_write_entry_zero_length_is_dash():
    stream = io.StringIO()
    AccessLogGenerator(stream).write_entry(
        host="h",
        date=datetime.datetime(2020, 1, 2),
        request="GET /",
        status=0,
        length=0,
    )
    assert stream.getvalue() == 'h - - [02/Jan/2020:00:00:00] "GET /" 0 -\n'


def test_control_characters_cannot_split_lines():
    line = log_line(
        "http",
        "complete",
        {
            "client": "c:1",
            "method": "GET",
            "path": "/a\nb\x1b[0m\x85",
            "status": 200,
            "size": 1,
        },
    )
    assert line.count("\n") == 1
    assert len(line.splitlines()) == 1
    assert "/a\\nb\\x1b[0m\\x85" in line
