"""Helpers to run daphne in tests.

:class:`DaphneProcess` serves an application from a child process on a free
port of 127.0.0.1; the parent reads :attr:`DaphneProcess.port` once
:attr:`DaphneProcess.ready` is set. ``channels.testing.ChannelsLiveServerTestCase``
runs its live server this way, waiting on ``ready`` in a loop; when the child
cannot start, that wait raises ``RuntimeError`` with the child's traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

_fork = multiprocessing.get_context("fork")

#: Room for the child's traceback text in shared memory; a longer one keeps
#: its end (the innermost frames and the error).
FAILURE_TEXT_SIZE = 64 * 1024


class StartupSignal:
    """The ``ready`` event of a :class:`DaphneProcess`, as the parent waits on it.

    The child calls :meth:`set` once it listens, or :meth:`fail` if it could
    not start. In the parent, :meth:`wait` returns True once the server
    listens and raises ``RuntimeError`` carrying the child's traceback when it
    failed to start, or when the child died before it was ready.
    """

    #: How often a waiting parent checks that the child is still alive.
    POLL_INTERVAL = 0.1

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self._event = _fork.Event()
        self._failure = _fork.Array("c", FAILURE_TEXT_SIZE, lock=False)

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def fail(self, text: str) -> None:
        """Record why the child could not start, then wake the parent."""
        data = text.encode("utf-8", "replace")
        if len(data) >= FAILURE_TEXT_SIZE:
            data = b"...\n" + data[-(FAILURE_TEXT_SIZE - 8) :]
        self._failure.value = data
        self._event.set()

    @property
    def failure(self) -> str | None:
        """The child's start-up traceback, if it failed to start."""
        text = self._failure.value
        return text.decode("utf-8", "replace") if text else None

    def wait(self, timeout: float | None = None) -> bool:
        """True once the server listens; False if ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = (
                self.POLL_INTERVAL
                if deadline is None
                else min(self.POLL_INTERVAL, deadline - time.monotonic())
            )
            if self._event.wait(max(remaining, 0)):
                break
            exitcode = self._process.exitcode
            if exitcode is not None and not self._event.is_set():
                raise RuntimeError(
                    f"daphne's child process exited (code {exitcode}) before "
                    "its server was ready"
                )
            if deadline is not None and time.monotonic() >= deadline:
                return False
        failure = self.failure
        if failure is not None:
            raise RuntimeError(
                f"daphne could not start in its child process:\n{failure}"
            )
        return True


class DaphneProcess(_fork.Process):
    """A daphne server on ``host`` in a forked child process.

    ``get_application`` is called in the child and returns the application.
    ``setup`` and ``teardown`` (optional) run in the child around the server.
    ``kwargs`` go to :class:`daphne.server.Server`. If the server fails to
    start, ``ready.wait()`` raises ``RuntimeError`` in the parent with the
    child's traceback; ``errors`` also gets ``(exception, traceback text)``.
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
        self.ready = StartupSignal(self)
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
            text = traceback.format_exc()
            logging.getLogger(__name__).error("DaphneProcess failed: %s", exc)
            self.errors.put((_picklable(exc), text))
            if not self.ready.is_set():
                self.ready.fail(text)
        finally:
            if self.teardown is not None:
                self.teardown()

    def _ready(self, server: Any) -> None:
        self.port.value = server.listening_addresses[0][1]
        self.ready.set()


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if it can cross to the parent, else a RuntimeError naming it
    (the queue would drop an exception it cannot pickle)."""
    try:
        pickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
