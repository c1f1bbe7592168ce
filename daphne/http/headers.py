"""The rules every request header passes, whatever the HTTP version.

A connection protocol feeds each parsed header field to
:meth:`RequestHead.add` and reads the outcome from the head's attributes.
Values that two parsers could read differently are refused here, before any
application or proxy-facing code sees them.
"""

from __future__ import annotations

from urllib.parse import unquote

from ..config import Config
from ..utils import _valid_values as valid_values
from ..utils import is_valid_header_value, is_valid_host
from .errors import HeadersTooLarge, HTTPError, PayloadTooLarge

#: The size a field costs against ``max_request_head_size``: its name and
#: value plus ": " and CRLF, as HTTP/1.1 writes it.
FIELD_OVERHEAD = 4

#: Lower-case header names most WebSocket handshakes carry, each one shared
#: ``bytes`` (see :func:`share_common_names`).
COMMON_NAMES = {
    name: name
    for name in (
        b"host",
        b"connection",
        b"upgrade",
        b"origin",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"user-agent",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"cache-control",
        b"pragma",
        b"cookie",
        b"authorization",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-real-ip",
    )
}


# What RequestHead.add does with a lower-case name beyond keeping it: PLAIN
# names are only passed on, the others are read by the server too. A name
# found here has no underscore; one dict look-up replaces that search and a
# comparison with each name the server reads.
PLAIN, HOST, CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, UPGRADE, ROOT_PATH = range(7)
NAME_KINDS = {name: PLAIN for name in COMMON_NAMES}
NAME_KINDS.update(
    {
        b"host": HOST,
        b"content-length": CONTENT_LENGTH,
        b"transfer-encoding": TRANSFER_ENCODING,
        b"expect": EXPECT,
        b"upgrade": UPGRADE,
        b"daphne-root-path": ROOT_PATH,
        b"content-type": PLAIN,
        b"referer": PLAIN,
        b"if-none-match": PLAIN,
        b"if-modified-since": PLAIN,
        b"x-requested-with": PLAIN,
        b"x-forwarded-host": PLAIN,
        b"x-forwarded-port": PLAIN,
    }
)


def share_common_names(headers: list[tuple[bytes, bytes]]) -> None:
    """Swap the common names in a scope's header list for shared copies, in
    place. A WebSocket's scope lives as long as the socket: its own copy of
    each name cost an idle socket about 220 bytes. (Not done for every HTTP
    request: the look-ups cost more there than the copies.)"""
    for index, (name, value) in enumerate(headers):
        shared = COMMON_NAMES.get(name)
        if shared is not None and shared is not name:
            headers[index] = (shared, value)


class RequestHead:
    """The request's header fields as accepted, and what the server must know
    of them (framing, ``Host``, ``Expect``, upgrade, root path)."""

    __slots__ = (
        "config",
        "headers",
        "size",
        "count",
        "host_count",
        "transfer_encoding",
        "content_length",
        "root_path",
        "expect_continue",
        "upgrade_websocket",
    )

    def __init__(self, config: Config, size: int = 0) -> None:
        self.config = config
        self.reset(size)

    def reset(self, size: int = 0) -> None:
        """Start on a new request's head."""
        #: ``(lower-case name, value)`` pairs, as the scope carries them.
        self.headers: list[tuple[bytes, bytes]] = []
        #: Bytes of the head so far (the request line counts too).
        self.size = size
        self.count = 0
        self.host_count = 0
        self.transfer_encoding: bytes | None = None
        #: The declared Content-Length, 0 if none.
        self.content_length = 0
        #: A ``Daphne-Root-Path`` header from a proxy, unquoted.
        self.root_path: str | None = None
        self.expect_continue = False
        self.upgrade_websocket = False

    def grow(self, size: int) -> None:
        """Count ``size`` more bytes of head against the limit."""
        self.size += size
        if self.size > self.config.max_request_head_size:
            raise HeadersTooLarge("Request header fields too large")

    def add(self, name: bytes, value: bytes) -> None:
        """One header field as parsed; raises :class:`HTTPError` to refuse
        the request."""
        config = self.config
        self.size += len(name) + len(value) + FIELD_OVERHEAD
        if self.size > config.max_request_head_size:
            raise HeadersTooLarge("Request header fields too large")
        self.count += 1
        if self.count > config.max_request_headers:
            raise HeadersTooLarge("Too many request header fields")
        # (The memo inline: most values passed before, and a call costs more
        # than the look-up.)
        if value not in valid_values and not is_valid_header_value(value):
            raise HTTPError(f"Invalid character in header {name.decode('latin-1')}")
        # Parsers strip leading whitespace only (RFC 9110 section 5.5).
        value = value.rstrip(b" \t")
        name = name.lower()
        kind = NAME_KINDS.get(name)
        if kind is None:
            # (find, not "in": bytes "in" first tries its operand as an
            # integer, raising and clearing a TypeError, dearer than the
            # search itself.)
            if name.find(b"_") != -1:
                # A proxy may treat X_Foo and X-Foo as the same header; drop
                # them so one cannot masquerade as the other.
                return
        elif kind == HOST:
            self.host_count += 1
            if self.host_count > 1:
                raise HTTPError("Duplicate Host header")
            if not is_valid_host(value):
                raise HTTPError("Malformed Host header")
        elif kind == PLAIN:
            pass
        elif kind == CONTENT_LENGTH:
            self.content_length = int(value)  # the parser has validated it
            limit = config.max_request_body_size
            if limit is not None and self.content_length > limit:
                raise PayloadTooLarge("Request body too large")
        elif kind == TRANSFER_ENCODING:
            if self.transfer_encoding is not None:
                raise HTTPError("Duplicate Transfer-Encoding header")
            self.transfer_encoding = value
        elif kind == EXPECT:
            self.expect_continue = value.lower() == b"100-continue"
        elif kind == UPGRADE:
            # (Several Upgrade lines are one list.)
            self.upgrade_websocket = self.upgrade_websocket or any(
                token.strip().lower() == b"websocket" for token in value.split(b",")
            )
        else:  # ROOT_PATH
            self.root_path = unquote(value.decode("latin-1"))
            return
        self.headers.append((name, value))
