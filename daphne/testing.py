"""Helpers to run daphne in tests.

:class:`DaphneProcess` serves an application from a child process on a free
port of 127.0.0.1; the parent reads :attr:`DaphneProcess.port` once
:attr:`DaphneProcess.ready` is set.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import traceback
from collections.abc import Callable
from typing import Any

_fork = multiprocessing.get_context("fork")


class DaphneProcess(_fork.Process):
    """A daphne server on ``host`` in a forked child process.

    ``get_application`` is called in the child and returns the application.
    ``setup`` and ``teardown`` (optional) run in the child around the server.
    """

    def __init__(
        self,
        host: str,
        get_application: Callable[[], Any],
        kwargs: dict[str, Any] | None = None,
        setup: Callable[[], None] | None = None,
        teardown: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.host = host
        self.get_application = get_application
        self.kwargs = kwargs or {}
        self.setup = setup
        self.teardown = teardown
        self.port = _fork.Value("i", 0)
        self.ready = _fork.Event()
        self.errors = _fork.Queue()

    def run(self) -> None:
        # A reactor imported by the parent (before the fork) is not usable
        # here: forget it so this process installs its own.
        for name in ("twisted.internet.reactor",):
            sys.modules.pop(name, None)
        from .endpoints import build_endpoint_description_strings
        from .server import Server

        try:
            if self.setup is not None:
                self.setup()
            kwargs = {"signal_handlers": True, **self.kwargs}
            server = Server(
                application=self.get_application(),
                endpoints=build_endpoint_description_strings(host=self.host, port=0),
                ready_callable=lambda: self._ready(server),
                **kwargs,
            )
            server.run()
        except BaseException as exc:
            logging.getLogger(__name__).error("DaphneProcess failed: %s", exc)
            self.errors.put((exc, traceback.format_exc()))
            self.ready.set()
        finally:
            if self.teardown is not None:
                self.teardown()

    def _ready(self, server: Any) -> None:
        self.port.value = server.listening_addresses[0][1]
        self.ready.set()
