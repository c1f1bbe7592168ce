"""The WebSocket opening handshake (RFC 6455 section 4.2), owned by daphne.

It reads the request the connection has already parsed: nothing is written
out again for a second parser to read differently. It checks the upgrade
request, builds the ``websocket`` scope, and writes the ``101`` answer once
the application accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from ..http.errors import HTTPError
from ..utils import header_problem, is_valid_header_name

#: RFC 6455 section 1.3: appended to the client's key to make the accept key.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Protocol versions understood (RFC 6455 is 13; 8 is its last draft, which
#: frames the same way), and the header that says so to other clients.
VERSIONS = (13, 8)
VERSIONS_HEADER = (b"Sec-WebSocket-Version", b"13, 8")

#: Fields a handshake may carry once at most.
SINGLE_FIELDS = (b"sec-websocket-version", b"sec-websocket-key")

#: The origin field of each version (draft 8 named it differently).
ORIGIN_FIELDS = {13: b"origin", 8: b"sec-websocket-origin"}

#: The WebSocket scheme for the connection's HTTP scheme.
WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}

#: Response headers the server owns in a 101 answer.
RESERVED_ACCEPT_HEADERS = frozenset(
    {
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"upgrade",
        b"connection",
        b"content-length",
        b"transfer-encoding",
    }
)


class HandshakeError(HTTPError):
    """An upgrade request that is not a valid WebSocket handshake; it is
    answered as plain HTTP, before the application hears of it."""


#: One lexical item of a Sec-WebSocket-Extensions value (RFC 6455 section
#: 9.1): optional whitespace, then a token, a quoted-string or a separator.
_EXTENSION_ITEM = re.compile(
    rb"[ \t]*(?:(?P<token>[!#$%&'*+\-.^_`|~0-9A-Za-z]+)"
    rb'|"(?P<quoted>(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*)"'
    rb"|(?P<sep>[,;=]))[ \t]*"
)
_QUOTED_PAIR = re.compile(rb"\\(.)")


def extension_offers(values: list[bytes]) -> list[tuple[str, dict[str, list[Any]]]]:
    """The extensions a client offers (every ``Sec-WebSocket-Extensions``
    line, in order): ``[(name, {param: [value, ...]})]``, a parameter without
    a value having ``True``. Raises :class:`HandshakeError` if the header
    does not follow the grammar of RFC 6455 section 9.1: two parsers could
    read it differently, so it is refused, not guessed at.
    """
    items: list[tuple[str, bytes]] = []
    for value in values:
        pos = 0
        while pos < len(value):
            match = _EXTENSION_ITEM.match(value, pos)
            if match is None:
                raise HandshakeError("Invalid Sec-WebSocket-Extensions header")
            pos = match.end()
            kind = match.lastgroup
            items.append((kind, match.group(kind)))
        items.append(("sep", b","))  # (a line ends an extension)
    offers: list[tuple[str, dict[str, list[Any]]]] = []
    # extension = token *( ";" token [ "=" (token | quoted-string) ] ),
    # separated by commas; empty list elements are allowed (RFC 9110 5.6.1).
    i = 0
    while i < len(items):
        kind, text = items[i]
        if kind == "sep" and text == b",":
            i += 1
            continue
        if kind != "token":
            raise HandshakeError("Invalid Sec-WebSocket-Extensions header")
        params: dict[str, list[Any]] = {}
        offers.append((text.decode("ascii").lower(), params))
        i += 1
        while items[i] == ("sep", b";"):
            kind, name = items[i + 1]
            if kind != "token":
                raise HandshakeError("Invalid Sec-WebSocket-Extensions parameter")
            value: Any = True
            i += 2
            if items[i] == ("sep", b"="):
                kind, raw = items[i + 1]
                if kind == "quoted":
                    # RFC 6455 9.1: a quoted value must be a token once unquoted.
                    raw = _QUOTED_PAIR.sub(rb"\1", raw)
                    kind = "token" if raw and is_valid_header_name(raw) else kind
                if kind != "token":
                    raise HandshakeError("Invalid Sec-WebSocket-Extensions value")
                value = raw.decode("ascii")
                i += 2
            params.setdefault(name.decode("ascii").lower(), []).append(value)
        if items[i] != ("sep", b","):
            raise HandshakeError("Invalid Sec-WebSocket-Extensions header")
    return offers


def offered_subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The ``Sec-WebSocket-Protocol`` list, or HTTPError if it is invalid.

    RFC 6455 makes each name a token, and browsers send nothing else; other
    names are refused rather than passed on, so the name an application
    accepts is, byte for byte, one the client offered.
    """
    names: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for token in value.split(b","):
                token = token.strip(b" \t")
                if not token:
                    continue
                if not is_valid_header_name(token):
                    raise HTTPError("Invalid Sec-WebSocket-Protocol name")
                names.append(token.decode("ascii"))
    return names


def websocket_scope(scope: dict) -> dict:
    """The ``websocket`` scope for an upgrade request's ``http`` scope."""
    del scope["method"]
    scope["type"] = "websocket"
    scope["asgi"] = {"version": "3.0", "spec_version": "2.4"}
    scope["scheme"] = WEBSOCKET_SCHEMES.get(scope["scheme"], scope["scheme"])
    scope["subprotocols"] = offered_subprotocols(scope["headers"])
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


def _tokens(values: list[bytes]) -> set[bytes]:
    return {t.strip(b" \t").lower() for value in values for t in value.split(b",")}


def check_request(
    method: str, http_version: str, headers: Any, subprotocols: Any = ()
) -> bytes:
    """Check an upgrade request (its header pairs and the subprotocols it
    offers) against RFC 6455 section 4.2.1; return the client's key, or raise
    :class:`HandshakeError`."""
    if method != "GET":
        raise HandshakeError(f"WebSocket handshake with method {method}", 405)
    if http_version != "1.1":
        raise HandshakeError(f"WebSocket handshake over HTTP/{http_version}", 505)
    fields: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        fields.setdefault(name, []).append(value)
    host = fields.get(b"host")
    if not host:
        raise HandshakeError("WebSocket handshake without a Host header")
    _, colon, port = host[0].rpartition(b":")
    if colon and not port.endswith(b"]") and not port.isdigit():
        raise HandshakeError("Invalid port in the Host header")
    if b"websocket" not in _tokens(fields.get(b"upgrade", [])):
        raise HandshakeError("Upgrade header without websocket")
    if b"upgrade" not in _tokens(fields.get(b"connection", [])):
        raise HandshakeError("Connection header without upgrade")
    for name in SINGLE_FIELDS:
        if len(fields.get(name, ())) > 1:
            raise HandshakeError(f"More than one {name.decode()} header")
    field = fields.get(b"sec-websocket-version")
    if not field:
        raise HandshakeError("WebSocket handshake without Sec-WebSocket-Version")
    try:
        version = int(field[0])
    except ValueError:
        raise HandshakeError("Invalid Sec-WebSocket-Version") from None
    if version not in VERSIONS:
        raise HandshakeError(
            f"Unsupported WebSocket version {version}", headers=[VERSIONS_HEADER]
        )
    if len(fields.get(ORIGIN_FIELDS[version], ())) > 1:
        raise HandshakeError("More than one origin header")
    # Offers are read again when the application accepts; a header that
    # does not parse is refused now, before the application hears of it.
    extension_offers(fields.get(b"sec-websocket-extensions", []))
    if len(set(subprotocols)) != len(subprotocols):
        raise HandshakeError("A subprotocol is offered twice")
    key = fields.get(b"sec-websocket-key")
    if not key:
        raise HandshakeError("WebSocket handshake without Sec-WebSocket-Key")
    try:
        decoded = base64.b64decode(key[0], validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeError("Invalid Sec-WebSocket-Key")
    return key[0]


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a client's key."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def accept_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """The headers of a ``websocket.accept`` event as lower-cased pairs;
    raises ``ValueError`` naming the problem."""
    try:
        pairs = [(name, value) for name, value in headers]
    except (TypeError, ValueError):
        raise ValueError(
            "Accept headers must be an iterable of [name, value] pairs"
        ) from None
    checked = []
    for name, value in pairs:
        problem = header_problem(name, value)
        if problem is not None:
            raise ValueError(f"websocket.accept {problem}")
        lower = name.lower()
        if lower in RESERVED_ACCEPT_HEADERS:
            raise ValueError(f"Header {name!r} is the server's to send")
        checked.append((lower, value))
    return checked


def response_head(
    key: bytes,
    subprotocol: str | None,
    headers: list[tuple[bytes, bytes]],
    server: bytes | None,
    extensions: bytes | None = None,
) -> bytes:
    """The ``101 Switching Protocols`` answer (RFC 6455 section 4.2.2), with
    the agreed extensions (``Sec-WebSocket-Extensions``) if any."""
    lines = [b"HTTP/1.1 101 Switching Protocols\r\n"]
    if server is not None:
        lines.append(server)
    lines.append(b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n")
    lines.extend(b"%s: %s\r\n" % pair for pair in headers)
    if subprotocol is not None:
        lines.append(b"Sec-WebSocket-Protocol: %s\r\n" % subprotocol.encode("ascii"))
    if extensions is not None:
        lines.append(b"Sec-WebSocket-Extensions: %s\r\n" % extensions)
    lines.append(b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept_key(key))
    return b"".join(lines)
