"""The pages the server writes itself, and the ``Date`` header.

Used by every connection protocol and by the channel-layer host, which
answers some requests on the server's behalf (queue full, timeouts).
"""

from __future__ import annotations

import html
import time
from email.utils import formatdate
from http import HTTPStatus

_date_cache: list = [0, b""]


def http_date() -> bytes:
    """The ``Date`` header value, formatted once per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]


def error_page(status: int, detail: str = "") -> tuple[bytes, bytes]:
    """A small HTML page for a status the server produces itself:
    ``(content type, body)``."""
    phrase = HTTPStatus(status).phrase
    body = f"<!DOCTYPE html><html><head><title>{status} {phrase}</title></head>"
    body += f"<body><h1>{status} {phrase}</h1>"
    if detail:
        body += f"<p>{html.escape(detail)}</p>"
    return b"text/html; charset=utf-8", (body + "</body></html>\n").encode()
