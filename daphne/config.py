"""Every default, limit and timeout of the server, in one validated object.

The command line, :class:`daphne.server.Server` and the test helpers all build a
:class:`Config`, so a default can only be changed here and cannot drift between
them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .proxies import ProxyHeaders, ProxyTrust

#: Signature of the access log hook: ``(protocol, action, details)``.
AccessLogger = Callable[[str, str, dict], None]

MiB = 1024 * 1024

#: The kinds of target daphne serves (``Config.interface``).
INTERFACES = ("auto", "channel-layer", "asgi3", "asgi2")

#: WebSocket framing engines (daphne/websocket/engine_*.py): autobahn's
#: protocol, or the sans-IO protocol of websockets (the default).
WEBSOCKET_ENGINES = ("autobahn", "websockets")

#: The environment variable the command line reads ``--forwarded-allow-ips``
#: from when the option is not given.
FORWARDED_ALLOW_IPS_ENV = "DAPHNE_FORWARDED_ALLOW_IPS"

#: ``--reload``: the file names that restart the server (``--reload-include``
#: adds to them) ...
RELOAD_INCLUDE = ("*.py",)
#: ... and the file and directory names that never do (``--reload-exclude``
#: adds to them): hidden files and directories (``.git``, ``.venv``, editor
#: swap files), bytecode, editor backups and autosaves, virtualenvs.
RELOAD_EXCLUDE = (
    ".*",
    "*.py[cod]",
    "*~",
    "~*",
    "#*#",
    "__pycache__",
    "venv",
    "node_modules",
)
#: A server the reloader asked to stop is killed if it is still running this
#: many seconds after its ``shutdown_timeout``.
RELOAD_KILL_AFTER = 5.0
#: ``Retry-After`` seconds of a request refused by ``limit_concurrency``: a
#: full server is usually a burst, gone in about that long.
LIMIT_RETRY_AFTER = 1


class ConfigError(ValueError):
    """A configuration value makes no sense; the message names the option."""


@dataclass
class Config:
    """Server settings. Times are in seconds; ``None`` means "no limit"."""

    # -- HTTP ------------------------------------------------------------
    #: A request without a complete response after this long gets a 503.
    http_timeout: float | None = None
    #: A request head (request line and headers) must arrive within this long
    #: of its first byte, or the client gets 408: stops slowloris-style drips.
    request_head_timeout: float = 10.0
    #: An idle keep-alive connection (no request in progress) is closed after this.
    keep_alive_timeout: float = 5.0
    #: A request body that stalls this long (while the server is reading) gets 408.
    request_body_timeout: float = 60.0
    #: A closing connection whose client does not read what is left is aborted
    #: after this long.
    close_timeout: float = 10.0
    #: Requests parsed ahead of the one being answered; more get 503.
    max_pipelined_requests: int = 16
    #: Largest request head in bytes; larger heads get 431.
    max_request_head_size: int = 64 * 1024
    #: Most header lines in one request; more get 431.
    max_request_headers: int = 100
    #: Largest request body in bytes (``None``: no limit); larger bodies get 413.
    max_request_body_size: int | None = None
    #: Value of the ``Server`` response header, or ``None`` to send none.
    server_name: str | None = "daphne"

    # -- HTTP/2 ----------------------------------------------------------
    #: Serve HTTP/2: ALPN ``h2`` on TLS, the preface and ``Upgrade: h2c`` in
    #: cleartext (``False``: HTTP/1.1 only, as ``--no-http2``).
    http2: bool = True
    #: SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once.
    http2_max_concurrent_streams: int = 100
    #: SETTINGS_MAX_HEADER_LIST_SIZE: a larger request head gets 431; one
    #: whose HPACK block decodes to far more is a flood (GOAWAY).
    http2_max_header_list_size: int = 64 * 1024
    #: An HTTP/2 connection with no open stream is closed (GOAWAY) after this.
    http2_idle_timeout: float = 60.0

    # -- WebSocket -------------------------------------------------------
    #: An open WebSocket is closed (1000) after this long.
    websocket_timeout: float | None = 86400.0
    #: A handshake the application has not accepted after this long gets 403.
    websocket_connect_timeout: float | None = 20.0
    #: Largest incoming message and frame in bytes (0: no limit); larger
    #: ones close the socket with 1009.
    websocket_max_message_size: int = MiB
    websocket_max_frame_size: int = MiB
    #: permessage-deflate (RFC 7692) is agreed when a client offers it.
    ws_per_message_deflate: bool = True
    #: Its bounds: the server's compression window (and the most it asks of
    #: clients that allow it), in bits (9..15); the compressor's zlib memLevel
    #: (1..9); its level (1 fastest .. 9 smallest; memory does not depend on it).
    ws_deflate_window_bits: int = 12
    ws_deflate_mem_level: int = 5
    ws_deflate_level: int = 1
    #: What frames and unframes messages (one of WEBSOCKET_ENGINES).
    websocket_engine: str = "websockets"
    #: A ping goes out after this many seconds without traffic from the
    #: client (0: never) ...
    ping_interval: float = 20.0
    #: ... and a client that sends nothing within this long after it is dropped.
    ping_timeout: float = 30.0

    # -- Application -----------------------------------------------------
    #: What the target is: ``auto`` (told by its interface), ``channel-layer``,
    #: ``asgi3`` or ``asgi2``.
    interface: str = "auto"
    #: How long an application instance may outlive its connection.
    application_close_timeout: float = 10.0
    #: Client events queued for an application instance before reading pauses.
    max_app_queue: int = 32
    #: ``auto``, ``on`` or ``off``.
    lifespan: str = "auto"
    root_path: str = ""

    # -- Channel layer mode ----------------------------------------------
    #: Poll the layer for replies even if it offers a Twisted receive.
    force_sync: bool = False
    #: WebSocket subprotocols the server agrees to, in channel-layer mode
    #: (the first one the client offers that is listed here is chosen).
    ws_protocols: tuple[str, ...] = ()

    # -- Proxies ---------------------------------------------------------
    #: Header names trusted for the client address, port and scheme; ``None``
    #: means the header is not trusted.
    proxy_forwarded_address_header: str | None = None
    proxy_forwarded_port_header: str | None = None
    proxy_forwarded_proto_header: str | None = None
    #: The peers whose proxy headers are believed: IP addresses and CIDR
    #: networks, ``"unix"`` for UNIX-socket peers, ``"*"`` for every peer (a
    #: sequence, or one comma-separated string). Loopback in both families:
    #: only this host can connect from either, and a proxy here that connects
    #: to ``localhost`` may arrive from ``::1``.
    forwarded_allow_ips: str | tuple[str, ...] = ("127.0.0.1", "::1", "unix")

    # -- Limits ----------------------------------------------------------
    #: Retire (drain and exit 0, like SIGTERM) after this many requests,
    #: WebSocket handshakes included (``None``: never) ...
    limit_max_requests: int | None = None
    #: ... plus a number drawn once per process from 0 to this, so that
    #: processes started together do not all retire together.
    limit_max_requests_jitter: int = 0
    #: Most exchanges (HTTP requests and WebSockets whose application is
    #: running) at once; more get 503 (``None``: no limit).
    limit_concurrency: int | None = None
    #: Listen backlog of the endpoints built from -b/-p and -u (uvicorn's
    #: default; Twisted's own is 50, and the kernel caps it at somaxconn).
    backlog: int = 2048

    # -- Server ----------------------------------------------------------
    #: In-flight requests get this long to finish on SIGINT/SIGTERM.
    shutdown_timeout: float = 10.0
    #: Worker processes; more than 1 runs them under a supervisor
    #: (:mod:`daphne.supervisor`), 1 serves in this process.
    workers: int = 1
    verbosity: int = 1
    access_log: AccessLogger | None = None

    def __post_init__(self) -> None:
        # Negative WebSocket timeouts mean "never", as on the command line.
        for name in ("websocket_timeout", "websocket_connect_timeout"):
            value = getattr(self, name)
            if value is not None and value < 0:
                setattr(self, name, None)
        self.validate()

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (and validated)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        positive = (
            "request_head_timeout",
            "keep_alive_timeout",
            "request_body_timeout",
            "close_timeout",
            "max_pipelined_requests",
            "ping_timeout",
            "max_request_head_size",
            "max_request_headers",
            "max_app_queue",
            "http2_max_concurrent_streams",
            "http2_max_header_list_size",
            "http2_idle_timeout",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be greater than 0")
        non_negative = (
            "application_close_timeout",
            "shutdown_timeout",
            "websocket_max_message_size",
            "websocket_max_frame_size",
            "ping_interval",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if not 9 <= self.ws_deflate_window_bits <= 15:
            raise ConfigError("ws_deflate_window_bits must be between 9 and 15")
        if not 1 <= self.ws_deflate_mem_level <= 9:
            raise ConfigError("ws_deflate_mem_level must be between 1 and 9")
        if not 0 <= self.ws_deflate_level <= 9:
            raise ConfigError("ws_deflate_level must be between 0 and 9")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.http_timeout is not None and self.http_timeout <= 0:
            raise ConfigError("http_timeout must be greater than 0")
        for name in ("websocket_timeout", "websocket_connect_timeout"):
            if getattr(self, name) == 0:
                # (The original read 0 as "the default"; here it would close
                # or refuse every socket at once. Negative means never.)
                raise ConfigError(f"{name} must not be 0 (negative means never)")
        self._validate_limits()
        if self.max_request_body_size is not None and self.max_request_body_size < 0:
            raise ConfigError("max_request_body_size must not be negative")
        if self.websocket_engine not in WEBSOCKET_ENGINES:
            raise ConfigError(
                f"websocket_engine must be one of {', '.join(WEBSOCKET_ENGINES)}"
            )
        if self.interface not in INTERFACES:
            raise ConfigError(f"interface must be one of {', '.join(INTERFACES)}")
        self.ws_protocols = tuple(self.ws_protocols)
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError("lifespan must be one of auto, on, off")
        if self.verbosity not in (0, 1, 2, 3):
            raise ConfigError("verbosity must be 0, 1 or 2")
        if self.root_path and (
            not self.root_path.startswith("/") or self.root_path.endswith("/")
        ):
            raise ConfigError("root_path must start with '/' and not end with '/'")
        self._validate_proxy()
        if self.server_name is not None:
            value = self.server_name.encode("latin-1", "replace")
            if not value or any(b < 0x20 or b == 0x7F for b in value):
                raise ConfigError("server_name must be printable text")

    def _validate_limits(self) -> None:
        for name in ("limit_max_requests", "limit_concurrency"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be greater than 0")
        if self.limit_max_requests_jitter < 0:
            raise ConfigError("limit_max_requests_jitter must not be negative")
        if self.limit_max_requests_jitter and self.limit_max_requests is None:
            raise ConfigError("limit_max_requests_jitter needs limit_max_requests")
        if self.backlog <= 0:
            raise ConfigError("backlog must be greater than 0")

    def _validate_proxy(self) -> None:
        # Parsed once here, so that a request only looks the peer up.
        allow = self.forwarded_allow_ips
        entries = allow.split(",") if isinstance(allow, str) else allow
        self.forwarded_allow_ips = tuple(
            entry.strip() for entry in entries if entry.strip()
        )
        try:
            trust = ProxyTrust(self.forwarded_allow_ips)
        except ValueError as exc:
            raise ConfigError(f"forwarded_allow_ips {exc}") from None
        address = self.proxy_forwarded_address_header
        self._proxy = (
            None
            if address is None
            else ProxyHeaders(
                trust,
                address,
                self.proxy_forwarded_port_header,
                self.proxy_forwarded_proto_header,
            )
        )

    @property
    def proxy_headers(self) -> bool:
        return self.proxy_forwarded_address_header is not None

    @property
    def proxy(self) -> ProxyHeaders | None:
        """The proxy header rules, or None when proxy headers are off."""
        return self._proxy
