"""The server: listening endpoints, lifespan, signals and graceful shutdown.

:class:`Server` keeps the keyword arguments of Daphne 4's class so existing
code keeps working; every value ends up in one :class:`~daphne.config.Config`.
The asyncio reactor is installed by :func:`install_reactor`, called from
:meth:`Server.run` (never at import).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer

from .access import format_client
from .config import Config
from .endpoints import EndpointError, server_endpoint
from .hosts.app import AppHost, Lifespan, LifespanFailure
from .hosts.detect import INTERFACE_NAMES, TargetError, detect_interface
from .hosts.layer import LayerHost, layer_config
from .protocols import HTTPFactory
from .shared_ports import AdoptShared
from .utils import user_traceback

logger = logging.getLogger(__name__)

#: Daphne 4 keyword arguments that map one-to-one onto Config fields.
CONFIG_KWARGS = frozenset(
    {
        "http_timeout",
        "websocket_timeout",
        "websocket_connect_timeout",
        "websocket_max_message_size",
        "websocket_max_frame_size",
        "ping_interval",
        "ping_timeout",
        "root_path",
        "proxy_forwarded_address_header",
        "proxy_forwarded_port_header",
        "proxy_forwarded_proto_header",
        "verbosity",
        "application_close_timeout",
        "server_name",
        "lifespan",
        "shutdown_timeout",
        "interface",
        "force_sync",
        "ws_protocols",
        # daphne's own, for the same reason: a Server built in code can trust
        # its proxies as the command line does.
        "forwarded_allow_ips",
    }
)


def listening_endpoint(reactor: Any, description: str) -> Any:
    """The endpoint for ``description``; an inherited socket (``fd:``) is
    adopted as a shared port, which leaves the socket and its path to their
    owner (:mod:`daphne.shared_ports`)."""
    if description.partition(":")[0].strip().lower() == "fd":
        return server_endpoint(AdoptShared(reactor), description)
    return server_endpoint(reactor, description)


class ServerError(Exception):
    """The server could not start (or had to stop); the message says why."""


def install_reactor() -> Any:
    """Install Twisted's asyncio reactor on a uvloop loop (where available):
    daphne's subclass of it, :class:`daphne.reactor.Reactor`.

    Returns the reactor. Applications run as asyncio tasks on its loop, so a
    different reactor that was merely imported (not running) is replaced.
    """
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if isinstance(reactor, AsyncioSelectorReactor):
            return reactor
        if reactor.running:
            raise ServerError(
                f"daphne needs Twisted's asyncio reactor, but "
                f"{type(reactor).__name__} is already running"
            )
        logger.warning(
            "Replacing the %s imported before daphne started with the asyncio reactor",
            type(reactor).__name__,
        )
        del sys.modules["twisted.internet.reactor"]
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    from . import reactor

    return reactor.install(loop)


class Server:
    """Serves one application, or one channel layer, on any number of
    Twisted endpoints."""

    def __init__(
        self,
        application: Any,
        endpoints: Sequence[str] | None = None,
        signal_handlers: bool = True,
        action_logger: Callable[[str, str, dict], None] | None = None,
        ready_callable: Callable[[], None] | None = None,
        config: Config | None = None,
        reactor: Any = None,
        endpoint_factory: Callable[[Any, str], Any] | None = None,
        request_buffer_size: int | None = None,
        websocket_handshake_timeout: float | None = None,
        **options: Any,
    ) -> None:
        # Daphne 4 arguments with no counterpart here, accepted so that old
        # calls keep working: requests are read in whatever pieces arrive, and
        # the WebSocket handshake is timed by request_head_timeout (the
        # client's part) and websocket_connect_timeout (the application's).
        del request_buffer_size, websocket_handshake_timeout
        unknown = set(options) - CONFIG_KWARGS
        if unknown:
            raise TypeError(f"Unknown Server options: {', '.join(sorted(unknown))}")
        if "server_name" in options and not options["server_name"]:
            options["server_name"] = None
        if "root_path" in options and options["root_path"] is None:
            options["root_path"] = ""
        self.config = (config or Config()).replace(**options)
        self.application = application
        try:
            #: ``channel-layer``, ``asgi3`` or ``asgi2``
            self.interface = detect_interface(application, self.config.interface)
        except TargetError as exc:
            raise ServerError(str(exc)) from None
        if self.interface == "channel-layer":
            self.config = layer_config(self.config, application, set(options))
        self.endpoints = sorted(endpoints or [])
        if not self.endpoints:
            raise ServerError("No endpoints to listen on")
        self.signal_handlers = signal_handlers
        self.action_logger = action_logger or self.config.access_log
        self.ready_callable = ready_callable
        self.reactor = reactor
        #: ``(reactor, description) -> endpoint`` (a worker's adopts the
        #: supervisor's sockets).
        self.endpoint_factory = endpoint_factory or listening_endpoint
        self.listeners: list[Any] = []
        self.error: ServerError | None = None
        self.factory: HTTPFactory | None = None
        self._started = False
        self._stopping = False
        self._stop_requested = False

    # -- running -------------------------------------------------------------

    def run(self) -> None:
        """Serve until stopped by a signal or :meth:`stop`; raise ServerError
        if the server could not start."""
        if self.reactor is None:
            self.reactor = install_reactor()
        reactor = self.reactor
        # Check every endpoint before running anything of the application's.
        try:
            self._endpoints = [
                (description, self.endpoint_factory(reactor, description))
                for description in self.endpoints
            ]
        except EndpointError as exc:
            raise ServerError(str(exc)) from None
        # The reactor's own loop: not asyncio's "current" one, which may differ.
        loop = getattr(reactor, "_asyncioEventloop", None)
        self.host: AppHost | LayerHost
        self.lifespan: Lifespan | None = None
        if self.interface == "channel-layer":
            self.host = LayerHost(self.application, self.config, reactor, loop=loop)
        else:
            self.host = AppHost(
                self.application, self.config, reactor, loop, self.interface
            )
            self.lifespan = Lifespan(self.host, self.config.lifespan)
        logger.debug("Serving a %s", INTERFACE_NAMES[self.interface])
        self.factory = HTTPFactory(
            self.config, self.host, reactor, access_log=self.action_logger
        )
        if self.factory.limits is not None:
            self.factory.limits.on_retire = self._retire
        if self.signal_handlers:
            reactor.callWhenRunning(self._install_signal_handlers)
        reactor.callWhenRunning(self._spawn, self._start)
        reactor.addSystemEventTrigger("before", "shutdown", self._before_shutdown)
        reactor.run(installSignalHandlers=self.signal_handlers)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Begin a graceful shutdown (thread-unsafe: call from the reactor)."""
        if self.reactor.running and not self._stop_requested:
            self._stop_requested = True
            self.reactor.stop()

    def _retire(self, requests: int) -> None:
        """limit_max_requests is reached: drain as on SIGTERM, then exit 0."""
        logger.info(
            "Retiring after %d requests (--limit-max-requests): "
            "finishing the requests in progress, then exiting",
            requests,
        )
        self.stop()

    def _install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM once: graceful stop; twice: leave at once."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_requested:
            logger.warning("Second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        self.reactor.callFromThread(self.stop)

    def _spawn(self, coroutine_function: Callable) -> defer.Deferred:
        return defer.Deferred.fromFuture(
            self.host.loop.create_task(coroutine_function())
        )

    async def _start(self) -> None:
        try:
            if self.lifespan is not None:
                await self.lifespan.startup()
            else:
                await self.host.start_reading()
            self._started = True
            for description, endpoint in self._endpoints:
                await self._listen(description, endpoint)
        except (ServerError, LifespanFailure, EndpointError) as exc:
            self._fail(str(exc), exc.__cause__)
            return
        except Exception as exc:  # a bug, but the server must still exit
            logger.exception("Server start-up failed")
            self._fail(f"Server start-up failed: {exc}")
            return
        if self.ready_callable is not None:
            try:
                self.ready_callable()
            except Exception:
                logger.exception("ready_callable failed")

    async def _listen(self, description: str, endpoint: Any) -> None:
        try:
            port = await endpoint.listen(self.factory).asFuture(self.host.loop)
        except Exception as exc:
            raise ServerError(f"Cannot listen on {description}: {exc}") from None
        self.listeners.append(port)
        address = port.getHost()
        host = getattr(address, "host", None)
        if host is not None:  # [host]:port for IPv6
            where = format_client([host, address.port])
        else:
            name = getattr(address, "name", None)
            where = os.fsdecode(name) if name else "an unnamed UNIX socket"
        logger.info("Listening on %s at %s", description, where)

    def _fail(self, message: str, cause: BaseException | None = None) -> None:
        # run() raises it; whoever called run() reports it, once. The cause
        # (an exception from the application) says where the failure began.
        self.error = ServerError(message)
        self.error.__cause__ = cause
        self.stop()

    @property
    def listening_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every TCP listener (tests use port 0)."""
        addresses = []
        for port in self.listeners:
            address = port.getHost()
            if hasattr(address, "port"):
                addresses.append((address.host, address.port))
        return addresses

    # -- graceful shutdown ------------------------------------------------------

    def _before_shutdown(self) -> defer.Deferred:
        return self._spawn(self._shutdown)

    async def _shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        loop = self.host.loop
        for port in self.listeners:
            await defer.maybeDeferred(port.stopListening).asFuture(loop)
        self.listeners.clear()
        connections = self.factory.connections
        if connections:
            logger.info(
                "Stopping: waiting up to %ss for %d connection(s)",
                self.config.shutdown_timeout,
                len(connections),
            )
        for conn in list(connections):
            try:
                conn.shutdown()
            except Exception:
                # A bug in one connection must not keep the others open.
                logger.exception("Could not drain a connection; closing it")
                conn.transport.abortConnection()
        deadline = loop.time() + self.config.shutdown_timeout
        try:
            await asyncio.wait_for(
                self.factory.when_empty().asFuture(loop), self.config.shutdown_timeout
            )
        except asyncio.TimeoutError:
            logger.warning("Closing %d connection(s) still open", len(connections))
        for conn in list(connections):
            conn.transport.abortConnection()
        # Instances still running (cut off, or working after their response)
        # get what is left of the grace period, then are cancelled.
        await self.host.close(max(0.0, deadline - loop.time()))
        if self._started and self.lifespan is not None:
            try:
                await asyncio.wait_for(
                    self.lifespan.shutdown(), self.config.shutdown_timeout
                )
            except asyncio.TimeoutError:
                logger.warning(
                    "Lifespan shutdown did not complete within %ss",
                    self.config.shutdown_timeout,
                )
            except LifespanFailure as exc:
                if exc.__cause__ is None:
                    logger.error("%s", exc)
                else:  # raised by the application: show where
                    logger.error("%s\n%s", exc, user_traceback(exc.__cause__))
