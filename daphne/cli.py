"""The ``daphne`` command line: arguments to a Config, the target, and a Server.

Every bad input ends in one line on stderr and a non-zero exit status, never
a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, NoReturn, TextIO

from . import __version__
from .access import AccessLogGenerator
from .config import INTERFACES, Config, ConfigError
from .endpoints import build_endpoint_description_strings
from .hosts.detect import INTERFACE_NAMES, TargetError, detect_interface
from .hosts.layer import LAYER_HTTP_TIMEOUT, layer_config
from .layers import compat as layers_compat
from .server import Server, ServerError, install_reactor
from .utils import ImportTargetError, import_by_path

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_LOG_FORMAT = "%(asctime)-15s %(levelname)-8s %(message)s"
LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_twisted_logging_routed = False


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


class CommandLineInterface:
    """Parses ``daphne`` arguments and runs :attr:`server_class`."""

    description = (
        "Serve an ASGI application, or a channel layer and its workers, over "
        "HTTP/1.1 and WebSocket with Twisted."
    )
    server_class: type = Server

    def __init__(self) -> None:
        self.parser = self.build_parser()
        self.server: Any = None

    @classmethod
    def entrypoint(cls) -> None:
        """The console script: ``daphne [options] module:object``."""
        cls().run(sys.argv[1:])

    def build_parser(self) -> argparse.ArgumentParser:
        defaults = Config()
        parser = _Parser(prog="daphne", description=self.description)
        add = parser.add_argument
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
            "-e",
            "--endpoint",
            dest="socket_strings",
            action="append",
            default=[],
            metavar="ENDPOINT",
            help="a Twisted server endpoint string, e.g. "
            "ssl:443:privateKey=key.pem:certKey=crt.pem (repeatable)",
        )

        http = parser.add_argument_group("HTTP")
        http.add_argument(
            "-t",
            "--http-timeout",
            type=_seconds,
            metavar="SECONDS",
            help="answer 503 to a request without a complete response after this "
            "many seconds; a response already streaming is cut (default: none; "
            f"{LAYER_HTTP_TIMEOUT:g} with a channel layer)",
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
            help="seconds an idle keep-alive connection stays open "
            "(default: %(default)s)",
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
            help="largest incoming message in bytes, 0 for no limit "
            "(default: %(default)s)",
        )
        ws.add_argument(
            "--websocket-max-frame-size",
            type=_non_negative_int,
            metavar="BYTES",
            default=defaults.websocket_max_frame_size,
            help="largest incoming frame in bytes, 0 for no limit "
            "(default: %(default)s)",
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

        proxy = parser.add_argument_group("behind a proxy")
        proxy.add_argument(
            "--proxy-headers",
            action="store_true",
            help="take the client address, port and scheme from X-Forwarded-For, "
            "X-Forwarded-Port and X-Forwarded-Proto",
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

        log = parser.add_argument_group("logging")
        log.add_argument(
            "-v",
            "--verbosity",
            type=int,
            choices=(0, 1, 2),
            default=defaults.verbosity,
            help="0: warnings only, 1: information, 2: debugging "
            "(default: %(default)s)",
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

        add(
            "application",
            metavar="module.path:object.path",
            help="the ASGI application, or the channel layer, to serve",
        )
        add("--version", action="version", version=f"daphne {__version__}")
        return parser

    # -- running -------------------------------------------------------------

    def run(self, args: list[str]) -> None:
        """Parse ``args`` and serve until stopped; exits on bad input."""
        options = self.parser.parse_args(args)
        try:
            record = logging.makeLogRecord({"msg": "test"})
            logging.Formatter(options.log_fmt).format(record)
        except (ValueError, KeyError, TypeError) as exc:
            self.parser.error(f"argument --log-fmt: invalid format ({exc})")
        logging.basicConfig(
            level=LOG_LEVELS[options.verbosity], format=options.log_fmt, force=True
        )
        self._route_twisted_logs(options.verbosity)
        try:
            config = self.build_config(options)
            endpoints = self.build_endpoints(options)
            # Before the application is imported, so that an import of
            # twisted.internet.reactor there gets the asyncio one.
            install_reactor()
            sys.path.insert(0, ".")
            # v1 layers written for asgiref 1.x (asgi_redis) import
            # asgiref.base_layer, which asgiref 3 lacks.
            layers_compat.install()
            application = self.load_application(options.application)
            interface = detect_interface(application, options.interface)
            if interface == "channel-layer":
                config = layer_config(config, application, self.explicit(options))
            access_log = self.open_access_log(options)
            self.server = self.server_class(
                application=application,
                endpoints=endpoints,
                action_logger=access_log,
                config=config,
                **self.legacy_kwargs(config),
            )
            logger.info(
                "Starting server at %s, %s %s",
                ", ".join(endpoints),
                INTERFACE_NAMES[interface],
                options.application,
            )
            self.server.run()
        except (
            ConfigError,
            ImportTargetError,
            ServerError,
            TargetError,
            ValueError,
        ) as exc:
            self.fail(str(exc))

    def fail(self, message: str) -> NoReturn:
        print(f"daphne: error: {message}", file=sys.stderr)
        raise SystemExit(1)

    def build_config(self, options: argparse.Namespace) -> Config:
        if (options.proxy_headers_host or options.proxy_headers_port) and not (
            options.proxy_headers
        ):
            raise ConfigError(
                "--proxy-headers-host and --proxy-headers-port need --proxy-headers"
            )
        address = port = proto = None
        if options.proxy_headers:
            address = options.proxy_headers_host or "X-Forwarded-For"
            port = options.proxy_headers_port or "X-Forwarded-Port"
            proto = "X-Forwarded-Proto"

        try:
            return self._config(options, address, port, proto)
        except ConfigError as exc:
            raise ConfigError(self.option_names(str(exc))) from None

    def _config(
        self,
        options: argparse.Namespace,
        address: str | None,
        port: str | None,
        proto: str | None,
    ) -> Config:
        def never_if_negative(value: float | None) -> float | None:
            return None if value is None or value < 0 else value

        return Config(
            http_timeout=options.http_timeout,
            request_head_timeout=options.request_head_timeout,
            keep_alive_timeout=options.keep_alive_timeout,
            request_body_timeout=options.request_body_timeout,
            max_request_body_size=options.max_request_body_size or None,
            server_name=None if options.no_server_name else options.server_name,
            websocket_timeout=(
                Config.websocket_timeout
                if options.websocket_timeout is None
                else never_if_negative(options.websocket_timeout)
            ),
            websocket_connect_timeout=never_if_negative(
                options.websocket_connect_timeout
            ),
            websocket_max_message_size=options.websocket_max_message_size,
            websocket_max_frame_size=options.websocket_max_frame_size,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            application_close_timeout=options.application_close_timeout,
            lifespan=options.lifespan,
            interface=options.interface,
            force_sync=options.force_sync,
            ws_protocols=tuple(options.ws_protocols),
            shutdown_timeout=options.shutdown_timeout,
            root_path=options.root_path,
            proxy_forwarded_address_header=address,
            proxy_forwarded_port_header=port,
            proxy_forwarded_proto_header=proto,
            verbosity=options.verbosity,
        )

    def option_names(self, message: str) -> str:
        """Name the command-line option in a Config error, not the field."""
        field, _, rest = message.partition(" ")
        # argparse has no public list of its actions; _actions is stable.
        for action in self.parser._actions:
            if action.dest == field and action.option_strings:
                return f"{action.option_strings[-1]} {rest}"
        return message

    def build_endpoints(self, options: argparse.Namespace) -> list[str]:
        if options.host is not None and not options.host.strip("[] "):
            raise ConfigError("--bind needs an address (it was empty)")
        if options.unix_socket:
            directory = os.path.dirname(os.path.abspath(options.unix_socket))
            if not os.path.isdir(directory):
                raise ConfigError(
                    f"Cannot listen on {options.unix_socket}: "
                    f"directory {directory} does not exist"
                )
        host, port = options.host, options.port
        if host is not None and port is None:
            port = DEFAULT_PORT
        elif port is not None and host is None:
            host = DEFAULT_HOST
        elif host is None and not (
            options.unix_socket
            or options.file_descriptor is not None
            or options.socket_strings
        ):
            host, port = DEFAULT_HOST, DEFAULT_PORT
        return sorted(
            build_endpoint_description_strings(
                host=host,
                port=port,
                unix_socket=options.unix_socket,
                file_descriptor=options.file_descriptor,
            )
            + options.socket_strings
        )

    @staticmethod
    def explicit(options: argparse.Namespace) -> set[str]:
        """Config fields given on the command line whose defaults depend on
        the mode."""
        return {
            name
            for name in ("http_timeout", "websocket_timeout")
            if getattr(options, name) is not None
        }

    def load_application(self, path: str) -> Any:
        """The object ``path`` names (an application or a channel layer)."""
        return import_by_path(path)

    def open_access_log(self, options: argparse.Namespace) -> Any:
        stream: TextIO | None = None
        if options.access_log == "-":
            stream = sys.stdout
        elif options.access_log:
            try:
                stream = open(options.access_log, "a", buffering=1)  # noqa: SIM115
            except OSError as exc:
                raise ConfigError(
                    f"Cannot open access log {options.access_log}: {exc.strerror}"
                ) from None
        elif options.verbosity >= 1:
            stream = sys.stdout
        return AccessLogGenerator(stream) if stream is not None else None

    @staticmethod
    def legacy_kwargs(config: Config) -> dict[str, Any]:
        """The Daphne 4 keyword arguments, for server classes written for it."""
        return {
            "http_timeout": config.http_timeout,
            "websocket_timeout": config.websocket_timeout,
            "websocket_connect_timeout": config.websocket_connect_timeout,
            "ping_interval": config.ping_interval,
            "ping_timeout": config.ping_timeout,
            "root_path": config.root_path,
            "proxy_forwarded_address_header": config.proxy_forwarded_address_header,
            "proxy_forwarded_port_header": config.proxy_forwarded_port_header,
            "proxy_forwarded_proto_header": config.proxy_forwarded_proto_header,
            "verbosity": config.verbosity,
            "application_close_timeout": config.application_close_timeout,
            "server_name": config.server_name,
        }

    @staticmethod
    def _route_twisted_logs(verbosity: int) -> None:
        """Send Twisted's own log records to the standard logging module."""
        from twisted.logger import STDLibLogObserver, globalLogBeginner

        logging.getLogger("twisted").setLevel(
            logging.DEBUG if verbosity >= 2 else logging.WARNING
        )
        global _twisted_logging_routed
        if not _twisted_logging_routed:  # Twisted allows this once a process
            _twisted_logging_routed = True
            globalLogBeginner.beginLoggingTo(
                [STDLibLogObserver(name="twisted")], redirectStandardIO=False
            )
