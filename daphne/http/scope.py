"""The ASGI ``http`` scope, built once from a parsed request head.

Version-neutral: HTTP/1.1 passes its request target and version, HTTP/2 its
``:path`` and ``"2"``. Proxy headers are read here, only when the server is
configured to read them and only from a peer it trusts
(:mod:`daphne.proxies`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httptools

from ..config import Config
from .errors import HTTPError
from .headers import RequestHead


def format_address(address: Any) -> list | None:
    """``[host, port]`` for an IP address, ``None`` for a UNIX socket."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return None
    return [host, port]


def peer_proxy(config: Config, client: list | None) -> Any:
    """The proxy headers a connection's peer may speak for its clients with
    (``config.proxy`` if the peer is on the trust list), or None. The peer of
    a connection does not change, so its connection asks once."""
    proxy = config.proxy
    if proxy is not None and proxy.trusts_peer(client):
        return proxy
    return None


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``(raw path, query string)`` of a request target."""
    if b"#" in target:
        raise HTTPError("Malformed request target")
    if target[:1] == b"/":
        raw_path, _, query = target.partition(b"?")
        return raw_path, query
    # absolute-form (RFC 9112 3.2.2) or asterisk-form.
    try:
        parsed = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise HTTPError("Malformed request target") from None
    return parsed.path or b"/", parsed.query or b""


def build_scope(
    config: Config,
    head: RequestHead,
    method: str,
    target: bytes,
    http_version: str,
    client: list | None,
    server: list | None,
    scheme: str,
    proxy: Any = None,
) -> dict:
    """The ``http`` scope of a request; raises :class:`HTTPError` for a
    target that cannot be one. ``proxy`` is what :func:`peer_proxy` gave the
    connection: the proxy headers to believe, or None."""
    # (find: see RequestHead.add)
    if target[:1] == b"/" and target.find(b"#") == -1:
        raw_path, _, query = target.partition(b"?")  # origin-form, the usual
    else:
        raw_path, query = split_target(target)
    path = raw_path.decode("utf-8", "replace")
    if "%" in path:
        path = unquote(path)
    root_path = head.root_path
    if root_path is None:
        root_path = config.root_path
    headers = head.headers
    if proxy is not None:
        client, scheme = proxy.apply(headers, client, scheme)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
    }
