"""A multi-room chat: daphne in channel-layer mode, with worker threads.

Run it from the repository root with::

    daphne examples.chat.app:channel_layer

or ``make run`` (the Makefile's default), then open
http://127.0.0.1:8000/ in two browser windows. Add ``#<room>`` to the address
(or pick a room on the page) to chat somewhere other than ``lobby``.

The target is not an application but a channel layer. Daphne turns every
request and WebSocket event into a message on the layer (``http.request``,
``websocket.connect``, ``websocket.receive``, ...); the worker threads started
below take those messages, and answer on each connection's ``reply_channel``.
A room is a group on the layer: a socket joins its room's group when it
connects and leaves it when it disconnects, and a chat message is sent once to
the group, which delivers it to every member. Workers keep no state of their
own, so any worker can handle any message, as separate worker processes could
with a layer shared between processes.

Routes:

* ``GET /`` (or ``HEAD``) answers the chat page; other methods get a 405,
  other paths a 404.
* ``/chat/<room>`` is the room's WebSocket. A room name is 1 to 50 letters,
  digits, ``-`` or ``_``; any other name (or path) is refused with a 403.

Frames are JSON text. A client sends ``{"name": ..., "text": ...}`` (a name
of up to 32 characters, a message of up to 1000) and everyone in the room,
the sender included, receives ``{"name": ..., "text": ...}``. Joins and leaves
are announced as ``{"event": "join" | "leave", "count": <sockets in the
room>}``. Anything else the client sends is answered, to that socket only,
with ``{"error": ...}``; the socket stays open.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable

from daphne.layers import InMemoryChannelLayer

logger = logging.getLogger(__name__)

ROOM_PATH = "/chat/"
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,50}")
MAX_NAME = 32
MAX_TEXT = 1000
#: Longer frames are refused before parsing (enough for MAX_TEXT characters
#: even if every one is sent as a JSON ``\uXXXX\uXXXX`` escape).
MAX_FRAME = 16_000

Handler = Callable[[InMemoryChannelLayer, dict], None]


# -- HTTP -------------------------------------------------------------------------

PAGE = b"""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>daphne chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; color: #222;
         max-width: 40rem; margin: 1.5rem auto; padding: 0 1rem; }
  header { display: flex; align-items: baseline; justify-content: space-between; }
  h1 { font-size: 1.4rem; margin: 0; }
  #status { color: #777; font-size: .9rem; }
  form { display: flex; gap: .5rem; margin: .75rem 0; }
  input, button { font: inherit; padding: .3rem .6rem; }
  #text { flex: 1; min-width: 0; }
  #log { list-style: none; margin: 0; padding: .5rem .75rem; height: 24rem;
         overflow-y: auto; border: 1px solid #ccc; border-radius: 6px; }
  #log li { margin: .2rem 0; overflow-wrap: anywhere; white-space: pre-wrap; }
  #log .name { font-weight: 600; margin-right: .5rem; }
  #log .notice { color: #777; font-style: italic; }
  #log .error { color: #b00020; }
</style>
</head>
<body>
<header><h1>daphne chat</h1><span id="status">connecting&hellip;</span></header>
<form id="room-form">
  <input id="room" aria-label="Room" maxlength="50" required
         pattern="[A-Za-z0-9_\\-]{1,50}" title="letters, digits, - and _">
  <button>Join room</button>
</form>
<ul id="log" aria-live="polite"></ul>
<form id="send-form">
  <input id="name" aria-label="Nickname" placeholder="nickname" maxlength="32" required>
  <input id="text" aria-label="Message" placeholder="message" maxlength="1000"
         autocomplete="off" required>
  <button>Send</button>
</form>
<script>
"use strict";
const ROOM = /^[A-Za-z0-9_-]{1,50}$/;
const byId = (id) => document.getElementById(id);
const log = byId("log"), statusLine = byId("status");
let socket = null, retry = null;

function currentRoom() {
  const room = location.hash.slice(1);
  return ROOM.test(room) ? room : "lobby";
}

// User data only ever reaches the page as text nodes, never as HTML.
function show(text, { name = null, kind = "" } = {}) {
  const item = document.createElement("li");
  item.className = kind;
  if (name !== null) {
    const who = document.createElement("span");
    who.className = "name";
    who.textContent = name;
    item.append(who);
  }
  item.append(document.createTextNode(text));
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

function connect() {
  clearTimeout(retry);
  if (socket) {
    socket.onclose = null;
    socket.close();
  }
  const room = currentRoom();
  byId("room").value = room;
  log.replaceChildren();
  statusLine.textContent = "connecting\\u2026";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/chat/${room}`);
  socket.onopen = () => { statusLine.textContent = `room: ${room}`; };
  socket.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.error) {
      show(data.error, { kind: "error" });
    } else if (data.event) {
      const verb = data.event === "join" ? "joined" : "left";
      show(`someone ${verb} (${data.count} here)`, { kind: "notice" });
    } else {
      show(data.text, { name: data.name });
    }
  };
  socket.onclose = () => {
    statusLine.textContent = "disconnected, retrying\\u2026";
    retry = setTimeout(connect, 3000);
  };
}

byId("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = byId("room").value.trim();
  if (ROOM.test(room) && room !== currentRoom()) location.hash = room;
});

byId("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = byId("name").value.trim(), text = byId("text");
  if (!name || !text.value.trim() || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ name, text: text.value }));
  localStorage.setItem("chat-name", name);
  text.value = "";
  text.focus();
});

byId("name").value = localStorage.getItem("chat-name") || "";
window.addEventListener("hashchange", connect);
connect();
</script>
</body>
</html>
"""

NOT_FOUND = (
    b'<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>404 Not Found'
    b'</title><h1>404 Not Found</h1><p>The chat is at <a href="/">/</a>.</p></html>\n'
)
NOT_ALLOWED = (
    b'<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>405 Method Not '
    b"Allowed</title><h1>405 Method Not Allowed</h1><p>Only GET and HEAD are "
    b"accepted here.</p></html>\n"
)


def http_request(layer: InMemoryChannelLayer, message: dict) -> None:
    if message["path"] != "/":
        respond(layer, message, 404, NOT_FOUND)
    elif message["method"] not in ("GET", "HEAD"):
        respond(layer, message, 405, NOT_ALLOWED, [(b"allow", b"GET, HEAD")])
    else:
        respond(layer, message, 200, PAGE, [(b"cache-control", b"no-cache")])


def respond(
    layer: InMemoryChannelLayer,
    message: dict,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    # (Daphne leaves the body out of a HEAD response itself.)
    layer.send(
        message["reply_channel"],
        {
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
            "content": body,
        },
    )


def ignore(layer: InMemoryChannelLayer, message: dict) -> None:
    pass


# -- WebSocket ----------------------------------------------------------------------


class BadMessage(ValueError):
    """A frame that is not a chat message; its text is sent back to the client."""


def room_of(path: str) -> str | None:
    """The room a WebSocket path names, or None if it names none."""
    if path.startswith(ROOM_PATH):
        room = path[len(ROOM_PATH) :]
        if ROOM_NAME.fullmatch(room):
            return room
    return None


def group_of(room: str) -> str:
    return f"chat.{room}"


def frame(payload: dict) -> dict:
    """A reply carrying ``payload`` as a JSON text frame."""
    return {"text": json.dumps(payload)}


def announce(layer: InMemoryChannelLayer, group: str, event: str) -> None:
    count = len(layer.group_channels(group))
    layer.send_group(group, frame({"event": event, "count": count}))


def websocket_connect(layer: InMemoryChannelLayer, message: dict) -> None:
    channel = message["reply_channel"]
    room = room_of(message["path"])
    if room is None:
        layer.send(channel, {"accept": False})  # the client sees a 403
        return
    group = group_of(room)
    # Join before accepting: once the client sees its handshake succeed, it
    # already receives everything sent to the room.
    layer.group_add(group, channel)
    layer.send(channel, {"accept": True})
    announce(layer, group, "join")


def websocket_receive(layer: InMemoryChannelLayer, message: dict) -> None:
    room = room_of(message["path"])
    if room is None:
        return  # (never accepted)
    try:
        name, text = parse_chat(message.get("text"))
    except BadMessage as exc:
        layer.send(message["reply_channel"], frame({"error": str(exc)}))
        return
    layer.send_group(group_of(room), frame({"name": name, "text": text}))


def websocket_disconnect(layer: InMemoryChannelLayer, message: dict) -> None:
    room = room_of(message["path"])
    if room is None:
        return  # (refused: it never joined)
    group = group_of(room)
    channel = message["reply_channel"]
    if channel in layer.group_channels(group):
        layer.group_discard(group, channel)
        announce(layer, group, "leave")


def parse_chat(raw: str | None) -> tuple[str, str]:
    """The ``(name, text)`` of a client's frame, or ``BadMessage``."""
    if raw is None:
        raise BadMessage("Send text frames, not binary ones.")
    if len(raw) > MAX_FRAME:
        raise BadMessage("That message is too long.")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadMessage("Messages must be JSON.") from None
    if not isinstance(data, dict):
        raise BadMessage('Send a JSON object: {"name": ..., "text": ...}.')
    name, text = data.get("name"), data.get("text")
    if not isinstance(name, str) or not isinstance(text, str):
        raise BadMessage("Both name and text must be strings.")
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME:
        raise BadMessage(f"A name has 1 to {MAX_NAME} characters.")
    if not text.strip() or len(text) > MAX_TEXT:
        raise BadMessage(f"A message has 1 to {MAX_TEXT} characters.")
    for value in (name, text):
        # JSON can encode lone surrogates ("\ud800"), which are not text.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadMessage("Text must be valid Unicode.") from None
    return name, text


# -- the workers ----------------------------------------------------------------------

HANDLERS: dict[str, Handler] = {
    "http.request": http_request,
    # (Taken and dropped, so that they do not pile up on the layer.)
    "http.disconnect": ignore,
    "websocket.connect": websocket_connect,
    "websocket.receive": websocket_receive,
    "websocket.disconnect": websocket_disconnect,
}


def work(layer: InMemoryChannelLayer) -> None:
    """One worker: take a message from any channel it serves, handle it, repeat."""
    channels = list(HANDLERS)
    while True:
        channel, message = layer.receive(channels, block=True)
        if channel is None:
            continue  # (nothing arrived within the layer's blocking timeout)
        try:
            HANDLERS[channel](layer, message)
        except Exception:  # one bad message must not stop the worker
            logger.exception("Chat worker failed to handle a %s message", channel)


def start_workers(layer: InMemoryChannelLayer, count: int = 2) -> None:
    for number in range(count):
        threading.Thread(
            target=work, args=(layer,), name=f"chat-worker-{number}", daemon=True
        ).start()


# Every reply, to every connection, goes through one process-specific queue
# ("daphne.response.<random>!"); a message to a busy room puts one reply per
# member there at once, so that queue gets more room than the default 100.
channel_layer = InMemoryChannelLayer(channel_capacity={"daphne.response.*": 5000})
start_workers(channel_layer)
