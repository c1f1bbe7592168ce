"""The ``daphne`` command line: arguments to a Config, the target, and a Server.

Every bad input ends in one line on stderr and a non-zero exit status, never
a traceback; an exception from the user's own code is shown with the
traceback of the user's frames only (see :meth:`CommandLineInterface.report`). The options themselves, and the parser that reads them, are in
:mod:`daphne.cli_options`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn, TextIO

from . import cli_options, reloader
from .access import AccessLogGenerator
from .cli_options import DEFAULT_HOST, DEFAULT_PORT
from .cli_options import DEFAULT_LOG_FORMAT as DEFAULT_LOG_FORMAT  # re-exported
from .config import FORWARDED_ALLOW_IPS_ENV, Config, ConfigError
from .endpoints import build_endpoint_description_strings
from .hosts.detect import INTERFACE_NAMES, TargetError, detect_interface
from .hosts.layer import LAYER_HTTP_TIMEOUT, layer_config
from .layers import compat as layers_compat
from .server import Server, ServerError, install_reactor
from .supervisor import Supervisor, WorkerLink, check_layer
from .systemd import ListenFD, listen_fds
from .utils import (
    ImportTargetError,
    import_by_path,
    raised_in_user_code,
    user_traceback,
)

logger = logging.getLogger(__name__)

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_twisted_logging_routed = False


def check_tls_files(options: argparse.Namespace) -> None:
    """--ssl-certfile and its companions: readable files, and a -b/-p
    socket to serve them on."""
    if options.ssl_certfile is None:
        if options.ssl_keyfile or options.ssl_ca_certs:
            raise ConfigError("--ssl-keyfile and --ssl-ca-certs need --ssl-certfile")
        return
    for flag in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs"):
        path = getattr(options, flag)
        if path is not None and not os.path.isfile(path):
            name = "--" + flag.replace("_", "-")
            raise ConfigError(f"{name}: {path} is not a readable file")
    if (
        options.host is None
        and options.port is None
        and (
            options.unix_socket
            or options.file_descriptor is not None
            or options.socket_strings
        )
    ):
        raise ConfigError(
            "--ssl-certfile serves TLS on the -b/-p socket: give -b or -p "
            "(-e endpoints stay as written: use ssl: there)"
        )


def http2_fields(options: argparse.Namespace) -> dict[str, Any]:
    """The Config fields of the "HTTP/2" option group."""
    return {
        "http2": not options.no_http2,
        "http2_max_concurrent_streams": options.http2_max_concurrent_streams,
        "http2_max_header_list_size": options.http2_max_header_list_size,
        "http2_idle_timeout": options.http2_idle_timeout,
    }


class CommandLineInterface:
    """Parses ``daphne`` arguments and runs :attr:`server_class`."""

    description = (
        "Serve an ASGI application, or a channel layer and its workers, over "
        "HTTP/1.1 and WebSocket with Twisted."
    )
    server_class: type = Server

    def __init__(self, activation: Mapping[str, str] | None = None) -> None:
        """``activation``: the systemd socket activation variables, read
        before Twisted was imported (see :mod:`daphne.systemd`); by default,
        what is left of them in the environment."""
        self.parser = self.build_parser()
        self.activation = activation
        self.server: Any = None
        #: The sockets of systemd socket activation this process serves.
        self.activated: list[ListenFD] = []

    @classmethod
    def entrypoint(cls) -> None:
        """``daphne [options] module:object`` (the ``daphne`` command is
        :func:`daphne.__main__.main`, which also sees systemd's sockets)."""
        cls().run(sys.argv[1:])

    def build_parser(self) -> argparse.ArgumentParser:
        """The argument parser; see :func:`daphne.cli_options.build_parser`."""
        return cli_options.build_parser(
            self.description, layer_http_timeout=LAYER_HTTP_TIMEOUT
        )

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
            if self.reloading(options):
                raise SystemExit(self.run_reloader(options, args, config))
            worker = WorkerLink.from_options(options)
            if config.workers > 1 and worker is None:
                raise SystemExit(self.supervise(args, endpoints, config))
            # Before the application is imported, so that an import of
            # twisted.internet.reactor there gets the asyncio one.
            install_reactor()
            sys.path.insert(0, ".")
            # v1 layers written for asgiref 1.x (asgi_redis) import
            # asgiref.base_layer, which asgiref 3 lacks.
            layers_compat.install()
            application = self.load_application(options.application)
            interface = detect_interface(application, options.interface)
            if worker is not None:
                check_layer(application, config.workers, options.workers_share_nothing)
            if interface == "channel-layer":
                config = layer_config(config, application, self.explicit(options))
            access_log = self.open_access_log(options)
            self.server = self.server_class(
                application=application,
                endpoints=endpoints,
                action_logger=access_log,
                config=config,
                **self.legacy_kwargs(config),
                **self.worker_kwargs(worker, endpoints),
            )
            if worker is not None:
                worker.install_signal_handlers(self.server.stop)
            logger.info(
                "Starting server at %s, %s %s",
                ", ".join(endpoints),
                INTERFACE_NAMES[interface],
                options.application,
            )
            self.server.run()
        except Exception as exc:
            if not self.report(exc, options.application):
                raise  # a bug in daphne: its whole traceback

    #: Errors whose message is the whole story, unless the user's code caused
    #: them (then their ``__cause__`` is what the user's code raised).
    expected_errors = (ConfigError, ImportTargetError, ServerError, TargetError)

    def report(self, exc: Exception, target: str) -> bool:
        """Report a failure to start and exit, or return False for a bug.

        Bad input is one line. An exception from the user's code (importing
        the target, telling its kind, its lifespan startup) also shows where
        it came from: its traceback without daphne's frames."""
        expected = isinstance(exc, self.expected_errors)
        cause = exc.__cause__ if expected else exc
        if cause is not None and raised_in_user_code(cause):
            print(user_traceback(cause), end="", file=sys.stderr)
            if expected:
                self.fail(str(exc))
            self.fail(f"Error in {target}: {type(exc).__name__}: {exc}")
        if expected or isinstance(exc, ValueError):
            # (ValueError: daphne's own checks of the command-line values.)
            self.fail(str(exc))
        return False

    def fail(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        print(f"daphne: error: {message}", file=sys.stderr)
        raise SystemExit(1)

    def build_config(self, options: argparse.Namespace) -> Config:
        if (options.proxy_headers_host or options.proxy_headers_port) and not (
            options.proxy_headers
        ):
            raise ConfigError(
                "--proxy-headers-host and --proxy-headers-port need --proxy-headers"
            )
        if options.forwarded_allow_ips is not None and not options.proxy_headers:
            raise ConfigError("--forwarded-allow-ips needs --proxy-headers")
        address = port = proto = None
        if options.proxy_headers:
            address = options.proxy_headers_host or "X-Forwarded-For"
            port = options.proxy_headers_port or "X-Forwarded-Port"
            proto = "X-Forwarded-Proto"

        try:
            config = self._config(options, address, port, proto)
        except ConfigError as exc:
            raise ConfigError(self.option_names(str(exc))) from None
        return self.allow_ips(options, config)

    @staticmethod
    def allow_ips(options: argparse.Namespace, config: Config) -> Config:
        """``config`` with the trusted proxies of --forwarded-allow-ips, or
        of the environment variable when the option is not given."""
        if not options.proxy_headers:
            return config
        value = options.forwarded_allow_ips
        source = "--forwarded-allow-ips"
        if value is None:
            value = os.environ.get(FORWARDED_ALLOW_IPS_ENV)
            source = FORWARDED_ALLOW_IPS_ENV
        if value is None:
            return config
        try:
            return config.replace(forwarded_allow_ips=value)
        except ConfigError as exc:
            raise ConfigError(f"{source} {str(exc).partition(' ')[2]}") from None

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
            ws_per_message_deflate=options.ws_per_message_deflate,
            websocket_engine=options.websocket_engine,
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
            **self.limits(options),
            workers=options.workers,
            **http2_fields(options),
        )

    @staticmethod
    def limits(options: argparse.Namespace) -> dict[str, Any]:
        """The Config fields of the "limits" option group."""
        return {
            "limit_max_requests": options.limit_max_requests,
            "limit_max_requests_jitter": options.limit_max_requests_jitter,
            "limit_concurrency": options.limit_concurrency,
            "backlog": options.backlog,
        }

    def option_names(self, message: str) -> str:
        """Name the command-line option in a Config error, not the field."""
        field, _, rest = message.partition(" ")
        # argparse has no public list of its actions; _actions is stable.
        for action in self.parser._actions:
            if action.dest == field and action.option_strings:
                return f"{action.option_strings[-1]} {rest}"
        return message

    def build_endpoints(self, options: argparse.Namespace) -> list[str]:
        # Read (and removed from the environment) even when unused.
        passed = listen_fds(self.activation)
        if options.host is not None and not options.host.strip("[] "):
            raise ConfigError("--bind needs an address (it was empty)")
        if options.unix_socket:
            directory = os.path.dirname(os.path.abspath(options.unix_socket))
            if not os.path.isdir(directory):
                raise ConfigError(
                    f"Cannot listen on {options.unix_socket}: "
                    f"directory {directory} does not exist"
                )
        check_tls_files(options)
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
            if passed:
                # systemd socket activation, in place of the default address
                # (binding options given: they alone say where to listen).
                self.activated = passed
                logger.info(
                    "Serving the sockets systemd passed: %s",
                    ", ".join(f"fd {fd.fileno} ({fd.name})" for fd in passed),
                )
                return [fd.description for fd in passed]
            host, port = DEFAULT_HOST, DEFAULT_PORT
        return sorted(
            build_endpoint_description_strings(
                host=host,
                port=port,
                unix_socket=options.unix_socket,
                file_descriptor=options.file_descriptor,
                backlog=options.backlog,
                ssl_certfile=options.ssl_certfile,
                ssl_keyfile=options.ssl_keyfile,
                ssl_ca_certs=options.ssl_ca_certs,
            )
            + options.socket_strings
        )

    @staticmethod
    def reloading(options: argparse.Namespace) -> bool:
        """Whether this process is to be the reloader: --reload was given,
        and this is not the server process a reloader started."""
        watching = options.reload and not reloader.is_child()
        reloader.check_options(options, watching=watching)
        return watching

    def run_reloader(
        self, options: argparse.Namespace, args: list[str], config: Config
    ) -> int:
        """Run the reloader; the server it starts serves the same arguments,
        and the sockets this process was given."""
        inherited = [fd.fileno for fd in self.activated]
        if options.file_descriptor is not None:
            inherited.append(options.file_descriptor)
        return reloader.Reloader.from_options(
            options,
            args,
            config.shutdown_timeout,
            extra_args=[arg for fd in self.activated for arg in ("-e", fd.description)],
            pass_fds=inherited,
        ).run()

    @staticmethod
    def supervise(args: list[str], endpoints: list[str], config: Config) -> int:
        """Run ``--workers`` worker processes under a supervisor; its status."""
        supervisor = Supervisor(
            args, endpoints, config.workers, config.shutdown_timeout
        )
        return supervisor.run()

    def worker_kwargs(
        self, worker: WorkerLink | None, endpoints: list[str]
    ) -> dict[str, Any]:
        """The Server arguments of a worker process (none outside one): its
        supervisor's sockets, the readiness message, its own signals."""
        if worker is None:
            return {}
        return {
            "endpoint_factory": worker.endpoint_factory(endpoints),
            "ready_callable": worker.ready(lambda: self.server.stop()),
            "signal_handlers": False,
        }

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
