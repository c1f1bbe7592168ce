"""examples/chat, served by the real daphne CLI in channel-layer mode.

One daphne subprocess serves ``examples.chat.app:channel_layer`` for the whole
module; every test uses rooms of its own, so tests cannot hear each other.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.clients import ws_url
from tests.conftest import run_daphne

pytestmark = pytest.mark.timeout(30)

CLIENT = {"proxy": None, "ping_interval": None, "open_timeout": 5, "close_timeout": 2}


@pytest.fixture(scope="module")
def chat():
    with run_daphne(
        "--access-log", "/dev/null", app="examples.chat.app:channel_layer"
    ) as server:
        yield server


def new_room() -> str:
    return f"room-{uuid.uuid4().hex[:12]}"


@contextmanager
def join(server, room: str):
    """A connected client in ``room``, past its own join announcement."""
    with connect(ws_url(server, f"/chat/{room}"), **CLIENT) as ws:
        assert receive(ws)["event"] == "join"
        yield ws


def receive(ws) -> dict:
    return json.loads(ws.recv(timeout=5))


def next_chat(ws) -> dict:
    """The next chat message ``ws`` receives, skipping join/leave notices."""
    while True:
        frame = receive(ws)
        if "event" not in frame:
            return frame


def get(server, path: str, method: str = "GET") -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", timeout=5)


def test_page_is_html_with_the_websocket_client(chat):
    response = get(chat, "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert int(response.headers["content-length"]) == len(response.content)
    page = response.text
    assert page.startswith("<!DOCTYPE html>")
    assert "new WebSocket(" in page
    assert "/chat/${room}" in page
    assert '"wss:" : "ws:"' in page
    assert "innerHTML" not in page  # user data goes in as text only

    head = get(chat, "/", "HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == response.headers["content-length"]


@pytest.mark.parametrize("path", ["/index.html", "/chat/lobby", "/favicon.ico"])
def test_other_paths_are_404(chat, path):
    response = get(chat, path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "404" in response.text


def test_other_methods_are_405(chat):
    response = get(chat, "/", "POST")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_room_members_get_messages_and_other_rooms_do_not(chat):
    room, elsewhere = new_room(), new_room()
    with join(chat, room) as alice, join(chat, room) as bob:
        with join(chat, elsewhere) as carol:
            # Alice heard Bob arrive; nobody in the room heard Carol.
            assert receive(alice) == {"event": "join", "count": 2}

            alice.send(json.dumps({"name": "alice", "text": "<b>hi</b> \u00e9"}))
            expected = {"name": "alice", "text": "<b>hi</b> \u00e9"}
            assert next_chat(bob) == expected
            assert next_chat(alice) == expected  # the sender gets it too

            # Alice's message was delivered before Carol speaks: had it reached
            # Carol, it would come before her own.
            carol.send(json.dumps({"name": "carol", "text": "anyone?"}))
            assert next_chat(carol) == {"name": "carol", "text": "anyone?"}

        bob.send(json.dumps({"name": "bob", "text": "still here"}))
        assert next_chat(alice) == {"name": "bob", "text": "still here"}


def test_leaving_is_announced(chat):
    room = new_room()
    with join(chat, room) as alice:
        with join(chat, room):
            assert receive(alice) == {"event": "join", "count": 2}
        assert receive(alice) == {"event": "leave", "count": 1}


@pytest.mark.parametrize(
    "path",
    [
        "/chat/bad!room",
        "/chat/caf%C3%A9",
        "/chat/" + "a" * 51,
        "/chat/",
        "/chat/a/b",
        "/elsewhere",
        "/",
    ],
)
def test_invalid_room_or_path_is_refused(chat, path):
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(chat, path), **CLIENT)
    assert info.value.response.status_code == 403


@pytest.mark.parametrize("room", ["a" * 50, "A-b_9", "x"])
def test_valid_room_names_are_accepted(chat, room):
    with join(chat, room):
        pass


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"name": "x"}),
        json.dumps({"name": 1, "text": "x"}),
        json.dumps({"name": "x", "text": None}),
        json.dumps({"name": "   ", "text": "x"}),
        json.dumps({"name": "x" * 33, "text": "x"}),
        json.dumps({"name": "x", "text": "y" * 1001}),
        json.dumps({"name": "x", "text": "  "}),
        '{"name": "x", "text": "\\ud800"}',
        "[" * 10_000,
        b"\x00binary",
    ],
)
def test_malformed_message_is_answered_to_its_sender_only(chat, frame):
    room = new_room()
    with join(chat, room) as sender, join(chat, room) as other:
        receive(sender)  # (the other's join)
        sender.send(frame)
        error = receive(sender)
        assert set(error) == {"error"} and error["error"]

        # The socket still works, and the other member saw no error.
        sender.send(json.dumps({"name": "n" * 32, "text": "t" * 1000}))
        expected = {"name": "n" * 32, "text": "t" * 1000}
        assert next_chat(sender) == expected
        assert next_chat(other) == expected


def test_name_is_trimmed(chat):
    with join(chat, new_room()) as ws:
        ws.send(json.dumps({"name": "  ann  ", "text": " hi ", "extra": 1}))
        assert next_chat(ws) == {"name": "ann", "text": " hi "}
