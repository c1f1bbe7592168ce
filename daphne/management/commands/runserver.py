"""``manage.py runserver`` on daphne: the project's ASGI application, HTTP and
WebSocket, with Django's autoreloader.

It takes Django's ``runserver`` arguments (``django.contrib.staticfiles``'
``--nostatic`` and ``--insecure`` too when that app is installed) and adds:

- ``--noasgi``: run Django's own development server (WSGI) instead;
- ``--http_timeout`` and ``--websocket_handshake_timeout``, as Daphne 4's
  command had them.

The server's :class:`~daphne.config.Config` is built by the ``daphne``
command line's own code (:meth:`daphne.cli.CommandLineInterface.build_config`),
so its defaults are the command line's. Access lines go to the
``django.server`` logger, in the format of Django's development server.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import CommandError
from django.core.management.base import CommandParser
from django.db import connections
from django.utils import autoreload

from ... import __version__
from ...checks import load_asgi_application
from ...cli import CommandLineInterface
from ...config import Config, ConfigError
from ...endpoints import build_endpoint_description_strings
from ...server import Server, ServerError, install_reactor

if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.management.commands.runserver import (
        Command as BaseRunserver,
    )
else:
    from django.core.management.commands.runserver import Command as BaseRunserver

logger = logging.getLogger("django.server")

#: WebSocket access events, as the access lines name them.
WEBSOCKET_ACTIONS = {
    "connecting": "HANDSHAKING",
    "connected": "CONNECT",
    "disconnected": "DISCONNECT",
    "rejected": "REJECT",
}


class Command(BaseRunserver):
    """Django's ``runserver``, serving ``settings.ASGI_APPLICATION`` through
    daphne (``--noasgi``: Django's own server)."""

    help = (
        "Starts a development server for the ASGI application in "
        "settings.ASGI_APPLICATION (HTTP and WebSocket) on daphne."
    )
    server_class: type = Server

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--noasgi",
            action="store_false",
            dest="use_asgi",
            help="Run Django's own development server (WSGI) instead of daphne.",
        )
        parser.add_argument(
            "--http_timeout",
            "--http-timeout",
            dest="http_timeout",
            type=float,
            metavar="SECONDS",
            help="Answer 503 to a request without a complete response after "
            "this many seconds (default: no limit).",
        )
        parser.add_argument(
            "--websocket_handshake_timeout",
            "--websocket-handshake-timeout",
            dest="websocket_handshake_timeout",
            type=float,
            metavar="SECONDS",
            help="Refuse a WebSocket handshake the application has not "
            "accepted within this many seconds (daphne's "
            f"--websocket-connect-timeout; default: "
            f"{Config.websocket_connect_timeout:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["use_asgi"]:
            # Checked once, before the autoreloader forks its child.
            self.config = self.build_config(options)
        super().handle(*args, **options)

    def build_config(self, options: dict[str, Any]) -> Config:
        """The server's Config, from the options as ``daphne`` reads them."""
        argv = []
        if options["http_timeout"] is not None:
            argv += ["--http-timeout", str(options["http_timeout"])]
        if options["websocket_handshake_timeout"] is not None:
            argv += [
                "--websocket-connect-timeout",
                str(options["websocket_handshake_timeout"]),
            ]
        cli = CommandLineInterface()
        # (The application argument is required there; it is not used here.)
        try:
            return cli.build_config(cli.parser.parse_args([*argv, "unused:unused"]))
        except ConfigError as exc:
            raise CommandError(str(exc)) from None

    def inner_run(self, *args: Any, **options: Any) -> None:
        if not options["use_asgi"]:
            super().inner_run(*args, **options)
            return
        # An exception the autoreloader kept from an earlier run is raised
        # again here, so the reloader keeps watching for the fix.
        autoreload.raise_last_exception()
        # Before the project's code is imported (by the checks, then below),
        # so that an import of twisted.internet.reactor there gets this one.
        install_reactor()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()
        application = self.get_application(options)
        host = "0.0.0.0" if self.addr == "0" else self.addr
        self.server = self.server_class(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=self.port),
            # Under the autoreloader this runs in a thread: signals are the
            # reloader's business there.
            signal_handlers=not options["use_reloader"],
            action_logger=self.log_action,
            ready_callable=self.on_listening,
            config=self.config,
        )
        try:
            self.server.run()
        except ServerError as exc:
            self.stderr.write(f"Error: {exc}")
            # sys.exit would end only this thread under the autoreloader.
            os._exit(1)
        shutdown_message = options.get("shutdown_message", "")
        if shutdown_message:
            self.stdout.write(shutdown_message)

    def get_application(self, options: dict[str, Any]) -> Any:
        """``settings.ASGI_APPLICATION``; in DEBUG (or with ``--insecure``)
        wrapped to serve static files, unless ``--nostatic``."""
        application = load_asgi_application()
        if options.get("use_static_handler", False) and (
            settings.DEBUG or options.get("insecure_serving", False)
        ):
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            application = ASGIStaticFilesHandler(application)
        return application

    def on_listening(self) -> None:
        """The banner of Django's development server, once daphne listens
        (with the port it got, if it was asked for port 0)."""
        port = self.server.listening_addresses[0][1]
        if ":" in self.addr:
            address = f"[{self.addr}]"
        elif self.addr == "0":
            address = "0.0.0.0"
        else:
            address = self.addr
        quit_with = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        self.stdout.write(
            f"{datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {self.get_version()}, using settings "
            f"{settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/daphne version {__version__} development server "
            f"at {self.protocol}://{address}:{port}/\n"
            f"Quit the server with {quit_with}."
        )

    def log_action(self, protocol: str, action: str, details: dict) -> None:
        """An access line for a server event, as Django's server logs them."""
        if protocol == "http" and action == "complete":
            status = details["status"]
            if status >= 500:
                level = logging.ERROR
            elif status >= 400:
                level = logging.WARNING
            else:
                level = logging.INFO
            logger.log(
                level,
                '"%s %s" %s %s',
                details["method"],
                _printable(details["path"]),
                status,
                details["size"],
                extra={
                    "request": None,
                    "status_code": status,
                    "server_time": _server_time(),
                },
            )
        elif protocol == "websocket" and action in WEBSOCKET_ACTIONS:
            logger.log(
                logging.DEBUG if action == "connecting" else logging.INFO,
                "WebSocket %s %s [%s]",
                WEBSOCKET_ACTIONS[action],
                _printable(details["path"]),
                details["client"] or "-",
                extra={"request": None, "server_time": _server_time()},
            )


def _server_time() -> str:
    """Now, as Django's development server stamps its access lines."""
    return datetime.now().strftime("%d/%b/%Y %H:%M:%S")


def _printable(text: str) -> str:
    """``text`` on one line whatever the client put in it."""
    return text if text.isprintable() else text.encode("unicode_escape").decode()
