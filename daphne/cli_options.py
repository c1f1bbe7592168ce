"""The options of the ``daphne`` command: its argparse parser and option groups.

:func:`build_parser` makes the parser :class:`daphne.cli.CommandLineInterface`
parses its arguments with; each option group of the help text is added by its
own function here. Turning the parsed options into a Config, endpoints and a
Server stays in :mod:`daphne.cli`.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from . import __version__
from .config import (
    FORWARDED_ALLOW_IPS_ENV,
    INTERFACES,
    RELOAD_EXCLUDE,
    RELOAD_INCLUDE,
    WEBSOCKET_ENGINES,
    Config,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_LOG_FORMAT = "%(asctime)-15s %(levelname)-8s %(message)s"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line long."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


_port.__name__ = "port"


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_non_negative_int.__name__ = "non-negative integer"


def _seconds(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds"


def build_parser(
    description: str, *, layer_http_timeout: float
) -> argparse.ArgumentParser:
    """The ``daphne`` argument parser.

    ``layer_http_timeout`` is the --http-timeout default in channel layer mode,
    named in its help text.
    """
    defaults = Config()
    parser = _Parser(prog="daphne", description=description)
    _add_bind_options(parser)
    _add_http_options(parser, defaults, layer_http_timeout)
    _add_http2_options(parser, defaults)
    _add_websocket_options(parser, defaults)
    _add_application_options(parser, defaults)
    _add_layer_options(parser)
    _add_proxy_options(parser, defaults)
    _add_limit_options(parser, defaults)
    _add_logging_options(parser, defaults)
    _add_reload_options(parser)
    _add_worker_options(parser, defaults)
    parser.add_argument(
        "application",
        metavar="module.path:object.path",
        help="the ASGI application, or the channel layer, to serve",
    )
    parser.add_argument("--version", action="version", version=f"daphne {__version__}")
    return parser


def _add_bind_options(parser: argparse.ArgumentParser) -> None:
    """The "where to listen" group: -b, -p, -u, --fd, -e."""
    bind = parser.add_argument_group(
        "where to listen",
        f"With none of these, daphne listens on {DEFAULT_HOST}:{DEFAULT_PORT}.",
    )
    bind.add_argument(
        "-b",
        "--bind",
        dest="host",
        help=f"IP address or host name to listen on ({DEFAULT_HOST} if only "
        "--port is given); IPv6 addresses as ::1 or [::1]",
    )
    bind.add_argument(
        "-p",
        "--port",
        type=_port,
        help=f"TCP port to listen on ({DEFAULT_PORT} if only --bind is given)",
    )
    bind.add_argument(
        "-u",
        "--unix-socket",
        metavar="PATH",
        help="path of a UNIX socket to listen on (e.g. behind nginx)",
    )
    bind.add_argument(
        "--fd",
        dest="file_descriptor",
        type=_non_negative_int,
        metavar="N",
        help="listen on an already-bound socket inherited from a process "
        "manager (Circus, systemd) as this file descriptor",
    )
    bind.add_argument(
        "--ssl-certfile",
        metavar="PATH",
        help="serve TLS on the -b/-p socket with this certificate (PEM); "
        "HTTP/2 is then offered by ALPN",
    )
    bind.add_argument(
        "--ssl-keyfile",
        metavar="PATH",
        help="the certificate's private key (PEM; default: in --ssl-certfile)",
    )
    bind.add_argument(
        "--ssl-ca-certs",
        metavar="PATH",
        help="intermediate CA certificates sent with --ssl-certfile (PEM)",
    )
    bind.add_argument(
        "-e",
        "--endpoint",
        dest="socket_strings",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="a Twisted server endpoint string, e.g. "
        "ssl:443:privateKey=key.pem:certKey=crt.pem (repeatable)",
    )


def _add_http_options(
    parser: argparse.ArgumentParser, defaults: Config, layer_http_timeout: float
) -> None:
    """The "HTTP" group: timeouts, body size, root path, Server header."""
    http = parser.add_argument_group("HTTP")
    http.add_argument(
        "-t",
        "--http-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="answer 503 to a request without a complete response after this "
        "many seconds; a response already streaming is cut (default: none; "
        f"{layer_http_timeout:g} with a channel layer)",
    )
    http.add_argument(
        "--request-head-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.request_head_timeout,
        help="seconds a client has to send a complete request head, else 408 "
        "(default: %(default)s)",
    )
    http.add_argument(
        "--request-body-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.request_body_timeout,
        help="answer 408 when a request body stalls this long while daphne "
        "is reading it (default: %(default)s)",
    )
    http.add_argument(
        "--keep-alive-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.keep_alive_timeout,
        help="seconds an idle keep-alive connection stays open (default: %(default)s)",
    )
    http.add_argument(
        "--max-request-body-size",
        type=_non_negative_int,
        metavar="BYTES",
        default=0,
        help="largest request body in bytes, larger ones get 413 "
        "(default: 0, no limit)",
    )
    http.add_argument(
        "--root-path",
        default="",
        metavar="PATH",
        help="the path prefix the application is mounted at (root_path in "
        "the scope); a Daphne-Root-Path request header overrides it",
    )
    http.add_argument(
        "-s",
        "--server-name",
        default=defaults.server_name,
        metavar="NAME",
        help="value of the Server response header (default: %(default)s)",
    )
    http.add_argument(
        "--no-server-name",
        action="store_true",
        help="send no Server response header",
    )


def _add_http2_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """The "HTTP/2" group: on/off and its limits."""
    h2 = parser.add_argument_group(
        "HTTP/2",
        "HTTP/2 is served on TLS endpoints to clients that pick it by ALPN, and "
        "in cleartext to clients that open with its preface or ask for "
        "Upgrade: h2c.",
    )
    h2.add_argument(
        "--no-http2",
        action="store_true",
        help="serve HTTP/1.1 only: no ALPN h2, no prior knowledge, no h2c",
    )
    h2.add_argument(
        "--http2-max-concurrent-streams",
        type=int,
        metavar="N",
        default=defaults.http2_max_concurrent_streams,
        help="streams one client may have open at once (default: %(default)s)",
    )
    h2.add_argument(
        "--http2-max-header-list-size",
        type=int,
        metavar="BYTES",
        default=defaults.http2_max_header_list_size,
        help="largest decoded request head of a stream, larger ones get 431 "
        "(default: %(default)s)",
    )
    h2.add_argument(
        "--http2-idle-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.http2_idle_timeout,
        help="seconds an HTTP/2 connection with no open stream stays open "
        "(default: %(default)s)",
    )


def _add_websocket_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """The "WebSocket" group: timeouts, size limits, pings."""
    ws = parser.add_argument_group("WebSocket")
    ws.add_argument(
        "--websocket_timeout",
        "--websocket-timeout",
        dest="websocket_timeout",
        type=_seconds,
        metavar="SECONDS",
        help="close a WebSocket open longer than this many seconds; negative "
        f"means never (default: {defaults.websocket_timeout:g}; with a "
        "channel layer, its group_expiry)",
    )
    ws.add_argument(
        "--websocket_connect_timeout",
        "--websocket-connect-timeout",
        dest="websocket_connect_timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.websocket_connect_timeout,
        help="refuse a WebSocket handshake the application leaves pending "
        "this long; negative means never (default: %(default)s)",
    )
    ws.add_argument(
        "--websocket-max-message-size",
        type=_non_negative_int,
        metavar="BYTES",
        default=defaults.websocket_max_message_size,
        help="largest incoming message in bytes, 0 for no limit (default: %(default)s)",
    )
    ws.add_argument(
        "--websocket-max-frame-size",
        type=_non_negative_int,
        metavar="BYTES",
        default=defaults.websocket_max_frame_size,
        help="largest incoming frame in bytes, 0 for no limit (default: %(default)s)",
    )
    ws.add_argument(
        "--ws-per-message-deflate",
        action=argparse.BooleanOptionalAction,
        default=defaults.ws_per_message_deflate,
        help="agree to permessage-deflate compression when a client offers it "
        "(--no-ws-per-message-deflate: never); --websocket-max-message-size "
        "bounds the decompressed size (default: on)",
    )
    ws.add_argument(
        "--websocket-engine",
        choices=WEBSOCKET_ENGINES,
        default=defaults.websocket_engine,
        help="what frames WebSocket messages: the sans-IO protocol of "
        "websockets, or autobahn's protocol (default: %(default)s)",
    )
    ws.add_argument(
        "--ping-interval",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.ping_interval,
        help="ping a WebSocket after this many seconds without traffic from "
        "the client; 0 for never (default: %(default)s)",
    )
    ws.add_argument(
        "--ping-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.ping_timeout,
        help="drop a WebSocket that sends nothing within this many seconds "
        "of a ping (default: %(default)s)",
    )


def _add_application_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """The "application" group: interface, lifespan, close and shutdown timeouts."""
    app = parser.add_argument_group("application")
    app.add_argument(
        "--interface",
        choices=INTERFACES,
        default=defaults.interface,
        help="what the target is: a channel-layer, an asgi3 or asgi2 "
        "application, or auto to tell by its interface (default: %(default)s)",
    )
    app.add_argument(
        "--application-close-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.application_close_timeout,
        help="seconds an application instance may run after its connection "
        "closed before it is cancelled (default: %(default)s)",
    )
    app.add_argument(
        "--lifespan",
        choices=("auto", "on", "off"),
        default=defaults.lifespan,
        help="send lifespan startup/shutdown events: auto (if the application "
        "supports them), on (a failure stops the server) or off "
        "(default: %(default)s)",
    )
    app.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.shutdown_timeout,
        help="on SIGINT/SIGTERM, seconds in-flight requests get to finish "
        "(default: %(default)s)",
    )


def _add_layer_options(parser: argparse.ArgumentParser) -> None:
    """The "channel layer mode" group: --force-sync, --ws-protocol."""
    layer = parser.add_argument_group(
        "channel layer mode",
        "When the target is an ASGI v1 channel layer, daphne sends every "
        "request and WebSocket event to it for workers to answer.",
    )
    layer.add_argument(
        "--force-sync",
        action="store_true",
        help="poll the layer for replies even if it offers a Twisted receive",
    )
    layer.add_argument(
        "--ws-protocol",
        dest="ws_protocols",
        nargs="+",
        action="extend",
        default=[],
        metavar="PROTOCOL",
        help="WebSocket subprotocols to agree to: the first one the client "
        "offers that is listed (put this after the target, or it takes the "
        "target for a protocol)",
    )


def _add_proxy_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """The "behind a proxy" group: the --proxy-headers options."""
    proxy = parser.add_argument_group("behind a proxy")
    proxy.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client address, port and scheme from X-Forwarded-For, "
        "X-Forwarded-Port and X-Forwarded-Proto, or from Forwarded, when the "
        "peer is a trusted proxy (--forwarded-allow-ips)",
    )
    proxy.add_argument(
        "--forwarded-allow-ips",
        metavar="LIST",
        help="comma-separated IP addresses and networks of the proxies "
        "--proxy-headers believes; 'unix' for UNIX-socket peers, '*' for any "
        f"(default: ${FORWARDED_ALLOW_IPS_ENV}, else "
        f"{','.join(defaults.forwarded_allow_ips)})",
    )
    proxy.add_argument(
        "--proxy-headers-host",
        metavar="HEADER",
        help="header to take the client address from instead of "
        "X-Forwarded-For (needs --proxy-headers)",
    )
    proxy.add_argument(
        "--proxy-headers-port",
        metavar="HEADER",
        help="header to take the client port from instead of "
        "X-Forwarded-Port (needs --proxy-headers)",
    )


def _add_limit_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """The "limits" group: retiring after N requests, concurrency, backlog."""
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--limit-max-requests",
        type=int,
        metavar="N",
        default=defaults.limit_max_requests,
        help="after N requests (WebSocket handshakes included), stop accepting, "
        "finish the requests in progress as on SIGTERM, and exit 0, for a "
        "supervisor or process manager to start a fresh process (default: never)",
    )
    limits.add_argument(
        "--limit-max-requests-jitter",
        type=int,
        metavar="J",
        default=defaults.limit_max_requests_jitter,
        help="retire after a number of requests drawn once per process from "
        "N to N+J instead, so that processes do not all retire at once "
        "(default: %(default)s)",
    )
    limits.add_argument(
        "--limit-concurrency",
        type=int,
        metavar="N",
        default=defaults.limit_concurrency,
        help="at most N requests and WebSockets with their application running "
        "at once; more get 503 with Retry-After (default: no limit)",
    )
    limits.add_argument(
        "--backlog",
        type=int,
        metavar="N",
        default=defaults.backlog,
        help="listen backlog of the -b/-p and -u sockets (for -e, write "
        "backlog=N in the endpoint string) (default: %(default)s)",
    )


def _add_logging_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """The "logging" group: -v, --access-log, --log-fmt."""
    log = parser.add_argument_group("logging")
    log.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=(0, 1, 2),
        default=defaults.verbosity,
        help="0: warnings only, 1: information, 2: debugging (default: %(default)s)",
    )
    log.add_argument(
        "--access-log",
        metavar="PATH",
        help="append one line per request to this file, '-' for stdout "
        "(default: stdout at verbosity 1 and above)",
    )
    log.add_argument(
        "--log-fmt",
        default=DEFAULT_LOG_FORMAT,
        metavar="FORMAT",
        help="logging format string (default: %(default)r)",
    )


def _add_reload_options(parser: argparse.ArgumentParser) -> None:
    """The "development" group: --reload and what it watches."""
    dev = parser.add_argument_group(
        "development",
        "--reload runs the server in a child process and restarts it when a "
        "watched file changes; it needs the watchfiles package "
        "(pip install 'daphne[reload]'). Not for production.",
    )
    dev.add_argument(
        "--reload",
        action="store_true",
        help="restart the server when a watched file changes",
    )
    dev.add_argument(
        "--reload-dir",
        dest="reload_dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory to watch, with its subdirectories (repeatable; "
        "default: the current directory)",
    )
    dev.add_argument(
        "--reload-include",
        dest="reload_includes",
        action="append",
        default=[],
        metavar="GLOB",
        help="also watch files whose name matches (repeatable; always: "
        f"{' '.join(RELOAD_INCLUDE)})",
    )
    dev.add_argument(
        "--reload-exclude",
        dest="reload_excludes",
        action="append",
        default=[],
        metavar="GLOB",
        help="ignore files, and directories, whose name matches; wins over "
        f"--reload-include (repeatable; always: {' '.join(RELOAD_EXCLUDE)})",
    )


def _add_worker_options(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """The "worker processes" group: --workers, and the supervisor's own."""
    group = parser.add_argument_group(
        "worker processes",
        "With --workers above 1, a supervisor binds the endpoints and runs "
        "that many daphne processes on them (SIGHUP replaces them one by one, "
        "SIGTTIN/SIGTTOU add or remove one).",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=defaults.workers,
        help="worker processes serving the same sockets (default: %(default)s, "
        "no supervisor)",
    )
    group.add_argument(
        "--workers-share-nothing",
        action="store_true",
        help="allow --workers with daphne's in-memory channel layer, each "
        "worker having a layer of its own",
    )
    # Internal: how the supervisor starts a worker (daphne.supervisor).
    group.add_argument("--worker-sockets", help=argparse.SUPPRESS)
    group.add_argument("--worker-control-fd", type=int, help=argparse.SUPPRESS)
