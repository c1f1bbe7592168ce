"""The process-wide request limits: ``--limit-concurrency`` and
``--limit-max-requests``.

One :class:`Limits` belongs to the :class:`~daphne.protocols.HTTPFactory`,
so it sees every connection of the process. A connection asks it before
starting an application (an HTTP exchange, or a WebSocket handshake) and
tells it when that application has ended:

- an exchange counts from the start of its application to the end of it,
  whatever happened to the response or the connection in between (an
  application still running after its client left still holds its share of
  the server); pipelined requests waiting their turn have no application
  yet, and do not count;
- past ``limit_concurrency`` the request is answered ``503`` with
  ``Retry-After`` and its connection closed, and a WebSocket handshake is
  refused with ``503``, both before the application hears of them;
- the ``limit_max_requests``-th admitted request (plus the jitter, drawn once
  here) calls :attr:`Limits.on_retire`: the server drains as on SIGTERM.
  That request, and any others already admitted, are served.

Without either limit the factory has no ``Limits`` at all, so the hot path
pays one ``is None`` test per exchange.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from ..config import LIMIT_RETRY_AFTER, Config
from ..http.exchange import ResponseState

logger = logging.getLogger(__name__)

#: Seconds between two warnings that the concurrency limit refused requests.
WARN_INTERVAL = 10.0

REFUSAL_HEADERS = ((b"retry-after", b"%d" % LIMIT_RETRY_AFTER),)
REFUSAL_DETAIL = "The server is at its concurrency limit; retry shortly."


def draw_max_requests(config: Config, rng: random.Random | None = None) -> int | None:
    """The number of requests after which this process retires, or None."""
    limit = config.limit_max_requests
    if limit is None:
        return None
    jitter = config.limit_max_requests_jitter
    return limit + (rng or random).randint(0, jitter) if jitter else limit


class Limits:
    """Counts the running exchanges of a process and the requests it took."""

    __slots__ = (
        "max_concurrency",
        "max_requests",
        "open",
        "requests",
        "on_retire",
        "retiring",
        "refused",
        "warned_at",
        "seconds",
    )

    def __init__(
        self, config: Config, reactor: Any, rng: random.Random | None = None
    ) -> None:
        self.max_concurrency = config.limit_concurrency
        #: This process's draw from N..N+J (None: never retire).
        self.max_requests = draw_max_requests(config, rng)
        #: Exchanges whose application is running now.
        self.open = 0
        #: Exchanges admitted since start.
        self.requests = 0
        #: Called once, with the request count, when the process should retire.
        self.on_retire: Callable[[int], None] | None = None
        self.retiring = False
        #: Refusals not yet reported in a warning.
        self.refused = 0
        self.warned_at: float | None = None
        self.seconds = reactor.seconds

    @classmethod
    def for_config(cls, config: Config, reactor: Any) -> Limits | None:
        """A Limits if ``config`` sets either limit, else None."""
        if config.limit_concurrency is None and config.limit_max_requests is None:
            return None
        return cls(config, reactor)

    # -- counting ------------------------------------------------------------

    def admit(self) -> bool:
        """An application is about to start: count it, or refuse (False)."""
        limit = self.max_concurrency
        if limit is not None and self.open >= limit:
            self.refusing()
            return False
        self.open += 1
        self.requests += 1
        if self.requests == self.max_requests and not self.retiring:
            self.retiring = True
            if self.on_retire is not None:
                self.on_retire(self.requests)
        return True

    def release(self) -> None:
        """An admitted exchange's application has ended."""
        self.open -= 1

    # -- refusals, on the connection ------------------------------------------

    def admit_request(self, conn: Any, request: Any) -> bool:
        """Admit ``request`` (the one ``conn`` answers now), or answer it 503
        and close the connection."""
        if self.admit():
            return True
        request.pending = None  # its body, if any, is dropped as it arrives
        request.state = ResponseState.FAILED
        conn.writer.write_error(request, 503, REFUSAL_DETAIL, REFUSAL_HEADERS)
        return False

    def admit_websocket(self, conn: Any, scope: dict) -> bool:
        """Admit a WebSocket handshake, or refuse it with 503."""
        if self.admit():
            return True
        conn.refuse(scope, 503, REFUSAL_DETAIL, REFUSAL_HEADERS)
        return False

    def refusing(self) -> None:
        """Log refusals: each at debug, and a warning at most every
        :data:`WARN_INTERVAL` seconds with how many there were."""
        self.refused += 1
        logger.debug("Concurrency limit %d reached: refusing", self.max_concurrency)
        now = self.seconds()
        if self.warned_at is None or now - self.warned_at >= WARN_INTERVAL:
            logger.warning(
                "Concurrency limit %d reached: refused %d request(s) with 503",
                self.max_concurrency,
                self.refused,
            )
            self.warned_at = now
            self.refused = 0
